//! The `KVCluster` custom resource (`ringkv.io/v1alpha1`, short name `kvc`).
//!
//! The Rust types are the source of truth: the CRD YAML under `deploy/crds/` and in the
//! Helm chart is generated from them (`ringkv-operator crd`), and a test fails when the
//! committed copies drift. Validation lives in the schema so the API server refuses bad
//! specs before the operator sees them: an enum of powers of two for `shards` (CEL has no
//! bitwise operators), an enum for `replicationFactor`, a CEL rule for
//! `nodes >= replicationFactor`, and a transition rule that keeps `storage` as created
//! (the StatefulSet could not apply a change, and would fail every pass). Defaults live in the schema too, so `kubectl get -o yaml`
//! shows what the operator acts on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that lets the operator clean up (PVCs, per `pvcRetention`) on delete.
pub const FINALIZER: &str = "ringkv.io/cleanup";

/// Shard counts the schema accepts: powers of two up to the node's `MAX_SHARDS` (1024).
pub const ALLOWED_SHARDS: [u32; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Replication factors the schema accepts (odd, so a majority is well defined).
pub const ALLOWED_REPLICATION: [u32; 4] = [1, 3, 5, 7];

/// Most nodes one cluster may ask for.
pub const MAX_NODES: u32 = 256;

/// The node image used when `spec.image` is not set (kept in step with the chart).
pub const DEFAULT_NODE_IMAGE: &str = concat!("ghcr.io/ringkv/ringkv-node:", env!("CARGO_PKG_VERSION"));

/// A ringkv cluster: a StatefulSet of nodes, the Services in front of it and its shards.
// Each printcolumn repeats `type_ = "integer"`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ringkv.io",
    version = "v1alpha1",
    kind = "KVCluster",
    plural = "kvclusters",
    shortname = "kvc",
    category = "ringkv",
    namespaced,
    status = "KVClusterStatus",
    derive = "PartialEq",
    doc = "A ringkv cluster: sharded, Raft-replicated key-value store nodes managed by the ringkv operator.",
    printcolumn(name = "Shards", type_ = "integer", json_path = ".status.shards", description = "Shards the data plane runs"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodes", description = "Nodes (pods) that exist; spec.nodes is the wish"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyNodes", description = "Ready nodes"),
    printcolumn(name = "Epoch", type_ = "integer", json_path = ".status.ringEpoch", description = "Ring epoch"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // Pods carry a `controller-revision-hash` label of the StatefulSet's name plus 11
    // characters, and labels stop at 63: a longer name makes a StatefulSet whose pods are
    // never created. Refused up front instead.
    // Services are named after the cluster, and a Service name is a DNS-1035 label:
    // `my.cluster` or `1st` pass the API server's own name check but no Service could be
    // made. Refused up front instead.
    validation = Rule::new("size(self.metadata.name) <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS-1035 label of at most 52 characters (lowercase letters, digits and '-', starting with a letter, ending with a letter or digit): the Services, the StatefulSet and its pods are named after it")
)]
#[x_kube(validation = Rule::new("self.nodes >= self.replicationFactor")
    // A messageExpression showing the two values is refused by the API server's cost
    // estimate (over 100x the budget for `string(int)`), so the message names the
    // defaults: setting only `replicationFactor: 5` is refused for the default `nodes: 3`.
    .message("nodes must be at least replicationFactor (when unset, nodes is 3 and replicationFactor is 3)")
    .field_path(".nodes"))]
#[serde(rename_all = "camelCase")]
pub struct KVClusterSpec {
    /// Number of shards: a power of two from 1 to 1024.
    #[serde(default = "default_shards")]
    #[schemars(extend("enum" = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]))]
    pub shards: u32,

    /// Replicas of each shard: 1, 3, 5 or 7.
    #[serde(default = "default_replication_factor")]
    #[schemars(extend("enum" = [1, 3, 5, 7]))]
    pub replication_factor: u32,

    /// Number of nodes (pods); at least `replicationFactor`.
    #[serde(default = "default_nodes")]
    #[schemars(range(min = 1, max = 256))]
    pub nodes: u32,

    /// The ringkv-node container image.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,

    /// When to pull the image.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,

    /// CPU and memory for each node container.
    #[serde(default = "default_resources")]
    pub resources: ResourceRequirements,

