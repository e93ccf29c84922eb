//! A node that joins an existing ring takes the ring's bootstrap shard count from its
//! peers, not from its own `--shards` (`RINGKV_SHARDS`). On Kubernetes the two differ
//! when a KVCluster is re-created over kept volumes with another `spec.shards`: the
//! founders' data directories keep the ring they were bootstrapped with, but a node added
//! later started with the new value. Its empty replicas then replayed their shard's log
//! from the first entry with the wrong bootstrap slice and kept only part of the keys.

use std::collections::BTreeSet;
use std::time::Duration;

use ringkv_ctl::driver::Cluster as Ring;
use ringkv_plan::Spec;
use ringkv_tests::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_the_rings_bootstrap_shard_count_from_its_peers() {
    // Three founders bootstrapped with 2 shards; node 4 joins later.
    let mut c = Cluster::builder(4).shards(2).joining(1).start().await;
    // Node 4 starts afresh configured for 8 shards, as a pod added after a re-create with
    // another spec.shards would.
    c.stop(4).await;
    std::fs::remove_dir_all(c.data_dir(4)).expect("wipe node 4");
    c.set_flag(4, "--shards", "8");
    c.restart(4);
    c.wait_ready().await;

    let status: serde_json::Value = c
        .http()
        .get(format!("http://{}/internal/status", c.internal_addr(4)))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status json");
    assert_eq!(status["shard_count"], 2, "node 4 must use the ring's bootstrap shard count: {status}");

    let mut written = Vec::new();
    for i in 0..60 {
        let (k, v) = (format!("join-{i}"), format!("v{i}"));
        c.node(1).put(&k, &v).await;
        written.push((k, v));
    }
    // Drain node 1 onto node 4: node 4's new replicas replay both shards' logs, which
    // begin at the bootstrap (nothing is purged after 60 writes).
    let nodes: BTreeSet<u64> = [2, 3, 4].into();
    let spec = move |_: &Ring| Spec { shards: 2, replication: 3, nodes: nodes.clone() };
    c.driver()
        .converge(&spec, Duration::from_secs(60), |_| {})
        .await
        .unwrap_or_else(|e| panic!("did not move node 1's replicas to node 4: {e}"));

    let wrong = c.read_back_with(&written, &[4], "consistency=serializable").await;
    assert!(
        wrong.is_empty(),
        "node 4's replicas lost keys: {} of 60 wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
}
