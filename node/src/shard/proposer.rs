//! Proposal batching: the leader packs concurrent client commands into one Raft entry.
//!
//! openraft 0.9 appends, replicates, commits and applies every `client_write` as its own
//! entry, with several cross-task hand-offs each. Under load that per-entry cost, not the
//! disk, bounds throughput. The proposer keeps at most [`MAX_IN_FLIGHT`] proposals in
//! Raft per shard; commands arriving meanwhile queue up and go out together in the next
//! one. A lone client is never delayed: with a free slot its command is proposed at once.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::types::{Command, CommandResult, Op, Proposal, Raft};
use crate::ring::NodeId;

/// Proposals of one shard in Raft at a time.
pub const MAX_IN_FLIGHT: usize = 1;
/// Most commands in one proposal.
pub const MAX_BATCH: usize = 512;
/// A proposal stops growing past this many payload bytes (values dominate).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Why a proposed command did not apply.
#[derive(Clone, Debug)]
pub enum ProposeError {
    /// This replica is not the leader; the hint names the one it knows of.
    NotLeader(Option<NodeId>),
    /// Raft is stopping or failed: retry elsewhere or later.
    Retry(String),
}

type Waiter = oneshot::Sender<Result<CommandResult, ProposeError>>;

/// Handle to a shard's proposer task.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<(Command, Waiter)>,
    slots: Arc<Semaphore>,
}

/// Roughly how many bytes a command carries (keys and values).
pub(crate) fn command_bytes(c: &Command) -> usize {
    match c {
        Command::Txn { ops, .. } => ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => key.len() + value.len(),
                Op::Delete { key, .. } | Op::Get { key, .. } => key.len(),
            })
            .sum(),
        Command::Expire { keys } => keys.iter().map(|(_, k, _)| k.len() + 16).sum(),
        Command::Split { .. } | Command::Freeze { .. } | Command::MergeDone { .. } => 16,
        Command::Absorb { entries, applied, .. } => {
            entries.iter().map(|(_, k, e)| k.len() + e.value.len() + 48).sum::<usize>() + applied.len() * 32
        }
    }
}

impl Proposer {
    /// Starts the proposer task of a shard; it ends when every handle is dropped.
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        tokio::spawn(run(raft, rx, slots.clone()));
        Self { tx, slots }
    }

    /// Waits until no proposal of this shard is in Raft and holds further ones back
    /// until the returned guard is dropped (commands queue meanwhile). A leader transfer
    /// uses it so that its target can be sure to hold the leader's last entry.
    pub async fn pause(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().acquire_many_owned(MAX_IN_FLIGHT as u32).await.ok()
    }

    /// Proposes `cmd` and waits until it is committed and applied.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((cmd, tx)).map_err(|_| ProposeError::Retry("shard is stopping".into()))?;
        rx.await.map_err(|_| ProposeError::Retry("proposal dropped".into()))?
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<(Command, Waiter)>, slots: Arc<Semaphore>) {
    while let Some(first) = rx.recv().await {
        // Wait for a slot first: everything that arrives meanwhile joins this batch.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let mut bytes = command_bytes(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += command_bytes(&item.0);
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (commands, waiters): (Vec<Command>, Vec<Waiter>) = batch.into_iter().unzip();
            let outcome = raft.client_write(Proposal { commands }).await;
            drop(permit);
            match outcome {
                Ok(r) => {
                    for (w, res) in waiters.into_iter().zip(r.data.results) {
                        let _ = w.send(Ok(res));
                    }
                }
                Err(e) => {
                    let err = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            ProposeError::NotLeader(f.leader_id)
                        }
                        // openraft's messages print membership configs and log ids:
                        // the client gets words, the log the details.
                        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                            tracing::debug!(error = %e, "proposal refused");
                            ProposeError::Retry("the shard's membership is changing".into())
                        }
                        RaftError::Fatal(f) => {
                            tracing::debug!(error = %f, "proposal: raft stopped");
                            ProposeError::Retry("the shard's Raft group has stopped here".into())
                        }
                    };
                    for w in waiters {
                        let _ = w.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}
