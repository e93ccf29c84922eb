//! Desired objects from specs: what the pods, Services and budget must look like.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::*;
use crate::crd::KVClusterSpec;

fn owner() -> Owner {
    Owner {
        names: Names::new("demo", "prod"),
        reference: OwnerReference {
            api_version: "ringkv.io/v1alpha1".to_string(),
            kind: "KVCluster".to_string(),
            name: "demo".to_string(),
            uid: "uid-1".to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}

fn spec(v: serde_json::Value) -> KVClusterSpec {
    serde_json::from_value(v).expect("test spec deserializes")
}

fn container(spec: &KVClusterSpec, layout: NodeLayout) -> Container {
    let sts = statefulset(spec, &owner(), layout, &PodTls::Disabled);
    let pod = sts.spec.and_then(|s| s.template.spec).expect("pod spec");
    pod.containers.into_iter().next().expect("one container")
}

fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
    c.env.as_ref().and_then(|e| e.iter().find(|v| v.name == name)).unwrap_or_else(|| panic!("env {name} set"))
}

#[test]
fn peers_list_every_pod_by_stable_name_from_ordinal_one() {
    let names = Names::new("demo", "prod");
    let cases = [
        (1, "1=demo-1.demo-peers.prod.svc:8180"),
        (3, "1=demo-1.demo-peers.prod.svc:8180,2=demo-2.demo-peers.prod.svc:8180,3=demo-3.demo-peers.prod.svc:8180"),
    ];
    for (nodes, want) in cases {
        assert_eq!(peers_env(&names, nodes), want);
    }
}

#[test]
fn statefulset_layout_comes_from_the_plan_not_the_spec() {
    let s = spec(json!({"shards": 16, "nodes": 5}));
    let layout = NodeLayout::new(3, 4);
    let sts = statefulset(&s, &owner(), layout, &PodTls::Disabled);
    let ss = sts.spec.as_ref().expect("spec");
    assert_eq!(ss.replicas, Some(3));
    let c = container(&s, layout);
    assert_eq!(env(&c, "RINGKV_SHARDS").value.as_deref(), Some("4"));
    assert_eq!(env(&c, "RINGKV_PEERS").value.as_deref().map(|p| p.split(',').count()), Some(3));
}

#[test]
fn node_ids_are_pod_ordinals_starting_at_one_without_a_shell() {
    let s = spec(json!({}));
    let sts = statefulset(&s, &owner(), NodeLayout::new(3, 4), &PodTls::Disabled);
    let ss = sts.spec.as_ref().expect("spec");
    assert_eq!(ss.ordinals.as_ref().and_then(|o| o.start), Some(1));
    let c = container(&s, NodeLayout::new(3, 4));
    let field =
        env(&c, "RINGKV_NODE_ID").value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str());
    assert_eq!(field, Some("metadata.labels['apps.kubernetes.io/pod-index']"));
    assert_eq!(c.command, None, "no shell wrapper");
    assert_eq!(c.args, None);
}

#[test]
fn statefulset_has_stable_names_parallel_start_and_a_volume_per_pod() {
    let s = spec(json!({"storage": {"size": "50Gi", "storageClassName": "fast"}}));
    let sts = statefulset(&s, &owner(), NodeLayout::new(3, 4), &PodTls::Disabled);
    assert_eq!(sts.metadata.name.as_deref(), Some("demo"));
    assert_eq!(sts.metadata.owner_references.as_ref().map(|o| o[0].uid.as_str()), Some("uid-1"));
    let ss = sts.spec.expect("spec");
    assert_eq!(ss.service_name.as_deref(), Some("demo-peers"));
    assert_eq!(ss.pod_management_policy.as_deref(), Some("Parallel"));
    // Drained pods' volumes go with them on scale-down; otherwise volumes are kept
    // (the finalizer applies pvcRetention when the KVCluster goes).
    let retention = ss.persistent_volume_claim_retention_policy.as_ref().expect("retention policy");
    assert_eq!((retention.when_scaled.as_deref(), retention.when_deleted.as_deref()), (Some("Delete"), Some("Retain")));
    let claim = &ss.volume_claim_templates.expect("claims")[0];
    let cs = claim.spec.as_ref().expect("claim spec");
    assert_eq!(cs.storage_class_name.as_deref(), Some("fast"));
    let size = cs.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
    assert_eq!(size.map(|q| q.0.as_str()), Some("50Gi"));
    assert_eq!(claim.metadata.labels.as_ref(), Some(&Names::new("demo", "prod").selector_labels()));
    let pod_labels = ss.template.metadata.and_then(|m| m.labels).expect("pod labels");
    let selector = ss.selector.match_labels.expect("selector");
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "the selector matches the pods");
}

