//! The data every replica of a shard agrees on, and the deterministic rules that change
//! it: transactions with compare-and-swap preconditions, expiry, revisions, and the
//! request-id table that makes retried writes apply once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use super::events::{Event, EventKind};
use super::types::{Command, CommandResult, KeyEntry, LogId, Op, OpResult, StoredMembership, WrongShard};
use crate::ring::{key_hash, ShardId};

/// `(db, key)`: the map key. Ordered by db, then key bytes.
pub type MapKey = (u8, Vec<u8>);

/// What applying a command asks of the state machine beyond the replicated state, in
/// log order: a new shard to create, a donor to retire, a crash point to pass.
pub enum Effect {
    /// Nothing beyond the state.
    None,
    /// A split narrowed this shard's slice; the new shard's state, holding the rest.
    Split(Box<KvState>),
    /// A split was refused (the shard is frozen by a merge, or the modulus is not the
    /// double of this shard's); the command's result says `ok: false`.
    SplitRefused(String),
    /// A merge's donor froze.
    Frozen,
    /// A merge's receiver took in a chunk of its donor's keys.
    Absorbed,
    /// A merge ended here: this receiver's slice absorbed `donor`'s, at ring `epoch`.
    Merged { donor: ShardId, epoch: u64 },
}

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
///
/// After a split the map may still hold keys outside the slice (`stale`): the split
/// hands both shards the whole map in O(1) and a background pass
/// ([`KvState::stale_keys`], [`KvState::drop_stale`]) removes the other shard's keys.
/// Such keys are never visible: every read, listing, count, export and image goes by
/// the slice.
#[derive(Clone, Default)]
pub struct KvState {
    /// What this shard owns; keys outside it are refused with `WrongShard`.
    pub slice: Slice,
    pub data: OrdMap<MapKey, KeyEntry>,
    /// `(expires_at_ms, db, key)` for keys with a TTL; drives the reaper. Persistent, so
    /// a split shares it in O(1) too.
    expiry: OrdSet<(u64, u8, Vec<u8>)>,
    /// Set (to the split's ring epoch) while `data` may hold keys outside the slice, left
    /// there by a split until the background pass has dropped them. Not replicated and
    /// not in snapshots: replicas differ only in invisible keys.
    stale: Option<u64>,
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

    /// Whether the map's entry for `key` is this shard's: always, except a split's
    /// leftover (outside the slice, not swept yet).
    fn visible(&self, db: u8, key: &[u8]) -> bool {
        self.stale.is_none() || self.slice.owns(db, key)
    }

    /// Whether the map may still hold a split's leftovers (a sweep is due or running).
    pub fn is_stale(&self) -> bool {
        self.stale.is_some()
    }

    /// The live (unexpired) entry of a key.
    pub fn get(&self, db: u8, key: &[u8], now_ms: u64) -> Option<KeyEntry> {
        if !self.visible(db, key) {
            return None;
        }
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
            .filter(|(_, db, key)| self.visible(*db, key))
            .take(max)
            .filter_map(|(_, db, key)| Some((*db, key.clone(), self.data.get(&(*db, key.clone()))?.mod_revision)))
            .collect()
    }

