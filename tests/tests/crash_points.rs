//! Every named crash point of the node (`node/src/crash.rs`) on a real cluster under
//! load. Each test arms one point on every node (`FAILPOINTS=<point>=return`: the first
//! time a node reaches it, the process aborts) and drives the ring through every kind
//! of durable step: a joining node gets replicas (host, learner, snapshot install, voter),
//! leaders move onto it, the ring doubles (splits, first snapshots, `ring.json`, leftover
//! sweeps) and halves while the node is drained (freeze, absorbed chunks, merge done,
//! retirement of donors and removed replicas), with snapshots and WAL rotation and
//! compaction running all along. A monitor restarts every aborted node at once, on the
//! same data and unarmed. The test then requires that the point fired, that every
//! restart came up, that the ring converged balanced, and that the recorded history of
//! puts, deletes, compare-and-swaps and reads (final reads through every node included)
//! is linearizable: no acknowledged write lost.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringkv_ctl::driver::{Cluster as Ring, Driver, Progress};
use ringkv_plan::Spec;
use ringkv_tests::load::Load;
use ringkv_tests::Cluster;

/// Drives the ring to `shards` shards on `nodes` with three replicas each.
async fn converge(d: &Driver, shards: u32, nodes: &[u64]) -> Result<Ring, String> {
    let nodes: std::collections::BTreeSet<u64> = nodes.iter().copied().collect();
    let spec = move |_: &Ring| Spec { shards, replication: 3, nodes: nodes.clone() };
    let ring = d
        .converge(&spec, Duration::from_secs(90), |p| match &p {
            Progress::Step(s) => eprintln!("step: {}", s.describe()),
            Progress::StepFailed(s, why) => {
                eprintln!("step failed (will retry): {}: {why}", s.describe())
            }
            _ => {}
        })
        .await
        .map_err(|e| format!("did not converge to {shards} shards: {e}"))?;
    ringkv_plan::is_balanced(&spec(&ring), &ring.observed)
        .map_err(|e| format!("converged but unbalanced: {e}\n{}", ring.describe()))?;
    Ok(ring)
}

/// Puts of 8 KiB values on 64 keys through every node, up to 100 a second: WAL volume
/// for segment rotation and compaction. Outcomes do not matter here (the recorded load checks
/// correctness).
async fn filler(urls: Vec<String>, stop: Arc<AtomicBool>) {
    let http = ringkv_api::client::http().no_proxy().timeout(Duration::from_secs(5)).build().expect("client");
    let value = "x".repeat(8 << 10);
    let mut i = 0usize;
    while !stop.load(Ordering::Acquire) {
        let url = format!("{}/v1/kv/fill-{}", urls[i % urls.len()], i % 64);
        let _ = http.put(url).body(value.clone()).send().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        i += 1;
    }
}

