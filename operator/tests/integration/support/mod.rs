//! Fixtures for the integration tests: a KVCluster, its StatefulSet as the API server
//! would return it, a fake data plane and a one-call harness around `reconcile`.

pub mod api;
pub mod schema;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use ringkv_ctl::driver::{Cluster, DriverError};
use ringkv_operator::crd::{KVCluster, KVClusterSpec, FINALIZER};
use ringkv_operator::inflight::InFlight;
use ringkv_operator::metrics::Metrics;
use ringkv_operator::observe::{ClientTls, DataPlane, NodeProbe, Ring, ShardInfo};
use ringkv_operator::reconcile::{reconcile, reporter, Context};
use ringkv_operator::resources::{statefulset, Names, NodeLayout, Owner, PodTls};
use ringkv_operator::Error;
use serde_json::{json, Value};

use self::api::{mock_client, Exchange, Recorded};

pub const NS: &str = "prod";
pub const NAME: &str = "demo";

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// API paths of the objects one cluster owns.
pub mod path {
    pub const KVC: &str = "/apis/ringkv.io/v1alpha1/namespaces/prod/kvclusters/demo";
    pub const KVC_STATUS: &str = "/apis/ringkv.io/v1alpha1/namespaces/prod/kvclusters/demo/status";
    pub const STS: &str = "/apis/apps/v1/namespaces/prod/statefulsets/demo";
    pub const PEERS: &str = "/api/v1/namespaces/prod/services/demo-peers";
    pub const CLIENT: &str = "/api/v1/namespaces/prod/services/demo";
    pub const PDB: &str = "/apis/policy/v1/namespaces/prod/poddisruptionbudgets/demo";
    pub const SM: &str = "/apis/monitoring.coreos.com/v1/namespaces/prod/servicemonitors/demo";
    pub const PVCS: &str = "/api/v1/namespaces/prod/persistentvolumeclaims";
    pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/prod/events";
    pub const SECRETS: &str = "/api/v1/namespaces/prod/secrets";
    pub const CA: &str = "/api/v1/namespaces/prod/secrets/demo-ca";
    pub const TLS: &str = "/api/v1/namespaces/prod/secrets/demo-tls";
    pub const BUNDLE: &str = "/api/v1/namespaces/prod/configmaps/demo-ca-bundle";
}

/// A KVCluster as the API server hands it to the controller (finalizer already added).
pub fn kvc(spec: Value, generation: i64) -> KVCluster {
    let spec: KVClusterSpec = serde_json::from_value(spec).expect("spec deserializes");
    let mut k = KVCluster::new(NAME, spec);
    k.metadata.namespace = Some(NS.to_string());
    k.metadata.uid = Some("uid-1".to_string());
    k.metadata.generation = Some(generation);
    k.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    k
}

/// The StatefulSet the operator would have applied, with a status: `ready` pods ready,
/// and the rollout complete unless `rolling`.
pub fn statefulset_object(kvc: &KVCluster, layout: NodeLayout, ready: u32, rolling: bool) -> Value {
    statefulset_object_with(kvc, layout, ready, rolling, PodTls::Disabled)
}

/// [`statefulset_object`] for nodes running `tls`.
pub fn statefulset_object_with(kvc: &KVCluster, layout: NodeLayout, ready: u32, rolling: bool, tls: PodTls) -> Value {
    let owner = Owner::of(kvc).expect("owner");
    let mut v = serde_json::to_value(statefulset(&kvc.spec, &owner, layout, &tls)).expect("sts serializes");
    v["apiVersion"] = json!("apps/v1");
    v["kind"] = json!("StatefulSet");
    v["metadata"]["generation"] = json!(1);
    v["status"] = json!({
        "replicas": layout.nodes,
        "readyReplicas": ready,
        "updatedReplicas": if rolling { 1 } else { layout.nodes },
        "currentRevision": "demo-1",
        "updateRevision": if rolling { "demo-2" } else { "demo-1" },
        "observedGeneration": 1,
    });
    v
}

