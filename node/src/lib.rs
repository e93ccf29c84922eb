//! ringkv-node: a sharded, Raft-replicated key-value store node.
//!
//! Modules and how a write flows through them:
//! - [`api`] decodes a client request (`PUT /v1/kv/{key}`), validating key, db, TTL and
//!   body ([`api::params`]), and hashes the key to its shard with [`ring`].
//! - [`router`] serves it if this node leads the shard, otherwise forwards it to the
//!   leader's internal port ([`raft_net`]), retrying through elections until a deadline.
//! - On the leader, [`shard`] proposes the command to that shard's openraft group. The
//!   log store ([`shard::log_store`]) appends the entry to the node's [`wal`], which
//!   group-commits: one fsync covers every queued write of every shard. Followers do the
//!   same on their nodes; the entry commits once a majority has fsynced it.
//! - The committed entry is applied to the shard's state machine
//!   ([`shard::state_machine`]), and the client gets the revision (the log index).
//!
//! Snapshots are taken from an O(1) clone of the state machine's persistent map, written
//! in the format of [`shard::snapshot_file`], and let the WAL drop old segments. A split
//! or a merge's end is an effect of the apply that [`shard::lifecycle`] carries out.
//! [`node`] is made of parts: the shard set ([`node::ShardSet`]) and the router's table
//! ([`router::table::Router`]), with resharding ([`node::reshard`]) and background work
//! ([`node::background`]) in their own files; [`config`] is the one
//! typed configuration; [`metrics`] the Prometheus registry; [`serve`] serves the client
//! port with time limits on request heads and bodies, so stalled clients are cut off.
//!
//! Layers, each importing only those below it (checked against `docs/layers.json`, see
//! docs/architecture.md "Layers"):
//! - HTTP: [`api`] (client port, and `api::internal` and `api::admin`, the internal
//!   port's routes): the only code that speaks status codes (`api::error`).
//! - Core: [`node`] and [`router`], which return domain errors (`RouteError`,
//!   `ReshardError`); the node answers its peers' calls (`raft_net::listener::Inbound`)
//!   and gives each shard its Raft network.
//! - [`shard`] (one Raft group; knows no transport) over [`wal`] (knows no shard);
//!   [`raft_net`], the transport (node ids, shard ids and bytes).
//! - [`ring`]: ids and placement, from the contract crate `ringkv-api`.

pub mod api;
pub mod config;
pub mod crash;
pub mod metrics;
pub mod node;
pub mod raft_net;
pub mod reload;
pub mod ring;
pub mod router;
pub mod serve;
pub mod shard;
pub mod tls;
pub mod wal;

use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use node::{Node, StartError};

/// Small request/response exchanges must not wait for Nagle's algorithm.
fn nodelay(tcp: &mut TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY");
    }
}

/// Runs a node on already-bound listeners until `shutdown` is cancelled, then shuts down
/// in order: stop accepting and drain client HTTP → hand leadership off → stop the Raft
/// groups → close the WAL (everything queued is fsynced) → stop the internal port.
/// Returns [`StartError::Fenced`] at once, stopping nothing in order, if the node fenced
/// itself (its WAL failed for good: see [`node::Fence`]) while serving, and after stopping
/// if it did so while stopping.
pub async fn run(
    config: Config,
    client: TcpListener,
    internal: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    // Certificates or a token file that do not load stop the start before anything is
    // opened.
    let client_tls = match config.client_tls() {
        Some(files) => Some(
            tls::reloading(files, tls::client_port_config).map_err(|e| StartError::Tls(format!("client port: {e}")))?,
        ),
        None => None,
    };
    if let (Some(clients), Some(cluster)) = (&config.tls_client_ca, &config.internal_tls_ca) {
        if tls::share_a_ca(clients, cluster) {
            tracing::warn!(
                "--tls-client-ca and --internal-tls-ca share a CA: every client certificate it signs can also open \
                 the internal port (Raft and the admin API); give client certificates a CA of their own"
            );
        }
    }
    if let Some(path) = &config.auth_tokens {
        api::auth::Tokens::load(path).map_err(|e| StartError::Refused(e.to_string()))?;
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let node = Node::open(config, metrics).await?;
    let tracker = TaskTracker::new();
    let background = CancellationToken::new();
    let internal_stop = CancellationToken::new();

    let internal_app = api::internal::router(node.clone());
    let (istop, inode) = (internal_stop.clone(), node.clone());
    tracker.spawn(async move {
        if let Some(d) = crash::delay("internal-serve-delay") {
            tokio::time::sleep(d).await;
        }
        let tls = inode.peers.tls().cloned();
        if let Some(t) = &tls {
            t.watch(istop.clone());
        }
        let http = match raft_net::listener::split(internal, inode, tls, istop.clone()) {
            Ok(h) => h,
            Err(e) => return tracing::error!(error = %e, "internal port"),
        };
        let r = axum::serve(http, internal_app).with_graceful_shutdown(istop.cancelled_owned()).await;
        if let Err(e) = r {
            tracing::error!(error = %e, "internal server failed");
        }
    });
    node::background::spawn(&node, &tracker, &background);

    tracing::info!(
        node_id = node.id,
        shards = node.shard_count,
        client = %client.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        internal = %node.config.internal_addr(),
        peers = node.peers.ids().len(),
        "ringkv node serving"
    );
    let (sd, stopping) = (shutdown.clone(), node.stopping.clone());
    tracker.spawn(async move {
        sd.cancelled().await;
        stopping.cancel();
    });
    let client_app = api::router(node.clone()).map_err(|e| StartError::Refused(e.to_string()))?;
    let timeouts = serve::Timeouts::default();
    let serving: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match client_tls {
        Some(tls) => {
            tls.watch(shutdown.clone());
            let listener = tls::TlsListener::new(client, tls, shutdown.clone())
                .map_err(|e| StartError::Tls(format!("client port: {e}")))?;
            Box::pin(serve::serve(listener, client_app, timeouts, shutdown.clone()))
        }
        None => Box::pin(serve::serve(client.tap_io(nodelay), client_app, timeouts, shutdown.clone())),
    };
    tokio::select! {
        () = serving => {}
        // The WAL failed for good: stop at once, as a crash would. No drain, no handoff
        // (both would need a working WAL); the caller exits and recovery replays the WAL.
        why = node.fence.tripped() => {
            tracing::error!(reason = %why, "fencing this node: it stops serving now and must be restarted");
            background.cancel();
            internal_stop.cancel();
            node.stopping.cancel();
            return Err(StartError::Fenced(why));
        }
    }
    tracing::info!("client traffic drained; handing off leadership");
    background.cancel();
    node.hand_off_leadership(Duration::from_secs(3)).await;
    node.stop().await;
    internal_stop.cancel();
    tracker.close();
    tracker.wait().await;
    // A WAL that failed for good while the node stopped (the last fsync, say) still
    // fences it: the exit code tells the supervisor that recovery must replay the WAL.
    if let Some(why) = node.fence.reason() {
        tracing::error!(reason = %why, "the WAL failed while the node stopped: fenced");
        return Err(StartError::Fenced(why));
    }
    tracing::info!("node stopped");
    Ok(())
}
