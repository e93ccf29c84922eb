//! The client side: wire connections for the hot calls and a pooled HTTP/2 (prior
//! knowledge, h2c) client for the rest, to every peer.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use super::error::NetError;
use super::wire::{Kind, WireClient};
use crate::ring::{NodeId, ShardId};
use crate::shard::types::TypeConfig;

/// Addresses of the peers' internal ports and the shared HTTP/2 client.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    wire: Arc<WireClient>,
    addrs: Arc<RwLock<BTreeMap<NodeId, String>>>,
}

impl PeerClient {
    pub fn new(addrs: BTreeMap<NodeId, String>) -> Self {
        let http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, wire: Arc::default(), addrs: Arc::new(RwLock::new(addrs)) }
    }

    /// The internal address of `node`, if known.
    pub fn addr(&self, node: NodeId) -> Option<String> {
        self.addrs.read().get(&node).cloned()
    }

    /// Opens a long-lived GET (a relayed watch) on `node`; the answer's body is read by
    /// the caller as it arrives. Only connecting and the status are bounded in time.
    pub async fn open_stream(
        &self,
        node: NodeId,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, NetError> {
        let addr = self.resolve(node, None)?;
        let mut req = self.http.get(format!("http://{addr}{path}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = tokio::time::timeout(Duration::from_secs(5), req.send())
            .await
            .map_err(|_| NetError::Unreachable(node, "no answer in 5 s".into()))?
            .map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(NetError::Remote(node, format!("{status}: {body}")));
        }
        Ok(resp)
    }

    /// The address to reach `node` at: the known one, else `fallback` (a shard
    /// membership's entry for a node not learned yet).
    fn resolve(&self, node: NodeId, fallback: Option<&str>) -> Result<String, NetError> {
        self.addr(node)
            .or_else(|| fallback.map(str::to_string))
            .ok_or_else(|| NetError::Unreachable(node, "no address known".into()))
    }

    /// Records the internal address of a node learned from a shard's membership.
    pub fn learn(&self, node: NodeId, addr: String) {
        self.addrs.write().insert(node, addr);
    }

    /// Every known peer id.
    pub fn ids(&self) -> Vec<NodeId> {
        self.addrs.read().keys().copied().collect()
    }

    /// POSTs a postcard-encoded request to `path` on `node` and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        fallback_addr: Option<&str>,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        let addr = self.resolve(node, fallback_addr)?;
        let body = postcard::to_stdvec(req).map_err(|e| NetError::Remote(node, format!("encode: {e}")))?;
        let resp = self
            .http
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/x-postcard")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        if !status.is_success() {
            return Err(NetError::Remote(node, format!("{status}: {}", String::from_utf8_lossy(&bytes))));
        }
        postcard::from_bytes(&bytes).map_err(|e| NetError::Remote(node, format!("decode: {e}")))
    }

    /// One request over the wire to `node` (see [`super::wire`]), answer decoded.
    pub async fn wire_call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        fallback_addr: Option<&str>,
        kind: Kind,
        shard: ShardId,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        let addr = self.resolve(node, fallback_addr)?;
        self.wire.call(node, &addr, kind, shard, req, timeout).await
    }

    /// POST without a body, JSON answer (admin endpoints).
    pub async fn post_json(&self, node: NodeId, path: &str, timeout: Duration) -> Result<serde_json::Value, NetError> {
        let addr = self.resolve(node, None)?;
        let resp = self
            .http
            .post(format!("http://{addr}{path}"))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status == reqwest::StatusCode::BAD_REQUEST {
            return Err(NetError::Refused(node, body.to_string()));
        }
        if !status.is_success() {
            return Err(NetError::Remote(node, format!("{status}: {body}")));
        }
        Ok(body)
    }

    /// GET with a JSON answer (status endpoints).
    pub async fn get_json<Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        path: &str,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        let addr = self.resolve(node, None)?;
        let resp = self
            .http
            .get(format!("http://{addr}{path}"))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        if !resp.status().is_success() {
            return Err(NetError::Remote(node, resp.status().to_string()));
        }
        resp.json().await.map_err(|e| NetError::Remote(node, e.to_string()))
    }
}

/// Builds the per-target Raft network clients of one shard.
pub struct NetworkFactory {
    pub shard: ShardId,
    pub peers: PeerClient,
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
        what: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E> {
        let (addr, ttl) = (Some(self.addr.as_str()), option.hard_ttl());
        let out: Result<Result<Resp, RaftError<NodeId, E>>, NetError> = match what {
            "append" => self.peers.wire_call(self.target, addr, Kind::Append, self.shard, req, ttl).await,
            "vote" => self.peers.wire_call(self.target, addr, Kind::Vote, self.shard, req, ttl).await,
            _ => self.peers.call(self.target, addr, &format!("/internal/raft/{}/{what}", self.shard), req, ttl).await,
        };
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
        self.rpc("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc("snapshot", &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.rpc("vote", &rpc, &option).await
    }
}
