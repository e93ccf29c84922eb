//! The `ringkv-node` binary: parse config, start logging, bind, run.

use anyhow::Context;
use clap::Parser;
use ringkv_node::Config;
use tokio_util::sync::CancellationToken;

/// mimalloc: the write path allocates many small, short-lived buffers across threads,
/// where glibc malloc showed up at ~12% of the leader's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    ringkv_node::crash::arm_from_env();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads {
        rt.worker_threads(n);
    }
    rt.enable_all().build().context("starting the async runtime")?.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if let Err(errs) = config.validate() {
        for e in &errs {
            eprintln!("ringkv-node: invalid configuration: {e}");
        }
        std::process::exit(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGKV_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    if config.log_format == ringkv_node::config::LogFormat::Json {
        tracing_subscriber::fmt().with_env_filter(filter).json().init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    if config.is_joining() {
        tracing::info!(
            node_id = config.node_id,
            "not among --peers: joining the ring they bootstrapped; replicas come from the admin API"
        );
    }
    let client = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the client port {}", config.listen))?;
    let internal = tokio::net::TcpListener::bind(config.internal_addr())
        .await
        .with_context(|| format!("binding the internal port {}", config.internal_addr()))?;

    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        s.cancel();
    });
    match ringkv_node::run(config, client, internal, shutdown).await {
        Err(ringkv_node::StartError::Fenced(why)) => {
            // Exit now, before the runtime winds down tasks that might still touch the disk.
            eprintln!("ringkv-node: fenced ({why}); exiting with {}", ringkv_node::node::disk::EXIT_FENCED);
            std::process::exit(ringkv_node::node::disk::EXIT_FENCED);
        }
        r => r.context("ringkv-node failed"),
    }
}
