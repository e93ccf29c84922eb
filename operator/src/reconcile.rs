//! One reconcile pass: finalizer, observe, plan, execute (the Kubernetes steps, then at
//! most one data-plane step), write status, publish Events.
//!
//! Level-triggered: every pass starts from what exists (the StatefulSet, the nodes'
//! answers and their ring, the last status), so a restarted operator resumes where the
//! cluster is. The one thing kept between passes is the data-plane step in flight
//! ([`crate::inflight`]): a pass never waits for a slow step beyond a short grace, and
//! a restart that loses the step simply plans again from the ring.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::crd::{KVCluster, PvcRetention, FINALIZER};
use ringkv_ctl::driver::Cluster;

use crate::certificates::{self, ClientCerts};
use crate::events;
use crate::execute::{execute, execute_data, DataOutcome};
use crate::inflight::{InFlight, Key, Poll, Running};
use crate::metrics::Metrics;
use crate::observe::{
    planner_view, previous_layout, probe_nodes, was_created, ClientTls, DataPlane, Observed, StatefulSetState,
};
use crate::plan::{plan, tls_mode, Step};
use crate::resources::{OperatorPods, Owner, FIELD_MANAGER};
use crate::status::{build, StatusInput};
use crate::Error;

/// How often a settled cluster is looked at again. The data plane sends no events, and
/// a node can turn unready (a shard without a leader) before its pod's readiness probe
/// fails three times and the StatefulSet's status wakes the operator: `Ready` follows
/// within this (it was 60 s, which the real cluster showed as a stale `Ready=True`).
/// A pass costs two small GETs per node.
pub const REQUEUE_STABLE: Duration = Duration::from_secs(15);
/// How often a cluster that is starting or rolling is looked at.
pub const REQUEUE_WAITING: Duration = Duration::from_secs(10);
/// How often a paused cluster's status is refreshed.
pub const REQUEUE_PAUSED: Duration = Duration::from_secs(300);
/// Retry delay after a failed pass.
pub const REQUEUE_ERROR: Duration = Duration::from_secs(15);
/// How soon the next data-plane step is planned after one ran (or the planner waits
/// for one in flight, or a step's task is still running).
pub const REQUEUE_STEP: Duration = Duration::from_secs(3);
/// How long a pass waits for the data-plane step it started before leaving it in
/// flight (most splits and leader moves end within it; a replica catching up does not).
pub const STEP_GRACE: Duration = Duration::from_secs(2);

/// What every reconcile pass shares.
pub struct Context {
    /// The Kubernetes client (a mocked service in tests).
    pub client: Client,
    /// How the nodes are reached.
    pub data_plane: Arc<dyn DataPlane>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Events about the clusters.
    pub recorder: Recorder,
    /// The clock used for condition and operation times.
    pub clock: fn() -> Time,
    /// The data-plane steps still running, one per cluster at most.
    pub in_flight: Arc<InFlight>,
    /// How long a pass waits for the step it started ([`STEP_GRACE`]).
    pub step_grace: Duration,
    /// The operator's pods, let in by the NetworkPolicy each cluster gets (`None`: none).
    pub network_policy: Option<OperatorPods>,
    /// The operator's client certificates for clusters with `Managed` TLS.
    pub client_certs: ClientCerts,
}