/// A data plane answering from a table; unknown URLs are unreachable nodes. The ring
/// the driver observes is built from the same table, and executed steps are recorded.
#[derive(Default)]
pub struct FakeDataPlane {
    pub probes: BTreeMap<String, NodeProbe>,
    /// What the driver observes on the internal ports; `None`: nobody answers there.
    pub ring: Option<Cluster>,
    /// Every step fails with this (a node not answering, say).
    pub fail_with: Option<String>,
    /// Every step is refused with this, as the driver refuses a step it cannot do.
    pub refuse_with: Option<String>,
    /// Every step executed, in order (shared with the test).
    pub executed: Arc<Mutex<Vec<ringkv_plan::Step>>>,
    /// When set, every step waits for a permit of this semaphore before it ends (a
    /// replica catching up, held for as long as the test wants).
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    /// The TLS pair (its id) every call was made with, `None` for plain (shared).
    pub reached: Arc<Mutex<Vec<Option<String>>>>,
}

impl FakeDataPlane {
    fn reached_with(&self, tls: Option<&ClientTls>) {
        self.reached.lock().expect("lock").push(tls.map(|t| t.id.clone()));
    }
}

/// The leader of `shard` among `members`: rotating, so leaders are balanced.
fn leader(shard: u32, members: &[u64]) -> Option<u64> {
    (!members.is_empty()).then(|| members[shard as usize % members.len()])
}

impl FakeDataPlane {
    /// Nodes `1..=n`; the first `ready` answer ready with a ring of `shards` shards on
    /// `members` (leaders spread over them), on the client and the internal port alike.
    pub fn nodes(n: u32, ready: u32, shards: u32, members: &[u64]) -> Self {
        let names = Names::new(NAME, NS);
        let view = |id: u32| Ring {
            node_id: u64::from(id),
            epoch: 1,
            shard_count: shards,
            shards: (0..shards)
                .map(|s| ShardInfo {
                    id: s,
                    members: members.to_vec(),
                    leader: leader(s, members),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let probes = (1..=n)
            .map(|id| {
                (names.node_url(id, false), NodeProbe { ready: id <= ready, view: (id <= ready).then(|| view(id)) })
            })
            .collect();
        let ring = (ready > 0).then(|| Cluster {
            observed: ringkv_plan::Observed {
                nodes: (1..=ready).map(|id| (u64::from(id), true)).collect(),
                shards: (0..shards)
                    .map(|id| {
                        let voters = members.iter().copied().collect();
                        (
                            id,
                            ringkv_plan::ShardState {
                                id,
                                modulus: shards,
                                voters,
                                learners: Default::default(),
                                leader: leader(id, members),
                                frozen: false,
                                lost: Default::default(),
                            },
                        )
                    })
                    .collect(),
            },
            addrs: (1..=ready).map(|id| (u64::from(id), names.internal_addr(id))).collect(),
            epoch: 1,
            keys: BTreeMap::new(),
        });
        FakeDataPlane { probes, ring, ..Default::default() }
    }

    /// The same, with every step failing with `why` (a node not answering, say).
    pub fn failing(mut self, why: &str) -> Self {
        self.fail_with = Some(why.to_string());
        self
    }

    /// The same, with every step refused with `why` (the driver's `Blocked`).
    pub fn refusing(mut self, why: &str) -> Self {
        self.refuse_with = Some(why.to_string());
        self
    }

    /// The same, with every step running until `gate` hands it a permit.
    pub fn gated(mut self, gate: &Arc<tokio::sync::Semaphore>) -> Self {
        self.gate = Some(gate.clone());
        self
    }
}

impl DataPlane for FakeDataPlane {
    fn probe<'a>(
        &'a self,
        base_url: &'a str,
        _internal: &'a str,
        tls: Option<&'a ClientTls>,
    ) -> BoxFuture<'a, NodeProbe> {
        self.reached_with(tls);
        let probe = self.probes.get(base_url).cloned().unwrap_or_default();
        Box::pin(async move { probe })
    }

    fn ring<'a>(
        &'a self,
        seeds: &'a [String],
        tls: Option<&'a ClientTls>,
    ) -> BoxFuture<'a, Result<Cluster, DriverError>> {
        self.reached_with(tls);
        let ring = self.ring.clone().ok_or_else(|| DriverError::NoNodes(seeds.to_vec()));
        Box::pin(async move { ring })
    }

    fn execute<'a>(
        &'a self,
        _cluster: &'a Cluster,
        step: &'a ringkv_plan::Step,
        tls: Option<&'a ClientTls>,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        self.reached_with(tls);
        let result = match (&self.fail_with, &self.refuse_with) {
            (Some(why), _) => Err(DriverError::Http(why.clone())),
            (None, Some(why)) => Err(DriverError::Blocked(why.clone())),
            (None, None) => Ok(()),
        };
        let (gate, executed) = (self.gate.clone(), self.executed.clone());
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.acquire_owned().await.expect("the gate stays open").forget();
            }
            if result.is_ok() {
                executed.lock().expect("lock").push(step.clone());
            }
            result
        })
    }
}

