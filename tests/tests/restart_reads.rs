//! Every node of a cluster killed at once right after an acknowledged write, then all
//! restarted: the first linearizable reads must see that write. openraft 0.9 lets a
//! leader that restarts lead its term again at once, with the commit index it kept,
//! which is not durable and can be behind what it acknowledged before the crash; a read
//! served at that index returned the value before the last write (found by the crash
//! point suite as a linearizability violation on `snapshot-written`, where every node
//! aborts at about the same moment).

use std::time::Duration;

use ringkv_tests::{eventually, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_after_every_node_restarts_at_once_see_the_last_acknowledged_write() {
    let c = Cluster::builder(3).shards(1).start().await;
    for round in 0..8 {
        let value = format!("v{round}");
        // Several writes, the last one alone: nothing after it carries its commit to disk.
        for i in 0..5 {
            c.node(1).put("key", &format!("{value}-{i}")).await;
        }
        c.node(1).put("key", &value).await;
        for id in c.ids() {
            c.kill(id);
        }
        for id in c.ids() {
            c.restart(id);
        }
        for id in c.ids() {
            let n = c.node(id);
            let seen = eventually(&format!("a linearizable read through node {id}"), Duration::from_secs(30), || {
                let n = n.clone();
                async move { n.try_entry_with("key", "").await.map(|e| e.map(|e| e.value)) }
            })
            .await;
            assert_eq!(
                seen.as_deref(),
                Some(value.as_str()),
                "round {round}: node {id} read {seen:?} after a restart of every node; {value:?} was acknowledged before"
            );
        }
    }
    println!("8 rounds: every node read the last acknowledged write after all three restarted at once");
}
