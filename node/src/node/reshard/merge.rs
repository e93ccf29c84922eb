//! Merging two sibling shards (count 2S → S), driven by the receiver's leader:
//!
//! 1. **Freeze** the donor `r + S` (a Raft command on the donor): from that entry on it
//!    refuses every request with a retryable `WrongShard` naming the receiver, so the
//!    state it holds is final.
//! 2. **Absorb**: the receiver's leader reads the frozen state from its own replica of
//!    the donor (the planner co-located them) and proposes it to the receiver in
//!    chunks. The data reaches the receiver's replicas through the receiver's own log,
//!    so it is exactly as durable as any write, and the keys stay invisible there until:
//! 3. **Done** (a command on the receiver): the receiver owns both slices from the
//!    merge's epoch on, its revisions continue above the donor's, and every node
//!    retires its replica of the donor.
//!
//! Every step is idempotent, so a merge cut off anywhere is finished by asking again;
//! clients whose keys are in flight wait (retried internally) and never see a wrong
//! answer.

use std::sync::Arc;
use std::time::Duration;

use ringkv_api::admin::{AdminRequest, FreezeQuery};
use tokio::time::Instant;

use super::{ReshardError, ADMIN_WAIT};
use crate::node::Node;
use crate::ring::ShardId;
use crate::shard::kv::MapKey;
use crate::shard::proposer::ProposeError;
use crate::shard::types::{Command, CommandResult};
use crate::shard::Shard;

/// The size of one absorbed chunk: small enough for one log entry and one network
/// message, large enough that a merge of a big shard is not a million proposals.
const CHUNK_BYTES: usize = 2 << 20;

/// What a merge did.
#[derive(Debug, serde::Serialize)]
pub struct Merged {
    pub receiver: ShardId,
    pub donor: ShardId,
    pub modulus: u32,
    pub keys: u64,
}

async fn propose(sh: &Shard, cmd: Command) -> Result<CommandResult, ReshardError> {
    match sh.proposer.propose(cmd).await {
        Ok(r) => Ok(r),
        Err(ProposeError::NotLeader(leader)) => Err(ReshardError::NotLeader { shard: sh.id, leader }),
        Err(ProposeError::Retry(m)) => Err(ReshardError::Failed(m)),
    }
}

/// How long a merge waits for the receiver's leftover sweep before freezing the donor
/// anyway (the first absorbed chunk then drops the leftovers itself).
const SWEEP_WAIT: Duration = Duration::from_secs(10);

/// A request made for an older ring than the shard's (a driver that observed before a
/// split or merge since): refused, so a late request cannot undo newer work.
fn stale(shard: ShardId, now: u64, asked: u64) -> ReshardError {
    ReshardError::Bad(format!(
        "shard {shard} changed at ring epoch {now}, after the ring this request was made for (epoch {}); observe again",
        asked.saturating_sub(1)
    ))
}

impl Node {
    /// Freezes `shard` (this node must lead it) as a merge's donor at ring `epoch`.
    /// Returns the donor's final revision.
    pub async fn freeze_shard(&self, shard: ShardId, epoch: u64) -> Result<u64, ReshardError> {
        let sh = self.led(shard)?;
        let slice = sh.slice();
        if slice.modulus < 2 {
            return Err(ReshardError::Bad(format!(
                "shard {shard} owns the whole ring; there is nothing to merge it into"
            )));
        }
        if slice.epoch >= epoch && sh.read().frozen.is_none() {
            return Err(stale(shard, slice.epoch, epoch));
        }
        Ok(propose(&sh, Command::Freeze { epoch }).await?.revision)
    }

