//! The executor: carries out a plan's Kubernetes steps through the API server.
//!
//! Object steps are server-side applies with the operator's field manager (forced, so
//! the operator owns the fields it sets), idempotent and safe to repeat on every pass.
//! An object the API server refuses as invalid is reported (`Degraded`, reason
//! `InvalidSpec`), not retried as a failure: only a spec change can fix it.
//! Wait and Blocked steps make no calls: they are counted and end up in status. The one
//! data-plane step a plan may hold runs after them through [`DataPlane::execute`] (the
//! planning library's driver, in a task of its own: see [`crate::inflight`]), and
//! [`execute_data`] turns the driver's answer into a
//! [`DataOutcome`]: a failure is retried by the next pass, which plans again from what
//! the nodes then report; a refusal (a step the driver cannot do) becomes `Degraded`.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::Client;
use serde::Serialize;

use ringkv_ctl::driver::{Cluster, DriverError};

use crate::certificates;
use crate::crd::KVClusterSpec;
use crate::error::is_not_found;
use crate::metrics::Metrics;
use crate::observe::{ClientTls, DataPlane};
use crate::plan::{data_step_name, describe, Blocked, Step};
use crate::resources::{self, Owner, FIELD_MANAGER};
use crate::Error;

/// What the executor could not do without failing the pass.
#[derive(Debug, Default)]
pub struct Report {
    pub blocked: Vec<Blocked>,
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.patch(name, &apply_params(), &Patch::Apply(obj)).await?;
    Ok(())
}

/// What to report when the API server refuses an object as invalid (422): a value the
/// CRD schema lets through but Kubernetes does not (a bad toleration; a malformed
/// quantity in `resources` from before the schema checked them). Retrying cannot help
/// until the spec changes, so it is `Degraded` with the API server's own message, not a
/// failed pass retried forever. Server-side apply answers some of these with a 500 (seen
/// on a real API server: "failed to create typed patch object (…): quantities must match
/// the regular expression …"): those are refusals of the object too.
fn refused(result: Result<(), Error>, what: &str, name: &str, report: &mut Report) -> Result<(), Error> {
    let invalid = |s: &kube::core::Status| {
        s.code == 422
            || (s.code == 500
                && (s.message.contains("failed to create typed patch object")
                    || s.message.contains("quantities must match")))
    };
    match result {
        Err(Error::Kube(kube::Error::Api(status))) if invalid(&status) => {
            report.blocked.push(Blocked {
                reason: "InvalidSpec",
                message: format!("the API server refused {what} {name}; fix the KVCluster spec: {}", status.message),
            });
            Ok(())
        }
        other => other,
    }
}

/// Whether `meta` names the object with `uid` among its owners.
fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|r| r.uid == uid)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Executes `steps` for the cluster `owner` describes.
/// `requested`: the renew annotation's value; `now`: Unix seconds, for certificates.
pub async fn execute(
    client: &Client,
    metrics: &Metrics,
    spec: &KVClusterSpec,
    owner: &Owner,
    steps: &[Step],
    requested: Option<&str>,
    now: i64,
) -> Result<Report, Error> {
    let ns = owner.names.namespace.as_str();
    let name = owner.names.cluster.as_str();
    let mut report = Report::default();
    for step in steps {
        match step {
            Step::ApplyPeerService => {
                let api: Api<Service> = Api::namespaced(client.clone(), ns);
                let result = apply(&api, &owner.names.peers, &resources::peer_service(owner)).await;
                refused(result, "the Service", &owner.names.peers, &mut report)?;
            }
            Step::ApplyClientService => {
                let api: Api<Service> = Api::namespaced(client.clone(), ns);
                let result = apply(&api, name, &resources::client_service(spec, owner)).await;
                refused(result, "the Service", name, &mut report)?;
            }
            Step::ApplyDisruptionBudget => {
                let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
                let result = apply(&api, name, &resources::disruption_budget(owner)).await;
                refused(result, "the PodDisruptionBudget", name, &mut report)?;
            }
            Step::ApplyNetworkPolicy(operator) => {
                let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
                let name = owner.names.network_policy();
                let result = apply(&api, &name, &resources::network_policy(owner, operator)).await;
                refused(result, "the NetworkPolicy", &name, &mut report)?;
            }
            Step::IssueCa => certificates::issue_ca(client, owner, now).await?,
            Step::IssueCertificate(why) => {
                certificates::issue_certificate(client, owner, *why, requested, now).await?;
            }
            Step::ApplyCaBundle => certificates::apply_ca_bundle(client, owner).await?,
            Step::ApplyServiceMonitor(tls) => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), ns, &resources::service_monitor_resource());
                match apply(&api, name, &resources::service_monitor(spec, owner, tls)).await {
                    Err(Error::Kube(e)) if is_not_found(&e) => report.blocked.push(Blocked {
                        reason: "ServiceMonitorCRDMissing",
                        message: "spec.monitoring.serviceMonitor.enabled is true but the ServiceMonitor CRD \
                                  (monitoring.coreos.com/v1) is not installed"
                            .to_string(),
                    }),
                    other => refused(other, "the ServiceMonitor", name, &mut report)?,
                }
            }
            Step::DeleteServiceMonitor => {
                // Only the one this operator made (owned by this KVCluster): a user's own
                // ServiceMonitor under the same name is left alone (one was deleted
                // when every ServiceMonitor of that name was).
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), ns, &resources::service_monitor_resource());
                let existing = match api.get_opt(name).await {
                    Ok(found) => found,
                    // Its CRD is not installed: nothing to delete.
                    Err(e) if is_not_found(&e) => None,
                    Err(e) => return Err(e.into()),
                };
                let ours =
                    existing.filter(|sm| owned_by(&sm.metadata, &owner.reference.uid)).and_then(|sm| sm.metadata.uid);
                if let Some(uid) = ours {
                    // The precondition makes sure it is still the object just checked.
                    let params = DeleteParams {
                        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                        ..Default::default()
                    };
                    match api.delete(name, &params).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Step::ApplyStatefulSet(layout, tls) => {
                let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
                let result = apply(&api, name, &resources::statefulset(spec, owner, *layout, tls)).await;
                refused(result, "the StatefulSet", name, &mut report)?;
            }
            // Run by `execute_data` and counted there.
            Step::Data(_) => continue,
            Step::WaitForRollout { .. }
            | Step::WaitForNodes { .. }
            | Step::WaitForRing
            | Step::WaitForPlanner(_)
            | Step::WaitForStep(_)
            | Step::Blocked(_) => {}
        }
        metrics.steps.with_label_values(&[step.name()]).inc();
    }
    Ok(report)
}

