//! The counts every rule needs, taken once per observation: replicas and leaders per
//! node, and the choices built on them (a new home for a replica, a successor for a
//! leader, whether a removal keeps a healthy majority).
//!
//! A member whose node reports the shard lost ([`ShardState::lost`]) counts as an
//! unhealthy member of that shard only: it votes for nothing, leads nothing, takes no
//! leadership and holds none of the shard's data, so it is neither counted as a replica
//! nor chosen as a successor, while its node stays healthy for every other shard.

use std::collections::BTreeMap;

use crate::state::{NodeId, Observed, ShardState, Spec};
use crate::step::{Next, Step};

/// The spec and the observation, with per-node counts.
pub(crate) struct Census<'a> {
    pub spec: &'a Spec,
    pub observed: &'a Observed,
    /// Voters per node, lost ones left out.
    voters: BTreeMap<NodeId, usize>,
    /// Voters and learners per node, lost ones left out: what a new replica adds to.
    replicas: BTreeMap<NodeId, usize>,
    /// Shards led per node.
    leaders: BTreeMap<NodeId, usize>,
}

impl<'a> Census<'a> {
    pub fn new(spec: &'a Spec, observed: &'a Observed) -> Self {
        let mut voters = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        let mut leaders = BTreeMap::new();
        for shard in observed.shards.values() {
            let held = |n: &&NodeId| !shard.lost.contains(n);
            for &node in shard.voters.iter().filter(held) {
                *voters.entry(node).or_default() += 1;
            }
            for &node in shard.voters.iter().chain(&shard.learners).filter(held) {
                *replicas.entry(node).or_default() += 1;
            }
            if let Some(leader) = shard.leader {
                *leaders.entry(leader).or_default() += 1;
            }
        }
        Census { spec, observed, voters, replicas, leaders }
    }

    pub fn healthy(&self, node: NodeId) -> bool {
        self.observed.healthy(node)
    }

    /// Whether `node` is healthy and still holds its replica of `shard`: a lost replica
    /// serves nothing, however healthy its node.
    pub fn serves(&self, shard: &ShardState, node: NodeId) -> bool {
        self.healthy(node) && !shard.lost.contains(&node)
    }

    pub fn voters(&self, node: NodeId) -> usize {
        self.voters.get(&node).copied().unwrap_or(0)
    }

    pub fn leaders(&self, node: NodeId) -> usize {
        self.leaders.get(&node).copied().unwrap_or(0)
    }

    /// The shard count `S` of the ring as observed.
    pub fn shard_count(&self) -> usize {
        self.observed.shards.len()
    }

