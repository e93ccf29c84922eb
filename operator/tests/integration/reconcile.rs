//! Reconcile passes against a scripted API server: every call is expected, in order.

use http::Method;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use ringkv_operator::crd::{KVCluster, KVClusterStatus, FINALIZER};
use ringkv_operator::reconcile::{REQUEUE_ERROR, REQUEUE_PAUSED, REQUEUE_STABLE, REQUEUE_WAITING};
use ringkv_operator::resources::tls::{self, Pem};
use ringkv_operator::resources::{NodeLayout, Owner, PodTls};
use serde_json::{json, Value};

use crate::support::api::{Exchange, Reply};
use crate::support::{
    fixed_now, kvc, path, reconcile_once, statefulset_object, statefulset_object_with, FakeDataPlane,
};

pub(crate) fn get_sts(reply: Reply) -> Exchange {
    Exchange::new(Method::GET, path::STS, reply)
}
pub(crate) fn apply(path: &str) -> Exchange {
    Exchange::new(Method::PATCH, path, Reply::Echo)
}
/// The three applies every active pass makes before the StatefulSet.
pub(crate) fn apply_services() -> Vec<Exchange> {
    vec![apply(path::PEERS), apply(path::CLIENT), apply(path::PDB)]
}
/// After a spec change with monitoring off: look for the cluster's ServiceMonitor to
/// delete it (there is none).
pub(crate) fn delete_absent_service_monitor() -> Exchange {
    Exchange::new(Method::GET, path::SM, Reply::Error(404))
}
pub(crate) fn patch_status() -> Exchange {
    let whole = serde_json::to_value(kvc(json!({}), 1)).expect("json");
    Exchange::new(Method::PATCH, path::KVC_STATUS, Reply::Merge(whole))
}

pub(crate) fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("condition {type_} in {status}"))
}

pub(crate) fn env(sts: &Value, name: &str) -> Value {
    sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .map(|v| v["value"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_new_cluster_gets_the_finalizer_before_anything_else() {
    let mut k = kvc(json!({}), 1);
    k.metadata.finalizers = None;
    let script = vec![Exchange::new(
        Method::PATCH,
        path::KVC,
        Reply::Json(serde_json::to_value(kvc(json!({}), 1)).expect("json")),
    )];
    let pass = reconcile_once(k, FakeDataPlane::default(), script).await;
    assert_eq!(pass.action(), Action::await_change());
    let patch = pass.body(&Method::PATCH, path::KVC);
    assert!(patch.to_string().contains(FINALIZER), "{patch}");
}

#[tokio::test]
async fn creating_applies_owned_objects_and_reports_creating() {
    let mut script = vec![get_sts(Reply::Error(404))];
    script.extend(apply_services());
    script.extend([apply(path::STS), patch_status()]);
    let spec = json!({"shards": 8, "nodes": 3, "tls": {"mode": "Disabled"}});
    let pass = reconcile_once(kvc(spec, 1), FakeDataPlane::default(), script).await;
    assert_eq!(pass.action(), Action::requeue(REQUEUE_WAITING));

    for call in pass.calls.iter().filter(|c| c.method == Method::PATCH) {
        assert!(call.query.contains("fieldManager=ringkv-operator"), "server-side apply: {}", call.query);
    }
    let sts = pass.body(&Method::PATCH, path::STS);
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(sts["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(env(sts, "RINGKV_SHARDS"), "8");

    let status = pass.body(&Method::PATCH, path::KVC_STATUS);
    assert_eq!(status["status"]["phase"], "Creating");
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(condition(status, "Progressing")["status"], "True");
    assert_eq!(condition(status, "Progressing")["reason"], "Creating");
    assert_eq!(condition(status, "Ready")["reason"], "NotCreated");
    assert_eq!(status["status"]["currentOperation"]["type"], "Create");
    assert_eq!(pass.metrics.steps.with_label_values(&["apply_statefulset"]).get(), 1);
}

/// The status a healthy 3-node cluster at generation 1 has.
pub(crate) async fn settled_status() -> KVClusterStatus {
    let k = kvc(json!({}), 1);
    let mut script = vec![get_sts(Reply::Json(statefulset_object(&k, NodeLayout::new(3, 4), 3, false)))];
    script.extend(apply_services());
    script.extend([apply(path::STS), patch_status()]);
    let pass = reconcile_once(k, FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]), script).await;
    assert_eq!(pass.action(), Action::requeue(REQUEUE_STABLE));
    serde_json::from_value(pass.body(&Method::PATCH, path::KVC_STATUS)["status"].clone()).expect("status")
}

#[tokio::test]
async fn a_settled_cluster_is_running_and_writes_no_status_twice() {
    let status = settled_status().await;
    assert_eq!(serde_json::to_value(status.phase).expect("json"), "Running");
    assert_eq!((status.nodes, status.ready_nodes, status.shards, status.ring_epoch), (3, 3, Some(4), Some(1)));

    // The same cluster again, with that status: applies, but no status write.
    let mut k = kvc(json!({}), 1);
    k.status = Some(status);
    let mut script = vec![get_sts(Reply::Json(statefulset_object(&k, NodeLayout::new(3, 4), 3, false)))];
    script.extend(apply_services());
    script.push(apply(path::STS));
    let pass = reconcile_once(k, FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]), script).await;
    pass.action();
}

#[tokio::test]
async fn a_paused_cluster_gets_no_changes_only_status_saying_so() {
    let old = settled_status().await;
    let mut k = kvc(json!({"paused": true, "nodes": 5, "shards": 8, "image": "example/other:2"}), 2);
    k.status = Some(old);
    let script = vec![get_sts(Reply::Json(statefulset_object(&k, NodeLayout::new(3, 4), 3, false))), patch_status()];
    let pass = reconcile_once(k, FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]), script).await;
    assert_eq!(pass.action(), Action::requeue(REQUEUE_PAUSED));
    assert!(pass.executed.is_empty(), "no split while paused: {:?}", pass.executed);
    let status = pass.body(&Method::PATCH, path::KVC_STATUS);
    let progressing = condition(status, "Progressing");
    assert_eq!((&progressing["status"], &progressing["reason"]), (&json!("False"), &json!("Paused")));
    assert_eq!(progressing["observedGeneration"], 2);
    assert_eq!(status["status"]["phase"], "Paused");
}

