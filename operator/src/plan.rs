//! `plan(spec, observed) -> Plan`: the steps from what is to what the spec asks for.
//!
//! Pure: no I/O, so every decision is a table-driven test. The executor applies the
//! Kubernetes steps (idempotent server-side applies, all of them every pass), then at
//! most one data-plane step; `Wait*` and `Blocked` steps are reports that become status.
//!
//! The data plane is planned by the planning library (`ringkv-plan`, the same one the
//! admin command line drives): its `next_step` gets the spec as `{shards,
//! replicationFactor, nodes 1..=spec.nodes}` and the ring the nodes report, and answers
//! one split, merge, replica move or leader transfer, a wait, or why it cannot. One such
//! step per reconcile pass, and only once nothing else waits (rollout, pods, leaders):
//! level-triggered, since the ring lives in the nodes' Raft logs and every step is
//! idempotent, so a restarted operator simply plans again.
//!
//! Nodes come and go around that. Scale up: the StatefulSet grows at once, the new pods
//! start as nodes outside the founding peer list (they join and hold nothing), and once
//! they are ready the planner moves replicas and leaders onto them. Scale down: the
//! leaving nodes (the highest ordinals) are outside the planner's spec, so it drains
//! them; the StatefulSet shrinks only in a pass that sees them hold no replica (voter or
//! learner). The pod template keeps the bootstrap layout (see
//! [`NodeLayout`]), so neither scaling nor resharding rolls the pods.

use ringkv_plan::{next_step, Next};

use crate::crd::{KVClusterSpec, TlsMode};
use crate::observe::{Observed, StatefulSetState};
use crate::resources::tls::{effective_mode, Renewal};
use crate::resources::{NodeLayout, PodTls};

pub use crate::plan_ops::{operation, Operation, OperationKind};
use crate::step::holders;
pub use crate::step::{data_step_name, describe, Blocked, Step};

/// The plan: steps in order, and the operation they belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub operation: Option<Operation>,
    /// The TLS the nodes run (see [`tls_mode`]).
    pub tls: TlsMode,
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
            Step::ApplyStatefulSet(l, _) => Some(*l),
            _ => None,
        })
    }

    /// The data-plane step to execute after the Kubernetes steps, if any.
    pub fn data_step(&self) -> Option<&ringkv_plan::Step> {
        self.steps.iter().find_map(|s| match s {
            Step::Data(d) => Some(d),
            _ => None,
        })
    }
}

/// What the planning library is asked to reach.
pub fn planner_spec(spec: &KVClusterSpec) -> ringkv_plan::Spec {
    ringkv_plan::Spec {
        shards: spec.shards,
        replication: usize::try_from(spec.replication_factor).unwrap_or(usize::MAX),
        nodes: (1..=spec.nodes).map(u64::from).collect(),
    }
}

/// The TLS the nodes run: what the pods run, else what status recorded, else what the
/// spec asks for a new cluster (see [`effective_mode`]).
pub fn tls_mode(spec: &KVClusterSpec, observed: &Observed) -> TlsMode {
    let live = observed.statefulset.as_ref().map(|s| s.tls);
    effective_mode(spec.tls.as_ref().map(|t| t.mode), live, observed.tls.recorded, observed.created)
}

/// What the pod template gets for `mode` (see [`PodTls`]).
fn pod_tls(spec: &KVClusterSpec, observed: &Observed, mode: TlsMode) -> PodTls {
    match mode {
        TlsMode::Disabled => PodTls::Disabled,
        TlsMode::Managed => PodTls::Managed,
        TlsMode::Provided => {
            let asked = spec.tls.as_ref().filter(|t| t.mode == TlsMode::Provided).and_then(|t| t.secret_name.clone());
            let mounted = observed.statefulset.as_ref().and_then(|s| s.tls_secret.clone());
            PodTls::Provided(asked.or(mounted).unwrap_or_default())
        }
    }
}