/// The fixed clock of every test: 2026-01-01T00:00:00Z.
pub fn fixed_now() -> Time {
    Time(Timestamp::from_second(1_767_225_600).expect("valid timestamp"))
}

/// The outcome of one reconcile pass against a scripted API server.
pub struct Pass {
    pub result: Result<Action, Error>,
    pub calls: Vec<Recorded>,
    pub metrics: Arc<Metrics>,
    pub ctx_error_policy: Option<Action>,
    /// The data-plane steps the pass executed.
    pub executed: Vec<ringkv_plan::Step>,
}

impl Pass {
    /// The pass's action; fails the test with the error if the pass failed.
    pub fn action(&self) -> Action {
        match &self.result {
            Ok(action) => action.clone(),
            Err(e) => panic!("reconcile failed: {e}; calls: {:#?}", self.calls),
        }
    }

    /// The body of the one call to `path` with `method`.
    pub fn body(&self, method: &http::Method, path: &str) -> &Value {
        let mut found = self.calls.iter().filter(|c| c.method == *method && c.path == path);
        let call = found.next().unwrap_or_else(|| panic!("a {method} {path} call; calls: {:#?}", self.calls));
        assert!(found.next().is_none(), "one {method} {path} call only");
        &call.body
    }
}

/// How long a test pass waits for the data-plane step it started (the fake's steps end
/// at once unless gated).
pub const TEST_STEP_GRACE: Duration = Duration::from_millis(300);

/// Runs one reconcile pass of `kvc` against `script`, with `data_plane` as the nodes,
/// by a freshly started operator. The error policy runs on failure, as the controller
/// would.
pub async fn reconcile_once(kvc: KVCluster, data_plane: FakeDataPlane, script: Vec<Exchange>) -> Pass {
    reconcile_by(&Arc::new(InFlight::new()), kvc, data_plane, script).await
}

/// The same, by an operator whose steps in flight are `in_flight` (shared by its passes).
pub async fn reconcile_by(
    in_flight: &Arc<InFlight>,
    kvc: KVCluster,
    data_plane: FakeDataPlane,
    script: Vec<Exchange>,
) -> Pass {
    let (client, server) = mock_client();
    let server = server.run(script);
    let metrics = Arc::new(Metrics::new());
    let executed = data_plane.executed.clone();
    let recorder = Recorder::new(client.clone(), reporter(Some("ringkv-operator-0".to_string())));
    let ctx = Arc::new(Context {
        client,
        data_plane: Arc::new(data_plane),
        metrics: metrics.clone(),
        recorder,
        clock: fixed_now,
        in_flight: in_flight.clone(),
        step_grace: TEST_STEP_GRACE,
        network_policy: None,
        client_certs: Default::default(),
    });
    let kvc = Arc::new(kvc);
    let result = tokio::time::timeout(Duration::from_secs(10), reconcile(kvc.clone(), ctx.clone()))
        .await
        .expect("reconcile finishes (a hang means a call the scenario did not answer)");
    let ctx_error_policy = result.as_ref().err().map(|e| ringkv_operator::reconcile::error_policy(kvc, e, ctx.clone()));
    drop(ctx);
    let calls = match server.await {
        Ok(calls) => calls,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let executed = executed.lock().expect("lock").clone();
    Pass { result, calls, metrics, ctx_error_policy, executed }
}
