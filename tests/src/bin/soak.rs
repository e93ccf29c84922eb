//! The nemesis soak: random fault schedules, one after another, each on a fresh
//! five-node cluster in network namespaces (needs root, `ip`, `iptables`), ending with
//! one line: `schedules N, operations M, violations V, lost writes L, watch gaps G`.
//!
//!     bash tests/soak.sh --schedules 20            # or --minutes 60
//!     bash tests/soak.sh --seed 1234 --schedules 1 # replay one schedule's faults
//!
//! Schedule `k` of a soak started with `--seed S` has seed `S + k`; every schedule's
//! seed, faults and findings are printed as it ends, and the exit status is non-zero if
//! any schedule found a problem.

use std::time::{Duration, Instant};

use clap::Parser;
use ringkv_tests::nemesis::{self, Fault, Schedule, NODES};
use ringkv_tests::Network;

#[derive(Parser, Debug)]
#[command(about = "Random nemesis schedules against five-node ringkv clusters")]
struct Args {
    /// How many schedules.
    #[arg(long, default_value_t = 10)]
    schedules: u64,
    /// Instead of a count: keep starting schedules until this many minutes have passed.
    #[arg(long)]
    minutes: Option<u64>,
    /// Seed of the first schedule (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Faults per schedule.
    #[arg(long, default_value_t = 12)]
    steps: usize,
    /// The ring changes under the faults in schedules whose seed is `ring_every - 1`
    /// modulo this (every second one by default: the odd seeds; 0: never).
    #[arg(long, default_value_t = 2)]
    ring_every: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args = Args::parse();
    if let Err(why) = nemesis::available() {
        eprintln!("SKIPPED soak: {why}");
        std::process::exit(2);
    }
    let first = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    });
    let limit = if args.minutes.is_some() { u64::MAX } else { args.schedules };
    let until = args.minutes.map(|m| Instant::now() + Duration::from_secs(m * 60));
    println!("soak: first seed {first}, {} faults per schedule", args.steps);
    let (mut schedules, mut operations, mut violations, mut lost, mut gaps) = (0u64, 0usize, 0usize, 0usize, 0usize);
    let mut failed_seeds = Vec::new();
    for k in 0..limit {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let seed = first + k;
        // From the seed, not the position, so that `--seed S --schedules 1` replays it.
        let ring = args.ring_every > 0 && seed % args.ring_every == args.ring_every - 1;
        let schedule = Schedule::random(seed, args.steps, &Fault::ALL, ring);
        println!("schedule {k}: {}", schedule.describe());
        let net = match Network::create(NODES) {
            Ok(n) => n,
            Err(why) => {
                eprintln!("cannot create the network: {why}");
                std::process::exit(2);
            }
        };
        let started = Instant::now();
        let report = nemesis::run(&schedule, net).await;
        print!("{}", report.describe());
        println!("  took {:.0}s", started.elapsed().as_secs_f64());
        schedules += 1;
        operations += report.operations;
        violations += report.violations.len();
        lost += report.lost_writes.len();
        gaps += report.watch_gaps.len();
        if !report.ok() {
            failed_seeds.push(seed);
        }
    }
    if !failed_seeds.is_empty() {
        println!("seeds with findings: {failed_seeds:?}");
    }
    println!("schedules {schedules}, operations {operations}, violations {violations}, lost writes {lost}, watch gaps {gaps}");
    if violations + lost + gaps > 0 {
        std::process::exit(1);
    }
}