    /// The persistent volume of each node (its WAL and snapshots). Fixed once the
    /// cluster exists: a StatefulSet's volume claim templates cannot change.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "storage cannot change once the cluster exists (the StatefulSet's volume claim templates are \
         immutable); to grow the volumes, resize each PersistentVolumeClaim"
    ))]
    pub storage: StorageSpec,

    /// Request size limits enforced by every node.
    #[serde(default)]
    pub limits: LimitsSpec,

    /// Stop all changes to the cluster's objects (except renewing a managed certificate
    /// that is due); status is still reported.
    #[serde(default)]
    pub paused: bool,

    /// Node selector for the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations for the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity for the pods. When unset, pods prefer to be on different hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// The client Service in front of the nodes.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Prometheus integration.
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// What happens to the nodes' volumes when the KVCluster is deleted. (A scale-down
    /// always deletes the removed pods' volumes: those nodes were drained first.)
    #[serde(default)]
    pub pvc_retention: PvcRetention,

    /// TLS on both ports of every node. Unset: `Managed` for a new cluster, and whatever a
    /// running cluster already runs (a cluster created before TLS existed stays plain).
    /// The mode of a running cluster cannot change: every node speaks TLS or none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Bearer tokens with roles on the client API. Unset: the client API is open to
    /// whoever reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
}

/// How the nodes get their certificates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Provided' || (has(self.secretName) && has(self.operatorSecretName))")
    .message("tls.mode Provided needs tls.secretName (the nodes' certificate) and tls.operatorSecretName (the operator's client certificate)"))]
pub struct TlsSpec {
    /// `Managed`: the operator makes a CA (Secret `<name>-ca`) and the nodes' certificate
    /// (Secret `<name>-tls`), publishes the CA in the ConfigMap `<name>-ca-bundle` and
    /// renews the certificate 30 days before it expires, without restarting a pod.
    /// `Provided`: the Secrets named below are kept by you or cert-manager. `Disabled`:
    /// plain HTTP on both ports. Fixed once set.
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "tls.mode cannot change once set: every node of a cluster speaks TLS or none does"
    ))]
    pub mode: TlsMode,
    /// `Provided`: a `kubernetes.io/tls` Secret with `tls.crt`, `tls.key` and `ca.crt`,
    /// mounted by every node and used on both ports. The certificate must name
    /// `*.<name>-peers.<namespace>.svc` (the peers dial each other by those names) and be
    /// good for both server and client authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// `Provided`: a Secret with `tls.crt`, `tls.key` and `ca.crt` that the operator
    /// presents to the nodes' internal port (client authentication, signed by the same CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub operator_secret_name: Option<String>,
}

/// Where the nodes' certificates come from.
///
/// (The Rust default, `Disabled`, is what a pod template without TLS runs; a new
/// cluster without `spec.tls` gets `Managed`: see `resources::tls::effective_mode`.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TlsMode {
    Managed,
    Provided,
    #[default]
    Disabled,
}

impl TlsMode {
    /// The word in the spec and in status.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Managed => "Managed",
            TlsMode::Provided => "Provided",
            TlsMode::Disabled => "Disabled",
        }
    }
}

/// Bearer tokens on the client API (see the node's token file format in docs/security.md).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// A Secret in the cluster's namespace holding the token file. It is mounted by every
    /// node and re-read within seconds of a change (no restart).
    #[schemars(length(min = 1, max = 253))]
    pub tokens_secret: String,
    /// The key of the token file in that Secret.
    #[serde(default = "default_tokens_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// `/metrics` needs a token too (a `read` one is enough). The ServiceMonitor the
    /// operator makes scrapes without one: leave this off where Prometheus uses it.
    #[serde(default)]
    pub metrics_auth: bool,
}

fn default_tokens_key() -> String {
    "tokens.json".to_string()
}

fn default_shards() -> u32 {
    4
}
fn default_replication_factor() -> u32 {
    3
}
fn default_nodes() -> u32 {
    3
}
fn default_image() -> String {
    DEFAULT_NODE_IMAGE.to_string()
}
fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".to_string(), q("250m")), ("memory".to_string(), q("256Mi"))])),
        limits: Some(BTreeMap::from([("memory".to_string(), q("1Gi"))])),
        ..Default::default()
    }
}

