//! The shard state machine: an ordered map of keys with revisions and expiry, and its
//! snapshots.
//!
//! The map is an `imbl::OrdMap`, a persistent B-tree: cloning it is O(1) and shares
//! structure, so a snapshot is taken under the lock in constant time and serialised
//! outside it while writes go on. State is not persisted on apply; the snapshot file is
//! (fsynced, then renamed into place), and on start the shard rebuilds from the snapshot
//! plus the WAL's committed entries.

use parking_lot::RwLock;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};

use super::events::{EventLog, Notify};
use super::kv::{KvImage, KvState, Slice};
use super::snapshot_body::SnapshotBody;
use super::types::{Command, Entry, LogId, ProposalResult, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::ring::{NodeId, ShardId};

/// What a shard's state machine tells the node about splits.
pub trait SplitHost: Send + Sync {
    /// Whether a split (or a snapshot that skipped it) at ring `epoch` should create
    /// `shard` here: not if this node hosts it already, nor if it retired a replica of
    /// it that was at least as new (a replayed split must not bring it back: the new
    /// shard's group went on without this node).
    fn should_create(&self, shard: ShardId, epoch: u64) -> bool;
    /// `shard` was created by a split on this node and its first snapshot is durable
    /// (`state` is that snapshot's content, to open the shard without reading it back):
    /// open it and start its Raft group.
    fn created(&self, parent: ShardId, shard: ShardId, state: KvState);
    /// A snapshot installed on `parent` skipped the split that created `shard` here:
    /// open an empty replica, which the new shard's leader fills with a snapshot.
    fn missed(&self, parent: ShardId, shard: ShardId);
    /// `receiver` absorbed `donor` (a merge finished here, at ring `epoch`): this node's
    /// replica of the donor is no longer needed. Where that replica is older than the
    /// merge, its retirement is recorded durably before this returns: a split later in
    /// the receiver's log may create a new shard under the donor's id, and the old
    /// replica must never pass for it (see `SplitRelay::merged`).
    fn merged(&self, receiver: ShardId, donor: ShardId, epoch: u64) -> HostFuture<'_>;
    /// Whether a replica of `shard` is being retired here: a new shard of that id (a
    /// split re-creating a merged donor) writes nothing to disk until that is done.
    fn retiring(&self, shard: ShardId) -> bool;
    /// The first snapshot of `shard` (created here by a split) is durable now.
    fn durable(&self, shard: ShardId);
    /// Whether this node still hosts `shard` (a replica retired since is not written).
    fn hosts(&self, shard: ShardId) -> bool;
    /// This node's id: a split creates the new shard only on the parent's members.
    fn node_id(&self) -> NodeId;
}

/// What the node does for a state machine before its apply goes on.
pub type HostFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// A split or a merge's end, in the order the log applied them.
enum RingStep {
    Split(Box<KvState>),
    Merged { donor: ShardId, epoch: u64 },
}

/// Whether `node` is a member (voter or learner) of `membership`.
fn is_member(membership: &StoredMembership, node: NodeId) -> bool {
    membership.membership().nodes().any(|(id, _)| *id == node)
}

/// A node that never splits (tests of one shard).
pub struct NoSplits;

impl SplitHost for NoSplits {
    fn should_create(&self, _: ShardId, _: u64) -> bool {
        false
    }
    fn created(&self, _: ShardId, _: ShardId, _: KvState) {}
    fn missed(&self, _: ShardId, _: ShardId) {}
    fn merged(&self, _: ShardId, _: ShardId, _: u64) -> HostFuture<'_> {
        Box::pin(async {})
    }
    fn retiring(&self, _: ShardId) -> bool {
        false
    }
    fn durable(&self, _: ShardId) {}
    fn hosts(&self, _: ShardId) -> bool {
        false
    }
    fn node_id(&self) -> NodeId {
        0
    }
}

