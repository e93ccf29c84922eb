//! The client HTTP API: routes, request metrics, authentication ([`auth`], with
//! `--auth-tokens`), and the JSON fallback for unknown routes and methods.

pub mod admin;
pub mod auth;
pub mod batch;
pub mod compat;
pub mod error;
pub mod extract;
pub mod health;
pub mod internal;
pub mod kv;
pub mod openapi;
pub mod params;
pub mod query;
pub mod watch;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::error::error_body;
use crate::node::Node;

/// The client-port router. With `--auth-tokens` it reads the token file, and an
/// unreadable or invalid one is an error (the node must not start open by mistake);
/// the file is then re-read on changes until the node stops.
pub fn router(node: Arc<Node>) -> Result<Router, auth::LoadError> {
    let mut app = Router::new()
        .route("/v1/kv", get(kv::list))
        .route("/v1/kv/{*key}", get(kv::get_key).put(kv::put_key).delete(kv::delete_key))
        .route("/v1/batch", axum::routing::post(batch::batch))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/cluster", get(health::cluster))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/set", axum::routing::any(compat::set))
        .route("/set_with_ttl", axum::routing::post(compat::set_with_ttl))
        .route("/select_db", axum::routing::post(compat::select_db))
        .route("/get", get(compat::get_query))
        .route("/get/{*key}", get(compat::get_path))
        .route("/delete", axum::routing::delete(compat::delete_query))
        .route("/delete/{*key}", axum::routing::delete(compat::delete_path))
        .route("/store", get(compat::store).post(compat::store).put(compat::store))
        .route("/retrieve", get(compat::retrieve))
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    if let Some(path) = &node.config.auth_tokens {
        let guard = auth::Guard::load(path, node.config.metrics_auth)?;
        guard.watch(node.stopping.clone());
        // Inside `track`, so refused requests are counted too.
        app = app.layer(middleware::from_fn_with_state(guard, auth::authenticate));
    }
    Ok(app.layer(middleware::from_fn_with_state(node.clone(), track)).with_state(node))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(error_body("no_route", "no such route"))).into_response()
}

async fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(error_body("method_not_allowed", "method not allowed on this route")))
        .into_response()
}

/// Counts requests and observes latency by route template (a bounded label).
async fn track(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    // MatchedPath and Method clone cheaply (shared string / inline enum).
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &node.metrics;
    let status = resp.status();
    let labels = [route, method.as_str(), status.as_str()];
    m.http_duration.with_label_values(&labels).observe(start.elapsed().as_secs_f64());
    m.http_requests.with_label_values(&labels).inc();
    resp
}
