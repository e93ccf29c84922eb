//! The status a reconcile writes: pure, from the old status, the observation and the plan.
//!
//! Conditions follow the Kubernetes conventions: each of `Ready`, `Progressing` and
//! `Degraded` is always present with its own `observedGeneration`, and its
//! `lastTransitionTime` moves only when its status flips. Given the same inputs the
//! result is identical, so the reconciler writes status only when something changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{BootstrapLayout, KVClusterSpec, KVClusterStatus, OperationStatus, Phase, StepInFlight, TlsStatus};
use crate::execute::DataOutcome;
use crate::inflight::Running;
use crate::observe::Observed;
use crate::plan::{describe, Blocked, Plan, Step};

/// Inputs of [`build`] besides the plan.
pub struct StatusInput<'a> {
    pub spec: &'a KVClusterSpec,
    pub old: Option<&'a KVClusterStatus>,
    pub observed: &'a Observed,
    /// What the executor found it could not do (e.g. a missing ServiceMonitor CRD, a
    /// planner step the driver refuses).
    pub exec_blocked: &'a [Blocked],
    /// The data-plane step this pass executed or saw end, and how it went.
    pub data: Option<&'a DataOutcome>,
    /// The data-plane step still running after this pass.
    pub in_flight: Option<&'a Running>,
    pub now: &'a Time,
}

