//! The committed CRD YAML is exactly what the Rust types generate.

use ringkv_operator::crd::crd_yaml;

use crate::support::root;

#[test]
fn committed_crds_match_the_generated_one() {
    let generated = crd_yaml().expect("the CRD generates");
    for file in ["deploy/crds/kvcluster.yaml", "charts/ringkv/crds/kvcluster.yaml"] {
        let committed = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} differs from the CRD the code generates; regenerate it with\n  \
             cargo run -p ringkv-operator -- crd > {file}"
        );
    }
}

#[test]
fn generated_crd_declares_kvcluster_with_short_name_status_and_printer_columns() {
    let crd = ringkv_operator::crd::crd().expect("crd");
    assert_eq!(crd.metadata.name.as_deref(), Some("kvclusters.ringkv.io"));
    assert_eq!(crd.spec.names.short_names, Some(vec!["kvc".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().is_some_and(|s| s.status.is_some()));
    let columns: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Shards", "Nodes", "Ready", "Epoch", "Phase", "Age"]);
}