#[tokio::test]
async fn a_missing_servicemonitor_crd_is_reported_not_retried_as_a_failure() {
    let old = settled_status().await;
    let mut k = kvc(json!({"monitoring": {"serviceMonitor": {"enabled": true}}}), 2);
    k.status = Some(old);
    let mut script = vec![get_sts(Reply::Json(statefulset_object(&k, NodeLayout::new(3, 4), 3, false)))];
    script.extend(apply_services());
    script.extend([Exchange::new(Method::PATCH, path::SM, Reply::Error(404)), apply(path::STS), patch_status()]);
    let pass = reconcile_once(k, FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]), script).await;
    pass.action();
    let degraded = condition(pass.body(&Method::PATCH, path::KVC_STATUS), "Degraded");
    assert_eq!(degraded["reason"], "ServiceMonitorCRDMissing");
}

#[tokio::test]
async fn deleting_with_pvc_retention_delete_removes_the_claims_then_the_finalizer() {
    let mut k = kvc(json!({"pvcRetention": "Delete"}), 2);
    k.metadata.deletion_timestamp = Some(crate::support::fixed_now());
    let empty_list = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": []});
    let script = vec![
        Exchange::new(Method::DELETE, path::PVCS, Reply::Json(empty_list)),
        Exchange::new(Method::PATCH, path::KVC, Reply::Json(serde_json::to_value(kvc(json!({}), 2)).expect("json"))),
    ];
    let pass = reconcile_once(k, FakeDataPlane::default(), script).await;
    assert_eq!(pass.action(), Action::await_change());
    let delete = &pass.calls[0];
    assert!(delete.query.contains("labelSelector="), "{}", delete.query);
    assert!(delete.query.contains("app.kubernetes.io%2Finstance%3Ddemo"), "{}", delete.query);
    let remove = pass.body(&Method::PATCH, path::KVC).to_string();
    assert!(remove.contains("remove") && remove.contains("/metadata/finalizers/0"), "{remove}");
}

