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
//! disk.

mod error;
mod format;
pub mod fs;
mod recovery;
mod segment;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub use error::Error;
pub use format::Record;

use writer::{Request, Shared, Writer};

/// Observer of each group-commit fsync: its duration and how many records it made
/// durable (for a histogram kept by the caller).
pub type OnFsync = Arc<dyn Fn(Duration, usize) + Send + Sync>;

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
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_bytes: 64 << 20, fs: Arc::new(fs::RealFs), on_fsync: None }
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
        let writer = Writer::start(
            opts.fs.clone(),
            dir.to_path_buf(),
            opts.segment_bytes,
            opts.on_fsync.clone(),
            replayed.segments,
            &replayed.recovered.shards,
            shared.clone(),
        )?;
        let (tx, rx) = mpsc::channel();
        let thread =
            thread::Builder::new().name("ringkv-wal".into()).spawn(move || writer.run(rx))?;
        let inner = Inner {
            requests: RwLock::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            shared,
        };
        Ok((Wal { inner: Arc::new(inner) }, replayed.recovered))
    }

    /// Queues records of one shard; records of all submits reach the disk in submission
    /// order. `done` runs exactly once: on the writer thread after the records are
    /// written and fsynced (Ok) or with the error. Only if the WAL is already closed does
    /// it run on the calling thread, with [`Error::Closed`], before this returns.
    pub fn submit(
        &self,
        shard: u32,
        records: Vec<Record>,
        done: Box<dyn FnOnce(Result<(), Error>) + Send>,
    ) {
        let request = Request { shard, records, done };
        let requests = self.inner.requests.read().unwrap_or_else(PoisonError::into_inner);
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
        self.submit(shard, records, Box::new(move |result| {
            let _ = tx.send(result); // the waiter may have given up; nothing to do then
        }));
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Shards whose unpurged entries keep alive segments older than the newest two; the
    /// node should have them snapshot and purge. Empty while there are at most two
    /// segments. Updated by the writer after rotations, purges and truncations.
    pub fn pinning_shards(&self) -> Vec<u32> {
        self.inner.shared.pinning.lock().unwrap_or_else(PoisonError::into_inner).clone()
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
        drop(self.requests.write().unwrap_or_else(PoisonError::into_inner).take());
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
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

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub fn entry(index: u64) -> Record {
        Record::Entry { index, data: format!("entry-{index}").into_bytes() }
    }

    pub fn open(dir: &Path) -> (Wal, Recovered) {
        Wal::open(dir, WalOptions::default()).expect("open wal")
    }

    pub fn open_small(dir: &Path, segment_bytes: u64) -> (Wal, Recovered) {
        Wal::open(dir, WalOptions { segment_bytes, ..WalOptions::default() }).expect("open wal")
    }

    /// Submits and blocks until `done` has run.
    pub fn write_sync(wal: &Wal, shard: u32, records: Vec<Record>) -> Result<(), Error> {
        let (tx, rx) = std::sync::mpsc::channel();
        wal.submit(shard, records, Box::new(move |result| {
            let _ = tx.send(result);
        }));
        rx.recv().unwrap_or(Err(Error::Closed))
    }

    pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let files = segment::list(&fs::RealFs, dir).expect("list segments");
        files.into_iter().map(|(_, path)| path).collect()
    }

    pub fn record_len(record: &Record) -> u64 {
        let mut buf = Vec::new();
        format::encode_record(0, record, &mut buf).expect("encode");
        buf.len() as u64
    }

    pub fn indexes(recovered: &Recovered, shard: u32) -> Vec<u64> {
        recovered.shards.get(&shard).map(|log| log.entries.keys().copied().collect()).unwrap_or_default()
    }

    pub fn flip_byte(path: &Path, offset: u64) {
        let mut data = std::fs::read(path).expect("read");
        data[offset as usize] ^= 0xff;
        std::fs::write(path, data).expect("write");
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    fn log(vote: &str, committed: &str, purged: Option<(u64, &str)>, entries: &[u64]) -> ShardLog {
        ShardLog {
            vote: Some(vote.into()),
            committed: Some(committed.into()),
            purged: purged.map(|(upto, id)| (upto, id.into())),
            entries: entries.iter().map(|i| (*i, format!("entry-{i}").into_bytes())).collect(),
        }
    }

    #[tokio::test]
    async fn records_round_trip_through_reopen() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, recovered) = open(tmp.path());
        assert!(recovered.shards.is_empty() && recovered.torn_tail.is_none());

        let shard1 = vec![
            Record::Vote(b"v1".to_vec()),
            entry(1), entry(2), entry(3), entry(4), entry(5),
            Record::Truncate { since: 4 },          // drops 4 and 5
            Record::Entry { index: 4, data: b"rewritten".to_vec() },
            Record::Purge { upto: 1, data: b"p1".to_vec() },
            Record::Purge { upto: 2, data: b"p2".to_vec() }, // latest purge wins
            Record::Committed(b"c3".to_vec()),
            Record::Vote(b"v2".to_vec()),            // latest vote wins
        ];
        wal.write(1, shard1).await.expect("write shard 1");
        wal.write(2, vec![entry(10), Record::Committed(vec![]), entry(11)]).await.expect("write 2");
        wal.write(3, vec![Record::Vote(b"only".to_vec())]).await.expect("write shard 3");
        wal.write(2, vec![Record::Truncate { since: 0 }, entry(12)]).await.expect("write 2 again");
        drop(wal);

        let (_wal, recovered) = open(tmp.path());
        let mut expected1 = log("v2", "c3", Some((2, "p2")), &[3]);
        expected1.entries.insert(4, b"rewritten".to_vec());
        let mut expected2 = log("", "", None, &[12]);
        expected2.vote = None;
        let expected3 = ShardLog { vote: Some(b"only".to_vec()), ..ShardLog::default() };
        assert_eq!(recovered.shards, BTreeMap::from([(1, expected1), (2, expected2), (3, expected3)]));
        assert_eq!(recovered.torn_tail, None);
    }

    #[tokio::test]
    async fn close_makes_queued_writes_durable_and_refuses_later_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(tmp.path());
        let (tx, rx) = std::sync::mpsc::channel();
        for index in 1..=50 {
            let tx = tx.clone();
            wal.submit(1, vec![entry(index)], Box::new(move |r| drop(tx.send(r))));
        }
        wal.close();
        assert!(rx.try_iter().take(50).all(|r| r.is_ok()), "all 50 answered Ok before close returned");
        assert!(matches!(wal.write(1, vec![entry(51)]).await, Err(Error::Closed)));
        wal.close();

        let (_wal, recovered) = open(tmp.path());
        assert_eq!(indexes(&recovered, 1), (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn oversized_record_is_rejected_and_the_wal_stays_usable() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(tmp.path());
        let huge = Record::Entry { index: 2, data: vec![0; format::MAX_RECORD_LEN] };
        let err = write_sync(&wal, 1, vec![entry(1), huge]).expect_err("too large");
        assert_eq!(err.metric_label(), "too_large");
        write_sync(&wal, 1, vec![entry(3)]).expect("later write");
        drop(wal);
        let (_wal, recovered) = open(tmp.path());
        assert_eq!(indexes(&recovered, 1), vec![3], "nothing of the rejected submit was written");
    }
}
