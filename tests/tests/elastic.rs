//! The elastic ring on real processes: splits, replica moves, drains and leader
//! transfers driven by the planning library while clients keep reading and writing.
//! Every client call is recorded and the history is checked for linearizability per key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringkv_ctl::driver::{Cluster as Ring, Driver, Progress};
use ringkv_plan::{Spec, Step};
use ringkv_tests::load::Load;
use ringkv_tests::{key_path, Cluster};

const KEYS: usize = 24;

/// Drives the ring until the planner is satisfied with `shards`, `replication` and the
/// nodes in `nodes`; panics (with the last step) if it does not converge.
async fn converge(d: &Driver, shards: u32, replication: usize, nodes: &[u64]) -> Ring {
    let nodes: std::collections::BTreeSet<u64> = nodes.iter().copied().collect();
    let spec = move |_: &Ring| Spec { shards, replication, nodes: nodes.clone() };
    let ring = d
        .converge(&spec, Duration::from_secs(60), |p| {
            if let Progress::Step(s) = &p {
                eprintln!("step: {}", s.describe());
            } else if let Progress::StepFailed(s, why) = &p {
                eprintln!("step failed (will retry): {}: {why}", s.describe());
            } else if let Progress::Waiting(why) = &p {
                eprintln!("waiting: {why}");
            }
        })
        .await
        .unwrap_or_else(|e| panic!("did not converge to {shards} shards: {e}"));
    let target = spec(&ring);
    ringkv_plan::is_balanced(&target, &ring.observed)
        .unwrap_or_else(|e| panic!("converged but unbalanced: {e}\n{}", ring.describe()));
    ring
}

/// 5 → 3 → 5 → 3 nodes and 4 → 8 → 16 → 4 shards with R = 3, under a mixed load of puts,
/// deletes, compare-and-swaps and linearizable reads. Afterwards the recorded history
/// must be linearizable per key (so no acknowledged write is lost and no read went back
/// in time), there must be no error answer other than a retryable 503, and the ring must
/// be balanced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_and_moving_replicas_under_load_stay_linearizable() {
    let c = Cluster::builder(5).shards(4).start().await;
    let d = c.driver();
    let load = Load::start(c.ids().iter().map(|id| c.url(*id)).collect(), 6, 4, KEYS);

    // Bootstrap made every node a voter of every shard: trim to R = 3 and balance.
    converge(&d, 4, 3, &[1, 2, 3, 4, 5]).await;
    // Drain nodes 4 and 5 (5 → 3 nodes), then double twice.
    converge(&d, 4, 3, &[1, 2, 3]).await;
    converge(&d, 8, 3, &[1, 2, 3]).await;
    let ring = converge(&d, 16, 3, &[1, 2, 3]).await;
    assert_eq!(ring.observed.shards.len(), 16);
    // Back to 5 nodes: replicas and leaders spread onto 4 and 5.
    converge(&d, 16, 3, &[1, 2, 3, 4, 5]).await;
    // Halve twice while draining back to 3 nodes: merges need co-located replicas.
    let ring = converge(&d, 4, 3, &[1, 2, 3]).await;
    assert_eq!(ring.observed.shards.len(), 4);
    eprintln!("{}", ring.describe());

    let stats = load.finish().await;
    eprintln!("{} operations on {} keys checked ({} with unknown outcome)", stats.ops, stats.keys, stats.unknown);
    assert!(stats.ops > 500, "the load ran: {} ops", stats.ops);
}

/// Starts a driver towards `shards` on nodes 1..=3 and kills it as its second split or
/// merge starts (the first done, the second in flight), SIGKILLs `victim` and restarts
/// it, then converges with a fresh driver. Returns the converged ring and the shard
/// count the killed driver left behind.
async fn interrupted_converge(c: &Cluster, d: &Driver, shards: u32, victim: u64) -> (Ring, usize) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let d2 = d.clone();
    let run = tokio::spawn(async move {
        let spec = move |_: &Ring| Spec { shards, replication: 3, nodes: [1, 2, 3].into() };
        // Distinct steps: a failed step is reported again when it is retried.
        let (mut reshards, mut tx) = (std::collections::BTreeSet::new(), Some(tx));
        let _ = d2
            .converge(spec, Duration::from_secs(60), |p| {
                if let Progress::Step(step @ (Step::Split { .. } | Step::Merge { .. })) = p {
                    reshards.insert(step.describe());
                    if reshards.len() == 2 {
                        tx.take().map(|t| t.send(()));
                    }
                }
            })
            .await;
    });
    tokio::time::timeout(Duration::from_secs(30), rx).await.expect("a second split or merge").expect("signal");
    run.abort();
    let left = d.observe().await.expect("ring").observed.shards.len();
    c.kill(victim);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.restart(victim);
    (converge(d, shards, 3, &[1, 2, 3]).await, left)
}