#[tokio::test]
async fn deleting_with_pvc_retention_retain_keeps_the_claims() {
    let mut k = kvc(json!({}), 2);
    k.metadata.deletion_timestamp = Some(crate::support::fixed_now());
    let script = vec![Exchange::new(
        Method::PATCH,
        path::KVC,
        Reply::Json(serde_json::to_value(kvc(json!({}), 2)).expect("json")),
    )];
    let pass = reconcile_once(k, FakeDataPlane::default(), script).await;
    assert_eq!(pass.action(), Action::await_change());
}

#[tokio::test]
async fn an_api_failure_fails_the_pass_and_is_counted_by_reason() {
    let pass = reconcile_once(kvc(json!({}), 1), FakeDataPlane::default(), vec![get_sts(Reply::Error(500))]).await;
    let err = pass.result.expect_err("a failed pass");
    assert_eq!(err.metric_label(), "api_error");
    assert_eq!(pass.ctx_error_policy, Some(Action::requeue(REQUEUE_ERROR)));
    assert_eq!(pass.metrics.failures.with_label_values(&["api_error"]).get(), 1);
    assert_eq!(pass.metrics.reconciles.get(), 1);
    assert!(pass.metrics.render().contains("ringkv_operator_reconcile_failures_total{reason=\"api_error\"} 1"));
}

#[tokio::test]
async fn an_object_the_api_server_refuses_is_degraded_with_its_message_not_a_failed_pass() {
    let old = settled_status().await;
    // A resources quantity the CRD schema lets through but Kubernetes refuses.
    let mut k = kvc(json!({"resources": {"requests": {"memory": "lots"}}}), 2);
    k.status = Some(old);
    let mut script = vec![get_sts(Reply::Json(statefulset_object(&k, NodeLayout::new(3, 4), 3, false)))];
    script.extend(apply_services());
    script.extend([
        delete_absent_service_monitor(),
        Exchange::new(Method::PATCH, path::STS, Reply::Error(422)),
        patch_status(),
    ]);
    let pass = reconcile_once(k, FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]), script).await;
    assert_eq!(pass.action(), Action::requeue(REQUEUE_STABLE), "not an error: retrying cannot help");
    let status = pass.body(&Method::PATCH, path::KVC_STATUS);
    let degraded = condition(status, "Degraded");
    assert_eq!((&degraded["status"], &degraded["reason"]), (&json!("True"), &json!("InvalidSpec")));
    let message = degraded["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused the StatefulSet demo") && message.contains("mock API server: Invalid"),
        "{message}"
    );
    assert_eq!(degraded["observedGeneration"], 2);
    assert_eq!(pass.metrics.failures.with_label_values(&["api_error"]).get(), 0);
}

#[tokio::test]
async fn with_monitoring_off_only_the_operators_own_servicemonitor_is_deleted() {
    // Seen on a real cluster: a user's ServiceMonitor named like the cluster was deleted
    // on every spec change. The pass stops at a refused StatefulSet, after the
    // ServiceMonitor step.
    let old = settled_status().await;
    let sm = |owners: Value| {
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "demo", "namespace": "prod", "uid": "sm-uid", "ownerReferences": owners}})
    };
    let theirs = sm(json!([]));
    let ours = sm(
        json!([{"apiVersion": "ringkv.io/v1alpha1", "kind": "KVCluster", "name": "demo", "uid": "uid-1", "controller": true}]),
    );
    for (found, deleted) in [(theirs, false), (ours, true)] {
        let mut k = kvc(json!({"resources": {"requests": {"memory": "300Mi"}}}), 2);
        k.status = Some(old.clone());
        let mut script = vec![get_sts(Reply::Json(statefulset_object(&k, NodeLayout::new(3, 4), 3, false)))];
        script.extend(apply_services());
        script.push(Exchange::new(Method::GET, path::SM, Reply::Json(found)));
        if deleted {
            script.push(Exchange::new(Method::DELETE, path::SM, Reply::Json(json!({}))));
        }
        script.extend([Exchange::new(Method::PATCH, path::STS, Reply::Error(422)), patch_status()]);
        let pass = reconcile_once(k, FakeDataPlane::nodes(3, 3, 4, &[1, 2, 3]), script).await;
        let deletes: Vec<_> = pass.calls.iter().filter(|c| c.method == Method::DELETE).collect();
        assert_eq!(deletes.len(), usize::from(deleted), "{:#?}", pass.calls);
        if deleted {
            assert_eq!(deletes[0].body["preconditions"]["uid"], "sm-uid", "deletes exactly the object it checked");
        }
    }
}

