//! A node that comes back from a restart must not depose its shards' healthy leaders.
//! On Kubernetes a replaced pod has a new address: its peers reach it only once their
//! connections and DNS catch up, so for a while it hears no leader. It used to campaign
//! after one election timeout, at a higher term; the leader, seeing that term when it
//! finally reached the pod, stepped down, and every write waited for a new election
//! (~2.4 s at each pod of a rolling update). openraft 0.9 has no pre-vote; a restarted
//! replica now holds its elections until it hears from its leader (`Node::release_elections`).
//!
//! The harness keeps the restarted node's internal port shut for 2 s (the test-only delay
//! point `internal-serve-delay`), as the new pod is unreachable at first.

use std::collections::BTreeMap;
use std::time::Duration;

use ringkv_tests::Cluster;

/// (leader, term) of every shard as node `id` sees it.
async fn leaders_and_terms(c: &Cluster, id: u64) -> BTreeMap<u32, (Option<u64>, u64)> {
    let view = c.node(id).try_cluster_view().await.expect("cluster view");
    view.shards.iter().map(|s| (s.id, (s.leader, s.term))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_that_hears_no_leader_at_first_does_not_depose_the_leaders() {
    let c = Cluster::builder(3).shards(2).start().await;
    c.wait_for_leaders(&[1, 2, 3]).await;
    // A graceful stop hands node 3's leaderships to the others.
    c.stop(3).await;
    c.wait_for_leaders(&[1, 2]).await;
    let before = leaders_and_terms(&c, 1).await;

    c.restart_with_env(3, &[("FAILPOINTS", "internal-serve-delay=return(2000)")]);
    c.wait_ready().await;
    // Any disruption would have shown by now (elections take ~1 s here).
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.node(1).put("after-restart", "v").await;
    let after = leaders_and_terms(&c, 1).await;
    assert!(c.log(3).contains("delay point internal-serve-delay"), "the delay point did not fire:\n{}", c.log(3));
    assert_eq!(after, before, "the restarted node 3 changed the leaders or terms (shard -> (leader, term))");
}