/// Once ready, every node hosts exactly `n` replicas (`GET /internal/ring`).
/// The ring once its key counts add up to `total`: right after a split a replica
/// also counts the other shard's keys until its background sweep has dropped them.
async fn swept(d: &Driver, mut ring: Ring, total: u64) -> Ring {
    for _ in 0..100 {
        if ring.keys.values().sum::<u64>() == total {
            return ring;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        ring = d.observe().await.expect("ring");
    }
    panic!("key counts {:?} do not add up to {total}: keys lost or duplicated", ring.keys);
}

async fn assert_every_node_hosts(c: &Cluster, n: usize) {
    c.wait_ready().await;
    for id in c.ids() {
        let url = format!("http://{}/internal/ring", c.internal_addr(id));
        let view: serde_json::Value = c.http().get(url).send().await.expect("ring").json().await.expect("json");
        let hosted = view["shards"].as_array().map_or(0, Vec::len);
        assert_eq!(hosted, n, "node {id} hosts {view}");
    }
}

/// Splits and merges that a killed driver left half done are finished by the next
/// driver, and a node killed with SIGKILL meanwhile comes back with the ring's shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_splits_and_merges_converge_and_a_killed_node_follows() {
    let c = Cluster::start(3, 4).await;
    let n1 = c.node(1);
    let mut written = Vec::new();
    for i in 0..400 {
        let (k, v) = (format!("key-{i}"), format!("value-{i}"));
        n1.put(&k, &v).await;
        written.push((k, v));
    }
    let d = c.driver();
    let before = d.observe().await.expect("ring");
    let keys_before: u64 = before.keys.values().sum();
    assert_eq!(keys_before, 400);

    // A driver killed mid-doubling, a node killed meanwhile.
    let (ring, left) = interrupted_converge(&c, &d, 8, 2).await;
    assert!((5..8).contains(&left), "the driver was killed part-way: it left {left} shards");

    // Exactly the keys that had to move moved: each new shard s+4 holds the keys with
    // hash % 8 == s+4 (counted from the keys), about half of its parent's.
    let ring = swept(&d, ring, 400).await;
    let owner = |k: &str| (ringkv_node::ring::key_hash(0, k.as_bytes()) % 8) as u32;
    for s in 0..4u32 {
        let (kept, moved) = (ring.keys[&s], ring.keys[&(s + 4)]);
        let parent = before.keys[&s];
        let should_move = written.iter().filter(|(k, _)| owner(k) == s + 4).count() as u64;
        eprintln!("shard {s}: {parent} keys, {moved} moved to shard {} ({should_move} had to)", s + 4);
        assert_eq!(moved, should_move, "shard {s}: {moved} keys moved, {should_move} had to");
        assert_eq!(kept + moved, parent, "shard {s} split into {kept} + {moved}, had {parent}");
        assert!(moved * 4 > parent && moved * 4 < parent * 3, "shard {s}: {moved} of {parent} moved");
    }
    // Every node, node 2 included, has all 8 shards and every value reads back.
    assert_every_node_hosts(&c, 8).await;
    let missing = c.read_back(&written, &c.ids()).await;
    assert!(missing.is_empty(), "lost after the splits: {missing:?}");

    // Halving back to 4: a driver killed mid-merge, a node killed meanwhile.
    let (ring, left) = interrupted_converge(&c, &d, 4, 3).await;
    assert!((5..8).contains(&left), "the driver was killed part-way: it left {left} shards");
    let ring = swept(&d, ring, 400).await;
    for s in 0..4u32 {
        assert_eq!(ring.keys[&s], before.keys[&s], "shard {s} holds exactly its keys again");
    }
    assert_every_node_hosts(&c, 4).await; // the merges' donors are retired everywhere
    let missing = c.read_back(&written, &c.ids()).await;
    assert!(missing.is_empty(), "lost after the merges: {missing:?}");
}