/// A pass over a running managed cluster up to its certificate steps: the StatefulSet,
/// the CA and the nodes' certificate read, the base objects applied.
fn managed_observed(k: &KVCluster, ca_json: &Value, node_json: Value) -> Vec<Exchange> {
    let sts = statefulset_object_with(k, NodeLayout::new(3, 4), 3, false, PodTls::Managed);
    let mut script = vec![
        get_sts(Reply::Json(sts)),
        Exchange::new(Method::GET, path::CA, Reply::Json(ca_json.clone())),
        Exchange::new(Method::GET, path::TLS, Reply::Json(node_json)),
    ];
    script.extend(apply_services());
    script
}

/// The CA Secret a test's API server answers with, and its PEM.
fn ca_secret() -> (Value, Pem) {
    let k = kvc(json!({}), 1);
    let owner = Owner::of(&k).expect("owner");
    let ca = tls::issue_ca(&owner.names, now()).expect("a CA");
    (serde_json::to_value(tls::ca_secret(&owner, &ca)).expect("json"), ca)
}

fn now() -> i64 {
    fixed_now().0.as_second()
}

fn text(secret: &Secret, key: &str) -> String {
    tls::secret_text(secret, key).unwrap_or_else(|| panic!("{key} in the Secret"))
}

#[tokio::test]
async fn creating_a_cluster_makes_its_ca_and_certificate_and_the_pods_mount_them() {
    let (ca_json, ca) = ca_secret();
    let mut script = vec![
        get_sts(Reply::Error(404)),
        Exchange::new(Method::GET, path::CA, Reply::Error(404)),
        Exchange::new(Method::GET, path::TLS, Reply::Error(404)),
    ];
    script.extend(apply_services());
    script.extend([
        Exchange::new(Method::POST, path::SECRETS, Reply::Echo),
        // The CA as the API server then has it (the test's, not the one just posted).
        Exchange::new(Method::GET, path::CA, Reply::Json(ca_json.clone())),
        apply(path::TLS),
        Exchange::new(Method::GET, path::CA, Reply::Json(ca_json)),
        apply(path::BUNDLE),
        apply(path::STS),
        patch_status(),
        Exchange::new(Method::POST, path::EVENTS, Reply::Echo),
    ]);
    let pass = reconcile_once(kvc(json!({}), 1), FakeDataPlane::default(), script).await;
    assert_eq!(pass.action(), Action::requeue(REQUEUE_WAITING));

    let made: Secret = serde_json::from_value(pass.body(&Method::POST, path::SECRETS).clone()).expect("a Secret");
    assert_eq!(made.metadata.name.as_deref(), Some("demo-ca"));
    assert!(text(&made, "ca.key").contains("PRIVATE KEY"));
    assert_eq!(made.metadata.owner_references.as_ref().expect("owned")[0].uid, "uid-1");

    let node: Secret = serde_json::from_value(pass.body(&Method::PATCH, path::TLS).clone()).expect("a Secret");
    assert_eq!(node.type_.as_deref(), Some("kubernetes.io/tls"));
    let cert = text(&node, "tls.crt");
    assert!(tls::signed_by(&cert, &ca.cert), "signed by the CA the API server holds");
    assert_eq!(text(&node, "ca.crt"), ca.cert);
    let names = tls::facts(&cert).expect("facts").dns_names;
    assert!(names.contains(&"*.demo-peers.prod.svc".to_string()) && names.contains(&"demo.prod.svc".to_string()));

    let bundle = pass.body(&Method::PATCH, path::BUNDLE);
    assert_eq!(bundle["data"]["ca.crt"], ca.cert.as_str());
    assert!(!bundle.to_string().contains("PRIVATE"), "no key in the bundle");

    let sts = pass.body(&Method::PATCH, path::STS);
    assert_eq!(env(sts, "RINGKV_INTERNAL_TLS_CA"), "/etc/ringkv/tls/ca.crt");
    assert_eq!(env(sts, "RINGKV_TLS_CERT"), "/etc/ringkv/tls/tls.crt");
    assert_eq!(env(sts, "RINGKV_TLS_CLIENT_CA"), Value::Null, "client certificates are not asked on the client port");
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][1]["secret"]["secretName"], "demo-tls");
    assert!(pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .all(|m| m.get("subPath").is_none()));
    assert_eq!(pod["containers"][0]["readinessProbe"]["httpGet"]["scheme"], "HTTPS");

    let status = pass.body(&Method::PATCH, path::KVC_STATUS);
    assert_eq!(status["status"]["tls"]["mode"], "Managed");
}