/// Image pull policy (the Kubernetes values).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Each node's persistent volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size (a Kubernetes quantity such as `10Gi`).
    #[serde(default = "default_storage_size")]
    #[schemars(length(min = 1, max = 64), regex(pattern = QUANTITY))]
    pub size: String,
    /// Storage class; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

/// A Kubernetes resource quantity, as the API server parses it (apimachinery's
/// `resource.Quantity`), so a typo is refused by the schema rather than by every
/// StatefulSet apply. Strings here are bounded so the CEL rule over `storage` stays
/// cheap in the API server's cost estimate.
const QUANTITY: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

fn default_storage_size() -> String {
    "10Gi".to_string()
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec { size: default_storage_size(), storage_class_name: None }
    }
}

/// Request size limits (`RINGKV_MAX_KEY_BYTES`, `RINGKV_MAX_VALUE_BYTES`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Largest key, in bytes.
    #[serde(default = "default_max_key_bytes")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_key_bytes: u32,
    /// Largest value, in bytes (at most 64 MiB).
    #[serde(default = "default_max_value_bytes")]
    #[schemars(range(min = 1, max = 67108864))]
    pub max_value_bytes: u32,
}

fn default_max_key_bytes() -> u32 {
    4096
}
fn default_max_value_bytes() -> u32 {
    1 << 20
}

impl Default for LimitsSpec {
    fn default() -> Self {
        LimitsSpec { max_key_bytes: default_max_key_bytes(), max_value_bytes: default_max_value_bytes() }
    }
}

/// The client Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Annotations for the client Service (for example, load balancer settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Kubernetes Service types the client Service may use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    /// The value Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Prometheus integration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// A prometheus-operator ServiceMonitor for the nodes' `/metrics`.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

/// The ServiceMonitor the operator creates when enabled (and when its CRD is installed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create the ServiceMonitor.
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval (a Prometheus duration such as `30s`).
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: String,
    /// Extra labels, for a Prometheus that selects ServiceMonitors by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_scrape_interval() -> String {
    "30s".to_string()
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        ServiceMonitorSpec { enabled: false, interval: default_scrape_interval(), labels: BTreeMap::new() }
    }
}

/// What happens to the nodes' PersistentVolumeClaims when the KVCluster is deleted.
///
/// Applied by the operator's finalizer, not by the StatefulSet's `whenDeleted` (always
/// `Retain`): a StatefulSet deleted on its own is recreated by the operator onto the
/// same volumes, which must still hold the ring.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PvcRetention {
    /// Keep them: a KVCluster created again with the same name finds its data.
    #[default]
    Retain,
    /// Delete them with the cluster.
    Delete,
}

/// What the operator observed and did, as of `observedGeneration`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KVClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One word for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Ready`, `Progressing` and `Degraded`, each with its own observedGeneration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The ring epoch the nodes report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_epoch: Option<u64>,
    /// Shards the data plane runs (differs from `spec.shards` while resharding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// The layout the ring was bootstrapped with (nodes and shards at creation), which
    /// the pod template keeps for good: recorded so a lost StatefulSet comes back with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapLayout>,
    /// Nodes (pods) that exist.
    #[serde(default)]
    pub nodes: u32,
    /// Nodes whose `/readyz` answers ready.
    #[serde(default)]
    pub ready_nodes: u32,
    /// What the operator is doing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_operation: Option<OperationStatus>,
    /// The last operation that finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<OperationStatus>,
    /// A data-plane step still running after the pass that started it (adding a replica
    /// waits for it to catch up). No other step starts and no pod is removed meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_in_flight: Option<StepInFlight>,
    /// The TLS the nodes run, and their certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
}

/// The TLS the nodes run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// The mode in force (see `spec.tls.mode`).
    pub mode: TlsMode,
    /// The serial number of the nodes' certificate (lowercase hex), as `openssl x509
    /// -noout -serial` prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// When the nodes' certificate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
}

/// A data-plane step in flight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepInFlight {
    /// The step, in words.
    pub step: String,
    /// When it started.
    pub started_at: Time,
}

/// The founding nodes and shard count of a ring.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapLayout {
    /// Nodes `1..=nodes` bootstrapped the ring (`RINGKV_PEERS`).
    pub nodes: u32,
    /// The shard count it was bootstrapped with (`RINGKV_SHARDS`).
    pub shards: u32,
}

