//! Reconcile passes that drive the data plane: scaling up and down, resharding, and
//! what status and Events say about each step. The nodes are a fake data plane; the
//! Kubernetes API is scripted, so a StatefulSet shrink or an Event that should not
//! happen fails the test.

use http::Method;
use kube::runtime::controller::Action;
use ringkv_operator::crd::KVClusterStatus;
use ringkv_operator::reconcile::{REQUEUE_STEP, REQUEUE_WAITING};
use ringkv_operator::resources::NodeLayout;
use ringkv_plan::Step as P;
use serde_json::{json, Value};

use crate::reconcile::{
    apply, apply_services, condition, delete_absent_service_monitor, env, get_sts, patch_status, settled_status,
};
use crate::support::api::{Exchange, Reply};
use crate::support::{kvc, path, reconcile_once, statefulset_object, FakeDataPlane, Pass};

fn event() -> Exchange {
    Exchange::new(Method::POST, path::EVENTS, Reply::Echo)
}

/// One pass over a cluster at generation 2 whose StatefulSet has `layout`, with the
/// standard calls (after a spec change, the ServiceMonitor delete) and `then` after them.
async fn pass(
    spec: Value,
    old: Option<KVClusterStatus>,
    layout: NodeLayout,
    nodes: FakeDataPlane,
    then: Vec<Exchange>,
) -> Pass {
    let mut k = kvc(spec, 2);
    let spec_changed = old.as_ref().and_then(|s| s.observed_generation) != Some(2);
    k.status = old;
    let mut script = vec![get_sts(Reply::Json(statefulset_object(&k, layout, layout.nodes, false)))];
    script.extend(apply_services());
    if spec_changed {
        script.push(delete_absent_service_monitor());
    }
    script.push(apply(path::STS));
    script.extend(then);
    reconcile_once(k, nodes, script).await
}

fn events(pass: &Pass) -> Vec<&Value> {
    pass.calls.iter().filter(|c| c.path == path::EVENTS).map(|c| &c.body).collect()
}

fn status(pass: &Pass) -> &Value {
    pass.body(&Method::PATCH, path::KVC_STATUS)
}

#[tokio::test]
async fn scaling_up_grows_the_statefulset_without_touching_the_pod_template() {
    let old = settled_status().await;
    let p = pass(
        json!({"nodes": 5}),
        Some(old),
        NodeLayout::new(3, 4),
        FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]),
        vec![patch_status(), event()],
    )
    .await;
    assert_eq!(p.action(), Action::requeue(REQUEUE_WAITING));
    let sts = p.body(&Method::PATCH, path::STS);
    assert_eq!(sts["spec"]["replicas"], 5);
    let founders = env(&statefulset_object(&kvc(json!({}), 1), NodeLayout::new(3, 4), 3, false), "RINGKV_PEERS");
    assert_eq!(env(sts, "RINGKV_PEERS"), founders, "new pods join; existing pods keep their env and are not rolled");
    assert_eq!(env(sts, "RINGKV_SHARDS"), "4");
    assert!(p.executed.is_empty(), "no step before the new nodes are ready");

    let s = status(&p);
    assert_eq!(s["status"]["phase"], "Scaling");
    assert_eq!(s["status"]["currentOperation"]["type"], "ScaleUp");
    assert_eq!(
        s["status"]["currentOperation"]["message"],
        "adding nodes 4, 5: growing the StatefulSet from 3 to 5 pods"
    );
    assert_eq!(condition(s, "Progressing")["reason"], "ScalingUp");
    assert_eq!(condition(s, "Degraded")["status"], "False");
    let e = events(&p);
    assert_eq!((&e[0]["reason"], &e[0]["type"]), (&json!("ScalingUp"), &json!("Normal")));
    assert!(e[0]["note"].as_str().is_some_and(|n| n.starts_with("StatefulSet demo: 3 → 5 pods")), "{}", e[0]);
    assert_eq!(e[0]["regarding"]["kind"], "KVCluster");
}