#[tokio::test]
async fn a_managed_cluster_is_reached_with_a_certificate_of_its_ca_and_reports_its_serial() {
    let (ca_json, ca) = ca_secret();
    let k = kvc(json!({}), 1);
    let owner = Owner::of(&k).expect("owner");
    let node = tls::issue_node(&ca, &owner.names, now()).expect("a certificate");
    let serial = tls::facts(&node.cert).expect("facts").serial;
    let node_json = serde_json::to_value(tls::node_secret(&owner, &node, &ca.cert, None)).expect("json");
    let mut script = managed_observed(&k, &ca_json, node_json);
    script.extend([
        Exchange::new(Method::GET, path::CA, Reply::Json(ca_json)),
        apply(path::BUNDLE),
        apply(path::STS),
        patch_status(),
    ]);
    let dp = FakeDataPlane::default();
    let reached = dp.reached.clone();
    let pass = reconcile_once(k, dp, script).await;
    pass.action();
    let reached = reached.lock().expect("lock").clone();
    let ca_serial = tls::facts(&ca.cert).expect("facts").serial;
    assert!(
        !reached.is_empty() && reached.iter().all(|r| r.as_ref().is_some_and(|id| id.contains(&ca_serial))),
        "{reached:?}"
    );
    let status = pass.body(&Method::PATCH, path::KVC_STATUS);
    assert_eq!(status["status"]["tls"]["serial"], serial.as_str());
    assert_eq!(status["status"]["tls"]["mode"], "Managed");
    // Not due: no new certificate was issued (no PATCH of demo-tls above).
}

#[tokio::test]
async fn a_renewal_asked_by_annotation_issues_a_new_certificate_once() {
    let (ca_json, ca) = ca_secret();
    let mut k = kvc(json!({}), 1);
    k.metadata.annotations = Some([(tls::RENEW_ANNOTATION.to_string(), "7".to_string())].into());
    let owner = Owner::of(&k).expect("owner");
    let node = tls::issue_node(&ca, &owner.names, now()).expect("a certificate");
    let node_json = serde_json::to_value(tls::node_secret(&owner, &node, &ca.cert, None)).expect("json");
    let mut script = managed_observed(&k, &ca_json, node_json);
    script.extend([
        Exchange::new(Method::GET, path::CA, Reply::Json(ca_json.clone())),
        apply(path::TLS),
        Exchange::new(Method::GET, path::CA, Reply::Json(ca_json)),
        apply(path::BUNDLE),
        apply(path::STS),
        patch_status(),
        Exchange::new(Method::POST, path::EVENTS, Reply::Echo),
    ]);
    let pass = reconcile_once(k, FakeDataPlane::default(), script).await;
    pass.action();
    let event = pass.body(&Method::POST, path::EVENTS);
    assert_eq!(event["reason"], "CertificateIssued", "{event}");
    assert!(event["note"].as_str().is_some_and(|n| n.contains("annotation")), "{event}");
    let renewed: Secret = serde_json::from_value(pass.body(&Method::PATCH, path::TLS).clone()).expect("a Secret");
    let annotations = renewed.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get(tls::RENEWED_FOR_ANNOTATION).map(String::as_str), Some("7"));
    assert_ne!(
        tls::facts(&text(&renewed, "tls.crt")).expect("facts").serial,
        tls::facts(&node.cert).expect("facts").serial
    );
}

