//! The ringkv operator: reconciles `KVCluster` resources (`ringkv.io/v1alpha1`) into
//! running ringkv clusters.
//!
//! A reconcile pass flows through the modules in this order. [`reconcile`] adds the
//! finalizer (or, on delete, cleans up volumes per `pvcRetention`), then [`observe`]s
//! the StatefulSet and asks every node for `/readyz` and `/v1/cluster` through the
//! [`observe::DataPlane`] trait. [`plan::plan`] turns spec + observation into
//! [`plan::Step`]s — a pure function; steps the data plane cannot do yet (resharding,
//! replica moves) become `Blocked` steps rather than actions. [`execute`] server-side
//! applies the objects built by [`resources`] (StatefulSet, peer and client Services,
//! PodDisruptionBudget, ServiceMonitor), and [`status`] computes the new status
//! (conditions `Ready`/`Progressing`/`Degraded` with `observedGeneration`), written
//! only when it changed. [`controller`] runs the loop behind a Lease (leader election)
//! and serves [`metrics`] and `/healthz` ([`server`]). [`crd`] holds the resource types
//! from which the CRD YAML is generated. [`config`] is the command line.

pub mod config;
pub mod controller;
pub mod crd;
pub mod error;
pub mod execute;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod resources;
pub mod server;
pub mod status;

pub use controller::run;
pub use error::Error;
