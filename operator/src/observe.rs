//! What the operator sees: the StatefulSet it owns and what each node answers.
//!
//! The data plane is observed over each pod's client port, `GET /readyz` (every hosted
//! shard has a leader and is caught up; open even with tokens on), and over its internal
//! port, `GET /internal/ring` (the ring as that node sees it: every shard's modulus,
//! voters, learners and leader), which the planning library's driver also reads, and
//! through which planner steps are executed. With TLS, both go over HTTPS trusting only
//! the cluster's CA, and the internal port with the operator's client certificate
//! ([`ClientTls`]): the operator never needs a token. All of it sits behind the
//! [`DataPlane`] trait so reconcile tests run without pods. A node that does not answer
//! is simply not ready: observing never fails a reconcile.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::apps::v1::StatefulSet;
use parking_lot::Mutex;
use ringkv_api::client::AdminClient;
use ringkv_ctl::driver::{Cluster, Driver, DriverError};

use crate::crd::{KVClusterStatus, TlsMode};
use crate::resources::tls::{CertFacts, Renewal};
use crate::resources::{mounted_tls_secret, tls_of, Names, NodeLayout, TLS_MODE_ANNOTATION};

/// A node's answer to `GET /v1/cluster`, and one shard in it: the contract crate's
/// types, read leniently (new fields on the node side do not break the operator).
pub use ringkv_api::{Ring, ShardInfo};

/// What one node answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeProbe {
    /// `/readyz` answered 200.
    pub ready: bool,
    /// `/internal/ring` (the node's view of the ring), when it answered.
    pub view: Option<Ring>,
}

/// How the operator reaches one cluster's nodes when they run TLS: it trusts only the
/// cluster's CA and presents a client certificate the CA signed (the internal port
/// requires one). `id` names the pair, so clients are built once per pair.
#[derive(Clone)]
pub struct ClientTls {
    pub id: String,
    pub config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The data plane as the operator reaches it (HTTP in production, a table in tests).
/// `tls`: the cluster's, when its nodes run TLS.
pub trait DataPlane: Send + Sync + 'static {
    /// Probe the node whose client API is at `base_url` (`http[s]://host:port`) and
    /// whose internal port is `internal` (`host:port`).
    fn probe<'a>(
        &'a self,
        base_url: &'a str,
        internal: &'a str,
        tls: Option<&'a ClientTls>,
    ) -> BoxFuture<'a, NodeProbe>;

    /// The ring as the planning library's driver observes it through the internal
    /// ports `seeds` (`host:port`): for each shard, the view of the node leading it.
    fn ring<'a>(
        &'a self,
        seeds: &'a [String],
        tls: Option<&'a ClientTls>,
    ) -> BoxFuture<'a, Result<Cluster, DriverError>>;

    /// Executes one planner step through the admin API of the nodes concerned (their
    /// addresses come from `cluster`, the observation the step was planned from).
    fn execute<'a>(
        &'a self,
        cluster: &'a Cluster,
        step: &'a ringkv_plan::Step,
        tls: Option<&'a ClientTls>,
    ) -> BoxFuture<'a, Result<(), DriverError>>;
}

/// The clients for one way of reaching nodes (plain, or one [`ClientTls`]).
#[derive(Clone)]
struct Links {
    http: reqwest::Client,
    admin: AdminClient,
    driver: Driver,
}

/// Clients for a TLS pair not used for this long are dropped (a pair is replaced when
/// the operator's certificate is minted again, daily).
const IDLE_LINKS: Duration = Duration::from_secs(3600);

/// [`DataPlane`] over HTTP with a short timeout per request; planner steps go through
/// the planning library's [`Driver`], the same code the admin command line runs.
pub struct HttpDataPlane {
    timeout: Duration,
    plain: Links,
    tls: Mutex<HashMap<String, (Instant, Links)>>,
}