/// Restarts every node that stopped on its own, at once and unarmed; counts them.
async fn restarter(c: Arc<Cluster>, stop: Arc<AtomicBool>, restarts: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Acquire) {
        for id in c.ids() {
            if let Some(status) = c.exited(id) {
                eprintln!("node {id} exited ({status}); restarting it on its data");
                tokio::time::sleep(Duration::from_millis(200)).await;
                c.restart(id);
                restarts.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(point: &str) {
    let armed = format!("{point}=return");
    let c = Arc::new(
        Cluster::builder(4)
            .joining(1)
            .shards(2)
            .flag("--snapshot-entries", "300")
            .flag("--wal-segment-bytes", "1048576")
            .env("FAILPOINTS", &armed)
            .start()
            .await,
    );
    for id in c.ids() {
        assert!(
            c.log(id).contains("crash points armed"),
            "node {id} did not arm its crash points: the ringkv-node binary was built without the `failpoints` feature \
             (`cargo nextest run --workspace` builds it with it; so does `cargo build --workspace`)"
        );
    }
    let urls: Vec<String> = c.ids().iter().map(|id| c.url(*id)).collect();
    let load = Load::start(urls.clone(), 4, 3, 16);
    let stop = Arc::new(AtomicBool::new(false));
    let restarts = Arc::new(AtomicUsize::new(0));
    let fill = tokio::spawn(filler(urls, stop.clone()));
    let monitor = tokio::spawn(restarter(c.clone(), stop.clone(), restarts.clone()));

    let d = c.driver();
    let mut d4 = d.clone();
    d4.add_seed(c.internal_addr(4).to_string());
    let mut outcome = Ok(());
    // Node 4 joins (replicas and leaders move onto it), the ring doubles on four nodes,
    // then halves while node 4 is drained.
    for (shards, nodes) in [(2, &[1, 2, 3, 4][..]), (4, &[1, 2, 3, 4][..]), (2, &[1, 2, 3][..])] {
        let mut tries = 0;
        outcome = loop {
            match converge(&d4, shards, nodes).await {
                Ok(_) => break Ok(()),
                Err(e) if tries < 2 => {
                    eprintln!("{e}; again");
                    tries += 1;
                }
                Err(e) => break Err(e),
            }
        };
        if outcome.is_err() {
            break;
        }
    }
    // Background work (snapshots, WAL rotation and compaction) may not have reached the
    // point yet: the load goes on until it has, for up to a minute.
    let fired =
        |c: &Cluster| c.ids().into_iter().any(|id| c.log(id).contains(&format!("crash point {point}: aborting")));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while outcome.is_ok() && !fired(&c) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if outcome.is_ok() {
        outcome = converge(&d4, 2, &[1, 2, 3]).await.map(|_| ());
    }
    stop.store(true, Ordering::Release);
    let _ = fill.await;
    let _ = monitor.await;
    for id in c.ids() {
        if c.exited(id).is_some() {
            c.restart(id);
            restarts.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Err(e) = outcome {
        c.print_logs(40);
        panic!("crash point {point}: {e}");
    }
    c.wait_ready().await;
    // Converged once everyone is back: nothing left to do, balanced.
    converge(&d, 2, &[1, 2, 3]).await.unwrap_or_else(|e| panic!("crash point {point}: {e}"));

    let fired: Vec<u64> =
        c.ids().into_iter().filter(|id| c.log(*id).contains(&format!("crash point {point}: aborting"))).collect();
    let aborts: usize =
        c.ids().iter().map(|id| c.log(*id).matches(&format!("crash point {point}: aborting")).count()).sum();
    let restarts = restarts.load(Ordering::Relaxed);
    assert!(!fired.is_empty(), "crash point {point} was never reached");
    assert_eq!(restarts, aborts, "crash point {point}: {restarts} restarts for {aborts} aborts: a restart failed");
    let report = load.finish().await;
    assert!(report.ops > 100, "the load ran: {} ops", report.ops);
    println!(
        "crash point {point}: fired on nodes {fired:?}, {restarts} restart(s) came up, ring converged, {} ops on {} keys linearizable ({} unknown): PASS",
        report.ops, report.keys, report.unknown
    );
}

macro_rules! crash_point_tests {
    ($($test:ident => $point:literal $(, ignore = $why:literal)?);* $(;)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            $(#[ignore = $why])?
            async fn $test() {
                run($point).await;
            }
        )*
        const TESTED: &[&str] = &[$($point),*];
    };
}

// A point whose test fails for a bug not fixed yet can be marked
// `name => "point", ignore = "why"` (run with `--run-ignored all`); none is now.

crash_point_tests! {
    split_applied => "split-applied";
    split_created => "split-created";
    split_snapshot_written => "split-snapshot-written";
    split_recorded => "split-recorded";
    split_sweep => "split-sweep";
    merge_frozen => "merge-frozen";
    merge_absorbed => "merge-absorbed";
    merge_done => "merge-done";
    retire_recorded => "retire-recorded";
    retire_forgotten => "retire-forgotten";
    retire_removed => "retire-removed";
    replica_hosted => "replica-hosted";
    replica_added => "replica-added";
    replica_removed => "replica-removed";
    snapshot_written => "snapshot-written";
    snapshot_installed => "snapshot-installed";
    wal_rotated => "wal-rotated";
    wal_compacted => "wal-compacted";
    leader_transfer => "leader-transfer";
}

#[test]
fn every_crash_point_has_a_test() {
    let mut listed: Vec<&str> = ringkv_node::crash::POINTS.to_vec();
    let mut tested: Vec<&str> = TESTED.to_vec();
    listed.sort_unstable();
    tested.sort_unstable();
    assert_eq!(listed, tested, "node/src/crash.rs's POINTS and this suite's tests differ");
}
