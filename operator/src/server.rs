//! `/metrics` and `/healthz` of the operator.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::Error;

/// The router (tests call it directly).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/metrics", get(render)).with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render())
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Result<(), Error> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_health_and_metrics_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::new());
        metrics.reconciles.inc();
        metrics.failures.with_label_values(&["api_error"]).inc();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, metrics, shutdown.clone()));

        let http = ringkv_api::client::http().build().expect("an HTTP client");
        let health = http.get(format!("http://{addr}/healthz")).send().await.expect("healthz");
        assert!(health.status().is_success());
        let text =
            http.get(format!("http://{addr}/metrics")).send().await.expect("metrics").text().await.expect("body");
        assert!(text.contains("ringkv_operator_reconciles_total 1"), "{text}");
        assert!(text.contains("ringkv_operator_reconcile_failures_total{reason=\"api_error\"} 1"), "{text}");
        assert!(text.contains("ringkv_operator_reconcile_duration_seconds_bucket"), "{text}");

        shutdown.cancel();
        server.await.expect("server task").expect("clean shutdown");
    }
}
