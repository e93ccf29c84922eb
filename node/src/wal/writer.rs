//! The single writer thread. It owns the active segment; every shard's records reach the
//! disk through it, so one fsync covers whatever all shards queued meanwhile.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use super::format::{self, Record};
use super::fs::{FileSystem, WalFile};
use super::segment::{self, SegmentInfo, Segments};
use super::{Error, OnFailure, OnFsync, ShardLog, WalOptions};

/// Called once with the outcome of a submit.
pub(super) type Done = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// One submit.
pub(super) struct Request {
    pub shard: u32,
    pub records: Vec<Record>,
    pub done: Done,
    /// Need not be durable: held until the next batch that must be fsynced (or close),
    /// never the cause of an fsync of its own.
    pub lazy: bool,
}

/// What the writer publishes for cheap reads from any thread.
#[derive(Default)]
pub(super) struct Shared {
    pub bytes: AtomicU64,
    pub segments: AtomicUsize,
    pub pinning: Mutex<Vec<u32>>,
}

/// The latest state records of a shard: what a checkpoint repeats.
#[derive(Default)]
struct ShardMeta {
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
}

pub(super) struct Writer {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment_bytes: u64,
    on_fsync: Option<OnFsync>,
    on_failure: Option<OnFailure>,
    segments: Segments,
    active: Box<dyn WalFile>,
    meta: BTreeMap<u32, ShardMeta>,
    /// Set by the first failed fsync or write (but a full disk's, see `append_and_sync`);
    /// answers every later request. Never cleared: after a failed fsync the page cache may
    /// have dropped the data, so a retry that succeeds would acknowledge records that are
    /// not on disk (PostgreSQL's "fsyncgate"). The node fences itself (`on_failure`).
    failed: Option<Error>,
    shared: Arc<Shared>,
    buf: Vec<u8>,
}

impl Writer {
    /// Opens the last segment for appending (or creates the first one) and writes a
    /// checkpoint there, since a segment cut short while it was created may lack one.
    pub(super) fn start(
        opts: &WalOptions,
        dir: PathBuf,
        mut segments: Segments,
        shards: &BTreeMap<u32, ShardLog>,
        shared: Arc<Shared>,
    ) -> Result<Writer, Error> {
        let meta = shards
            .iter()
            .map(|(shard, log)| {
                let meta =
                    ShardMeta { vote: log.vote.clone(), committed: log.committed.clone(), purged: log.purged.clone() };
                (*shard, meta)
            })
            .collect();
        let fs = opts.fs.clone();
        let active = match segments.active() {
            Some(last) => fs.open_append(&last.path)?,
            None => {
                let (path, file) = segment::create(&*fs, &dir, 1, &[])?;
                segments.push(SegmentInfo::new(1, path, file.len()));
                file
            }
        };
        let mut writer = Writer {
            fs,
            dir,
            segment_bytes: opts.segment_bytes,
            on_fsync: opts.on_fsync.clone(),
            on_failure: opts.on_failure.clone(),
            segments,
            active,
            meta,
            failed: None,
            shared,
            buf: Vec::new(),
        };
        if writer.active.is_empty() {
            format::encode_header(&mut writer.buf);
        }
        writer.encode_checkpoint()?;
        if !writer.buf.is_empty() {
            writer.active.write_all(&writer.buf)?;
            writer.active.sync_data()?;
        }
        writer.publish(true);
        Ok(writer)
    }

    /// Group commit: block for one request, take everything else already queued, write
    /// and fsync it as one batch. Returns when every sender is gone and the queue is
    /// drained, so whatever was submitted before close() is on disk.
    pub(super) fn run(mut self, requests: Receiver<Request>) {
        let mut pending: Vec<Request> = Vec::new();
        while let Ok(first) = requests.recv() {
            pending.push(first);
            pending.extend(requests.try_iter());
            if pending.iter().all(|r| r.lazy) {
                continue; // ride along with the next durable batch, in submission order
            }
            self.write_batch(std::mem::take(&mut pending));
            if self.buf.capacity() > 16 << 20 {
                self.buf = Vec::new(); // do not keep one huge batch's buffer forever
            }
        }
        if !pending.is_empty() {
            self.write_batch(pending); // close(): lazy records are written and synced too
        }
        tracing::info!(dir = %self.dir.display(), "wal: writer stopped");
    }

