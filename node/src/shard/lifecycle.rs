//! A shard's part in splits and merges outside its replicated state: what it tells the
//! node ([`SplitHost`]), a split's new shard and the background writing of its first
//! snapshot, and the sweep of a split's leftovers. Background work is limited per node
//! by [`BackgroundLimits`], which the node holds and gives every shard it opens.

use parking_lot::RwLock;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::kv::KvState;
use super::snapshot_file::{io_err, write_initial_snapshot};
use super::types::{LogId, SnapshotMeta, StoredMembership};
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

/// Background work after a split runs one job of each kind at a time per node (one
/// leftover sweep, one new shard's first snapshot), so a doubling of every shard does
/// not take every core from client traffic at once. The node holds one, shared by all
/// its shards (`ShardDeps::limits`).
pub struct BackgroundLimits {
    sweeps: Semaphore,
    first_snapshots: Semaphore,
}

impl Default for BackgroundLimits {
    fn default() -> Self {
        Self { sweeps: Semaphore::new(1), first_snapshots: Semaphore::new(1) }
    }
}

/// A split or a merge's end, in the order the log applied them.
pub(super) enum RingStep {
    Split(Box<KvState>),
    Merged { donor: ShardId, epoch: u64 },
}

/// Whether `node` is a member (voter or learner) of `membership`.
pub(super) fn is_member(membership: &StoredMembership, node: NodeId) -> bool {
    membership.membership().nodes().any(|(id, _)| *id == node)
}

/// Entries a sweep looks at per batch; it holds the state's write lock only to remove
/// the stale ones among them (a few milliseconds).
const SWEEP_BATCH: usize = 4096;
/// A sweep rests this many times as long as each batch took: leftovers cost memory,
/// not correctness, so the sweep yields the CPU to client traffic.
const SWEEP_REST: u32 = 3;

/// Drops a split's leftovers (keys outside the slice) from `state` in the background,
/// batch by batch, so that neither the split's apply nor any write waits for the size
/// of the data. Starts again if a newer split leaves more; stops if a merge dropped
/// them first.
pub(crate) fn sweep_stale(shard: ShardId, state: Arc<RwLock<KvState>>, limits: Arc<BackgroundLimits>) {
    tokio::spawn(async move {
        let Ok(_turn) = limits.sweeps.acquire().await else { return };
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

/// Writes of split children's first snapshots in flight.
pub(super) type PendingChildren = Arc<tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

/// The directory of shard `id`'s snapshot next to `dir`, the directory of another shard.
pub(super) fn sibling_dir(dir: &Path, id: ShardId) -> PathBuf {
    dir.parent().unwrap_or(dir).join(id.to_string())
}

/// The first snapshot's metadata of a shard born from a split: applied up to its
/// origin, index 0 at the split's origin term, with the parent's membership.
pub(super) fn child_meta(child: &KvState) -> SnapshotMeta {
    let origin = LogId::new(openraft::CommittedLeaderId::new(super::types::origin_term(child.slice.epoch), 0), 0);
    SnapshotMeta {
        last_log_id: Some(origin),
        last_membership: StoredMembership::new(Some(origin), child.membership.membership().clone()),
        snapshot_id: format!("{}-split-{}", child.slice.shard, child.slice.epoch),
    }
}

/// A split's new state as its first snapshot reads back: applied up to the origin.
pub(super) fn as_opened(mut child: KvState) -> KvState {
    let meta = child_meta(&child);
    child.last_applied = meta.last_log_id;
    child.membership = meta.last_membership;
    child
}

/// Writes the first snapshot of a shard born from a split: its data, the parent's
/// membership, and a log that starts at index 0 (openraft starts the group from it
/// exactly as from an `initialize`d one).
fn write_child_snapshot(dir: &Path, child: &KvState) -> std::io::Result<()> {
    let meta = child_meta(child);
    let body = postcard::to_stdvec(&child.image()).map_err(io_err)?;
    write_initial_snapshot(dir, &meta, &body)
}

/// Writes the first snapshot of `id`, created here by a split of `parent` (`opened`, as
/// [`as_opened`] made it), to `dir` in the background, then tells the host it is durable.
/// The parent's next snapshot (which lets its log go, and with it the split entry a
/// crash would replay) waits for this write, so a failed write is retried until it
/// succeeds or the replica is retired.
pub(super) fn write_first_snapshot(
    host: Arc<dyn SplitHost>,
    limits: Arc<BackgroundLimits>,
    parent: ShardId,
    id: ShardId,
    dir: PathBuf,
    opened: KvState,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(100);
        // An old replica of this id (a merged donor) goes first, directory and all.
        while host.retiring(id) && host.hosts(id) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        while host.hosts(id) {
            let (dir, state) = (dir.clone(), opened.clone());
            // One first snapshot at a time per node; the turn is not held while a
            // failed write waits to be tried again.
            let Ok(turn) = limits.first_snapshots.acquire().await else { return };
            let written = tokio::task::spawn_blocking(move || write_child_snapshot(&dir, &state)).await;
            drop(turn);
            match written.map_err(io_err).and_then(|r| r) {
                Ok(()) => {
                    let ms = started.elapsed().as_millis() as u64;
                    tracing::info!(shard = parent, new_shard = id, ms, "split: new shard's first snapshot is durable");
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_kind_of_background_work_takes_one_turn_at_a_time_per_node() {
        let limits = BackgroundLimits::default();
        let sweep = limits.sweeps.try_acquire().unwrap();
        assert!(limits.sweeps.try_acquire().is_err(), "a second sweep waits");
        let snapshot = limits.first_snapshots.try_acquire().unwrap();
        assert!(limits.first_snapshots.try_acquire().is_err(), "a second first snapshot waits");
        drop((sweep, snapshot));
        let other_node = BackgroundLimits::default();
        let _mine = limits.sweeps.try_acquire().unwrap();
        assert!(other_node.sweeps.try_acquire().is_ok(), "another node's limits are its own");
    }

    #[test]
    fn a_split_child_opens_applied_up_to_its_origin_in_a_sibling_directory() {
        let mut child = KvState::default();
        child.slice = super::super::kv::Slice { shard: 5, modulus: 8, epoch: 7 };
        let opened = as_opened(child);
        let meta = child_meta(&opened);
        assert_eq!(opened.last_applied, meta.last_log_id);
        assert_eq!(
            meta.last_log_id.map(|l| (l.leader_id.term, l.index)),
            Some((super::super::types::origin_term(7), 0))
        );
        assert_eq!(meta.snapshot_id, "5-split-7");
        assert_eq!(sibling_dir(Path::new("/data/shards/1"), 5), Path::new("/data/shards/5"));
    }
}
