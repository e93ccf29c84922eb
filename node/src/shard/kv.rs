//! The data every replica of a shard agrees on, and the deterministic rules that change
//! it: transactions with compare-and-swap preconditions, expiry, revisions, and the
//! request-id table that makes retried writes apply once.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use super::events::{Event, EventKind};
use super::types::{Command, CommandResult, KeyEntry, LogId, Op, OpResult, StoredMembership, WrongShard};
use crate::ring::{key_hash, ShardId};

/// `(db, key)`: the map key. Ordered by db, then key bytes.
pub type MapKey = (u8, Vec<u8>);

/// How many recent request ids each shard remembers for deduplication. A retry comes
/// within the request deadline (seconds), far inside this window.
pub const DEDUP_WINDOW: usize = 16_384;

/// The slice of the ring a shard owns: every key with `hash mod modulus == shard`, as of
/// ring `epoch`. Part of the replicated state, so it changes only in log order (a split
/// or merge command) and every replica refuses the same keys at the same index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    pub shard: ShardId,
    pub modulus: u32,
    pub epoch: u64,
}

impl Default for Slice {
    /// The whole key space: shard 0 of a one-shard ring.
    fn default() -> Self {
        Slice { shard: 0, modulus: 1, epoch: 1 }
    }
}

impl Slice {
    /// Whether the slice holds `key` of `db`.
    pub fn owns(&self, db: u8, key: &[u8]) -> bool {
        self.owns_hash(key_hash(db, key))
    }

    pub fn owns_hash(&self, h: u64) -> bool {
        self.modulus > 0 && (h & (u64::from(self.modulus) - 1)) == u64::from(self.shard)
    }

    /// The refusal a request for a key outside the slice gets.
    pub fn wrong_shard(&self) -> WrongShard {
        WrongShard { shard: self.shard, modulus: self.modulus, epoch: self.epoch }
    }
}

/// The state every replica of a shard agrees on. Clones are O(1) (persistent maps), so a
/// snapshot is taken without stopping writes.
#[derive(Clone, Default)]
pub struct KvState {
    /// What this shard owns; keys outside it are refused with `WrongShard`.
    pub slice: Slice,
    pub data: OrdMap<MapKey, KeyEntry>,
    /// `(expires_at_ms, db, key)` for keys with a TTL; drives the reaper.
    expiry: BTreeSet<(u64, u8, Vec<u8>)>,
    /// The shard's revision: bumped by every mutation, identical on every replica (the
    /// commands are applied in log order), and carried in snapshots.
    pub revision: u64,
    /// Results of recent client requests by id, and their order for eviction. Plain
    /// std collections (cheap per write); a snapshot clones at most [`DEDUP_WINDOW`]
    /// entries, and the results are shared, not copied.
    applied: HashMap<u64, Arc<CommandResult>>,
    applied_order: VecDeque<u64>,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Set (to the merge's ring epoch) once this shard is a merge's donor: it refuses
    /// every request from then on, so its data is final for the receiver to absorb.
    pub frozen: Option<u64>,
}

/// The replicated part of a [`KvState`] as a snapshot carries it.
#[derive(Serialize, Deserialize)]
pub struct KvImage {
    pub slice: Slice,
    pub revision: u64,
    pub entries: Vec<(u8, Vec<u8>, KeyEntry)>,
    pub applied: Vec<(u64, CommandResult)>,
    pub frozen: Option<u64>,
}

impl KvState {
    /// Whether this shard answers for `key` of `db` now: it owns it and is not a frozen
    /// merge donor.
    pub fn serves(&self, db: u8, key: &[u8]) -> bool {
        self.frozen.is_none() && self.slice.owns(db, key)
    }

    /// The refusal a request this shard does not serve gets.
    pub fn refusal(&self) -> WrongShard {
        self.frozen_refusal().unwrap_or_else(|| self.slice.wrong_shard())
    }

    /// The live (unexpired) entry of a key.
    pub fn get(&self, db: u8, key: &[u8], now_ms: u64) -> Option<KeyEntry> {
        self.data.get(&(db, key.to_vec())).filter(|e| !e.is_expired(now_ms)).cloned()
    }