#[tokio::test]
async fn new_nodes_once_ready_get_replicas_from_the_planner_one_step_per_pass() {
    let old = settled_status().await;
    let grown = NodeLayout { nodes: 5, shards: 4, peers: 3 };
    let p = pass(
        json!({"nodes": 5}),
        Some(old),
        grown,
        FakeDataPlane::nodes(5, 5, 4, &[1, 2, 3]),
        vec![patch_status(), event()],
    )
    .await;
    assert_eq!(p.action(), Action::requeue(REQUEUE_STEP));
    assert_eq!(p.executed, vec![P::AddReplica { shard: 0, node: 4 }]);
    assert_eq!(p.body(&Method::PATCH, path::STS)["spec"]["replicas"], 5);
    let op = &status(&p)["status"]["currentOperation"];
    assert_eq!(
        (&op["type"], &op["steps"], &op["lastStep"]),
        (&json!("ScaleUp"), &json!(1), &json!("add a replica of shard 0 on node 4"))
    );
    assert_eq!((&op["done"], &op["total"]), (&json!(3), &json!(5)), "3 of 5 nodes hold replicas");
    let e = events(&p);
    assert_eq!(e.len(), 1);
    assert_eq!(
        (&e[0]["reason"], &e[0]["action"]),
        (&json!("AddReplica"), &json!("add a replica of shard 0 on node 4"))
    );
    assert_eq!(p.metrics.steps.with_label_values(&["add_replica"]).get(), 1);
}

#[tokio::test]
async fn scaling_down_drains_first_and_shrinks_the_statefulset_only_after() {
    let old = settled_status().await;
    // Nodes 4 and 5 still hold replicas: the StatefulSet keeps 5 pods, the planner drains.
    let five = NodeLayout::new(5, 4);
    let p = pass(
        json!({"nodes": 3}),
        Some(old),
        five,
        FakeDataPlane::nodes(5, 5, 4, &[3, 4, 5]),
        vec![patch_status(), event()],
    )
    .await;
    assert_eq!(p.body(&Method::PATCH, path::STS)["spec"]["replicas"], 5, "no pod goes while it holds a replica");
    assert_eq!(p.executed, vec![P::AddReplica { shard: 0, node: 1 }]);
    let s = status(&p);
    assert_eq!(s["status"]["currentOperation"]["type"], "ScaleDown");
    assert_eq!(s["status"]["currentOperation"]["message"], "draining nodes 4, 5: add a replica of shard 0 on node 1");
    assert_eq!(
        (&s["status"]["currentOperation"]["done"], &s["status"]["currentOperation"]["total"]),
        (&json!(0), &json!(2))
    );
    let drained: KVClusterStatus = serde_json::from_value(s["status"].clone()).expect("status");

    // Drained: nodes 4 and 5 hold nothing. Now, and only now, the StatefulSet shrinks.
    let p = pass(
        json!({"nodes": 3}),
        Some(drained),
        five,
        FakeDataPlane::nodes(5, 5, 4, &[1, 2, 3]),
        vec![patch_status(), event()],
    )
    .await;
    let sts = p.body(&Method::PATCH, path::STS);
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(env(sts, "RINGKV_PEERS").as_str().map(|v| v.split(',').count()), Some(5), "the template is not rolled");
    assert!(p.executed.is_empty());
    let s = status(&p);
    assert_eq!(s["status"]["currentOperation"]["type"], "ScaleDown");
    assert_eq!(s["status"]["currentOperation"]["steps"], 1, "the drain step counted");
    let e = events(&p);
    assert_eq!(e[0]["reason"], "ScalingDown");
    assert!(e[0]["note"].as_str().is_some_and(|n| n.contains("nodes 4, 5 hold no replica")), "{}", e[0]);
}