/// An EventSource-like reader of `GET /v1/watch?key=K` on `base`: reconnects with the
/// last cursor when the stream ends, and returns every event's data until one carries
/// `want` as its value (or the deadline passes).
async fn watch_until(base: String, key: String, want: String, deadline: Duration) -> Vec<serde_json::Value> {
    let http = ringkv_api::client::http().build().expect("an HTTP client");
    let end = tokio::time::Instant::now() + deadline;
    let mut last_id: Option<String> = None;
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < end {
        let mut req = http.get(format!("{base}/v1/watch?key={}", ringkv_tests::client::query_value(&key)));
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
        }
        let Ok(Ok(mut resp)) = tokio::time::timeout(Duration::from_secs(5), req.send()).await else { continue };
        if !resp.status().is_success() {
            eprintln!("watch {base}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut buf = String::new();
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(end, resp.chunk()).await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(at) = buf.find("\n\n") {
                let block: String = buf.drain(..at + 2).collect();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        last_id = Some(id.trim().to_string());
                    } else if let Some(data) = line.strip_prefix("data:") {
                        let v: serde_json::Value = serde_json::from_str(data.trim()).unwrap_or_default();
                        let done = v["value"] == want.as_str();
                        seen.push(v);
                        if done {
                            return seen;
                        }
                    }
                }
            }
        }
    }
    panic!("no event with value {want} for {key} from {base} within {deadline:?}; saw {seen:?}");
}

/// A key watch follows its key into the shard a split moves it to, through the node
/// that holds a replica and through one that does not (which relays the watch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_watch_follows_its_key_through_a_split_even_on_a_node_without_its_shard() {
    let c = Cluster::builder(4).shards(2).start().await;
    let d = c.driver();
    let ring = converge(&d, 2, 3, &[1, 2, 3, 4]).await;
    // A key that moves when shard `s` splits (2 → 4): hash % 4 == s + 2.
    let key = (0..)
        .map(|i| format!("follow-{i}"))
        .find(|k| ringkv_node::ring::key_hash(0, k.as_bytes()) % 4 >= 2)
        .expect("a key");
    let shard = (ringkv_node::ring::key_hash(0, key.as_bytes()) % 2) as u32;
    let voters = &ring.observed.shards[&shard].voters;
    let outside = c.ids().into_iter().find(|n| !voters.contains(n)).expect("a node without the shard");
    let inside = *voters.iter().next().expect("a voter");
    let n1 = c.node(1);
    n1.put(&key, "before").await;

    let near = tokio::spawn(watch_until(c.url(inside), key.clone(), "after".into(), Duration::from_secs(30)));
    let far = tokio::spawn(watch_until(c.url(outside), key.clone(), "after".into(), Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    n1.put(&key, "during").await;
    // Split the key's shard and write at once, before the watches notice the new shard:
    // they continue from the parent's history into the new shard's without a gap.
    let now = d.observe().await.expect("ring");
    d.execute(&now, &Step::Split { shard, modulus: 4 }).await.expect("split");
    for v in ["after-1", "after-2", "after-3"] {
        n1.put(&key, v).await;
    }
    converge(&d, 4, 3, &[1, 2, 3, 4]).await;
    n1.put(&key, "after").await;
    for (name, task) in [("holder", near), ("relaying node", far)] {
        let seen = task.await.expect("watcher");
        let values: Vec<&str> = seen.iter().filter_map(|v| v["value"].as_str()).collect();
        assert_eq!(values, ["during", "after-1", "after-2", "after-3", "after"], "{name} saw {seen:?}");
        assert!(!seen.iter().any(|v| v["type"] == "resync"), "{name} had to resync: {seen:?}");
        let last = seen.last().expect("an event");
        assert_eq!(
            last["shard"].as_u64(),
            Some(u64::from(shard) + 2),
            "{name}: the put after the split comes from the new shard"
        );
    }
}

/// Writes acknowledged by a split's new shards right after the split survive every node
/// being killed at once, whether or not the new shards' first snapshots reached the disk
/// (if not, the parents' logs replay the split and the new shards' logs are kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_node_right_after_a_split_loses_no_write_to_the_new_shards() {
    let c = Cluster::start(3, 2).await;
    let n1 = c.node(1);
    let mut written = Vec::new();
    for i in 0..200 {
        let (k, v) = (format!("pre-{i}"), format!("v{i}"));
        n1.put(&k, &v).await;
        written.push((k, v));
    }
    let d = c.driver();
    converge(&d, 4, 3, &[1, 2, 3]).await;
    for i in 0..100 {
        let (k, v) = (format!("post-{i}"), format!("w{i}"));
        c.node(1 + (i % 3)).put(&k, &v).await;
        written.push((k, v));
    }
    for id in c.ids() {
        c.kill(id);
    }
    for id in c.ids() {
        c.restart(id);
    }
    c.wait_ready().await;
    let ring = d.observe().await.expect("ring");
    assert_eq!(ring.observed.shards.len(), 4, "the split survived: {}", ring.describe());
    let missing = c.read_back(&written, &c.ids()).await;
    assert!(missing.is_empty(), "lost: {missing:?}");
}

