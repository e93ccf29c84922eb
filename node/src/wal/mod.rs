//! The node's write-ahead log, shared by all of its Raft shards.
//!
//! It stores opaque bytes per shard (`Record`s) and knows nothing of openraft: the Raft
//! log store serialises its types and keeps all unpurged entries in memory, so the WAL
//! is written during operation and read only by [`Wal::open`] on recovery.
//!
//! A write flows like this: a shard calls [`Wal::submit`] (or [`Wal::write`]) with its
//! records; the request joins a channel; the single writer thread (`writer.rs`) takes
//! everything queued, encodes it (`format.rs`) into one buffer, appends it to the
//! active segment with one write and one fdatasync, then answers every waiter. When the
//! active segment outgrows `segment_bytes` the writer starts the next one with a
//! checkpoint of every shard's vote, committed and purge state, and deletes the oldest
//! segments whose entries are all purged (`segment.rs`). On open, `recovery.rs` replays
//! the segments in order and cuts off a torn tail. All disk access goes through the
//! `fs::FileSystem` trait, so tests can inject failed writes, failed fsyncs and a full
//! disk. A failed fsync fails the WAL for good (the owner is told, `OnFailure`); a full
//! disk only refuses the batch that hit it ([`Error::Full`]).

mod error;
mod format;
pub mod fs;
mod recovery;
mod segment;
#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
mod writer;

use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub use error::Error;
pub use format::Record;

use writer::{Request, Shared, Writer};

/// Observer of each group-commit fsync: its duration and how many records it made
/// durable (for a histogram kept by the caller).
pub type OnFsync = Arc<dyn Fn(Duration, usize) + Send + Sync>;

/// Told once, on the writer thread, that the WAL failed for good (a failed fsync or
/// write): from then on it refuses every write, and its owner should stop serving.
pub type OnFailure = Arc<dyn Fn(&Error) + Send + Sync>;

/// How to open a [`Wal`].
#[derive(Clone)]
pub struct WalOptions {
    /// Start a new segment once the active one holds at least this many bytes. A segment
    /// can exceed it by one batch. Default 64 MiB.
    pub segment_bytes: u64,
    /// Where the bytes go. Default: the real file system.
    pub fs: Arc<dyn fs::FileSystem>,
    /// Called on the writer thread after every successful batch fsync. Keep it cheap.
    pub on_fsync: Option<OnFsync>,
    /// Called once if the WAL fails for good (not for a full disk, after which it goes on).
    pub on_failure: Option<OnFailure>,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_bytes: 64 << 20, fs: Arc::new(fs::RealFs), on_fsync: None, on_failure: None }
    }
}

/// One shard's state as replayed from disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardLog {
    /// The latest Vote record.
    pub vote: Option<Vec<u8>>,
    /// The latest Committed record.
    pub committed: Option<Vec<u8>>,
    /// The latest Purge record: (upto, purged log id).
    pub purged: Option<(u64, Vec<u8>)>,
    /// Entries by index, after applying every Truncate and Purge in log order.
    pub entries: BTreeMap<u64, Vec<u8>>,
}

/// Everything [`Wal::open`] found on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every shard with at least one record on disk.
    pub shards: BTreeMap<u32, ShardLog>,
    /// The last segment and the offset it was cut at, if it ended in a torn write.
    /// Expected after a crash; only unacknowledged records were lost.
    pub torn_tail: Option<(PathBuf, u64)>,
}

/// A cheap handle to the node's WAL; clone it into every shard.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` once closed. The writer thread exits when this sender is dropped and the
    /// queue is drained, so nothing submitted before close() is left unanswered.
    requests: RwLock<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

const _: () = {
    const fn assert_cheap_handle<T: Clone + Send + Sync + 'static>() {}
    assert_cheap_handle::<Wal>();
};

impl Wal {
    /// Opens the WAL in `dir` (creating the directory if needed), replays every segment,
    /// truncates a torn tail and starts the writer thread. Fails with
    /// [`Error::Corruption`] naming the file and byte offset of anything it cannot read.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Recovered), Error> {
        opts.fs.create_dir_all(dir)?;
        let replayed = recovery::replay(&*opts.fs, dir)?;
        let shared = Arc::new(Shared::default());
        let writer =
            Writer::start(&opts, dir.to_path_buf(), replayed.segments, &replayed.recovered.shards, shared.clone())?;
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new().name("ringkv-wal".into()).spawn(move || writer.run(rx))?;
        let inner = Inner { requests: RwLock::new(Some(tx)), thread: Mutex::new(Some(thread)), shared };
        Ok((Wal { inner: Arc::new(inner) }, replayed.recovered))
    }

    /// Queues records of one shard; records of all submits reach the disk in submission
    /// order. `done` runs exactly once: on the writer thread after the records are
    /// written and fsynced (Ok) or with the error. Only if the WAL is already closed does
    /// it run on the calling thread, with [`Error::Closed`], before this returns.
    pub fn submit(&self, shard: u32, records: Vec<Record>, done: Box<dyn FnOnce(Result<(), Error>) + Send>) {
        self.send(Request { shard, records, done, lazy: false });
    }

    /// Queues records that need not be durable (e.g. the commit index, purges): they are
    /// written, in submission order, with the next batch that is fsynced anyway, or at
    /// close, and never cause an fsync of their own.
    pub fn submit_lazy(&self, shard: u32, records: Vec<Record>) {
        self.send(Request { shard, records, done: Box::new(|_| {}), lazy: true });
    }

    fn send(&self, request: Request) {
        let requests = self.inner.requests.read();
        let refused = match requests.as_ref() {
            Some(tx) => tx.send(request).err().map(|returned| returned.0),
            None => Some(request),
        };
        drop(requests);
        if let Some(request) = refused {
            (request.done)(Err(Error::Closed));
        }
    }

    /// Submits and waits. Fsynced before return: Ok means the records are durable.
    pub async fn write(&self, shard: u32, records: Vec<Record>) -> Result<(), Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            shard,
            records,
            Box::new(move |result| {
                let _ = tx.send(result); // the waiter may have given up; nothing to do then
            }),
        );
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Shards whose unpurged entries keep alive segments older than the newest two; the
    /// node should have them snapshot and purge. Empty while there are at most two
    /// segments. Updated by the writer after rotations, purges and truncations.
    pub fn pinning_shards(&self) -> Vec<u32> {
        self.inner.shared.pinning.lock().clone()
    }

    /// Stops the writer once everything queued so far is written and fsynced, and waits
    /// for it (blocking). Later submits fail with [`Error::Closed`]. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Bytes on disk and number of segment files, as of the last batch.
    pub fn disk_usage(&self) -> (u64, usize) {
        let shared = &self.inner.shared;
        (shared.bytes.load(Ordering::Relaxed), shared.segments.load(Ordering::Relaxed))
    }
}

impl Inner {
    fn close(&self) {
        drop(self.requests.write().take());
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            // A callback on the writer thread may drop the last handle; it cannot wait
            // for itself, and the writer exits on its own once the queue is drained.
            if thread.thread().id() != thread::current().id() && thread.join().is_err() {
                tracing::error!("wal: writer thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}
