//! The client side: wire connections for the hot calls and a pooled HTTP/2 (prior
//! knowledge, h2c) client for the rest, to every peer.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::call::Call;
use super::error::NetError;
use super::wire::WireClient;
use crate::ring::{NodeId, ShardId};
use crate::tls::{Mutual, Reloading};

/// Addresses of the peers' internal ports and the shared HTTP/2 client.
#[derive(Clone)]
pub struct PeerClient {
    /// The HTTP/2 client, and the TLS generation it was built with (rebuilt when the
    /// certificate files change).
    http: Arc<RwLock<(u64, reqwest::Client)>>,
    wire: Arc<WireClient>,
    addrs: Arc<RwLock<BTreeMap<NodeId, String>>>,
    tls: Option<Arc<Reloading<Mutual>>>,
}

fn http_client(tls: Option<&Reloading<Mutual>>) -> Result<reqwest::Client, String> {
    let builder = ringkv_api::client::http()
        .http2_prior_knowledge()
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5));
    let builder = match tls {
        Some(t) => builder.tls_backend_preconfigured((*t.current().client).clone()),
        None => builder,
    };
    builder.build().map_err(|e| e.to_string())
}

impl PeerClient {
    /// A client of the peers at `addrs`; with `tls`, every connection is mutual TLS.
    /// `Err` when the HTTP client cannot be built (with `tls`: from its configuration).
    pub fn new(addrs: BTreeMap<NodeId, String>, tls: Option<Arc<Reloading<Mutual>>>) -> Result<Self, String> {
        let generation = tls.as_ref().map_or(0, |t| t.generation());
        let http = http_client(tls.as_deref())?;
        Ok(Self {
            http: Arc::new(RwLock::new((generation, http))),
            wire: Arc::new(WireClient::new(tls.clone())),
            addrs: Arc::new(RwLock::new(addrs)),
            tls,
        })
    }

    /// The internal port's mutual TLS, if it runs (the listener serves with it).
    pub fn tls(&self) -> Option<&Arc<Reloading<Mutual>>> {
        self.tls.as_ref()
    }

    /// `http` or `https`.
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The HTTP client with the current certificate.
    fn http(&self) -> reqwest::Client {
        if let Some(t) = &self.tls {
            let generation = t.generation();
            if self.http.read().0 != generation {
                // A client that cannot be built from the new certificate keeps the previous
                // one (and tries again on the next call); never one without the cluster's CA.
                match http_client(Some(t)) {
                    Ok(c) => *self.http.write() = (generation, c),
                    Err(e) => tracing::warn!(error = %e, "internal HTTP client with the new certificate"),
                }
            }
        }
        self.http.read().1.clone()
    }

    /// The internal address of `node`, if known.
    pub fn addr(&self, node: NodeId) -> Option<String> {
        self.addrs.read().get(&node).cloned()
    }

    /// Opens a long-lived GET (a relayed watch) on `node`; the answer's body is read by
    /// the caller as it arrives. Only connecting and the status are bounded in time.
    pub async fn open_stream(
        &self,
        node: NodeId,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, NetError> {
        let addr = self.resolve(node, None)?;
        let mut req = self.http().get(format!("{}://{addr}{path}", self.scheme()));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = tokio::time::timeout(Duration::from_secs(5), req.send())
            .await
            .map_err(|_| NetError::Unreachable(node, "no answer in 5 s".into()))?
            .map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(NetError::Remote(node, format!("{status}: {body}")));
        }
        Ok(resp)
    }

    /// The address to reach `node` at: the known one, else `fallback` (a shard
    /// membership's entry for a node not learned yet).
    fn resolve(&self, node: NodeId, fallback: Option<&str>) -> Result<String, NetError> {
        self.addr(node)
            .or_else(|| fallback.map(str::to_string))
            .ok_or_else(|| NetError::Unreachable(node, "no address known".into()))
    }

    /// Records the internal address of a node learned from a shard's membership.
    pub fn learn(&self, node: NodeId, addr: String) {
        self.addrs.write().insert(node, addr);
    }

    /// Every known peer id.
    pub fn ids(&self) -> Vec<NodeId> {
        self.addrs.read().keys().copied().collect()
    }

    /// Sends `call` for `shard` to `node` and decodes the answer: over the wire when the
    /// call has a wire kind, else as an HTTP/2 POST (see [`Call::wire_kind`]).
    /// `fallback_addr`: where to reach a node not learned yet (a shard membership's entry).
    pub async fn send<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        fallback_addr: Option<&str>,
        call: Call,
        shard: ShardId,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        let addr = self.resolve(node, fallback_addr)?;
        match call.wire_kind() {
            Some(kind) => self.wire.call(node, &addr, kind, shard, req, timeout).await,
            None => self.post(node, &addr, &call.http_path(shard), req, timeout).await,
        }
    }

    /// POSTs a postcard-encoded request to `path` at `addr` and decodes the answer.
    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        let body = postcard::to_stdvec(req).map_err(|e| NetError::Remote(node, format!("encode: {e}")))?;
        let resp = self
            .http()
            .post(format!("{}://{addr}{path}", self.scheme()))
            .header("content-type", "application/x-postcard")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        if !status.is_success() {
            return Err(NetError::Remote(node, format!("{status}: {}", String::from_utf8_lossy(&bytes))));
        }
        postcard::from_bytes(&bytes).map_err(|e| NetError::Remote(node, format!("decode: {e}")))
    }

    /// An admin request to `node` (see `ringkv_api::admin`), JSON answer. A 400 is
    /// [`NetError::Refused`]: asking again will not help.
    pub async fn admin(
        &self,
        node: NodeId,
        req: &ringkv_api::AdminRequest,
        timeout: Duration,
    ) -> Result<serde_json::Value, NetError> {
        let addr = self.resolve(node, None)?;
        let method = match req.method() {
            ringkv_api::admin::Method::Post => reqwest::Method::POST,
            ringkv_api::admin::Method::Delete => reqwest::Method::DELETE,
        };
        let resp = self
            .http()
            .request(method, format!("{}://{addr}{}", self.scheme(), req.path()))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status == reqwest::StatusCode::BAD_REQUEST {
            return Err(NetError::Refused(node, body.to_string()));
        }
        if !status.is_success() {
            return Err(NetError::Remote(node, format!("{status}: {body}")));
        }
        Ok(body)
    }

    /// GET with a JSON answer (status endpoints).
    pub async fn get_json<Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        path: &str,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        let addr = self.resolve(node, None)?;
        let resp = self
            .http()
            .get(format!("{}://{addr}{path}", self.scheme()))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| NetError::Unreachable(node, e.to_string()))?;
        if !resp.status().is_success() {
            return Err(NetError::Remote(node, resp.status().to_string()));
        }
        resp.json().await.map_err(|e| NetError::Remote(node, e.to_string()))
    }
}
