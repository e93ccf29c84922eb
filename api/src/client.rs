//! A typed client for the admin API: the ring a node reports and the [`AdminRequest`]s,
//! over plain HTTP to a node's internal port (`host:port`).

use std::time::Duration;

use crate::admin::{routes, AdminRequest, Method};
use crate::ring::Ring;

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
}

impl Default for AdminClient {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http }
    }

    /// The ring as the node at `addr` sees it.
    pub async fn ring(&self, addr: &str, timeout: Duration) -> Result<Ring, ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            addr: addr.to_string(),
            path: routes::RING.to_string(),
            message: e.to_string(),
        };
        let resp = self.http.get(format!("http://{addr}{}", routes::RING)).timeout(timeout).send().await;
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
        let resp = self.http.request(method, format!("http://{addr}{path}")).timeout(timeout).send().await;
        let resp = resp.map_err(unreachable)?;
        let status = resp.status();
        let body = resp.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(ClientError::Refused { addr: addr.to_string(), path, status: status.as_u16(), body });
        }
        Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }
}
