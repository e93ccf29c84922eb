//! `run`: serve `/metrics`, win the Lease, run the controller until shutdown.
//!
//! Leader election uses `kube-lease-manager` (a maintained crate on kube's own Lease API
//! with server-side apply). Only the Lease holder reconciles; a replica that loses the
//! Lease stops its controller and returns [`Error::LostLeadership`], so the process
//! exits and Kubernetes restarts it as a follower — never two writers at once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::RunConfig;
use crate::crd::KVCluster;
use crate::metrics::Metrics;
use crate::observe::HttpDataPlane;
use crate::reconcile::{error_policy, reconcile, Context};
use crate::resources::FIELD_MANAGER;
use crate::{server, Error};

/// Runs the operator until `shutdown` is cancelled (or leadership is lost).
pub async fn run(
    config: RunConfig,
    client: Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let server = tokio::spawn(server::serve(listener, metrics.clone(), shutdown.clone()));
    let result = if config.leader_election {
        lead(&config, client, metrics, &shutdown).await
    } else {
        control(&config, client, metrics, shutdown.clone()).await
    };
    shutdown.cancel();
    match server.await {
        Ok(Err(e)) if result.is_ok() => Err(e),
        _ => result,
    }
}

/// A missing namespace gets a one-line error that says what to do.
fn lease_error(e: kube_lease_manager::LeaseManagerError, namespace: &str) -> Error {
    if format!("{e}").contains(&format!("namespaces \"{namespace}\" not found")) {
        Error::LeaseNamespaceMissing(namespace.to_string())
    } else {
        Error::LeaderElection(e)
    }
}

/// Waits for the Lease, then controls until shutdown or until the Lease is lost.
async fn lead(
    config: &RunConfig,
    client: Client,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let identity = config.identity.clone().unwrap_or_else(|| "ringkv-operator".to_string());
    let duration = config.lease_seconds;
    let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(&identity)
        .with_field_manager(format!("{FIELD_MANAGER}-lease"))
        .with_duration(duration)
        .with_grace((duration / 3).max(2))
        .build()
        .await
        .map_err(|e| lease_error(e, &config.lease_namespace))?;
    let (mut is_leader, lease_task) = manager.watch().await;

    tracing::info!(lease = %config.lease_name, %identity, "waiting for the leader Lease");
    while !*is_leader.borrow_and_update() {
        tokio::select! {
            changed = is_leader.changed() => {
                if changed.is_err() {
                    return Err(Error::LostLeadership);
                }
            }
            () = shutdown.cancelled() => {
                drop(is_leader);
                let _ = lease_task.await;
                return Ok(());
            }
        }
    }
    tracing::info!(%identity, "leading: starting the controller");
    metrics.leader.set(1);

    let stop = shutdown.child_token();
    let lost = CancellationToken::new();
    let watch_lease = {
        let (stop, lost) = (stop.clone(), lost.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = is_leader.changed() => {
                        if changed.is_err() || !*is_leader.borrow_and_update() {
                            lost.cancel();
                            stop.cancel();
                            return;
                        }
                    }
                    () = stop.cancelled() => return,
                }
            }
            // Dropping `is_leader` here makes the lease task release the Lease.
        })
    };
    let result = control(config, client, metrics.clone(), stop.clone()).await;
    stop.cancel();
    let _ = watch_lease.await;
    metrics.leader.set(0);
    // The receiver is gone with the watcher task: the manager releases the Lease and ends.
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!(%identity, "released the leader Lease"),
        // Seen on a real cluster: `helm uninstall` deletes the leader-election RoleBinding
        // with the Deployment, the release is refused, and the Lease keeps naming this pod.
        Ok(Ok(Err(e))) => {
            tracing::warn!(%identity, error = %e, "could not release the leader Lease: a successor waits until it expires")
        }
        Ok(Err(e)) => tracing::warn!(%identity, error = %e, "the leader Lease task failed"),
        Err(_) => {
            tracing::warn!(%identity, "releasing the leader Lease took over 5 s: a successor waits until it expires")
        }
    }
    if lost.is_cancelled() {
        tracing::error!(%identity, "lost the leader Lease; exiting so only one replica reconciles");
        return Err(Error::LostLeadership);
    }
    result
}

/// Runs the controller until `stop` is cancelled.
async fn control(
    config: &RunConfig,
    client: Client,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let (clusters, statefulsets): (Api<KVCluster>, Api<StatefulSet>) = match &config.watch_namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // Fail early and clearly when the CRD is missing or RBAC forbids reading it.
    clusters.list(&ListParams::default().limit(1)).await?;

    let data_plane = HttpDataPlane::new(config.probe_timeout).map_err(Error::HttpClient)?;
    let mut ctx = Context::new(client, Arc::new(data_plane), metrics, config.identity.clone());
    ctx.network_policy = config.operator_pods();
    let ctx = Arc::new(ctx);
    let owned = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    Controller::new(clusters, watcher::Config::default().any_semantic())
        .owns(statefulsets, owned)
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(cluster = %obj.name, namespace = ?obj.namespace, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile not run or failed"),
            }
        })
        .await;
    Ok(())
}
