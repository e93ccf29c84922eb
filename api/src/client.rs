//! A typed client for the admin API: the ring a node reports and the [`AdminRequest`]s,
//! to a node's internal port (`host:port`), over plain HTTP or, where the cluster runs
//! mutual TLS, HTTPS with this client's certificate ([`AdminClient::with_tls`]).

use std::time::Duration;

use crate::admin::{routes, AdminRequest, Method};
use crate::ring::Ring;

/// The one way to start an HTTP client in ringkv. reqwest is built with rustls but no
/// crypto provider of its own (one provider, ring, for the whole project, rather than a
/// second crypto library), so it needs the process default, installed here first.
/// (`clippy.toml` forbids `reqwest::Client::new` and `reqwest::Client::builder`.)
#[allow(clippy::disallowed_methods)]
pub fn http() -> reqwest::ClientBuilder {
    crate::tls::install_provider();
    reqwest::Client::builder()
}

/// A failed admin call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer (connect failure, timeout, an unreadable body): asking again may help.
    #[error("{addr}{path}: {message}")]
    Unreachable { addr: String, path: String, message: String },
    /// The node answered with an error status; 400 means the request itself is refused.
    #[error("{addr}{path}: {status} {body}")]
    Refused { addr: String, path: String, status: u16, body: String },
}

/// Talks to nodes' admin API; clones share connections.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    /// `http` or `https`.
    scheme: &'static str,
}

impl Default for AdminClient {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminClient {
    pub fn new() -> Self {
        let http =
            http().connect_timeout(Duration::from_millis(500)).build().unwrap_or_else(|_| reqwest::Client::default());
        Self { http, scheme: "http" }
    }

    /// A client for nodes whose internal port runs mutual TLS: `tls` trusts the cluster's
    /// CA and presents this client's certificate (see [`crate::tls::mutual_client_config`]).
    pub fn with_tls(tls: rustls::ClientConfig) -> Result<Self, String> {
        let http = http()
            .connect_timeout(Duration::from_millis(500))
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| format!("TLS client: {e}"))?;
        Ok(Self { http, scheme: "https" })
    }

    /// The ring as the node at `addr` sees it.
    pub async fn ring(&self, addr: &str, timeout: Duration) -> Result<Ring, ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            addr: addr.to_string(),
            path: routes::RING.to_string(),
            message: e.to_string(),
        };
        let resp = self.http.get(format!("{}://{addr}{}", self.scheme, routes::RING)).timeout(timeout).send().await;
        let resp = resp.map_err(unreachable)?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Refused {
                addr: addr.to_string(),
                path: routes::RING.to_string(),
                status: status.as_u16(),
                body,
            });
        }
        resp.json::<Ring>().await.map_err(unreachable)
    }

    /// Sends `req` to the node at `addr`; the answer's JSON on success.
    pub async fn send(
        &self,
        addr: &str,
        req: &AdminRequest,
        timeout: Duration,
    ) -> Result<serde_json::Value, ClientError> {
        let path = req.path();
        let method = match req.method() {
            Method::Post => reqwest::Method::POST,
            Method::Delete => reqwest::Method::DELETE,
        };
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            addr: addr.to_string(),
            path: path.clone(),
            message: e.to_string(),
        };
        let resp = self.http.request(method, format!("{}://{addr}{path}", self.scheme)).timeout(timeout).send().await;
        let resp = resp.map_err(unreachable)?;
        let status = resp.status();
        let body = resp.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(ClientError::Refused { addr: addr.to_string(), path, status: status.as_u16(), body });
        }
        Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }
}
