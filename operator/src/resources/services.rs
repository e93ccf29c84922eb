//! The Services, the PodDisruptionBudget, the nodes' NetworkPolicy and the optional ServiceMonitor.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{OperatorPods, Owner, CLIENT_PORT, INTERNAL_PORT, SERVICE_ROLE_LABEL};
use crate::crd::KVClusterSpec;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }
}

/// The headless Service behind the pods' stable DNS names (`<pod>.<name>-peers.<ns>.svc`).
/// It publishes pods before they are ready: nodes must reach each other to elect the
/// leaders that make them ready.
pub fn peer_service(owner: &Owner) -> Service {
    let names = &owner.names;
    Service {
        metadata: owner.meta(&names.peers, &[(SERVICE_ROLE_LABEL, "peers")]),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names.selector_labels()),
            ports: Some(vec![port("http", CLIENT_PORT), port("internal", INTERNAL_PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The client Service: the HTTP API of every ready node (any node serves any key).
pub fn client_service(spec: &KVClusterSpec, owner: &Owner) -> Service {
    let names = &owner.names;
    let mut meta = owner.meta(&names.cluster, &[(SERVICE_ROLE_LABEL, "client")]);
    if !spec.service.annotations.is_empty() {
        meta.annotations = Some(spec.service.annotations.clone());
    }
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(spec.service.type_.as_str().to_string()),
            selector: Some(names.selector_labels()),
            ports: Some(vec![port("http", CLIENT_PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// At most one node down for voluntary disruptions (drains, upgrades): with replication
/// factor 3 or more, every shard keeps its majority.
pub fn disruption_budget(owner: &Owner) -> PodDisruptionBudget {
    let names = &owner.names;
    PodDisruptionBudget {
        metadata: owner.meta(&names.cluster, &[]),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(names.selector_labels()), ..Default::default() }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The nodes' NetworkPolicy (`<name>-nodes`): the client port (API and `/metrics`) open
/// to all; the internal port, which appends Raft entries and drives splits and replica
/// moves, only to this cluster's own nodes and to the operator's pods. One per
/// KVCluster, in its namespace, whatever namespace the operator runs in.
pub fn network_policy(owner: &Owner, operator: &OperatorPods) -> NetworkPolicy {
    let names = &owner.names;
    let tcp = |p: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    };
    let pods = |labels: BTreeMap<String, String>| LabelSelector { match_labels: Some(labels), ..Default::default() };
    let operator_namespace = BTreeMap::from([("kubernetes.io/metadata.name".to_string(), operator.namespace.clone())]);
    NetworkPolicy {
        metadata: owner.meta(&names.network_policy(), &[]),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods(names.selector_labels())),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule { from: None, ports: Some(vec![tcp(CLIENT_PORT)]) },
                NetworkPolicyIngressRule {
                    from: Some(vec![
                        NetworkPolicyPeer { pod_selector: Some(pods(names.selector_labels())), ..Default::default() },
                        NetworkPolicyPeer {
                            namespace_selector: Some(pods(operator_namespace)),
                            pod_selector: Some(pods(operator.labels.clone())),
                            ..Default::default()
                        },
                    ]),
                    ports: Some(vec![tcp(INTERNAL_PORT)]),
                },
            ]),
            ..Default::default()
        }),
    }
}

/// The prometheus-operator ServiceMonitor type (its CRD may not be installed).
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// A ServiceMonitor scraping every node's `/metrics` through the headless peer Service:
/// it lists pods that are not ready too (`publishNotReadyAddresses`), so a node that
/// is catching up or lost its leaders is still scraped — the client Service would drop
/// it just when its metrics matter. Selecting on the role label keeps the client Service
/// from doubling every target.
///
/// With TLS, Prometheus scrapes over HTTPS, trusting the cluster's CA (the ConfigMap
/// `<name>-ca-bundle`, or `ca.crt` of a provided Secret) and checking the client
/// Service's name, which the nodes' certificate carries.
pub fn service_monitor(spec: &KVClusterSpec, owner: &Owner, tls: &super::PodTls) -> DynamicObject {
    let names = &owner.names;
    let sm = &spec.monitoring.service_monitor;
    let mut meta = owner.meta(&names.cluster, &[]);
    if let Some(labels) = meta.labels.as_mut() {
        labels.extend(sm.labels.clone());
    }
    let mut match_labels = names.selector_labels();
    match_labels.insert(SERVICE_ROLE_LABEL.to_string(), "peers".to_string());
    let mut obj = DynamicObject::new(&names.cluster, &service_monitor_resource());
    obj.metadata = meta;
    let mut endpoint = json!({ "port": "http", "path": "/metrics", "interval": sm.interval });
    let ca = match tls {
        super::PodTls::Managed => Some(json!({ "configMap": { "name": names.ca_bundle(), "key": "ca.crt" } })),
        super::PodTls::Provided(secret) => Some(json!({ "secret": { "name": secret, "key": "ca.crt" } })),
        super::PodTls::Disabled => None,
    };
    // A provided certificate need only name the pods (`*.<name>-peers.<ns>.svc`).
    let server_name = if matches!(tls, super::PodTls::Provided(_)) { names.pod_host(1) } else { names.service_host() };
    if let Some(ca) = ca {
        endpoint["scheme"] = json!("https");
        endpoint["tlsConfig"] = json!({ "ca": ca, "serverName": server_name });
    }
    obj.data = json!({
        "spec": {
            "selector": { "matchLabels": match_labels },
            "endpoints": [endpoint],
        }
    });
    obj
}
