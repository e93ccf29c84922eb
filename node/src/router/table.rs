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

    /// Every shard of the ring this node knows of (hosted or not), in id order: shards
    /// that together own every key. Where the routes know nothing of part of the hash
    /// space yet (just after a start, a shard whose membership this node has not
    /// learned), the bootstrap shard of that part stands in, as `locate` does for a key:
    /// a listing or a watch over "every shard" must never skip one silently.
    pub fn ring_shards(&self) -> Vec<ShardId> {
        let table = self.table.read();
        let mut ids = table.ids();
        let b = self.bootstrap_shards.max(1);
        for s in 0..b {
            let known = table.shards.iter().any(|(id, r)| {
                let m = r.modulus.clamp(1, b);
                id % m == s % m
            });
            if !known {
                ids.push(s);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: ShardId, modulus: u32) -> ShardInfo {
        ShardInfo { id, modulus, epoch: 1, members: vec![1], ..ShardInfo::default() }
    }

    #[test]
    fn every_shard_is_listed_even_before_the_routes_know_them_all() {
        let r = Router::new(4);
        assert_eq!(r.ring_shards(), vec![0, 1, 2, 3], "nothing known: the bootstrap shards");
        // Shards 0 and 2 learned, 1 and 3 not yet (no membership reported).
        r.learn(&[info(0, 4), info(2, 4)]);
        assert_eq!(r.ring_shards(), vec![0, 1, 2, 3]);
        // Shard 1 split into 1 and 5: shard 3 is still unknown and stands in for itself.
        r.learn(&[info(1, 8), info(5, 8)]);
        assert_eq!(r.ring_shards(), vec![0, 1, 2, 3, 5]);
        // After a merge to 2 shards, the coarser routes cover everything.
        let m = Router::new(4);
        m.learn(&[info(0, 2), info(1, 2)]);
        assert_eq!(m.ring_shards(), vec![0, 1]);
    }
}
