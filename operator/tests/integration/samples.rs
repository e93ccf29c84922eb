//! The samples under deploy/samples/ against the generated CRD's schema and CEL rules.

use ringkv_operator::crd::{crd, KVCluster};
use serde_json::{json, Value};

use crate::support::{root, schema};

fn crd_schema() -> Value {
    let crd = crd().expect("crd");
    let schema = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("schema");
    serde_json::to_value(schema).expect("schema serializes")
}

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("deploy/samples").join(name)).expect("sample readable");
    serde_saphyr::from_str(&text).expect("sample is YAML")
}

#[test]
fn valid_samples_pass_the_schema_and_cel_rules() {
    let schema = crd_schema();
    for name in ["small.yaml", "scaled.yaml"] {
        let obj = sample(name);
        let errors = schema::validate(&schema, &obj);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        assert_eq!(obj["apiVersion"], "ringkv.io/v1alpha1");
        let kvc: KVCluster = serde_json::from_value(obj).unwrap_or_else(|e| panic!("{name} reads as a KVCluster: {e}"));
        assert!(kvc.spec.nodes >= kvc.spec.replication_factor);
    }
}

#[test]
fn the_invalid_sample_fails_with_the_expected_messages() {
    let errors = schema::validate(&crd_schema(), &sample("invalid.yaml"));
    let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
    assert!(has("spec.shards: Unsupported value: 3"), "{errors:#?}");
    assert!(has("spec.replicationFactor: Unsupported value: 2"), "{errors:#?}");
    assert!(has("nodes must be at least replicationFactor"), "{errors:#?}");
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn the_schema_catches_each_mistake_on_its_own() {
    let schema = crd_schema();
    let base =
        || json!({"apiVersion": "ringkv.io/v1alpha1", "kind": "KVCluster", "metadata": {"name": "x"}, "spec": {}});
    let cases: [(&str, Value, &str); 9] = [
        ("defaults alone are valid", json!({}), ""),
        ("shards must be a power of two", json!({"shards": 12}), "spec.shards: Unsupported value: 12"),
        ("too many shards", json!({"shards": 2048}), "spec.shards: Unsupported value: 2048"),
        ("nodes below the default replication factor", json!({"nodes": 2}), "nodes must be at least replicationFactor"),
        ("unknown fields are refused", json!({"shard": 4}), "spec.shard: unknown field"),
        (
            "the pull policy is an enum",
            json!({"imagePullPolicy": "Sometimes"}),
            "spec.imagePullPolicy: Unsupported value",
        ),
        (
            "scrape intervals are durations",
            json!({"monitoring": {"serviceMonitor": {"interval": "soon"}}}),
            "should match",
        ),
        ("volume sizes are quantities", json!({"storage": {"size": "10 GB"}}), "spec.storage.size: Invalid value"),
        ("a quantity with a decimal suffix is one", json!({"storage": {"size": "500M"}}), ""),
    ];
    for (name, spec, want) in cases {
        let mut obj = base();
        obj["spec"] = spec;
        let errors = schema::validate(&schema, &obj);
        if want.is_empty() {
            assert!(errors.is_empty(), "{name}: {errors:#?}");
        } else {
            assert!(errors.iter().any(|e| e.contains(want)), "{name}: want {want:?} in {errors:#?}");
        }
    }
}

#[test]
fn storage_is_fixed_once_created_and_everything_else_may_change() {
    let schema = crd_schema();
    let obj = |spec: Value| json!({"apiVersion": "ringkv.io/v1alpha1", "kind": "KVCluster", "metadata": {"name": "x"}, "spec": spec});
    let old = obj(json!({"shards": 4, "nodes": 3, "storage": {"size": "1Gi"}}));
    let cases: [(&str, Value, &str); 4] = [
        ("a reshard and a scale", json!({"shards": 8, "nodes": 5, "storage": {"size": "1Gi"}}), ""),
        ("a bigger volume", json!({"storage": {"size": "2Gi"}}), "storage cannot change once the cluster exists"),
        (
            "another storage class",
            json!({"storage": {"size": "1Gi", "storageClassName": "fast"}}),
            "storage cannot change",
        ),
        ("storage left out (the default 10Gi)", json!({}), "storage cannot change"),
    ];
    for (name, spec, want) in cases {
        let errors = schema::validate_update(&schema, &obj(spec.clone()), Some(&old));
        if want.is_empty() {
            assert!(errors.is_empty(), "{name}: {errors:#?}");
        } else {
            assert!(
                errors.iter().any(|e| e.contains(want) && e.starts_with("spec.storage")),
                "{name}: want {want:?} in {errors:#?}"
            );
        }
        assert!(schema::validate(&schema, &obj(spec)).is_empty(), "{name}: a new cluster may have any storage");
    }
}

#[test]
fn the_scaled_sample_applies_over_the_small_one() {
    let errors = schema::validate_update(&crd_schema(), &sample("scaled.yaml"), Some(&sample("small.yaml")));
    assert!(errors.is_empty(), "kubectl apply -f scaled.yaml over small.yaml: {errors:#?}");
}

#[test]
fn names_longer_than_the_statefulset_allows_are_refused() {
    let schema = crd_schema();
    let obj = |name: String| json!({"apiVersion": "ringkv.io/v1alpha1", "kind": "KVCluster", "metadata": {"name": name}, "spec": {}});
    assert!(schema::validate(&schema, &obj("a".repeat(52))).is_empty(), "52 characters fit");
    let errors = schema::validate(&schema, &obj("a".repeat(53)));
    assert!(
        errors.iter().any(|e| e.contains("metadata.name must be a DNS-1035 label of at most 52 characters")),
        "{errors:#?}"
    );
}

#[test]
fn names_no_service_could_carry_are_refused() {
    // The API server accepts `my.cluster` as a KVCluster's name, but a Service named
    // after it would be refused: the cluster ended up Degraded instead of refused.
    let schema = crd_schema();
    let obj = |name: &str| json!({"apiVersion": "ringkv.io/v1alpha1", "kind": "KVCluster", "metadata": {"name": name}, "spec": {}});
    for good in ["demo", "a", "prod-kv-2"] {
        assert!(schema::validate(&schema, &obj(good)).is_empty(), "{good} is a DNS-1035 label");
    }
    for bad in ["my.cluster", "1st", "kv-", "Demo"] {
        let errors = schema::validate(&schema, &obj(bad));
        assert!(errors.iter().any(|e| e.contains("must be a DNS-1035 label")), "{bad}: {errors:#?}");
    }
}

#[test]
fn spec_may_be_left_out_and_takes_every_default() {
    let schema = crd_schema();
    let obj = json!({"apiVersion": "ringkv.io/v1alpha1", "kind": "KVCluster", "metadata": {"name": "demo"}});
    assert!(schema::validate(&schema, &obj).is_empty(), "a KVCluster without spec is valid");
    assert_eq!(
        schema["properties"]["spec"]["default"],
        json!({"nodes": 3, "replicationFactor": 3}),
        "the API server fills spec and its defaults"
    );
}

#[test]
fn nodes_below_the_replication_names_the_defaults() {
    let schema = crd_schema();
    let rule = schema["properties"]["spec"]["x-kubernetes-validations"][0].clone();
    assert_eq!(rule["rule"], "self.nodes >= self.replicationFactor");
    let message = rule["message"].as_str().unwrap_or_default();
    assert!(message.contains("when unset, nodes is 3 and replicationFactor is 3"), "{rule}");
}

#[test]
fn malformed_resource_quantities_are_refused_by_the_schema() {
    // `cpu: lots` used to reach the StatefulSet apply, which the API server answers with
    // a 500. The schema now carries Kubernetes' Quantity pattern (the local validator
    // skips patterns on int-or-string values, so the pattern is checked here by hand; the
    // real API server refusing `lots` is checked by tests/k8s/e2e.sh).
    let schema = crd_schema();
    for kind in ["requests", "limits"] {
        let q = &schema["properties"]["spec"]["properties"]["resources"]["properties"][kind]["additionalProperties"];
        let pattern = regex::Regex::new(q["pattern"].as_str().expect("a pattern")).expect("a regex");
        for good in ["250m", "2", "0.5", "512Mi", "1e3", "1Gi", "+1k"] {
            assert!(pattern.is_match(good), "{kind}: {good}");
        }
        for bad in ["lots", "1 Gi", "1GB", "", "Mi"] {
            assert!(!pattern.is_match(bad), "{kind}: {bad}");
        }
        assert_eq!(q["x-kubernetes-int-or-string"], true, "{kind}: integers stay allowed");
    }
}
