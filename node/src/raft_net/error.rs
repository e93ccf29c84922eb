//! What a call to a peer can fail with (both the wire and the HTTP/2 client answer it).

use crate::ring::NodeId;

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