    fn write_batch(&mut self, batch: Vec<Request>) {
        if let Some(err) = &self.failed {
            batch.into_iter().for_each(|r| answer(r.done, Err(err.clone())));
            return;
        }
        self.buf.clear();
        let mut waiters = Vec::with_capacity(batch.len());
        let mut written = Vec::with_capacity(batch.len());
        let mut records = 0;
        for Request { shard, records: recs, done, .. } in batch {
            let start = self.buf.len();
            if let Err(err) = recs.iter().try_for_each(|r| format::encode_record(shard, r, &mut self.buf)) {
                self.buf.truncate(start); // nothing of a rejected submit is written
                answer(done, Err(err));
                continue;
            }
            records += recs.len();
            written.push((shard, recs));
            waiters.push(done);
        }
        if !self.buf.is_empty() {
            if let Err(err) = self.append_and_sync(records) {
                waiters.into_iter().for_each(|done| answer(done, Err(err.clone())));
                return;
            }
        }
        // Noted only once durable: checkpoints and segment deletion rely on what the
        // writer noted, and a batch a full disk refused is not on disk.
        let mut may_free_segments = false;
        for (shard, recs) in written {
            for record in recs {
                may_free_segments |= self.note(shard, record);
            }
        }
        // Housekeeping before answering, so a caller that saw its Purge acknowledged also
        // sees its effect on pinning_shards() and disk_usage(). The batch is durable
        // either way: if rotation fails, the waiters still get Ok and later writes fail.
        let rotate = self.active.len() >= self.segment_bytes;
        match if rotate { self.rotate() } else { Ok(()) } {
            Ok(()) => {
                if rotate || may_free_segments {
                    self.delete_purged_segments();
                }
                self.publish(rotate || may_free_segments);
            }
            Err(err) => self.fail(err),
        }
        waiters.into_iter().for_each(|done| answer(done, Ok(())));
    }

    /// Writes and fsyncs the batch in `buf`. Any failure fails the WAL for good, but one:
    /// a full disk refusing the write (before any fsync of it). Everything before the batch
    /// is durable already, so the file is cut back to where the batch began, the batch's
    /// waiters get [`Error::Full`] and the WAL stays usable for when space returns.
    fn append_and_sync(&mut self, records: usize) -> Result<(), Error> {
        let before = self.active.len();
        if let Err(err) = self.active.write_all(&self.buf) {
            let err = match Error::from(err) {
                Error::Full => match self.active.set_len(before) {
                    Ok(()) => {
                        tracing::warn!(batch_bytes = self.buf.len(), "wal: disk full; batch refused, nothing lost");
                        return Err(Error::Full);
                    }
                    Err(cut) => broken("disk full, and cutting the refused batch back off failed", cut),
                },
                other => other,
            };
            self.fail(err.clone());
            return Err(err);
        }
        let started = Instant::now();
        // Durability contract: no waiter of this batch is answered before this single
        // fdatasync has returned Ok ("done runs only after the records are fsynced").
        // A failed fsync is never retried on the same data (see `failed`). Every fsync
        // error is `Io`, even ENOSPC/EDQUOT (delayed allocation, thin provisioning): the
        // batch may be half on disk and the page cache may have dropped it, so it is not
        // the "nothing written, try again" that `Full` promises.
        if let Err(err) = self.active.sync_data() {
            let err = Error::Io(Arc::new(err));
            self.fail(err.clone());
            return Err(err);
        }
        if let Some(on_fsync) = &self.on_fsync {
            on_fsync(started.elapsed(), records);
        }
        Ok(())
    }

    /// Tracks what checkpoints and segment deletion need. Returns true if the record can
    /// make old segments deletable.
    fn note(&mut self, shard: u32, record: Record) -> bool {
        let meta = self.meta.entry(shard).or_default();
        match record {
            Record::Vote(vote) => meta.vote = Some(vote),
            Record::Committed(committed) => meta.committed = Some(committed),
            Record::Entry { index, .. } => self.segments.note_entry(shard, index),
            Record::Truncate { since } => {
                self.segments.note_truncate(shard, since);
                return true;
            }
            Record::Purge { upto, data } => {
                meta.purged = Some((upto, data));
                return true;
            }
            Record::Forget => {
                // Checkpoints must not bring the replica's vote or purge back.
                self.meta.remove(&shard);
                self.segments.note_truncate(shard, 0);
                return true;
            }
        }
        false
    }

