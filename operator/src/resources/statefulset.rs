//! The StatefulSet: one pod per node, stable names, one volume each.
//!
//! Node ids come from pod ordinals without a shell or a node flag: the StatefulSet
//! starts its ordinals at 1 (`spec.ordinals.start`), so pod `<name>-3` is node 3, and
//! Kubernetes labels each pod with its ordinal (`apps.kubernetes.io/pod-index`, 1.28+),
//! which the downward API hands to `RINGKV_NODE_ID`. Everything else the node needs is
//! `RINGKV_*` env: the chart and the operator configure nodes through env and nothing else.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::tls::{AUTH_DIR, TLS_DIR};
use super::{Names, Owner, CLIENT_PORT, INTERNAL_PORT};
use crate::crd::{KVClusterSpec, TlsMode};

/// The pod label Kubernetes sets to the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Where the data volume is mounted; the node's data dir is a directory inside it, so a
/// file system's `lost+found` never sits among WAL segments.
pub const DATA_MOUNT: &str = "/var/lib/ringkv";
/// The node's data dir (`RINGKV_DATA_DIR`).
pub const DATA_DIR: &str = "/var/lib/ringkv/data";
/// The uid/gid the node runs as (the distroless `nonroot` user).
pub const RUN_AS: i64 = 65532;
/// Time a pod gets between SIGTERM and SIGKILL. The node drains requests, waits (up to
/// 3 s per shard batch) until a follower holds every entry it leads, then closes its WAL.
pub const TERMINATION_GRACE_SECONDS: i64 = 60;

/// The pods, and what their shared template tells every node about the ring.
///
/// `shards` and `peers` are the layout the ring was *bootstrapped* with and never change
/// once the StatefulSet exists: the pod template is shared, so changing them would roll
/// every pod, and a node started later must get the bootstrap values: `RINGKV_SHARDS` is
/// the slice an empty replica of a bootstrap shard starts from (a replica added later
/// may replay that shard's log from its first entry), and `RINGKV_PEERS` names the
/// founding nodes, of which a pod with a higher ordinal is not one, so it joins (see the
/// node's `--peers`). Splits, merges and replica moves go through the admin API instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLayout {
    /// Pods: the StatefulSet's `replicas`.
    pub nodes: u32,
    /// `RINGKV_SHARDS`: the shard count the ring was bootstrapped with.
    pub shards: u32,
    /// `RINGKV_PEERS` lists nodes `1..=peers`: the nodes that bootstrapped the ring.
    pub peers: u32,
}

impl NodeLayout {
    /// A new cluster's layout: every node a founding member.
    pub fn new(nodes: u32, shards: u32) -> Self {
        NodeLayout { nodes, shards, peers: nodes }
    }
}

/// `RINGKV_PEERS`: the founding nodes' stable internal addresses, `id=host:port`, comma-separated.
pub fn peers_env(names: &Names, nodes: u32) -> String {
    (1..=nodes).map(|id| format!("{id}={}:{INTERNAL_PORT}", names.pod_host(id))).collect::<Vec<_>>().join(",")
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.to_string(), value: Some(value.into()), ..Default::default() }
}

fn http_probe(path: &str, period: i32, failures: i32, tls: bool) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".to_string()),
            // The kubelet does not verify the certificate; /healthz and /readyz stay
            // open with tokens on.
            scheme: tls.then(|| "HTTPS".to_string()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// Pods prefer distinct hosts, so one host going down costs each shard one replica at most.
/// Preferred rather than required, so a one-host development cluster still schedules.
fn spread_over_hosts(names: &Names) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(names.selector_labels()),
                        ..Default::default()
                    }),
                    topology_key: "kubernetes.io/hostname".to_string(),
                    ..Default::default()
                },
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The TLS a pod template runs: `Provided` names the Secret mounted (the spec's, or,
/// when the spec no longer names one, the one the pods mount now: a running cluster's
/// TLS never goes away with a spec edit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodTls {
    Disabled,
    Managed,
    Provided(String),
}

impl PodTls {
    /// The mode.
    pub fn mode(&self) -> TlsMode {
        match self {
            PodTls::Disabled => TlsMode::Disabled,
            PodTls::Managed => TlsMode::Managed,
            PodTls::Provided(_) => TlsMode::Provided,
        }
    }