fn condition(
    old: Option<&KVClusterStatus>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let previous = old.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// The new status.
pub fn build(input: &StatusInput<'_>, plan: &Plan) -> KVClusterStatus {
    let StatusInput { spec, old, observed, exec_blocked, data, in_flight, now } = *input;
    let generation = observed.generation;
    let view = observed.ring();
    let nodes = observed.statefulset.as_ref().map_or(0, |s| s.replicas);
    let ready_nodes =
        u32::try_from(observed.nodes.iter().filter(|(id, n)| **id <= nodes && n.ready).count()).unwrap_or(u32::MAX);
    let blocked: Vec<&Blocked> = plan.blocked().chain(exec_blocked.iter()).collect();
    let formed = view.filter(|v| v.formed());

    // Ready: every node answers /readyz and every shard has a leader.
    let (ready, ready_reason, ready_message) = match (&observed.statefulset, formed) {
        (None, _) => (false, "NotCreated", "the StatefulSet does not exist yet".to_string()),
        (Some(_), _) if ready_nodes < nodes || nodes == 0 => {
            (false, "NodesNotReady", format!("{ready_nodes} of {nodes} nodes ready"))
        }
        // The nodes answer /readyz before the kubelet's readiness probe has passed: until
        // Kubernetes counts the pods ready, the client Service routes to none or some of
        // them, so `kubectl wait --for=condition=Ready` must not return yet.
        (Some(s), _) if s.ready_replicas < nodes => (
            false,
            "PodsNotReady",
            format!(
                "{} of {nodes} pods Ready in Kubernetes (the client Service routes only to those)",
                s.ready_replicas
            ),
        ),
        (Some(_), None) => (false, "RingNotFormed", "no node reports a formed ring yet".to_string()),
        (Some(_), Some(r)) if !r.all_led() => {
            let leaderless: Vec<String> =
                r.shards.iter().filter(|s| s.leader.is_none()).map(|s| s.id.to_string()).collect();
            (false, "ShardsWithoutLeader", format!("shards {} have no leader", leaderless.join(", ")))
        }
        (Some(_), Some(r)) => (
            true,
            "AllNodesReady",
            format!("{ready_nodes} nodes ready, {} shards led, ring epoch {}", r.shard_count, r.epoch),
        ),
    };

    let waiting = plan.steps.iter().any(Step::is_wait);
    let (progressing, prog_reason, prog_message) = if spec.paused {
        let mut message = "spec.paused is true: the operator makes no changes".to_string();
        if let Some(r) = in_flight {
            message.push_str(&format!("; a step started before the pause is finishing: {}", describe(&r.step)));
        }
        (false, "Paused", message)
    } else if let Some(op) = &plan.operation {
        let message = match data {
            Some(DataOutcome::Failed(step, why)) => {
                format!("{}; retrying: {} failed: {why}", op.message, describe(step))
            }
            _ => op.message.clone(),
        };
        (true, op.kind.reason(), message)
    } else if waiting {
        (true, "WaitingForNodes", ready_message.clone())
    } else {
        (false, "Stable", "no change in progress".to_string())
    };

    let (degraded, deg_reason, deg_message) = match blocked.first() {
        Some(first) => {
            let all: Vec<&str> = blocked.iter().map(|b| b.message.as_str()).collect();
            (true, first.reason, all.join("; "))
        }
        None => (false, "AsSpecified", "nothing in the spec is blocked".to_string()),
    };

    let bootstrapped = observed.created || formed.is_some();
    let phase = if spec.paused {
        Phase::Paused
    } else if degraded {
        Phase::Degraded
    } else if let Some(op) = &plan.operation {
        op.kind.phase()
    } else if ready {
        Phase::Running
    } else if bootstrapped {
        Phase::NotReady
    } else {
        Phase::Creating
    };

    let old_current = old.and_then(|s| s.current_operation.as_ref());
    // A pause stops an operation, it does not finish it: it stays current (saying it is
    // paused) and resumes with its counts when the pause ends. Recording it as completed
    // ("Create … completed" with 0 of 5 nodes ready) was seen on a real cluster.
    let paused_operation = spec
        .paused
        .then(|| old_current.cloned())
        .flatten()
        .map(|o| OperationStatus { message: prog_message.clone(), ..o });
    let current_operation = if spec.paused {
        paused_operation
    } else {
        plan.operation.as_ref().map(|op| {
            let same = old_current.filter(|o| o.type_ == op.kind.as_str());
            let executed = match data {
                Some(DataOutcome::Done(step)) => Some(describe(step)),
                _ => None,
            };
            OperationStatus {
                type_: op.kind.as_str().to_string(),
                message: prog_message.clone(),
                done: op.done,
                total: op.total,
                steps: same.map_or(0, |o| o.steps) + u32::from(executed.is_some()),
                last_step: executed.or_else(|| same.and_then(|o| o.last_step.clone())),
                started_at: same.and_then(|o| o.started_at.clone()).or_else(|| Some(now.clone())),
                finished_at: None,
            }
        })
    };
    let last_operation = match (old_current, &current_operation) {
        (Some(o), None) => Some(finished(o, now)),
        (Some(o), Some(c)) if o.type_ != c.type_ => Some(finished(o, now)),
        _ => old.and_then(|s| s.last_operation.clone()),
    };

    KVClusterStatus {
        observed_generation: Some(generation),
        phase: Some(phase),
        conditions: vec![
            condition(old, "Ready", ready, ready_reason, ready_message, generation, now),
            condition(old, "Progressing", progressing, prog_reason, prog_message, generation, now),
            condition(old, "Degraded", degraded, deg_reason, deg_message, generation, now),
        ],
        // Only a formed ring has an epoch worth reporting (and marks the cluster bootstrapped).
        ring_epoch: formed.map(|v| v.epoch).or_else(|| old.and_then(|s| s.ring_epoch)),
        shards: view
            .map(|v| v.shard_count)
            .or_else(|| old.and_then(|s| s.shards))
            .or_else(|| observed.statefulset.as_ref().and_then(|s| s.shards)),
        // What the pod template carries, kept once known.
        bootstrap: observed
            .statefulset
            .as_ref()
            .and_then(|s| Some(BootstrapLayout { nodes: s.peers?, shards: s.shards? }))
            .or_else(|| old.and_then(|s| s.bootstrap)),
        nodes,
        ready_nodes,
        current_operation,
        last_operation,
        step_in_flight: in_flight.map(|r| StepInFlight { step: describe(&r.step), started_at: r.since.clone() }),
        tls: Some(TlsStatus {
            mode: plan.tls,
            serial: observed.tls.cert.as_ref().map(|c| c.serial.clone()),
            not_after: observed
                .tls
                .cert
                .as_ref()
                .and_then(|c| k8s_openapi::jiff::Timestamp::from_second(c.not_after).ok().map(Time)),
        }),
    }
}

fn finished(op: &OperationStatus, now: &Time) -> OperationStatus {
    OperationStatus { finished_at: Some(now.clone()), done: op.total, message: "completed".to_string(), ..op.clone() }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
