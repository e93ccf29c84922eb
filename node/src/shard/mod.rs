//! One shard replica: an openraft instance over the shared WAL and its state machine.

pub mod events;
pub mod kv;
pub mod lifecycle;
pub mod log_store;
pub mod proposer;
pub mod read_index;
pub mod snapshot_body;
pub mod snapshot_file;
pub mod state_machine;
pub mod types;

use parking_lot::RwLock;
use std::path::Path;
use std::sync::Arc;

use crate::ring::{NodeId, ShardId};
use crate::wal::{ShardLog, Wal};
use kv::{KvState, Slice};
use lifecycle::BackgroundLimits;
use log_store::LogStore;
use state_machine::{SplitHost, StateMachineStore};
use types::{Raft, StorageError};

/// A shard hosted by this node.
pub struct Shard {
    pub id: ShardId,
    pub raft: Raft,
    /// Read handle on the applied state.
    pub state: Arc<RwLock<KvState>>,
    /// Change history for watchers.
    pub events: events::EventLog,
    pub log: LogStore,
    /// Set once this replica has accepted an AppendEntries since start: only then does
    /// it know the leader's commit index (a restarted follower may otherwise look caught
    /// up against the stale commit index it recovered).
    pub heard_from_leader: std::sync::atomic::AtomicBool,
    /// Set once this replica has applied everything it knew was committed since start;
    /// from then on readiness tolerates apply trailing commit (see `Node::ready`).
    pub caught_up: std::sync::atomic::AtomicBool,
    /// Batches client commands into Raft proposals.
    pub proposer: proposer::Proposer,
    /// Batches read-index confirmations for linearizable reads.
    pub read_index: read_index::ReadIndex,
    /// Set on the leader while it hands leadership to another replica: it serves
    /// nothing (routers retry) so that no append renews the followers' leader lease.
    pub transferring: std::sync::atomic::AtomicBool,
    /// Size of this replica's latest snapshot (WAL compaction weighs it).
    pub snapshot_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// When this replica last heard from a leader of its group (or granted a vote):
    /// what its elections and its answers to pre-votes go by (see `node/election.rs`).
    pub leader_contact: LeaderContact,
}

/// When a replica last heard from its leader, readable and settable from any task.
pub struct LeaderContact {
    base: std::time::Instant,
    /// Milliseconds after `base`.
    at_ms: std::sync::atomic::AtomicU64,
    /// Set when this replica's last pre-vote reached fewer than a majority of its voters
    /// (itself included), cleared when it hears from a leader or reaches a majority.
    minority: std::sync::atomic::AtomicBool,
}