#[test]
fn pods_run_non_root_read_only_without_capabilities_and_probe_health() {
    let s = spec(json!({}));
    let sts = statefulset(&s, &owner(), NodeLayout::new(3, 4), &PodTls::Disabled);
    let pod = sts.spec.and_then(|s| s.template.spec).expect("pod");
    assert!(pod.termination_grace_period_seconds.is_some_and(|t| t >= 30));
    let psc = pod.security_context.expect("pod security context");
    assert_eq!((psc.run_as_non_root, psc.run_as_user), (Some(true), Some(65532)));
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().expect("container security context");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_string()]));
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().and_then(|p| p.http_get.as_ref()).and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(env(c, "RINGKV_LISTEN").value.as_deref(), Some("0.0.0.0:8080"));
    assert_eq!(env(c, "RINGKV_INTERNAL_LISTEN").value.as_deref(), Some("0.0.0.0:8180"));
}

#[test]
fn scheduling_defaults_to_spreading_and_passes_user_settings_through() {
    let default = statefulset(&spec(json!({})), &owner(), NodeLayout::new(3, 4), &PodTls::Disabled);
    let pod = default.spec.and_then(|s| s.template.spec).expect("pod");
    let anti = pod.affinity.and_then(|a| a.pod_anti_affinity).expect("anti-affinity by default");
    let term = &anti.preferred_during_scheduling_ignored_during_execution.expect("preferred")[0];
    assert_eq!(term.pod_affinity_term.topology_key, "kubernetes.io/hostname");

    let custom = spec(json!({
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kv", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "limits": {"maxKeyBytes": 100, "maxValueBytes": 2000},
        "image": "example/ringkv:1", "imagePullPolicy": "Always",
    }));
    let sts = statefulset(&custom, &owner(), NodeLayout::new(3, 4), &PodTls::Disabled);
    let pod = sts.spec.and_then(|s| s.template.spec).expect("pod");
    assert_eq!(pod.node_selector.and_then(|n| n.get("disk").cloned()).as_deref(), Some("ssd"));
    assert_eq!(pod.tolerations.map(|t| t.len()), Some(1));
    assert!(pod.affinity.is_some_and(|a| a.pod_anti_affinity.is_none() && a.node_affinity.is_some()));
    let c = &pod.containers[0];
    assert_eq!((c.image.as_deref(), c.image_pull_policy.as_deref()), (Some("example/ringkv:1"), Some("Always")));
    assert_eq!(env(c, "RINGKV_MAX_KEY_BYTES").value.as_deref(), Some("100"));
    assert_eq!(env(c, "RINGKV_MAX_VALUE_BYTES").value.as_deref(), Some("2000"));
}

#[test]
fn peer_service_is_headless_and_publishes_unready_pods() {
    let svc = peer_service(&owner());
    assert_eq!(svc.metadata.name.as_deref(), Some("demo-peers"));
    let s = svc.spec.expect("spec");
    assert_eq!(s.cluster_ip.as_deref(), Some("None"));
    assert_eq!(s.publish_not_ready_addresses, Some(true));
    let ports: Vec<i32> = s.ports.expect("ports").iter().map(|p| p.port).collect();
    assert_eq!(ports, vec![CLIENT_PORT, INTERNAL_PORT]);
}

#[test]
fn client_service_exposes_only_the_client_port_with_the_spec_type() {
    let s = spec(json!({"service": {"type": "LoadBalancer", "annotations": {"a": "b"}}}));
    let svc = client_service(&s, &owner());
    assert_eq!(svc.metadata.annotations.and_then(|a| a.get("a").cloned()).as_deref(), Some("b"));
    assert_eq!(svc.metadata.labels.and_then(|l| l.get(SERVICE_ROLE_LABEL).cloned()).as_deref(), Some("client"));
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    let ports: Vec<i32> = spec.ports.expect("ports").iter().map(|p| p.port).collect();
    assert_eq!(ports, vec![CLIENT_PORT], "the Raft port stays internal");
}

#[test]
fn disruption_budget_allows_one_node_down() {
    let pdb = disruption_budget(&owner());
    let spec = pdb.spec.expect("spec");
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(spec.min_available, None);
}

