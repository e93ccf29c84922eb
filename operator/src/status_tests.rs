//! Status from (old status, observation, plan): conditions, phase, operations.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::observe::{NodeProbe, Ring, ShardInfo, StatefulSetState};
use crate::plan::plan;

/// The planner's view of the same ring: 4 shards on nodes 1..=3, leaders spread.
fn planner_ring() -> ringkv_plan::Observed {
    ringkv_plan::Observed {
        nodes: (1..=3).map(|n| (n, true)).collect(),
        shards: (0..4)
            .map(|id| {
                let voters = [1, 2, 3].into_iter().collect();
                (
                    id,
                    ringkv_plan::ShardState {
                        id,
                        modulus: 4,
                        voters,
                        learners: Default::default(),
                        leader: Some(u64::from(id % 3 + 1)),
                        frozen: false,
                        lost: Default::default(),
                    },
                )
            })
            .collect(),
    }
}

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).expect("valid timestamp"))
}

fn spec(v: serde_json::Value) -> KVClusterSpec {
    serde_json::from_value(v).expect("test spec deserializes")
}

fn ring(led: bool) -> Ring {
    Ring {
        node_id: 1,
        epoch: 1,
        shard_count: 4,
        shards: (0..4)
            .map(|id| ShardInfo { id, members: vec![1, 2, 3], leader: led.then_some(1), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

fn observed(ready: u32, generation: i64, old: Option<&KVClusterStatus>) -> Observed {
    let nodes: BTreeMap<u32, NodeProbe> =
        (1..=3).map(|id| (id, NodeProbe { ready: id <= ready, view: (id <= ready).then(|| ring(true)) })).collect();
    Observed {
        generation,
        status_generation: old.and_then(|s| s.observed_generation),
        created: crate::observe::was_created(old),
        previous: crate::observe::previous_layout(old),
        statefulset: Some(StatefulSetState {
            replicas: 3,
            ready_replicas: ready,
            updated_replicas: 3,
            rollout_complete: true,
            shards: Some(4),
            peers: Some(3),
            tls: Default::default(),
            tls_secret: None,
        }),
        tls: Default::default(),
        nodes,
        ring: Some(planner_ring()),
        operation: old.and_then(|s| s.current_operation.as_ref()).map(|o| o.type_.clone()),
        in_flight: None,
    }
}

fn status_for(spec: &KVClusterSpec, observed: &Observed, old: Option<&KVClusterStatus>, now: &Time) -> KVClusterStatus {
    status_with(spec, observed, old, None, now)
}

fn status_with(
    spec: &KVClusterSpec,
    observed: &Observed,
    old: Option<&KVClusterStatus>,
    data: Option<&DataOutcome>,
    now: &Time,
) -> KVClusterStatus {
    let p = plan(spec, observed);
    let blocked: Vec<Blocked> = data.and_then(DataOutcome::blocked).into_iter().collect();
    let input = StatusInput { spec, old, observed, exec_blocked: &blocked, data, in_flight: None, now };
    build(&input, &p)
}

fn cond<'a>(s: &'a KVClusterStatus, type_: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("condition {type_} present"))
}

#[test]
fn every_condition_carries_the_generation_it_describes() {
    let spec = spec(json!({}));
    let s = status_for(&spec, &observed(3, 7, None), None, &at(100));
    assert_eq!(s.observed_generation, Some(7));
    for t in ["Ready", "Progressing", "Degraded"] {
        assert_eq!(cond(&s, t).observed_generation, Some(7), "{t}");
    }
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(cond(&s, "Ready").reason, "AllNodesReady");
    assert_eq!(cond(&s, "Degraded").status, "False");
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!((s.nodes, s.ready_nodes, s.shards, s.ring_epoch), (3, 3, Some(4), Some(1)));
}

#[test]
fn creation_progresses_then_finishes_into_last_operation() {
    let spec = spec(json!({}));
    let starting = status_for(&spec, &observed(1, 1, None), None, &at(100));
    assert_eq!(starting.phase, Some(Phase::Creating));
    assert_eq!(cond(&starting, "Progressing").reason, "Creating");
    let op = starting.current_operation.as_ref().expect("an operation");
    assert_eq!((op.type_.as_str(), op.done, op.total), ("Create", 1, 3));
    assert_eq!(op.started_at, Some(at(100)));

    // Later, still starting: the start time is kept.
    let still = status_for(&spec, &observed(2, 1, Some(&starting)), Some(&starting), &at(110));
    assert_eq!(still.current_operation.as_ref().and_then(|o| o.started_at.clone()), Some(at(100)));

    let done = status_for(&spec, &observed(3, 1, Some(&still)), Some(&still), &at(120));
    assert_eq!(done.current_operation, None);
    let last = done.last_operation.as_ref().expect("the finished operation");
    assert_eq!((last.type_.as_str(), last.finished_at.clone()), ("Create", Some(at(120))));
    assert_eq!(done.phase, Some(Phase::Running));
}

#[test]
fn transition_time_moves_only_when_a_condition_flips() {
    let spec = spec(json!({}));
    let first = status_for(&spec, &observed(3, 1, None), None, &at(100));
    let same = status_for(&spec, &observed(3, 1, Some(&first)), Some(&first), &at(200));
    assert_eq!(same, first, "same inputs, same status: nothing to write");
    let down = status_for(&spec, &observed(2, 1, Some(&first)), Some(&first), &at(300));
    assert_eq!(cond(&down, "Ready").last_transition_time, at(300));
    assert_eq!(cond(&down, "Ready").message, "2 of 3 nodes ready");
    assert_eq!(cond(&down, "Degraded").last_transition_time, at(100));
    assert_eq!(down.phase, Some(Phase::NotReady));
}

#[test]
fn ready_waits_until_kubernetes_counts_the_pods_ready() {
    // Seen on a real cluster (tests/k8s/e2e.sh): every node answered /readyz to the
    // operator while the kubelet's readiness probes had not passed yet, so Ready turned
    // True with the StatefulSet at readyReplicas 0 and no endpoint behind the client Service.
    let spec = spec(json!({}));
    let mut o = observed(3, 1, None);
    if let Some(sts) = o.statefulset.as_mut() {
        sts.ready_replicas = 0;
    }
    let s = status_for(&spec, &o, None, &at(100));
    let ready = cond(&s, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "PodsNotReady"));
    assert_eq!(ready.message, "0 of 3 pods Ready in Kubernetes (the client Service routes only to those)");
    assert_eq!(s.ready_nodes, 3, "the nodes themselves answer /readyz");
    let later = status_for(&spec, &observed(3, 1, Some(&s)), Some(&s), &at(110));
    assert_eq!(cond(&later, "Ready").status, "True");
}

#[test]
fn a_reshard_in_progress_names_the_step_and_counts_the_steps_done() {
    let old = status_for(&spec(json!({})), &observed(3, 1, None), None, &at(100));
    assert_eq!(old.bootstrap, Some(BootstrapLayout { nodes: 3, shards: 4 }));
    let spec = spec(json!({"shards": 8}));
    let o = observed(3, 2, Some(&old));
    let split = plan(&spec, &o).data_step().cloned().expect("a split");
    let s = status_with(&spec, &o, Some(&old), Some(&DataOutcome::Done(split.clone())), &at(200));
    assert_eq!(s.phase, Some(Phase::Resharding));
    let p = cond(&s, "Progressing");
    assert_eq!((p.status.as_str(), p.reason.as_str()), ("True", "Resharding"));
    assert_eq!(p.message, "4 → 8 shards: split shard 0 (4 → 8)");
    let op = s.current_operation.as_ref().expect("an operation");
    assert_eq!((op.type_.as_str(), op.steps, op.done, op.total), ("Reshard", 1, 0, 8));
    assert_eq!(op.last_step.as_deref(), Some("split shard 0 (4 → 8)"));
    assert_eq!(cond(&s, "Degraded").status, "False");
    assert_eq!(cond(&s, "Ready").status, "True", "the store keeps serving");

    // The next pass: one more step, same start time.
    let o = observed(3, 2, Some(&s));
    let next = status_with(&spec, &o, Some(&s), Some(&DataOutcome::Done(split)), &at(210));
    let op2 = next.current_operation.as_ref().expect("an operation");
    assert_eq!((op2.steps, op2.started_at.clone()), (2, Some(at(200))));

    // A failed step is retried, and Progressing says so; nothing is counted.
    let failed = DataOutcome::Failed(ringkv_plan::Step::Split { shard: 0, modulus: 8 }, "node 1 did not answer".into());
    let f = status_with(&spec, &o, Some(&next), Some(&failed), &at(220));
    assert!(cond(&f, "Progressing").message.ends_with("retrying: split shard 0 (4 → 8) failed: node 1 did not answer"));
    assert_eq!(f.current_operation.as_ref().map(|o| o.steps), Some(2));
}

#[test]
fn a_step_the_driver_refuses_is_degraded_with_its_message() {
    let old = status_for(&spec(json!({})), &observed(3, 1, None), None, &at(100));
    let spec = spec(json!({"shards": 2}));
    let o = observed(3, 2, Some(&old));
    let merge = plan(&spec, &o).data_step().cloned().expect("a merge");
    let refused = DataOutcome::Blocked(merge, "merging is not supported by these nodes".into());
    let s = status_with(&spec, &o, Some(&old), Some(&refused), &at(200));
    let d = cond(&s, "Degraded");
    assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "StepBlocked"));
    assert!(d.message.contains("merge shard 3 into shard 1") && d.message.contains("not supported"), "{}", d.message);
    assert_eq!(d.observed_generation, Some(2));
    assert_eq!(s.phase, Some(Phase::Degraded));
    assert_eq!(s.shards, Some(4));
}

