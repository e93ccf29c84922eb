//! The node's shard set: the replicas it hosts, and what hosting them takes — the
//! record in `ring.json` and the split relay the state machines report to
//! (`hosting.rs`), the WAL state of shards not open yet, the lock that serialises
//! opening and retiring, and the replicas not allowed to campaign yet.

use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::hosting::{RingChange, SplitRelay};
use crate::ring::ShardId;
use crate::shard::{Shard, ShardDeps};

/// The replicas hosted here (see the module comment).
pub struct ShardSet {
    replicas: RwLock<BTreeMap<ShardId, Arc<Shard>>>,
    /// What every replica is opened with (WAL, Raft config, the split relay).
    pub(super) deps: ShardDeps,
    pub(super) relay: Arc<SplitRelay>,
    /// WAL state of shards not hosted at start, until a replayed split opens them.
    pub(super) unclaimed: Mutex<BTreeMap<ShardId, crate::wal::ShardLog>>,
    /// The relay's reports, taken once by the task that opens and retires replicas.
    pub(super) changes: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<RingChange>>>,
    /// Serialises changes to the hosted set and `ring.json`.
    pub(super) lock: tokio::sync::Mutex<()>,
    /// Replicas that came back from disk and may not campaign yet (see
    /// `Node::release_elections`).
    pub(super) held_elections: Mutex<Vec<ShardId>>,
}

impl ShardSet {
    pub(super) fn new(
        replicas: BTreeMap<ShardId, Arc<Shard>>,
        deps: ShardDeps,
        relay: Arc<SplitRelay>,
        unclaimed: BTreeMap<ShardId, crate::wal::ShardLog>,
        changes: tokio::sync::mpsc::UnboundedReceiver<RingChange>,
        held_elections: Vec<ShardId>,
    ) -> Self {
        Self {
            replicas: RwLock::new(replicas),
            deps,
            relay,
            unclaimed: Mutex::new(unclaimed),
            changes: Mutex::new(Some(changes)),
            lock: tokio::sync::Mutex::new(()),
            held_elections: Mutex::new(held_elections),
        }
    }

    /// The hosted replica of `shard`.
    pub fn get(&self, shard: ShardId) -> Option<Arc<Shard>> {
        self.replicas.read().get(&shard).cloned()
    }

    /// Every hosted replica.
    pub fn list(&self) -> Vec<Arc<Shard>> {
        self.replicas.read().values().cloned().collect()
    }

    /// Hosted replicas that belong to a group (initialised, or filled by a split or a
    /// snapshot): empty placeholders waiting for a leader are left out.
    pub fn members(&self) -> Vec<Arc<Shard>> {
        self.list()
            .into_iter()
            .filter(|s| s.raft.metrics().borrow().membership_config.membership().nodes().next().is_some())
            .collect()
    }

    /// Shards quarantined because their replica could not be opened.
    pub fn lost(&self) -> Vec<ShardId> {
        self.relay.lost.lock().iter().copied().collect()
    }

    pub(super) fn insert(&self, shard: Arc<Shard>) {
        self.replicas.write().insert(shard.id, shard);
    }

    pub(super) fn remove(&self, shard: ShardId) -> Option<Arc<Shard>> {
        self.replicas.write().remove(&shard)
    }
}