    /// Merges `donor` into `receiver` (this node must lead the receiver and host a
    /// replica of the donor) at ring `epoch`. Already merged: answers at once.
    pub async fn merge_shards(&self, receiver: ShardId, donor: ShardId, epoch: u64) -> Result<Merged, ReshardError> {
        let sh = self.led(receiver)?;
        let modulus = sh.slice().modulus;
        if donor >= receiver && donor - receiver >= modulus && (donor - receiver).is_power_of_two() {
            // The receiver is already coarser than the donor's level: merged before.
            return Ok(Merged { receiver, donor, modulus, keys: 0 });
        }
        if sh.slice().epoch >= epoch {
            return Err(stale(receiver, sh.slice().epoch, epoch));
        }
        if modulus < 2 || donor != receiver + modulus / 2 {
            return Err(ReshardError::Bad(format!(
                "shard {donor} is not the sibling of shard {receiver} at modulus {modulus} (that is {})",
                receiver + modulus / 2
            )));
        }
        let d = self.shards.get(donor).ok_or_else(|| {
            ReshardError::Bad(format!("shard {donor} has no replica on node {}: co-locate the shards first", self.id))
        })?;
        // A receiver split a moment ago still holds its leftovers (the donor's slice as
        // it was then), which the first absorbed chunk would have to drop in one pass
        // under the state lock; give the background sweep time to drop them first,
        // before the freeze makes the donor's keys wait.
        let deadline = Instant::now() + SWEEP_WAIT;
        while sh.read().is_stale() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The receiver may have changed meanwhile (another driver): freeze nothing then.
        let sh = self.led(receiver)?;
        let now = sh.slice();
        if now.epoch >= epoch || now.modulus != modulus {
            return Err(stale(receiver, now.epoch, epoch));
        }
        self.freeze_donor(&d, epoch).await?;
        // The local replica holds the donor's final state once it applied the freeze.
        let deadline = Instant::now() + ADMIN_WAIT;
        while d.read().frozen.is_none() {
            if Instant::now() >= deadline {
                return Err(ReshardError::Failed(format!(
                    "this node's replica of shard {donor} did not apply the freeze"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let state = d.read().clone();
        let mut keys = 0u64;
        let mut after: Option<MapKey> = None;
        let mut applied = Some(state.applied_results());
        loop {
            let entries = state.export(after.as_ref(), CHUNK_BYTES);
            let last = entries.is_empty();
            after = entries.last().map(|(db, k, _)| (*db, k.clone()));
            keys += entries.len() as u64;
            let chunk = Command::Absorb { modulus, entries, applied: applied.take().unwrap_or_default() };
            let r = propose(&sh, chunk).await?;
            if !r.ok {
                // The receiver moved on (another call finished this merge) or is frozen.
                return self.merged_already(&sh, receiver, donor, modulus);
            }
            if last {
                break;
            }
        }
        let done = Command::MergeDone { modulus: modulus / 2, epoch, revision: state.revision };
        if !propose(&sh, done).await?.ok {
            return self.merged_already(&sh, receiver, donor, modulus);
        }
        tracing::info!(receiver, donor, keys, revision = state.revision, "merge: done");
        Ok(Merged { receiver, donor, modulus: modulus / 2, keys })
    }

    fn merged_already(
        &self,
        sh: &Arc<Shard>,
        receiver: ShardId,
        donor: ShardId,
        modulus: u32,
    ) -> Result<Merged, ReshardError> {
        let now = sh.slice().modulus;
        if now < modulus {
            Ok(Merged { receiver, donor, modulus: now, keys: 0 })
        } else {
            Err(ReshardError::Failed(format!("shard {receiver} refused to absorb shard {donor}")))
        }
    }

    /// Has the donor's leader (this node or another) freeze it.
    async fn freeze_donor(&self, d: &Shard, epoch: u64) -> Result<(), ReshardError> {
        let deadline = Instant::now() + ADMIN_WAIT;
        let mut last = String::from("no leader");
        while Instant::now() < deadline {
            if d.read().frozen.is_some() {
                return Ok(());
            }
            match d.leader_checked(self.id, self.leader_stale_after()) {
                Some(l) if l == self.id => match self.freeze_shard(d.id, epoch).await {
                    Ok(_) => return Ok(()),
                    Err(e @ ReshardError::Bad(_)) => return Err(e),
                    Err(e) => last = e.to_string(),
                },
                Some(l) => {
                    let freeze = AdminRequest::Freeze { shard: d.id, query: FreezeQuery { epoch } };
                    match self.peers.admin(l, &freeze, Duration::from_secs(10)).await {
                        Ok(_) => return Ok(()),
                        // Refused (a stale epoch, say): asking again will not change that.
                        Err(e @ crate::raft_net::NetError::Refused(..)) => {
                            return Err(ReshardError::Bad(e.to_string()))
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ReshardError::Failed(format!("could not freeze shard {}: {last}", d.id)))
    }
}