impl HttpDataPlane {
    /// A client whose probes give up after `timeout` (the driver keeps its own timeouts).
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let admin = AdminClient::new();
        let plain = Links {
            http: ringkv_api::client::http().timeout(timeout).build()?,
            driver: Driver::new(Vec::new()).with_client(admin.clone()),
            admin,
        };
        Ok(HttpDataPlane { timeout, plain, tls: Mutex::new(HashMap::new()) })
    }

    /// The clients for `tls` (built on first use).
    fn links(&self, tls: Option<&ClientTls>) -> Result<Links, String> {
        let Some(tls) = tls else { return Ok(self.plain.clone()) };
        let now = Instant::now();
        let mut cache = self.tls.lock();
        if let Some((used, links)) = cache.get_mut(&tls.id) {
            *used = now;
            return Ok(links.clone());
        }
        let http = ringkv_api::client::http()
            .timeout(self.timeout)
            .tls_backend_preconfigured((*tls.config).clone())
            .build()
            .map_err(|e| format!("TLS client: {e}"))?;
        let admin = AdminClient::with_tls((*tls.config).clone())?;
        let links = Links { http, driver: Driver::new(Vec::new()).with_client(admin.clone()), admin };
        cache.retain(|_, (used, _)| now.duration_since(*used) < IDLE_LINKS);
        cache.insert(tls.id.clone(), (now, links.clone()));
        Ok(links)
    }
}

impl DataPlane for HttpDataPlane {
    fn probe<'a>(
        &'a self,
        base_url: &'a str,
        internal: &'a str,
        tls: Option<&'a ClientTls>,
    ) -> BoxFuture<'a, NodeProbe> {
        Box::pin(async move {
            let Ok(links) = self.links(tls) else { return NodeProbe::default() };
            let ready = links.http.get(format!("{base_url}/readyz")).send();
            let view = links.admin.ring(internal, self.timeout);
            let (ready, view) = futures::join!(ready, view);
            let ready = matches!(&ready, Ok(r) if r.status().is_success());
            NodeProbe { ready, view: view.ok() }
        })
    }

    fn ring<'a>(
        &'a self,
        seeds: &'a [String],
        tls: Option<&'a ClientTls>,
    ) -> BoxFuture<'a, Result<Cluster, DriverError>> {
        Box::pin(async move {
            // A clone shares the HTTP client; seeds are this cluster's nodes only.
            let mut driver = self.links(tls).map_err(DriverError::Http)?.driver;
            for seed in seeds {
                driver.add_seed(seed.clone());
            }
            driver.observe().await
        })
    }

    fn execute<'a>(
        &'a self,
        cluster: &'a Cluster,
        step: &'a ringkv_plan::Step,
        tls: Option<&'a ClientTls>,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move {
            let links = self.links(tls).map_err(DriverError::Http)?;
            links.driver.execute(cluster, step).await
        })
    }
}

/// A cluster's TLS as the operator finds it (nothing is read for `Disabled`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsObserved {
    /// `status.tls.mode` from the last pass.
    pub recorded: Option<TlsMode>,
    /// `Managed`: the CA's Secret exists and holds a CA.
    pub ca: bool,
    /// `Managed`: the CA's Secret exists but holds no usable CA (what is wrong).
    pub ca_unusable: Option<String>,
    /// `Managed`: why the nodes' certificate must be issued now, if it must.
    pub renewal: Option<Renewal>,
    /// The nodes' certificate, as far as it could be read.
    pub cert: Option<CertFacts>,
    /// `Provided`: what is missing or unusable, in words.
    pub missing: Option<String>,
}

/// The StatefulSet as far as planning cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatefulSetState {
    /// `spec.replicas`: the nodes that exist or are being created.
    pub replicas: u32,
    /// Pods Kubernetes counts as ready.
    pub ready_replicas: u32,
    /// Pods already on the newest template.
    pub updated_replicas: u32,
    /// The newest template has reached every pod.
    pub rollout_complete: bool,
    /// `RINGKV_SHARDS` in the pod template: the shard count the ring was bootstrapped with.
    pub shards: Option<u32>,
    /// How many nodes `RINGKV_PEERS` in the pod template lists: the founding nodes.
    pub peers: Option<u32>,
    /// The TLS the pod template runs.
    pub tls: TlsMode,
    /// The Secret its certificate volume mounts.
    pub tls_secret: Option<String>,
}