#[tokio::test]
async fn a_reshard_in_progress_splits_and_says_so_in_status_and_an_event() {
    let old = settled_status().await;
    let p = pass(
        json!({"shards": 8}),
        Some(old),
        NodeLayout::new(3, 4),
        FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]),
        vec![patch_status(), event()],
    )
    .await;
    assert_eq!(p.action(), Action::requeue(REQUEUE_STEP));
    assert_eq!(p.executed, vec![P::Split { shard: 0, modulus: 8 }]);
    assert_eq!(env(p.body(&Method::PATCH, path::STS), "RINGKV_SHARDS"), "4", "the bootstrap shard count stays");
    let s = status(&p);
    assert_eq!(s["status"]["phase"], "Resharding");
    let progressing = condition(s, "Progressing");
    assert_eq!((&progressing["status"], &progressing["reason"]), (&json!("True"), &json!("Resharding")));
    assert_eq!(progressing["message"], "4 → 8 shards: split shard 0 (4 → 8)");
    assert_eq!(progressing["observedGeneration"], 2);
    let op = &s["status"]["currentOperation"];
    assert_eq!(
        (&op["type"], &op["steps"], &op["lastStep"]),
        (&json!("Reshard"), &json!(1), &json!("split shard 0 (4 → 8)"))
    );
    assert_eq!(condition(s, "Degraded")["status"], "False");
    assert_eq!(condition(s, "Ready")["status"], "True", "the store keeps serving");
    let e = events(&p);
    assert_eq!((&e[0]["reason"], &e[0]["type"]), (&json!("SplitShard"), &json!("Normal")));
    assert!(e[0]["note"].as_str().is_some_and(|n| n.contains("split shard 0")), "{}", e[0]);
    assert_eq!(e[0]["reportingController"], "ringkv-operator");
}

#[tokio::test]
async fn halving_merges_through_the_driver() {
    let old = settled_status().await;
    let p = pass(
        json!({"shards": 2}),
        Some(old),
        NodeLayout::new(3, 4),
        FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]),
        vec![patch_status(), event()],
    )
    .await;
    assert_eq!(p.action(), Action::requeue(REQUEUE_STEP));
    assert_eq!(p.executed, vec![P::Merge { receiver: 1, donor: 3 }]);
    let s = status(&p);
    assert_eq!(condition(s, "Progressing")["message"], "4 → 2 shards: merge shard 3 into shard 1 (4 → 2)");
    assert_eq!(s["status"]["currentOperation"]["type"], "Reshard");
    assert_eq!(events(&p)[0]["reason"], "MergeShards");
}

#[tokio::test]
async fn a_step_the_driver_refuses_is_degraded_with_its_message_not_a_failure() {
    let old = settled_status().await;
    let nodes = FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]).refusing("merging is not supported by these nodes");
    let p = pass(json!({"shards": 2}), Some(old), NodeLayout::new(3, 4), nodes, vec![patch_status(), event()]).await;
    p.action();
    assert!(p.executed.is_empty());
    let s = status(&p);
    let degraded = condition(s, "Degraded");
    assert_eq!((&degraded["status"], &degraded["reason"]), (&json!("True"), &json!("StepBlocked")));
    assert!(
        degraded["message"]
            .as_str()
            .is_some_and(|m| m.contains("merge shard 3 into shard 1") && m.contains("not supported")),
        "{degraded}"
    );
    assert_eq!(s["status"]["phase"], "Degraded");
    let e = events(&p);
    assert_eq!((&e[0]["reason"], &e[0]["type"]), (&json!("StepBlocked"), &json!("Warning")));
}

#[tokio::test]
async fn a_failed_step_is_retried_by_the_next_pass_and_reported() {
    let old = settled_status().await;
    let nodes =
        FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]).failing("demo-1.demo-peers.prod.svc:8180: connection refused");
    let p = pass(json!({"shards": 8}), Some(old), NodeLayout::new(3, 4), nodes, vec![patch_status(), event()]).await;
    assert_eq!(p.action(), Action::requeue(REQUEUE_STEP), "not an error: the next pass plans again");
    let s = status(&p);
    let message = condition(s, "Progressing")["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.contains("retrying: split shard 0 (4 → 8) failed") && message.contains("connection refused"),
        "{message}"
    );
    assert_eq!(condition(s, "Degraded")["status"], "False");
    assert_eq!(s["status"]["currentOperation"]["steps"], 0);
    assert_eq!((&events(&p)[0]["reason"], &events(&p)[0]["type"]), (&json!("StepFailed"), &json!("Warning")));
}
