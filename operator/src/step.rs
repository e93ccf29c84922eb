//! The steps a plan is made of ([`Step`]: Kubernetes applies, waits, one data-plane
//! step, or why the spec cannot be reached) and the words for them. Apart from `plan`
//! so that `plan` and `plan_ops` (the operation a plan belongs to) both use them
//! without importing each other.

use std::collections::BTreeSet;

use crate::resources::tls::Renewal;
use crate::resources::{NodeLayout, PodTls};

/// Why the plan cannot reach the spec, for `Degraded`'s reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// A CamelCase reason (`PlanBlocked`, `StepBlocked`, ...).
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
    /// Apply the nodes' NetworkPolicy (when the operator is configured with its pods'
    /// labels; see `RunConfig::network_policy_from`).
    ApplyNetworkPolicy(crate::resources::OperatorPods),
    /// Apply the ServiceMonitor (its CRD may be missing; the executor reports that),
    /// scraping over HTTPS unless the nodes' TLS is `Disabled`.
    ApplyServiceMonitor(PodTls),
    /// Delete the ServiceMonitor after monitoring was turned off (absent is fine).
    DeleteServiceMonitor,
    /// Make the cluster's CA (`Managed` TLS; created once, never replaced).
    IssueCa,
    /// Issue the nodes' certificate (again), signed by the cluster's CA.
    IssueCertificate(Renewal),
    /// Publish the CA in the `<name>-ca-bundle` ConfigMap.
    ApplyCaBundle,
    /// Apply the StatefulSet with this layout, its nodes running this TLS.
    ApplyStatefulSet(NodeLayout, PodTls),
    /// Wait until the newest pod template reaches every pod.
    WaitForRollout { updated: u32, total: u32 },
    /// Wait until every node answers `/readyz`.
    WaitForNodes { ready: u32, total: u32 },
    /// Wait until some node reports a ring in which every shard has a leader.
    WaitForRing,
    /// The planning library waits (a membership change in flight, a node unhealthy).
    WaitForPlanner(String),
    /// A data-plane step an earlier pass started is still running: no other step starts
    /// and no pod is removed until it ends.
    WaitForStep(ringkv_plan::Step),
    /// One planner step for the nodes' admin API: always last, at most one per plan.
    Data(ringkv_plan::Step),
    /// The spec asks for something that cannot be done (or not safely now).
    Blocked(Blocked),
}

impl Step {
    /// A bounded label for `ringkv_operator_steps_total{step}`.
    pub fn name(&self) -> &'static str {
        match self {
            Step::ApplyPeerService => "apply_peer_service",
            Step::ApplyClientService => "apply_client_service",
            Step::ApplyDisruptionBudget => "apply_disruption_budget",
            Step::ApplyNetworkPolicy(_) => "apply_network_policy",
            Step::ApplyServiceMonitor(_) => "apply_service_monitor",
            Step::IssueCa => "issue_ca",
            Step::IssueCertificate(_) => "issue_certificate",
            Step::ApplyCaBundle => "apply_ca_bundle",
            Step::DeleteServiceMonitor => "delete_service_monitor",
            Step::ApplyStatefulSet(..) => "apply_statefulset",
            Step::WaitForRollout { .. } => "wait_for_rollout",
            Step::WaitForNodes { .. } => "wait_for_nodes",
            Step::WaitForRing => "wait_for_ring",
            Step::WaitForPlanner(_) => "wait_for_planner",
            Step::WaitForStep(_) => "wait_for_step",
            Step::Data(s) => data_step_name(s),
            Step::Blocked(_) => "blocked",
        }
    }

    /// Whether this step waits for the cluster to settle.
    pub fn is_wait(&self) -> bool {
        matches!(
            self,
            Step::WaitForRollout { .. }
                | Step::WaitForNodes { .. }
                | Step::WaitForRing
                | Step::WaitForPlanner(_)
                | Step::WaitForStep(_)
        )
    }
}

/// A bounded label for a planner step (metrics, event reasons are built from it).
pub fn data_step_name(step: &ringkv_plan::Step) -> &'static str {
    use ringkv_plan::Step as P;
    match step {
        P::Split { .. } => "split",
        P::Merge { .. } => "merge",
        P::AddReplica { .. } => "add_replica",
        P::RemoveReplica { .. } => "remove_replica",
        P::TransferLeader { .. } => "transfer_leader",
    }
}

/// A planner step in a few words, for status and events: `split shard 3 (4 → 8)`.
pub fn describe(step: &ringkv_plan::Step) -> String {
    use ringkv_plan::Step as P;
    match *step {
        P::Split { shard, modulus } => format!("split shard {shard} ({} → {modulus})", modulus / 2),
        P::Merge { receiver, donor } => {
            let m = donor.saturating_sub(receiver).saturating_mul(2);
            format!("merge shard {donor} into shard {receiver} ({m} → {})", m / 2)
        }
        P::AddReplica { shard, node } => format!("add a replica of shard {shard} on node {node}"),
        P::RemoveReplica { shard, node } => format!("remove the replica of shard {shard} from node {node}"),
        P::TransferLeader { shard, to } => format!("move the leader of shard {shard} to node {to}"),
    }
}

/// Comma-separated ids, for messages.
pub(crate) fn list<T: std::fmt::Display>(ids: impl IntoIterator<Item = T>) -> String {
    ids.into_iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
}

/// Nodes holding a voter or a learner of some shard.
pub(crate) fn holders(ring: &ringkv_plan::Observed) -> BTreeSet<u64> {
    ring.shards.values().flat_map(|s| s.voters.iter().chain(&s.learners).copied()).collect()
}
