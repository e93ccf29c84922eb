//! openraft's network for one shard's replica, built by the node over the peer
//! transport: the shard asks for Raft RPCs, the transport carries bytes.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raft_net::{Call, NetError, PeerClient, RaftRpc};
use crate::ring::{NodeId, ShardId};
use crate::shard::types::TypeConfig;

/// Builds the per-target Raft network clients of one shard.
pub struct NetworkFactory {
    shard: ShardId,
    peers: PeerClient,
}

impl NetworkFactory {
    pub fn new(shard: ShardId, peers: PeerClient) -> Self {
        Self { shard, peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        Network { shard: self.shard, target, addr: node.addr.clone(), peers: self.peers.clone() }
    }
}

/// Raft RPCs from one shard replica to one target node.
pub struct Network {
    shard: ShardId,
    target: NodeId,
    addr: String,
    peers: PeerClient,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Network {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned, E: DeserializeOwned + std::error::Error>(
        &self,
        rpc: RaftRpc,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E> {
        let addr = Some(self.addr.as_str());
        let out: Result<Result<Resp, RaftError<NodeId, E>>, NetError> =
            self.peers.send(self.target, addr, Call::Raft(rpc), self.shard, req, option.hard_ttl()).await;
        match out {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e @ NetError::Unreachable(..)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.rpc(RaftRpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(RaftRpc::Snapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.rpc(RaftRpc::Vote, &rpc, &option).await
    }
}