    /// The Secret the nodes' certificate is mounted from.
    pub fn secret(&self, names: &Names) -> Option<String> {
        match self {
            PodTls::Disabled => None,
            PodTls::Managed => Some(names.tls_secret()),
            PodTls::Provided(s) => Some(s.clone()),
        }
    }
}

/// The Secret a pod template's certificate volume mounts, if any.
pub fn mounted_tls_secret(template: &PodSpec) -> Option<String> {
    template
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "tls")
        .and_then(|v| v.secret.as_ref())
        .and_then(|s| s.secret_name.clone())
}

/// On the StatefulSet: the TLS mode its pods run.
pub const TLS_MODE_ANNOTATION: &str = "ringkv.io/tls-mode";

/// The TLS a pod template runs: `Disabled` without the TLS variables; else what the
/// StatefulSet's [`TLS_MODE_ANNOTATION`] says (`annotated`), or, on a StatefulSet from
/// before it, `Managed` when its certificate volume is the operator's Secret.
pub fn tls_of(template: &PodSpec, names: &Names, annotated: Option<&str>) -> TlsMode {
    let on = template
        .containers
        .first()
        .and_then(|c| c.env.as_ref())
        .is_some_and(|env| env.iter().any(|e| e.name == "RINGKV_INTERNAL_TLS_CERT"));
    match (on, mounted_tls_secret(template)) {
        (false, _) => TlsMode::Disabled,
        (true, _) if annotated == Some("Provided") => TlsMode::Provided,
        (true, _) if annotated == Some("Managed") => TlsMode::Managed,
        (true, Some(s)) if s == names.tls_secret() => TlsMode::Managed,
        (true, _) => TlsMode::Provided,
    }
}

/// The TLS and token variables (none when both are off).
fn security_env(spec: &KVClusterSpec, tls: bool) -> Vec<EnvVar> {
    let mut out = Vec::new();
    if tls {
        let (cert, key, ca) = (format!("{TLS_DIR}/tls.crt"), format!("{TLS_DIR}/tls.key"), format!("{TLS_DIR}/ca.crt"));
        out.extend([
            env("RINGKV_TLS_CERT", cert.clone()),
            env("RINGKV_TLS_KEY", key.clone()),
            env("RINGKV_INTERNAL_TLS_CERT", cert),
            env("RINGKV_INTERNAL_TLS_KEY", key),
            env("RINGKV_INTERNAL_TLS_CA", ca),
        ]);
    }
    if let Some(auth) = &spec.auth {
        out.push(env("RINGKV_AUTH_TOKENS", format!("{AUTH_DIR}/{}", auth.key)));
        if auth.metrics_auth {
            out.push(env("RINGKV_METRICS_AUTH", "true"));
        }
    }
    out
}