/// The certificate steps for `mode`, and why the spec's TLS cannot be had.
fn tls_steps(spec: &KVClusterSpec, observed: &Observed, mode: TlsMode) -> Vec<Step> {
    let mut steps = Vec::new();
    if spec.tls.is_none() && mode == TlsMode::Provided {
        steps.push(Step::Blocked(Blocked {
            reason: "TLSModeFixed",
            message: "spec.tls was removed but the nodes run Provided TLS: they keep the Secret they mount, and \
                      the operator has no client certificate for them; put spec.tls back (mode Provided, \
                      secretName and operatorSecretName)"
                .to_string(),
        }));
    }
    if let Some(asked) = spec.tls.as_ref().map(|t| t.mode).filter(|m| *m != mode) {
        steps.push(Step::Blocked(Blocked {
            reason: "TLSModeFixed",
            message: format!(
                "spec.tls.mode is {} but the nodes run {}: the mode of a running cluster cannot change (all its \
                 nodes speak TLS or none does); set spec.tls.mode back to {}, or make a new cluster and move the data",
                asked.as_str(),
                mode.as_str(),
                mode.as_str()
            ),
        }));
    }
    match mode {
        TlsMode::Managed => {
            if let Some(why) = &observed.tls.ca_unusable {
                // Nothing to sign or publish with; the nodes keep what they mount.
                steps.push(Step::Blocked(Blocked { reason: "TLSCAUnusable", message: why.clone() }));
                return steps;
            }
            if !observed.tls.ca {
                steps.extend([Step::IssueCa, Step::IssueCertificate(Renewal::Missing)]);
            } else if let Some(why) = observed.tls.renewal {
                steps.push(Step::IssueCertificate(why));
            }
            steps.push(Step::ApplyCaBundle);
        }
        TlsMode::Provided => {
            if let Some(missing) = &observed.tls.missing {
                steps.push(Step::Blocked(Blocked {
                    reason: "TLSSecretMissing",
                    message: format!("spec.tls.mode is Provided but {missing}: the nodes cannot start without it"),
                }));
            }
        }
        TlsMode::Disabled => {}
    }
    steps
}

