//! The Raft log storage of one shard, kept in the node's shared WAL.
//!
//! Every entry that is not purged is held in memory (replication reads it from there);
//! the WAL is only written while running and only read on start. Entries, votes and
//! log-pointer changes are postcard-encoded into WAL records tagged with the shard id.
//!
//! A full disk is waited out, not reported: the WAL refused the whole write and stays
//! usable (`wal::Error::Full`), so the same records are written again once space returns,
//! and openraft (to which any storage error is fatal for the group) never sees it. The
//! group stalls meanwhile (its core waits for the write), as on a very slow disk. The
//! wait ends when the replica stops ([`LogStore::stop_waiting`]): the write then fails,
//! since openraft's shutdown waits for the core, which waits for the write.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogId, RaftLogReader, StorageIOError};

use tokio_util::sync::CancellationToken;

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::ring::ShardId;
use crate::wal::{self, Record, ShardLog, Wal};

/// How long a write a full disk refused waits before it is tried again.
const FULL_DISK_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// Writes `records` (fsynced before return), trying again while the disk is full, until
/// `stop` is cancelled: then the last `Full` is returned.
async fn write_waiting_for_space(
    wal: &Wal,
    shard: ShardId,
    records: Vec<Record>,
    stop: &CancellationToken,
) -> Result<(), wal::Error> {
    let mut warned = false;
    loop {
        match wal.write(shard, records.clone()).await {
            Err(wal::Error::Full) => {
                if !warned {
                    tracing::warn!(shard, "disk full: the shard's log write waits for space");
                    warned = true;
                }
                if !sleep_unless_stopped(stop).await {
                    tracing::warn!(shard, "the replica stops while its log write waits for space: the write fails");
                    return Err(wal::Error::Full);
                }
            }
            other => {
                if warned && other.is_ok() {
                    tracing::info!(shard, "disk space is back: the shard's log write went through");
                }
                return other;
            }
        }
    }
}

/// Waits [`FULL_DISK_RETRY`]; false if `stop` was cancelled first (or before).
async fn sleep_unless_stopped(stop: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        () = stop.cancelled() => false,
        () = tokio::time::sleep(FULL_DISK_RETRY) => true,
    }
}

#[derive(Default)]
struct LogInner {
    vote: Option<Vote>,
    /// When `vote` was last saved in this process (a leader's: when it took office).
    vote_saved_at: Option<std::time::Instant>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
    /// Set while a task rewrites the purge a full disk refused (see `LogStore::purge`).
    purge_retrying: bool,
}

/// A shard's view of the WAL. Cheap to clone; clones share state (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    shard: ShardId,
    wal: Wal,
    inner: Arc<Mutex<LogInner>>,
    /// Cancelled when the replica stops: writes waiting for disk space give up.
    stop: CancellationToken,
}

fn decode<T: serde::de::DeserializeOwned>(shard: ShardId, what: &str, bytes: &[u8]) -> std::io::Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| std::io::Error::other(format!("shard {shard}: undecodable {what} in WAL: {e}")))
}

#[allow(clippy::result_large_err)] // openraft's error type
fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_stdvec(v).map_err(|e| StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into())
}

