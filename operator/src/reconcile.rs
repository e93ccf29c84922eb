//! One reconcile pass: finalizer, observe, plan, execute, write status.
//!
//! Level-triggered: every pass starts from what exists (the StatefulSet, the nodes'
//! answers, the last status), so a restarted operator resumes where the cluster is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::crd::{KVCluster, PvcRetention, FINALIZER};
use crate::execute::execute;
use crate::metrics::Metrics;
use crate::observe::{previous_layout, probe_nodes, was_created, DataPlane, Observed, StatefulSetState};
use crate::plan::plan;
use crate::resources::{Owner, FIELD_MANAGER};
use crate::status::{build, StatusInput};
use crate::Error;

/// How often a settled cluster is looked at again (the data plane sends no events).
pub const REQUEUE_STABLE: Duration = Duration::from_secs(60);
/// How often a cluster that is starting or rolling is looked at.
pub const REQUEUE_WAITING: Duration = Duration::from_secs(10);
/// How often a paused cluster's status is refreshed.
pub const REQUEUE_PAUSED: Duration = Duration::from_secs(300);
/// Retry delay after a failed pass.
pub const REQUEUE_ERROR: Duration = Duration::from_secs(15);

/// What every reconcile pass shares.
pub struct Context {
    /// The Kubernetes client (a mocked service in tests).
    pub client: Client,
    /// How the nodes are reached.
    pub data_plane: Arc<dyn DataPlane>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// The clock used for condition and operation times.
    pub clock: fn() -> Time,
}

/// The wall clock, in whole seconds (what a `Time` keeps once serialized).
pub fn now() -> Time {
    use k8s_openapi::jiff::Timestamp;
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

impl Context {
    /// A context with the wall clock.
    pub fn new(client: Client, data_plane: Arc<dyn DataPlane>, metrics: Arc<Metrics>) -> Self {
        Context { client, data_plane, metrics, clock: now }
    }
}

/// Reconciles one `KVCluster` (the controller's reconcile function).
pub async fn reconcile(kvc: Arc<KVCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = kvc.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<KVCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, kvc, |event| async {
        match event {
            Event::Apply(kvc) => apply(&kvc, &ctx).await,
            Event::Cleanup(kvc) => cleanup(&kvc, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    result
}

/// After a failed pass: count it by reason and retry soon.
pub fn error_policy(kvc: Arc<KVCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %kvc.name_any(), namespace = ?kvc.namespace(), error = %error, "reconcile failed");
    ctx.metrics.failures.with_label_values(&[error.metric_label()]).inc();
    Action::requeue(REQUEUE_ERROR)
}

/// Observes the cluster as it is.
async fn observe(kvc: &KVCluster, owner: &Owner, ctx: &Context) -> Result<Observed, Error> {
    let names = &owner.names;
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let statefulset = sts_api.get_opt(&names.cluster).await?.map(|s| StatefulSetState::from_object(&s));
    let count = statefulset.as_ref().map_or(0, |s| s.replicas);
    let nodes = probe_nodes(ctx.data_plane.as_ref(), names, count).await;
    Ok(Observed {
        generation: kvc.metadata.generation.unwrap_or(0),
        status_generation: kvc.status.as_ref().and_then(|s| s.observed_generation),
        created: was_created(kvc.status.as_ref()),
        previous: previous_layout(kvc.status.as_ref()),
        statefulset,
        nodes,
    })
}

async fn apply(kvc: &KVCluster, ctx: &Context) -> Result<Action, Error> {
    let owner = Owner::of(kvc)?;
    let observed = observe(kvc, &owner, ctx).await?;
    let plan = plan(&kvc.spec, &observed);
    let report = execute(&ctx.client, &ctx.metrics, &kvc.spec, &owner, &plan.steps).await?;

    let now = (ctx.clock)();
    let input = StatusInput {
        spec: &kvc.spec,
        old: kvc.status.as_ref(),
        observed: &observed,
        exec_blocked: &report.blocked,
        now: &now,
    };
    let status = build(&input, &plan);
    if kvc.status.as_ref() != Some(&status) {
        let api: Api<KVCluster> = Api::namespaced(ctx.client.clone(), &owner.names.namespace);
        let patch = json!({ "apiVersion": "ringkv.io/v1alpha1", "kind": "KVCluster", "status": status });
        api.patch_status(&owner.names.cluster, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await?;
    }
    for b in plan.blocked().chain(report.blocked.iter()) {
        tracing::info!(cluster = %owner.names.cluster, reason = b.reason, "{}", b.message);
    }

    Ok(if kvc.spec.paused {
        Action::requeue(REQUEUE_PAUSED)
    } else if plan.steps.iter().any(|s| s.is_wait()) {
        Action::requeue(REQUEUE_WAITING)
    } else {
        Action::requeue(REQUEUE_STABLE)
    })
}

/// The KVCluster is being deleted: owned objects go by garbage collection; the volumes
/// go too only when `pvcRetention` is `Delete` (they carry no owner reference).
async fn cleanup(kvc: &KVCluster, ctx: &Context) -> Result<Action, Error> {
    if kvc.spec.pvc_retention == PvcRetention::Delete {
        let owner = Owner::of(kvc)?;
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &owner.names.namespace);
        let selector = owner.names.selector();
        api.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&selector)).await?;
        tracing::info!(cluster = %owner.names.cluster, "deleted the cluster's volume claims (pvcRetention: Delete)");
    }
    Ok(Action::await_change())
}