impl StatefulSetState {
    /// Reads what matters from a StatefulSet.
    pub fn from_object(sts: &StatefulSet) -> Self {
        let spec = sts.spec.as_ref();
        let status = sts.status.as_ref();
        let count = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        let replicas = count(spec.and_then(|s| s.replicas));
        let updated_replicas = count(status.and_then(|s| s.updated_replicas));
        let same_revision =
            status.is_some_and(|s| s.current_revision.is_some() && s.current_revision == s.update_revision);
        let generation_seen = status.and_then(|s| s.observed_generation) == sts.metadata.generation;
        let env = |name: &str| {
            spec.and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.containers.first())
                .and_then(|c| c.env.as_ref())
                .and_then(|env| env.iter().find(|e| e.name == name))
                .and_then(|e| e.value.clone())
        };
        let shards = env("RINGKV_SHARDS").and_then(|v| v.parse().ok());
        let peers = env("RINGKV_PEERS")
            .map(|v| v.split(',').filter(|p| !p.trim().is_empty()).count())
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0);
        let names = Names::new(sts.metadata.name.as_deref().unwrap_or_default(), "");
        let template = spec.and_then(|s| s.template.spec.as_ref());
        StatefulSetState {
            tls: template.map_or(TlsMode::Disabled, |p| {
                let annotated = sts.metadata.annotations.as_ref().and_then(|a| a.get(TLS_MODE_ANNOTATION));
                tls_of(p, &names, annotated.map(String::as_str))
            }),
            tls_secret: template.and_then(mounted_tls_secret),
            replicas,
            ready_replicas: count(status.and_then(|s| s.ready_replicas)),
            updated_replicas,
            rollout_complete: generation_seen && (same_revision || updated_replicas >= replicas),
            shards,
            peers,
        }
    }
}

/// Everything `plan` looks at besides the spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The KVCluster's `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration` from the last reconcile that wrote status.
    pub status_generation: Option<i64>,
    /// Whether the cluster finished its creation once (status shows a ring epoch and no
    /// `Create` operation in progress): later waits are not creation.
    pub created: bool,
    /// The layout status recorded for a created cluster: if its StatefulSet disappears,
    /// the volumes (kept) hold that many shards, so it comes back with that layout.
    pub previous: Option<NodeLayout>,
    /// The StatefulSet, if it exists.
    pub statefulset: Option<StatefulSetState>,
    /// Node id → what it answered, for every node the StatefulSet should have.
    pub nodes: BTreeMap<u32, NodeProbe>,
    /// The ring as the planning library sees it, a node healthy only when it answered
    /// the driver *and* `/readyz`; `None` when no node answered on its internal port.
    pub ring: Option<ringkv_plan::Observed>,
    /// `status.currentOperation.type` from the last reconcile that wrote status, so an
    /// operation keeps its name through its last (balancing) steps.
    pub operation: Option<String>,
    /// The data-plane step an earlier pass started that is still running (see
    /// [`crate::inflight`]); none after an operator restart, which plans afresh.
    pub in_flight: Option<ringkv_plan::Step>,
    /// The cluster's certificates.
    pub tls: TlsObserved,
}

impl Observed {
    /// Nodes that answered `/readyz` with 200.
    pub fn ready_nodes(&self) -> u32 {
        u32::try_from(self.nodes.values().filter(|n| n.ready).count()).unwrap_or(u32::MAX)
    }

    /// The freshest ring any node reported: the highest epoch, then a formed view, then
    /// one in which every shard has a leader, then the lowest node id. (A node that holds
    /// no replica reports uninitialised shards; a member's view wins over it.)
    pub fn ring(&self) -> Option<&Ring> {
        let rank = |v: &Ring| (v.epoch, v.formed(), v.all_led());
        let mut best: Option<&Ring> = None;
        for view in self.nodes.values().filter_map(|n| n.view.as_ref()) {
            best = match best {
                Some(b) if rank(b) >= rank(view) => Some(b),
                _ => Some(view),
            };
        }
        best
    }
}

/// The layout a created cluster's status records (see [`Observed::previous`]): its pods,
/// and the bootstrap layout its pod template carried (older statuses lack it: then the
/// shard count and node count are the best guess there is).
pub fn previous_layout(status: Option<&KVClusterStatus>) -> Option<NodeLayout> {
    let s = status.filter(|s| was_created(Some(s)))?;
    let shards = s.bootstrap.as_ref().map(|b| b.shards).or(s.shards)?;
    let peers = s.bootstrap.as_ref().map_or(s.nodes, |b| b.nodes);
    (s.nodes > 0).then_some(NodeLayout { nodes: s.nodes, shards, peers })
}

