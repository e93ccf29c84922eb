//! Test harness for ringkv's multi-process integration tests.
//!
//! The suites in `tests/tests/` start real `ringkv-node` binaries on loopback (or each in
//! its own network namespace) and talk to them over HTTP, the way a client or an operator
//! would. The harness is split by noun:
//! - [`process`] finds the binary and owns one node process: its ports on its own
//!   loopback address (127.0.0.x), its data dir, its log file, SIGKILL, SIGTERM and
//!   SIGSTOP/SIGCONT.
//! - [`cluster`] starts N processes as one cluster in a temporary directory, waits for
//!   readiness, finds shard leaders, and on a panicking test prints the tail of every
//!   node's log. Dropping a cluster SIGKILLs exactly the processes it started.
//! - [`client`] is one node's client API as typed steps (`put`, `get`, `list`, metrics,
//!   the cluster view), plus the small encoders a test needs (URL paths, base64).
//! - [`writer`] is a background writer that records which writes were acknowledged, so
//!   a failover test can check that none of them was lost.
//! - [`linearizability`] records client calls and checks each key's history is linearizable.
//! - [`load`] is a recorded mixed load of clients whose history that checker takes.
//! - [`http`] holds what those clients need to reach a cluster from outside (the
//!   Kubernetes end-to-end's `service-load`): a CA to trust, a token, names resolved to
//!   given addresses.
//! - [`netns`] runs each node as its own host in a network namespace, on a bridge the
//!   test owns, and cuts, drops and slows the links between them (partitions, one-way
//!   cuts, loss). A cluster given one (`Cluster::builder(3).network(net)`) starts its
//!   nodes there and removes the network after the nodes.
//! - [`watcher`] keeps key watches open through faults and checks them for silent gaps;
//!   [`ttl`] checks keys with a TTL are never visible after it nor gone before it.
//! - [`nemesis`] plays seeded fault schedules on five such hosts under all of the above
//!   and reports violations, lost writes and watch gaps (the CI set in
//!   `tests/tests/nemesis.rs`, the soak in `src/bin/soak.rs`).
//!
//! Tests wait on conditions with [`eventually`], never on fixed sleeps.

pub mod client;
pub mod cluster;
pub mod http;
pub mod linearizability;
pub mod load;
pub mod nemesis;
pub mod netns;
pub mod pki;
pub mod process;
pub mod ttl;
pub mod watcher;
pub mod writer;

use std::future::Future;
use std::time::Duration;

pub use client::{base64_decode, base64_encode, key_path, ClusterView, Entry, Listing, Metrics, NodeClient, Written};
pub use cluster::{Cluster, ClusterBuilder};
pub use netns::Network;
pub use writer::{Writer, WriterReport};

/// A key named `{prefix}-N` that lives in `shard` of db 0 when the ring has `shards`
/// shards (placement is the node library's own ring function).
pub fn key_in_shard(prefix: &str, shard: u32, shards: u32) -> String {
    (0u64..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|k| ringkv_node::ring::shard_for(0, k.as_bytes(), shards) == shard)
        .expect("some key lands in every shard")
}

/// How often [`eventually`] re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Ok`, and returns that value.
/// Panics after `timeout` with `what` and the last reason `check` gave.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
