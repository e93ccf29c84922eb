//! Resharding under load: time to double 4 → 8 shards with `DATA_MB` of data on a
//! 3-node loopback cluster, the longest time a client write waited meanwhile, and the
//! throughput dip. Run through `bench/reshard.sh` (release build); prints `name: value`
//! lines like the other benchmarks.
//!
//! Environment: `DATA_MB` (default 1024), `VALUE_KB` (64) or `VALUE_BYTES`, `WRITERS` (16), `BASELINE_S`
//! (5), and `RINGKV_NODE_BIN` (the node binary; the script sets it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use ringkv_plan::{next_step, Next, Spec, Step};
use ringkv_tests::Cluster;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One finished client write: when it started and how long it took, from the start of
/// the measurement.
#[derive(Clone, Copy)]
struct Sample {
    start_us: u64,
    took_us: u64,
    ok: bool,
    key: u32,
}

/// Closed-loop writers of small values on random keys until `stop`.
async fn write_loop(http: reqwest::Client, urls: Arc<Vec<String>>, t0: Instant, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let (url, key) = {
            let mut rng = rand::rng();
            (urls[rng.random_range(0..urls.len())].clone(), rng.random_range(0..100_000u32))
        };
        let start = Instant::now();
        let r = http.put(format!("{url}/v1/kv/hot-{key:06}")).body(vec![b'x'; 100]).send().await;
        let ok = matches!(&r, Ok(r) if r.status().is_success());
        out.push(Sample {
            start_us: start.duration_since(t0).as_micros() as u64,
            took_us: start.elapsed().as_micros() as u64,
            ok,
            key,
        });
    }
    out
}

