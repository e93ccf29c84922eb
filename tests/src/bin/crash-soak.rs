//! Randomized crash soak (issue #16): on a 3-node loopback cluster under a recorded
//! load, a driver reshards the ring 2 → 4 → 8 → 4 → 2 in a loop while nodes are killed
//! with SIGKILL at random moments and restarted on their data. After each run the
//! cluster must come back (every restart starts, every node ready), converge, read back
//! every acknowledged write of a writer of unique keys, and the recorded history of
//! puts, deletes, compare-and-swaps and reads must be linearizable. Runs are seeded:
//! the same seed kills at the same moments (timing still varies).
//!
//!     cargo build --workspace
//!     target/debug/crash-soak --runs 200 --seed 1 --chaos-secs 8
//!
//! Prints a line per run and ends with
//! `runs N, restarts M, failed restarts F, violations V, lost writes L`; exits 1 unless
//! F, V and L are 0.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringkv_ctl::driver::{Cluster as Ring, Progress};
use ringkv_plan::{Spec, Step};
use ringkv_tests::load::Load;
use ringkv_tests::{Cluster, Writer};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Default)]
struct Totals {
    runs: usize,
    restarts: usize,
    failed_restarts: usize,
    violations: usize,
    lost: usize,
}

/// Drives the ring towards each shard count in turn, for ever; failures (a node being
/// killed under it) are retried by the next round.
async fn reshard_loop(c: Arc<Cluster>, stop: Arc<AtomicBool>, steps: Arc<AtomicUsize>) {
    let d = c.driver();
    for shards in [4u32, 8, 4, 2].into_iter().cycle() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let spec = move |_: &Ring| Spec { shards, replication: 3, nodes: [1, 2, 3].into() };
        let _ = d
            .converge(&spec, Duration::from_secs(20), |p: Progress| {
                if let Progress::Step(Step::Split { .. } | Step::Merge { .. }) = p {
                    steps.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
    }
}

/// One run; returns (restarts, failed restarts, violations, lost writes).
async fn run(seed: u64, chaos: Duration) -> (usize, usize, usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    // A fresh cluster that does not start (a port another process took between the
    // harness choosing it and the node binding it) is no restart of ours: it is tried
    // again, up to three times, on fresh ports; only then is the run counted as failed.
    let mut attempt = 0;
    let c = loop {
        attempt += 1;
        let started = tokio::spawn(Cluster::builder(3).shards(2).flag("--snapshot-entries", "200").start()).await;
        match started {
            Ok(c) => break Arc::new(c),
            Err(e) if attempt < 3 => {
                eprintln!("seed {seed}: a fresh cluster did not start ({e}); again on fresh ports")
            }
            Err(e) => {
                eprintln!("seed {seed}: a fresh cluster did not start: {e}");
                println!("run seed {seed}: a fresh cluster did not start three times (counted as a violation)");
                return (0, 0, 1, 0);
            }
        }
    };
    let urls: Vec<String> = c.ids().iter().map(|id| c.url(*id)).collect();
    let history_start =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let load = Load::start(urls, 4, 3, 12);
    let writer = Writer::start(&format!("soak-{seed}"), c.node(1));
    let stop = Arc::new(AtomicBool::new(false));
    let splits_merges = Arc::new(AtomicUsize::new(0));
    let driver = tokio::spawn(reshard_loop(c.clone(), stop.clone(), splits_merges.clone()));
    let (mut restarts, mut failed) = (0, 0);
    let deadline = tokio::time::Instant::now() + chaos;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2000))).await;
        for id in c.ids() {
            if let Some(status) = c.exited(id) {
                eprintln!("seed {seed}: node {id} exited on its own ({status}):\n{}", tail(&c.log(id), 15));
                failed += 1;
                c.restart(id);
            }
        }
        let victim = rng.random_range(1..=3u64);
        c.kill(victim);
        writer.send_to(c.node(if victim == 1 { 2 } else { 1 }));
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
        c.restart(victim);
        restarts += 1;
    }
    stop.store(true, Ordering::Release);
    driver.abort();
    let _ = driver.await;
    // Everyone back and ready, the ring converged.
    let c2 = c.clone();
    let back = tokio::spawn(async move {
        c2.wait_ready().await;
        let spec = |_: &Ring| Spec { shards: 2, replication: 3, nodes: [1, 2, 3].into() };
        c2.driver().converge(&spec, Duration::from_secs(60), |_: Progress| {}).await.map_err(|e| e.to_string())
    })
    .await;
    let mut violations = 0;
    match back {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            eprintln!("seed {seed}: did not converge after the chaos: {e}");
            violations += 1;
        }
        Err(e) => {
            eprintln!("seed {seed}: a node did not come back: {e}");
            failed += 1;
        }
    }
    let report = writer.finish().await;
    let missing = c.read_back(&report.acked, &c.ids()).await;
    if !missing.is_empty() {
        eprintln!("seed {seed}: {} acknowledged writes lost: {:?}", missing.len(), &missing[..missing.len().min(5)]);
    }
    let checked = tokio::spawn(load.finish()).await;
    let ops = match checked {
        Ok(r) => r.ops,
        Err(e) => {
            eprintln!("seed {seed}: {e}");
            violations += 1;
            0
        }
    };
    if failed + violations + missing.len() > 0 {
        eprintln!(
            "seed {seed}: data and logs kept in {} (history times count from unix ms {history_start})",
            c.keep_data().display()
        );
    }
    println!(
        "run seed {seed}: {} splits/merges, {restarts} kills and restarts, {} acked unique writes, {ops} recorded ops, failed restarts {failed}, violations {violations}, lost writes {}",
        splits_merges.load(Ordering::Relaxed),
        report.acked.len(),
        missing.len()
    );
    (restarts, failed, violations, missing.len())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn main() {
    let runs = arg("--runs", 10);
    let seed = arg("--seed", 1);
    let chaos = Duration::from_secs(arg("--chaos-secs", 8));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    let mut t = Totals::default();
    for s in seed..seed + runs {
        let (r, f, v, l) = rt.block_on(run(s, chaos));
        t.runs += 1;
        t.restarts += r;
        t.failed_restarts += f;
        t.violations += v;
        t.lost += l;
    }
    println!(
        "runs {}, restarts {}, failed restarts {}, violations {}, lost writes {}",
        t.runs, t.restarts, t.failed_restarts, t.violations, t.lost
    );
    if t.failed_restarts + t.violations + t.lost > 0 {
        std::process::exit(1);
    }
}
