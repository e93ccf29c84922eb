//! `ringkv-operator run` (reconcile until SIGTERM) and `ringkv-operator crd` (print the CRD).

use anyhow::Context as _;
use clap::Parser;
use ringkv_operator::config::{Cli, Command, LogFormat, RunConfig};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", ringkv_operator::crd::crd_yaml()?);
            Ok(())
        }
        Command::Run(config) => {
            if let Err(errs) = config.validate() {
                for e in &errs {
                    eprintln!("ringkv-operator: invalid configuration: {e}");
                }
                anyhow::bail!("{} configuration error(s)", errs.len());
            }
            let served = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(serve(*config));
            // One line that says what went wrong (and what to do), not a backtrace.
            if let Err(e) = served {
                eprintln!("ringkv-operator: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(mut config: RunConfig) -> anyhow::Result<()> {
    init_tracing(config.log_format);
    if config.identity.is_none() {
        // In a pod, HOSTNAME is the pod name: unique per replica.
        config.identity = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty());
    }
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, namespace = ?config.watch_namespace, "ringkv-operator starting");

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        on_signal.cancel();
    });
    ringkv_operator::run(config, client, listener, shutdown).await?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
