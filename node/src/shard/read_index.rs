//! Read-index batching for linearizable reads.
//!
//! A linearizable read needs the leader to confirm, with a quorum round-trip, that it is
//! still the leader, and then to have applied up to the commit index seen at that moment.
//! One confirmation serves every read that arrived before it started: such a read is
//! ordered after any write completed before its arrival, and the confirmation happens
//! after its arrival. Reads arriving while a confirmation is in flight wait for the next
//! one. Under load this turns N quorum round-trips into about one per round-trip time.

use parking_lot::Mutex;
use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;

use super::types::Raft;
use crate::ring::NodeId;

/// Why a read could not be confirmed.
#[derive(Clone, Debug)]
pub enum ReadIndexError {
    /// Another node leads (or no leader is known).
    NotLeader(Option<NodeId>),
    /// No quorum answered, or the group is stopping: retry.
    Retry(String),
}

type Waiter = oneshot::Sender<Result<u64, ReadIndexError>>;

#[derive(Default)]
struct Inner {
    in_flight: bool,
    waiters: Vec<Waiter>,
}

/// Coalesces concurrent read-index requests of one shard.
#[derive(Clone, Default)]
pub struct ReadIndex {
    inner: Arc<Mutex<Inner>>,
    /// `(term, index)`: while this replica leads in `term`, the term of its vote when
    /// it opened, no read index is below `index`, the last index of its log then.
    /// openraft 0.9 lets a leader that restarts keep leading its term at once, and gives
    /// it as read index the larger of its term's first entry and its committed index;
    /// but the committed index a replica keeps is not durable (see
    /// `LogStore::save_committed`), so after a crash it can be behind writes the leader
    /// acknowledged before, and a read served at it would miss them. Every entry the
    /// leader acknowledged is in its log (appended durably before it counted itself), so
    /// waiting until this much is applied makes such a read see them. (In a later
    /// term its log may have been cut below that; its term's first entry does then.)
    floor: Arc<Mutex<(u64, u64)>>,
}

impl ReadIndex {
    /// A read index for a replica that opened with a vote of `term` and a log ending
    /// at `last_index`.
    pub fn with_floor(term: u64, last_index: u64) -> Self {
        let r = Self::default();
        *r.floor.lock() = (term, last_index);
        r
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Returns once this replica, as leader, has applied everything committed before the
    /// call: a read of local state after this is linearizable.
    pub async fn linearize(&self, raft: &Raft) -> Result<(), ReadIndexError> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut g = self.lock();
            g.waiters.push(tx);
            !std::mem::replace(&mut g.in_flight, true)
        };
        if lead {
            let this = self.clone();
            let raft = raft.clone();
            // Runs in its own task so a cancelled client request cannot strand the batch.
            tokio::spawn(async move { this.confirm_batches(raft).await });
        }
        let read_index = rx.await.map_err(|_| ReadIndexError::Retry("read batch dropped".into()))??;
        let (floor_term, floor) = *self.floor.lock();
        let read_index =
            if raft.metrics().borrow().current_term == floor_term { read_index.max(floor) } else { read_index };
        let applied = raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
        if applied < read_index {
            raft.wait(None)
                .applied_index_at_least(Some(read_index), "read index")
                .await
                .map_err(|e| ReadIndexError::Retry(e.to_string()))?;
        }
        Ok(())
    }

    async fn confirm_batches(&self, raft: Raft) {
        loop {
            // Everyone waiting now arrived before this confirmation starts.
            let batch = {
                let mut g = self.lock();
                if g.waiters.is_empty() {
                    g.in_flight = false;
                    return;
                }
                std::mem::take(&mut g.waiters)
            };
            let result = match raft.get_read_log_id().await {
                Ok((read_log_id, _applied)) => Ok(read_log_id.map(|l| l.index).unwrap_or(0)),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(ReadIndexError::NotLeader(f.leader_id))
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                    // openraft's message prints the whole membership: keep it in the log.
                    tracing::debug!(error = %q, "read index: no quorum");
                    Err(ReadIndexError::Retry(
                        "this replica could not confirm its leadership with a quorum of the shard's voters".into(),
                    ))
                }
                Err(RaftError::Fatal(f)) => {
                    tracing::debug!(error = %f, "read index: raft stopped");
                    Err(ReadIndexError::Retry("the shard's Raft group has stopped here".into()))
                }
            };
            for w in batch {
                let _ = w.send(result.clone());
            }
        }
    }
}
