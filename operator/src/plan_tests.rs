//! Table-driven tests of `plan`: each case is a spec, an observation and the steps
//! (as short strings) and operation the plan must produce.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::observe::{ClusterView, NodeProbe, ShardView, StatefulSetState};

fn spec(v: serde_json::Value) -> KVClusterSpec {
    serde_json::from_value(v).expect("test spec deserializes")
}

fn sts(replicas: u32, shards: u32) -> StatefulSetState {
    StatefulSetState {
        replicas,
        ready_replicas: replicas,
        updated_replicas: replicas,
        rollout_complete: true,
        shards: Some(shards),
    }
}

/// A view in which every one of `shard_count` shards has `members`, led when `led`.
fn view(node: u64, shard_count: u32, members: &[u64], led: bool) -> ClusterView {
    ClusterView {
        node_id: node,
        epoch: 1,
        shard_count,
        shards: (0..shard_count)
            .map(|id| ShardView {
                id,
                members: members.to_vec(),
                leader: led.then(|| members.first().copied()).flatten(),
                ..Default::default()
            })
            .collect(),
    }
}

/// Nodes 1..=n answering: ready ones (the first `ready`) report `members` as the ring.
fn nodes(n: u32, ready: u32, shard_count: u32, members: &[u64]) -> BTreeMap<u32, NodeProbe> {
    (1..=n)
        .map(|id| {
            let up = id <= ready;
            let probe = NodeProbe { ready: up, view: up.then(|| view(u64::from(id), shard_count, members, true)) };
            (id, probe)
        })
        .collect()
}

fn observed(statefulset: Option<StatefulSetState>, nodes: BTreeMap<u32, NodeProbe>, created: bool) -> Observed {
    Observed { generation: 2, status_generation: Some(2), created, previous: None, statefulset, nodes }
}

fn summary(step: &Step) -> String {
    match step {
        Step::ApplyStatefulSet(l) => format!("statefulset({} nodes, {} shards)", l.nodes, l.shards),
        Step::WaitForNodes { ready, total } => format!("wait_for_nodes({ready}/{total})"),
        Step::WaitForRollout { updated, total } => format!("wait_for_rollout({updated}/{total})"),
        Step::Blocked(b) => format!("blocked({})", b.reason),
        other => other.name().to_string(),
    }
}

const BASE: [&str; 3] = ["apply_peer_service", "apply_client_service", "apply_disruption_budget"];

struct Case {
    name: &'static str,
    spec: KVClusterSpec,
    observed: Observed,
    /// Steps after the three base applies (none at all when `paused`).
    then: &'static [&'static str],
    operation: Option<OperationKind>,
}

