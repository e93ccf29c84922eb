//! What the planner reads: the [`Spec`] (what should be) and the [`Observed`] ring (what
//! is), and the checks that both make sense before any rule looks at them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use ringkv_api::{NodeId, ShardId};

/// The layout the cluster should reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The number of shards; a power of two.
    pub shards: u32,
    /// Voters per shard.
    pub replication: usize,
    /// The nodes that should hold replicas. Nodes observed but not listed here are
    /// drained: their replicas move to listed nodes.
    pub nodes: BTreeSet<NodeId>,
}

/// One shard as observed: its slice of the ring and its Raft membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// Equal to the key of this shard in [`Observed::shards`].
    pub id: ShardId,
    /// The shard owns keys with `hash % modulus == id`. A power of two greater than `id`.
    pub modulus: u32,
    /// The voting members.
    pub voters: BTreeSet<NodeId>,
    /// Members catching up before promotion: what an interrupted `AddReplica` leaves.
    pub learners: BTreeSet<NodeId>,
    /// The current leader, if the shard has one.
    pub leader: Option<NodeId>,
    /// Frozen as a merge's donor: the merge was started and must be finished before
    /// anything else changes this shard (it refuses every request until then).
    #[serde(default)]
    pub frozen: bool,
    /// Members (as the leader reports the membership) whose node reports this shard
    /// lost: it restarted, could not open its replica and now hosts none. Such a member
    /// answers every Raft RPC for the shard with an error, so it cannot vote, lead or
    /// take a leadership transfer, and holds nothing of the shard.
    #[serde(default)]
    pub lost: BTreeSet<NodeId>,
}

/// The cluster as the driver saw it in one observation round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Every node seen, and whether it is healthy (answered and ready). A node that
    /// holds a replica but is missing here counts as unhealthy.
    pub nodes: BTreeMap<NodeId, bool>,
    /// Every shard of the ring, by id.
    pub shards: BTreeMap<ShardId, ShardState>,
}

impl Spec {
    /// Reports the first contradiction in the spec itself, which no step can fix.
    pub fn check(&self) -> Result<(), String> {
        if !self.shards.is_power_of_two() {
            return Err(format!("spec asks for {} shards; the shard count must be a power of two", self.shards));
        }
        if self.replication == 0 {
            return Err("spec asks for replication 0; it must be at least 1".to_owned());
        }
        if self.nodes.len() < self.replication {
            return Err(format!(
                "spec lists {} node(s) but replication is {}: every shard needs {} distinct \
                 nodes; add nodes to the spec or lower the replication",
                self.nodes.len(),
                self.replication,
                self.replication
            ));
        }
        Ok(())
    }
}

impl ShardState {
    /// The voters whose node reports this shard lost, lowest id first.
    pub fn lost_voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied().filter(|n| self.lost.contains(n))
    }
}

impl Observed {
    /// Whether `node` answered and is ready; unknown nodes are not.
    pub(crate) fn healthy(&self, node: NodeId) -> bool {
        self.nodes.get(&node).copied().unwrap_or(false)
    }

    /// Reports the first way the observed ring is not a partition of the hash space:
    /// a shard under the wrong key, a bad modulus, two shards owning the same keys, or
    /// keys nobody owns. Such a ring needs a human, not a step.
    pub(crate) fn check_ring(&self) -> Result<(), String> {
        if self.shards.is_empty() {
            return Err("no shards observed; the ring must be bootstrapped first".to_owned());
        }
        // Each shard owns 2^31 / modulus of 2^31 slots; a partition owns exactly all.
        const SLOTS: u64 = 1 << 31;
        let mut owned = 0u64;
        for (&key, shard) in &self.shards {
            if key != shard.id {
                return Err(format!("shard {} is reported under id {key}", shard.id));
            }
            if !shard.modulus.is_power_of_two() || shard.id >= shard.modulus {
                return Err(format!(
                    "shard {} has modulus {}; it must be a power of two above the id",
                    shard.id, shard.modulus
                ));
            }
            // A shard with a smaller modulus m owning `id % m` would own our keys too.
            let mut m = 1u32;
            while m < shard.modulus {
                if let Some(wider) = self.shards.get(&(shard.id % m)) {
                    if wider.modulus == m {
                        return Err(format!(
                            "shards {} (modulus {m}) and {} (modulus {}) own the same keys",
                            wider.id, shard.id, shard.modulus
                        ));
                    }
                }
                m *= 2;
            }
            owned += SLOTS / u64::from(shard.modulus);
        }
        if owned != SLOTS {
            return Err("the observed shards leave part of the hash space unowned".to_owned());
        }
        Ok(())
    }
}
