//! Health, readiness, metrics and the cluster view.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::api::auth::{Access, Op};
use crate::api::error::{error_body, ApiError};
use crate::node::Node;
use ringkv_api::v1::{ClusterNode, ClusterView, RingShard};

/// `GET /healthz`: the process is alive and serving HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: every hosted shard has a leader, and each this node votes in has applied
/// what it knows is committed (see [`Node::ready`] for the lag tolerated once caught up).
pub async fn readyz(State(node): State<Arc<Node>>) -> Response {
    match node.ready() {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, Json(error_body("not_ready", &why))).into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(node): State<Arc<Node>>) -> Response {
    node.refresh_metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], node.metrics.render()).into_response()
}

/// `GET /v1/cluster`: this node's replicas (`shards`: members, leaders, terms, indexes)
/// and the whole ring as its routes know it (`ring`: every shard's slice, epoch,
/// members and leader, hosted here or not). Admin only, with `--auth-tokens`.
pub async fn cluster(State(node): State<Arc<Node>>, access: Access) -> Result<Json<ClusterView>, ApiError> {
    access.require(Op::Admin)?;
    let ring = node.ring();
    let routes: Vec<RingShard> = node
        .router
        .ring_shards()
        .into_iter()
        .filter_map(|id| node.router.route(id).map(|r| (id, r)))
        .map(|(id, r)| RingShard {
            id,
            modulus: r.modulus,
            epoch: r.epoch,
            members: r.members,
            leader: r.leader,
            hosted_here: node.shards.get(id).is_some(),
        })
        .collect();
    let replication = routes.iter().map(|r| r.members.len()).max();
    let nodes: Vec<ClusterNode> = node
        .peers
        .ids()
        .into_iter()
        .map(|id| ClusterNode { id, internal_addr: node.peers.addr(id).unwrap_or_default() })
        .collect();
    Ok(Json(ClusterView {
        node_id: node.id,
        epoch: ring.epoch,
        shard_count: ring.shard_count,
        replication_factor: replication.unwrap_or(nodes.len()),
        nodes,
        shards: ring.shards,
        ring: routes,
    }))
}
