//! The ringkv operator: reconciles `KVCluster` resources (`ringkv.io/v1alpha1`) into
//! running ringkv clusters.
//!
//! A reconcile pass flows through the modules in this order. [`reconcile`] adds the
//! finalizer (or, on delete, cleans up volumes per `pvcRetention`), then [`observe`]s
//! the StatefulSet, asks every node for `/readyz` and `/v1/cluster`, and has the planning
//! library's driver read the ring from the nodes' internal ports, all through the
//! [`observe::DataPlane`] trait. [`plan::plan`] turns spec + observation into
//! [`plan::Step`]s — a pure function that asks the planning library (`ringkv-plan`) for
//! the next data-plane step (split, merge, replica or leader move) once nothing waits.
//! [`execute`] server-side applies the objects built by [`resources`] (StatefulSet, peer
//! and client Services, PodDisruptionBudget, ServiceMonitor), then starts that one
//! data-plane step through the driver in a task tracked by [`inflight`] (a slow step,
//! such as a replica catching up, is picked up by a later pass); [`status`] computes the new status (conditions
//! `Ready`/`Progressing`/`Degraded` with `observedGeneration`, the current operation
//! with its progress), written only when it changed, and [`events`] publishes a
//! Kubernetes Event per step. [`controller`] runs the loop behind a Lease (leader
//! election) and serves [`metrics`] and `/healthz` ([`server`]). [`crd`] holds the
//! resource types from which the CRD YAML is generated. [`config`] is the command line.
//! The same planning library driven by hand is `ringkv-ctl` (the `ctl/` crate).

pub mod certificates;
pub mod config;
pub mod controller;
pub mod crd;
pub mod error;
pub mod events;
pub mod execute;
pub mod inflight;
pub mod metrics;
pub mod observe;
pub mod plan;
mod plan_ops;
pub mod reconcile;
pub mod resources;
pub mod server;
pub mod status;
pub mod step;

pub use controller::run;
pub use error::Error;
