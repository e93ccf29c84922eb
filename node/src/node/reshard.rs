//! Resharding, the part of a node the admin API drives: split a shard, merge two
//! (`merge`), add and remove replicas, hand leadership over, start an election, retire
//! a removed replica. Every operation concerns one shard and is idempotent, so a driver
//! that died between steps simply asks again. The HTTP routes and their status codes
//! are in `api::admin`; leader transfer is explained there too.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use ringkv_api::admin::{AdminRequest, CampaignQuery};

use super::Node;
use crate::ring::{NodeId, Ring, ShardId};
use crate::shard::proposer::ProposeError;
use crate::shard::types::Command;
use crate::shard::{matched_index, Shard};

pub mod merge;

/// Why a resharding operation did not happen, named for what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum ReshardError {
    /// Ask the shard's leader instead (the one this node knows of, if any).
    #[error("this node does not lead shard {shard} (leader: {leader:?})")]
    NotLeader { shard: ShardId, leader: Option<NodeId> },
    /// Ask a node that hosts a replica of the shard.
    #[error("shard {0} is not hosted on this node")]
    NotHosted(ShardId),
    /// The request is wrong or outdated: do not retry it as is.
    #[error("{0}")]
    Bad(String),
    /// It did not happen this time (no quorum, a timeout): retry.
    #[error("{0}")]
    Failed(String),
}

/// How long an admin call waits for its change to take effect.
const ADMIN_WAIT: Duration = Duration::from_secs(30);

/// How long a leader transfer lets its target catch up before pausing proposals, and how
/// far behind (in entries) the target may be when the pause starts.
const TRANSFER_CATCH_UP: Duration = Duration::from_secs(10);
const TRANSFER_SLACK_ENTRIES: u64 = 64;

impl Node {
    /// Starts elections for `shard` on this node (once its log reaches `log_index`) until
    /// it leads the shard or `patience` (default four election timeouts, at most 30 s)
    /// runs out: the last step of a leader transfer.
    pub async fn campaign(
        &self,
        shard: ShardId,
        patience: Option<Duration>,
        log_index: Option<u64>,
    ) -> Result<(), ReshardError> {
        let sh = self.shards.get(shard).ok_or(ReshardError::NotHosted(shard))?;
        let patience = patience.unwrap_or(self.config.election_timeout * 4);
        let deadline = tokio::time::Instant::now() + patience.min(Duration::from_secs(30));
        if let Some(want) = log_index {
            let mut rx = sh.raft.metrics();
            let caught_up =
                tokio::time::timeout_at(deadline, rx.wait_for(|m| m.last_log_index.unwrap_or(0) >= want)).await;
            if !matches!(caught_up, Ok(Ok(_))) {
                return Err(ReshardError::Failed(format!(
                    "node {}'s log did not reach index {want} of shard {shard}",
                    self.id
                )));
            }
        }
        while tokio::time::Instant::now() < deadline {
            if sh.leader() == Some(self.id) {
                return Ok(());
            }
            sh.raft.trigger().elect().await.map_err(|e| ReshardError::Failed(e.to_string()))?;
            let mut rx = sh.raft.metrics();
            let me = self.id;
            let _ =
                tokio::time::timeout(Duration::from_millis(50), rx.wait_for(|m| m.current_leader == Some(me))).await;
        }
        Err(ReshardError::Failed(format!("node {} did not win shard {shard}'s election", self.id)))
    }

    /// This node's replica of `shard`, which must lead it.
    fn led(&self, shard: ShardId) -> Result<Arc<Shard>, ReshardError> {
        let sh = self.shards.get(shard).ok_or(ReshardError::NotHosted(shard))?;
        match sh.leader_checked(self.id, self.leader_stale_after()) {
            Some(l) if l == self.id => Ok(sh),
            leader => Err(ReshardError::NotLeader { shard, leader }),
        }
    }