impl LeaderContact {
    /// Counts from now: a replica just opened waits a whole election timeout before it
    /// campaigns, as Raft's followers do.
    pub fn new() -> Self {
        Self {
            base: std::time::Instant::now(),
            at_ms: std::sync::atomic::AtomicU64::new(0),
            minority: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Heard from the leader (or granted a vote) just now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.fetch_max(ms, std::sync::atomic::Ordering::AcqRel);
        self.minority.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Records whether the last pre-vote reached a majority of the voters.
    pub fn set_minority(&self, cut_off: bool) {
        self.minority.store(cut_off, std::sync::atomic::Ordering::Release);
    }

    /// Whether the last pre-vote (since the leader was last heard from) reached fewer
    /// than a majority of the voters.
    pub fn in_minority(&self) -> bool {
        self.minority.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How long ago that was.
    pub fn silent_for(&self) -> std::time::Duration {
        let at = std::time::Duration::from_millis(self.at_ms.load(std::sync::atomic::Ordering::Acquire));
        self.base.elapsed().saturating_sub(at)
    }
}

impl Default for LeaderContact {
    fn default() -> Self {
        Self::new()
    }
}

/// What every shard of a node is opened with.
pub struct ShardDeps {
    pub node_id: NodeId,
    pub raft_config: Arc<openraft::Config>,
    pub wal: Wal,
    /// Woken when the shard applies changes (watchers).
    pub changes: Arc<events::Notify>,
    /// Told when a split creates a new shard on this node.
    pub host: Arc<dyn SplitHost>,
    /// How much background work (leftover sweeps, split children's first snapshots)
    /// the node's shards run at once.
    pub limits: Arc<BackgroundLimits>,
}

/// Errors opening a shard.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("shard {shard}: {source}")]
    Storage { shard: ShardId, source: std::io::Error },
    #[error("shard {shard}: raft: {message}")]
    Raft { shard: ShardId, message: String },
    /// The replica's log lacks committed entries its snapshot does not cover, so Raft
    /// cannot bring its state up to what it acknowledged. `forgotten`: no purge explains
    /// the gap, so the entries were dropped by retiring the replica (see
    /// `node/hosting.rs` for what a restart does then).
    #[error("shard {shard}: {reason}")]
    LostEntries { shard: ShardId, reason: String, forgotten: bool, epoch: u64 },
}

impl Shard {
    /// Opens a shard's replica: its log from `recovered`, its state from the snapshot in
    /// `dir` (or `initial`, the content of that snapshot when the caller has it in
    /// memory), owning `slice` when there is neither. `net` reaches the other replicas:
    /// the node's to give (a shard knows nothing of the transport).
    pub async fn open<N: openraft::network::RaftNetworkFactory<types::TypeConfig>>(
        id: ShardId,
        dir: &Path,
        recovered: Option<ShardLog>,
        slice: Slice,
        initial: Option<KvState>,
        with: &ShardDeps,
        net: N,
    ) -> Result<Self, OpenError> {
        let ShardDeps { node_id, raft_config, wal, changes, host, limits } = with;
        let (node_id, wal, notify) = (*node_id, wal.clone(), changes.clone());
        let mut log = LogStore::open(id, wal, recovered).map_err(|source| OpenError::Storage { shard: id, source })?;
        // A split's new shard has voted at its origin term (see `origin_term`) before
        // anything else: its first election goes above it.
        if let Some(child) = initial.as_ref() {
            use openraft::storage::RaftLogStorage;
            let term = types::origin_term(child.slice.epoch);
            let raft_err = |e: StorageError| OpenError::Raft { shard: id, message: e.to_string() };
            let vote = log.read_vote().await.map_err(raft_err)?;
            if vote.is_none_or(|v| v.leader_id().term < term) {
                let origin = types::Vote { leader_id: openraft::LeaderId { term, node_id: 0 }, committed: false };
                log.save_vote(&origin).await.map_err(raft_err)?;
            }
        }
        let sm = match initial {
            Some(state) => {
                StateMachineStore::with_state(id, dir.to_path_buf(), notify, state, host.clone(), limits.clone())
            }
            None => StateMachineStore::open(id, dir.to_path_buf(), notify, slice, host.clone(), limits.clone())
                .map_err(|source| OpenError::Storage { shard: id, source })?,
        };
        let state = sm.state();
        // openraft re-applies the log from the snapshot up to the committed index on
        // start; a gap there would fail deep inside it, so it is named here instead.
        let (applied, epoch) = {
            let st = state.read();
            (st.last_applied.map(|l| l.index), st.slice.epoch)
        };
        if let Some(gap) = log.committed_gap(applied) {
            return Err(OpenError::LostEntries { shard: id, reason: gap.reason, forgotten: gap.forgotten, epoch });
        }
        let vote_term = {
            use openraft::storage::RaftLogStorage;
            let vote = log.read_vote().await.map_err(|e| OpenError::Raft { shard: id, message: e.to_string() })?;
            vote.map_or(0, |v| v.leader_id().term)
        };
        let read_index = read_index::ReadIndex::with_floor(vote_term, log.last_index());
        let events = sm.events();
        let snapshot_bytes = sm.snapshot_bytes();
        let raft = Raft::new(node_id, raft_config.clone(), net, log.clone(), sm)
            .await
            .map_err(|e| OpenError::Raft { shard: id, message: e.to_string() })?;
        let proposer = proposer::Proposer::start(raft.clone());
        Ok(Self {
            id,
            raft,
            state,
            events,
            log,
            heard_from_leader: std::sync::atomic::AtomicBool::new(false),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            proposer,
            read_index,
            transferring: std::sync::atomic::AtomicBool::new(false),
            snapshot_bytes,
            leader_contact: LeaderContact::new(),
        })
    }

    /// Stops the Raft group, within `bound` if given. Log writes still waiting for disk
    /// space fail first (openraft's shutdown waits for its core, which waits for them).
    /// Past `bound` the group is left behind (its tasks end with the process), so that a
    /// stopping node can go on and close the WAL; a replica being retired passes no
    /// bound, since its log is forgotten next and nothing of the group may write after.
    pub async fn shutdown(&self, bound: Option<std::time::Duration>) {
        self.log.stop_waiting();
        let r = match bound {
            Some(bound) => match tokio::time::timeout(bound, self.raft.shutdown()).await {
                Ok(r) => r,
                Err(_) => {
                    return tracing::warn!(shard = self.id, ?bound, "raft shutdown timed out; going on without it")
                }
            },
            None => self.raft.shutdown().await,
        };
        if let Err(e) = r {
            tracing::warn!(shard = self.id, error = %e, "raft shutdown");
        }
    }

    /// The slice of the ring this replica's applied state owns.
    pub fn slice(&self) -> Slice {
        self.read().slice
    }

    /// Read access to the applied state.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, KvState> {
        self.state.read()
    }

    /// The leader this replica currently knows of. A leader that has not heard from a
    /// quorum for `stale_after` does not count itself: openraft 0.9 leaders never step
    /// down on their own, and one cut off from its followers must not look healthy. Nor
    /// does a follower count a leader it has not heard from for that long: its elections
    /// wait for a pre-vote majority (`node/election.rs`), so without one it keeps the
    /// last leader's name in its metrics however long that leader is gone.
    pub fn leader_checked(&self, me: NodeId, stale_after: std::time::Duration) -> Option<NodeId> {
        // Looked at in place: this runs for every request, and the metrics are large.
        let m = self.raft.metrics();
        let m = m.borrow();
        match m.current_leader {
            Some(l) if l == me && is_stale_leader(&m, stale_after) => None,
            Some(l) if l != me && self.leader_contact.silent_for() > stale_after => None,
            other => other,
        }
    }

    /// Why this replica knows it cannot reach a quorum of its voters, if it does: as the
    /// leader, no quorum has answered it for `stale_after`; otherwise, it has not heard
    /// from a leader for that long and its last pre-vote reached fewer than a majority.
    /// (A replica that reaches a majority but not the leader does not count: an election
    /// there will give the shard a leader.)
    pub fn cut_off(&self, me: NodeId, stale_after: std::time::Duration) -> Option<&'static str> {
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.membership_config.membership().voter_ids().take(2).count() < 2 {
            return None;
        }
        if m.state == openraft::ServerState::Leader {
            return self
                .leads_without_quorum(&m, stale_after)
                .then_some("this node leads the shard but no quorum of its voters has answered it lately");
        }
        let voter = m.membership_config.membership().voter_ids().any(|v| v == me);
        (voter && self.leader_contact.in_minority() && self.leader_contact.silent_for() > stale_after)
            .then_some("this node has lost contact with the shard's leader and cannot reach a quorum of its voters")
    }

