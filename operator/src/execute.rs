//! The executor: carries out a plan's Kubernetes steps through the API server.
//!
//! Object steps are server-side applies with the operator's field manager (forced, so
//! the operator owns the fields it sets), idempotent and safe to repeat on every pass.
//! Wait and Blocked steps make no calls: they are counted and end up in status. When
//! data-plane steps exist (splits, replica moves), they will run one per pass, only once
//! no wait is pending, and resume from what the nodes report after an operator restart.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde::Serialize;

use crate::crd::KVClusterSpec;
use crate::error::is_not_found;
use crate::metrics::Metrics;
use crate::plan::{Blocked, Step};
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

/// Executes `steps` for the cluster `owner` describes.
pub async fn execute(client: &Client, metrics: &Metrics, spec: &KVClusterSpec, owner: &Owner, steps: &[Step]) -> Result<Report, Error> {
    let ns = owner.names.namespace.as_str();
    let name = owner.names.cluster.as_str();
    let mut report = Report::default();
    for step in steps {
        match step {
            Step::ApplyPeerService => {
                let api: Api<Service> = Api::namespaced(client.clone(), ns);
                apply(&api, &owner.names.peers, &resources::peer_service(owner)).await?;
            }
            Step::ApplyClientService => {
                let api: Api<Service> = Api::namespaced(client.clone(), ns);
                apply(&api, name, &resources::client_service(spec, owner)).await?;
            }
            Step::ApplyDisruptionBudget => {
                let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
                apply(&api, name, &resources::disruption_budget(owner)).await?;
            }
            Step::ApplyServiceMonitor => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), ns, &resources::service_monitor_resource());
                match apply(&api, name, &resources::service_monitor(spec, owner)).await {
                    Err(Error::Kube(e)) if is_not_found(&e) => report.blocked.push(Blocked {
                        reason: "ServiceMonitorCRDMissing",
                        message: "spec.monitoring.serviceMonitor.enabled is true but the ServiceMonitor CRD \
                                  (monitoring.coreos.com/v1) is not installed"
                            .to_string(),
                    }),
                    other => other?,
                }
            }
            Step::DeleteServiceMonitor => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), ns, &resources::service_monitor_resource());
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    // Absent, or its CRD is not installed: nothing to delete.
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Step::ApplyStatefulSet(layout) => {
                let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
                apply(&api, name, &resources::statefulset(spec, owner, *layout)).await?;
            }
            Step::WaitForRollout { .. } | Step::WaitForNodes { .. } | Step::WaitForRing | Step::Blocked(_) => {}
        }
        metrics.steps.with_label_values(&[step.name()]).inc();
    }
    Ok(report)
}