#[test]
fn paused_says_so_in_progressing() {
    let spec = spec(json!({"paused": true}));
    let s = status_for(&spec, &observed(3, 3, None), None, &at(100));
    let p = cond(&s, "Progressing");
    assert_eq!((p.status.as_str(), p.reason.as_str()), ("False", "Paused"));
    assert!(p.message.contains("spec.paused"));
    assert_eq!(s.phase, Some(Phase::Paused));
}

#[test]
fn a_pause_mid_operation_keeps_it_current_and_unfinished() {
    let creating = spec(json!({}));
    let starting = status_for(&creating, &observed(1, 1, None), None, &at(100));
    assert_eq!(starting.current_operation.as_ref().map(|o| o.type_.as_str()), Some("Create"));
    // Paused with 1 of 3 nodes ready: not "Create … completed".
    let paused = spec(json!({"paused": true}));
    let p = status_for(&paused, &observed(1, 2, Some(&starting)), Some(&starting), &at(110));
    assert_eq!(p.last_operation, None, "nothing finished");
    let op = p.current_operation.as_ref().expect("the operation stays current");
    assert_eq!((op.type_.as_str(), op.done, op.started_at.clone()), ("Create", 1, Some(at(100))));
    assert!(op.message.contains("spec.paused"), "{}", op.message);
    // Unpaused, it goes on and finishes as usual.
    let resumed = status_for(&creating, &observed(3, 3, Some(&p)), Some(&p), &at(120));
    let last = resumed.last_operation.as_ref().expect("finished now");
    assert_eq!(
        (last.type_.as_str(), last.started_at.clone(), last.finished_at.clone()),
        ("Create", Some(at(100)), Some(at(120)))
    );
}