/// Loads `total` bytes in values of `value` bytes through every node, 32 at a time.
async fn load(c: &Cluster, total: u64, value: usize) -> (u64, Duration) {
    let n = total / value as u64;
    let next = Arc::new(AtomicU64::new(0));
    let urls: Arc<Vec<String>> = Arc::new(c.ids().iter().map(|id| c.url(*id)).collect());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32usize {
        let (next, urls, http) = (next.clone(), urls.clone(), c.http().clone());
        tasks.spawn(async move {
            let body = vec![b'v'; value];
            loop {
                // Small values go in batches of up to 500 puts (one request), large ones
                // one by one.
                let per = if value >= 4096 { 1 } else { 500 };
                let i = next.fetch_add(per, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let base = &urls[w % urls.len()];
                let request = |http: &reqwest::Client| {
                    if per == 1 {
                        return http.put(format!("{base}/v1/kv/bulk-{i:08}")).body(body.clone());
                    }
                    let text = String::from_utf8(body.clone()).expect("ascii");
                    let ops: Vec<_> = (i..(i + per).min(n))
                        .map(|k| serde_json::json!({ "op": "put", "key": format!("bulk-{k:08}"), "value": text }))
                        .collect();
                    http.post(format!("{base}/v1/batch")).json(&serde_json::json!({ "ops": ops }))
                };
                for attempt in 0.. {
                    match request(&http).send().await {
                        Ok(r) if r.status().is_success() => break,
                        other if attempt > 20 => panic!("load: {base}, key {i}: {other:?}"),
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    (n, started.elapsed())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let data_mb = env("DATA_MB", 1024);
    let value = match env("VALUE_BYTES", 0) {
        0 => env("VALUE_KB", 64) as usize * 1024,
        bytes => bytes as usize,
    };
    let writers = env("WRITERS", 16);
    let baseline = Duration::from_secs(env("BASELINE_S", 5));
    let c = Cluster::builder(3).shards(4).start().await;
    let d = c.driver();
    let spec = Spec { shards: 4, replication: 3, nodes: [1, 2, 3].into() };
    d.converge(|_| spec.clone(), Duration::from_secs(60), |_| {}).await?;

    let (keys, took) = load(&c, data_mb << 20, value).await;
    println!("reshard.data_mb: {data_mb}");
    println!("reshard.load_mb_per_s: {:.1}", data_mb as f64 / took.as_secs_f64());
    eprintln!("# loaded {keys} keys of {value} bytes in {:.1} s", took.as_secs_f64());
    // Let the page cache reach the disk before measuring, so the baseline is not a
    // writeback storm from the load.
    let settle = Instant::now();
    let _ = std::process::Command::new("sync").status();
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("# settled in {:.1} s", settle.elapsed().as_secs_f64());

    // Writers run through a baseline, the doubling, and as long again after.
    let urls: Arc<Vec<String>> = Arc::new(c.ids().iter().map(|id| c.url(*id)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let http = ringkv_api::client::http().timeout(Duration::from_secs(30)).build()?;
    let tasks: Vec<_> =
        (0..writers).map(|_| tokio::spawn(write_loop(http.clone(), urls.clone(), t0, stop.clone()))).collect();
    tokio::time::sleep(baseline).await;

    // The splits only (the planner balances leaders afterwards: measured separately).
    let split_start = t0.elapsed();
    let target = Spec { shards: 8, ..spec.clone() };
    let mut splits = 0;
    loop {
        let ring = d.observe().await?;
        match next_step(&target, &ring.observed) {
            Next::Step(step @ Step::Split { .. }) => {
                d.execute(&ring, &step).await?;
                splits += 1;
            }
            Next::Wait(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => break,
        }
    }
    let split_end = t0.elapsed();
    tokio::time::sleep(baseline).await;
    let balance_start = t0.elapsed();
    let ring = d.converge(|_| target.clone(), Duration::from_secs(300), |_| {}).await?;
    let balance_end = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Release);
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    anyhow::ensure!(ring.observed.shards.len() == 8, "not 8 shards: {}", ring.describe());
    // Every key is where it should be, once: the loaded ones plus each hot key a write
    // landed on (and perhaps those whose write failed), counted by the shards once the
    // background sweeps have dropped the splits' leftovers.
    let hot: std::collections::BTreeSet<u32> = samples.iter().filter(|s| s.ok).map(|s| s.key).collect();
    let maybe = samples
        .iter()
        .filter(|s| !s.ok && !hot.contains(&s.key))
        .map(|s| s.key)
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    let least = keys + hot.len() as u64;
    let counted = Instant::now();
    let total_keys = loop {
        let total: u64 = d.observe().await?.keys.values().sum();
        if (least..=least + maybe).contains(&total) || counted.elapsed() > Duration::from_secs(120) {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    anyhow::ensure!(
        (least..=least + maybe).contains(&total_keys),
        "the shards hold {total_keys} keys; {keys} loaded and {} hot keys written ({maybe} more perhaps)",
        hot.len()
    );
    println!("reshard.keys_checked: {total_keys}");

    report("reshard.baseline", &samples, baseline, Duration::ZERO, baseline);
    report("reshard.split", &samples, baseline, split_start, split_end);
    println!("reshard.splits: {splits}");
    // Between the splits and the balancing, the new shards' first snapshots and the
    // leftover sweeps run in the background.
    report("reshard.after_split", &samples, baseline, split_end, balance_start);
    report("reshard.balance", &samples, baseline, balance_start, balance_end);
    // The headline: the longest any write waited from the first split to the end.
    report("reshard.whole", &samples, baseline, split_start, balance_end);
    let errors = samples.iter().filter(|s| !s.ok).count();
    println!("reshard.errors: {errors}");
    // How long each new shard's first snapshot took to become durable (node logs).
    // And how long the background sweeps of the split's leftovers ran.
    for (what, marker) in [
        ("child_snapshot_open", "split: new shard created"),
        ("child_snapshot_durable", "first snapshot is durable"),
        ("leftover_sweep", "the other shard's keys are dropped"),
    ] {
        let mut ms: Vec<u64> = Vec::new();
        for id in c.ids() {
            for line in c.log(id).lines().filter(|l| l.contains(marker)) {
                ms.extend(
                    line.split_whitespace().find_map(|w| w.strip_prefix("ms=")).and_then(|v| v.parse::<u64>().ok()),
                );
            }
        }
        println!("reshard.{what}_max_ms: {}", ms.iter().max().copied().unwrap_or(0));
    }
    Ok(())
}

/// Figures for the writes that overlapped `[from, to)`, against the baseline window
/// `[0, baseline)`: duration, longest write, throughput dip (slowest 100 ms bucket, and
/// the mean over the window, as a ratio of the baseline's mean).
fn report(name: &str, samples: &[Sample], baseline: Duration, from: Duration, to: Duration) {
    let us = |d: Duration| d.as_micros() as u64;
    let (from, to, base) = (us(from), us(to), us(baseline));
    let ended = |s: &Sample| s.start_us + s.took_us;
    let base_ops = samples.iter().filter(|s| s.ok && ended(s) < base).count() as f64 / baseline.as_secs_f64();
    let overlapping: Vec<&Sample> = samples.iter().filter(|s| s.start_us < to && ended(s) >= from).collect();
    let longest = overlapping.iter().map(|s| s.took_us).max().unwrap_or(0);
    // Writes that started inside the window (a write that began before it may have been
    // held up by something else).
    let longest_started =
        samples.iter().filter(|s| s.start_us >= from && s.start_us < to).map(|s| s.took_us).max().unwrap_or(0);
    // Completions per 100 ms bucket over the window (at least one bucket).
    let buckets = ((to - from) / 100_000).max(1);
    let mut counts = vec![0u64; buckets as usize];
    for s in samples.iter().filter(|s| s.ok && ended(s) >= from && ended(s) < from + buckets * 100_000) {
        counts[((ended(s) - from) / 100_000) as usize] += 1;
    }
    let min_bucket = counts.iter().copied().min().unwrap_or(0) as f64 * 10.0;
    let mean = counts.iter().sum::<u64>() as f64 * 10.0 / buckets as f64;
    println!("{name}.seconds: {:.2}", (to - from) as f64 / 1e6);
    println!("{name}.longest_write_ms: {:.0}", longest as f64 / 1000.0);
    println!("{name}.longest_write_started_inside_ms: {:.0}", longest_started as f64 / 1000.0);
    println!("{name}.baseline_ops_per_s: {base_ops:.0}");
    println!("{name}.mean_ops_per_s: {mean:.0}");
    println!("{name}.mean_vs_baseline: {:.2}", mean / base_ops.max(1.0));
    println!("{name}.worst_100ms_vs_baseline: {:.2}", min_bucket / base_ops.max(1.0));
}