    /// Live keys of `db` starting with `prefix`, after `start_after`, in key order.
    pub fn list(
        &self,
        db: u8,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Vec<(Vec<u8>, KeyEntry)> {
        let exclusive = start_after.is_some_and(|k| k >= prefix);
        let from = match start_after {
            Some(k) if exclusive => (db, k.to_vec()),
            _ => (db, prefix.to_vec()),
        };
        self.data
            .range(from..)
            .skip_while(|((_, k), _)| exclusive && Some(k.as_slice()) == start_after)
            .take_while(|((d, k), _)| *d == db && k.starts_with(prefix))
            // Keys a merge is still absorbing are not this shard's yet.
            .filter(|((d, k), e)| !e.is_expired(now_ms) && self.slice.owns(*d, k))
            .take(limit)
            .map(|((_, k), e)| (k.clone(), e.clone()))
            .collect()
    }

    /// Keys whose TTL passed at `now_ms`, with the revision the reaper must match.
    pub fn expired(&self, now_ms: u64, max: usize) -> Vec<(u8, Vec<u8>, u64)> {
        self.expiry
            .iter()
            .take_while(|(t, _, _)| *t <= now_ms)
            .take(max)
            .filter_map(|(_, db, key)| Some((*db, key.clone(), self.data.get(&(*db, key.clone()))?.mod_revision)))
            .collect()
    }

    /// Number of stored keys, expired-but-not-yet-reaped included.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn remove(&mut self, db: u8, key: &[u8]) -> Option<KeyEntry> {
        let old = self.data.remove(&(db, key.to_vec()))?;
        if let Some(t) = old.expires_at_ms {
            self.expiry.remove(&(t, db, key.to_vec()));
        }
        Some(old)
    }

    /// The `mod_revision` a precondition compares against: 0 when absent or expired.
    fn current_revision(&self, db: u8, key: &[u8], now_ms: u64) -> u64 {
        self.get(db, key, now_ms).map_or(0, |e| e.mod_revision)
    }

    fn put(&mut self, db: u8, key: Vec<u8>, value: Vec<u8>, expires_at_ms: Option<u64>, now_ms: u64) -> u64 {
        self.revision += 1;
        let revision = self.revision;
        let map_key = (db, key);
        // One lookup, then one in-place replace (not remove + insert).
        let (create_revision, version) = match self.data.get(&map_key) {
            Some(p) => {
                if let Some(t) = p.expires_at_ms {
                    self.expiry.remove(&(t, db, map_key.1.clone()));
                }
                if p.is_expired(now_ms) { (revision, 1) } else { (p.create_revision, p.version + 1) }
            }
            None => (revision, 1),
        };
        if let Some(t) = expires_at_ms {
            self.expiry.insert((t, db, map_key.1.clone()));
        }
        self.data.insert(map_key, KeyEntry { value, create_revision, mod_revision: revision, version, expires_at_ms });
        revision
    }

    /// Applies one command, appending what changed to `events`. Deterministic: depends
    /// only on the command and the state, never on the local clock. Each mutation takes
    /// the next revision.
    pub fn apply_command(&mut self, cmd: Command, events: &mut Vec<Event>) -> CommandResult {
        match cmd {
            Command::Txn { id, now_ms, ops } => {
                if let Some(done) = self.applied.get(&id) {
                    return CommandResult::clone(done); // a retry of a request already applied
                }
                if let Some(moved) = self.refuse_foreign(&ops) {
                    // Not remembered: the retry goes to the shard that owns the keys.
                    return moved;
                }
                let r = self.apply_txn(now_ms, ops, events);
                self.remember(id, Arc::new(r.clone()));
                r
            }
            Command::Expire { keys } => {
                let mut expired = 0;
                for (db, key, mod_revision) in keys {
                    if !self.serves(db, &key) {
                        continue; // moved away by a split or merge since the reaper looked
                    }
                    if self.data.get(&(db, key.clone())).is_some_and(|e| e.mod_revision == mod_revision) {
                        self.remove(db, &key);
                        self.revision += 1;
                        expired += 1;
                        events.push(Event { revision: self.revision, kind: EventKind::Expire, db, key, value: None });
                    }
                }
                CommandResult { revision: self.revision, ok: true, expired, ..Default::default() }
            }
            // Applied by the state machine, which also creates the new shard.
            Command::Split { .. } => CommandResult { revision: self.revision, ok: true, ..Default::default() },
            Command::Freeze { epoch } => {
                self.frozen.get_or_insert(epoch);
                CommandResult { revision: self.revision, ok: true, ..Default::default() }
            }
            Command::Absorb { modulus, entries, applied } => self.absorb(modulus, entries, applied),
            Command::MergeDone { modulus, epoch, revision } => self.finish_merge(modulus, epoch, revision),
        }
    }