/// The steps from `observed` towards `spec`. Paused: none, except renewing the nodes'
/// certificate when it is due (an expired one would stop the cluster; it needs no
/// restart).
pub fn plan(spec: &KVClusterSpec, observed: &Observed) -> Plan {
    let tls = tls_mode(spec, observed);
    let pods = pod_tls(spec, observed, tls);
    let mut p = Plan { tls, ..Plan::default() };
    if spec.paused {
        if let (TlsMode::Managed, true, Some(why)) = (tls, observed.tls.ca, observed.tls.renewal) {
            p.steps.push(Step::IssueCertificate(why));
        }
        return p;
    }
    p.steps.extend([Step::ApplyPeerService, Step::ApplyClientService, Step::ApplyDisruptionBudget]);
    p.steps.extend(tls_steps(spec, observed, tls));
    if spec.monitoring.service_monitor.enabled {
        p.steps.push(Step::ApplyServiceMonitor(pods.clone()));
    } else if observed.status_generation.is_some_and(|g| g != observed.generation) {
        // Only a spec change can turn monitoring off, so only then is a delete needed
        // (and never for a cluster that has no status yet: it never had one).
        p.steps.push(Step::DeleteServiceMonitor);
    }

    // A created cluster whose StatefulSet is gone comes back as it was: its volumes hold
    // that ring, and the rules below apply to it as to a live one.
    let recreated = observed.previous.map(|prev| StatefulSetState {
        replicas: prev.nodes,
        shards: Some(prev.shards),
        peers: Some(prev.peers),
        rollout_complete: true,
        ..Default::default()
    });
    // Pods that never ran (none ever Ready, no node answering, no ring recorded) have
    // bootstrapped nothing: a changed spec is a creation with the new layout. (A
    // scale-down of such a cluster used to wait for ever for pods that could not start,
    // its status still saying "Create: 0 of 5".)
    let never_ran = |s: &StatefulSetState| {
        !observed.created
            && s.ready_replicas == 0
            && observed.nodes.values().all(|n| !n.ready && n.view.is_none())
            && (s.replicas != spec.nodes || s.shards != Some(spec.shards))
    };
    let live = observed.statefulset.as_ref().filter(|s| !never_ran(s));
    let Some(sts) = live.or(recreated.as_ref()) else {
        p.steps.push(Step::ApplyStatefulSet(NodeLayout::new(spec.nodes, spec.shards), pods));
        p.steps.push(Step::WaitForNodes { ready: 0, total: spec.nodes });
        p.operation = Some(Operation::create(
            0,
            spec.nodes,
            format!("creating {} nodes with {} shards", spec.nodes, spec.shards),
        ));
        return p;
    };

    // A bootstrapped ring (an empty one is still forming: nothing to plan or drain yet).
    let ring = observed.ring.as_ref().filter(|r| !r.shards.is_empty());
    let layout = NodeLayout {
        nodes: node_count(spec, sts.replicas, ring, observed.in_flight.is_some()),
        shards: sts.shards.unwrap_or(spec.shards),
        peers: sts.peers.unwrap_or(sts.replicas),
    };
    p.steps.push(Step::ApplyStatefulSet(layout, pods));

    let ready = u32::try_from(observed.nodes.iter().filter(|(id, n)| **id <= layout.nodes && n.ready).count())
        .unwrap_or(u32::MAX);
    if !sts.rollout_complete {
        p.steps.push(Step::WaitForRollout { updated: sts.updated_replicas, total: sts.replicas });
    }
    // Nodes not created yet (the StatefulSet just grew) are not ready either.
    if ready < layout.nodes {
        p.steps.push(Step::WaitForNodes { ready, total: layout.nodes });
    }
    if !observed.ring().is_some_and(|r| r.formed() && r.all_led()) {
        p.steps.push(Step::WaitForRing);
    }
    if let Some(step) = &observed.in_flight {
        p.steps.push(Step::WaitForStep(step.clone()));
    }
    if !p.steps.iter().any(Step::is_wait) {
        match ring {
            Some(r) => match next_step(&planner_spec(spec), r) {
                Next::Step(s) => p.steps.push(Step::Data(s)),
                Next::Wait(why) => p.steps.push(Step::WaitForPlanner(why)),
                Next::Blocked(why) => p.steps.push(Step::Blocked(Blocked { reason: "PlanBlocked", message: why })),
                Next::Converged => {}
            },
            None => p.steps.push(Step::Blocked(Blocked {
                reason: "InternalPortUnreachable",
                message: "every node answers on its client port, but none on its internal port (/internal/ring): \
                          the operator plans and executes splits and replica moves through it; check that a \
                          NetworkPolicy lets the operator reach port 8180 of the nodes"
                    .to_string(),
            })),
        }
    }
    p.operation = operation(spec, observed, sts, layout, &p.steps);
    p
}

/// Whether `ring` can prove where every replica is: its shards own the whole hash space
/// (no shard went unseen because the nodes holding it did not answer), and each one's
/// membership comes from its leader's own view (a lagging follower's may miss a member).
pub(crate) fn complete(ring: &ringkv_plan::Observed) -> bool {
    const SLOTS: u64 = 1 << 31;
    let owned: u64 = ring.shards.values().map(|s| SLOTS / u64::from(s.modulus.max(1))).sum();
    owned == SLOTS && ring.shards.values().all(|s| s.leader.is_some())
}

/// The pods to run, given `current` ones: a larger spec grows at once (new nodes join
/// empty and the planner fills them); a smaller one shrinks only once a complete ring
/// shows the leaving nodes (ordinals above `spec.nodes`) hold no replica, and no step is
/// in flight (one planned for an earlier spec may be adding a replica on a leaving node
/// that the ring does not show yet).
fn node_count(spec: &KVClusterSpec, current: u32, ring: Option<&ringkv_plan::Observed>, stepping: bool) -> u32 {
    if spec.nodes >= current {
        return spec.nodes;
    }
    if stepping {
        return current;
    }
    match ring {
        Some(r) if complete(r) && holders(r).iter().all(|n| *n <= u64::from(spec.nodes)) => spec.nodes,
        _ => current,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