/// Hand-made leader transfers (openraft 0.9 has none): each shard's leadership goes to
/// every other voter and back while a writer keeps writing through all nodes; every
/// transfer lands on its target, no write fails and every acknowledged value reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_round_every_voter_while_writes_keep_landing() {
    let c = Arc::new(Cluster::start(3, 2).await);
    let leaders = c.wait_for_leaders(&c.ids()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (k, v) = (format!("moving-{}", i % 50), format!("v{i}"));
                let outcome = c.node(1 + (i as u64 % 3)).try_put(&k, &v).await;
                acked.retain(|(key, _): &(String, String)| *key != k);
                match outcome {
                    Ok(_) => acked.push((k, v)),
                    Err(e) => failed.push(format!("{k}: {e}")),
                }
                i += 1;
            }
            (acked, failed)
        })
    };
    let mut wrong = Vec::new();
    'shards: for (shard, first) in leaders {
        let mut leader = first;
        for target in c.ids().into_iter().filter(|t| *t != first).chain([first]) {
            let url = format!("http://{}/internal/admin/shards/{shard}/leader/{target}", c.internal_addr(leader));
            // A leader elected a moment ago answers `not_leader` until its first quorum
            // acknowledgement; a driver asks again, and so does this test.
            let mut resp = c.http().post(&url).send().await.expect("transfer");
            for _ in 0..20 {
                if resp.status() != reqwest::StatusCode::MISDIRECTED_REQUEST {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                resp = c.http().post(&url).send().await.expect("transfer");
            }
            if !resp.status().is_success() {
                wrong.push(format!("transfer of shard {shard} to {target}: {}", resp.text().await.unwrap_or_default()));
                break 'shards;
            }
            let now = c.leader_of(shard).await;
            if now != Some(target) {
                wrong.push(format!("shard {shard} is led by {now:?}, not by the transfer's target {target}"));
                break 'shards;
            }
            leader = target;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.expect("writer");
    let c = Arc::into_inner(c).expect("the writer is done");
    assert!(wrong.is_empty(), "{wrong:?}");
    assert!(failed.is_empty(), "writes failed while leadership moved: {failed:?}");
    assert_eq!(acked.len(), 50, "the writer landed writes on every key");
    let missing = c.read_back(&acked, &c.ids()).await;
    assert!(missing.is_empty(), "lost or stale: {missing:?}");
}

/// A merge cut off right after its donor was frozen (a driver killed there, or a spec
/// changed mid-halving) leaves a shard that refuses every request. Whatever the next
/// driver is asked to do, it first finishes that merge, so every key answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_cut_off_after_its_freeze_is_finished_by_the_next_driver_whatever_its_spec() {
    let c = Cluster::start(3, 4).await;
    let mut written = Vec::new();
    for i in 0..200 {
        let (k, v) = (format!("frozen-{i}"), format!("v{i}"));
        c.node(1).put(&k, &v).await;
        written.push((k, v));
    }
    let d = c.driver();
    let ring = converge(&d, 4, 3, &[1, 2, 3]).await;
    // What a merge of 3 into 1 does first, and nothing after it: freeze the donor.
    let leader = ring.observed.shards[&3].leader.expect("shard 3 has a leader");
    let url = format!("http://{}/internal/admin/shards/3/freeze?epoch={}", c.internal_addr(leader), ring.epoch + 1);
    let resp = c.http().post(url).send().await.expect("freeze");
    assert!(resp.status().is_success(), "freeze: {}", resp.text().await.unwrap_or_default());
    let donor_key =
        written.iter().find(|(k, _)| ringkv_node::ring::key_hash(0, k.as_bytes()) % 4 == 3).expect("a key of shard 3");
    let got = c.http().get(format!("{}{}", c.url(1), key_path(&donor_key.0))).send().await.expect("get");
    assert_eq!(got.status(), 503, "a frozen shard's keys are unavailable, retryably");
    // A freeze asked for an older ring than the shard's (a late request) is refused.
    let leader2 = d.observe().await.expect("ring").observed.shards[&2].leader.expect("shard 2 has a leader");
    let late = c
        .http()
        .post(format!("http://{}/internal/admin/shards/2/freeze?epoch=1", c.internal_addr(leader2)))
        .send()
        .await
        .expect("freeze");
    assert_eq!(late.status(), 400, "a stale freeze: {}", late.text().await.unwrap_or_default());
    let frozen = d.observe().await.expect("ring");
    assert!(!frozen.observed.shards[&2].frozen, "the stale freeze changed nothing");
    assert!(frozen.observed.shards[&3].frozen, "the planner sees the frozen shard: {}", frozen.describe());

    // The next driver wants 4 shards, which the ring seemingly has: it merges, then splits.
    converge(&d, 4, 3, &[1, 2, 3]).await;
    let missing = c.read_back(&written, &c.ids()).await;
    assert!(missing.is_empty(), "unavailable or lost after the finished merge: {missing:?}");
}