    /// The refusal every request to a frozen donor gets: its keys belong to the
    /// receiver, one level up the ring, as of the merge's epoch.
    fn frozen_refusal(&self) -> Option<WrongShard> {
        let epoch = self.frozen?;
        let modulus = (self.slice.modulus / 2).max(1);
        Some(WrongShard { shard: self.slice.shard % modulus, modulus, epoch })
    }

    /// A merge's receiver takes in a chunk of its donor's (frozen) keys and request ids.
    /// Only while the receiver is still at the donor's `modulus`, so a chunk re-sent by a
    /// resumed merge overwrites identical entries and a late duplicate after the merge
    /// changes nothing. The keys stay invisible until [`Command::MergeDone`].
    fn absorb(&mut self, modulus: u32, entries: Vec<(u8, Vec<u8>, KeyEntry)>, applied: Vec<(u64, CommandResult)>) -> CommandResult {
        let ok = self.slice.modulus == modulus && modulus >= 2 && self.frozen.is_none();
        if ok {
            let donor = Slice { shard: self.slice.shard + modulus / 2, modulus, epoch: self.slice.epoch };
            for (db, key, e) in entries.into_iter().filter(|(db, key, _)| donor.owns(*db, key)) {
                if let Some(t) = self.data.get(&(db, key.clone())).and_then(|old| old.expires_at_ms) {
                    self.expiry.remove(&(t, db, key.clone()));
                }
                if let Some(t) = e.expires_at_ms {
                    self.expiry.insert((t, db, key.clone()));
                }
                self.data.insert((db, key), e);
            }
            for (id, r) in applied {
                if !self.applied.contains_key(&id) {
                    self.remember(id, Arc::new(r));
                }
            }
        }
        CommandResult { revision: self.revision, ok, ..Default::default() }
    }

    /// Ends a merge: the receiver owns its donor's slice too (`modulus` is half the
    /// old one) from ring `epoch` on, and its revisions continue above the donor's, so
    /// every absorbed key's `mod_revision` stays below any later write's.
    fn finish_merge(&mut self, modulus: u32, epoch: u64, donor_revision: u64) -> CommandResult {
        let ok = self.slice.modulus == modulus * 2 && self.frozen.is_none();
        if ok {
            self.slice.modulus = modulus;
            self.slice.epoch = epoch;
            self.revision = self.revision.max(donor_revision);
        }
        let done = ok || self.slice.modulus <= modulus;
        CommandResult { revision: self.revision, ok: done, ..Default::default() }
    }

    /// A `WrongShard` answer if any op touches a key outside this shard's slice: the whole
    /// transaction is refused, nothing applies.
    fn refuse_foreign(&self, ops: &[Op]) -> Option<CommandResult> {
        if let Some(ws) = self.frozen_refusal() {
            return Some(CommandResult { revision: self.revision, ok: false, wrong_shard: Some(ws), ..Default::default() });
        }
        let foreign = ops.iter().any(|op| match op {
            Op::Put { db, key, .. } | Op::Delete { db, key, .. } | Op::Get { db, key } => !self.slice.owns(*db, key),
        });
        foreign.then(|| CommandResult {
            revision: self.revision,
            ok: false,
            wrong_shard: Some(self.slice.wrong_shard()),
            ..Default::default()
        })
    }

