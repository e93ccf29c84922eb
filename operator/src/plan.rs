//! `plan(spec, observed) -> Plan`: the steps from what is to what the spec asks for.
//!
//! Pure: no I/O, so every decision is a table-driven test. The executor applies the
//! Kubernetes steps (idempotent server-side applies, all of them every pass); `Wait*`
//! and `Blocked` steps are reports that become status.
//!
//! What the data plane can do today decides what the plan may ask for. Nodes bootstrap
//! themselves from `RINGKV_PEERS` (every node holds a replica of every shard); splits,
//! merges and replica moves come from the planning library that is not written yet. So
//! once the StatefulSet exists, a change of `shards`, a larger `nodes`, a smaller `nodes`
//! whose leaving nodes hold replicas, or a `replicationFactor` the ring does not have, is
//! a [`Step::Blocked`] with a reason and a message (`Degraded=True`), and the StatefulSet
//! stays at the layout the nodes run. Never changing `RINGKV_SHARDS` under existing data
//! matters: a node refuses a data dir created with another shard count.

use std::fmt::Write as _;

use crate::crd::KVClusterSpec;
use crate::observe::{ClusterView, Observed, StatefulSetState};
use crate::resources::NodeLayout;

/// Why the plan cannot reach the spec, for `Degraded`'s reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// A CamelCase reason (`ReshardingNotSupported`, ...).
    pub reason: &'static str,
    /// What is wrong and what the user can do, in one sentence or two.
    pub message: String,
}

/// One step towards the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Apply the headless peer Service.
    ApplyPeerService,
    /// Apply the client Service.
    ApplyClientService,
    /// Apply the PodDisruptionBudget.
    ApplyDisruptionBudget,
    /// Apply the ServiceMonitor (its CRD may be missing; the executor reports that).
    ApplyServiceMonitor,
    /// Delete the ServiceMonitor after monitoring was turned off (absent is fine).
    DeleteServiceMonitor,
    /// Apply the StatefulSet with this layout.
    ApplyStatefulSet(NodeLayout),
    /// Wait until the newest pod template reaches every pod.
    WaitForRollout { updated: u32, total: u32 },
    /// Wait until every node answers `/readyz`.
    WaitForNodes { ready: u32, total: u32 },
    /// Wait until some node reports a ring in which every shard has a leader.
    WaitForRing,
    /// The spec asks for something the data plane cannot do yet (or not safely now).
    Blocked(Blocked),
}

impl Step {
    /// A bounded label for `ringkv_operator_steps_total{step}`.
    pub fn name(&self) -> &'static str {
        match self {
            Step::ApplyPeerService => "apply_peer_service",
            Step::ApplyClientService => "apply_client_service",
            Step::ApplyDisruptionBudget => "apply_disruption_budget",
            Step::ApplyServiceMonitor => "apply_service_monitor",
            Step::DeleteServiceMonitor => "delete_service_monitor",
            Step::ApplyStatefulSet(_) => "apply_statefulset",
            Step::WaitForRollout { .. } => "wait_for_rollout",
            Step::WaitForNodes { .. } => "wait_for_nodes",
            Step::WaitForRing => "wait_for_ring",
            Step::Blocked(_) => "blocked",
        }
    }

    /// Whether this step waits for the cluster to settle.
    pub fn is_wait(&self) -> bool {
        matches!(self, Step::WaitForRollout { .. } | Step::WaitForNodes { .. } | Step::WaitForRing)
    }
}

/// What the operator is in the middle of, for `status.currentOperation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// Pods starting and bootstrapping for the first time.
    Create,
    /// A new pod template rolling through the pods.
    Rollout,
    /// Removing nodes that hold no replicas.
    ScaleDown,
}

impl OperationKind {
    /// The value in `status.currentOperation.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Create => "Create",
            OperationKind::Rollout => "Rollout",
            OperationKind::ScaleDown => "ScaleDown",
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

/// The plan: steps in order, and the operation they belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub operation: Option<Operation>,
}