    /// Number of keys this shard owns, expired-but-not-yet-reaped included. O(keys)
    /// while a split's leftovers are still in the map.
    pub fn len(&self) -> usize {
        match self.stale {
            None => self.data.len(),
            Some(_) => self.data.keys().filter(|(db, k)| self.slice.owns(*db, k)).count(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of keys in the map, O(1): [`KvState::len`] plus, for a moment after a
    /// split, the other shard's keys not yet dropped. What the node reports.
    pub fn stored(&self) -> usize {
        self.data.len()
    }

    /// If the map may hold a split's leftovers: the mark a sweep passes to
    /// [`KvState::drop_stale`], and an O(1) view of the map to find them in, outside
    /// any lock.
    pub fn stale_view(&self) -> Option<(u64, MapView)> {
        Some((self.stale?, MapView { data: self.data.clone(), slice: self.slice }))
    }

    /// Removes `keys` (found by [`KvState::stale_keys`] while `stale == Some(mark)`) if
    /// they still lie outside the slice. `false` if the state moved on (a merge absorbed
    /// keys, or a newer split): the pass must start again from the current `stale` mark.
    pub fn drop_stale(&mut self, mark: u64, keys: &[MapKey]) -> bool {
        if self.stale != Some(mark) {
            return false;
        }
        for (db, key) in keys {
            if !self.slice.owns(*db, key) {
                self.remove(*db, key);
            }
        }
        true
    }

    /// Ends the pass started at `mark`: the map holds only the slice's keys.
    pub fn stale_dropped(&mut self, mark: u64) {
        if self.stale == Some(mark) {
            self.stale = None;
        }
    }

    /// Drops every key outside the slice at once (before a merge absorbs keys, which
    /// must not meet a split's leftovers).
    fn drop_all_stale(&mut self) {
        if self.stale.take().is_some() {
            let slice = self.slice;
            let stale: Vec<MapKey> = self.data.keys().filter(|(db, k)| !slice.owns(*db, k)).cloned().collect();
            for (db, key) in stale {
                self.remove(db, &key);
            }
        }
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

    fn put(&mut self, db: u8, key: Vec<u8>, value: bytes::Bytes, expires_at_ms: Option<u64>, now_ms: u64) -> u64 {
        self.revision += 1;
        let revision = self.revision;
        let map_key = (db, key);
        // An existing key (the common case under load) is replaced in place: one walk down
        // the tree, not a lookup and then an insert.
        if let Some(p) = self.data.get_mut(&map_key) {
            let (create_revision, version) =
                if p.is_expired(now_ms) { (revision, 1) } else { (p.create_revision, p.version + 1) };
            let old_expiry = p.expires_at_ms;
            *p = KeyEntry { value, create_revision, mod_revision: revision, version, expires_at_ms };
            if old_expiry != expires_at_ms {
                if let Some(t) = old_expiry {
                    self.expiry.remove(&(t, db, map_key.1.clone()));
                }
                if let Some(t) = expires_at_ms {
                    self.expiry.insert((t, db, map_key.1));
                }
            }
            return revision;
        }
        if let Some(t) = expires_at_ms {
            self.expiry.insert((t, db, map_key.1.clone()));
        }
        self.data.insert(
            map_key,
            KeyEntry { value, create_revision: revision, mod_revision: revision, version: 1, expires_at_ms },
        );
        revision
    }

    /// Applies one command, appending what changed to `events`. Deterministic: depends
    /// only on the command and the state, never on the local clock. Each mutation takes
    /// the next revision. Returns the command's result and what the state machine must
    /// do about it beyond this state (see [`Effect`]).
    pub fn apply_command(&mut self, cmd: Command, events: &mut Vec<Event>) -> (CommandResult, Effect) {
        let done = |s: &Self| CommandResult { revision: s.revision, ok: true, ..Default::default() };
        match cmd {
            Command::Txn { id, now_ms, ops } => {
                if let Some(done) = self.applied.get(&id) {
                    return (CommandResult::clone(done), Effect::None); // a retry of a request already applied
                }
                if let Some(moved) = self.refuse_foreign(&ops) {
                    // Not remembered: the retry goes to the shard that owns the keys.
                    return (moved, Effect::None);
                }
                let r = self.apply_txn(now_ms, ops, events);
                self.remember(id, Arc::new(r.clone()));
                (r, Effect::None)
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
                (CommandResult { expired, ..done(self) }, Effect::None)
            }
            Command::Split { modulus, epoch } => match self.split(modulus, epoch) {
                Ok(Some(child)) => (done(self), Effect::Split(Box::new(child))),
                Ok(None) => (done(self), Effect::None),
                Err(reason) => (CommandResult { ok: false, ..done(self) }, Effect::SplitRefused(reason)),
            },
            Command::Freeze { epoch } => {
                self.frozen.get_or_insert(epoch);
                (done(self), Effect::Frozen)
            }
            Command::Absorb { modulus, entries, applied } => (self.absorb(modulus, entries, applied), Effect::Absorbed),
            Command::MergeDone { modulus, epoch, revision } => {
                let before = self.slice.modulus;
                let r = self.finish_merge(modulus, epoch, revision);
                // Only the apply that narrows the slice ends the merge here; a repeated
                // or stale one changes nothing.
                let effect = if self.slice.modulus < before {
                    Effect::Merged { donor: self.slice.shard + modulus, epoch }
                } else {
                    Effect::None
                };
                (r, effect)
            }
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
    fn absorb(
        &mut self,
        modulus: u32,
        entries: Vec<(u8, Vec<u8>, KeyEntry)>,
        applied: Vec<(u64, CommandResult)>,
    ) -> CommandResult {
        let ok = self.slice.modulus == modulus && modulus >= 2 && self.frozen.is_none();
        if ok {
            self.drop_all_stale();
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
            return Some(CommandResult {
                revision: self.revision,
                ok: false,
                wrong_shard: Some(ws),
                ..Default::default()
            });
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
            return Err(format!(
                "shard {} is at modulus {}; a split doubles it, not {modulus}",
                self.slice.shard, self.slice.modulus
            ));
        }
        // Both shards keep the whole map (O(1): persistent maps share it); each drops
        // the other's keys in the background. The slices make them invisible at once.
        let child_slice = Slice { shard: self.slice.shard + self.slice.modulus, modulus, epoch };
        let child = KvState {
            slice: child_slice,
            data: self.data.clone(),
            expiry: self.expiry.clone(),
            stale: Some(epoch),
            revision: self.revision,
            applied: self.applied.clone(),
            applied_order: self.applied_order.clone(),
            last_applied: None,
            membership: self.membership.clone(),
            frozen: None,
        };
        self.slice.modulus = modulus;
        self.slice.epoch = epoch;
        self.stale = Some(epoch);
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
                    let event_value = value.clone(); // shared, not copied
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
            if !self.visible(*db, key) {
                continue;
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
            entries: self
                .data
                .iter()
                .filter(|((db, k), _)| self.visible(*db, k))
                .map(|((db, k), e)| (*db, k.clone(), e.clone()))
                .collect(),
            applied: self.applied_results(),
            frozen: self.frozen,
        }
    }

    /// Rebuilds the state from a snapshot image.
    pub fn from_image(image: KvImage, last_applied: Option<LogId>, membership: StoredMembership) -> Self {
        let mut s = KvState {
            slice: image.slice,
            revision: image.revision,
            last_applied,
            membership,
            frozen: image.frozen,
            ..Default::default()
        };
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

/// An O(1) copy of a shard's map and slice (see [`KvState::stale_view`]).
pub struct MapView {
    data: OrdMap<MapKey, KeyEntry>,
    slice: Slice,
}

impl MapView {
    /// Up to `scan` map entries after `after`: the keys among them that lie outside the
    /// slice, and where the next batch starts (`None` once the whole map was seen).
    pub fn stale_keys(&self, after: Option<&MapKey>, scan: usize) -> (Vec<MapKey>, Option<MapKey>) {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.clone()));
        let mut stale = Vec::new();
        let mut last: Option<&MapKey> = None;
        for (i, (k, _)) in self.data.range((from, Bound::Unbounded)).enumerate() {
            if i == scan {
                return (stale, last.cloned());
            }
            if !self.slice.owns(k.0, &k.1) {
                stale.push(k.clone());
            }
            last = Some(k);
        }
        (stale, None)
    }
}

/// A snapshot of a split's new shard is encoded only when something reads it.
impl super::snapshot_body::Encode for KvState {
    fn encode(&self) -> std::io::Result<Vec<u8>> {
        postcard::to_stdvec(&self.image()).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
#[path = "kv_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "kv_merge_tests.rs"]
mod merge_tests;