#[test]
fn service_monitor_scrapes_every_node_ready_or_not_through_the_peer_service() {
    let s = spec(
        json!({"monitoring": {"serviceMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "prom"}}}}),
    );
    let sm = service_monitor(&s, &owner(), &PodTls::Disabled);
    assert_eq!(sm.types.as_ref().map(|t| t.kind.as_str()), Some("ServiceMonitor"));
    assert_eq!(sm.metadata.labels.as_ref().and_then(|l| l.get("release")).map(String::as_str), Some("prom"));
    assert_eq!(sm.data["spec"]["selector"]["matchLabels"][SERVICE_ROLE_LABEL], "peers");
    let peers = peer_service(&owner());
    assert_eq!(
        peers.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_ROLE_LABEL)).map(String::as_str),
        Some("peers")
    );
    let port = &sm.data["spec"]["endpoints"][0]["port"];
    assert!(
        peers.spec.and_then(|s| s.ports).into_iter().flatten().any(|p| p.name.as_deref() == port.as_str()),
        "{port}"
    );
    assert_eq!(sm.data["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(sm.data["spec"]["endpoints"][0]["path"], "/metrics");
}

/// Every `RINGKV_*` variable the operator sets is one the node reads (node/src/config.rs).
#[test]
fn every_env_var_set_is_a_node_flag() {
    let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../node/src/config.rs"))
        .expect("the node's config.rs is readable");
    let c = container(&spec(json!({})), NodeLayout::new(3, 4));
    for var in c.env.iter().flatten() {
        assert!(config.contains(&format!("env = \"{}\"", var.name)), "{} is not a ringkv-node setting", var.name);
    }
}

#[test]
fn drained_pods_lose_their_volumes_and_deletion_is_left_to_the_finalizer() {
    // (pvcRetention, whenScaled, whenDeleted): whatever the spec says about deletion,
    // a scale-down deletes the removed (drained) pods' claims, and the StatefulSet never
    // deletes claims on its own deletion — the operator recreates it onto them; the
    // finalizer deletes them by the selector labels when pvcRetention is Delete.
    let cases = [("Retain", "Delete", "Retain"), ("Delete", "Delete", "Retain")];
    for (retention, scaled, deleted) in cases {
        let s = spec(json!({ "pvcRetention": retention }));
        let ss = statefulset(&s, &owner(), NodeLayout::new(3, 4), &PodTls::Disabled).spec.expect("spec");
        let policy = ss.persistent_volume_claim_retention_policy.expect("retention policy");
        assert_eq!(
            (policy.when_scaled.as_deref(), policy.when_deleted.as_deref()),
            (Some(scaled), Some(deleted)),
            "{retention}"
        );
        let claim_labels = ss.volume_claim_templates.expect("claims")[0].metadata.labels.clone().expect("labels");
        let selector = Names::new("demo", "prod").selector();
        assert!(selector
            .split(',')
            .all(|kv| kv.split_once('=').is_some_and(|(k, v)| claim_labels.get(k).map(String::as_str) == Some(v))));
    }
}

#[test]
fn the_nodes_network_policy_opens_the_client_port_and_keeps_the_internal_port_to_nodes_and_operator() {
    let operator = OperatorPods {
        namespace: "ringkv-system".to_string(),
        labels: BTreeMap::from([("app.kubernetes.io/name".to_string(), "ringkv-operator".to_string())]),
    };
    let np = serde_json::to_value(network_policy(&owner(), &operator)).expect("serializes");
    assert_eq!(np["metadata"]["name"], "demo-nodes");
    assert_eq!(np["metadata"]["namespace"], "prod", "in the cluster's namespace, not the operator's");
    assert_eq!(np["metadata"]["ownerReferences"][0]["uid"], "uid-1", "garbage-collected with the KVCluster");
    let own = json!({"app.kubernetes.io/name": "ringkv", "app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": "node"});
    assert_eq!(np["spec"]["podSelector"]["matchLabels"], own, "only this cluster's pods");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    let rules = np["spec"]["ingress"].as_array().expect("ingress rules");
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(rules[0], json!({"ports": [{"port": 8080, "protocol": "TCP"}]}), "the client port from anywhere");
    assert_eq!(rules[1]["ports"], json!([{"port": 8180, "protocol": "TCP"}]));
    assert_eq!(
        rules[1]["from"],
        json!([
            {"podSelector": {"matchLabels": own}},
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ringkv-system"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ringkv-operator"}}
            }
        ]),
        "the internal port only from this cluster's nodes and the operator's pods"
    );
}

#[test]
fn the_tls_a_statefulset_runs_is_read_back_as_written_even_for_a_provided_secret_named_like_the_operators() {
    let s = spec(json!({}));
    for tls in [
        PodTls::Disabled,
        PodTls::Managed,
        PodTls::Provided("demo-tls".to_string()),
        PodTls::Provided("mine".to_string()),
    ] {
        let sts = statefulset(&s, &owner(), NodeLayout::new(3, 4), &tls);
        let annotated = sts.metadata.annotations.as_ref().and_then(|a| a.get(TLS_MODE_ANNOTATION)).map(String::as_str);
        let template = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("a pod template");
        assert_eq!(tls_of(template, &owner().names, annotated), tls.mode(), "{tls:?}");
        assert_eq!(mounted_tls_secret(template), tls.secret(&owner().names), "{tls:?}");
        // The mode sits on the StatefulSet, never in the pod template (which would roll the pods).
        assert!(sts
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .is_none());
    }
    // A StatefulSet from before the annotation: the operator's Secret name means Managed.
    let sts = statefulset(&s, &owner(), NodeLayout::new(3, 4), &PodTls::Managed);
    let template = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("a pod template");
    assert_eq!(tls_of(template, &owner().names, None), crate::crd::TlsMode::Managed);
}
