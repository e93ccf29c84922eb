//! What a call between peers can fail with: [`NetError`] on the calling side (both the
//! wire and the HTTP/2 client answer it), [`CallError`] on the answering side.

use crate::ring::{NodeId, ShardId};

/// A failed call to a peer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The peer could not be reached (connect failure, timeout): back off and retry.
    #[error("peer {0} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// The peer answered with something other than success.
    #[error("peer {0} failed: {1}")]
    Remote(NodeId, String),
    /// The peer refused the request as bad (HTTP 400): asking again will not help.
    #[error("peer {0} refused: {1}")]
    Refused(NodeId, String),
}

/// Why a call from a peer got no answer from the local replica.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("shard {0} not hosted")]
    NotHosted(ShardId),
    /// This node's replica of the shard is older than the group that wrote (a merged
    /// donor's, the id since re-created): it is not a member and answers nothing.
    #[error("shard {0}: this node's replica is of an older group of that id")]
    Stale(ShardId),
    #[error("{0}")]
    Bad(String),
    /// This node's disk is nearly full: it takes no replicated entries or snapshots for
    /// now. The sender should retry later.
    #[error("shard {0}: this node's disk is nearly full; replication paused")]
    NoSpace(ShardId),
}