/// The wall clock, in whole seconds (what a `Time` keeps once serialized).
pub fn now() -> Time {
    use k8s_openapi::jiff::Timestamp;
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// The Events' reporting controller; `instance` is the operator replica (its pod name).
pub fn reporter(instance: Option<String>) -> Reporter {
    Reporter { controller: FIELD_MANAGER.to_string(), instance }
}

impl Context {
    /// A context with the wall clock.
    pub fn new(
        client: Client,
        data_plane: Arc<dyn DataPlane>,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), reporter(instance));
        Context {
            client,
            data_plane,
            metrics,
            recorder,
            clock: now,
            in_flight: Arc::new(InFlight::new()),
            step_grace: STEP_GRACE,
            network_policy: None,
            client_certs: ClientCerts::default(),
        }
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

/// Observes the cluster as it is; also returns the driver's observation, from which a
/// planner step is executed (it holds the nodes' addresses), and how the nodes are
/// reached. `in_flight`: the step an earlier pass started that still runs.
async fn observe(
    kvc: &KVCluster,
    owner: &Owner,
    ctx: &Context,
    in_flight: Option<&Running>,
) -> Result<(Observed, Option<Cluster>, Option<ClientTls>), Error> {
    let names = &owner.names;
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let statefulset = sts_api.get_opt(&names.cluster).await?.map(|s| StatefulSetState::from_object(&s));
    let status = kvc.status.as_ref();
    // The TLS in force decides which certificates are read and how the nodes are reached.
    let mut observed = Observed { statefulset, created: was_created(status), ..Observed::default() };
    observed.tls.recorded = status.and_then(|s| s.tls.as_ref()).map(|t| t.mode);
    let mode = tls_mode(&kvc.spec, &observed);
    let now = (ctx.clock)().0.as_second();
    let (tls, client_tls) = certificates::observe(&ctx.client, kvc, names, mode, now, &ctx.client_certs).await?;
    let statefulset = observed.statefulset.take();
    let count = statefulset.as_ref().map_or(0, |s| s.replicas);
    let nodes = probe_nodes(ctx.data_plane.as_ref(), names, count, client_tls.as_ref()).await;
    let seeds: Vec<String> = (1..=count).map(|id| names.internal_addr(id)).collect();
    let cluster = if seeds.is_empty() { None } else { ctx.data_plane.ring(&seeds, client_tls.as_ref()).await.ok() };
    let observed = Observed {
        tls,
        generation: kvc.metadata.generation.unwrap_or(0),
        status_generation: status.and_then(|s| s.observed_generation),
        created: was_created(status),
        previous: previous_layout(status),
        ring: cluster.as_ref().map(|c| planner_view(c, &nodes)),
        operation: status.and_then(|s| s.current_operation.as_ref()).map(|o| o.type_.clone()),
        statefulset,
        nodes,
        in_flight: in_flight.map(|r| r.step.clone()),
    };
    Ok((observed, cluster, client_tls))
}

async fn apply(kvc: &KVCluster, ctx: &Context) -> Result<Action, Error> {
    let owner = Owner::of(kvc)?;
    let key = Key::of(&owner.names);
    let uid = kvc.metadata.uid.as_deref().ok_or(Error::MissingField("metadata.uid"))?;
    let mut unreported = None;
    let r = pass(kvc, ctx, &owner, key.clone(), uid, &mut unreported).await;
    if let (Err(_), Some(outcome)) = (&r, unreported) {
        // The step happened; a failed pass must not lose its status line and Event.
        ctx.in_flight.hand_back(key, uid, outcome);
    }
    r
}

/// One reconcile pass. `unreported` holds a data-plane step's outcome from when the pass
/// takes it until its status is written.
async fn pass(
    kvc: &KVCluster,
    ctx: &Context,
    owner: &Owner,
    key: Key,
    uid: &str,
    unreported: &mut Option<DataOutcome>,
) -> Result<Action, Error> {
    // Before observing: a step that ended since the last pass is reported by this one,
    // and the ring observed next already shows its effect.
    let (mut data, mut in_flight) = match ctx.in_flight.poll(&key, uid) {
        Poll::Idle => (None, None),
        Poll::Running(r) => (None, Some(r)),
        Poll::Finished(outcome) => (Some(outcome), None),
    };
    unreported.clone_from(&data);
    let (observed, cluster, client_tls) = observe(kvc, owner, ctx, in_flight.as_ref()).await?;
    let mut plan = plan(&kvc.spec, &observed);
    // Operator configuration, not spec: applied first, so the pods start behind it.
    if let Some(from) = ctx.network_policy.as_ref().filter(|_| !kvc.spec.paused) {
        plan.steps.insert(0, Step::ApplyNetworkPolicy(from.clone()));
    }
    let now_secs = (ctx.clock)().0.as_second();
    let requested = certificates::requested(kvc);
    let mut report =
        execute(&ctx.client, &ctx.metrics, &kvc.spec, owner, &plan.steps, requested.as_deref(), now_secs).await?;
    // One data-plane step, after the Kubernetes steps (the plan holds one only when
    // nothing waits, a step in flight included, and always with the driver's observation
    // it came from). A pass that reported an ended step starts the next on the next pass.
    if let (None, Some(step), Some(c)) = (&data, plan.data_step(), &cluster) {
        match start_step(ctx, key, uid, step, c, client_tls.as_ref()).await {
            Ok(outcome) => data = Some(outcome),
            Err(running) => in_flight = Some(running),
        }
        unreported.clone_from(&data);
    }
    report.blocked.extend(data.as_ref().and_then(|d| d.blocked()));

    let now = (ctx.clock)();
    let input = StatusInput {
        spec: &kvc.spec,
        old: kvc.status.as_ref(),
        observed: &observed,
        exec_blocked: &report.blocked,
        data: data.as_ref(),
        in_flight: in_flight.as_ref(),
        now: &now,
    };
    let status = build(&input, &plan);
    if kvc.status.as_ref() != Some(&status) {
        let api: Api<KVCluster> = Api::namespaced(ctx.client.clone(), &owner.names.namespace);
        let patch = json!({ "apiVersion": "ringkv.io/v1alpha1", "kind": "KVCluster", "status": status });
        api.patch_status(&owner.names.cluster, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await?;
    }
    *unreported = None; // in the status now; the Event follows
    for b in plan.blocked().chain(report.blocked.iter()) {
        tracing::info!(cluster = %owner.names.cluster, reason = b.reason, "{}", b.message);
    }
    let pods = observed.statefulset.as_ref().map(|s| s.replicas);
    let mut notes = events::notes(&owner.names.cluster, pods, plan.layout().map(|l| l.nodes), data.as_ref());
    notes.extend(plan.steps.iter().find_map(|s| match s {
        Step::IssueCertificate(why) => Some(events::certificate_note(&owner.names.cluster, why.as_str())),
        _ => None,
    }));
    events::publish(&ctx.recorder, kvc, notes).await;

    let stepping = data.is_some() || plan.steps.iter().any(|s| matches!(s, Step::WaitForPlanner(_)));
    Ok(if in_flight.is_some() {
        // Even when paused: the step's outcome is picked up and reported.
        Action::requeue(REQUEUE_STEP)
    } else if kvc.spec.paused {
        Action::requeue(REQUEUE_PAUSED)
    } else if stepping {
        Action::requeue(REQUEUE_STEP)
    } else if plan.steps.iter().any(|s| s.is_wait()) {
        Action::requeue(REQUEUE_WAITING)
    } else {
        Action::requeue(REQUEUE_STABLE)
    })
}

/// Starts `step`, planned from `cluster`, in a task of its own; its outcome if it ended
/// within the grace, else the step left in flight.
async fn start_step(
    ctx: &Context,
    key: Key,
    uid: &str,
    step: &ringkv_plan::Step,
    cluster: &Cluster,
    tls: Option<&ClientTls>,
) -> Result<DataOutcome, Running> {
    let running = Running { step: step.clone(), since: (ctx.clock)() };
    let (data_plane, metrics, cluster, step, tls) =
        (ctx.data_plane.clone(), ctx.metrics.clone(), cluster.clone(), step.clone(), tls.cloned());
    let run = async move { execute_data(data_plane.as_ref(), &metrics, &cluster, &step, tls.as_ref()).await };
    let cluster = key.name.clone();
    let started = ctx.in_flight.start(key, uid, running, ctx.step_grace, run).await;
    if let Err(r) = &started {
        tracing::info!(%cluster, step = %r.step.describe(), "data-plane step still running; a later pass reports it");
    }
    started
}

/// The KVCluster is being deleted: owned objects go by garbage collection; the volumes
/// go too only when `pvcRetention` is `Delete` (they carry no owner reference).
async fn cleanup(kvc: &KVCluster, ctx: &Context) -> Result<Action, Error> {
    if let Ok(names) = crate::resources::Names::of(kvc) {
        ctx.in_flight.forget(&Key::of(&names));
        ctx.client_certs.forget(&names);
    }
    if kvc.spec.pvc_retention == PvcRetention::Delete {
        let owner = Owner::of(kvc)?;
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &owner.names.namespace);
        let selector = owner.names.selector();
        api.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&selector)).await?;
        tracing::info!(cluster = %owner.names.cluster, "deleted the cluster's volume claims (pvcRetention: Delete)");
    }
    Ok(Action::await_change())
}
