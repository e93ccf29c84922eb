//! The internal port: Raft RPCs, forwarded requests and peer status. Bodies are postcard.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire;
use crate::node::Node;
use crate::ring::ShardId;
use crate::router::{ServeError, ShardRequest, ShardResponse};

/// Largest internal request body: snapshot chunks and append batches.
const MAX_INTERNAL_BODY: usize = 512 << 20;

/// The internal-port router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/internal/status", get(status))
        .route("/internal/raft/{shard}/{rpc}", post(raft_rpc))
        .route("/internal/shard/{shard}/serve", post(serve))
        .route("/internal/watch", get(crate::api::watch::watch_internal))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::admin::router())
        .layer(DefaultBodyLimit::max(MAX_INTERNAL_BODY))
        .with_state(node)
}

/// Why an internal call got no answer from the local replica.
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
}

/// The postcard encoding of `v` after [`wire::ANSWER_PREFIX`] bytes of room, so the
/// wire frames it in place ([`wire::answer_frame_in`]); HTTP skips the room.
fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CallError> {
    postcard::to_extend(v, vec![0; wire::ANSWER_PREFIX]).map_err(|e| CallError::Bad(format!("encode: {e}")))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, CallError> {
    postcard::from_bytes(b).map_err(|e| CallError::Bad(format!("undecodable body: {e}")))
}

/// As HTTP: 200 with the postcard answer, 404 for a shard not hosted, else 400.
fn http_answer(r: Result<Vec<u8>, CallError>) -> Response {
    match r {
        Ok(b) => (StatusCode::OK, Bytes::from(b).slice(wire::ANSWER_PREFIX..)).into_response(),
        Err(e @ (CallError::NotHosted(_) | CallError::Stale(_))) => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn status(State(node): State<Arc<Node>>) -> Json<crate::node::NodeStatus> {
    Json(node.status())
}

async fn raft_rpc(State(node): State<Arc<Node>>, Path((shard, rpc)): Path<(ShardId, String)>, body: Bytes) -> Response {
    http_answer(raft_call(&node, shard, &rpc, &body).await)
}

/// One Raft RPC (`append`, `vote` or `snapshot`) for `shard`: the postcard-encoded
/// result of the local replica's handling, whichever transport brought it.
pub async fn raft_call(node: &Node, shard: ShardId, rpc: &str, body: &[u8]) -> Result<Vec<u8>, CallError> {
    let s = node.raft_replica(shard).ok_or(CallError::NotHosted(shard))?;
    // A message from a group born after this replica's slice (see `origin_term`) is
    // for a newer shard of the same id: this replica is an old one, not its member.
    let born_later = |vote: &crate::shard::types::Vote| {
        let born = crate::shard::types::born_epoch(vote.leader_id().term);
        let st = s.read();
        st.last_applied.is_some() && born > st.slice.epoch
    };
    let stale = || CallError::Stale(shard);
    match rpc {
        "append" => {
            let req: openraft::raft::AppendEntriesRequest<crate::shard::types::TypeConfig> = decode(body)?;
            if born_later(&req.vote) {
                return Err(stale());
            }
            let r = s.raft.append_entries(req).await;
            if matches!(&r, Ok(resp) if resp.is_success()) {
                s.heard_from_leader.store(true, std::sync::atomic::Ordering::Release);
            }
            encode(&r)
        }
        "vote" => {
            let req: openraft::raft::VoteRequest<crate::ring::NodeId> = decode(body)?;
            if born_later(&req.vote) {
                return Err(stale());
            }
            encode(&s.raft.vote(req).await)
        }
        "snapshot" => {
            let req: openraft::raft::InstallSnapshotRequest<crate::shard::types::TypeConfig> = decode(body)?;
            if born_later(&req.vote) {
                return Err(stale());
            }
            encode(&s.raft.install_snapshot(req).await)
        }
        _ => Err(CallError::Bad(format!("unknown rpc {rpc}"))),
    }
}

async fn serve(State(node): State<Arc<Node>>, Path(shard): Path<ShardId>, body: Bytes) -> Response {
    http_answer(serve_call(&node, shard, &body).await)
}

/// A client request forwarded by a peer, served by this node's replica of `shard`.
pub async fn serve_call(node: &Node, shard: ShardId, body: &[u8]) -> Result<Vec<u8>, CallError> {
    let req: ShardRequest = decode(body)?;
    // The forwarding node gives up at its own deadline; do not outlive it by much.
    let out: Result<ShardResponse, ServeError> =
        match tokio::time::timeout(node.config.request_timeout, node.serve_local(shard, req)).await {
            Ok(r) => r,
            Err(_) => Err(ServeError::Retry("timed out waiting for a quorum".into())),
        };
    encode(&out)
}