    /// Splits `shard` to `modulus` (twice its own) at ring `epoch` and waits until the new
    /// shard is open here and has a leader. Returns the new shard's id.
    pub async fn split_shard(&self, shard: ShardId, modulus: u32, epoch: u64) -> Result<ShardId, ReshardError> {
        if modulus < 2 || !modulus.is_power_of_two() || modulus > crate::ring::MAX_SHARDS {
            return Err(ReshardError::Bad(format!(
                "modulus must be a power of two in 2..={}",
                crate::ring::MAX_SHARDS
            )));
        }
        let child = shard + modulus / 2;
        if child >= modulus {
            return Err(ReshardError::Bad(format!("shard {shard} does not exist at modulus {}", modulus / 2)));
        }
        let sh = self.led(shard)?;
        let current = sh.slice().modulus;
        if current < modulus {
            if current * 2 != modulus {
                return Err(ReshardError::Bad(format!(
                    "shard {shard} is at modulus {current}; a split goes to {}",
                    current * 2
                )));
            }
            match sh.proposer.propose(Command::Split { modulus, epoch }).await {
                Ok(r) if r.ok => {}
                Ok(_) => return Err(ReshardError::Failed(format!("shard {shard} refused the split"))),
                Err(ProposeError::NotLeader(leader)) => return Err(ReshardError::NotLeader { shard, leader }),
                Err(ProposeError::Retry(m)) => return Err(ReshardError::Failed(m)),
            }
        }
        // The new shard opens asynchronously after the split applies.
        let deadline = tokio::time::Instant::now() + ADMIN_WAIT;
        loop {
            if let Some(c) = self.shards.get(child) {
                if c.leader().is_some() {
                    return Ok(child);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ReshardError::Failed(format!("new shard {child} has no leader yet")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Adds `target` to `shard`: as a learner first (it receives a snapshot and the
    /// log), then, once caught up, as a voter. Its replica must be open there
    /// (`POST .../host` on the target).
    pub async fn add_replica(&self, shard: ShardId, target: NodeId, addr: String) -> Result<(), ReshardError> {
        let sh = self.led(shard)?;
        let membership = sh.raft.metrics().borrow().membership_config.membership().clone();
        if membership.voter_ids().any(|v| v == target) {
            return Ok(());
        }
        if addr.is_empty() {
            return Err(ReshardError::Bad("addr (the target's internal host:port) is required".into()));
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
            Ok::<(), ReshardError>(())
        });
        change.await.map_err(|_| {
            ReshardError::Failed(format!("adding node {target} to shard {shard} did not finish in {ADMIN_WAIT:?}"))
        })?
    }

    /// Removes `target` from `shard` (voter or learner).
    pub async fn remove_replica(&self, shard: ShardId, target: NodeId) -> Result<(), ReshardError> {
        let sh = self.led(shard)?;
        let membership = sh.raft.metrics().borrow().membership_config.membership().clone();
        let is_voter = membership.voter_ids().any(|v| v == target);
        let is_node = membership.nodes().any(|(id, _)| *id == target);
        if !is_node {
            return Ok(());
        }
        if is_voter && membership.voter_ids().count() == 1 {
            return Err(ReshardError::Bad(format!("node {target} is shard {shard}'s only voter")));
        }
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([target]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([target]))
        };
        let r = tokio::time::timeout(ADMIN_WAIT, sh.raft.change_membership(change, false)).await;
        r.map_err(|_| ReshardError::Failed(format!("removing node {target} from shard {shard} timed out")))?
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
    pub async fn transfer_leader(&self, shard: ShardId, target: NodeId) -> Result<(), ReshardError> {
        if target == self.id {
            return self.led(shard).map(|_| ());
        }
        let sh = self.led(shard)?;
        let m = sh.raft.metrics().borrow().clone();
        if !m.membership_config.membership().voter_ids().any(|v| v == target) {
            return Err(ReshardError::Bad(format!("node {target} is not a voter of shard {shard}")));
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
                paused.map_err(|_| ReshardError::Failed(format!("shard {shard}'s proposals did not settle")))?;
            // The target must hold every entry, or the others would not vote for it.
            let last = loop {
                let m = sh.raft.metrics().borrow().clone();
                let matched = matched_index(&m, target);
                if matched.is_some() && matched == m.last_log_index {
                    break m.last_log_index.unwrap_or(0);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ReshardError::Failed(format!("node {target} is not caught up on shard {shard}")));
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
                .map_err(|e| ReshardError::Failed(e.to_string()))?;
            Ok(())
        }
        .await;
        sh.raft.runtime_config().heartbeat(true);
        sh.transferring.store(false, Ordering::Release);
        outcome
    }

    /// Closes and deletes this node's replica of `shard` if the shard's leader no longer
    /// counts this node as a member. Returns whether a replica was retired.
    pub async fn retire_if_removed(&self, shard: ShardId) -> Result<bool, ReshardError> {
        let Some(sh) = self.shards.get(shard) else { return Ok(false) };
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
                return Err(ReshardError::Bad(format!("node {} is still a member of shard {shard}", self.id)));
            }
            self.retire(shard).await.map_err(|e| ReshardError::Failed(e.to_string()))?;
            return Ok(true);
        }
        Err(ReshardError::Failed(format!("no leader of shard {shard} could confirm the removal")))
    }
}

fn raft_error(
    shard: ShardId,
    e: openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, BasicNode>>,
) -> ReshardError {
    use openraft::error::{ClientWriteError, RaftError};
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ReshardError::NotLeader { shard, leader: f.leader_id }
        }
        other => ReshardError::Failed(format!("shard {shard}: {other}")),
    }
}