    /// The spec nodes that are healthy: the only places new replicas go.
    pub fn healthy_spec_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.spec.nodes.iter().copied().filter(|&n| self.healthy(n))
    }

    /// Where a new replica of `shard` goes: the healthy spec node not holding it with
    /// the fewest replicas (ties: lowest id). When there is none, the answer says why.
    pub fn new_home(&self, shard: &ShardState) -> Result<NodeId, Next> {
        self.healthy_spec_nodes()
            .filter(|n| !shard.voters.contains(n) && !shard.learners.contains(n))
            .min_by_key(|&n| (self.replicas.get(&n).copied().unwrap_or(0), n))
            .ok_or_else(|| self.no_home(shard))
    }

    fn no_home(&self, shard: &ShardState) -> Next {
        let healthy = self.healthy_spec_nodes().count();
        let unhealthy: Vec<String> =
            (self.spec.nodes.iter()).filter(|&&n| !self.healthy(n)).map(|n| n.to_string()).collect();
        let what = format!(
            "shard {} needs a replica on another node, but only {healthy} of the {} spec nodes \
             are healthy (unhealthy: {}) and replication is {}",
            shard.id,
            self.spec.nodes.len(),
            unhealthy.join(", "),
            self.spec.replication
        );
        if healthy < self.spec.replication {
            Next::Blocked(what)
        } else {
            // Unreachable while the rules hold; waiting is the safe answer anyway.
            Next::Wait(what)
        }
    }

    /// Whether the voters left after removing `node` still have a strict majority of
    /// healthy nodes, so the shard keeps a quorum through and after the change.
    pub fn keeps_majority(&self, shard: &ShardState, node: NodeId) -> bool {
        self.healthy_majority(shard, shard.voters.iter().copied().filter(|&n| n != node))
    }

    /// Whether more than half of `voters` (members of `shard`) serve it: healthy and
    /// not lost (false for none).
    pub fn healthy_majority(&self, shard: &ShardState, voters: impl Iterator<Item = NodeId>) -> bool {
        let (total, serving) = voters.fold((0, 0), |(t, h), n| (t + 1, h + usize::from(self.serves(shard, n))));
        2 * serving > total
    }

    /// Why `shard` cannot replace its lost voters, if it has any: the voters that
    /// still serve it are no healthy majority of its voter set, so it cannot commit
    /// the membership change that removes one (and cannot commit anything else).
    pub fn lost_without_majority(&self, shard: &ShardState) -> Option<String> {
        let lost: Vec<String> = shard.lost_voters().map(|n| n.to_string()).collect();
        let first = lost.first()?;
        if self.healthy_majority(shard, shard.voters.iter().copied()) {
            return None;
        }
        let voters: Vec<String> = shard.voters.iter().map(|n| n.to_string()).collect();
        Some(format!(
            "shard {}: replica on node {first} is lost and the rest is no healthy majority \
             (voters {}; lost {}): no membership change commits until a majority serves it",
            shard.id,
            voters.join(", "),
            lost.join(", ")
        ))
    }

    /// The step that removes voter `node` from `shard` safely: `Wait` when the rest
    /// would lack a healthy majority; a leader transfer first when `node` leads (to the
    /// voter that serves the shard, accepted by `successor_ok`, with the fewest
    /// leaders); else the removal.
    pub fn remove_voter(&self, shard: &ShardState, node: NodeId, successor_ok: impl Fn(NodeId) -> bool) -> Next {
        if !self.keeps_majority(shard, node) {
            return Next::Wait(format!(
                "removing node {node} from shard {} would leave it without a healthy majority",
                shard.id
            ));
        }
        if shard.leader != Some(node) {
            return Next::Step(Step::RemoveReplica { shard: shard.id, node });
        }
        match self.successor(shard, node, successor_ok) {
            Some(to) => Next::Step(Step::TransferLeader { shard: shard.id, to }),
            None => Next::Wait(format!("node {node} leads shard {} and no healthy voter can take over", shard.id)),
        }
    }

    /// Where leadership of `shard` goes when its leader `node` must give it up: the
    /// voter that serves the shard, accepted by `successor_ok`, with the fewest leaders
    /// (ties: lowest id).
    pub fn successor(&self, shard: &ShardState, node: NodeId, successor_ok: impl Fn(NodeId) -> bool) -> Option<NodeId> {
        (shard.voters.iter().copied())
            .filter(|&n| n != node && self.serves(shard, n) && successor_ok(n))
            .min_by_key(|&n| (self.leaders(n), n))
    }

    /// A move of a replica of `shard` off `node` (add elsewhere, then remove) starts with
    /// a leader transfer when `node` leads: done while the shard has its `replication`
    /// voters, a node hands leadership over at once, but with the extra voter of the
    /// move the followers' leases make it wait an election timeout with writes paused
    /// (seen as ~0.9 s write stalls on a real cluster's scale-down). `None` when `node`
    /// does not lead or nobody suitable can take over (the removal transfers then).
    pub fn hand_off_before_move(
        &self,
        shard: &ShardState,
        node: NodeId,
        successor_ok: impl Fn(NodeId) -> bool,
    ) -> Option<Next> {
        if shard.leader != Some(node) || shard.voters.len() > self.spec.replication {
            return None;
        }
        let to = self.successor(shard, node, successor_ok)?;
        Some(Next::Step(Step::TransferLeader { shard: shard.id, to }))
    }
}
