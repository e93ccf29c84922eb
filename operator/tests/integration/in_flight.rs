//! A slow data-plane step (a replica catching up) does not hold a reconcile pass: the
//! pass leaves it in flight and says so in status, later passes start nothing else and
//! remove no pod meanwhile, and the pass after it ends reports it. An operator restarted
//! meanwhile plans again from the ring.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use kube::runtime::controller::Action;
use ringkv_operator::crd::KVClusterStatus;
use ringkv_operator::inflight::{InFlight, Key};
use ringkv_operator::reconcile::REQUEUE_STEP;
use ringkv_operator::resources::{Names, NodeLayout};
use ringkv_plan::Step as P;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::reconcile::{
    apply, apply_services, condition, delete_absent_service_monitor, get_sts, patch_status, settled_status,
};
use crate::support::api::{Exchange, Reply};
use crate::support::{kvc, path, reconcile_by, statefulset_object, FakeDataPlane, Pass, NAME, NS, TEST_STEP_GRACE};

fn event() -> Exchange {
    Exchange::new(Method::POST, path::EVENTS, Reply::Echo)
}

/// One pass by the operator owning `in_flight`, over a cluster at `generation` whose
/// StatefulSet has `layout`: the standard calls, then `then`.
async fn pass_by(
    in_flight: &Arc<InFlight>,
    (spec, generation): (Value, i64),
    old: &KVClusterStatus,
    layout: NodeLayout,
    nodes: FakeDataPlane,
    then: Vec<Exchange>,
) -> Pass {
    let mut k = kvc(spec, generation);
    k.status = Some(old.clone());
    let mut script = vec![get_sts(Reply::Json(statefulset_object(&k, layout, layout.nodes, false)))];
    script.extend(apply_services());
    if old.observed_generation != Some(generation) {
        script.push(delete_absent_service_monitor());
    }
    script.push(apply(path::STS));
    script.extend(then);
    reconcile_by(in_flight, k, nodes, script).await
}

fn status(pass: &Pass) -> KVClusterStatus {
    serde_json::from_value(pass.body(&Method::PATCH, path::KVC_STATUS)["status"].clone()).expect("status")
}

/// Every shard of a 4-shard ring on `members`, as the nodes 1..=5 report it.
fn ring_on(members: &[u64]) -> FakeDataPlane {
    FakeDataPlane::nodes(5, 5, 4, members)
}