fn cases() -> Vec<Case> {
    let small = || spec(json!({"shards": 4, "replicationFactor": 3, "nodes": 3}));
    let healthy = || observed(Some(sts(3, 4)), nodes(3, 3, 4, &[1, 2, 3]), true);
    vec![
        Case {
            name: "a new cluster gets its StatefulSet with the spec's layout",
            spec: small(),
            observed: observed(None, BTreeMap::new(), false),
            then: &["statefulset(3 nodes, 4 shards)", "wait_for_nodes(0/3)"],
            operation: Some(OperationKind::Create),
        },
        Case {
            name: "a paused cluster gets no steps at all",
            spec: spec(json!({"paused": true})),
            observed: observed(None, BTreeMap::new(), false),
            then: &[],
            operation: None,
        },
        Case {
            name: "a healthy cluster re-applies its objects and waits for nothing",
            spec: small(),
            observed: healthy(),
            then: &["statefulset(3 nodes, 4 shards)"],
            operation: None,
        },
        Case {
            name: "pods still starting: wait for nodes and ring, operation Create",
            spec: small(),
            observed: observed(Some(sts(3, 4)), nodes(3, 1, 4, &[]), false),
            then: &["statefulset(3 nodes, 4 shards)", "wait_for_nodes(1/3)", "wait_for_ring"],
            operation: Some(OperationKind::Create),
        },
        Case {
            name: "a node down after bootstrap waits without calling it creation",
            spec: small(),
            observed: observed(Some(sts(3, 4)), nodes(3, 2, 4, &[1, 2, 3]), true),
            then: &["statefulset(3 nodes, 4 shards)", "wait_for_nodes(2/3)"],
            operation: None,
        },
        Case {
            name: "more shards is blocked and the nodes keep their shard count",
            spec: spec(json!({"shards": 8})),
            observed: healthy(),
            then: &["statefulset(3 nodes, 4 shards)", "blocked(ReshardingNotSupported)"],
            operation: None,
        },
        Case {
            name: "a shard change is blocked even before any node answers (the template knows)",
            spec: spec(json!({"shards": 16})),
            observed: observed(Some(sts(3, 4)), nodes(3, 0, 4, &[]), false),
            then: &[
                "statefulset(3 nodes, 4 shards)",
                "blocked(ReshardingNotSupported)",
                "wait_for_nodes(0/3)",
                "wait_for_ring",
            ],
            operation: Some(OperationKind::Create),
        },
        Case {
            name: "more nodes is blocked: new nodes would hold no replicas",
            spec: spec(json!({"nodes": 5})),
            observed: healthy(),
            then: &["statefulset(3 nodes, 4 shards)", "blocked(AddingNodesNotSupported)"],
            operation: None,
        },
        Case {
            name: "fewer nodes is blocked while the leaving nodes hold replicas",
            spec: spec(json!({"nodes": 3})),
            observed: observed(Some(sts(5, 4)), nodes(5, 5, 4, &[1, 2, 3, 4, 5]), true),
            then: &["statefulset(5 nodes, 4 shards)", "blocked(DrainNotSupported)", "blocked(PlacementNotSupported)"],
            operation: None,
        },
        Case {
            name: "fewer nodes shrinks the StatefulSet when the leaving nodes hold nothing",
            spec: spec(json!({"nodes": 3})),
            observed: observed(Some(sts(5, 4)), nodes(5, 5, 4, &[1, 2, 3]), true),
            then: &["statefulset(3 nodes, 4 shards)"],
            operation: Some(OperationKind::ScaleDown),
        },
        Case {
            name: "fewer nodes waits for proof when no node reports a formed ring",
            spec: spec(json!({"nodes": 3})),
            observed: observed(Some(sts(5, 4)), nodes(5, 0, 4, &[]), true),
            then: &["statefulset(5 nodes, 4 shards)", "blocked(RingUnknown)", "wait_for_nodes(0/5)", "wait_for_ring"],
            operation: None,
        },
        Case {
            name: "a ring with more replicas than replicationFactor is reported, not changed",
            spec: spec(json!({"nodes": 5, "replicationFactor": 3})),
            observed: observed(Some(sts(5, 4)), nodes(5, 5, 4, &[1, 2, 3, 4, 5]), true),
            then: &["statefulset(5 nodes, 4 shards)", "blocked(PlacementNotSupported)"],
            operation: None,
        },
        Case {
            name: "nodes without replicas are reported as needing a rebalance",
            spec: spec(json!({"nodes": 5, "replicationFactor": 3})),
            observed: observed(Some(sts(5, 4)), nodes(5, 5, 4, &[1, 2, 3]), true),
            then: &["statefulset(5 nodes, 4 shards)", "blocked(RebalancingNotSupported)"],
            operation: None,
        },
        Case {
            name: "an unfinished rollout is waited for and shown as the operation",
            spec: small(),
            observed: observed(
                Some(StatefulSetState { updated_replicas: 1, rollout_complete: false, ..sts(3, 4) }),
                nodes(3, 3, 4, &[1, 2, 3]),
                true,
            ),
            then: &["statefulset(3 nodes, 4 shards)", "wait_for_rollout(1/3)"],
            operation: Some(OperationKind::Rollout),
        },
        Case {
            name: "a created cluster whose StatefulSet vanished comes back with its old layout",
            spec: spec(json!({"shards": 8, "nodes": 3})),
            observed: Observed {
                previous: Some(NodeLayout { nodes: 3, shards: 4 }),
                ..observed(None, BTreeMap::new(), true)
            },
            then: &[
                "statefulset(3 nodes, 4 shards)",
                "blocked(ReshardingNotSupported)",
                "wait_for_nodes(0/3)",
                "wait_for_ring",
            ],
            operation: None,
        },
        Case {
            name: "monitoring on applies the ServiceMonitor",
            spec: spec(json!({"monitoring": {"serviceMonitor": {"enabled": true}}})),
            observed: healthy(),
            then: &["apply_service_monitor", "statefulset(3 nodes, 4 shards)"],
            operation: None,
        },
        Case {
            name: "monitoring off after a spec change deletes the ServiceMonitor",
            spec: small(),
            observed: Observed { status_generation: Some(1), ..healthy() },
            then: &["delete_service_monitor", "statefulset(3 nodes, 4 shards)"],
            operation: None,
        },
    ]
}

#[test]
fn plan_matches_every_case() {
    let mut failures = Vec::new();
    for case in cases() {
        let p = plan(&case.spec, &case.observed);
        let got: Vec<String> = p.steps.iter().map(summary).collect();
        let mut want: Vec<String> = if case.spec.paused { Vec::new() } else { BASE.iter().map(|s| s.to_string()).collect() };
        want.extend(case.then.iter().map(|s| s.to_string()));
        if got != want || p.operation.as_ref().map(|o| o.kind) != case.operation {
            failures.push(format!(
                "{}:\n  steps     {got:?}\n  expected  {want:?}\n  operation {:?}, expected {:?}",
                case.name,
                p.operation.map(|o| o.kind),
                case.operation
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn blocked_messages_say_what_is_unsupported_and_what_the_cluster_keeps() {
    let p = plan(&spec(json!({"shards": 8})), &observed(Some(sts(3, 4)), nodes(3, 3, 4, &[1, 2, 3]), true));
    let b = p.blocked().next().expect("blocked");
    assert!(b.message.starts_with("resharding is not supported yet"), "{}", b.message);
    assert!(b.message.contains("runs 4 shards") && b.message.contains("asks for 8"), "{}", b.message);

    let p = plan(&spec(json!({"nodes": 3})), &observed(Some(sts(5, 4)), nodes(5, 5, 4, &[1, 2, 3, 4, 5]), true));
    let b = p.blocked().next().expect("blocked");
    assert!(b.message.contains("removing nodes 4, 5"), "{}", b.message);
}

#[test]
fn the_ring_is_read_from_a_member_not_from_a_node_without_replicas() {
    // Node 3 holds nothing (uninitialised shards); nodes 1 and 2 are members.
    let mut n = nodes(3, 3, 4, &[1, 2]);
    if let Some(p) = n.get_mut(&3) {
        p.view = Some(view(3, 4, &[], false));
    }
    let o = observed(Some(sts(3, 4)), n, true);
    let ring = o.ring().expect("a ring");
    assert!(ring.formed() && ring.node_id != 3);
}