/// The phase shown by `kubectl get kvc`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Pods starting, the ring forming for the first time.
    Creating,
    /// Every node ready, every shard led.
    Running,
    /// A new pod template rolling through the pods.
    Updating,
    /// Nodes being added or removed (replicas moving onto or off them).
    Scaling,
    /// Shards splitting or merging towards `spec.shards`.
    Resharding,
    /// Replicas or leaders moving between nodes (a `replicationFactor` change, balance).
    Rebalancing,
    /// Formed once, but not every node is ready or not every shard has a leader.
    NotReady,
    /// The spec asks for something the operator cannot do (see the Degraded condition).
    Degraded,
    /// `spec.paused`: no changes are made.
    Paused,
}

/// One operation: creating the cluster, scaling it, waiting for a rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// What kind of operation (`Create`, `Rollout`, `ScaleUp`, `ScaleDown`, `Reshard`,
    /// `Rebalance`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Where it stands, in words.
    pub message: String,
    /// Units done (ready nodes, for example).
    #[serde(default)]
    pub done: u32,
    /// Units in all.
    #[serde(default)]
    pub total: u32,
    /// Data-plane steps (splits, merges, replica and leader moves) executed so far.
    #[serde(default)]
    pub steps: u32,
    /// The last data-plane step executed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it finished (last operation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}

/// The CRD. Unsigned integers are declared `int64` (with their `minimum: 0`): schemars
/// writes `format: uint32`, which OpenAPI 3.0 lacks and API servers warn about.
pub fn crd() -> Result<CustomResourceDefinition, crate::Error> {
    fn fix_formats(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(f)) = map.get_mut("format") {
                    if f.starts_with("uint") {
                        *f = "int64".to_string();
                    }
                }
                map.values_mut().for_each(fix_formats);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(fix_formats),
            _ => {}
        }
    }
    let ser = |e: serde_json::Error| crate::Error::Serialize { what: "the CRD", source: e };
    let mut value = serde_json::to_value(KVCluster::crd()).map_err(ser)?;
    fix_formats(&mut value);
    unwrap_descriptions(&mut value);
    let root = &mut value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    // Every spec field has a default, so `spec` may be left out. The API server checks a
    // default against the CEL rules without filling the nested defaults first, so the
    // default names the two fields the rule reads; the rest are filled as usual.
    if let Some(required) = root["required"].as_array_mut() {
        required.retain(|r| r != "spec");
        if required.is_empty() {
            root.as_object_mut().map(|o| o.remove("required"));
        }
    }
    root["properties"]["spec"]["default"] =
        serde_json::json!({ "nodes": default_nodes(), "replicationFactor": default_replication_factor() });
    // Resource quantities: the API server's own Quantity pattern, so `cpu: lots` is
    // refused at `kubectl apply` (422, naming the field) instead of by every StatefulSet
    // apply (a 500), as controller-gen's schemas do; and a one-line description instead
    // of Quantity's page of Go documentation.
    for kind in ["requests", "limits"] {
        let q = &mut root["properties"]["spec"]["properties"]["resources"]["properties"][kind]["additionalProperties"];
        if q.is_object() {
            q["pattern"] = QUANTITY.into();
            q["description"] = "A Kubernetes quantity, such as 250m, 2 or 512Mi.".into();
        }
    }
    serde_json::from_value(value).map_err(ser)
}

/// Descriptions come from doc comments wrapped at 90 columns; `kubectl explain` wraps on
/// its own, so single line breaks become spaces (blank lines, which separate
/// paragraphs, stay).
fn unwrap_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(d)) = map.get_mut("description") {
                *d = d
                    .split("\n\n")
                    .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
            map.values_mut().for_each(unwrap_descriptions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The CRD as YAML, exactly as committed under `deploy/crds/` and `charts/ringkv/crds/`.
pub fn crd_yaml() -> Result<String, crate::Error> {
    let body = serde_saphyr::to_string(&crd()?).map_err(|e| crate::Error::Yaml(e.to_string()))?;
    Ok(format!("# Generated by `ringkv-operator crd` from operator/src/crd.rs. Do not edit.\n---\n{body}"))
}
