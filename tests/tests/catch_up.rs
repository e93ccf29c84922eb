//! A follower that missed more than the leaders keep in their logs catches up through
//! snapshots.
//!
//! With `--snapshot-entries 100` a shard snapshots every 100 entries, and openraft keeps
//! at most 1000 entries behind a snapshot, so a shard that takes well over 1,100 writes
//! while a follower is down has purged entries that follower never saw: the only way
//! back is a snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use ringkv_tests::{eventually, Cluster, NodeClient};

/// Concurrent writers (the WAL group-commits them).
const WRITERS: usize = 8;

/// Kills the node leading the fewest shards, writes `keys` keys through a survivor,
/// restarts it, and checks it serves every key from its own replica after installing a
/// snapshot of every shard.
async fn follower_catches_up_through_snapshots(shards: u32, keys: usize) {
    let c = Cluster::builder(3).shards(shards).flag("--snapshot-entries", "100").start().await;
    let leaders = c.wait_for_leaders(&c.ids()).await;
    let follower =
        c.ids().into_iter().rev().min_by_key(|id| leaders.values().filter(|l| *l == id).count()).expect("3 nodes");
    let via = c.ids().into_iter().find(|&id| id != follower).expect("3 nodes");
    let had: BTreeMap<u32, u64> =
        c.node(follower).cluster_view().await.shards.iter().map(|s| (s.id, s.last_log_index)).collect();
    c.kill(follower);

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let n = c.node(via);
        tasks.spawn(async move {
            for i in (w..keys).step_by(WRITERS) {
                n.put(&format!("k/{i:05}"), &format!("value {i}")).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("every write is acknowledged with 2 of 3 nodes up");
    }
    let view = c.node(via).cluster_view().await;
    let target: BTreeMap<u32, u64> = view.shards.iter().map(|s| (s.id, s.commit_index)).collect();
    // The survivors purged their logs past what the follower has: only a snapshot can
    // bring it back.
    let cluster = &c;
    eventually("the survivors to purge their logs past the follower's last entry", Duration::from_secs(30), || {
        let had = had.clone();
        async move {
            let v = cluster.node(via).try_cluster_view().await?;
            match v.shards.iter().find(|s| s.purged_index <= had[&s.id]) {
                Some(s) => {
                    Err(format!("shard {}: purged to {} but the follower has {}", s.id, s.purged_index, had[&s.id]))
                }
                None => Ok(()),
            }
        }
    })
    .await;

    c.restart(follower);
    let f = c.node(follower);
    eventually("the follower to apply everything committed while it was down", Duration::from_secs(60), || {
        let (f, target) = (f.clone(), target.clone());
        async move {
            let v = f.try_cluster_view().await?;
            let behind: Vec<String> = v
                .shards
                .iter()
                .filter(|s| s.applied_index < target[&s.id])
                .map(|s| format!("shard {} applied {} of {}", s.id, s.applied_index, target[&s.id]))
                .collect();
            if behind.is_empty() {
                Ok(())
            } else {
                Err(behind.join(", "))
            }
        }
    })
    .await;

    // It serves every key from its own replica.
    assert_serves_every_key(&f, keys, "after catching up").await;

    // And it got there by installing a snapshot of every shard. No metric or API field
    // exposes snapshot installs or a leader's purged index, so the follower's log line
    // (`snapshot installed shard=N`) is the evidence.
    let log = c.log(follower);
    let missing: Vec<u32> = (0..shards).filter(|s| !log.contains(&format!("snapshot installed shard={s} "))).collect();
    assert!(
        missing.is_empty(),
        "shards {missing:?} caught up without installing a snapshot (the follower had {had:?}, \
         the leaders committed {target:?})"
    );

    // The installed snapshots are durable: after another kill -9 the follower restarts
    // from them and still serves every key.
    c.kill(follower);
    c.restart(follower);
    c.wait_ready().await;
    assert_serves_every_key(&f, keys, "after a kill -9 following the snapshot install").await;
}

/// Checks that `f` lists and serves `k/00000`.. with their values from its own replica.
async fn assert_serves_every_key(f: &NodeClient, keys: usize, when: &str) {
    let listed = f.list_all_with(0, "k/", 1000, "consistency=serializable").await;
    assert_eq!(listed.len(), keys, "keys node {} lists from its own replica {when}", f.id());
    for e in &listed {
        let i: usize = e.key["k/".len()..].parse().expect("our key");
        assert_eq!(e.value, format!("value {i}"), "{} {when}", e.key);
    }
    for i in (0..keys).step_by(97) {
        let k = format!("k/{i:05}");
        assert_eq!(f.get_serializable(&k).await.as_deref(), Some(format!("value {i}").as_str()), "{k} {when}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_missed_thousands_of_writes_catches_up_from_a_snapshot() {
    follower_catches_up_through_snapshots(1, 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_of_a_lagging_follower_catches_up_from_its_own_snapshot() {
    follower_catches_up_through_snapshots(4, 6_000).await;
}
