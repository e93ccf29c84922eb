//! The single writer thread. It owns the active segment; every shard's records reach the
//! disk through it, so one fsync covers whatever all shards queued meanwhile.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::format::{self, Record};
use super::fs::{FileSystem, WalFile};
use super::segment::{self, SegmentInfo, Segments};
use super::{Error, OnFsync, ShardLog};

/// Called once with the outcome of a submit.
pub(super) type Done = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// One submit.
pub(super) struct Request {
    pub shard: u32,
    pub records: Vec<Record>,
    pub done: Done,
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
    segments: Segments,
    active: Box<dyn WalFile>,
    meta: BTreeMap<u32, ShardMeta>,
    /// Set by the first failed write or fsync; answers every later request. Never
    /// cleared: after a failed fsync the page cache may have dropped the data, so a
    /// retry that succeeds would acknowledge records that are not on disk.
    failed: Option<Error>,
    shared: Arc<Shared>,
    buf: Vec<u8>,
}

impl Writer {
    /// Opens the last segment for appending (or creates the first one) and writes a
    /// checkpoint there, since a segment cut short while it was created may lack one.
    pub(super) fn start(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        segment_bytes: u64,
        on_fsync: Option<OnFsync>,
        mut segments: Segments,
        shards: &BTreeMap<u32, ShardLog>,
        shared: Arc<Shared>,
    ) -> Result<Writer, Error> {
        let meta = shards
            .iter()
            .map(|(shard, log)| {
                let meta = ShardMeta {
                    vote: log.vote.clone(),
                    committed: log.committed.clone(),
                    purged: log.purged.clone(),
                };
                (*shard, meta)
            })
            .collect();
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
            segment_bytes,
            on_fsync,
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
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            batch.extend(requests.try_iter());
            self.write_batch(batch);
            if self.buf.capacity() > 16 << 20 {
                self.buf = Vec::new(); // do not keep one huge batch's buffer forever
            }
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
        let mut records = 0;
        let mut may_free_segments = false;
        for Request { shard, records: recs, done } in batch {
            let start = self.buf.len();
            if let Err(err) = recs.iter().try_for_each(|r| format::encode_record(shard, r, &mut self.buf)) {
                self.buf.truncate(start); // nothing of a rejected submit is written
                answer(done, Err(err));
                continue;
            }
            records += recs.len();
            for record in recs {
                may_free_segments |= self.note(shard, record);
            }
            waiters.push(done);
        }
        if !self.buf.is_empty() {
            if let Err(err) = self.append_and_sync(records) {
                self.fail(err.clone());
                waiters.into_iter().for_each(|done| answer(done, Err(err.clone())));
                return;
            }
        }
        waiters.into_iter().for_each(|done| answer(done, Ok(())));

        let rotated = self.active.len() >= self.segment_bytes;
        if rotated {
            if let Err(err) = self.rotate() {
                self.fail(err);
                return;
            }
        }
        if rotated || may_free_segments {
            self.delete_purged_segments();
        }
        self.publish(rotated || may_free_segments);
    }

    fn append_and_sync(&mut self, records: usize) -> Result<(), Error> {
        self.active.write_all(&self.buf)?;
        let started = Instant::now();
        // Durability contract: no waiter of this batch is answered before this single
        // fdatasync has returned Ok ("done runs only after the records are fsynced").
        self.active.sync_data()?;
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
        let (path, file) = segment::create(&*self.fs, &self.dir, seq, &self.buf)?;
        if let Some(old) = self.segments.active_mut() {
            old.bytes = self.active.len();
        }
        tracing::debug!(segment = %path.display(), "wal: rotated");
        self.segments.push(SegmentInfo::new(seq, path, file.len()));
        self.active = file;
        Ok(())
    }

    fn delete_purged_segments(&mut self) {
        let meta = &self.meta;
        let purged_upto = |shard: u32| meta.get(&shard)?.purged.as_ref().map(|(upto, _)| *upto);
        match self.segments.delete_purged_prefix(&*self.fs, &self.dir, &purged_upto) {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::debug!(count = deleted.len(), "wal: deleted fully purged segments");
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
            *self.shared.pinning.lock().unwrap_or_else(PoisonError::into_inner) = pinning;
        }
    }

    fn fail(&mut self, err: Error) {
        tracing::error!(error = %err, "wal: write failed; refusing further writes");
        self.failed = Some(err);
    }
}

