//! The router's state: where every shard of the ring is, as this node knows it (hosted
//! here or not), fed by the local replicas, the peers' rings and shards' refusals.

use parking_lot::{RwLock, RwLockReadGuard};

use crate::ring::{Route, Routes, ShardId, ShardInfo};

/// The route table and the questions asked of it.
pub struct Router {
    table: RwLock<Routes>,
    /// The shard count the ring was bootstrapped with: where nothing is known yet, a
    /// key's shard is `shard_for(db, key, bootstrap_shards)`.
    bootstrap_shards: u32,
}

impl Router {
    pub fn new(bootstrap_shards: u32) -> Self {
        Self { table: RwLock::new(Routes::default()), bootstrap_shards }
    }

    /// The shard that owns `key` of `db`, as this node's routes know it.
    pub fn locate(&self, db: u8, key: &[u8]) -> ShardId {
        let found = self.table.read().locate(db, key);
        found.unwrap_or_else(|| crate::ring::shard_for(db, key, self.bootstrap_shards))
    }

    /// Every shard of the ring this node knows of (hosted or not), in id order.
    pub fn ring_shards(&self) -> Vec<ShardId> {
        let ids = self.table.read().ids();
        if ids.is_empty() {
            (0..self.bootstrap_shards).collect()
        } else {
            ids
        }
    }

    /// What this node's routes say about `shard`.
    pub fn route(&self, shard: ShardId) -> Option<Route> {
        self.table.read().shards.get(&shard).cloned()
    }

    /// Takes a shard's refusal (its current slice) into the routes.
    pub fn learn_refusal(&self, ws: crate::shard::types::WrongShard) {
        self.table.write().learn_refusal(ws.shard, ws.modulus, ws.epoch);
    }

    /// Merges routes reported by a replica (this node's or a peer's).
    pub fn learn(&self, shards: &[ShardInfo]) {
        let mut routes = self.table.write();
        for s in shards.iter().filter(|s| s.modulus > 0 && !s.members.is_empty()) {
            routes.learn(
                s.id,
                Route {
                    modulus: s.modulus,
                    epoch: s.epoch,
                    members: s.members.clone(),
                    leader: s.leader,
                    reported: true,
                },
            );
        }
    }

    /// Whether a newer, coarser route (a merge's receiver) covers `route` of `shard`.
    pub fn covered_by_newer(&self, shard: ShardId, route: &Route) -> bool {
        self.table.read().covered_by_newer(shard, route)
    }

    /// Whether a merge's receiver has reported owning `shard`'s slice (`route`) from a
    /// newer epoch (see [`Routes::absorbed`]).
    pub fn absorbed(&self, shard: ShardId, route: &Route) -> bool {
        self.table.read().absorbed(shard, route)
    }

    /// The whole table, read-locked (keep the guard short).
    pub fn table(&self) -> RwLockReadGuard<'_, Routes> {
        self.table.read()
    }
}
