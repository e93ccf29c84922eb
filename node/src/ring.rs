//! The node's map of the ring: which shard owns a key, as a router knows it.
//!
//! Ids, placement (`key_hash`, `shard_for`) and the ring's JSON shapes are the contract
//! crate's (`ringkv-api`), shared with the planner, the operator and the CLI; re-exported
//! here so the node's modules name them in one place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use ringkv_api::ring::coarser_slices;
pub use ringkv_api::{key_hash, shard_for, validate_shard_count, NodeId, Ring, ShardId, ShardInfo, MAX_DB, MAX_SHARDS};

/// Where one shard is, as a router knows it: possibly stale, corrected by the shards
/// themselves (a `WrongShard` refusal carries the shard's current modulus and epoch).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Route {
    /// The shard owns keys with `hash mod modulus == id`.
    pub modulus: u32,
    pub epoch: u64,
    pub members: Vec<NodeId>,
    pub leader: Option<NodeId>,
    /// Whether a replica of the shard reported this slice as its own state (here or in a
    /// peer's ring), rather than a router inferring it from a refusal. Only a reported
    /// merge proves the receiver took its donor's keys in: a frozen donor's refusal names
    /// the receiver's coming slice before the receiver has absorbed anything.
    #[serde(default)]
    pub reported: bool,
}

/// A router's map of the ring: every shard it knows of, hosted here or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    pub shards: BTreeMap<ShardId, Route>,
}

impl Routes {
    /// The shard that owns hash `h`: the finest known shard whose slice holds it. During
    /// a doubling some shards are split and some not; a key's shard is `h mod m` for the
    /// largest `m` at which that shard exists with modulus `m`.
    pub fn locate_hash(&self, h: u64) -> Option<ShardId> {
        let mut m = self.shards.values().map(|r| r.modulus).max()?;
        while m >= 1 {
            let s = (h & (u64::from(m) - 1)) as ShardId;
            if self.shards.get(&s).is_some_and(|r| r.modulus == m) {
                return Some(s);
            }
            m /= 2;
        }
        None
    }

    /// The shard owning `key` of `db`.
    pub fn locate(&self, db: u8, key: &[u8]) -> Option<ShardId> {
        self.locate_hash(key_hash(db, key))
    }

    /// Merges what another source reports of `shard`: a newer epoch replaces the slice;
    /// membership and leader come from the newer (or, at the same epoch, the given) view.
    /// A report older than a merge that absorbed the shard is dropped, and a merge's
    /// receiver drops the finer routes it absorbed.
    pub fn learn(&mut self, shard: ShardId, route: Route) {
        if self.covered_by_newer(shard, &route) {
            return;
        }
        let (m, epoch) = (route.modulus, route.epoch);
        let coarser = match self.shards.get_mut(&shard) {
            Some(r) if r.epoch > route.epoch => return,
            Some(r) => {
                let keep_leader = route.leader.is_none() && r.epoch == route.epoch;
                let leader = if keep_leader { r.leader } else { route.leader };
                let coarser = route.modulus < r.modulus;
                *r = Route { leader, ..route };
                coarser
            }
            None => {
                self.shards.insert(shard, route);
                true
            }
        };
        // Only a shard that now owns more (a merge's receiver) can have absorbed others;
        // the common refresh of a known route skips the scan.
        if coarser && m > 0 {
            self.shards.retain(|id, r| *id == shard || r.modulus <= m || id % m != shard || r.epoch >= epoch);
        }
    }

    /// Whether a coarser route with a newer epoch owns `shard`'s slice: the report is
    /// from before a merge that absorbed it.
    pub fn covered_by_newer(&self, shard: ShardId, route: &Route) -> bool {
        coarser_slices(shard, route.modulus)
            .any(|(id, m)| self.shards.get(&id).is_some_and(|r| r.modulus == m && r.epoch > route.epoch))
    }

    /// Whether a merge's receiver has itself reported owning `shard`'s slice (`route`) from
    /// a newer epoch: the merge is done, and the keys of `shard` as of `route` are in the
    /// receiver's log. A route only inferred from a refusal proves nothing of the kind;
    /// nor does the receiver's own coarser slice prove anything of a replica of the
    /// receiver that lags it (the same group: it catches up, it was absorbed by nobody).
    pub fn absorbed(&self, shard: ShardId, route: &Route) -> bool {
        coarser_slices(shard, route.modulus)
            .filter(|(id, _)| *id != shard)
            .any(|(id, m)| self.shards.get(&id).is_some_and(|r| r.reported && r.modulus == m && r.epoch > route.epoch))
    }

    /// Applies a `WrongShard` refusal: the shard is at `modulus` now, and the shards its
    /// splits created (same members, same leader at first) exist. A refusal naming a
    /// coarser modulus than known comes from a merge's frozen donor: the shard it names
    /// owns the donor's keys from that epoch on.
    pub fn learn_refusal(&mut self, shard: ShardId, modulus: u32, epoch: u64) {
        let Some(old) = self.shards.get(&shard).cloned() else { return };
        if old.epoch > epoch {
            return;
        }
        if modulus < old.modulus {
            if old.epoch < epoch {
                self.learn(shard, Route { modulus, epoch, reported: false, ..old });
            }
            return;
        }
        if old.modulus >= modulus {
            return;
        }
        let mut m = old.modulus.max(1);
        while m < modulus {
            // Each split made `shard + m` at modulus 2m; it may have split since, which it
            // will say itself when asked.
            let child = shard + m;
            m *= 2;
            let guess = Route { modulus: m, epoch, members: old.members.clone(), leader: old.leader, reported: false };
            self.shards.entry(child).or_insert(guess);
        }
        self.learn(shard, Route { modulus, epoch, ..old });
    }