/// The planner's view of `cluster`: a node counts as healthy only when it also answered
/// `/readyz` (a node catching up or without a leader for one of its shards is waited
/// for, never given or relieved of replicas).
pub fn planner_view(cluster: &Cluster, probes: &BTreeMap<u32, NodeProbe>) -> ringkv_plan::Observed {
    let mut observed = cluster.observed.clone();
    for (id, healthy) in &mut observed.nodes {
        let ready = u32::try_from(*id).ok().and_then(|id| probes.get(&id)).is_some_and(|p| p.ready);
        *healthy = *healthy && ready;
    }
    observed
}

/// Whether a status shows a cluster that finished its creation (see [`Observed::created`]).
pub fn was_created(status: Option<&KVClusterStatus>) -> bool {
    status.is_some_and(|s| s.ring_epoch.is_some() && s.current_operation.as_ref().is_none_or(|o| o.type_ != "Create"))
}

/// Probes nodes `1..=nodes` concurrently.
pub async fn probe_nodes(
    data_plane: &dyn DataPlane,
    names: &Names,
    nodes: u32,
    tls: Option<&ClientTls>,
) -> BTreeMap<u32, NodeProbe> {
    let addrs: Vec<(u32, String, String)> =
        (1..=nodes).map(|id| (id, names.node_url(id, tls.is_some()), names.internal_addr(id))).collect();
    let probes = join_all(addrs.iter().map(|(_, url, internal)| data_plane.probe(url, internal, tls))).await;
    addrs.into_iter().map(|(id, ..)| id).zip(probes).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;

    use super::*;

    /// What `GET /v1/cluster` returns on a node (node/src/api/health.rs), extra fields included.
    fn node_answer() -> serde_json::Value {
        json!({
            "node_id": 2, "epoch": 1, "shard_count": 2, "replication_factor": 3,
            "nodes": [{"id": 1, "internal_addr": "demo-1.demo-peers.prod.svc:8180"}],
            "shards": [
                {"id": 0, "members": [1, 2, 3], "leader": 1, "term": 4, "last_log_index": 9, "commit_index": 9,
                 "applied_index": 9, "snapshot_index": 0, "purged_index": 0, "state": "Follower"},
                {"id": 1, "members": [1, 2, 3], "leader": null, "term": 4, "last_log_index": 7, "commit_index": 7,
                 "applied_index": 7, "snapshot_index": 0, "purged_index": 0, "state": "Candidate"}
            ]
        })
    }

    /// A node's two ports in one: `/readyz` (client) and `/internal/ring` (internal).
    async fn node(ready: StatusCode) -> String {
        let app = Router::new()
            .route("/readyz", get(move || async move { (ready, "{}") }))
            .route("/internal/ring", get(|| async { Json(node_answer()) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr.to_string()
    }

    async fn probe(dp: &HttpDataPlane, addr: &str) -> NodeProbe {
        dp.probe(&format!("http://{addr}"), addr, None).await
    }

    #[tokio::test]
    async fn http_data_plane_reads_readiness_and_the_ring() {
        let dp = HttpDataPlane::new(Duration::from_secs(2)).expect("client");
        let answer = probe(&dp, &node(StatusCode::OK).await).await;
        assert!(answer.ready);
        let view = answer.view.expect("a view");
        assert_eq!((view.node_id, view.epoch, view.shard_count), (2, 1, 2));
        assert!(view.formed() && !view.all_led());
        assert_eq!(view.replicas_by_node().get(&3), Some(&2));

        let unready = probe(&dp, &node(StatusCode::SERVICE_UNAVAILABLE).await).await;
        assert!(!unready.ready && unready.view.is_some());
    }

    #[tokio::test]
    async fn an_unreachable_node_is_simply_not_ready() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let dp = HttpDataPlane::new(Duration::from_millis(500)).expect("client");
        assert_eq!(probe(&dp, &addr.to_string()).await, NodeProbe::default());
    }
}
