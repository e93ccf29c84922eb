//! The operation a plan belongs to, with its progress, for `status.currentOperation`
//! and the `Progressing` condition. Pure, like the plan: derived from the spec, what is
//! observed and the steps, plus the last operation's name so that an operation keeps
//! its name through its final balancing steps. Progress counts things the ring shows
//! (nodes drained, shards at their target modulus), so it survives an operator restart.

use std::collections::BTreeSet;

use crate::crd::{KVClusterSpec, Phase};
use crate::observe::{Observed, StatefulSetState};
use crate::resources::NodeLayout;
use crate::step::{describe, holders, list, Step};

/// What the operator is in the middle of, for `status.currentOperation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// Pods starting and bootstrapping for the first time.
    Create,
    /// A new pod template rolling through the pods.
    Rollout,
    /// New nodes: the StatefulSet grows, then replicas and leaders move onto them.
    ScaleUp,
    /// Leaving nodes are drained, then the StatefulSet shrinks.
    ScaleDown,
    /// Splits (or merges) until the ring has `spec.shards` shards.
    Reshard,
    /// Replica and leader moves: a `replicationFactor` change, or balance.
    Rebalance,
}

impl OperationKind {
    /// The value in `status.currentOperation.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Create => "Create",
            OperationKind::Rollout => "Rollout",
            OperationKind::ScaleUp => "ScaleUp",
            OperationKind::ScaleDown => "ScaleDown",
            OperationKind::Reshard => "Reshard",
            OperationKind::Rebalance => "Rebalance",
        }
    }

    /// The `Progressing` condition's reason while this operation runs.
    pub fn reason(self) -> &'static str {
        match self {
            OperationKind::Create => "Creating",
            OperationKind::Rollout => "RollingOut",
            OperationKind::ScaleUp => "ScalingUp",
            OperationKind::ScaleDown => "ScalingDown",
            OperationKind::Reshard => "Resharding",
            OperationKind::Rebalance => "Rebalancing",
        }
    }

    /// The phase `kubectl get kvc` shows while this operation runs.
    pub fn phase(self) -> Phase {
        match self {
            OperationKind::Create => Phase::Creating,
            OperationKind::Rollout => Phase::Updating,
            OperationKind::ScaleUp | OperationKind::ScaleDown => Phase::Scaling,
            OperationKind::Reshard => Phase::Resharding,
            OperationKind::Rebalance => Phase::Rebalancing,
        }
    }
}

/// An operation with its progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub kind: OperationKind,
    pub done: u32,
    pub total: u32,
    pub message: String,
}

impl Operation {
    fn new(kind: OperationKind, done: usize, total: usize, message: String) -> Self {
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Operation { kind, done: n(done), total: n(total), message }
    }

    /// A cluster being created: `ready` of `total` nodes so far.
    pub fn create(ready: u32, total: u32, message: String) -> Self {
        Operation { kind: OperationKind::Create, done: ready, total, message }
    }
}

/// What the plan does now, in words: the data step, else the first wait.
fn doing(steps: &[Step]) -> String {
    let now = steps.iter().find_map(|s| match s {
        Step::Data(d) => Some(describe(d)),
        Step::WaitForStep(d) => Some(format!("{} (in flight)", describe(d))),
        Step::WaitForPlanner(why) => Some(format!("waiting: {why}")),
        _ => None,
    });
    now.or_else(|| {
        steps.iter().find_map(|s| match s {
            Step::WaitForRollout { updated, total } => {
                Some(format!("waiting for the rollout: {updated} of {total} pods updated"))
            }
            Step::WaitForNodes { ready, total } => Some(format!("waiting for nodes: {ready} of {total} ready")),
            Step::WaitForRing => Some("waiting for every shard to have a leader".to_string()),
            Step::Blocked(b) => Some(format!("blocked: {}", b.message)),
            _ => None,
        })
    })
    .unwrap_or_else(|| "in progress".to_string())
}

