//! What the node answers when a peer calls it over the transport: Raft RPCs for its
//! replicas and client requests forwarded to the shards it leads.

use crate::raft_net::call::{decode_body, encode_answer};
use crate::raft_net::listener::Inbound;
use crate::raft_net::{Call, CallError, RaftRpc};
use crate::ring::{NodeId, ShardId};
use crate::router::calls::{Get, List, Revision, Write};
use crate::router::{RouteError, ServeError, ShardCall};
use crate::shard::types::{born_epoch, TypeConfig, Vote};

use super::election::PreVote;
use super::Node;
use openraft::raft::AppendEntriesResponse;

impl Inbound for Node {
    async fn answer(&self, call: Call, shard: ShardId, body: &[u8]) -> Result<Vec<u8>, CallError> {
        match call {
            Call::Raft(rpc) => self.raft_call(rpc, shard, body).await,
            Call::Serve => self.forwarded_call(shard, body, false).await,
            Call::Relay => self.forwarded_call(shard, body, true).await,
        }
    }
}

impl Node {
    /// One Raft RPC for `shard`: the postcard-encoded result of the local replica's
    /// handling, whichever transport brought it.
    pub async fn raft_call(&self, rpc: RaftRpc, shard: ShardId, body: &[u8]) -> Result<Vec<u8>, CallError> {
        let s = self.raft_replica(shard).ok_or(CallError::NotHosted(shard))?;
        // A message from a group born after this replica's slice (see `origin_term`) is
        // for a newer shard of the same id: this replica is an old one, not its member.
        let born_later = |vote: &Vote| {
            let born = born_epoch(vote.leader_id().term);
            let st = s.read();
            st.last_applied.is_some() && born > st.slice.epoch
        };
        let stale = || CallError::Stale(shard);
        match rpc {
            RaftRpc::Append => {
                let req: openraft::raft::AppendEntriesRequest<TypeConfig> = decode_body(body)?;
                if born_later(&req.vote) {
                    return Err(stale());
                }
                if !req.entries.is_empty() && self.disk.refuses_replication() {
                    return Err(self.refuse_for_space(&s, &req.vote).await);
                }
                let r = s.raft.append_entries(req).await;
                if let Ok(resp) = &r {
                    // Anything but "my vote is higher" means the sender leads this
                    // replica's group now.
                    if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
                        s.leader_contact.touch();
                    }
                    if resp.is_success() {
                        s.heard_from_leader.store(true, std::sync::atomic::Ordering::Release);
                    }
                }
                encode_answer(&r)
            }
            RaftRpc::Vote => {
                let req: openraft::raft::VoteRequest<NodeId> = decode_body(body)?;
                if born_later(&req.vote) {
                    return Err(stale());
                }
                let r = s.raft.vote(req).await;
                if matches!(&r, Ok(resp) if resp.vote_granted) {
                    // As in Raft: granting a vote restarts the election timer.
                    s.leader_contact.touch();
                }
                encode_answer(&r)
            }
            RaftRpc::PreVote => {
                let req: PreVote = decode_body(body)?;
                encode_answer(&self.answer_pre_vote(&s, &req))
            }
            RaftRpc::Snapshot => {
                let req: openraft::raft::InstallSnapshotRequest<TypeConfig> = decode_body(body)?;
                if born_later(&req.vote) {
                    return Err(stale());
                }
                if self.disk.refuses_replication() {
                    return Err(self.refuse_for_space(&s, &req.vote).await);
                }
                let vote = req.vote;
                let r = s.raft.install_snapshot(req).await;
                // (A sender with a lower vote is answered with the higher one.)
                if matches!(&r, Ok(resp) if resp.vote == vote) {
                    s.leader_contact.touch();
                }
                encode_answer(&r)
            }
        }
    }

    /// Refuses replication into `s` while the disk is nearly full: after a pause of one
    /// heartbeat, so that the leader, which retries a failed append at once, does not spin.
    /// The leader still counts as heard from when it is the one this replica follows (its
    /// heartbeats pass), so the replica does not start to think itself cut off.
    async fn refuse_for_space(&self, s: &crate::shard::Shard, vote: &Vote) -> CallError {
        if s.raft.metrics().borrow().vote == *vote {
            s.leader_contact.touch();
        }
        tokio::time::sleep(self.config.heartbeat).await;
        CallError::NoSpace(s.id)
    }

    /// A client request from a peer, `tag ‖ call` in, `tag ‖ answer` out (see
    /// `router::calls`): served by this node's replica of `shard` (`Call::Serve`), or,
    /// from a peer that could not reach the leader itself, routed on from here as if a
    /// client had sent it here, never relayed further (`Call::Relay`).
    pub async fn forwarded_call(&self, shard: ShardId, body: &[u8], relayed: bool) -> Result<Vec<u8>, CallError> {
        let (tag, call) = postcard::take_from_bytes::<u8>(body)
            .map_err(|e| CallError::Bad(format!("undecodable forwarded call: {e}")))?;
        match tag {
            Write::TAG => self.serve_forwarded::<Write>(shard, call, relayed).await,
            Get::TAG => self.serve_forwarded::<Get>(shard, call, relayed).await,
            List::TAG => self.serve_forwarded::<List>(shard, call, relayed).await,
            Revision::TAG => self.serve_forwarded::<Revision>(shard, call, relayed).await,
            other => Err(CallError::Bad(format!("unknown forwarded call {other}"))),
        }
    }

    async fn serve_forwarded<C: ShardCall>(
        &self,
        shard: ShardId,
        body: &[u8],
        relayed: bool,
    ) -> Result<Vec<u8>, CallError> {
        let req: C = decode_body(body)?;
        let out: Result<C::Answer, ServeError> = if relayed {
            // Routed under this node's own request deadline.
            self.execute_here(shard, req, false).await.map_err(|e| match e {
                RouteError::InsufficientStorage(m) => ServeError::InsufficientStorage(m),
                e => ServeError::Retry(e.to_string()),
            })
        } else {
            // The forwarding node gives up at its own deadline; do not outlive it by much.
            match tokio::time::timeout(self.config.request_timeout, self.serve_local(shard, req)).await {
                Ok(r) => r,
                Err(_) => Err(ServeError::Retry("timed out waiting for a quorum".into())),
            }
        };
        encode_answer(&out.map(|a| (C::TAG, a)))
    }
}