impl Plan {
    /// Everything that blocks the spec.
    pub fn blocked(&self) -> impl Iterator<Item = &Blocked> {
        self.steps.iter().filter_map(|s| match s {
            Step::Blocked(b) => Some(b),
            _ => None,
        })
    }

    /// The layout the StatefulSet is applied with, if it is.
    pub fn layout(&self) -> Option<NodeLayout> {
        self.steps.iter().find_map(|s| match s {
            Step::ApplyStatefulSet(l) => Some(*l),
            _ => None,
        })
    }
}

fn list(ids: &[u32]) -> String {
    let mut s = String::new();
    for (i, id) in ids.iter().enumerate() {
        let _ = write!(s, "{}{id}", if i == 0 { "" } else { ", " });
    }
    s
}

/// The steps from `observed` towards `spec`. Paused: no steps at all.
pub fn plan(spec: &KVClusterSpec, observed: &Observed) -> Plan {
    let mut p = Plan::default();
    if spec.paused {
        return p;
    }
    p.steps.extend([Step::ApplyPeerService, Step::ApplyClientService, Step::ApplyDisruptionBudget]);
    if spec.monitoring.service_monitor.enabled {
        p.steps.push(Step::ApplyServiceMonitor);
    } else if observed.status_generation.is_some_and(|g| g != observed.generation) {
        // Only a spec change can turn monitoring off, so only then is a delete needed
        // (and never for a cluster that has no status yet: it never had one).
        p.steps.push(Step::DeleteServiceMonitor);
    }

    // A created cluster whose StatefulSet is gone comes back as it was: its volumes hold
    // that shard count, and the checks below apply to it as to a live one.
    let recreated = observed.previous.map(|prev| StatefulSetState {
        replicas: prev.nodes,
        shards: Some(prev.shards),
        rollout_complete: true,
        ..Default::default()
    });
    let Some(sts) = observed.statefulset.as_ref().or(recreated.as_ref()) else {
        let layout = NodeLayout { nodes: spec.nodes, shards: spec.shards };
        p.steps.push(Step::ApplyStatefulSet(layout));
        p.steps.push(Step::WaitForNodes { ready: 0, total: spec.nodes });
        p.operation = Some(Operation {
            kind: OperationKind::Create,
            done: 0,
            total: spec.nodes,
            message: format!("creating {} nodes with {} shards", spec.nodes, spec.shards),
        });
        return p;
    };

    let any_view = observed.ring();
    // Placement decisions need a formed ring (every shard initialised).
    let ring = any_view.filter(|r| r.formed());
    // The shard count the nodes' data dirs hold: the nodes', else the template's.
    let shards = any_view.map(|r| r.shard_count).or(sts.shards).unwrap_or(spec.shards);
    let mut blocked = Vec::new();
    if spec.shards != shards {
        blocked.push(Blocked {
            reason: "ReshardingNotSupported",
            message: format!(
                "resharding is not supported yet: the cluster runs {shards} shards and spec.shards asks for {}; \
                 the cluster keeps serving with {shards} (set spec.shards to {shards} to clear this)",
                spec.shards
            ),
        });
    }
    let (nodes, mut operation) = node_count(spec, sts.replicas, ring, &mut blocked);
    let layout = NodeLayout { nodes, shards };
    if let Some(r) = ring {
        placement(spec, r, layout.nodes, &mut blocked);
    }
    p.steps.push(Step::ApplyStatefulSet(layout));
    p.steps.extend(blocked.into_iter().map(Step::Blocked));

    let ready = u32::try_from(observed.nodes.iter().filter(|(id, n)| **id <= layout.nodes && n.ready).count())
        .unwrap_or(u32::MAX);
    if !sts.rollout_complete {
        p.steps.push(Step::WaitForRollout { updated: sts.updated_replicas, total: sts.replicas });
        if observed.created && operation.is_none() {
            operation = Some(Operation {
                kind: OperationKind::Rollout,
                done: sts.updated_replicas.min(sts.replicas),
                total: sts.replicas,
                message: format!("{} of {} pods run the newest template", sts.updated_replicas, sts.replicas),
            });
        }
    }
    if ready < layout.nodes {
        p.steps.push(Step::WaitForNodes { ready, total: layout.nodes });
    }
    if !ring.is_some_and(|r| r.all_led()) {
        p.steps.push(Step::WaitForRing);
    }
    if !observed.created && p.steps.iter().any(Step::is_wait) {
        operation = Some(Operation {
            kind: OperationKind::Create,
            done: ready,
            total: layout.nodes,
            message: format!("{ready} of {} nodes ready", layout.nodes),
        });
    }
    p.operation = operation;
    p
}

