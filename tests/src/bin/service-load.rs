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
//! Against a cluster on TLS with tokens, the URL names what the certificate names and
//! `--resolve` says where that is, as with curl:
//!
//!     service-load --url https://demo.default.svc:8080 --ca ca.crt --token "$TOKEN" \
//!       --resolve demo.default.svc:8080:10.96.0.20 --stop-file /tmp/stop
//!
//! Prints one `service-load: …` line with what it saw (`max_write_wait_ms` is the longest
//! any write waited for its answer, whatever the answer), then the writes that waited
//! over 300 ms with when (seconds since the start), and exits 1 if a check failed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use ringkv_tests::http::{HttpSettings, Resolve};
use ringkv_tests::load::Load;
use ringkv_tests::{NodeClient, Writer};

#[derive(Parser)]
#[command(name = "service-load", about = "A recorded, checked load against a running ringkv cluster")]
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
    /// PEM CA certificates to trust for https URLs, and only them (without it: the
    /// platform's roots).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// A bearer token sent with every request (`Authorization: Bearer TOKEN`).
    #[arg(long, env = "RINGKV_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Connect to HOST at ADDR instead of looking it up, like curl's `--resolve` (repeat
    /// for other hosts). A port in the URL is the one dialled, whatever PORT says.
    #[arg(long = "resolve", value_name = "HOST:PORT:ADDR")]
    resolves: Vec<Resolve>,
}

impl Args {
    /// What every client of the run gets: the CA, the token, the resolved names.
    fn http_settings(&self) -> Result<HttpSettings, String> {
        let mut s = HttpSettings::default();
        if let Some(ca) = &self.ca {
            s = s.trust_only(ca)?;
        }
        if let Some(token) = &self.token {
            s = s.token(token)?;
        }
        for r in &self.resolves {
            s = s.resolve(r.clone())?;
        }
        Ok(s)
    }
}

/// How long the final reads of the unique writes may keep failing before a key counts
/// as lost.
const READ_BACK_DEADLINE: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args = Args::parse();
    let settings =
        args.http_settings().unwrap_or_else(|e| Args::command().error(clap::error::ErrorKind::InvalidValue, e).exit());
    let http = settings.builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
    let urls: Vec<String> = args.urls.iter().map(|u| u.trim_end_matches('/').to_string()).collect();
    let node = NodeClient::new(0, urls[0].clone(), http);
    // Fresh keys per run: the checker starts every register absent, and the cluster may
    // hold an earlier run's keys.
    let run = format!("{:08x}", rand::random::<u32>());
    let load = Load::start_with(
        &settings,
        &format!("lin-{run}-"),
        urls.clone(),
        args.clients,
        args.writers.min(args.clients),
        args.keys,
    );
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