/// A `kubernetes.io/tls` Secret called `name` holding `pem` and the CA `ca`.
fn provided_secret(owner: &Owner, name: &str, pem: &Pem, ca: &Pem) -> Value {
    let mut v = serde_json::to_value(tls::node_secret(owner, pem, &ca.cert, None)).expect("json");
    v["metadata"]["name"] = json!(name);
    v
}

#[tokio::test]
async fn provided_tls_mounts_the_users_secret_and_reaches_the_nodes_with_the_operators() {
    let spec = json!({"tls": {"mode": "Provided", "secretName": "mine", "operatorSecretName": "op"}});
    let k = kvc(spec, 1);
    let owner = Owner::of(&k).expect("owner");
    let ca = tls::issue_ca(&owner.names, now()).expect("a CA");
    let node = tls::issue_node(&ca, &owner.names, now()).expect("a certificate");
    let operator = tls::issue_client(&ca, now()).expect("a client certificate");
    let sts = statefulset_object_with(&k, NodeLayout::new(3, 4), 3, false, PodTls::Provided("mine".to_string()));
    let mut script = vec![
        get_sts(Reply::Json(sts)),
        Exchange::new(
            Method::GET,
            "/api/v1/namespaces/prod/secrets/mine",
            Reply::Json(provided_secret(&owner, "mine", &node, &ca)),
        ),
        Exchange::new(
            Method::GET,
            "/api/v1/namespaces/prod/secrets/op",
            Reply::Json(provided_secret(&owner, "op", &operator, &ca)),
        ),
    ];
    script.extend(apply_services());
    script.extend([apply(path::STS), patch_status()]);
    let dp = FakeDataPlane::default();
    let reached = dp.reached.clone();
    let pass = reconcile_once(k, dp, script).await;
    pass.action();
    let reached = reached.lock().expect("lock").clone();
    assert!(
        !reached.is_empty() && reached.iter().all(|r| r.as_ref().is_some_and(|id| id.contains("/provided/"))),
        "{reached:?}"
    );
    let sts = pass.body(&Method::PATCH, path::STS);
    assert_eq!(sts["spec"]["template"]["spec"]["volumes"][1]["secret"]["secretName"], "mine");
    let status = pass.body(&Method::PATCH, path::KVC_STATUS);
    assert_eq!(status["status"]["tls"]["mode"], "Provided");
    assert_eq!(status["status"]["tls"]["serial"], tls::facts(&node.cert).expect("facts").serial.as_str());
    assert_eq!(condition(status, "Degraded")["status"], "False");
}

#[tokio::test]
async fn provided_tls_without_its_secrets_is_degraded_saying_which() {
    let spec = json!({"tls": {"mode": "Provided", "secretName": "mine", "operatorSecretName": "op"}});
    let k = kvc(spec, 1);
    let owner = Owner::of(&k).expect("owner");
    let ca = tls::issue_ca(&owner.names, now()).expect("a CA");
    let mut half = provided_secret(&owner, "op", &tls::issue_client(&ca, now()).expect("client"), &ca);
    half["data"].as_object_mut().expect("data").remove("ca.crt");
    let sts = statefulset_object_with(&k, NodeLayout::new(3, 4), 3, false, PodTls::Provided("mine".to_string()));
    let mut script = vec![
        get_sts(Reply::Json(sts)),
        Exchange::new(Method::GET, "/api/v1/namespaces/prod/secrets/mine", Reply::Error(404)),
        Exchange::new(Method::GET, "/api/v1/namespaces/prod/secrets/op", Reply::Json(half)),
    ];
    script.extend(apply_services());
    script.extend([apply(path::STS), patch_status()]);
    let pass = reconcile_once(k, FakeDataPlane::default(), script).await;
    pass.action();
    let status = pass.body(&Method::PATCH, path::KVC_STATUS);
    let degraded = condition(status, "Degraded");
    assert_eq!((degraded["status"].as_str(), degraded["reason"].as_str()), (Some("True"), Some("TLSSecretMissing")));
    let message = degraded["message"].as_str().unwrap_or_default();
    assert!(message.contains("mine does not exist") && message.contains("op has no ca.crt"), "{message}");
}
