//! The bounded nemesis set CI runs (issue 14): fixed seeds, every fault at least once,
//! once on a steady ring and once while the ring splits, merges, drains and adds a node.
//! Five nodes, each its own host in a network namespace; see `ringkv_tests::nemesis` for
//! what runs alongside and what is checked. Without root, `ip` or `iptables` each test
//! prints `SKIPPED <test>: <reason>` and returns. The soak (`tests/soak.sh`) runs random
//! schedules of the same faults.

use ringkv_tests::nemesis::{self, Fault, Schedule, NODES};
use ringkv_tests::Network;

async fn play(test: &str, schedule: Schedule) {
    let Some(net) = Network::for_test(test, NODES) else { return };
    eprintln!("{test}: {}", schedule.describe());
    let report = nemesis::run(&schedule, net).await;
    eprintln!("{test}: {}", report.describe());
    for (fault, times) in &report.recovery {
        for t in times {
            eprintln!("FIGURE {test}: ready with agreed leaders after healing {fault}: {:.3}s", t.as_secs_f64());
        }
    }
    assert!(report.ok(), "{test}: {}", report.describe());
    assert!(report.operations > 1000, "{test}: the workload ran: {}", report.describe());
}

/// Every network and process fault once, in a seeded order, on a steady ring of four
/// shards with five replicas each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_once_on_a_steady_ring() {
    play("every_fault_once_on_a_steady_ring", Schedule::covering(1, &Fault::ALL, false)).await;
}

/// Every fault again while the ring goes 4 → 8 → 16 shards (R = 3), drains node 5, adds
/// it back and merges to 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_while_the_ring_splits_merges_and_moves() {
    play("every_fault_while_the_ring_splits_merges_and_moves", Schedule::covering(2, &Fault::ALL, true)).await;
}
