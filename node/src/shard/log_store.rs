//! The Raft log storage of one shard, kept in the node's shared WAL.
//!
//! Every entry that is not purged is held in memory (replication reads it from there);
//! the WAL is only written while running and only read on start. Entries, votes and
//! log-pointer changes are postcard-encoded into WAL records tagged with the shard id.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogId, RaftLogReader, StorageIOError};

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::ring::ShardId;
use crate::wal::{Record, ShardLog, Wal};

#[derive(Default)]
struct LogInner {
    vote: Option<Vote>,
    /// When `vote` was last saved in this process (a leader's: when it took office).
    vote_saved_at: Option<std::time::Instant>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

/// A shard's view of the WAL. Cheap to clone; clones share state (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    shard: ShardId,
    wal: Wal,
    inner: Arc<Mutex<LogInner>>,
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
        Ok(Self { shard, wal, inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, LogInner> {
        self.inner.lock()
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
        self.wal.write(self.shard, vec![rec]).await.map_err(|e| StorageIOError::write_vote(&e))?;
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
        self.wal.submit(
            self.shard,
            records,
            Box::new(move |r| callback.log_io_completed(r.map_err(std::io::Error::other))),
        );
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock().entries.split_off(&log_id.index);
        // Ordered before any later append in the WAL queue; fsynced before return.
        self.wal
            .write(self.shard, vec![Record::Truncate { since: log_id.index }])
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let data = encode(&log_id)?;
        {
            let mut g = self.lock();
            let keep = g.entries.split_off(&(log_id.index + 1));
            g.entries = keep;
            g.purged = Some(log_id);
        }
        // Need not be durable (a purge lost in a crash leaves entries the snapshot already
        // covers), but written now rather than lazily: it is what lets the WAL drop old
        // segments, and purges are rare (one per snapshot).
        self.wal.submit(self.shard, vec![Record::Purge { upto: log_id.index, data }], Box::new(|_| {}));
        Ok(())
    }
}
