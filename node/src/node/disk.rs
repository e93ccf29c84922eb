//! The node and its disk: a guard that watches the free space of the data directory's
//! file system and refuses what would fill it, and the fence that stops a node whose WAL
//! failed for good.
//!
//! Below `--disk-reserve-bytes` of free space the node refuses client writes it would
//! propose (the router answers 507 `insufficient_storage`, nothing proposed); below half
//! of it, also appends that carry entries and snapshot installs from its shards' leaders,
//! so replication never fills a follower's disk (heartbeats and votes pass; the leaders
//! retry). Reads never look at the guard. Once space returns, all of it resumes by itself.
//! Should the disk fill up anyway (another process, a burst inside one guard period), the
//! WAL refuses the batch that hit it whole and the Raft log waits for space
//! (`wal::Error::Full`, `shard::log_store`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::Node;

/// How often the guard measures the free space.
pub const DISK_POLL: Duration = Duration::from_millis(200);

/// The exit code of a fenced node (EX_TEMPFAIL): its supervisor should restart it, and
/// recovery replays the WAL.
pub const EXIT_FENCED: i32 = 75;

/// Free space on the data directory's file system, as last measured, against the reserve.
pub struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
    /// Bytes available to the node; `u64::MAX` while unknown (never measured, or statvfs
    /// failed): the guard refuses nothing it cannot see.
    available: AtomicU64,
}

impl DiskGuard {
    /// A guard of `dir`'s file system keeping `reserve` bytes free (0: off); measures once.
    pub fn new(dir: PathBuf, reserve: u64) -> Self {
        let guard = DiskGuard { dir, reserve, available: AtomicU64::new(u64::MAX) };
        guard.measure();
        guard
    }

    /// Measures the free space now (statvfs: blocks available to unprivileged users).
    pub fn measure(&self) -> Option<u64> {
        match nix::sys::statvfs::statvfs(&self.dir) {
            Ok(st) => {
                let available: u64 = st.blocks_available().saturating_mul(st.fragment_size());
                self.available.store(available, Ordering::Relaxed);
                Some(available)
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "statvfs of the data directory failed");
                self.available.store(u64::MAX, Ordering::Relaxed);
                None
            }
        }
    }

    /// Bytes available as last measured (`None`: unknown).
    pub fn available(&self) -> Option<u64> {
        Some(self.available.load(Ordering::Relaxed)).filter(|a| *a != u64::MAX)
    }

    /// Whether free space is below the reserve: client writes are refused.
    pub fn is_low(&self) -> bool {
        self.available.load(Ordering::Relaxed) < self.reserve
    }

    /// Why a client write this node would propose is refused, if it is.
    pub fn refuses_writes(&self) -> Option<String> {
        let available = self.available.load(Ordering::Relaxed);
        (available < self.reserve).then(|| {
            format!(
                "node's disk is nearly full ({available} bytes free, {} reserved); the write was not applied",
                self.reserve
            )
        })
    }

    /// Whether replication into this node's replicas (appends with entries, snapshots)
    /// is refused: free space below half the reserve.
    pub fn refuses_replication(&self) -> bool {
        self.available.load(Ordering::Relaxed) < self.reserve / 2
    }
}

/// Tripped when the node must stop serving at once because its WAL failed for good (a
/// failed fsync: the page cache may have dropped what it held, so nothing written since
/// the last good fsync can be trusted). The node does not go on as a zombie whose shards
/// refuse every write: `run` returns `StartError::Fenced` without draining or handing
/// off, the binary exits with [`EXIT_FENCED`], and a restart recovers from the WAL.
#[derive(Clone, Default)]
pub struct Fence {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl Fence {
    /// Trips the fence (the first reason wins).
    pub fn trip(&self, reason: String) {
        self.reason.lock().get_or_insert(reason);
        self.token.cancel();
    }

    /// The reason, if the fence is tripped.
    pub fn reason(&self) -> Option<String> {
        self.token.is_cancelled().then(|| self.reason.lock().clone().unwrap_or_default())
    }

    /// Resolves, with the reason, once the fence is tripped.
    pub async fn tripped(&self) -> String {
        self.token.cancelled().await;
        self.reason.lock().clone().unwrap_or_default()
    }
}

impl Node {
    /// Measures the data directory's free space every [`DISK_POLL`], publishes it as
    /// metrics and logs when the guard starts and stops refusing.
    pub async fn watch_disk(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(DISK_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_low = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.disk.measure();
            self.publish_disk();
            let low = self.disk.is_low();
            match (was_low, low) {
                (false, true) => tracing::warn!(
                    available = self.disk.available(),
                    reserve = self.config.disk_reserve_bytes,
                    "disk nearly full: refusing client writes (507) until space returns"
                ),
                (true, false) => {
                    tracing::info!(available = self.disk.available(), "disk space is back: accepting writes")
                }
                _ => {}
            }
            was_low = low;
        }
    }

    /// Sets the disk gauges from the last measurement.
    pub fn publish_disk(&self) {
        let available = self.disk.available().map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        self.metrics.disk_available.set(available);
        self.metrics.disk_low.set(i64::from(self.disk.is_low()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(available: u64, reserve: u64) -> DiskGuard {
        let g = DiskGuard { dir: PathBuf::from("/"), reserve, available: AtomicU64::new(available) };
        assert_eq!(g.available(), (available != u64::MAX).then_some(available));
        g
    }

    #[test]
    fn writes_stop_below_the_reserve_and_replication_below_half_of_it() {
        // (available, reserve) -> (writes refused, replication refused)
        let cases = [
            (100, 64, false, false),
            (64, 64, false, false),
            (63, 64, true, false),
            (32, 64, true, false),
            (31, 64, true, true),
            (0, 64, true, true),
            (0, 0, false, false),         // the guard is off
            (u64::MAX, 64, false, false), // not measured: refuse nothing
        ];
        for (available, reserve, writes, replication) in cases {
            let g = guard(available, reserve);
            assert_eq!(g.refuses_writes().is_some(), writes, "{available} of {reserve}");
            assert_eq!(g.is_low(), writes);
            assert_eq!(g.refuses_replication(), replication, "{available} of {reserve}");
        }
    }

    #[test]
    fn the_guard_measures_a_real_file_system() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let g = DiskGuard::new(tmp.path().to_path_buf(), 1);
        assert!(g.available().is_some_and(|a| a > 0));
        let missing = DiskGuard::new(tmp.path().join("missing"), u64::MAX - 1);
        assert_eq!(missing.available(), None);
        assert!(missing.refuses_writes().is_none(), "what the guard cannot see, it does not refuse");
    }

    #[tokio::test]
    async fn a_fence_keeps_its_first_reason() {
        let fence = Fence::default();
        fence.trip("wal fsync failed".into());
        fence.trip("later".into());
        assert_eq!(fence.clone().tripped().await, "wal fsync failed");
        assert_eq!(fence.reason().as_deref(), Some("wal fsync failed"));
        assert_eq!(Fence::default().reason(), None);
    }
}