#[test]
fn executor_findings_count_as_degraded() {
    let spec = spec(json!({"monitoring": {"serviceMonitor": {"enabled": true}}}));
    let o = observed(3, 1, None);
    let blocked = [Blocked { reason: "ServiceMonitorCRDMissing", message: "no CRD".to_string() }];
    let now = at(1);
    let input = StatusInput {
        spec: &spec,
        old: None,
        observed: &o,
        exec_blocked: &blocked,
        data: None,
        in_flight: None,
        now: &now,
    };
    let s = build(&input, &plan(&spec, &o));
    assert_eq!(cond(&s, "Degraded").reason, "ServiceMonitorCRDMissing");
}

#[test]
fn a_step_in_flight_is_recorded_and_a_pause_says_it_is_finishing() {
    let o = observed(3, 2, None);
    let running = crate::inflight::Running { step: ringkv_plan::Step::AddReplica { shard: 1, node: 3 }, since: at(5) };
    let now = at(10);
    for paused in [false, true] {
        let spec = spec(json!({ "paused": paused }));
        let input = StatusInput {
            spec: &spec,
            old: None,
            observed: &o,
            exec_blocked: &[],
            data: None,
            in_flight: Some(&running),
            now: &now,
        };
        let s = build(&input, &plan(&spec, &o));
        let flight = s.step_in_flight.clone().expect("stepInFlight");
        assert_eq!((flight.step.as_str(), flight.started_at), ("add a replica of shard 1 on node 3", at(5)));
        if paused {
            assert!(cond(&s, "Progressing").message.ends_with("finishing: add a replica of shard 1 on node 3"));
        }
    }
}
