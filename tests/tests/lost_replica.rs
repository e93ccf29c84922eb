//! A replica that cannot be opened on start (here: a snapshot file damaged on disk) must
//! not keep its node down. In a cluster the node starts without it, sets its data aside
//! in `quarantine/`, reports it `lost`, and the planner removes that voter and adds a
//! fresh replica, which the node then fills from the leader: nothing is lost. A
//! standalone node, with no other copy anywhere, refuses to start, changes nothing and
//! says how to go on.

use std::time::Duration;

use ringkv_ctl::driver::{Cluster as Ring, Progress};
use ringkv_plan::Spec;
use ringkv_tests::{eventually, key_in_shard, Cluster};

/// Where node `id` keeps its snapshot of `shard`.
fn snapshot_path(c: &Cluster, id: u64, shard: u32) -> std::path::PathBuf {
    c.dir().join(format!("node-{id}")).join("shards").join(shard.to_string()).join("snapshot.bin")
}

/// Waits until node `id` has written a snapshot of `shard`.
async fn snapshot_written(c: &Cluster, id: u64, shard: u32) {
    let path = snapshot_path(c, id, shard);
    eventually("a snapshot", Duration::from_secs(20), || async {
        if path.exists() {
            Ok(())
        } else {
            Err(format!("no {} yet", path.display()))
        }
    })
    .await;
}

/// Flips one byte in the middle of `shard`'s snapshot on node `id` (stopped).
fn damage_snapshot(c: &Cluster, id: u64, shard: u32) {
    let path = snapshot_path(c, id, shard);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_cannot_be_opened_is_quarantined_and_replaced_from_its_group() {
    let c = Cluster::builder(3).shards(2).flag("--snapshot-entries", "100").start().await;
    let n1 = c.node(1);
    let mut written = Vec::new();
    for i in 0..300 {
        let (k, v) = (format!("key-{i}"), format!("value-{i}"));
        n1.put(&k, &v).await;
        written.push((k, v));
    }
    snapshot_written(&c, 2, 1).await;
    c.stop(2).await;
    damage_snapshot(&c, 2, 1);
    c.restart(2);

    // Node 2 serves without shard 1 and says so.
    let lost = eventually("node 2 to report shard 1 lost", Duration::from_secs(20), || async {
        if let Some(status) = c.exited(2) {
            panic!("node 2 exited ({status}):\n{}", c.log(2));
        }
        let v = c.internal_ring(2).await?;
        if v["lost"] == serde_json::json!([1]) {
            Ok(v)
        } else {
            Err(format!("{v}"))
        }
    })
    .await;
    assert!(lost["shards"].as_array().expect("shards").iter().all(|s| s["id"] != 1), "{lost}");
    let quarantined: Vec<_> =
        std::fs::read_dir(c.dir().join("node-2").join("quarantine")).expect("quarantine/").flatten().collect();
    assert_eq!(quarantined.len(), 1);
    let why = std::fs::read_to_string(quarantined[0].path().join("why.txt")).expect("why.txt");
    assert!(why.contains("corrupt"), "{why}");
    assert!(quarantined[0].path().join("snapshot.bin").exists(), "the damaged data is kept");

    // The planner removes node 2's lost voter, then adds a fresh replica there.
    let mut steps = Vec::new();
    let spec = |_: &Ring| Spec { shards: 2, replication: 3, nodes: [1, 2, 3].into() };
    let ring = c
        .driver()
        .converge(&spec, Duration::from_secs(60), |p| {
            if let Progress::Step(s) = p {
                eprintln!("step: {}", s.describe());
                steps.push(s.describe());
            }
        })
        .await
        .expect("converges");
    ringkv_plan::is_balanced(&spec(&ring), &ring.observed).expect("balanced");
    assert!(steps.iter().any(|s| s.contains("remove the replica of shard 1 from node 2")), "{steps:?}");
    assert!(steps.iter().any(|s| s.contains("add a replica of shard 1 on node 2")), "{steps:?}");
    let v = c.internal_ring(2).await.expect("node 2's ring");
    assert!(v.get("lost").is_none(), "{v}");

    // Node 2's new replica holds every key of shard 1: read from it alone.
    let n2 = c.node(2);
    let probe = key_in_shard("probe", 1, 2);
    n1.put(&probe, "after").await;
    eventually("node 2's replica to catch up", Duration::from_secs(20), || async {
        if n2.get_serializable(&probe).await.as_deref() == Some("after") {
            Ok(())
        } else {
            Err("behind".to_string())
        }
    })
    .await;
    for (k, v) in &written {
        assert_eq!(n2.get_serializable(k).await.as_deref(), Some(v.as_str()), "{k} on node 2");
    }
}

#[tokio::test]
async fn a_standalone_node_with_a_replica_it_cannot_open_refuses_to_start_and_says_how_to_go_on() {
    let c = Cluster::standalone_builder().shards(2).flag("--snapshot-entries", "100").start().await;
    let n = c.node(1);
    for i in 0..300 {
        n.put(&format!("key-{i}"), "v").await;
    }
    let dir = c.dir().join("node-1").join("shards").join("1");
    snapshot_written(&c, 1, 1).await;
    c.stop(1).await;
    damage_snapshot(&c, 1, 1);
    let before = std::fs::read(dir.join("snapshot.bin")).expect("snapshot");
    c.restart(1);
    let status = eventually("the node to refuse to start", Duration::from_secs(20), || async {
        c.exited(1).ok_or_else(|| "still running".to_string())
    })
    .await;
    assert!(!status.success());
    let log = c.log(1);
    assert!(log.contains("shard 1") && log.contains("corrupt") && log.contains("nothing was changed"), "{log}");
    assert_eq!(std::fs::read(dir.join("snapshot.bin")).expect("kept"), before, "the data directory is left as it was");
}
