//! The ring: which shard owns a key.
//!
//! `h = xxh3_64(db_byte ‖ key)`; with `S = 2^n` shards, shard `h mod S` owns the key.
//! The hash is xxh3 with seed 0, a documented and stable function, so every node, every
//! version and the operator agree on placement. Doubling `S` splits shard `s` into `s`
//! and `s + S`: a key either stays or moves to exactly that one new shard.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// Shard identifier. Ids never change meaning when the ring grows or shrinks.
pub type ShardId = u32;

/// Node identifier, also the openraft node id.
pub type NodeId = u64;

/// The largest database number (databases are `0..=MAX_DB`, as Redis `SELECT`).
pub const MAX_DB: u8 = 15;

/// Largest supported shard count.
pub const MAX_SHARDS: u32 = 1024;

/// The stable placement hash of a key in a database.
pub fn key_hash(db: u8, key: &[u8]) -> u64 {
    // Hash `db ‖ key` without allocating: xxh3 streaming gives the same result as one shot.
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&[db]);
    h.update(key);
    let v = h.digest();
    debug_assert_eq!(v, {
        let mut buf = Vec::with_capacity(key.len() + 1);
        buf.push(db);
        buf.extend_from_slice(key);
        xxh3_64(&buf)
    });
    v
}

/// The shard that owns `key` in `db` when the ring has `shard_count` shards.
///
/// `shard_count` must be a power of two (checked by [`validate_shard_count`] at start-up).
pub fn shard_for(db: u8, key: &[u8], shard_count: u32) -> ShardId {
    debug_assert!(shard_count.is_power_of_two());
    (key_hash(db, key) & (u64::from(shard_count) - 1)) as ShardId
}

/// Checks that a shard count is a power of two in `1..=MAX_SHARDS`.
pub fn validate_shard_count(n: u32) -> Result<(), String> {
    if n == 0 || !n.is_power_of_two() || n > MAX_SHARDS {
        return Err(format!("shard count must be a power of two between 1 and {MAX_SHARDS}, got {n}"));
    }
    Ok(())
}

/// Where one shard is, as a router knows it: possibly stale, corrected by the shards
/// themselves (a `WrongShard` refusal carries the shard's current modulus and epoch).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Route {
    /// The shard owns keys with `hash mod modulus == id`.
    pub modulus: u32,
    pub epoch: u64,
    pub members: Vec<NodeId>,
    pub leader: Option<NodeId>,
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
        let mut m = route.modulus / 2;
        while m >= 1 {
            if let Some(r) = self.shards.get(&(shard % m)) {
                if r.modulus == m && r.epoch > route.epoch {
                    return true;
                }
            }
            m /= 2;
        }
        false
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
                self.learn(shard, Route { modulus, epoch, ..old });
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
            let guess = Route { modulus: m, epoch, members: old.members.clone(), leader: old.leader };
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

/// One shard as the node reports it in `GET /v1/cluster`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ShardInfo {
    pub id: ShardId,
    /// The shard owns keys with `hash mod modulus == id`.
    pub modulus: u32,
    /// The ring epoch at which the shard last split or merged.
    pub epoch: u64,
    pub members: Vec<NodeId>,
    /// Non-voting replicas catching up before promotion.
    pub learners: Vec<NodeId>,
    /// The shard's revision counter on this replica.
    pub revision: u64,
    /// Keys held by this replica (expired but unreaped ones included; for a moment after
    /// a split, also the other shard's keys its background sweep has not dropped yet).
    pub keys: u64,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Last log index covered by this replica's snapshot (0: none).
    pub snapshot_index: u64,
    /// Log entries up to here are purged from this replica's log (0: none).
    pub purged_index: u64,
    /// `Leader`, `Follower`, `Candidate`, ...
    pub state: String,
    /// Frozen as a merge's donor: it refuses every request (naming its receiver) until
    /// the merge is done and the shard is retired.
    #[serde(default)]
    pub frozen: bool,
}

/// A versioned view of the ring.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ring {
    /// The node reporting this view.
    pub node_id: NodeId,
    pub epoch: u64,
    pub shard_count: u32,
    pub shards: Vec<ShardInfo>,
    /// Whether the node is ready (`GET /readyz`): every replica here has a leader and
    /// each it votes in has caught up (see `Node::ready`). Planners count only ready
    /// nodes healthy.
    #[serde(default)]
    pub ready: bool,
    /// Shards whose replica here was lost (it could not be opened on start and was
    /// quarantined) while their group may still count this node as a voter: planners
    /// remove this node from them, then add a fresh replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<ShardId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_xxh3_of_db_byte_then_key() {
        assert_eq!(key_hash(0, b"hello"), xxh3_64(b"\0hello"));
        assert_eq!(key_hash(3, b""), xxh3_64(&[3u8]));
        // A fixed value guards against an accidental change of hash function or seed.
        assert_eq!(key_hash(0, b"a"), xxh3_64(&[0, b'a']));
        assert_ne!(key_hash(0, b"a"), key_hash(1, b"a"));
    }

    #[test]
    fn shard_is_hash_mod_count() {
        for (db, key) in [(0u8, &b"k1"[..]), (1, b"app/config"), (15, b"\xff\x00")] {
            let h = key_hash(db, key);
            for s in [1u32, 2, 4, 8, 1024] {
                assert_eq!(u64::from(shard_for(db, key, s)), h % u64::from(s));
            }
        }
    }

    #[test]
    fn doubling_moves_a_key_only_to_its_sibling_shard() {
        let mut moved = 0;
        for i in 0..10_000u32 {
            let key = format!("key-{i}");
            let before = shard_for(0, key.as_bytes(), 4);
            let after = shard_for(0, key.as_bytes(), 8);
            assert!(after == before || after == before + 4, "{key}: {before} -> {after}");
            if after != before {
                moved += 1;
            }
        }
        // About half the keys move; 10k samples keep this far from flaky.
        assert!((4_500..5_500).contains(&moved), "moved {moved}");
    }

    fn route(modulus: u32, epoch: u64) -> Route {
        Route { modulus, epoch, members: vec![1, 2, 3], leader: Some(1) }
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

    #[test]
    fn shard_counts_must_be_powers_of_two() {
        for ok in [1, 2, 4, 64, 1024] {
            assert!(validate_shard_count(ok).is_ok());
        }
        for bad in [0, 3, 6, 1000, 2048] {
            assert!(validate_shard_count(bad).is_err());
        }
    }
}
