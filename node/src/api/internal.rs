//! The internal port's HTTP routes: Raft RPCs and forwarded requests that do not take the
//! wire (snapshots; any call from a peer without it), peer status, relayed watches and the
//! admin API. Bodies of Raft and forwarded calls are postcard; the answering is the
//! node's ([`crate::raft_net::listener::Inbound`]), only the mapping to HTTP is here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::node::Node;
use crate::raft_net::listener::Inbound;
use crate::raft_net::{wire, Call, CallError, RaftRpc};
use crate::ring::ShardId;

/// Largest internal request body: snapshot chunks and append batches.
const MAX_INTERNAL_BODY: usize = 512 << 20;

/// The internal-port router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/internal/status", get(status))
        .route("/internal/raft/{shard}/{rpc}", post(raft_rpc))
        .route("/internal/shard/{shard}/serve", post(serve))
        .route("/internal/shard/{shard}/relay", post(relay))
        .route("/internal/watch", get(super::watch::watch_internal))
        .route("/healthz", get(|| async { "ok" }))
        .merge(super::admin::router())
        .layer(DefaultBodyLimit::max(MAX_INTERNAL_BODY))
        .with_state(node)
}

/// As HTTP: 200 with the postcard answer, 404 for a shard not hosted, 507 for a disk
/// too full to take replication, else 400.
fn http_answer(r: Result<Vec<u8>, CallError>) -> Response {
    match r {
        Ok(b) => (StatusCode::OK, Bytes::from(b).slice(wire::ANSWER_PREFIX..)).into_response(),
        Err(e @ (CallError::NotHosted(_) | CallError::Stale(_))) => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e @ CallError::NoSpace(_)) => (StatusCode::INSUFFICIENT_STORAGE, e.to_string()).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn status(State(node): State<Arc<Node>>) -> Json<crate::node::NodeStatus> {
    Json(node.status())
}

/// An unknown `rpc` in the path is refused by the extractor (400).
async fn raft_rpc(
    State(node): State<Arc<Node>>,
    Path((shard, rpc)): Path<(ShardId, RaftRpc)>,
    body: Bytes,
) -> Response {
    http_answer(node.answer(Call::Raft(rpc), shard, &body).await)
}

async fn serve(State(node): State<Arc<Node>>, Path(shard): Path<ShardId>, body: Bytes) -> Response {
    http_answer(node.answer(Call::Serve, shard, &body).await)
}

async fn relay(State(node): State<Arc<Node>>, Path(shard): Path<ShardId>, body: Bytes) -> Response {
    http_answer(node.answer(Call::Relay, shard, &body).await)
}
