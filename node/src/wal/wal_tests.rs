//! Behaviour of the WAL through its public API: write, drop, reopen and assert; inject
//! failed writes, failed fsyncs and a full disk; count fsyncs.

/// Helpers shared by the WAL's tests.
pub(crate) mod util {
    use std::path::{Path, PathBuf};

    use crate::wal::{format, fs, segment, Error, Record, Recovered, Wal, WalOptions};

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
        wal.submit(
            shard,
            records,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
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

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::fs::FaultyFs;
use super::{format, Error, OnFailure, OnFsync, Record, ShardLog, Wal, WalOptions};
use util::*;

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
        entry(1),
        entry(2),
        entry(3),
        entry(4),
        entry(5),
        Record::Truncate { since: 4 }, // drops 4 and 5
        Record::Entry { index: 4, data: b"rewritten".to_vec() },
        Record::Purge { upto: 1, data: b"p1".to_vec() },
        Record::Purge { upto: 2, data: b"p2".to_vec() }, // latest purge wins
        Record::Committed(b"c3".to_vec()),
        Record::Vote(b"v2".to_vec()), // latest vote wins
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
    wal.submit(
        0,
        vec![],
        Box::new(move |_| {
            let _ = entered.send(());
            let _ = released.recv();
        }),
    );
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
        wal.submit(
            1,
            vec![entry(index)],
            Box::new(move |result| {
                let _ = tx.send((result, seen.file_writes(), seen.file_syncs(), seen.unsynced_bytes()));
            }),
        );
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
    let failures = Arc::new(AtomicUsize::new(0));
    let on_failure: OnFailure = {
        let failures = failures.clone();
        Arc::new(move |err| {
            assert_eq!(err.metric_label(), "io");
            failures.fetch_add(1, Ordering::Relaxed);
        })
    };
    let opts = WalOptions { fs: Arc::new(faulty.clone()), on_failure: Some(on_failure), ..WalOptions::default() };
    let (wal, _) = Wal::open(tmp.path(), opts).expect("open");
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

    assert_eq!(failures.load(Ordering::Relaxed), 1, "the owner was told once");

    let writes = faulty.file_writes();
    let later = write_sync(&wal, 1, vec![entry(5)]);
    assert_eq!(later.as_ref().map_err(Error::metric_label), Err("io"));
    assert_eio(later);
    assert_eq!(faulty.file_writes(), writes, "a failed WAL does not touch the disk again");
    assert_eq!(failures.load(Ordering::Relaxed), 1, "told once only");
    drop(wal);

    let (wal, recovered) = open(tmp.path());
    assert_eq!(recovered.shards[&1].vote.as_deref(), Some(&b"v"[..]));
    assert_eq!(recovered.shards[&1].entries.get(&1), Some(&b"entry-1".to_vec()));
    write_sync(&wal, 1, vec![entry(6)]).expect("a reopened WAL writes again");
}

#[test]
fn a_full_disk_refuses_only_its_batch_and_the_wal_writes_on_once_space_returns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faulty = FaultyFs::real();
    let failures = Arc::new(AtomicUsize::new(0));
    let on_failure: OnFailure = {
        let failures = failures.clone();
        Arc::new(move |_| {
            failures.fetch_add(1, Ordering::Relaxed);
        })
    };
    let opts = WalOptions { fs: Arc::new(faulty.clone()), on_failure: Some(on_failure), ..WalOptions::default() };
    let (wal, _) = Wal::open(tmp.path(), opts).expect("open");
    write_sync(&wal, 1, vec![entry(1)]).expect("first write");
    let segment = segment_files(tmp.path()).pop().expect("a segment");
    let acknowledged_len = std::fs::metadata(&segment).expect("stat").len();

    // The disk fills up in the middle of a batch of two submits: a few of its bytes land.
    let release = hold_writer(&wal);
    let (tx, rx) = mpsc::channel();
    for records in [vec![entry(2)], vec![entry(3), entry(4)]] {
        let tx = tx.clone();
        wal.submit(1, records, Box::new(move |r| drop(tx.send(r))));
    }
    faulty.fail_next_write_partly(libc::ENOSPC, 7);
    release.send(()).expect("release writer");
    for _ in 0..2 {
        let err = rx.recv().expect("answered").expect_err("disk full");
        assert!(matches!(err, Error::Full), "{err:?}");
        assert_eq!(err.metric_label(), "full");
    }
    assert_eq!(std::fs::metadata(&segment).expect("stat").len(), acknowledged_len, "the torn batch was cut off");
    assert_eq!(faulty.unsynced_bytes(), 0);

    write_sync(&wal, 1, vec![entry(5)]).expect("space is back: writes succeed without a reopen");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "a full disk does not fail the WAL");
    drop(wal);

    let (_wal, recovered) = open(tmp.path());
    assert_eq!(recovered.torn_tail, None);
    assert_eq!(indexes(&recovered, 1), vec![1, 5], "exactly the acknowledged records");
}

