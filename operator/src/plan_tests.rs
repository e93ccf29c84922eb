//! Table-driven tests of `plan`: each case is a spec, an observation and the steps
//! (as short strings) and operation the plan must produce.

use std::collections::BTreeMap;

use ringkv_plan::ShardState;
use serde_json::json;

use super::*;
use crate::crd::TlsMode;
use crate::observe::{NodeProbe, Ring, ShardInfo, StatefulSetState, TlsObserved};
use crate::resources::tls::Renewal;
use crate::resources::PodTls;

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
        peers: Some(replicas),
        tls: TlsMode::Disabled,
        tls_secret: None,
    }
}

/// The leader of `shard` among `members`: rotating, so leaders are balanced.
fn leader(shard: u32, members: &[u64]) -> Option<u64> {
    (!members.is_empty()).then(|| members[shard as usize % members.len()])
}

/// A client view in which every one of `shard_count` shards has `members`, led when `led`.
fn view(node: u64, shard_count: u32, members: &[u64], led: bool) -> Ring {
    Ring {
        node_id: node,
        epoch: 1,
        shard_count,
        shards: (0..shard_count)
            .map(|id| ShardInfo {
                id,
                members: members.to_vec(),
                leader: leader(id, members).filter(|_| led),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
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

/// The planner's ring: `shards` shards of modulus `shards` on `members`, nodes
/// `1..=healthy` healthy.
fn ring(healthy: u32, shards: u32, members: &[u64]) -> ringkv_plan::Observed {
    ringkv_plan::Observed {
        nodes: (1..=u64::from(healthy)).map(|n| (n, true)).collect(),
        shards: (0..shards)
            .map(|id| {
                let state = ShardState {
                    id,
                    modulus: shards,
                    voters: members.iter().copied().collect(),
                    learners: Default::default(),
                    leader: leader(id, members),
                    frozen: false,
                    lost: Default::default(),
                };
                (id, state)
            })
            .collect(),
    }
}

fn observed(statefulset: Option<StatefulSetState>, nodes: BTreeMap<u32, NodeProbe>, created: bool) -> Observed {
    Observed { generation: 2, status_generation: Some(2), created, statefulset, nodes, ..Default::default() }
}

/// `n` nodes, all ready, `shards` shards on `members`, as seen by probes and the driver.
fn running(n: u32, shards: u32, members: &[u64]) -> Observed {
    Observed {
        ring: Some(ring(n, shards, members)),
        ..observed(Some(sts(n, shards)), nodes(n, n, shards, members), true)
    }
}

fn summary(step: &Step) -> String {
    match step {
        Step::ApplyStatefulSet(l, PodTls::Disabled) => {
            format!("statefulset({} nodes, {} shards, {} peers)", l.nodes, l.shards, l.peers)
        }
        Step::ApplyStatefulSet(l, PodTls::Provided(secret)) => {
            format!("statefulset({} nodes, {} shards, {} peers, Provided {secret})", l.nodes, l.shards, l.peers)
        }
        Step::ApplyStatefulSet(l, tls) => {
            format!("statefulset({} nodes, {} shards, {} peers, {})", l.nodes, l.shards, l.peers, tls.mode().as_str())
        }
        Step::IssueCertificate(why) => format!("issue_certificate({why:?})"),
        Step::WaitForNodes { ready, total } => format!("wait_for_nodes({ready}/{total})"),
        Step::WaitForRollout { updated, total } => format!("wait_for_rollout({updated}/{total})"),
        Step::Blocked(b) => format!("blocked({})", b.reason),
        Step::Data(d) => format!("data({})", describe(d)),
        Step::WaitForStep(d) => format!("wait_for_step({})", describe(d)),
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
    let healthy = || running(3, 4, &[1, 2, 3]);
    vec![
        Case {
            name: "a new cluster gets its StatefulSet with the spec's layout",
            spec: small(),
            observed: observed(None, BTreeMap::new(), false),
            then: &[
                "issue_ca",
                "issue_certificate(Missing)",
                "apply_ca_bundle",
                "statefulset(3 nodes, 4 shards, 3 peers, Managed)",
                "wait_for_nodes(0/3)",
            ],
            operation: Some(OperationKind::Create),
        },
        Case {
            name: "a new cluster asking for no TLS gets none",
            spec: spec(json!({"tls": {"mode": "Disabled"}})),
            observed: observed(None, BTreeMap::new(), false),
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "wait_for_nodes(0/3)"],
            operation: Some(OperationKind::Create),
        },
        Case {
            name: "a running plain cluster stays plain: asking it for TLS is reported, not applied",
            spec: spec(json!({"tls": {"mode": "Managed"}})),
            observed: healthy(),
            then: &["blocked(TLSModeFixed)", "statefulset(3 nodes, 4 shards, 3 peers)"],
            operation: None,
        },
        Case {
            name: "a running plain cluster with no word on TLS (made before TLS existed) gets no certificate",
            spec: small(),
            observed: healthy(),
            then: &["statefulset(3 nodes, 4 shards, 3 peers)"],
            operation: None,
        },
        Case {
            name: "a managed cluster with a good certificate only republishes its CA",
            spec: small(),
            observed: Observed {
                statefulset: Some(StatefulSetState { tls: TlsMode::Managed, ..sts(3, 4) }),
                tls: TlsObserved { ca: true, ..Default::default() },
                ..healthy()
            },
            then: &["apply_ca_bundle", "statefulset(3 nodes, 4 shards, 3 peers, Managed)"],
            operation: None,
        },
        Case {
            name: "a managed cluster's certificate due for renewal is issued again, pods untouched",
            spec: small(),
            observed: Observed {
                statefulset: Some(StatefulSetState { tls: TlsMode::Managed, ..sts(3, 4) }),
                tls: TlsObserved { ca: true, renewal: Some(Renewal::Expiring), ..Default::default() },
                ..healthy()
            },
            then: &[
                "issue_certificate(Expiring)",
                "apply_ca_bundle",
                "statefulset(3 nodes, 4 shards, 3 peers, Managed)",
            ],
            operation: None,
        },
        Case {
            name: "a managed cluster asked to go plain stays managed",
            spec: spec(json!({"tls": {"mode": "Disabled"}})),
            observed: Observed {
                statefulset: Some(StatefulSetState { tls: TlsMode::Managed, ..sts(3, 4) }),
                tls: TlsObserved { ca: true, ..Default::default() },
                ..healthy()
            },
            then: &["blocked(TLSModeFixed)", "apply_ca_bundle", "statefulset(3 nodes, 4 shards, 3 peers, Managed)"],
            operation: None,
        },
        Case {
            name: "provided TLS without its Secret is reported",
            spec: spec(json!({"tls": {"mode": "Provided", "secretName": "mine", "operatorSecretName": "op"}})),
            observed: Observed {
                statefulset: Some(StatefulSetState { tls: TlsMode::Provided, ..sts(3, 4) }),
                tls: TlsObserved { missing: Some("the Secret mine does not exist".to_string()), ..Default::default() },
                ..healthy()
            },
            then: &["blocked(TLSSecretMissing)", "statefulset(3 nodes, 4 shards, 3 peers, Provided mine)"],
            operation: None,
        },
        Case {
            name: "a paused managed cluster still gets its certificate renewed when due, and nothing else",
            spec: spec(json!({"paused": true, "shards": 8})),
            observed: Observed {
                statefulset: Some(StatefulSetState { tls: TlsMode::Managed, ..sts(3, 4) }),
                tls: TlsObserved { ca: true, renewal: Some(Renewal::Expiring), ..Default::default() },
                ..healthy()
            },
            then: &["issue_certificate(Expiring)"],
            operation: None,
        },
        Case {
            name: "a CA Secret without a usable CA is reported, never replaced",
            spec: small(),
            observed: Observed {
                statefulset: Some(StatefulSetState { tls: TlsMode::Managed, ..sts(3, 4) }),
                tls: TlsObserved { ca_unusable: Some("no ca.key".to_string()), ..Default::default() },
                ..healthy()
            },
            then: &["blocked(TLSCAUnusable)", "statefulset(3 nodes, 4 shards, 3 peers, Managed)"],
            operation: None,
        },
        Case {
            name: "provided TLS whose spec.tls was removed keeps the Secret the pods mount, and says so",
            spec: small(),
            observed: Observed {
                statefulset: Some(StatefulSetState {
                    tls: TlsMode::Provided,
                    tls_secret: Some("theirs".to_string()),
                    ..sts(3, 4)
                }),
                ..healthy()
            },
            then: &["blocked(TLSModeFixed)", "statefulset(3 nodes, 4 shards, 3 peers, Provided theirs)"],
            operation: None,
        },
        Case {
            name: "provided TLS moved to another Secret mounts the new one",
            spec: spec(json!({"tls": {"mode": "Provided", "secretName": "new", "operatorSecretName": "op"}})),
            observed: Observed {
                statefulset: Some(StatefulSetState {
                    tls: TlsMode::Provided,
                    tls_secret: Some("old".to_string()),
                    ..sts(3, 4)
                }),
                ..healthy()
            },
            then: &["statefulset(3 nodes, 4 shards, 3 peers, Provided new)"],
            operation: None,
        },
        Case {
            name: "a managed cluster whose StatefulSet vanished comes back managed (status recorded it)",
            spec: small(),
            observed: Observed {
                previous: Some(NodeLayout { nodes: 3, shards: 4, peers: 3 }),
                tls: TlsObserved { recorded: Some(TlsMode::Managed), ca: true, ..Default::default() },
                ..observed(None, BTreeMap::new(), true)
            },
            then: &[
                "apply_ca_bundle",
                "statefulset(3 nodes, 4 shards, 3 peers, Managed)",
                "wait_for_nodes(0/3)",
                "wait_for_ring",
            ],
            operation: None,
        },
        Case {
            name: "pods that never ran take a changed layout at once (a scale-down waited for ever)",
            spec: small(),
            observed: observed(
                Some(StatefulSetState { ready_replicas: 0, updated_replicas: 0, ..sts(5, 4) }),
                (1..=5).map(|id| (id, NodeProbe { ready: false, view: None })).collect(),
                false,
            ),
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "wait_for_nodes(0/3)"],
            operation: Some(OperationKind::Create),
        },
        Case {
            name: "the StatefulSet's status lagging behind a shrink is no Rollout (it replaced the ScaleDown record)",
            spec: small(),
            observed: Observed {
                statefulset: Some(StatefulSetState { rollout_complete: false, updated_replicas: 5, ..sts(3, 4) }),
                operation: Some("ScaleDown".to_string()),
                ..healthy()
            },
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "wait_for_rollout(5/3)"],
            operation: None,
        },
        Case {
            name: "a paused cluster gets no steps at all",
            spec: spec(json!({"paused": true, "shards": 8})),
            observed: healthy(),
            then: &[],
            operation: None,
        },
        Case {
            name: "a balanced cluster re-applies its objects and plans nothing",
            spec: small(),
            observed: healthy(),
            then: &["statefulset(3 nodes, 4 shards, 3 peers)"],
            operation: None,
        },
        Case {
            name: "pods still starting: wait for nodes and ring, operation Create",
            spec: small(),
            observed: observed(Some(sts(3, 4)), nodes(3, 1, 4, &[]), false),
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "wait_for_nodes(1/3)", "wait_for_ring"],
            operation: Some(OperationKind::Create),
        },
        Case {
            name: "a node down after bootstrap waits without calling it creation, and plans nothing",
            spec: spec(json!({"shards": 8})),
            observed: Observed { nodes: nodes(3, 2, 4, &[1, 2, 3]), ..healthy() },
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "wait_for_nodes(2/3)"],
            operation: Some(OperationKind::Reshard),
        },
        Case {
            name: "more shards: the planner splits, the template keeps the bootstrap shard count",
            spec: spec(json!({"shards": 8})),
            observed: healthy(),
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "data(split shard 0 (4 → 8))"],
            operation: Some(OperationKind::Reshard),
        },
        Case {
            name: "halving: the planner merges the top half into the bottom",
            spec: spec(json!({"shards": 2})),
            observed: healthy(),
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "data(merge shard 3 into shard 1 (4 → 2))"],
            operation: Some(OperationKind::Reshard),
        },
        Case {
            name: "more nodes: the StatefulSet grows at once, the founding peers stay, then wait for the pods",
            spec: spec(json!({"nodes": 5})),
            observed: healthy(),
            then: &["statefulset(5 nodes, 4 shards, 3 peers)", "wait_for_nodes(3/5)"],
            operation: Some(OperationKind::ScaleUp),
        },
        Case {
            name: "new nodes ready and empty: the planner moves replicas onto them",
            spec: spec(json!({"nodes": 5})),
            observed: Observed {
                statefulset: Some(StatefulSetState { peers: Some(3), ..sts(5, 4) }),
                ..running(5, 4, &[1, 2, 3])
            },
            then: &["statefulset(5 nodes, 4 shards, 3 peers)", "data(add a replica of shard 0 on node 4)"],
            operation: Some(OperationKind::ScaleUp),
        },
        Case {
            name: "fewer nodes: the leaving nodes are drained while the StatefulSet keeps them",
            spec: spec(json!({"nodes": 3})),
            observed: running(5, 4, &[3, 4, 5]),
            then: &["statefulset(5 nodes, 4 shards, 5 peers)", "data(add a replica of shard 0 on node 1)"],
            operation: Some(OperationKind::ScaleDown),
        },
        Case {
            name: "fewer nodes: a learner on a leaving node still counts as held",
            spec: spec(json!({"nodes": 3})),
            observed: {
                let mut o = running(5, 4, &[1, 2, 3]);
                if let Some(s) = o.ring.as_mut().and_then(|r| r.shards.get_mut(&2)) {
                    s.learners.insert(5);
                }
                o
            },
            then: &["statefulset(5 nodes, 4 shards, 5 peers)", "data(remove the replica of shard 2 from node 5)"],
            operation: Some(OperationKind::ScaleDown),
        },
        Case {
            name: "fewer nodes shrinks the StatefulSet once the leaving nodes hold nothing",
            spec: spec(json!({"nodes": 3})),
            observed: running(5, 4, &[1, 2, 3]),
            then: &["statefulset(3 nodes, 4 shards, 5 peers)"],
            operation: Some(OperationKind::ScaleDown),
        },
        Case {
            name: "fewer nodes keeps the pods while a shard goes unseen (its holders did not answer)",
            spec: spec(json!({"nodes": 3})),
            observed: {
                let mut o = running(5, 4, &[1, 2, 3]);
                if let Some(r) = o.ring.as_mut() {
                    r.shards.remove(&3);
                }
                o
            },
            then: &["statefulset(5 nodes, 4 shards, 5 peers)", "blocked(PlanBlocked)"],
            operation: Some(OperationKind::ScaleDown),
        },
        Case {
            name: "fewer nodes keeps the pods while a shard's membership is not its leader's",
            spec: spec(json!({"nodes": 3})),
            observed: {
                let mut o = running(5, 4, &[1, 2, 3]);
                if let Some(s) = o.ring.as_mut().and_then(|r| r.shards.get_mut(&0)) {
                    s.leader = None;
                }
                o
            },
            then: &["statefulset(5 nodes, 4 shards, 5 peers)", "wait_for_planner"],
            operation: Some(OperationKind::ScaleDown),
        },
        Case {
            name: "a step in flight: nothing else is planned while it runs",
            spec: spec(json!({"shards": 8})),
            observed: Observed { in_flight: Some(ringkv_plan::Step::Split { shard: 0, modulus: 8 }), ..healthy() },
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "wait_for_step(split shard 0 (4 → 8))"],
            operation: Some(OperationKind::Reshard),
        },
        Case {
            name: "fewer nodes keeps the pods while a step is in flight, though the ring shows them empty",
            spec: spec(json!({"nodes": 3})),
            observed: Observed {
                in_flight: Some(ringkv_plan::Step::AddReplica { shard: 0, node: 4 }),
                ..running(5, 4, &[1, 2, 3])
            },
            then: &["statefulset(5 nodes, 4 shards, 5 peers)", "wait_for_step(add a replica of shard 0 on node 4)"],
            operation: Some(OperationKind::ScaleDown),
        },
        Case {
            name: "scale up, second pass: the grown StatefulSet's new pods are waited for",
            spec: spec(json!({"nodes": 5})),
            observed: Observed {
                statefulset: Some(StatefulSetState { peers: Some(3), ..sts(5, 4) }),
                nodes: nodes(5, 3, 4, &[1, 2, 3]),
                operation: Some("ScaleUp".to_string()),
                ..running(3, 4, &[1, 2, 3])
            },
            then: &["statefulset(5 nodes, 4 shards, 3 peers)", "wait_for_nodes(3/5)"],
            operation: Some(OperationKind::ScaleUp),
        },
        Case {
            name: "fewer nodes waits for proof when no node reports the ring",
            spec: spec(json!({"nodes": 3})),
            observed: observed(Some(sts(5, 4)), nodes(5, 0, 4, &[]), true),
            then: &["statefulset(5 nodes, 4 shards, 5 peers)", "wait_for_nodes(0/5)", "wait_for_ring"],
            operation: Some(OperationKind::ScaleDown),
        },
        Case {
            name: "a lower replicationFactor goes through the planner",
            spec: spec(json!({"nodes": 3, "replicationFactor": 1})),
            observed: healthy(),
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "data(remove the replica of shard 0 from node 3)"],
            operation: Some(OperationKind::Rebalance),
        },
        Case {
            name: "the planner waits for a shard without a leader",
            spec: small(),
            observed: {
                let mut o = healthy();
                if let Some(s) = o.ring.as_mut().and_then(|r| r.shards.get_mut(&1)) {
                    s.leader = None;
                }
                o
            },
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "wait_for_planner"],
            operation: Some(OperationKind::Rebalance),
        },
        Case {
            name: "a ring that is not a partition is blocked, for a human",
            spec: small(),
            observed: {
                let mut o = healthy();
                if let Some(r) = o.ring.as_mut() {
                    r.shards.remove(&3);
                }
                o
            },
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "blocked(PlanBlocked)"],
            operation: Some(OperationKind::Reshard),
        },
        Case {
            name: "nodes ready but none answers on its internal port: blocked with what to check",
            spec: small(),
            observed: Observed { ring: None, ..healthy() },
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "blocked(InternalPortUnreachable)"],
            operation: None,
        },
        Case {
            name: "an unfinished rollout is waited for and shown as the operation",
            spec: small(),
            observed: Observed {
                statefulset: Some(StatefulSetState { updated_replicas: 1, rollout_complete: false, ..sts(3, 4) }),
                ..healthy()
            },
            then: &["statefulset(3 nodes, 4 shards, 3 peers)", "wait_for_rollout(1/3)"],
            operation: Some(OperationKind::Rollout),
        },
        Case {
            name: "a created cluster whose StatefulSet vanished comes back with its bootstrap layout",
            spec: spec(json!({"shards": 8, "nodes": 4})),
            observed: Observed {
                previous: Some(NodeLayout { nodes: 4, shards: 4, peers: 3 }),
                ..observed(None, BTreeMap::new(), true)
            },
            then: &["statefulset(4 nodes, 4 shards, 3 peers)", "wait_for_nodes(0/4)", "wait_for_ring"],
            operation: None,
        },
        Case {
            name: "monitoring on applies the ServiceMonitor",
            spec: spec(json!({"monitoring": {"serviceMonitor": {"enabled": true}}})),
            observed: healthy(),
            then: &["apply_service_monitor", "statefulset(3 nodes, 4 shards, 3 peers)"],
            operation: None,
        },
        Case {
            name: "monitoring off after a spec change deletes the ServiceMonitor",
            spec: small(),
            observed: Observed { status_generation: Some(1), ..healthy() },
            then: &["delete_service_monitor", "statefulset(3 nodes, 4 shards, 3 peers)"],
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
        let mut want: Vec<String> =
            if case.spec.paused { Vec::new() } else { BASE.iter().map(|s| s.to_string()).collect() };
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
fn operations_say_what_they_do_and_how_far_they_are() {
    let cases: Vec<(KVClusterSpec, Observed, &str, (u32, u32))> = vec![
        (spec(json!({"shards": 8})), running(3, 4, &[1, 2, 3]), "4 → 8 shards: split shard 0 (4 → 8)", (0, 8)),
        (
            spec(json!({"nodes": 5})),
            running(3, 4, &[1, 2, 3]),
            "adding nodes 4, 5: growing the StatefulSet from 3 to 5 pods",
            (3, 5),
        ),
        (
            spec(json!({"nodes": 3})),
            running(5, 4, &[3, 4, 5]),
            "draining nodes 4, 5: add a replica of shard 0 on node 1",
            (0, 2),
        ),
        (
            spec(json!({"nodes": 3})),
            running(5, 4, &[1, 2, 3]),
            "nodes 4, 5 hold no replica: shrinking the StatefulSet from 5 to 3 pods",
            (2, 2),
        ),
    ];
    for (spec, observed, message, (done, total)) in cases {
        let op = plan(&spec, &observed).operation.expect("an operation");
        assert_eq!(op.message, message);
        assert_eq!((op.done, op.total), (done, total), "{message}");
    }
    // Half the shards split: progress counts shards at the target modulus.
    let mut o = running(3, 4, &[1, 2, 3]);
    if let Some(r) = o.ring.as_mut() {
        for id in [0, 4] {
            r.shards.insert(id, ShardState { id, modulus: 8, ..r.shards[&1].clone() });
        }
    }
    let op = plan(&spec(json!({"shards": 8})), &o).operation.expect("an operation");
    assert_eq!((op.kind, op.done, op.total), (OperationKind::Reshard, 2, 8));
    assert!(op.message.starts_with("5 → 8 shards: split shard 1 (4 → 8)"), "{}", op.message);
}

#[test]
fn an_operation_keeps_its_name_through_its_balancing_tail() {
    // After the new nodes hold replicas, leaders still move: still ScaleUp, not Rebalance.
    let mut o = running(5, 4, &[1, 2, 3, 4, 5]);
    if let Some(r) = o.ring.as_mut() {
        for s in r.shards.values_mut() {
            s.leader = Some(1);
        }
    }
    let s = spec(json!({"nodes": 5, "replicationFactor": 5}));
    assert_eq!(plan(&s, &o).operation.map(|op| op.kind), Some(OperationKind::Rebalance));
    o.operation = Some("ScaleUp".to_string());
    assert_eq!(plan(&s, &o).operation.map(|op| op.kind), Some(OperationKind::ScaleUp));
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