/// A Secret as a read-only volume, without `subPath` anywhere, so the kubelet updates the
/// files in place when the Secret changes. Readable by the group (the pod's fsGroup).
fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_string()),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node_container(spec: &KVClusterSpec, names: &Names, layout: NodeLayout, tls_secret: Option<&str>) -> Container {
    let node_id = EnvVar {
        name: "RINGKV_NODE_ID".to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.labels['{POD_INDEX_LABEL}']"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let tls = tls_secret.is_some();
    let mut mounts = vec![
        VolumeMount { name: "data".to_string(), mount_path: DATA_MOUNT.to_string(), ..Default::default() },
        VolumeMount { name: "tmp".to_string(), mount_path: "/tmp".to_string(), ..Default::default() },
    ];
    if tls {
        mounts.push(VolumeMount {
            name: "tls".to_string(),
            mount_path: TLS_DIR.to_string(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if spec.auth.is_some() {
        mounts.push(VolumeMount {
            name: "auth".to_string(),
            mount_path: AUTH_DIR.to_string(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let mut vars = vec![
        node_id,
        env("RINGKV_LISTEN", format!("0.0.0.0:{CLIENT_PORT}")),
        env("RINGKV_INTERNAL_LISTEN", format!("0.0.0.0:{INTERNAL_PORT}")),
        env("RINGKV_PEERS", peers_env(names, layout.peers)),
        env("RINGKV_SHARDS", layout.shards.to_string()),
        env("RINGKV_DATA_DIR", DATA_DIR),
        env("RINGKV_MAX_KEY_BYTES", spec.limits.max_key_bytes.to_string()),
        env("RINGKV_MAX_VALUE_BYTES", spec.limits.max_value_bytes.to_string()),
        env("RINGKV_LOG_FORMAT", "json"),
    ];
    vars.extend(security_env(spec, tls));
    Container {
        name: "node".to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(spec.image_pull_policy.as_str().to_string()),
        env: Some(vars),
        ports: Some(vec![
            ContainerPort { name: Some("http".to_string()), container_port: CLIENT_PORT, ..Default::default() },
            ContainerPort { name: Some("internal".to_string()), container_port: INTERNAL_PORT, ..Default::default() },
        ]),
        // WAL recovery may take a while after a crash: liveness starts only once /healthz answers.
        startup_probe: Some(http_probe("/healthz", 5, 120, tls)),
        liveness_probe: Some(http_probe("/healthz", 10, 3, tls)),
        readiness_probe: Some(http_probe("/readyz", 5, 2, tls)),
        resources: Some(spec.resources.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_string()]), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn volume_claim(spec: &KVClusterSpec, names: &Names) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_string()),
            // Labelled so the finalizer finds them when pvcRetention is Delete.
            labels: Some(names.selector_labels()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(spec.storage.size.clone()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The StatefulSet for `layout`, its nodes running TLS `tls` (the mode in force, which a
/// running cluster keeps whatever its spec says).
pub fn statefulset(spec: &KVClusterSpec, owner: &Owner, layout: NodeLayout, tls: &PodTls) -> StatefulSet {
    let names = &owner.names;
    let pod_labels = names.labels();
    let tls_secret = tls.secret(names);
    let mut volumes = vec![Volume {
        name: "tmp".to_string(),
        empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity("64Mi".to_string())), ..Default::default() }),
        ..Default::default()
    }];
    if let Some(secret) = &tls_secret {
        volumes.push(secret_volume("tls", secret));
    }
    if let Some(auth) = &spec.auth {
        volumes.push(secret_volume("auth", &auth.tokens_secret));
    }
    StatefulSet {
        // The TLS mode on the StatefulSet itself (a pod template change would roll the
        // pods): how a later pass tells Managed from a Provided Secret that happens to be
        // called `<name>-tls`.
        metadata: ObjectMeta {
            annotations: Some(BTreeMap::from([(TLS_MODE_ANNOTATION.to_string(), tls.mode().as_str().to_string())])),
            ..owner.meta(&names.cluster, &[])
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(layout.nodes).unwrap_or(i32::MAX)),
            service_name: Some(names.peers.clone()),
            // All pods start together: the lowest-id node bootstraps every shard only once
            // every peer answers, which an ordered start would delay one pod at a time.
            pod_management_policy: Some("Parallel".to_string()),
            ordinals: Some(StatefulSetOrdinals { start: Some(1) }),
            selector: LabelSelector { match_labels: Some(names.selector_labels()), ..Default::default() },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_string()),
                ..Default::default()
            }),
            // A scale-down removes pods only once the ring shows they hold no replica
            // (drained first), so their volumes hold nothing worth keeping, and a later
            // scale-up must start those ordinals empty: deleted with the pod. Otherwise
            // volumes outlive pods and the StatefulSet; the KVCluster's finalizer deletes
            // them when pvcRetention is Delete.
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".to_string()),
                when_scaled: Some("Delete".to_string()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![node_container(spec, names, layout, tls_secret.as_deref())],
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    // No service env vars (`<SVC>_PORT=...`) next to the RINGKV_* ones.
                    enable_service_links: Some(false),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        fs_group_change_policy: Some("OnRootMismatch".to_string()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
                    tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
                    affinity: Some(spec.affinity.clone().unwrap_or_else(|| spread_over_hosts(names))),
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![volume_claim(spec, names)]),
            ..Default::default()
        }),
        status: None,
    }
}