async fn until_finished(in_flight: &InFlight) {
    let key = Key::of(&Names::new(NAME, NS));
    tokio::time::timeout(Duration::from_secs(10), async {
        while !in_flight.has_finished(&key) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the released step ends");
}

#[tokio::test]
async fn a_slow_step_stays_in_flight_while_passes_go_on_and_a_later_pass_reports_it() {
    let operator = Arc::new(InFlight::new());
    let gate = Arc::new(Semaphore::new(0));
    let grown = NodeLayout { nodes: 5, shards: 4, peers: 3 };
    let settled = settled_status().await;

    // Pass 1: the planner adds a replica on new node 4; it does not end within the grace.
    let started = Instant::now();
    let nodes = ring_on(&[1, 2, 3]).gated(&gate);
    let executed = nodes.executed.clone();
    let p1 = pass_by(&operator, (json!({"nodes": 5}), 2), &settled, grown, nodes, vec![patch_status()]).await;
    assert!(started.elapsed() < TEST_STEP_GRACE + Duration::from_secs(3), "the pass does not wait for the step");
    assert_eq!(p1.action(), Action::requeue(REQUEUE_STEP), "looked at again soon");
    let s1 = status(&p1);
    let flight = s1.step_in_flight.clone().expect("status.stepInFlight");
    assert_eq!(flight.step, "add a replica of shard 0 on node 4");
    assert_eq!(flight.started_at, crate::support::fixed_now());
    let op = s1.current_operation.clone().expect("an operation");
    assert_eq!((op.type_.as_str(), op.steps), ("ScaleUp", 0), "not counted before it ends");
    let progressing = condition(p1.body(&Method::PATCH, path::KVC_STATUS), "Progressing")["message"].clone();
    assert!(
        progressing.as_str().is_some_and(|m| m.ends_with(": add a replica of shard 0 on node 4")),
        "{progressing:?}"
    );

    // Pass 2: the user shrinks back to 3 nodes meanwhile. The ring does not show node 4
    // yet, but the step may be making it a replica: no pod goes, no second step starts.
    let p2 = pass_by(&operator, (json!({"nodes": 3}), 3), &s1, grown, ring_on(&[1, 2, 3]), vec![patch_status()]).await;
    assert_eq!(p2.action(), Action::requeue(REQUEUE_STEP));
    assert_eq!(p2.body(&Method::PATCH, path::STS)["spec"]["replicas"], 5, "no pod removed while a step is in flight");
    assert!(p2.executed.is_empty(), "no second step: {:?}", p2.executed);
    let s2 = status(&p2);
    assert_eq!(s2.step_in_flight, Some(flight.clone()));
    let op = s2.current_operation.clone().expect("an operation");
    assert_eq!(op.type_, "ScaleDown");
    assert_eq!(op.message, "draining nodes 4, 5: add a replica of shard 0 on node 4 (in flight)");

    // The replica caught up. Pass 3 reports the step, and the ring it observes now shows
    // node 4 holding replicas: the StatefulSet still keeps it (it gets drained first).
    gate.add_permits(1);
    until_finished(&operator).await;
    assert_eq!(*executed.lock().expect("lock"), vec![P::AddReplica { shard: 0, node: 4 }]);
    let p3 =
        pass_by(&operator, (json!({"nodes": 3}), 3), &s2, grown, ring_on(&[1, 2, 3, 4]), vec![patch_status(), event()])
            .await;
    assert_eq!(p3.action(), Action::requeue(REQUEUE_STEP));
    assert_eq!(p3.body(&Method::PATCH, path::STS)["spec"]["replicas"], 5);
    assert!(p3.executed.is_empty(), "the next step waits for the next pass");
    let s3 = status(&p3);
    assert_eq!(s3.step_in_flight, None);
    let op = s3.current_operation.expect("an operation");
    assert_eq!((op.steps, op.last_step.as_deref()), (1, Some("add a replica of shard 0 on node 4")));
    let events: Vec<&Value> = p3.calls.iter().filter(|c| c.path == path::EVENTS).map(|c| &c.body).collect();
    assert_eq!(
        (&events[0]["reason"], &events[0]["action"]),
        (&json!("AddReplica"), &json!("add a replica of shard 0 on node 4"))
    );
    assert_eq!(p3.metrics.steps.with_label_values(&["wait_for_step"]).get(), 0, "nothing in flight any more");
    assert_eq!(p2.metrics.steps.with_label_values(&["wait_for_step"]).get(), 1);
}

#[tokio::test]
async fn a_restarted_operator_plans_again_instead_of_waiting_for_a_lost_step() {
    let grown = NodeLayout { nodes: 5, shards: 4, peers: 3 };
    let settled = settled_status().await;
    // The old operator started the step and died (its gate never opens).
    let gate = Arc::new(Semaphore::new(0));
    let old = Arc::new(InFlight::new());
    let p = pass_by(
        &old,
        (json!({"nodes": 5}), 2),
        &settled,
        grown,
        ring_on(&[1, 2, 3]).gated(&gate),
        vec![patch_status()],
    )
    .await;
    let left = status(&p);
    assert!(left.step_in_flight.is_some());

    // The new leader knows of no step: it observes the same ring and plans the same
    // (idempotent) step, which ends at once this time.
    let new = Arc::new(InFlight::new());
    let p =
        pass_by(&new, (json!({"nodes": 5}), 2), &left, grown, ring_on(&[1, 2, 3]), vec![patch_status(), event()]).await;
    assert_eq!(p.executed, vec![P::AddReplica { shard: 0, node: 4 }]);
    let s = status(&p);
    assert_eq!(s.step_in_flight, None, "the stale record is cleared");
    assert_eq!(s.current_operation.map(|o| o.steps), Some(1));
}

#[tokio::test]
async fn a_paused_cluster_still_picks_up_the_step_it_had_in_flight() {
    let operator = Arc::new(InFlight::new());
    let gate = Arc::new(Semaphore::new(0));
    let grown = NodeLayout { nodes: 5, shards: 4, peers: 3 };
    let settled = settled_status().await;
    let p = pass_by(
        &operator,
        (json!({"nodes": 5}), 2),
        &settled,
        grown,
        ring_on(&[1, 2, 3]).gated(&gate),
        vec![patch_status()],
    )
    .await;
    let s1 = status(&p);

    // Paused while the step runs: no applies, status says a step is finishing.
    let mut k = kvc(json!({"nodes": 5, "paused": true}), 3);
    k.status = Some(s1);
    let script = vec![get_sts(Reply::Json(statefulset_object(&k, grown, 5, false))), patch_status()];
    let p = reconcile_by(&operator, k, ring_on(&[1, 2, 3]), script).await;
    assert_eq!(p.action(), Action::requeue(REQUEUE_STEP), "its outcome is still picked up soon");
    let progressing = condition(p.body(&Method::PATCH, path::KVC_STATUS), "Progressing").clone();
    assert_eq!(progressing["reason"], "Paused");
    assert!(
        progressing["message"].as_str().is_some_and(|m| m.contains("finishing: add a replica of shard 0 on node 4")),
        "{progressing}"
    );
}

#[tokio::test]
async fn a_step_taken_by_a_pass_whose_status_patch_fails_is_reported_by_the_next_pass() {
    let operator = Arc::new(InFlight::new());
    let gate = Arc::new(Semaphore::new(0));
    let grown = NodeLayout { nodes: 5, shards: 4, peers: 3 };
    let settled = settled_status().await;
    let nodes = ring_on(&[1, 2, 3]).gated(&gate);
    let p1 = pass_by(&operator, (json!({"nodes": 5}), 2), &settled, grown, nodes, vec![patch_status()]).await;
    let s1 = status(&p1);
    assert!(s1.step_in_flight.is_some(), "the step outlives the pass");
    gate.add_permits(1);
    until_finished(&operator).await;

    // The pass that picks up the ended step cannot write its status (the API server errs).
    let failed_patch = Exchange::new(Method::PATCH, path::KVC_STATUS, Reply::Error(500));
    let p2 = pass_by(&operator, (json!({"nodes": 5}), 2), &s1, grown, ring_on(&[1, 2, 3, 4]), vec![failed_patch]).await;
    assert!(p2.result.is_err(), "the pass fails");
    assert!(!p2.calls.iter().any(|c| c.path == path::EVENTS), "no Event for a step whose status was not written");

    // The next pass reports it: status and Event, and starts nothing else meanwhile.
    let p3 =
        pass_by(&operator, (json!({"nodes": 5}), 2), &s1, grown, ring_on(&[1, 2, 3, 4]), vec![patch_status(), event()])
            .await;
    assert!(p3.executed.is_empty(), "the next step waits for the next pass");
    let op = status(&p3).current_operation.expect("an operation");
    assert_eq!((op.steps, op.last_step.as_deref()), (1, Some("add a replica of shard 0 on node 4")));
    let events: Vec<&Value> = p3.calls.iter().filter(|c| c.path == path::EVENTS).map(|c| &c.body).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], json!("AddReplica"));
}