    /// Appends every known shard's latest Vote, Committed and Purge to `buf`.
    fn encode_checkpoint(&mut self) -> Result<(), Error> {
        for (shard, meta) in &self.meta {
            let records = [
                meta.vote.clone().map(Record::Vote),
                meta.committed.clone().map(Record::Committed),
                meta.purged.clone().map(|(upto, data)| Record::Purge { upto, data }),
            ];
            for record in records.iter().flatten() {
                format::encode_record(*shard, record, &mut self.buf)?;
            }
        }
        Ok(())
    }

    /// Called after a batch made the active segment full; that batch's fsync already
    /// made the old segment durable.
    fn rotate(&mut self) -> Result<(), Error> {
        let seq = self.segments.active().map_or(1, |s| s.seq + 1);
        self.buf.clear();
        self.encode_checkpoint()?;
        // The new segment and its checkpoint are durable before any older segment can
        // be deleted, because deletion relies on that checkpoint.
        let (path, file) = match segment::create(&*self.fs, &self.dir, seq, &self.buf) {
            Ok(created) => created,
            Err(err) => return self.abandon_rotation(seq, err.into()),
        };
        if let Some(old) = self.segments.active_mut() {
            old.bytes = self.active.len();
        }
        tracing::debug!(segment = %path.display(), "wal: rotated");
        crate::crash_point!("wal-rotated");
        self.segments.push(SegmentInfo::new(seq, path, file.len()));
        self.active = file;
        Ok(())
    }

    /// A rotation that failed: on a full disk, the new segment's remains are removed and
    /// the active segment goes on (past `segment_bytes`; the next batch tries again).
    fn abandon_rotation(&mut self, seq: u64, err: Error) -> Result<(), Error> {
        if !matches!(err, Error::Full) {
            return Err(err);
        }
        let path = segment::segment_path(&self.dir, seq);
        let removed = match self.fs.remove(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => self.fs.sync_dir(&self.dir),
        };
        match removed {
            Ok(()) => {
                tracing::warn!(segment = %path.display(), "wal: disk full; rotation postponed");
                Ok(())
            }
            Err(e) => Err(broken(&format!("disk full, and removing the half-created {} failed", path.display()), e)),
        }
    }

    fn delete_purged_segments(&mut self) {
        let meta = &self.meta;
        let purged_upto = |shard: u32| meta.get(&shard)?.purged.as_ref().map(|(upto, _)| *upto);
        match self.segments.delete_purged_prefix(&*self.fs, &self.dir, &purged_upto) {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::debug!(count = deleted.len(), "wal: deleted fully purged segments");
                crate::crash_point!("wal-compacted");
            }
            Ok(_) => {}
            // Not fatal: the files are only garbage; a later attempt retries.
            Err(err) => tracing::warn!(error = %err, "wal: deleting purged segments failed"),
        }
    }

    /// Publishes disk usage and, if `recompute_pinning`, the pinning shards.
    fn publish(&self, recompute_pinning: bool) {
        let total = self.segments.total_bytes(self.active.len());
        self.shared.bytes.store(total, Ordering::Relaxed);
        self.shared.segments.store(self.segments.len(), Ordering::Relaxed);
        if recompute_pinning {
            let meta = &self.meta;
            let purged_upto = |shard: u32| meta.get(&shard)?.purged.as_ref().map(|(upto, _)| *upto);
            let pinning = self.segments.pinning_shards(&purged_upto);
            *self.shared.pinning.lock() = pinning;
        }
    }

    fn fail(&mut self, err: Error) {
        // `Full` promises a WAL still usable; a WAL failed for good never says it.
        debug_assert!(!matches!(err, Error::Full), "the WAL fails for good with Io, never Full");
        if self.failed.is_some() {
            return;
        }
        tracing::error!(error = %err, "wal: write failed; refusing further writes");
        if let Some(on_failure) = &self.on_failure {
            on_failure(&err);
        }
        self.failed = Some(err);
    }
}

/// The error a WAL fails with for good when what should have saved it failed too. Never
/// [`Error::Full`], which promises a WAL still usable.
fn broken(what: &str, err: std::io::Error) -> Error {
    Error::Io(Arc::new(std::io::Error::new(err.kind(), format!("{what}: {err}"))))
}

/// Runs a caller's callback; a panicking callback must not take the WAL down with it.
fn answer(done: Done, result: Result<(), Error>) {
    if catch_unwind(AssertUnwindSafe(move || done(result))).is_err() {
        tracing::error!("wal: a completion callback panicked");
    }
}