/// The operation `steps` belong to, if any.
pub fn operation(
    spec: &KVClusterSpec,
    observed: &Observed,
    sts: &StatefulSetState,
    layout: NodeLayout,
    steps: &[Step],
) -> Option<Operation> {
    use OperationKind::*;
    let waits = steps.iter().any(Step::is_wait);
    if !observed.created && waits {
        let ready = observed.nodes.iter().filter(|(id, n)| **id <= layout.nodes && n.ready).count();
        let total = layout.nodes as usize;
        return Some(Operation::new(Create, ready, total, format!("{ready} of {total} nodes ready")));
    }
    // The planner has not converged: it gave a step, a wait, or a reason it cannot.
    let work = steps.iter().any(|s| {
        matches!(s, Step::Data(_) | Step::WaitForPlanner(_) | Step::WaitForStep(_))
            || matches!(s, Step::Blocked(b) if b.reason == "PlanBlocked")
    });
    let continuing = |kind: OperationKind| (work || waits) && observed.operation.as_deref() == Some(kind.as_str());
    let ring = observed.ring.as_ref().filter(|r| !r.shards.is_empty());
    let held = ring.map(holders).unwrap_or_default();
    let now = doing(steps);

    if sts.replicas > spec.nodes {
        let leaving: Vec<u32> = (spec.nodes + 1..=sts.replicas).collect();
        let drained =
            if ring.is_some() { leaving.iter().filter(|n| !held.contains(&u64::from(**n))).count() } else { 0 };
        let message = if layout.nodes < sts.replicas {
            format!(
                "nodes {} hold no replica: shrinking the StatefulSet from {} to {} pods",
                list(&leaving),
                sts.replicas,
                layout.nodes
            )
        } else {
            format!("draining nodes {}: {now}", list(&leaving))
        };
        return Some(Operation::new(ScaleDown, drained, leaving.len(), message));
    }
    let idle: BTreeSet<u32> = (1..=spec.nodes).filter(|n| !held.contains(&u64::from(*n))).collect();
    if spec.nodes > sts.replicas || (ring.is_some() && !idle.is_empty() && work) || continuing(ScaleUp) {
        let holding = if ring.is_some() { spec.nodes as usize - idle.len() } else { 0 };
        let message = if layout.nodes > sts.replicas {
            let new: Vec<u32> = (sts.replicas + 1..=layout.nodes).collect();
            format!(
                "adding nodes {}: growing the StatefulSet from {} to {} pods",
                list(&new),
                sts.replicas,
                layout.nodes
            )
        } else if idle.is_empty() {
            format!("balancing onto the new nodes: {now}")
        } else {
            format!("filling nodes {}: {now}", list(&idle))
        };
        return Some(Operation::new(ScaleUp, holding, spec.nodes as usize, message));
    }
    if ring.is_some_and(|r| r.shards.len() != spec.shards as usize) || continuing(Reshard) {
        let shards = ring.map_or(0, |r| r.shards.len());
        let at_target = ring.map_or(0, |r| r.shards.values().filter(|s| s.modulus == spec.shards).count());
        let message = format!("{shards} → {} shards: {now}", spec.shards);
        return Some(Operation::new(Reshard, at_target, spec.shards as usize, message));
    }
    // A rollout is pods not on the newest template (or one already under way). The
    // StatefulSet's status lagging a moment behind a shrink is none: it showed as a
    // "Rollout completed, steps 0" that replaced the ScaleDown just finished.
    let rolling = sts.updated_replicas < sts.replicas || observed.operation.as_deref() == Some(Rollout.as_str());
    if !sts.rollout_complete && observed.created && rolling {
        let message = format!("{} of {} pods run the newest template", sts.updated_replicas, sts.replicas);
        return Some(Operation::new(
            Rollout,
            sts.updated_replicas.min(sts.replicas) as usize,
            sts.replicas as usize,
            message,
        ));
    }
    if work || continuing(Rebalance) {
        let rf = spec.replication_factor as usize;
        let placed = ring.map_or(0, |r| {
            r.shards
                .values()
                .filter(|s| {
                    s.learners.is_empty()
                        && s.voters.len() == rf
                        && s.voters.iter().all(|v| *v <= u64::from(spec.nodes))
                })
                .count()
        });
        let shards = ring.map_or(0, |r| r.shards.len());
        return Some(Operation::new(Rebalance, placed, shards, now));
    }
    None
}
