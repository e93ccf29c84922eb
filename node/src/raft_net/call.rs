//! What one node asks of another on the internal port, named once for both ends: the
//! sender picks the transport from it ([`super::PeerClient::send`]), the receiver
//! dispatches on it ([`super::listener::Inbound`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::CallError;
use super::wire::{self, Kind};
use crate::ring::ShardId;

/// A Raft RPC between two replicas of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftRpc {
    Append,
    Vote,
    Snapshot,
    /// Would the peer vote for this replica? Asked before a real election (see the
    /// node's `election.rs`); rare, so it goes over HTTP/2 like snapshots.
    PreVote,
}

impl RaftRpc {
    /// The name in the call's HTTP path.
    pub fn name(self) -> &'static str {
        match self {
            RaftRpc::Append => "append",
            RaftRpc::Vote => "vote",
            RaftRpc::Snapshot => "snapshot",
            RaftRpc::PreVote => "prevote",
        }
    }
}

/// A call addressed to a shard's replica on a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Raft(RaftRpc),
    /// A client request forwarded to the shard's leader.
    Serve,
    /// A client request handed to a peer that routes it on (to the leader) itself: for a
    /// node that cannot reach the leader but reaches the peer. Rare: HTTP/2.
    Relay,
}

impl Call {
    /// The wire's tag for the call. Snapshots have none: they go over HTTP/2, being large
    /// and rare, so that they never queue in front of (or behind) other shards' appends.
    pub fn wire_kind(self) -> Option<Kind> {
        match self {
            Call::Raft(RaftRpc::Append) => Some(Kind::Append),
            Call::Raft(RaftRpc::Vote) => Some(Kind::Vote),
            Call::Serve => Some(Kind::Serve),
            Call::Raft(RaftRpc::Snapshot | RaftRpc::PreVote) | Call::Relay => None,
        }
    }

    /// The HTTP path of the call on the internal port.
    pub fn http_path(self, shard: ShardId) -> String {
        match self {
            Call::Raft(rpc) => format!("/internal/raft/{shard}/{}", rpc.name()),
            Call::Serve => format!("/internal/shard/{shard}/serve"),
            Call::Relay => format!("/internal/shard/{shard}/relay"),
        }
    }
}

impl From<Kind> for Call {
    fn from(k: Kind) -> Call {
        match k {
            Kind::Append => Call::Raft(RaftRpc::Append),
            Kind::Vote => Call::Raft(RaftRpc::Vote),
            Kind::Serve => Call::Serve,
        }
    }
}

/// The postcard encoding of an answer after [`wire::ANSWER_PREFIX`] bytes of room, so the
/// wire frames it in place ([`wire::answer_frame_in`]); HTTP skips the room.
pub fn encode_answer<T: Serialize>(v: &T) -> Result<Vec<u8>, CallError> {
    postcard::to_extend(v, vec![0; wire::ANSWER_PREFIX]).map_err(|e| CallError::Bad(format!("encode: {e}")))
}

/// A call's postcard body, decoded.
pub fn decode_body<T: DeserializeOwned>(b: &[u8]) -> Result<T, CallError> {
    postcard::from_bytes(b).map_err(|e| CallError::Bad(format!("undecodable body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_kind_names_the_call_it_came_from() {
        for call in [Call::Raft(RaftRpc::Append), Call::Raft(RaftRpc::Vote), Call::Serve] {
            let kind = call.wire_kind().expect("a hot call has a wire kind");
            assert_eq!(Call::from(kind), call);
        }
        assert_eq!(Call::Raft(RaftRpc::Snapshot).wire_kind(), None);
        assert_eq!(Call::Raft(RaftRpc::Snapshot).http_path(3), "/internal/raft/3/snapshot");
        assert_eq!(Call::Raft(RaftRpc::PreVote).wire_kind(), None);
        assert_eq!(Call::Raft(RaftRpc::PreVote).http_path(5), "/internal/raft/5/prevote");
        assert_eq!(Call::Serve.http_path(12), "/internal/shard/12/serve");
        assert_eq!(Call::Relay.wire_kind(), None);
        assert_eq!(Call::Relay.http_path(12), "/internal/shard/12/relay");
    }
}
