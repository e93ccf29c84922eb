//! The ring as a node reports it: `GET /internal/ring` (planners) and `GET /v1/cluster`
//! (clients, the operator). Read leniently: a field a newer or older node lacks takes
//! its default, so a rolling upgrade never leaves a planner unable to read a node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, ShardId};

/// One shard as a node reports it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(default)]
pub struct ShardInfo {
    pub id: ShardId,
    /// The shard owns keys with `hash mod modulus == id`.
    pub modulus: u32,
    /// The ring epoch at which the shard last split or merged.
    pub epoch: u64,
    pub members: Vec<NodeId>,
    /// Non-voting replicas catching up before promotion.
    pub learners: Vec<NodeId>,
    /// The shard's revision counter on this replica.
    pub revision: u64,
    /// Keys held by this replica (expired but unreaped ones included; for a moment after
    /// a split, also the other shard's keys its background sweep has not dropped yet).
    pub keys: u64,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Last log index covered by this replica's snapshot (0: none).
    pub snapshot_index: u64,
    /// Log entries up to here are purged from this replica's log (0: none).
    pub purged_index: u64,
    /// Raft's role: `Leader`, `Follower`, `Candidate`, `Learner`; or
    /// `LeaderWithoutQuorum` for a leader no quorum has answered for two election
    /// timeouts (cut off: it serves nothing, and steps down when it hears a newer term).
    pub state: String,
    /// Frozen as a merge's donor: it refuses every request (naming its receiver) until
    /// the merge is done and the shard is retired.
    pub frozen: bool,
}

/// A versioned view of the ring, from one node.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ring {
    /// The node reporting this view.
    pub node_id: NodeId,
    pub epoch: u64,
    #[serde(default)]
    pub shard_count: u32,
    #[serde(default)]
    pub shards: Vec<ShardInfo>,
    /// Whether the node is ready (`GET /readyz`): every replica here has a leader and
    /// each it votes in has caught up. Planners count only ready nodes healthy. Absent
    /// (a node from before the field): ready.
    #[serde(default = "yes")]
    pub ready: bool,
    /// Shards whose replica here was lost (it could not be opened on start and was
    /// quarantined) while their group may still count this node as a voter: planners
    /// remove this node from them, then add a fresh replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<ShardId>,
}

fn yes() -> bool {
    true
}

impl Ring {
    /// Whether every shard has a leader.
    pub fn all_led(&self) -> bool {
        self.shards.iter().all(|s| s.leader.is_some())
    }

    /// Whether the ring is formed: every shard is initialised (has members).
    pub fn formed(&self) -> bool {
        !self.shards.is_empty() && self.shards.iter().all(|s| !s.members.is_empty())
    }

    /// Node id → number of shard replicas it holds, per this view.
    pub fn replicas_by_node(&self) -> BTreeMap<NodeId, usize> {
        let mut m = BTreeMap::new();
        for s in &self.shards {
            for n in &s.members {
                *m.entry(*n).or_insert(0) += 1;
            }
        }
        m
    }
}

/// The coarser slices holding shard `shard`'s slice at `modulus`, finest first: `(shard
/// mod m, m)` for `m = modulus/2, modulus/4, …, 1`. A merge's receiver is one of them
/// (at that modulus, with a newer epoch); every "was this shard absorbed?" walks these.
pub fn coarser_slices(shard: ShardId, modulus: u32) -> impl Iterator<Item = (ShardId, u32)> {
    std::iter::successors(Some(modulus / 2), |m| Some(m / 2)).take_while(|m| *m >= 1).map(move |m| (shard % m, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarser_slices_halve_down_to_the_whole_ring() {
        assert_eq!(coarser_slices(13, 16).collect::<Vec<_>>(), vec![(5, 8), (1, 4), (1, 2), (0, 1)]);
        assert_eq!(coarser_slices(0, 1).count(), 0);
        assert_eq!(coarser_slices(3, 4).collect::<Vec<_>>(), vec![(1, 2), (0, 1)]);
    }

    #[test]
    fn a_sparse_view_reads_with_defaults() {
        let r: Ring = serde_json::from_str(r#"{"node_id": 2, "epoch": 5, "shards": [{"id": 1}]}"#).expect("parse");
        assert!(r.ready, "a node that does not say is ready");
        assert!(r.lost.is_empty());
        assert_eq!(r.shards[0], ShardInfo { id: 1, ..ShardInfo::default() });
        assert!(!r.formed());
    }
}
