//! Desired objects from a spec: pure functions, no API calls.
//!
//! Every object carries the same labels and a controller owner reference to its
//! `KVCluster`, so Kubernetes garbage-collects them with it (PVCs excepted: see
//! `pvcRetention`). The executor server-side applies them with the operator's field
//! manager; applying the same object twice changes nothing.

mod services;
mod statefulset;
pub mod tls;

pub use services::{
    client_service, disruption_budget, network_policy, peer_service, service_monitor, service_monitor_resource,
};
pub use statefulset::{mounted_tls_secret, peers_env, statefulset, tls_of, NodeLayout, PodTls, TLS_MODE_ANNOTATION};

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::KVCluster;
use crate::Error;

/// The client HTTP port of every node (`RINGKV_LISTEN`).
pub const CLIENT_PORT: i32 = 8080;
/// The internal (Raft, forwarding) port of every node (`RINGKV_INTERNAL_LISTEN`).
pub const INTERNAL_PORT: i32 = 8180;
/// The field manager for server-side apply.
pub const FIELD_MANAGER: &str = "ringkv-operator";
/// The label that tells the client Service from the peer Service.
pub const SERVICE_ROLE_LABEL: &str = "ringkv.io/service";

/// The operator's own pods, as a NetworkPolicy selects them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorPods {
    /// The operator's namespace.
    pub namespace: String,
    /// Labels every operator pod carries.
    pub labels: BTreeMap<String, String>,
}

/// Names and labels of everything one `KVCluster` owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The KVCluster's name; also the StatefulSet, client Service, PDB and ServiceMonitor.
    pub cluster: String,
    /// The namespace of all of them.
    pub namespace: String,
    /// The headless Service that gives every pod a stable DNS name.
    pub peers: String,
}

impl Names {
    /// Names for a cluster.
    pub fn new(cluster: &str, namespace: &str) -> Self {
        Names { cluster: cluster.to_string(), namespace: namespace.to_string(), peers: format!("{cluster}-peers") }
    }

    /// Names for a `KVCluster` object (which must have a name and a namespace).
    pub fn of(kvc: &KVCluster) -> Result<Self, Error> {
        let ns = kvc.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
        let name = kvc.meta().name.as_deref().ok_or(Error::MissingField("metadata.name"))?;
        Ok(Names::new(name, &ns))
    }

    /// The name of node `id`'s pod (ordinals start at 1, so the ordinal is the node id).
    pub fn pod(&self, id: u32) -> String {
        format!("{}-{id}", self.cluster)
    }

    /// The nodes' NetworkPolicy.
    pub fn network_policy(&self) -> String {
        format!("{}-nodes", self.cluster)
    }

    /// The stable DNS name of node `id`'s pod.
    pub fn pod_host(&self, id: u32) -> String {
        format!("{}.{}.{}.svc", self.pod(id), self.peers, self.namespace)
    }

    /// Node `id`'s internal address (`host:port`: Raft and the admin API), as the
    /// operator's planning driver reaches it.
    pub fn internal_addr(&self, id: u32) -> String {
        format!("{}:{INTERNAL_PORT}", self.pod_host(id))
    }

    /// Node `id`'s client API base URL, as the operator reaches it (`https` when the
    /// nodes run TLS).
    pub fn node_url(&self, id: u32, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{}:{CLIENT_PORT}", self.pod_host(id))
    }

    /// The labels that select this cluster's pods (immutable once the StatefulSet exists).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "ringkv".to_string()),
            ("app.kubernetes.io/instance".to_string(), self.cluster.clone()),
            ("app.kubernetes.io/component".to_string(), "node".to_string()),
        ])
    }

    /// The same selector as a `key=value,...` string (for list calls).
    pub fn selector(&self) -> String {
        self.selector_labels().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    /// Labels on every owned object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.selector_labels();
        l.insert("app.kubernetes.io/managed-by".to_string(), FIELD_MANAGER.to_string());
        l.insert("app.kubernetes.io/part-of".to_string(), "ringkv".to_string());
        l
    }
}

/// The inputs every builder needs: the names and the owner reference.
#[derive(Clone, Debug)]
pub struct Owner {
    pub names: Names,
    pub reference: OwnerReference,
}

impl Owner {
    /// The owner for a `KVCluster` (which must have name, namespace and uid).
    pub fn of(kvc: &KVCluster) -> Result<Self, Error> {
        let names = Names::of(kvc)?;
        let reference = kvc.controller_owner_ref(&()).ok_or(Error::MissingField("metadata.uid"))?;
        Ok(Owner { names, reference })
    }

    /// Metadata for an owned object called `name`, with `extra` labels.
    pub(crate) fn meta(&self, name: &str, extra: &[(&str, &str)]) -> ObjectMeta {
        let mut labels = self.names.labels();
        for (k, v) in extra {
            labels.insert((*k).to_string(), (*v).to_string());
        }
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.names.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.reference.clone()]),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests;
