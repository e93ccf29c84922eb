//! What the planner answers: one [`Step`] for the driver to execute, or why there is
//! none ([`Next`]).

use serde::{Deserialize, Serialize};

use crate::state::{NodeId, ShardId};

/// One change to the data plane. Every step is idempotent: a driver that dies after
/// sending one observes again and gets the same step, or the one after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Split `shard` (modulus `modulus / 2`) in two: it keeps the keys with
    /// `hash % modulus == shard` and hands the rest to the new shard
    /// `shard + modulus / 2`, which starts with the same voters and leader.
    Split { shard: ShardId, modulus: u32 },
    /// Merge `donor` into `receiver`. Both have the same modulus `m` and identical
    /// voters, and `donor == receiver + m / 2`; the receiver's modulus becomes `m / 2`.
    Merge { receiver: ShardId, donor: ShardId },
    /// Add `node` as a learner, wait until it caught up, promote it to voter. Also
    /// promotes a learner left behind by an interrupted add.
    AddReplica { shard: ShardId, node: NodeId },
    /// Remove `node` from the shard, as voter or learner. Never its leader: the
    /// planner transfers leadership first.
    RemoveReplica { shard: ShardId, node: NodeId },
    /// Make `to`, a voter, the shard's leader.
    TransferLeader { shard: ShardId, to: NodeId },
}

/// The planner's answer to one observation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    /// Execute this step, then observe again.
    Step(Step),
    /// Something is in flight or unhealthy; observe again later. Says what.
    Wait(String),
    /// The ring matches the spec and is balanced.
    Converged,
    /// The spec cannot be reached from here without a change to the spec or to the
    /// cluster (e.g. fewer healthy nodes in the spec than the replication). Says what.
    Blocked(String),
}

impl Step {
    /// One line for progress output.
    pub fn describe(&self) -> String {
        match *self {
            Step::Split { shard, modulus } => {
                let new = u64::from(shard) + u64::from(modulus / 2);
                format!("split shard {shard}: new shard {new} takes the keys with hash % {modulus} == {new}")
            }
            Step::Merge { receiver, donor } => {
                format!("merge shard {donor} into shard {receiver}")
            }
            Step::AddReplica { shard, node } => {
                format!("add a replica of shard {shard} on node {node}")
            }
            Step::RemoveReplica { shard, node } => {
                format!("remove the replica of shard {shard} from node {node}")
            }
            Step::TransferLeader { shard, to } => {
                format!("transfer leadership of shard {shard} to node {to}")
            }
        }
    }
}