/// On-disk snapshot file: `MAGIC | meta_len u32 LE | meta (postcard) | body | crc32 u32 LE`,
/// the CRC covering everything before it. Written to a temporary name, fsynced, renamed.
const SNAP_MAGIC: &[u8; 8] = b"RKVSNAP3";
const SNAP_FILE: &str = "snapshot.bin";
/// A split child's first snapshot on its way to disk; never trusted after a restart.
pub const INITIAL_TMP: &str = "snapshot.initial.tmp";

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn write_snapshot_file(dir: &Path, meta: &SnapshotMeta, body: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let buf = encode_snapshot(meta, body)?;
    let tmp = dir.join("snapshot.tmp");
    write_in_steps(&tmp, &buf)?; // durable before it replaces the previous snapshot
    std::fs::rename(&tmp, dir.join(SNAP_FILE))?;
    std::fs::File::open(dir)?.sync_all() // the rename itself is durable
}

/// Writes a split child's first snapshot durably, unless the shard already wrote a
/// newer one of its own (it serves from memory meanwhile and may snapshot again first).
fn write_initial_snapshot(dir: &Path, meta: &SnapshotMeta, body: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(INITIAL_TMP);
    write_in_steps(&tmp, &encode_snapshot(meta, body)?)?;
    match std::fs::hard_link(&tmp, dir.join(SNAP_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::remove_file(&tmp)?;
    std::fs::File::open(dir)?.sync_all()
}

/// How much of a snapshot may be dirty in the page cache at once.
const SYNC_STEP: usize = 8 << 20;

/// Writes `bytes` to a new file and makes it durable, syncing every [`SYNC_STEP`]: a
/// large snapshot written in one go and synced at the end fills the page cache, and on
/// common filesystems the WAL's next fsync then waits for all of it (client writes
/// stall for seconds). In steps, WAL fsyncs wait for one step at most; and after each
/// step the writer rests as long as the step took, so a snapshot (always background
/// work) takes at most half of the disk from the WAL's fsyncs.
fn write_in_steps(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let steps = bytes.len().div_ceil(SYNC_STEP);
    for (i, chunk) in bytes.chunks(SYNC_STEP).enumerate() {
        let step = std::time::Instant::now();
        f.write_all(chunk)?;
        f.sync_data()?;
        if i + 1 < steps {
            std::thread::sleep(step.elapsed()); // between steps only: small files go at once
        }
    }
    f.sync_all()
}

fn encode_snapshot(meta: &SnapshotMeta, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let meta_bytes = postcard::to_stdvec(meta).map_err(io_err)?;
    let mut buf = Vec::with_capacity(SNAP_MAGIC.len() + 8 + meta_bytes.len() + body.len());
    buf.extend_from_slice(SNAP_MAGIC);
    buf.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(&meta_bytes);
    buf.extend_from_slice(body);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

/// Reads the snapshot file, if any. A damaged file is an error, never silently ignored:
/// the log before it may already be purged.
fn read_snapshot_file(dir: &Path) -> std::io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let path = dir.join(SNAP_FILE);
    let buf = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |why: &str| io_err(format!("snapshot {} is corrupt: {why}", path.display()));
    if buf.len() < SNAP_MAGIC.len() + 8 || &buf[..8] != SNAP_MAGIC {
        return Err(bad("bad header"));
    }
    let (content, crc) = buf.split_at(buf.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(content) != crc {
        return Err(bad("checksum mismatch"));
    }
    let meta_len = u32::from_le_bytes([content[8], content[9], content[10], content[11]]) as usize;
    let meta_end =
        12usize.checked_add(meta_len).filter(|e| *e <= content.len()).ok_or_else(|| bad("bad meta length"))?;
    let meta: SnapshotMeta = postcard::from_bytes(&content[12..meta_end]).map_err(|_| bad("bad meta"))?;
    Ok(Some((meta, content[meta_end..].to_vec())))
}

/// The shard's state machine as openraft drives it, plus a shared read handle.
pub struct StateMachineStore {
    shard: ShardId,
    dir: PathBuf,
    state: Arc<RwLock<KvState>>,
    events: EventLog,
    snapshot_seq: u64,
    host: Arc<dyn SplitHost>,
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

/// Writes of split children's first snapshots in flight.
type PendingChildren = Arc<tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

/// The directory of shard `id`'s snapshot next to `dir`, the directory of another shard.
fn sibling_dir(dir: &Path, id: ShardId) -> PathBuf {
    dir.parent().unwrap_or(dir).join(id.to_string())
}

/// Writes the first snapshot of a shard born from a split: its data, the parent's
/// membership, and a log that starts at index 0 (openraft starts the group from it
/// exactly as from an `initialize`d one).
fn write_child_snapshot(dir: &Path, child: &KvState) -> std::io::Result<()> {
    let meta = child_meta(child);
    let body = postcard::to_stdvec(&child.image()).map_err(io_err)?;
    write_initial_snapshot(dir, &meta, &body)
}

/// The first snapshot's metadata of a shard born from a split.
fn child_meta(child: &KvState) -> SnapshotMeta {
    let origin = LogId::new(openraft::CommittedLeaderId::new(super::types::origin_term(child.slice.epoch), 0), 0);
    SnapshotMeta {
        last_log_id: Some(origin),
        last_membership: StoredMembership::new(Some(origin), child.membership.membership().clone()),
        snapshot_id: format!("{}-split-{}", child.slice.shard, child.slice.epoch),
    }
}

/// A split's new state as its first snapshot reads back: applied up to the origin.
fn as_opened(mut child: KvState) -> KvState {
    let meta = child_meta(&child);
    child.last_applied = meta.last_log_id;
    child.membership = meta.last_membership;
    child
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
    ) -> std::io::Result<Self> {
        let mut state = KvState::default();
        state.slice = slice;
        let mut bytes = 0;
        if let Some((meta, body)) = read_snapshot_file(&dir)? {
            bytes = body.len() as u64;
            let image: KvImage = postcard::from_bytes(&body).map_err(io_err)?;
            state = KvState::from_image(image, meta.last_log_id, meta.last_membership.clone());
        }
        let mut sm = Self::build(shard, dir, notify, state, host, false);
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
    ) -> Self {
        Self::build(shard, dir, notify, state, host, true)
    }

    fn build(
        shard: ShardId,
        dir: PathBuf,
        notify: Arc<Notify>,
        state: KvState,
        host: Arc<dyn SplitHost>,
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
            sweep_stale(shard, state.clone());
        }
        Self {
            shard,
            dir,
            state,
            events,
            snapshot_seq: 0,
            host,
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

/// Entries a sweep looks at per batch; it holds the state's write lock only to remove
/// the stale ones among them (a few milliseconds).
const SWEEP_BATCH: usize = 4096;
/// A sweep rests this many times as long as each batch took: leftovers cost memory,
/// not correctness, so the sweep yields the CPU to client traffic.
const SWEEP_REST: u32 = 3;

/// Background work after a split runs one job of each kind at a time per node (one
/// leftover sweep, one new shard's first snapshot), so a doubling of every shard does
/// not take every core from client traffic at once.
static SWEEPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
static FIRST_SNAPSHOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Drops a split's leftovers (keys outside the slice) from `state` in the background,
/// batch by batch, so that neither the split's apply nor any write waits for the size
/// of the data. Starts again if a newer split leaves more; stops if a merge dropped
/// them first.
pub(crate) fn sweep_stale(shard: ShardId, state: Arc<RwLock<KvState>>) {
    tokio::spawn(async move {
        let Ok(_turn) = SWEEPS.acquire().await else { return };
        let started = std::time::Instant::now();
        let mut dropped = 0;
        'pass: loop {
            let Some((mark, view)) = state.read().stale_view() else { break };
            let mut after = None;
            loop {
                let batch = std::time::Instant::now();
                let (stale, next) = view.stale_keys(after.as_ref(), SWEEP_BATCH);
                if !stale.is_empty() {
                    if !state.write().drop_stale(mark, &stale) {
                        continue 'pass;
                    }
                    dropped += stale.len();
                    crate::crash_point!("split-sweep");
                }
                match next {
                    Some(k) => after = Some(k),
                    None => break,
                }
                tokio::time::sleep((batch.elapsed() * SWEEP_REST).max(std::time::Duration::from_millis(1))).await;
            }
            state.write().stale_dropped(mark);
        }
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(shard, dropped, ms, "split: the other shard's keys are dropped");
    });
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
        let revision = {
            let mut s = self.state.write();
            for entry in entries {
                s.last_applied = Some(entry.log_id);
                let r = match entry.payload {
                    EntryPayload::Blank => ProposalResult::default(),
                    EntryPayload::Normal(p) => ProposalResult {
                        results: p
                            .commands
                            .into_iter()
                            .map(|c| match c {
                                Command::Split { modulus, epoch } => {
                                    let mut r = s.apply_command(Command::Split { modulus, epoch }, &mut events);
                                    match s.split(modulus, epoch) {
                                        Ok(Some(child)) => ring_steps.push(RingStep::Split(Box::new(child))),
                                        Ok(None) => {}
                                        Err(e) => {
                                            tracing::warn!(shard = self.shard, error = %e, "split refused");
                                            r.ok = false;
                                        }
                                    }
                                    r
                                }
                                Command::MergeDone { modulus, epoch, revision } => {
                                    let before = s.slice.modulus;
                                    let r =
                                        s.apply_command(Command::MergeDone { modulus, epoch, revision }, &mut events);
                                    // A replica replaying entries from before it joined
                                    // (a new replica fed the log from its start) leaves the
                                    // donor's replicas here alone, as a split creates none.
                                    if s.slice.modulus < before && is_member(&s.membership, self.host.node_id()) {
                                        ring_steps.push(RingStep::Merged { donor: s.slice.shard + modulus, epoch });
                                        crate::crash_point!("merge-done");
                                    }
                                    r
                                }
                                c => {
                                    let kind = match &c {
                                        Command::Freeze { .. } => Some(true),
                                        Command::Absorb { .. } => Some(false),
                                        _ => None,
                                    };
                                    let r = s.apply_command(c, &mut events);
                                    match kind {
                                        Some(true) => crate::crash_point!("merge-frozen"),
                                        Some(false) => crate::crash_point!("merge-absorbed"),
                                        None => {}
                                    }
                                    r
                                }
                            })
                            .collect(),
                    },
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
            sweep_stale(self.shard, self.state.clone());
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
            if !is_member(&child.membership, self.host.node_id()) || !self.host.should_create(id, child.slice.epoch) {
                continue;
            }
            let dir = sibling_dir(&self.dir, id);
            let opened = as_opened(child);
            self.host.created(self.shard, id, opened.clone());
            tracing::info!(shard = self.shard, new_shard = id, "split: new shard created");
            crate::crash_point!("split-created");
            let (host, parent) = (self.host.clone(), self.shard);
            // The parent's next snapshot (which lets its log go, and with it the split
            // entry a crash would replay) waits for this write, so a failed write is
            // retried until it succeeds or the replica is retired.
            let write = tokio::spawn(async move {
                let started = std::time::Instant::now();
                let mut pause = std::time::Duration::from_millis(100);
                // An old replica of this id (a merged donor) goes first, directory and all.
                while host.retiring(id) && host.hosts(id) {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                while host.hosts(id) {
                    let (dir, state) = (dir.clone(), opened.clone());
                    // One first snapshot at a time per node; the turn is not held while
                    // a failed write waits to be tried again.
                    let Ok(turn) = FIRST_SNAPSHOTS.acquire().await else { return };
                    let written = tokio::task::spawn_blocking(move || write_child_snapshot(&dir, &state)).await;
                    drop(turn);
                    match written.map_err(io_err).and_then(|r| r) {
                        Ok(()) => {
                            let ms = started.elapsed().as_millis() as u64;
                            tracing::info!(
                                shard = parent,
                                new_shard = id,
                                ms,
                                "split: new shard's first snapshot is durable"
                            );
                            crate::crash_point!("split-snapshot-written");
                            host.durable(id);
                            return;
                        }
                        Err(e) => {
                            tracing::error!(shard = parent, new_shard = id, error = %e, retry_in = ?pause, "split: could not write the new shard's snapshot")
                        }
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(10));
                }
            });
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
