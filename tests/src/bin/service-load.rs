//! A recorded load against a running cluster from outside, for the Kubernetes end-to-end
//! (tests/k8s/e2e.sh): while the operator reshards and scales the cluster, clients do
//! puts, deletes, compare-and-swaps and linearizable reads on a few shared keys through
//! the given URLs (the client Service), and a writer of unique keys records every write
//! the cluster acknowledged. When the stop file appears (or after `--max-secs`) it
//! stops, reads every key back and checks:
//! - the history of the shared keys is linearizable (the project's checker);
//! - every acknowledged unique write reads back with its value;
//! - no answer other than success, 404/409 or a retryable 503.
//!
//!     service-load --url http://10.96.0.20:8080 --stop-file /tmp/stop
//!
//! Prints one `service-load: …` line with what it saw (`max_write_wait_ms` is the longest
//! any write waited for its answer, whatever the answer), then the writes that waited
//! over 300 ms with when (seconds since the start), and exits 1 if a check failed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use ringkv_tests::load::Load;
use ringkv_tests::{NodeClient, Writer};

#[derive(Parser)]
#[command(about = "A recorded, checked load against a running ringkv cluster")]
struct Args {
    /// Client API base URL (repeat to spread the load).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Clients on the shared keys.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// How many of those clients write (the rest only read).
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Shared keys (`lin-<run>-0` …, a fresh run id each time).
    #[arg(long, default_value_t = 8)]
    keys: usize,
    /// Stop when this file exists.
    #[arg(long)]
    stop_file: Option<PathBuf>,
    /// Stop after this many seconds at the latest.
    #[arg(long, default_value_t = 3600)]
    max_secs: u64,
}

/// How long the final reads of the unique writes may keep failing before a key counts
/// as lost.
const READ_BACK_DEADLINE: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args = Args::parse();
    let http = ringkv_api::client::http().no_proxy().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
    let urls: Vec<String> = args.urls.iter().map(|u| u.trim_end_matches('/').to_string()).collect();
    let node = NodeClient::new(0, urls[0].clone(), http);
    // Fresh keys per run: the checker starts every register absent, and the cluster may
    // hold an earlier run's keys.
    let run = format!("{:08x}", rand::random::<u32>());
    let load =
        Load::start_on(&format!("lin-{run}-"), urls.clone(), args.clients, args.writers.min(args.clients), args.keys);
    let writer = Writer::start(&format!("svc-{run}"), node.clone());
    let started = Instant::now();
    let end = started + Duration::from_secs(args.max_secs);
    while Instant::now() < end && !args.stop_file.as_ref().is_some_and(|f| f.exists()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ran = started.elapsed();
    let written = writer.finish().await;
    let checked = load.try_finish().await;

    // Every acknowledged unique write must read back.
    let mut lost = Vec::new();
    let deadline = Instant::now() + READ_BACK_DEADLINE;
    for (key, value) in &written.acked {
        loop {
            match node.try_entry_with(key, "").await {
                Ok(Some(e)) if e.value == *value => break,
                Ok(other) => {
                    lost.push(format!("{key}: wanted {value:?}, read {:?}", other.map(|e| e.value)));
                    break;
                }
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => {
                    lost.push(format!("{key}: no answer within {READ_BACK_DEADLINE:?}: {e}"));
                    break;
                }
            }
        }
    }

    let (ok, verdict) = match (&checked, lost.is_empty()) {
        (Ok(r), true) => (
            true,
            format!(
                "linearizable yes, ops {}, keys {}, unknown {}, max_write_wait_ms {}",
                r.ops,
                r.keys,
                r.unknown,
                r.max_write_wait.as_millis()
            ),
        ),
        (Ok(r), false) => (false, format!("linearizable yes, max_write_wait_ms {}", r.max_write_wait.as_millis())),
        (Err(e), _) => (false, format!("FAILED: {e}")),
    };
    println!(
        "service-load: ran {:.0}s, {verdict}, unique writes acked {} failed {} lost {}",
        ran.as_secs_f64(),
        written.acked.len(),
        written.failed,
        lost.len()
    );
    for l in lost.iter().take(10) {
        println!("service-load: lost {l}");
    }
    if let Ok(r) = &checked {
        for (at, waited, what) in r.slow_writes.iter().take(20) {
            println!("service-load: slow write at {at:.1}s waited {} ms: {what}", waited.as_millis());
        }
    }
    if !ok {
        std::process::exit(1);
    }
}