/// A frozen donor's keys live only in its replicas until the receiver has absorbed them.
/// Every node learns, from the donor's own refusals, that the receiver will own its
/// slice; that is not proof the receiver took the keys in. So a donor replica that loses
/// its leader (here: the other nodes paused, one node at a time) must stay, however long
/// it is leaderless, and the merge, finished afterwards, must still find the keys.
/// (Soak seed 2031 lost 58 acknowledged writes this way: every replica of a frozen donor
/// retired as "merged away" before the receiver absorbed it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_donor_cut_off_from_its_leader_keeps_its_keys_until_the_receiver_absorbed_them() {
    let c = Cluster::start(3, 2).await;
    let d = c.driver();
    let ring = converge(&d, 2, 3, &[1, 2, 3]).await;
    let mut written = Vec::new();
    for i in 0..100 {
        let (k, v) = (format!("donor-{i}"), format!("v{i}"));
        c.node(1 + i % 3).put(&k, &v).await;
        written.push((k, v));
    }
    // The first step of a merge of 1 into 0, and nothing after it.
    let leader = ring.observed.shards[&1].leader.expect("shard 1 has a leader");
    let url = format!("http://{}/internal/admin/shards/1/freeze?epoch={}", c.internal_addr(leader), ring.epoch + 1);
    let resp = c.http().post(url).send().await.expect("freeze");
    assert!(resp.status().is_success(), "freeze: {}", resp.text().await.unwrap_or_default());
    // Every node asks the donor for one of its keys and hears its refusal naming shard 0
    // at modulus 1 (the client gets a retryable 503 once its deadline passes).
    let donor_key =
        written.iter().find(|(k, _)| ringkv_node::ring::key_hash(0, k.as_bytes()) % 2 == 1).expect("a key of shard 1");
    let mut asks = tokio::task::JoinSet::new();
    for id in c.ids() {
        let url = format!("{}{}", c.url(id), key_path(&donor_key.0));
        let http = c.http().clone();
        asks.spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(status) = asks.join_next().await {
        assert_eq!(status.expect("join").expect("get"), 503, "a frozen shard's keys are unavailable, retryably");
    }
    // Each node in turn alone: its replica of the donor has no leader for well over two
    // rounds of the node's retirement check.
    for alone in c.ids() {
        let others: Vec<u64> = c.ids().into_iter().filter(|id| *id != alone).collect();
        for id in &others {
            c.pause(*id);
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        for id in &others {
            c.resume(*id);
        }
        let view = c.node(alone).cluster_view().await;
        assert!(
            view.shards.iter().any(|s| s.id == 1),
            "node {alone} retired its replica of the frozen donor before the receiver absorbed it:\n{}",
            c.log(alone).lines().filter(|l| l.contains("retired")).collect::<Vec<_>>().join("\n")
        );
    }
    c.wait_ready().await;
    // The next driver finishes the merge; every key was kept.
    converge(&d, 1, 3, &[1, 2, 3]).await;
    let missing = c.read_back(&written, &c.ids()).await;
    assert!(missing.is_empty(), "lost after the merge: {missing:?}");
}
