//! The admin API on the internal port: what the planning library drives to reshard and
//! rebalance. Every operation concerns one shard and is idempotent, so a driver that
//! died between steps simply asks again.
//!
//! - `GET  /internal/ring`: this node's replicas (slice, members, leader, indexes).
//! - `POST /internal/admin/shards/{s}/split?modulus=M&epoch=E` (the shard's leader):
//!   split `s` so that it owns `hash mod M == s`; the new shard `s + M/2` is created on
//!   every replica. A shard already at `M` answers at once.
//! - `POST /internal/admin/shards/{s}/freeze?epoch=E` (the shard's leader): freeze `s`
//!   as a merge's donor (see [`merge`]).
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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::{BasicNode, ChangeMembers};
use ringkv_api::admin::{routes, AddReplicaQuery, AdminRequest, CampaignQuery, FreezeQuery, MergeQuery, SplitQuery};
use serde_json::json;

use crate::node::Node;
use crate::ring::{NodeId, Ring, ShardId};
use crate::shard::proposer::ProposeError;
use crate::shard::types::Command;
use crate::shard::{matched_index, Shard};

pub mod merge;

/// Why an admin operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("this node does not lead shard {shard} (leader: {leader:?})")]
    NotLeader { shard: ShardId, leader: Option<NodeId> },
    #[error("shard {0} is not hosted on this node")]
    NotHosted(ShardId),
    #[error("{0}")]
    Bad(String),
    #[error("{0}")]
    Failed(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code, leader) = match &self {
            AdminError::NotLeader { leader, .. } => (StatusCode::MISDIRECTED_REQUEST, "not_leader", *leader),
            AdminError::NotHosted(_) => (StatusCode::NOT_FOUND, "not_hosted", None),
            AdminError::Bad(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            AdminError::Failed(_) => (StatusCode::SERVICE_UNAVAILABLE, "failed", None),
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
) -> Result<Json<serde_json::Value>, AdminError> {
    node.transfer_leader(shard, target).await?;
    Ok(Json(json!({ "shard": shard, "leader": target })))
}

async fn campaign(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
    Query(q): Query<CampaignQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let sh = node.shard(shard).ok_or(AdminError::NotHosted(shard))?;
    let patience = q.within_ms.map(Duration::from_millis).unwrap_or(node.config.election_timeout * 4);
    let deadline = tokio::time::Instant::now() + patience.min(Duration::from_secs(30));
    if let Some(want) = q.log_index {
        let mut rx = sh.raft.metrics();
        let caught_up = tokio::time::timeout_at(deadline, rx.wait_for(|m| m.last_log_index.unwrap_or(0) >= want)).await;
        if !matches!(caught_up, Ok(Ok(_))) {
            return Err(AdminError::Failed(format!(
                "node {}'s log did not reach index {want} of shard {shard}",
                node.id
            )));
        }
    }
    while tokio::time::Instant::now() < deadline {
        if sh.leader() == Some(node.id) {
            return Ok(Json(json!({ "shard": shard, "leader": node.id })));
        }
        sh.raft.trigger().elect().await.map_err(|e| AdminError::Failed(e.to_string()))?;
        let mut rx = sh.raft.metrics();
        let me = node.id;
        let _ = tokio::time::timeout(Duration::from_millis(50), rx.wait_for(|m| m.current_leader == Some(me))).await;
    }
    Err(AdminError::Failed(format!("node {} did not win shard {shard}'s election", node.id)))
}

async fn retire(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
) -> Result<Json<serde_json::Value>, AdminError> {
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
) -> Result<Json<serde_json::Value>, AdminError> {
    let child = node.split_shard(shard, q.modulus, q.epoch).await?;
    Ok(Json(json!({ "shard": shard, "modulus": q.modulus, "new_shard": child })))
}

async fn freeze(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
    Query(q): Query<FreezeQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let revision = node.freeze_shard(shard, q.epoch).await?;
    Ok(Json(json!({ "shard": shard, "frozen": true, "revision": revision })))
}

async fn merge(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
    Query(q): Query<MergeQuery>,
) -> Result<Json<merge::Merged>, AdminError> {
    Ok(Json(node.merge_shards(shard, q.donor, q.epoch).await?))
}

async fn host(
    State(node): State<Arc<Node>>,
    Path(shard): Path<ShardId>,
) -> Result<Json<serde_json::Value>, AdminError> {
    node.host_shard(shard).await.map_err(|e| AdminError::Failed(e.to_string()))?;
    Ok(Json(json!({ "shard": shard, "hosted": true })))
}

async fn add_replica(
    State(node): State<Arc<Node>>,
    Path((shard, target)): Path<(ShardId, NodeId)>,
    Query(q): Query<AddReplicaQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    node.add_replica(shard, target, q.addr).await?;
    Ok(Json(json!({ "shard": shard, "node": target, "role": "voter" })))
}

async fn remove_replica(
    State(node): State<Arc<Node>>,
    Path((shard, target)): Path<(ShardId, NodeId)>,
) -> Result<Json<serde_json::Value>, AdminError> {
    node.remove_replica(shard, target).await?;
    Ok(Json(json!({ "shard": shard, "node": target, "removed": true })))
}

/// How long an admin call waits for its change to take effect.
const ADMIN_WAIT: Duration = Duration::from_secs(30);

/// How long a leader transfer lets its target catch up before pausing proposals, and how
/// far behind (in entries) the target may be when the pause starts.
const TRANSFER_CATCH_UP: Duration = Duration::from_secs(10);
const TRANSFER_SLACK_ENTRIES: u64 = 64;

impl Node {
    /// This node's replica of `shard`, which must lead it.
    fn led(&self, shard: ShardId) -> Result<Arc<Shard>, AdminError> {
        let sh = self.shard(shard).ok_or(AdminError::NotHosted(shard))?;
        match sh.leader_checked(self.id, self.leader_stale_after()) {
            Some(l) if l == self.id => Ok(sh),
            leader => Err(AdminError::NotLeader { shard, leader }),
        }
    }

    /// Splits `shard` to `modulus` (twice its own) at ring `epoch` and waits until the new
    /// shard is open here and has a leader. Returns the new shard's id.
    pub async fn split_shard(&self, shard: ShardId, modulus: u32, epoch: u64) -> Result<ShardId, AdminError> {
        if modulus < 2 || !modulus.is_power_of_two() || modulus > crate::ring::MAX_SHARDS {
            return Err(AdminError::Bad(format!("modulus must be a power of two in 2..={}", crate::ring::MAX_SHARDS)));
        }
        let child = shard + modulus / 2;
        if child >= modulus {
            return Err(AdminError::Bad(format!("shard {shard} does not exist at modulus {}", modulus / 2)));
        }
        let sh = self.led(shard)?;
        let current = sh.slice().modulus;
        if current < modulus {
            if current * 2 != modulus {
                return Err(AdminError::Bad(format!(
                    "shard {shard} is at modulus {current}; a split goes to {}",
                    current * 2
                )));
            }
            match sh.proposer.propose(Command::Split { modulus, epoch }).await {
                Ok(r) if r.ok => {}
                Ok(_) => return Err(AdminError::Failed(format!("shard {shard} refused the split"))),
                Err(ProposeError::NotLeader(leader)) => return Err(AdminError::NotLeader { shard, leader }),
                Err(ProposeError::Retry(m)) => return Err(AdminError::Failed(m)),
            }
        }
        // The new shard opens asynchronously after the split applies.
        let deadline = tokio::time::Instant::now() + ADMIN_WAIT;
        loop {
            if let Some(c) = self.shard(child) {
                if c.leader().is_some() {
                    return Ok(child);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AdminError::Failed(format!("new shard {child} has no leader yet")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Adds `target` to `shard`: as a learner first (it receives a snapshot and the
    /// log), then, once caught up, as a voter. Its replica must be open there
    /// (`POST .../host` on the target).
    pub async fn add_replica(&self, shard: ShardId, target: NodeId, addr: String) -> Result<(), AdminError> {
        let sh = self.led(shard)?;
        let membership = sh.raft.metrics().borrow().membership_config.membership().clone();
        if membership.voter_ids().any(|v| v == target) {
            return Ok(());
        }
        if addr.is_empty() {
            return Err(AdminError::Bad("addr (the target's internal host:port) is required".into()));
        }
        self.peers.learn(target, addr.clone());
        let change = tokio::time::timeout(ADMIN_WAIT, async {
            sh.raft.add_learner(target, BasicNode::new(addr), true).await.map_err(|e| raft_error(shard, e))?;
            let voters = BTreeSet::from([target]);
            sh.raft
                .change_membership(ChangeMembers::AddVoterIds(voters), false)
                .await
                .map_err(|e| raft_error(shard, e))?;
            crate::crash_point!("replica-added");
            Ok::<(), AdminError>(())
        });
        change.await.map_err(|_| {
            AdminError::Failed(format!("adding node {target} to shard {shard} did not finish in {ADMIN_WAIT:?}"))
        })?
    }

    /// Removes `target` from `shard` (voter or learner).
    pub async fn remove_replica(&self, shard: ShardId, target: NodeId) -> Result<(), AdminError> {
        let sh = self.led(shard)?;
        let membership = sh.raft.metrics().borrow().membership_config.membership().clone();
        let is_voter = membership.voter_ids().any(|v| v == target);
        let is_node = membership.nodes().any(|(id, _)| *id == target);
        if !is_node {
            return Ok(());
        }
        if is_voter && membership.voter_ids().count() == 1 {
            return Err(AdminError::Bad(format!("node {target} is shard {shard}'s only voter")));
        }
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([target]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([target]))
        };
        let r = tokio::time::timeout(ADMIN_WAIT, sh.raft.change_membership(change, false)).await;
        r.map_err(|_| AdminError::Failed(format!("removing node {target} from shard {shard} timed out")))?
            .map_err(|e| raft_error(shard, e))?;
        crate::crash_point!("replica-removed");
        // Best effort: the removed node also retires it when the driver asks, or on its own
        // once it sees a membership without itself.
        if let Err(e) = self.peers.admin(target, &AdminRequest::Retire { shard }, Duration::from_secs(5)).await {
            tracing::info!(shard, target, error = %e, "could not tell the removed node to retire its replica");
        }
        Ok(())
    }

    /// Hands leadership of `shard` to `target` (see the module comment).
    pub async fn transfer_leader(&self, shard: ShardId, target: NodeId) -> Result<(), AdminError> {
        if target == self.id {
            return self.led(shard).map(|_| ());
        }
        let sh = self.led(shard)?;
        let m = sh.raft.metrics().borrow().clone();
        if !m.membership_config.membership().voter_ids().any(|v| v == target) {
            return Err(AdminError::Bad(format!("node {target} is not a voter of shard {shard}")));
        }
        // openraft's leader lease is `election_timeout_max` (4/3 of the configured timeout).
        let lease = self.config.election_timeout * 4 / 3 + Duration::from_millis(50);
        let voters = m.membership_config.membership().voter_ids().count();
        // With three voters this leader's vote elects the target, but only once its own
        // lease (counted from when it took office) has lapsed: wait for that while still
        // serving, so that clients do not wait.
        let quick = voters <= 3;
        if let (true, Some(since)) = (quick, sh.log.vote_saved_at()) {
            tokio::time::sleep_until((since + lease).into()).await;
        }
        // Let the target catch up while this leader still serves, so that the pause below
        // covers only the last few entries. A target that had just restarted (a rolling
        // update: the operator moves leaders back onto the new pod) made clients wait up
        // to 2.5 s with proposals paused while it caught up. Bounded: after it, the paused
        // wait below decides.
        let serving_until = tokio::time::Instant::now() + TRANSFER_CATCH_UP;
        while tokio::time::Instant::now() < serving_until {
            let m = sh.raft.metrics().borrow().clone();
            let matched = matched_index(&m, target).unwrap_or(0);
            if matched + TRANSFER_SLACK_ENTRIES >= m.last_log_index.unwrap_or(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sh = self.led(shard)?;
        use std::sync::atomic::Ordering;
        sh.transferring.store(true, Ordering::Release);
        sh.raft.runtime_config().heartbeat(false);
        let outcome = async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            // No proposal may be in Raft while the target catches up: an entry appended
            // after the check would leave the target's log shorter than the others' and
            // they would refuse it their votes.
            let paused = tokio::time::timeout_at(deadline, sh.proposer.pause()).await;
            let _paused =
                paused.map_err(|_| AdminError::Failed(format!("shard {shard}'s proposals did not settle")))?;
            // The target must hold every entry, or the others would not vote for it.
            let last = loop {
                let m = sh.raft.metrics().borrow().clone();
                let matched = matched_index(&m, target);
                if matched.is_some() && matched == m.last_log_index {
                    break m.last_log_index.unwrap_or(0);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(AdminError::Failed(format!("node {target} is not caught up on shard {shard}")));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            // Fast path: a leader whose own lease has lapsed grants a higher-term vote,
            // so with three voters the target wins at once. Followers refuse votes while
            // the lease from our last append lasts: with more voters (or if the fast path
            // fails) the target campaigns again once that has lapsed.
            crate::crash_point!("leader-transfer");
            let lapsed = tokio::time::Instant::now() + lease;
            let query = CampaignQuery { within_ms: Some(300), log_index: Some(last) };
            let fast = AdminRequest::Campaign { shard, query };
            if quick && self.peers.admin(target, &fast, Duration::from_secs(2)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep_until(lapsed).await;
            let query = CampaignQuery { within_ms: None, log_index: Some(last) };
            self.peers
                .admin(target, &AdminRequest::Campaign { shard, query }, self.config.election_timeout * 5)
                .await
                .map_err(|e| AdminError::Failed(e.to_string()))?;
            Ok(())
        }
        .await;
        sh.raft.runtime_config().heartbeat(true);
        sh.transferring.store(false, Ordering::Release);
        outcome
    }

    /// Closes and deletes this node's replica of `shard` if the shard's leader no longer
    /// counts this node as a member. Returns whether a replica was retired.
    pub async fn retire_if_removed(&self, shard: ShardId) -> Result<bool, AdminError> {
        let Some(sh) = self.shard(shard) else { return Ok(false) };
        let m = sh.raft.metrics().borrow().clone();
        let leader = m.current_leader.filter(|l| *l != self.id);
        // Ask the leader this replica last knew, or else any member.
        let mut candidates: Vec<NodeId> = leader.into_iter().collect();
        candidates.extend(m.membership_config.membership().voter_ids().filter(|v| *v != self.id));
        for peer in candidates {
            let Ok(ring) =
                self.peers.get_json::<Ring>(peer, ringkv_api::admin::routes::RING, Duration::from_secs(2)).await
            else {
                continue;
            };
            let Some(info) = ring.shards.iter().find(|s| s.id == shard && s.leader == Some(peer)) else { continue };
            if info.members.contains(&self.id) || info.learners.contains(&self.id) {
                return Err(AdminError::Bad(format!("node {} is still a member of shard {shard}", self.id)));
            }
            self.retire(shard).await.map_err(|e| AdminError::Failed(e.to_string()))?;
            return Ok(true);
        }
        Err(AdminError::Failed(format!("no leader of shard {shard} could confirm the removal")))
    }
}

fn raft_error(
    shard: ShardId,
    e: openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, BasicNode>>,
) -> AdminError {
    use openraft::error::{ClientWriteError, RaftError};
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            AdminError::NotLeader { shard, leader: f.leader_id }
        }
        other => AdminError::Failed(format!("shard {shard}: {other}")),
    }
}
