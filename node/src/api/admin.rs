//! The admin API on the internal port: what the planning library drives to reshard and
//! rebalance. The routes only decode, call the node's resharding part
//! (`node::reshard`) and map its errors to status codes. Every operation concerns one
//! shard and is idempotent, so a driver that died between steps simply asks again.
//!
//! - `GET  /internal/ring`: this node's replicas (slice, members, leader, indexes).
//! - `POST /internal/admin/shards/{s}/split?modulus=M&epoch=E` (the shard's leader):
//!   split `s` so that it owns `hash mod M == s`; the new shard `s + M/2` is created on
//!   every replica. A shard already at `M` answers at once.
//! - `POST /internal/admin/shards/{s}/freeze?epoch=E` (the shard's leader): freeze `s`
//!   as a merge's donor (see `node::reshard::merge`).
//! - `POST /internal/admin/shards/{r}/merge?donor=D&epoch=E` (the receiver's leader,
//!   which must host a replica of `D`): merge `D` into `r`; answers once done.
//! - `POST /internal/admin/shards/{s}/host`: open an empty replica of `s` here, for a
//!   leader to fill (the first half of adding a replica on this node).
//! - `POST /internal/admin/shards/{s}/replicas/{node}?addr=HOST:PORT` (leader): add
//!   `node` as a learner, wait until it has caught up, promote it to voter.
//! - `DELETE /internal/admin/shards/{s}/replicas/{node}` (leader): remove it, then tell
//!   the removed node to close and delete its replica (a removed replica never learns
//!   of its removal through Raft: the leader stops talking to it).
//! - `POST /internal/admin/shards/{s}/leader/{node}` (leader): hand leadership to
//!   `node`, a caught-up voter. openraft 0.9 has no leader transfer, so it is done by
//!   hand: the leader stops serving, proposing and heartbeating, waits until the target
//!   holds its last entry and asks it to `campaign`. The old leader's own lease runs
//!   from its election, so it grants the vote at once and, with three voters, the
//!   target wins within a round trip. Otherwise (more voters, or a leader elected less
//!   than a lease ago) the target campaigns again once the followers' lease from the
//!   last append lapses (about 0.9 s). Requests wait meanwhile, retried by the routers.
//! - `POST /internal/admin/shards/{s}/campaign[?within_ms=T&log_index=I]`: start
//!   elections for `s` on this node (once its log reaches `I`) until it leads it.
//! - `POST /internal/admin/shards/{s}/retire`: close and delete this node's replica of
//!   `s`, provided the shard's current membership (as its leader reports it) no longer
//!   includes this node.
//!
//! Errors are JSON `{"error": {"code", "message"}, "leader": id?}`; `not_leader` (421)
//! carries the leader this node knows of.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ringkv_api::admin::{routes, AddReplicaQuery, CampaignQuery, FreezeQuery, MergeQuery, SplitQuery};
use serde_json::json;

use crate::node::reshard::{merge::Merged, ReshardError};
use crate::node::Node;
use crate::ring::{NodeId, Ring, ShardId};

/// The one place resharding errors become statuses.
impl IntoResponse for ReshardError {
    fn into_response(self) -> Response {
        let (status, code, leader) = match &self {
            ReshardError::NotLeader { leader, .. } => (StatusCode::MISDIRECTED_REQUEST, "not_leader", *leader),
            ReshardError::NotHosted(_) => (StatusCode::NOT_FOUND, "not_hosted", None),
            ReshardError::Bad(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            ReshardError::Failed(_) => (StatusCode::SERVICE_UNAVAILABLE, "failed", None),
        };
        let body = json!({ "error": { "code": code, "message": self.to_string() }, "leader": leader });
        (status, Json(body)).into_response()
    }
}

/// The admin routes, merged into the internal router.
pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route(routes::RING, get(ring))
        .route(routes::SPLIT, post(split))
        .route(routes::FREEZE, post(freeze))
        .route(routes::MERGE, post(merge))
        .route(routes::HOST, post(host))
        .route(routes::REPLICA, post(add_replica).delete(remove_replica))
        .route(routes::RETIRE, post(retire))
        .route(routes::LEADER, post(transfer))
        .route(routes::CAMPAIGN, post(campaign))
}

async fn transfer(
    State(node): State<Arc<Node>>,
    Path((shard, target)): Path<(ShardId, NodeId)>,
) -> Result<Json<serde_json::Value>, ReshardError> {
    node.transfer_leader(shard, target).await?;
    Ok(Json(json!({ "shard": shard, "leader": target })))
}

async fn campaign(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
    Query(q): Query<CampaignQuery>,
) -> Result<Json<serde_json::Value>, ReshardError> {
    node.campaign(shard, q.within_ms.map(Duration::from_millis), q.log_index).await?;
    Ok(Json(json!({ "shard": shard, "leader": node.id })))
}

async fn retire(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
) -> Result<Json<serde_json::Value>, ReshardError> {
    let retired = node.retire_if_removed(shard).await?;
    Ok(Json(json!({ "shard": shard, "retired": retired })))
}

async fn ring(State(node): State<Arc<Node>>) -> Json<Ring> {
    Json(node.ring())
}

async fn split(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
    Query(q): Query<SplitQuery>,
) -> Result<Json<serde_json::Value>, ReshardError> {
    let child = node.split_shard(shard, q.modulus, q.epoch).await?;
    Ok(Json(json!({ "shard": shard, "modulus": q.modulus, "new_shard": child })))
}

async fn freeze(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
    Query(q): Query<FreezeQuery>,
) -> Result<Json<serde_json::Value>, ReshardError> {
    let revision = node.freeze_shard(shard, q.epoch).await?;
    Ok(Json(json!({ "shard": shard, "frozen": true, "revision": revision })))
}

async fn merge(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
    Query(q): Query<MergeQuery>,
) -> Result<Json<Merged>, ReshardError> {
    Ok(Json(node.merge_shards(shard, q.donor, q.epoch).await?))
}

async fn host(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
) -> Result<Json<serde_json::Value>, ReshardError> {
    node.host_shard(shard).await.map_err(|e| ReshardError::Failed(e.to_string()))?;
    Ok(Json(json!({ "shard": shard, "hosted": true })))
}

async fn add_replica(
    State(node): State<Arc<Node>>,
    Path((shard, target)): Path<(ShardId, NodeId)>,
    Query(q): Query<AddReplicaQuery>,
) -> Result<Json<serde_json::Value>, ReshardError> {
    node.add_replica(shard, target, q.addr).await?;
    Ok(Json(json!({ "shard": shard, "node": target, "role": "voter" })))
}

async fn remove_replica(
    State(node): State<Arc<Node>>,
    Path((shard, target)): Path<(ShardId, NodeId)>,
) -> Result<Json<serde_json::Value>, ReshardError> {
    node.remove_replica(shard, target).await?;
    Ok(Json(json!({ "shard": shard, "node": target, "removed": true })))
}