/// The node count to run, given `current` pods: a larger spec is blocked (new nodes
/// would hold nothing), a smaller one only shrinks when the leaving nodes hold no replica.
fn node_count(
    spec: &KVClusterSpec,
    current: u32,
    ring: Option<&ClusterView>,
    blocked: &mut Vec<Blocked>,
) -> (u32, Option<Operation>) {
    if spec.nodes > current {
        blocked.push(Blocked {
            reason: "AddingNodesNotSupported",
            message: format!(
                "adding nodes is not supported yet: new nodes would hold no replicas until replica moves exist; \
                 the cluster keeps running {current} nodes (spec.nodes asks for {})",
                spec.nodes
            ),
        });
        return (current, None);
    }
    if spec.nodes == current {
        return (current, None);
    }
    let leaving: Vec<u32> = (spec.nodes + 1..=current).collect();
    let Some(r) = ring else {
        blocked.push(Blocked {
            reason: "RingUnknown",
            message: format!(
                "cannot remove nodes {} yet: no node reports a formed ring on /v1/cluster, so the operator \
                 cannot tell whether they hold replicas",
                list(&leaving)
            ),
        });
        return (current, None);
    };
    let held = r.replicas_by_node();
    let holders: Vec<u32> = leaving.iter().copied().filter(|id| held.contains_key(&u64::from(*id))).collect();
    if !holders.is_empty() {
        blocked.push(Blocked {
            reason: "DrainNotSupported",
            message: format!(
                "removing nodes {} needs their replicas moved first; draining nodes is not supported yet, so \
                 the cluster keeps running {current} nodes",
                list(&holders)
            ),
        });
        return (current, None);
    }
    let operation = Operation {
        kind: OperationKind::ScaleDown,
        done: 0,
        total: u32::try_from(leaving.len()).unwrap_or(u32::MAX),
        message: format!("removing nodes {}, which hold no replicas", list(&leaving)),
    };
    (spec.nodes, Some(operation))
}

/// Where the formed ring differs from what the spec's placement would be.
fn placement(spec: &KVClusterSpec, ring: &ClusterView, nodes: u32, blocked: &mut Vec<Blocked>) {
    let rf = usize::try_from(spec.replication_factor).unwrap_or(usize::MAX);
    if let Some(s) = ring.shards.iter().find(|s| s.members.len() != rf) {
        blocked.push(Blocked {
            reason: "PlacementNotSupported",
            message: format!(
                "shard {} has {} replicas but replicationFactor is {}: placing replicas is not supported yet \
                 (today every node holds a replica of every shard)",
                s.id,
                s.members.len(),
                spec.replication_factor
            ),
        });
    }
    let held = ring.replicas_by_node();
    let idle: Vec<u32> = (1..=nodes).filter(|id| !held.contains_key(&u64::from(*id))).collect();
    if !idle.is_empty() {
        blocked.push(Blocked {
            reason: "RebalancingNotSupported",
            message: format!("nodes {} hold no replicas: rebalancing is not supported yet", list(&idle)),
        });
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