    /// Shard ids that together own every key (the finest level of each slice).
    pub fn ids(&self) -> Vec<ShardId> {
        self.shards.keys().copied().collect()
    }

    /// The ring epoch: the newest epoch of any shard.
    pub fn epoch(&self) -> u64 {
        self.shards.values().map(|r| r.epoch).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(modulus: u32, epoch: u64) -> Route {
        Route { modulus, epoch, members: vec![1, 2, 3], leader: Some(1), reported: true }
    }

    #[test]
    fn only_the_receiver_itself_proves_a_merge_absorbed_the_donor() {
        let mut r = Routes::default();
        for s in 0..2 {
            r.learn(s, route(2, 1));
        }
        let donor = route(2, 1);
        let receiver = route(2, 1);
        // The frozen donor 1 refuses, naming shard 0 at modulus 1 from epoch 2.
        r.learn_refusal(0, 1, 2);
        assert_eq!(r.locate_hash(1), Some(0), "its keys are routed to the receiver");
        assert!(r.covered_by_newer(1, &donor), "reports of the donor are stale for routing");
        assert!(!r.absorbed(1, &donor), "nothing proves the receiver took the donor's keys in");
        assert!(!r.absorbed(0, &receiver), "nor that the receiver's own replicas are obsolete");
        // The receiver's replicas report the merge done.
        r.learn(0, route(1, 2));
        assert!(r.absorbed(1, &donor));
        assert!(!r.absorbed(0, &route(1, 2)), "the receiver's current slice is not absorbed");
        assert!(!r.absorbed(0, &receiver), "a replica of the receiver that lags its merge is not absorbed");
    }

    #[test]
    fn routes_find_the_finest_shard_during_a_doubling() {
        let mut r = Routes::default();
        for s in 0..4 {
            r.learn(s, route(4, 1));
        }
        // Shard 1 has split into 1 and 5; the others have not.
        r.learn_refusal(1, 8, 2);
        assert_eq!(r.shards[&5].modulus, 8);
        assert_eq!(r.shards[&1].modulus, 8);
        for i in 0..2_000u32 {
            let key = format!("k{i}");
            let h = key_hash(0, key.as_bytes());
            let want = match (h % 4) as u32 {
                1 => (h % 8) as u32,
                s => s,
            };
            assert_eq!(r.locate(0, key.as_bytes()), Some(want), "{key}");
        }
        // A stale report does not undo the split.
        r.learn(1, route(4, 1));
        assert_eq!(r.shards[&1].modulus, 8);
        assert_eq!(r.epoch(), 2);
    }

    #[test]
    fn a_merge_drops_the_donor_route_and_stale_reports_of_it() {
        let mut r = Routes::default();
        for s in 0..8 {
            r.learn(s, route(8, 2));
        }
        // Shard 5 (frozen donor) refuses, naming its receiver 1 at modulus 4, epoch 3.
        r.learn_refusal(1, 4, 3);
        assert!(!r.shards.contains_key(&5), "the donor's route is gone");
        assert_eq!(r.shards[&1].modulus, 4);
        // A peer that still hosts the donor reports it: older than the merge, dropped.
        r.learn(5, route(8, 2));
        assert!(!r.shards.contains_key(&5));
        for i in 0..2_000u32 {
            let key = format!("k{i}");
            let h = key_hash(0, key.as_bytes());
            let want = if h % 4 == 1 { 1 } else { (h % 8) as u32 };
            assert_eq!(r.locate(0, key.as_bytes()), Some(want), "{key}");
        }
        // A stale report of the receiver does not undo the merge; a later split does
        // bring shard 5 back.
        r.learn(1, route(8, 2));
        assert_eq!(r.shards[&1].modulus, 4);
        r.learn_refusal(1, 8, 4);
        assert_eq!((r.shards[&5].modulus, r.shards[&5].epoch), (8, 4));
        r.learn(5, route(8, 4));
        assert!(r.shards.contains_key(&5));
    }

    #[test]
    fn a_refusal_two_levels_ahead_creates_both_new_shards() {
        let mut r = Routes::default();
        r.learn(0, route(1, 1));
        r.learn_refusal(0, 4, 3);
        assert_eq!(r.ids(), vec![0, 1, 2]);
        assert_eq!((r.shards[&1].modulus, r.shards[&2].modulus), (2, 4));
        assert_eq!(r.locate_hash(4), Some(0));
        assert_eq!(r.locate_hash(6), Some(2));
        // Shard 1 may have split into 1 and 3 meanwhile; until it says so, it is asked.
        assert_eq!(r.locate_hash(3), Some(1));
    }
}