/// Runs a caller's callback; a panicking callback must not take the WAL down with it.
fn answer(done: Done, result: Result<(), Error>) {
    if catch_unwind(AssertUnwindSafe(move || done(result))).is_err() {
        tracing::error!("wal: a completion callback panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::super::fs::FaultyFs;
    use super::super::test_util::*;
    use super::super::{Wal, WalOptions};
    use super::*;
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    fn open_faulty(dir: &Path, faulty: &FaultyFs) -> Wal {
        let opts = WalOptions { fs: Arc::new(faulty.clone()), ..WalOptions::default() };
        Wal::open(dir, opts).expect("open wal").0
    }

    fn assert_eio(result: Result<(), Error>) {
        match result {
            Err(Error::Io(err)) => assert_eq!(err.raw_os_error(), Some(libc::EIO)),
            other => panic!("expected EIO, got {other:?}"),
        }
    }

    /// Keeps the writer thread busy inside a completion callback until the returned
    /// sender is used, so that requests submitted meanwhile form one batch.
    fn hold_writer(wal: &Wal) -> mpsc::Sender<()> {
        let (release, released) = mpsc::channel::<()>();
        let (entered, inside) = mpsc::channel();
        wal.submit(0, vec![], Box::new(move |_| {
            let _ = entered.send(());
            let _ = released.recv();
        }));
        inside.recv().expect("writer entered the callback");
        release
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_fsyncs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let faulty = FaultyFs::real();
        faulty.set_sync_latency(Duration::from_millis(2)); // a disk, not a RAM disk
        let fsyncs = Arc::new(AtomicUsize::new(0));
        let synced_records = Arc::new(AtomicUsize::new(0));
        let on_fsync: OnFsync = {
            let (fsyncs, synced_records) = (fsyncs.clone(), synced_records.clone());
            Arc::new(move |_took, records| {
                fsyncs.fetch_add(1, Ordering::Relaxed);
                synced_records.fetch_add(records, Ordering::Relaxed);
            })
        };
        let opts = WalOptions { fs: Arc::new(faulty.clone()), on_fsync: Some(on_fsync), ..WalOptions::default() };
        let (wal, _) = Wal::open(tmp.path(), opts).expect("open");
        let syncs_before = faulty.file_syncs();

        const TASKS: u32 = 16;
        const WRITES: u64 = 10;
        let tasks: Vec<_> = (0..TASKS)
            .map(|shard| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    for index in 1..=WRITES {
                        wal.write(shard, vec![entry(index)]).await.expect("write");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let writes = (TASKS as u64 * WRITES) as usize;
        let fsyncs = fsyncs.load(Ordering::Relaxed);
        assert_eq!(synced_records.load(Ordering::Relaxed), writes);
        assert_eq!(faulty.file_syncs() - syncs_before, fsyncs as u64);
        assert!(fsyncs * 2 <= writes, "{fsyncs} fsyncs for {writes} writes");
        drop(wal);

        let (_wal, recovered) = open(tmp.path());
        for shard in 0..TASKS {
            assert_eq!(indexes(&recovered, shard), (1..=WRITES).collect::<Vec<_>>(), "shard {shard}");
        }
    }

    #[test]
    fn done_callback_runs_only_after_fsync() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let faulty = FaultyFs::real();
        let wal = open_faulty(tmp.path(), &faulty);
        for index in 1..=5 {
            let (writes, syncs) = (faulty.file_writes(), faulty.file_syncs());
            let (tx, rx) = mpsc::channel();
            let seen = faulty.clone();
            wal.submit(1, vec![entry(index)], Box::new(move |result| {
                let _ = tx.send((result, seen.file_writes(), seen.file_syncs(), seen.unsynced_bytes()));
            }));
            let (result, writes_then, syncs_then, unsynced_then) = rx.recv().expect("answered");
            result.expect("write");
            assert!(writes_then > writes, "the records were written before done");
            assert!(syncs_then > syncs, "an fsync happened before done");
            assert_eq!(unsynced_then, 0, "nothing written was left unsynced when done ran");
        }
    }

    #[test]
    fn failed_fsync_fails_waiters_and_later_writes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let faulty = FaultyFs::real();
        let wal = open_faulty(tmp.path(), &faulty);
        write_sync(&wal, 1, vec![Record::Vote(b"v".to_vec()), entry(1)]).expect("first write");

        let release = hold_writer(&wal);
        let (tx, rx) = mpsc::channel();
        for index in 2..=4 {
            let tx = tx.clone();
            wal.submit(1, vec![entry(index)], Box::new(move |r| drop(tx.send(r))));
        }
        faulty.fail_next_sync(libc::EIO);
        let syncs = faulty.file_syncs();
        release.send(()).expect("release writer");
        for _ in 2..=4 {
            assert_eio(rx.recv().expect("answered"));
        }
        assert_eq!(faulty.file_syncs(), syncs, "the three shared the one failed fsync");

        let writes = faulty.file_writes();
        let later = write_sync(&wal, 1, vec![entry(5)]);
        assert_eq!(later.as_ref().map_err(Error::metric_label), Err("io"));
        assert_eio(later);
        assert_eq!(faulty.file_writes(), writes, "a failed WAL does not touch the disk again");
        drop(wal);

        let (wal, recovered) = open(tmp.path());
        assert_eq!(recovered.shards[&1].vote.as_deref(), Some(&b"v"[..]));
        assert_eq!(recovered.shards[&1].entries.get(&1), Some(&b"entry-1".to_vec()));
        write_sync(&wal, 1, vec![entry(6)]).expect("a reopened WAL writes again");
    }

    #[test]
    fn disk_full_reports_full() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let faulty = FaultyFs::real();
        let wal = open_faulty(tmp.path(), &faulty);
        write_sync(&wal, 1, vec![entry(1)]).expect("first write");

        faulty.fail_next_write(libc::ENOSPC);
        let err = write_sync(&wal, 1, vec![entry(2)]).expect_err("disk full");
        assert!(matches!(err, Error::Full), "{err:?}");
        assert_eq!(err.metric_label(), "full");
        assert!(matches!(write_sync(&wal, 1, vec![entry(3)]), Err(Error::Full)), "stays failed");
        drop(wal);

        let (wal, recovered) = open(tmp.path());
        assert_eq!(indexes(&recovered, 1), vec![1]);
        write_sync(&wal, 1, vec![entry(2)]).expect("writes again once reopened");
    }

    #[test]
    fn rotation_deletes_fully_purged_segments_and_keeps_state() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open_small(tmp.path(), 512);
        for shard in 1..=3 {
            let state = vec![Record::Vote(format!("vote-{shard}").into_bytes()), Record::Committed(b"c".to_vec())];
            write_sync(&wal, shard, state).expect("state");
        }
        for index in 1..=40 {
            for shard in 1..=3 {
                write_sync(&wal, shard, vec![entry(index)]).expect("entry");
            }
        }
        let before = segment_files(tmp.path());
        assert!(before.len() >= 5, "{} segments", before.len());
        assert_eq!(wal.pinning_shards(), vec![1, 2, 3]);

        for shard in 2..=3 {
            write_sync(&wal, shard, vec![Record::Purge { upto: 40, data: b"p40".to_vec() }]).expect("purge");
        }
        assert_eq!(segment_files(tmp.path()), before, "shard 1 still needs the first segment");
        assert_eq!(wal.pinning_shards(), vec![1]);

        let purge = Record::Purge { upto: 39, data: b"p39".to_vec() };
        write_sync(&wal, 1, vec![purge, Record::Committed(b"c2".to_vec())]).expect("purge");
        let after = segment_files(tmp.path());
        assert!(!after.contains(&before[0]) && after.len() <= 2, "{after:?}");
        assert!(wal.pinning_shards().is_empty());
        let on_disk: u64 = after.iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
        assert_eq!(wal.disk_usage(), (on_disk, after.len()));
        drop(wal);

        let (_wal, recovered) = open_small(tmp.path(), 512);
        for shard in 1..=3 {
            let log = &recovered.shards[&shard];
            assert_eq!(log.vote, Some(format!("vote-{shard}").into_bytes()), "vote lives on in checkpoints");
            let (upto, committed) = if shard == 1 { (39, "c2") } else { (40, "c") };
            assert_eq!(log.committed.as_deref(), Some(committed.as_bytes()));
            assert_eq!(log.purged, Some((upto, format!("p{upto}").into_bytes())));
            assert_eq!(indexes(&recovered, shard), (upto + 1..=40).collect::<Vec<_>>());
        }
    }
}
