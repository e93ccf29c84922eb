//! The shard state machine as openraft drives it: applying committed entries to the
//! [`KvState`], building, installing and serving snapshots.
//!
//! The map is an `imbl::OrdMap`, a persistent B-tree: cloning it is O(1) and shares
//! structure, so a snapshot is taken under the lock in constant time and serialised
//! outside it while writes go on. State is not persisted on apply; the snapshot file is
//! (`snapshot_file`: fsynced, then renamed into place), and on start the shard rebuilds
//! from the snapshot plus the WAL's committed entries. What a split or merge asks of the
//! node beyond the state (`kv::Effect`) is carried out by `lifecycle`.

use parking_lot::RwLock;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};

use super::events::{EventLog, Notify};
use super::kv::{Effect, KvImage, KvState, Slice};
use super::lifecycle::{
    as_opened, child_meta, is_member, sibling_dir, sweep_stale, write_first_snapshot, BackgroundLimits,
    PendingChildren, RingStep,
};
use super::snapshot_body::SnapshotBody;
use super::snapshot_file::{io_err, read_snapshot_file, write_snapshot_file};
use super::types::{Entry, LogId, ProposalResult, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::ring::{NodeId, ShardId};

// Where the node has always found them.
pub use super::lifecycle::{HostFuture, NoSplits, SplitHost};
pub use super::snapshot_file::INITIAL_TMP;

/// The shard's state machine as openraft drives it, plus a shared read handle.
pub struct StateMachineStore {
    shard: ShardId,
    dir: PathBuf,
    state: Arc<RwLock<KvState>>,
    events: EventLog,
    snapshot_seq: u64,
    host: Arc<dyn SplitHost>,
    /// The node's limits on background work, shared by all its shards.
    limits: Arc<BackgroundLimits>,
    /// First snapshots of new shards still being written. This shard's own next
    /// snapshot waits for them: until they are durable, the split in this shard's log is
    /// the only durable record of the moved keys, so the log must not be compacted past it.
    pending: PendingChildren,
    /// Size of the latest snapshot file, for the node's WAL compaction policy.
    snapshot_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// A split's new shard: its first snapshot's content, served from memory (encoded
    /// only if read) until the snapshot file exists.
    initial: Option<(SnapshotMeta, KvState)>,
}

impl StateMachineStore {
    /// Opens the shard's state machine, restoring the last snapshot in `dir`; without a
    /// snapshot the shard starts empty owning `slice`.
    pub fn open(
        shard: ShardId,
        dir: PathBuf,
        notify: Arc<Notify>,
        slice: Slice,
        host: Arc<dyn SplitHost>,
        limits: Arc<BackgroundLimits>,
    ) -> std::io::Result<Self> {
        let mut state = KvState::default();
        state.slice = slice;
        let mut bytes = 0;
        if let Some((meta, body)) = read_snapshot_file(&dir)? {
            bytes = body.len() as u64;
            let image: KvImage = postcard::from_bytes(&body).map_err(io_err)?;
            state = KvState::from_image(image, meta.last_log_id, meta.last_membership.clone());
        }
        let mut sm = Self::build(shard, dir, notify, state, host, limits, false);
        sm.initial = None;
        sm.snapshot_bytes.store(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(sm)
    }

    /// A state machine starting from `state`: a split's new shard, opened from memory
    /// while its first snapshot goes to disk in the background.
    pub fn with_state(
        shard: ShardId,
        dir: PathBuf,
        notify: Arc<Notify>,
        state: KvState,
        host: Arc<dyn SplitHost>,
        limits: Arc<BackgroundLimits>,
    ) -> Self {
        Self::build(shard, dir, notify, state, host, limits, true)
    }

    fn build(
        shard: ShardId,
        dir: PathBuf,
        notify: Arc<Notify>,
        state: KvState,
        host: Arc<dyn SplitHost>,
        limits: Arc<BackgroundLimits>,
        split_child: bool,
    ) -> Self {
        let events = if split_child {
            EventLog::split_child(state.revision, notify)
        } else {
            EventLog::new(state.revision, notify)
        };
        let initial = Some((child_meta(&state), state.clone()));
        let stale = state.is_stale();
        let state = Arc::new(RwLock::new(state));
        if stale {
            sweep_stale(shard, state.clone(), limits.clone());
        }
        Self {
            shard,
            dir,
            state,
            events,
            snapshot_seq: 0,
            host,
            limits,
            pending: Arc::default(),
            snapshot_bytes: Arc::default(),
            initial,
        }
    }

    /// The size of the latest snapshot, kept up to date as snapshots are built and
    /// installed.
    pub fn snapshot_bytes(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.snapshot_bytes.clone()
    }

    /// The shard's change history, for watchers.
    pub fn events(&self) -> EventLog {
        self.events.clone()
    }

    /// A handle for reads outside Raft (API reads, the TTL reaper, metrics).
    pub fn state(&self) -> Arc<RwLock<KvState>> {
        self.state.clone()
    }
}

/// Builds a snapshot from an O(1) clone of the map.
pub struct SnapshotBuilder {
    shard: ShardId,
    dir: PathBuf,
    state: Arc<RwLock<KvState>>,
    seq: u64,
    pending: PendingChildren,
    snapshot_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // New shards' first snapshots are durable before this one can let the log go.
        let writes = std::mem::take(&mut *self.pending.lock().await);
        for w in writes {
            let _ = w.await;
        }
        let view = self.state.read().clone(); // O(1): shares structure
        let dir = self.dir.clone();
        let shard = self.shard;
        let seq = self.seq;
        let built = tokio::task::spawn_blocking(move || -> std::io::Result<(SnapshotMeta, Vec<u8>)> {
            let body = postcard::to_stdvec(&view.image()).map_err(io_err)?;
            let snapshot_id = match view.last_applied {
                Some(l) => format!("{}-{}-{}-{seq}", shard, l.leader_id.term, l.index),
                None => format!("{shard}-0-0-{seq}"),
            };
            let meta =
                SnapshotMeta { last_log_id: view.last_applied, last_membership: view.membership.clone(), snapshot_id };
            write_snapshot_file(&dir, &meta, &body)?;
            crate::crash_point!("snapshot-written");
            Ok((meta, body))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &io_err(e)))?
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let (meta, body) = built;
        tracing::info!(shard, last = ?meta.last_log_id, bytes = body.len(), "snapshot built");
        self.snapshot_bytes.store(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Snapshot { meta, snapshot: Box::new(SnapshotBody::bytes(body)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.state.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let mut events = Vec::new();
        let mut ring_steps = Vec::new();
        let me = self.host.node_id();
        let revision = {
            let mut s = self.state.write();
            for entry in entries {
                s.last_applied = Some(entry.log_id);
                let r = match entry.payload {
                    EntryPayload::Blank => ProposalResult::default(),
                    EntryPayload::Normal(p) => {
                        let mut answers = Vec::with_capacity(p.commands.len());
                        for c in p.commands {
                            let (r, effect) = s.apply_command(c, &mut events);
                            match effect {
                                Effect::None => {}
                                Effect::Split(child) => ring_steps.push(RingStep::Split(child)),
                                Effect::SplitRefused(e) => {
                                    tracing::warn!(shard = self.shard, error = %e, "split refused")
                                }
                                Effect::Frozen => crate::crash_point!("merge-frozen"),
                                Effect::Absorbed => crate::crash_point!("merge-absorbed"),
                                // A replica replaying entries from before it joined (a new
                                // replica fed the log from its start) leaves the donor's
                                // replicas here alone, as a split creates none.
                                Effect::Merged { donor, epoch } => {
                                    if is_member(&s.membership, me) {
                                        ring_steps.push(RingStep::Merged { donor, epoch });
                                        crate::crash_point!("merge-done");
                                    }
                                }
                            }
                            answers.push(r);
                        }
                        ProposalResult { results: answers }
                    }
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembership::new(Some(entry.log_id), m);
                        ProposalResult::default()
                    }
                };
                results.push(r);
            }
            s.revision
        };
        self.events.record(events, revision);
        if ring_steps.iter().any(|r| matches!(r, RingStep::Split(_))) {
            crate::crash_point!("split-applied");
            sweep_stale(self.shard, self.state.clone(), self.limits.clone());
        }
        // A new shard opens at once, from memory (its snapshot body is encoded only if a
        // follower ever needs it), and its first snapshot goes to disk in the background:
        // neither this shard's keys nor the moved ones wait for the size of the data.
        // This shard's next snapshot waits for that write (see `pending`); a crash before
        // then replays the split from this shard's log, and the new shard gets its WAL
        // entries back. A replayed split of a shard hosted (or retired) here creates nothing.
        // Splits and merges in log order: a merge's end retires the donor's replica
        // here before a later split may create a new shard under the same id.
        for step in ring_steps {
            let child = match step {
                RingStep::Split(child) => *child,
                RingStep::Merged { donor, epoch } => {
                    tracing::info!(shard = self.shard, donor, "merge: donor absorbed");
                    self.host.merged(self.shard, donor, epoch).await;
                    continue;
                }
            };
            let id = child.slice.shard;
            // The new shard has the parent's members at the split. A replica replaying a
            // split from before it was added (a new replica given the log from its
            // start) is not one of them, and creates nothing.
            if !is_member(&child.membership, me) || !self.host.should_create(id, child.slice.epoch) {
                continue;
            }
            let dir = sibling_dir(&self.dir, id);
            let opened = as_opened(child);
            self.host.created(self.shard, id, opened.clone());
            tracing::info!(shard = self.shard, new_shard = id, "split: new shard created");
            crate::crash_point!("split-created");
            let write = write_first_snapshot(self.host.clone(), self.limits.clone(), self.shard, id, dir, opened);
            self.pending.lock().await.push(write);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder {
            shard: self.shard,
            dir: self.dir.clone(),
            state: self.state.clone(),
            seq: self.snapshot_seq,
            pending: self.pending.clone(),
            snapshot_bytes: self.snapshot_bytes.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotBody>, StorageError> {
        Ok(Box::new(SnapshotBody::bytes(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotBody>) -> Result<(), StorageError> {
        let bytes = snapshot.into_bytes().map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.initial = None;
        self.snapshot_bytes.store(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let image: KvImage = postcard::from_bytes(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io_err(e)))?;
        let dir = self.dir.clone();
        let meta2 = meta.clone();
        let bytes2 = bytes.clone();
        tokio::task::spawn_blocking(move || write_snapshot_file(&dir, &meta2, &bytes2))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &io_err(e)))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        crate::crash_point!("snapshot-installed");
        let state = KvState::from_image(image, meta.last_log_id, meta.last_membership.clone());
        let revision = state.revision;
        let (before, after) = (self.state.read().slice, state.slice);
        // A replica that never applied anything (one being added) has no splits to
        // catch up on: it joins only this shard, and its slice before is a guess. Nor
        // has one that applied only entries from before it was added (the log's start).
        let had_state = self.state.read().last_applied.is_some();
        let was_member = had_state && is_member(&self.state.read().membership, self.host.node_id());
        *self.state.write() = state;
        // Splits the snapshot jumped over: their new shards have replicas here too.
        if before.modulus > 0 && was_member {
            let mut m = before.modulus;
            while m < after.modulus {
                if self.host.should_create(self.shard + m, after.epoch) {
                    self.host.missed(self.shard, self.shard + m);
                }
                m *= 2;
            }
        }
        // Merges it jumped over: their donors' replicas here are done.
        let mut m = after.modulus.max(1);
        while had_state && m < before.modulus {
            self.host.merged(self.shard, self.shard + m, after.epoch).await;
            m *= 2;
        }
        // Watchers behind this point cannot be served from history: they get a resync.
        self.events.reset(revision);
        tracing::info!(shard = self.shard, last = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.dir.clone();
        let read = tokio::task::spawn_blocking(move || read_snapshot_file(&dir))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &io_err(e)))?
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        match read {
            Some((meta, body)) => {
                self.initial = None;
                Ok(Some(Snapshot { meta, snapshot: Box::new(SnapshotBody::bytes(body)) }))
            }
            // A split's new shard before its first snapshot reached the disk.
            None => Ok(self.initial.as_ref().map(|(meta, state)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(SnapshotBody::lazy(state.clone())),
            })),
        }
    }
}

/// Node ids of a membership's voters, sorted.
pub fn voter_ids(m: &StoredMembership) -> Vec<NodeId> {
    m.membership().voter_ids().collect()
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