    /// Whether this replica (its metrics `m`) leads but no quorum has answered it for
    /// `stale_after`, not counting a leader that took office (saved its vote) less than
    /// that long ago: a new leader has no quorum's answer yet.
    pub fn leads_without_quorum(
        &self,
        m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
        stale_after: std::time::Duration,
    ) -> bool {
        is_stale_leader(m, stale_after) && self.log.vote_saved_at().is_none_or(|at| at.elapsed() >= stale_after)
    }

    /// The leader this replica currently knows of (unchecked).
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether `node` is a voter of this replica's group as the replica knows it: not an
    /// empty replica opened for a move (no membership yet) nor a learner catching up.
    pub fn is_voter(&self, node: NodeId) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        let voter = m.membership_config.membership().voter_ids().any(|v| v == node);
        voter
    }
}

/// The last log index a leader knows `node` holds (`None`: not replicated to yet).
pub fn matched_index(m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>, node: NodeId) -> Option<u64> {
    m.replication.as_ref().and_then(|r| r.get(&node).copied().flatten()).map(|l| l.index)
}

/// Whether a replica that believes it leads has lost touch with its quorum.
pub fn is_stale_leader(
    m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
    stale_after: std::time::Duration,
) -> bool {
    m.state == openraft::ServerState::Leader
        && m.membership_config.membership().voter_ids().count() > 1
        && m.millis_since_quorum_ack.is_none_or(|ms| ms > stale_after.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::log_store::LogStore;
    use super::state_machine::StateMachineStore;
    use super::types::{StorageError, TypeConfig};
    use crate::wal::{Wal, WalOptions};

    struct Builder;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::read(&e))?;
            let (wal, mut rec) = Wal::open(&dir.path().join("wal"), WalOptions::default())
                .map_err(|e| openraft::StorageIOError::read(&e))?;
            let log = LogStore::open(0, wal, rec.shards.remove(&0)).map_err(|e| openraft::StorageIOError::read(&e))?;
            let sm = StateMachineStore::open(
                0,
                dir.path().join("sm"),
                Default::default(),
                Default::default(),
                std::sync::Arc::new(super::lifecycle::NoSplits),
                Default::default(),
            )
            .map_err(|e| openraft::StorageIOError::read(&e))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage conformance suite, run against our WAL-backed log store and
    /// state machine.
    #[test]
    fn log_store_and_state_machine_pass_openraft_suite() {
        openraft::testing::Suite::test_all(Builder).expect("openraft storage suite");
    }
}
