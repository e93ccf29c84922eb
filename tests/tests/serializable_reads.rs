//! A serializable read is answered from a node's own replica only when that replica
//! votes in its shard's group. An empty replica opened for a move (the operator hosts
//! one on a new node before adding it) starts with its bootstrap slice, so it looks as
//! if it owned keys it holds nothing of: found on a real cluster, where a new node
//! answered `consistency=serializable` reads with 404 for keys that exist.

use ringkv_tests::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_replica_not_yet_a_member_does_not_answer_serializable_reads() {
    // Three founders with 2 shards; node 4 runs but holds nothing.
    let c = Cluster::builder(4).shards(2).joining(1).start().await;
    let mut written = Vec::new();
    for i in 0..40 {
        let (k, v) = (format!("ser-{i}"), format!("v{i}"));
        c.node(1).put(&k, &v).await;
        written.push((k, v));
    }
    // Node 4 opens empty replicas of both shards, as the first half of a move does.
    let addr4 = c.internal_addr(4);
    for shard in 0..2 {
        let r = c.http().post(format!("http://{addr4}/internal/admin/shards/{shard}/host")).send().await.expect("host");
        assert!(r.status().is_success(), "host shard {shard} on node 4: {}", r.status());
    }
    let wrong = c.read_back_with(&written, &[4], "consistency=serializable").await;
    assert!(
        wrong.is_empty(),
        "node 4 answered from replicas it is no voter of: {} of 40 wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
}