    /// Splits the shard: keeps the keys with `hash mod modulus == shard` and returns the
    /// new shard `shard + modulus / 2` holding the rest, with the same revision counter
    /// (its revisions go on from this shard's), the request-id table (a retried write
    /// that applied here before the split must not apply again there) and the same
    /// membership. `Ok(None)` if the shard is already at `modulus` or finer (a repeated
    /// split command).
    pub fn split(&mut self, modulus: u32, epoch: u64) -> Result<Option<KvState>, String> {
        if self.frozen.is_some() {
            return Err(format!("shard {} is frozen by a merge", self.slice.shard));
        }
        if modulus <= self.slice.modulus {
            return Ok(None);
        }
        if modulus != self.slice.modulus * 2 {
            return Err(format!("shard {} is at modulus {}; a split doubles it, not {modulus}", self.slice.shard, self.slice.modulus));
        }
        let child_slice = Slice { shard: self.slice.shard + self.slice.modulus, modulus, epoch };
        let mut child = KvState {
            slice: child_slice,
            revision: self.revision,
            applied: self.applied.clone(),
            applied_order: self.applied_order.clone(),
            membership: self.membership.clone(),
            ..Default::default()
        };
        let moving: Vec<MapKey> = self.data.keys().filter(|(db, k)| child_slice.owns(*db, k)).cloned().collect();
        for (db, key) in moving {
            if let Some(e) = self.remove(db, &key) {
                if let Some(t) = e.expires_at_ms {
                    child.expiry.insert((t, db, key.clone()));
                }
                child.data.insert((db, key), e);
            }
        }
        self.slice.modulus = modulus;
        self.slice.epoch = epoch;
        Ok(Some(child))
    }