#[test]
fn an_fsync_that_reports_a_full_disk_fails_the_wal_for_good() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faulty = FaultyFs::real();
    let failures = Arc::new(AtomicUsize::new(0));
    let on_failure: OnFailure = {
        let failures = failures.clone();
        Arc::new(move |err| {
            assert!(matches!(err, Error::Io(_)), "{err:?}");
            failures.fetch_add(1, Ordering::Relaxed);
        })
    };
    let opts = WalOptions { fs: Arc::new(faulty.clone()), on_failure: Some(on_failure), ..WalOptions::default() };
    let (wal, _) = Wal::open(tmp.path(), opts).expect("open");
    write_sync(&wal, 1, vec![entry(1)]).expect("first write");

    // Delayed allocation: the write went into the page cache, the fsync finds no space.
    // Unlike a refused write, the batch may be half on disk: not `Full`, which promises
    // "nothing written, submit again".
    faulty.fail_next_sync(libc::ENOSPC);
    match write_sync(&wal, 1, vec![entry(2)]) {
        Err(Error::Io(err)) => assert_eq!(err.raw_os_error(), Some(libc::ENOSPC)),
        other => panic!("expected Io(ENOSPC), got {other:?}"),
    }
    assert_eq!(failures.load(Ordering::Relaxed), 1, "the owner was told: the node fences");
    let later = write_sync(&wal, 1, vec![entry(3)]);
    assert!(matches!(later, Err(Error::Io(_))), "stays failed, not Full: {later:?}");
    assert_eq!(failures.load(Ordering::Relaxed), 1, "told once only");
    drop(wal);

    let (_wal, recovered) = open(tmp.path());
    assert_eq!(indexes(&recovered, 1)[0], 1, "the acknowledged record survives");
}

#[test]
fn a_record_a_full_disk_refused_never_reaches_a_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faulty = FaultyFs::real();
    let opts = WalOptions { fs: Arc::new(faulty.clone()), segment_bytes: 512, ..WalOptions::default() };
    let (wal, _) = Wal::open(tmp.path(), opts.clone()).expect("open");
    write_sync(&wal, 1, vec![Record::Vote(b"v1".to_vec())]).expect("vote");
    faulty.fail_next_write(libc::ENOSPC);
    let refused = vec![Record::Vote(b"v2".to_vec()), Record::Purge { upto: 100, data: b"p".to_vec() }];
    assert!(matches!(write_sync(&wal, 1, refused), Err(Error::Full)));
    // Rotations write checkpoints, then delete segments whose entries are purged.
    for index in 1..=40 {
        write_sync(&wal, 1, vec![entry(index)]).expect("entry");
    }
    assert!(segment_files(tmp.path()).len() > 2, "rotated");
    drop(wal);

    let (_wal, recovered) = Wal::open(tmp.path(), opts).expect("reopen");
    let log = &recovered.shards[&1];
    assert_eq!(log.vote.as_deref(), Some(&b"v1"[..]), "the refused vote is nowhere");
    assert_eq!((log.purged.clone(), indexes(&recovered, 1)), (None, (1..=40).collect::<Vec<_>>()));
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

#[tokio::test]
async fn lazy_records_cost_no_fsync_and_ride_with_the_next_durable_batch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faulty = FaultyFs::real();
    let wal = open_faulty(tmp.path(), &faulty);
    let (writes, syncs) = (faulty.file_writes(), faulty.file_syncs());
    for i in 0..10u8 {
        wal.submit_lazy(1, vec![Record::Committed(vec![i])]);
    }
    // A durable write after them: the lazy records are in its batch, in order.
    wal.write(1, vec![entry(1)]).await.expect("write");
    assert_eq!(faulty.file_syncs() - syncs, 1, "one fsync for the durable write, none for the lazy ones");
    assert_eq!(faulty.file_writes() - writes, 1, "lazy records were written with that batch");
    drop(wal);
    let (_, rec) = Wal::open(tmp.path(), WalOptions::default()).expect("reopen");
    let log = &rec.shards[&1];
    assert_eq!(log.committed.as_deref(), Some(&[9u8][..]), "the latest lazy record wins");
    assert!(log.entries.contains_key(&1));
}

#[test]
fn lazy_records_alone_are_written_at_close() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).expect("open");
    wal.submit_lazy(2, vec![Record::Committed(b"c".to_vec())]);
    wal.close();
    drop(wal);
    let (_, rec) = Wal::open(tmp.path(), WalOptions::default()).expect("reopen");
    assert_eq!(rec.shards[&2].committed.as_deref(), Some(&b"c"[..]));
}