/// How the one data-plane step of a pass went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataOutcome {
    /// The nodes accepted the step.
    Done(ringkv_plan::Step),
    /// It failed on the way (a node did not answer, a leader moved): the next pass
    /// observes and plans again.
    Failed(ringkv_plan::Step, String),
    /// The driver cannot execute this step (it answered `Blocked`): reported as
    /// `Degraded`, and tried again by every pass, so a driver that learns it just works.
    Blocked(ringkv_plan::Step, String),
}

impl DataOutcome {
    /// What `Degraded` says when the driver refuses the step.
    pub fn blocked(&self) -> Option<Blocked> {
        match self {
            DataOutcome::Blocked(step, why) => Some(Blocked {
                reason: "StepBlocked",
                message: format!("the next step, {}, cannot be executed: {why}", describe(step)),
            }),
            _ => None,
        }
    }
}

/// Executes `step`, planned from `cluster`, through the nodes' admin API.
pub async fn execute_data(
    data_plane: &dyn DataPlane,
    metrics: &Metrics,
    cluster: &Cluster,
    step: &ringkv_plan::Step,
    tls: Option<&ClientTls>,
) -> DataOutcome {
    match data_plane.execute(cluster, step, tls).await {
        Ok(()) => {
            metrics.steps.with_label_values(&[data_step_name(step)]).inc();
            DataOutcome::Done(step.clone())
        }
        Err(DriverError::Blocked(why)) => DataOutcome::Blocked(step.clone(), why),
        Err(e) => {
            metrics.steps.with_label_values(&["data_step_failed"]).inc();
            DataOutcome::Failed(step.clone(), e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> Result<(), Error> {
        let mut status = kube::core::Status::failure(message, "InternalError");
        status.code = code;
        Err(Error::Kube(kube::Error::Api(Box::new(status))))
    }

    #[test]
    fn refusals_of_the_object_are_invalid_spec_and_the_rest_retried() {
        let quantity = "failed to create typed patch object (default/demo; apps/v1, Kind=StatefulSet): \
            .spec.template.spec.containers[name=\"node\"].resources.requests.cpu: quantities must match \
            the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
        for (code, message, invalid) in [
            (422, "StatefulSet.apps \"demo\" is invalid", true),
            (500, quantity, true),
            (500, "etcdserver: request timed out", false),
            (409, "conflict", false),
        ] {
            let mut report = Report::default();
            let out = refused(api_error(code, message), "the StatefulSet", "demo", &mut report);
            assert_eq!(out.is_ok(), invalid, "{code} {message}");
            assert_eq!(report.blocked.len(), usize::from(invalid), "{code} {message}");
            if invalid {
                assert_eq!(report.blocked[0].reason, "InvalidSpec");
                assert!(report.blocked[0].message.contains(message), "{}", report.blocked[0].message);
            }
        }
    }
}