    fn apply_txn(&mut self, now_ms: u64, ops: Vec<Op>, events: &mut Vec<Event>) -> CommandResult {
        // Every precondition is checked against the state before the transaction.
        let conflicts: Vec<Option<u64>> = ops
            .iter()
            .map(|op| match op {
                Op::Put { db, key, expect: Some(want), .. } | Op::Delete { db, key, expect: Some(want) } => {
                    let current = self.current_revision(*db, key, now_ms);
                    (current != *want).then_some(current)
                }
                _ => None,
            })
            .collect();
        if conflicts.iter().any(Option::is_some) {
            let ops = conflicts
                .into_iter()
                .map(|c| c.map_or(OpResult::Skipped, |current| OpResult::Conflict { current }))
                .collect();
            return CommandResult { revision: self.revision, ok: false, ops, ..Default::default() };
        }
        let results = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { db, key, value, expires_at_ms, .. } => {
                    let event_key = key.clone();
                    let event_value = value.clone();
                    let revision = self.put(db, key, value, expires_at_ms, now_ms);
                    events.push(Event { revision, kind: EventKind::Put, db, key: event_key, value: Some(event_value) });
                    OpResult::Put { revision }
                }
                Op::Delete { db, key, .. } => {
                    let deleted = self.remove(db, &key).filter(|e| !e.is_expired(now_ms)).is_some();
                    if deleted {
                        self.revision += 1;
                        events.push(Event { revision: self.revision, kind: EventKind::Delete, db, key, value: None });
                    }
                    OpResult::Delete { deleted }
                }
                Op::Get { db, key } => OpResult::Get(self.get(db, &key, now_ms)),
            })
            .collect();
        CommandResult { revision: self.revision, ok: true, ops: results, ..Default::default() }
    }

    fn remember(&mut self, id: u64, r: Arc<CommandResult>) {
        self.applied.insert(id, r);
        self.applied_order.push_back(id);
        while self.applied_order.len() > DEDUP_WINDOW {
            if let Some(old) = self.applied_order.pop_front() {
                self.applied.remove(&old);
            }
        }
    }

    /// Up to about `max_bytes` of entries (at least one) after `after`, in key order: a
    /// merge's donor handed over piece by piece.
    pub fn export(&self, after: Option<&MapKey>, max_bytes: usize) -> Vec<(u8, Vec<u8>, KeyEntry)> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.clone()));
        let mut bytes = 0;
        let mut out = Vec::new();
        for ((db, key), e) in self.data.range((from, Bound::Unbounded)) {
            if bytes >= max_bytes {
                break;
            }
            bytes += key.len() + e.value.len() + 48;
            out.push((*db, key.clone(), e.clone()));
        }
        out
    }

    /// The remembered request results, oldest first.
    pub fn applied_results(&self) -> Vec<(u64, CommandResult)> {
        self.applied_order.iter().filter_map(|id| Some((*id, CommandResult::clone(self.applied.get(id)?)))).collect()
    }

    /// The replicated state as a snapshot carries it.
    pub fn image(&self) -> KvImage {
        KvImage {
            slice: self.slice,
            revision: self.revision,
            entries: self.data.iter().map(|((db, k), e)| (*db, k.clone(), e.clone())).collect(),
            applied: self.applied_results(),
            frozen: self.frozen,
        }
    }

    /// Rebuilds the state from a snapshot image.
    pub fn from_image(image: KvImage, last_applied: Option<LogId>, membership: StoredMembership) -> Self {
        let mut s = KvState { slice: image.slice, revision: image.revision, last_applied, membership, frozen: image.frozen, ..Default::default() };
        for (db, key, e) in image.entries {
            if let Some(t) = e.expires_at_ms {
                s.expiry.insert((t, db, key.clone()));
            }
            s.data.insert((db, key), e);
        }
        for (id, r) in image.applied {
            s.remember(id, Arc::new(r));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(s: &mut KvState, key: &str, val: &str, expires: Option<u64>, now: u64) -> CommandResult {
        txn(s, rand_id(), now, vec![Op::Put { db: 0, key: key.into(), value: val.into(), expires_at_ms: expires, expect: None }])
    }

    fn txn(s: &mut KvState, id: u64, now: u64, ops: Vec<Op>) -> CommandResult {
        s.apply_command(Command::Txn { id, now_ms: now, ops }, &mut Vec::new())
    }

    fn rand_id() -> u64 {
        rand::random()
    }

    fn del(key: &str, expect: Option<u64>) -> Op {
        Op::Delete { db: 0, key: key.into(), expect }
    }

    #[test]
    fn a_split_moves_exactly_the_new_shards_keys_and_carries_revisions_and_request_ids() {
        let mut s = KvState { slice: Slice { shard: 1, modulus: 4, epoch: 1 }, ..Default::default() };
        let mut owned = Vec::new();
        for i in 0..2_000u32 {
            let key = format!("k{i}");
            if s.slice.owns(0, key.as_bytes()) {
                owned.push(key);
            }
        }
        for (n, k) in owned.iter().enumerate() {
            txn(&mut s, n as u64 + 1, 0, vec![Op::Put { db: 0, key: k.clone().into_bytes(), value: b"v".to_vec(), expires_at_ms: Some(u64::MAX), expect: None }]);
        }
        let before = s.revision;
        let child = s.split(8, 2).unwrap().expect("a new shard");
        assert_eq!(child.slice, Slice { shard: 5, modulus: 8, epoch: 2 });
        assert_eq!(s.slice, Slice { shard: 1, modulus: 8, epoch: 2 });
        assert_eq!(s.len() + child.len(), owned.len(), "no key lost or duplicated");
        for k in &owned {
            let h = key_hash(0, k.as_bytes()) % 8;
            let (here, there) = (s.get(0, k.as_bytes(), 0).is_some(), child.get(0, k.as_bytes(), 0).is_some());
            assert_eq!((here, there), (h == 1, h == 5), "{k}");
        }
        // Roughly half moved (measured, not assumed).
        assert!(child.len() * 3 > owned.len() && child.len() * 3 < owned.len() * 2, "{} of {}", child.len(), owned.len());
        assert_eq!(child.revision, before, "the new shard's revisions go on from the old one's");
        // The TTL index moved with the keys.
        assert_eq!(child.expired(u64::MAX, usize::MAX).len(), child.len());
        assert_eq!(s.expired(u64::MAX, usize::MAX).len(), s.len());
        // A request applied before the split and retried on the new shard applies once.
        let mut child = child;
        let moved_key = owned.iter().position(|k| key_hash(0, k.as_bytes()) % 8 == 5).unwrap();
        let retry = txn(&mut child, moved_key as u64 + 1, 0, vec![Op::Put { db: 0, key: owned[moved_key].clone().into_bytes(), value: b"again".to_vec(), expires_at_ms: None, expect: None }]);
        assert_eq!(retry.revision, moved_key as u64 + 1, "the first answer, not a new write");
        // The old shard refuses the moved keys, whole transactions at a time.
        let r = txn(&mut s, 99_999, 0, vec![
            Op::Put { db: 0, key: owned[moved_key].clone().into_bytes(), value: b"x".to_vec(), expires_at_ms: None, expect: None },
        ]);
        assert_eq!(r.wrong_shard, Some(WrongShard { shard: 1, modulus: 8, epoch: 2 }));
        assert!(!r.ok && s.revision == before);
        // A repeated split is a no-op; a jump of two levels is refused.
        assert!(s.split(8, 2).unwrap().is_none());
        assert!(s.split(32, 3).is_err());
    }

    #[test]
    fn revisions_track_create_mod_and_version() {
        let mut s = KvState::default();
        put(&mut s, "other", "x", None, 0); // revision 1
        put(&mut s, "k", "a", None, 0); // 2
        put(&mut s, "k", "b", None, 0); // 3
        let e = s.get(0, b"k", 0).unwrap();
        assert_eq!((e.create_revision, e.mod_revision, e.version, e.value.as_slice()), (2, 3, 2, &b"b"[..]));
        let r = txn(&mut s, 1, 0, vec![del("k", None)]);
        assert_eq!((r.ops[0].clone(), r.revision), (OpResult::Delete { deleted: true }, 4));
        let r = txn(&mut s, 2, 0, vec![del("k", None)]);
        assert_eq!((r.ops[0].clone(), r.revision), (OpResult::Delete { deleted: false }, 4), "a no-op takes no revision");
        put(&mut s, "k", "c", None, 0);
        let e = s.get(0, b"k", 0).unwrap();
        assert_eq!((e.create_revision, e.mod_revision, e.version), (5, 5, 1), "a re-created key starts over");
    }

    #[test]
    fn compare_and_swap_applies_only_on_the_expected_revision() {
        let mut s = KvState::default();
        let absent = |v: &str| Op::Put { db: 0, key: b"c".to_vec(), value: v.into(), expires_at_ms: None, expect: Some(0) };
        assert!(txn(&mut s, 1, 0, vec![absent("1")]).ok, "0 means only if absent");
        let r = txn(&mut s, 2, 0, vec![absent("2")]);
        assert_eq!((r.ok, r.ops[0].clone()), (false, OpResult::Conflict { current: 1 }));
        let swap = |v: &str, at| Op::Put { db: 0, key: b"c".to_vec(), value: v.into(), expires_at_ms: None, expect: Some(at) };
        assert!(txn(&mut s, 3, 0, vec![swap("2", 1)]).ok);
        assert!(!txn(&mut s, 4, 0, vec![swap("3", 1)]).ok, "a stale revision loses");
        assert_eq!(s.get(0, b"c", 0).unwrap().value, b"2");
        assert!(!txn(&mut s, 5, 0, vec![del("c", Some(1))]).ok);
        assert!(txn(&mut s, 6, 0, vec![del("c", Some(2))]).ok);
        assert!(s.get(0, b"c", 0).is_none());
    }

    #[test]
    fn a_failed_precondition_applies_nothing_of_the_transaction() {
        let mut s = KvState::default();
        put(&mut s, "a", "1", None, 0);
        let before = s.revision;
        let ops = vec![
            Op::Put { db: 0, key: b"b".to_vec(), value: b"x".to_vec(), expires_at_ms: None, expect: None },
            del("a", Some(99)),
        ];
        let r = txn(&mut s, 7, 0, ops);
        assert!(!r.ok);
        assert_eq!(r.ops, vec![OpResult::Skipped, OpResult::Conflict { current: 1 }]);
        assert!(s.get(0, b"b", 0).is_none(), "nothing half-applied");
        assert_eq!(s.revision, before);
    }

    #[test]
    fn gets_in_a_transaction_see_its_earlier_writes() {
        let mut s = KvState::default();
        let ops = vec![
            Op::Put { db: 0, key: b"k".to_vec(), value: b"v".to_vec(), expires_at_ms: None, expect: Some(0) },
            Op::Get { db: 0, key: b"k".to_vec() },
        ];
        let r = txn(&mut s, 9, 0, ops);
        match &r.ops[1] {
            OpResult::Get(Some(e)) => assert_eq!(e.value, b"v"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_retried_request_id_applies_once() {
        let mut s = KvState::default();
        let op = || vec![Op::Put { db: 0, key: b"k".to_vec(), value: b"v".to_vec(), expires_at_ms: None, expect: Some(0) }];
        let first = txn(&mut s, 42, 0, op());
        let retry = txn(&mut s, 42, 0, op());
        assert!(first.ok);
        assert_eq!(first, retry, "the retry gets the first answer, not a conflict");
        assert_eq!(s.revision, 1);
        // The table survives a snapshot image.
        let restored = KvState::from_image(s.image(), None, Default::default());
        let mut restored = restored;
        assert_eq!(txn(&mut restored, 42, 0, op()), first);
    }

    #[test]
    fn expired_keys_are_hidden_then_reaped_unless_rewritten() {
        let mut s = KvState::default();
        put(&mut s, "gone", "x", Some(1_000), 0);
        put(&mut s, "kept", "y", Some(1_000), 0);
        assert!(s.get(0, b"gone", 999).is_some());
        assert!(s.get(0, b"gone", 1_000).is_none(), "never returned once expired");
        assert!(s.list(0, b"", None, 10, 1_000).is_empty());
        let expired = s.expired(1_000, 10);
        assert_eq!(expired.len(), 2);
        // "kept" is rewritten before the reaper's proposal applies: the reaper must not delete it.
        put(&mut s, "kept", "z", None, 1_001);
        let mut events = Vec::new();
        let r = s.apply_command(Command::Expire { keys: expired }, &mut events);
        assert_eq!(r.expired, 1);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Expire);
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(0, b"kept", u64::MAX).unwrap().value, b"z");
        assert!(s.expired(u64::MAX, 10).is_empty(), "expiry index follows the rewrite");
    }

    #[test]
    fn list_is_ordered_prefix_bounded_and_resumable() {
        let mut s = KvState::default();
        for k in ["a/1", "a/2", "a/3", "b/1", "a"] {
            put(&mut s, k, "v", None, 0);
        }
        txn(&mut s, 5, 0, vec![Op::Put { db: 1, key: b"a/9".to_vec(), value: b"v".to_vec(), expires_at_ms: None, expect: None }]);
        let keys = |v: Vec<(Vec<u8>, KeyEntry)>| v.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect::<Vec<_>>();
        assert_eq!(keys(s.list(0, b"a/", None, 10, 0)), ["a/1", "a/2", "a/3"]);
        assert_eq!(keys(s.list(0, b"a/", Some(b"a/1"), 10, 0)), ["a/2", "a/3"]);
        assert_eq!(keys(s.list(0, b"a/", None, 2, 0)), ["a/1", "a/2"]);
        assert_eq!(keys(s.list(0, b"", None, 10, 0)), ["a", "a/1", "a/2", "a/3", "b/1"]);
        assert_eq!(keys(s.list(1, b"", None, 10, 0)), ["a/9"]);
    }

    #[test]
    fn every_mutation_emits_one_event_in_revision_order() {
        let mut s = KvState::default();
        let mut events = Vec::new();
        let ops = vec![
            Op::Put { db: 0, key: b"a".to_vec(), value: b"1".to_vec(), expires_at_ms: None, expect: None },
            Op::Put { db: 0, key: b"a".to_vec(), value: b"2".to_vec(), expires_at_ms: None, expect: None },
            del("a", None),
            del("a", None),
            Op::Get { db: 0, key: b"a".to_vec() },
        ];
        s.apply_command(Command::Txn { id: 1, now_ms: 0, ops }, &mut events);
        let got: Vec<(u64, EventKind)> = events.iter().map(|e| (e.revision, e.kind)).collect();
        assert_eq!(got, vec![(1, EventKind::Put), (2, EventKind::Put), (3, EventKind::Delete)]);
        assert_eq!(events[1].value.as_deref(), Some(&b"2"[..]));
    }
}

#[cfg(test)]
#[path = "kv_merge_tests.rs"]
mod merge_tests;