impl LogStore {
    /// Builds the store from what the WAL recovered for this shard.
    pub fn open(shard: ShardId, wal: Wal, recovered: Option<ShardLog>) -> std::io::Result<Self> {
        let mut inner = LogInner::default();
        if let Some(r) = recovered {
            inner.vote = r.vote.as_deref().map(|b| decode(shard, "vote", b)).transpose()?;
            inner.committed = r.committed.as_deref().map(|b| decode(shard, "committed", b)).transpose()?;
            inner.purged = r.purged.as_ref().map(|(_, b)| decode(shard, "purged", b)).transpose()?;
            for (index, bytes) in r.entries {
                let e: Entry = decode(shard, "entry", &bytes)?;
                if e.log_id.index != index {
                    return Err(std::io::Error::other(format!(
                        "shard {shard}: WAL record for index {index} holds entry {}",
                        e.log_id.index
                    )));
                }
                inner.entries.insert(index, e);
            }
        }
        Ok(Self { shard, wal, inner: Arc::new(Mutex::new(inner)), stop: CancellationToken::new() })
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, LogInner> {
        self.inner.lock()
    }

    /// The WAL records of entries `first..=last`, if all of them are in memory.
    fn records(&self, first: u64, last: u64) -> Option<Vec<Record>> {
        let g = self.lock();
        let entries: Vec<&Entry> = g.entries.range(first..=last).map(|(_, e)| e).collect();
        if entries.len() as u64 != last - first + 1 {
            return None;
        }
        entries.iter().map(|e| Some(Record::Entry { index: e.log_id.index, data: encode(*e).ok()? })).collect()
    }

    /// Ends every wait for disk space of this replica's log writes (the waiting writes
    /// fail, which is fatal to the Raft group): call before `Raft::shutdown`, which
    /// otherwise waits for them, on a disk that stays full, forever.
    pub fn stop_waiting(&self) {
        self.stop.cancel();
    }

    /// Writes the replica's current purge, and again while the disk is full, until it is
    /// on disk, the replica stops, or the WAL fails. One such task at a time
    /// (`purge_retrying`); each attempt takes the purge as it is when submitted, under the
    /// lock that `purge` updates it under, so purges reach the WAL in increasing order.
    async fn rewrite_purge(self) {
        loop {
            let written = {
                let mut g = self.lock();
                let Some(purged) = g.purged else {
                    g.purge_retrying = false; // forgotten meanwhile
                    return;
                };
                let data = match encode(&purged) {
                    Ok(data) => data,
                    Err(e) => {
                        g.purge_retrying = false;
                        return tracing::error!(shard = self.shard, error = %e, "encoding a purge");
                    }
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let record = Record::Purge { upto: purged.index, data };
                self.wal.submit(self.shard, vec![record], Box::new(move |r| drop(tx.send(r))));
                (purged, rx)
            };
            let (purged, rx) = written;
            match rx.await.unwrap_or(Err(wal::Error::Closed)) {
                Ok(()) => {
                    let mut g = self.lock();
                    if g.purged == Some(purged) || g.purged.is_none() {
                        g.purge_retrying = false;
                        tracing::info!(
                            shard = self.shard,
                            upto = purged.index,
                            "disk space is back: the purge is written"
                        );
                        return;
                    }
                    // A later purge came while this one was written (and left it to us).
                }
                Err(wal::Error::Full) => {
                    if !sleep_unless_stopped(&self.stop).await {
                        self.lock().purge_retrying = false;
                        return;
                    }
                }
                // The WAL failed for good (the node fences) or closed: nothing to keep.
                Err(_) => {
                    self.lock().purge_retrying = false;
                    return;
                }
            }
        }
    }

    /// When this replica last saved a vote in this process. On a leader that is when it
    /// took office, which is when openraft starts its own leader lease.
    pub fn vote_saved_at(&self) -> Option<std::time::Instant> {
        self.lock().vote_saved_at
    }

    /// The last committed log index this replica knows of (0 if none).
    pub fn committed_index(&self) -> u64 {
        self.lock().committed.map(|l| l.index).unwrap_or(0)
    }

    /// The index of the last entry in the log (or of the purge, if the log is empty).
    pub fn last_index(&self) -> u64 {
        let g = self.lock();
        g.entries.keys().next_back().copied().or(g.purged.map(|p| p.index)).unwrap_or(0)
    }

    /// The id of the last entry in the log (or of the purge, if the log is empty): what a
    /// vote compares to decide whose log is more up to date.
    pub fn last_log_id(&self) -> Option<LogId> {
        let g = self.lock();
        g.entries.values().next_back().map(|e| e.log_id).or(g.purged)
    }

    /// Whether this replica has any Raft state (vote or log) — i.e. was ever initialised.
    pub fn is_empty(&self) -> bool {
        let g = self.lock();
        g.vote.is_none() && g.entries.is_empty() && g.purged.is_none()
    }

    /// Drops the whole Raft state of a replica that left this node (its group goes on
    /// elsewhere, or was merged away): entries, vote, committed id and purge, so its
    /// records stop pinning WAL segments. Durable when it returns.
    pub async fn forget(&self) -> std::io::Result<()> {
        *self.lock() = LogInner::default();
        self.wal.write(self.shard, vec![Record::Forget]).await.map_err(std::io::Error::other)
    }

    /// The first committed entry that neither the snapshot (applied up to `applied`)
    /// nor the log holds, if any: such a replica cannot be brought back by replay.
    pub fn committed_gap(&self, applied: Option<u64>) -> Option<CommittedGap> {
        let g = self.lock();
        let committed = g.committed?.index;
        let from = applied.map_or(0, |a| a + 1);
        let missing = (from..=committed).find(|i| !g.entries.contains_key(i))?;
        let purged = g.purged.map(|p| p.index);
        // Raft never truncates committed entries, and a purge leaves its record: a
        // committed entry past the purge that is gone was dropped by a retirement's
        // forget.
        let forgotten = (missing..=committed).any(|i| !g.entries.contains_key(&i) && purged.is_none_or(|p| i > p));
        Some(CommittedGap {
            reason: format!(
                "the log lacks committed entry {missing} (snapshot applied up to {applied:?}, committed {committed}, purged up to {purged:?}, log holds {:?}..={:?})",
                g.entries.keys().next(),
                g.entries.keys().next_back()
            ),
            forgotten,
        })
    }

    /// Number of entries held in memory.
    pub fn entry_count(&self) -> usize {
        self.lock().entries.len()
    }
}

/// See [`LogStore::committed_gap`].
pub struct CommittedGap {
    pub reason: String,
    /// No purge explains the gap: the entries were forgotten (the replica was retired).
    pub forgotten: bool,
}

/// The most payload bytes one AppendEntries carries (at least one entry). openraft 0.9
/// bounds a batch by entry count only and gives the RPC one heartbeat interval: with
/// large values a lagging follower would get batches too big to arrive in time, time
/// out, and get the same batch again, forever.
const MAX_APPEND_BYTES: usize = 1 << 20;

fn entry_bytes(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(p) => p.commands.iter().map(super::proposer::command_bytes).sum::<usize>() + 32,
        _ => 64,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let g = self.lock();
        let mut bytes = 0;
        let mut out = Vec::new();
        for e in g.entries.range(start..end).map(|(_, e)| e) {
            if !out.is_empty() && bytes >= MAX_APPEND_BYTES {
                break;
            }
            bytes += entry_bytes(e);
            out.push(e.clone());
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let g = self.lock();
        let last = g.entries.values().next_back().map(|e| *e.get_log_id()).or(g.purged);
        Ok(LogState { last_purged_log_id: g.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let rec = Record::Vote(encode(vote)?);
        // Fsynced before return: a vote must never be forgotten after it was cast.
        write_waiting_for_space(&self.wal, self.shard, vec![rec], &self.stop)
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        let mut inner = self.lock();
        inner.vote = Some(*vote);
        inner.vote_saved_at = Some(std::time::Instant::now());
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let Some(c) = committed else { return Ok(()) };
        self.lock().committed = Some(c);
        // Need not be durable: it only lets a restarted replica apply sooner. It rides along
        // with the next group commit and never costs an fsync of its own.
        self.wal.submit_lazy(self.shard, vec![Record::Committed(encode(&c)?)]);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let range = entries.first().zip(entries.last()).map(|(f, l)| (f.log_id.index, l.log_id.index));
        let mut records = Vec::with_capacity(entries.len());
        for e in &entries {
            records.push(Record::Entry { index: e.log_id.index, data: encode(e)? });
        }
        {
            // Readable as soon as this returns (openraft's contract)...
            let mut g = self.lock();
            for e in entries {
                g.entries.insert(e.log_id.index, e);
            }
        }
        // ...and acknowledged by the flush callback only once the WAL has fsynced them.
        let this = self.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        self.wal.submit(
            self.shard,
            records,
            Box::new(move |r| match (r, range, runtime) {
                // The core waits for this callback, so nothing of this shard is written
                // meanwhile: the entries are still in memory, and their order is kept.
                (Err(wal::Error::Full), Some((first, last)), Some(runtime)) => {
                    runtime.spawn(async move {
                        let r = match this.records(first, last) {
                            Some(records) => write_waiting_for_space(&this.wal, this.shard, records, &this.stop).await,
                            None => Err(wal::Error::Full),
                        };
                        callback.log_io_completed(r.map_err(std::io::Error::other));
                    });
                }
                (r, _, _) => callback.log_io_completed(r.map_err(std::io::Error::other)),
            }),
        );
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock().entries.split_off(&log_id.index);
        // Ordered before any later append in the WAL queue; fsynced before return.
        write_waiting_for_space(&self.wal, self.shard, vec![Record::Truncate { since: log_id.index }], &self.stop)
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let data = encode(&log_id)?;
        let mut g = self.lock();
        let keep = g.entries.split_off(&(log_id.index + 1));
        g.entries = keep;
        g.purged = Some(log_id);
        if g.purge_retrying {
            return Ok(()); // the task rewriting a refused purge writes this one too
        }
        // Need not be durable (a purge lost in a crash leaves entries the snapshot already
        // covers), but written now rather than lazily: it is what lets the WAL drop old
        // segments, and purges are rare (one per snapshot). Submitted under the lock, so
        // that purges reach the WAL in the order they were made. One a full disk refused
        // is written again until it is on disk (else it would pin segments for good).
        let this = self.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let record = Record::Purge { upto: log_id.index, data };
        self.wal.submit(
            self.shard,
            vec![record],
            Box::new(move |r| {
                let Err(wal::Error::Full) = r else { return };
                let Some(runtime) = runtime else { return };
                let mut g = this.lock();
                if std::mem::replace(&mut g.purge_retrying, true) {
                    return; // a task rewrites it already
                }
                drop(g);
                tracing::warn!(shard = this.shard, "disk full: the shard's purge waits for space");
                runtime.spawn(this.rewrite_purge());
            }),
        );
        drop(g);
        Ok(())
    }
}
