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

fn reply<T: Serialize>(v: &T) -> Response {
    match postcard::to_stdvec(v) {
        Ok(b) => (StatusCode::OK, b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[allow(clippy::result_large_err)] // the error is the HTTP answer itself
fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, Response> {
    postcard::from_bytes(b).map_err(|e| (StatusCode::BAD_REQUEST, format!("undecodable body: {e}")).into_response())
}

async fn status(State(node): State<Arc<Node>>) -> Json<crate::node::NodeStatus> {
    Json(node.status())
}

async fn raft_rpc(State(node): State<Arc<Node>>, Path((shard, rpc)): Path<(ShardId, String)>, body: Bytes) -> Response {
    let Some(s) = node.shard(shard) else {
        return (StatusCode::NOT_FOUND, format!("shard {shard} not hosted")).into_response();
    };
    let r = async {
        Ok::<Response, Response>(match rpc.as_str() {
            "append" => {
                let r = s.raft.append_entries(decode(&body)?).await;
                if matches!(&r, Ok(resp) if resp.is_success()) {
                    s.heard_from_leader.store(true, std::sync::atomic::Ordering::Release);
                }
                reply(&r)
            }
            "vote" => reply(&s.raft.vote(decode(&body)?).await),
            "snapshot" => reply(&s.raft.install_snapshot(decode(&body)?).await),
            _ => (StatusCode::NOT_FOUND, "unknown rpc").into_response(),
        })
    };
    r.await.unwrap_or_else(|e| e)
}

async fn serve(State(node): State<Arc<Node>>, Path(shard): Path<ShardId>, body: Bytes) -> Response {
    let req: ShardRequest = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // The forwarding node gives up at its own deadline; do not outlive it by much.
    let out: Result<ShardResponse, ServeError> =
        match tokio::time::timeout(node.config.request_timeout, node.serve_local(shard, req)).await {
            Ok(r) => r,
            Err(_) => Err(ServeError::Retry("timed out waiting for a quorum".into())),
        };
    reply(&out)
}
