//! One node's client API as typed steps, and the encoders the suites need.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The answer to a successful PUT.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub key: String,
    pub db: u8,
    pub shard: u32,
    pub revision: u64,
}

/// The answer to a DELETE.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub deleted: u64,
    pub revision: u64,
}

/// A key as `GET /v1/kv/{key}` and listings return it.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub db: u8,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    #[serde(default)]
    pub encoding: Option<String>,
}

/// One page of `GET /v1/kv`.
#[derive(Deserialize, Debug, Clone)]
pub struct Listing {
    pub items: Vec<Entry>,
    pub count: usize,
    pub next_cursor: Option<String>,
}

/// `GET /v1/cluster`: one node's view.
#[derive(Deserialize, Debug, Clone)]
pub struct ClusterView {
    pub node_id: u64,
    pub epoch: u64,
    pub shard_count: u32,
    pub nodes: Vec<NodeView>,
    pub shards: Vec<ShardView>,
}

/// A member as a node lists it.
#[derive(Deserialize, Debug, Clone)]
pub struct NodeView {
    pub id: u64,
    pub internal_addr: String,
}

/// One shard as a node sees it.
#[derive(Deserialize, Debug, Clone)]
pub struct ShardView {
    pub id: u32,
    pub members: Vec<u64>,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub state: String,
}

impl ClusterView {
    /// This node's view of one shard.
    pub fn shard(&self, id: u32) -> &ShardView {
        self.shards.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("node {} reports no shard {id}", self.node_id))
    }
}

/// A `/metrics` scrape.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// Samples of metric `name`: (labels, value).
    pub fn samples(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        let mut out = Vec::new();
        for line in self.0.lines().filter(|l| !l.starts_with('#')) {
            let Some(rest) = line.strip_prefix(name) else { continue };
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let Some(end) = r.rfind('}') else { continue };
                (parse_labels(&r[..end]), r[end + 1..].trim())
            } else if rest.starts_with(' ') {
                (Vec::new(), rest.trim())
            } else {
                continue; // another metric whose name starts with `name`
            };
            if let Ok(v) = value.parse::<f64>() {
                out.push((labels, v));
            }
        }
        out
    }

    /// The sample of `name` whose labels include every pair in `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .into_iter()
            .find(|(ls, _)| labels.iter().all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v)))
            .map(|(_, v)| v)
    }

    /// The sum of every sample of `name` (0 if there is none).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples(name).iter().map(|(_, v)| v).sum()
    }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    s.split("\",")
        .filter_map(|kv| {
            let (k, v) = kv.split_once("=\"")?;
            Some((k.trim().to_string(), v.trim_end_matches('"').to_string()))
        })
        .collect()
}

/// Whether `b` is left as is in a URL (RFC 3986 unreserved).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn escape(s: &[u8], keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::new();
    for &b in s {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/v1/kv/{key}` with the key percent-encoded; `/` is kept as a path separator.
pub fn key_path(key: &str) -> String {
    format!("/v1/kv/{}", escape(key.as_bytes(), |b| unreserved(b) || b == b'/'))
}

/// A query-string value, percent-encoded.
pub fn query_value(s: &str) -> String {
    escape(s.as_bytes(), unreserved)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what the API's `"encoding": "base64"` means).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard padded base64; `None` if it is not.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let chunks = s.as_bytes().chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for chunk in chunks {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            let v = B64.iter().position(|&x| x == c)?;
            n = (n << 6) | u32::try_from(v).ok()?;
        }
        n <<= 6 * pad;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// A client for one node's HTTP API. Cheap to clone and `'static`, so a spawned task can
/// own one.
#[derive(Clone)]
pub struct NodeClient {
    id: u64,
    base: String,
    http: reqwest::Client,
}

/// Reads a response that must be 200 and decodes its JSON body; panics with the status
/// and body otherwise.
async fn expect_json<T: DeserializeOwned>(what: &str, resp: Response) -> T {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
    assert_eq!(status, StatusCode::OK, "{what}: unexpected status; body: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: undecodable answer {body:?}: {e}"))
}

impl NodeClient {
    pub fn new(id: u64, base: String, http: reqwest::Client) -> Self {
        Self { id, base, http }
    }

    /// The node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `http://ip:port` + `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// A request to this node, to finish and send yourself.
    pub fn request(&self, method: Method, path_and_query: &str) -> RequestBuilder {
        self.http.request(method, self.url(path_and_query))
    }

    async fn send(&self, what: &str, req: RequestBuilder) -> Response {
        req.send().await.unwrap_or_else(|e| panic!("node {}: {what}: {e}", self.id))
    }

    /// PUTs `value` as the raw body into db 0; panics unless 200.
    pub async fn put(&self, key: &str, value: &str) -> Written {
        self.put_in(0, key, value).await
    }

    /// PUTs `value` as the raw body into `db`; panics unless 200.
    pub async fn put_in(&self, db: u8, key: &str, value: &str) -> Written {
        let what = format!("PUT {key} in db {db}");
        let req = self.request(Method::PUT, &format!("{}?db={db}", key_path(key))).body(value.to_string());
        expect_json(&what, self.send(&what, req).await).await
    }

    /// PUTs a raw body; `Err` with the status or transport error unless 200. For writers
    /// that expect failures.
    pub async fn try_put(&self, key: &str, value: &str) -> Result<Written, String> {
        let resp = self
            .request(Method::PUT, &key_path(key))
            .body(value.to_string())
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| format!("reading the body: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("{status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("undecodable {body:?}: {e}"))
    }

    /// GETs a key (linearizable, db 0): its value, or `None` on 404.
    pub async fn get(&self, key: &str) -> Option<String> {
        self.entry_with(key, "").await.map(|e| e.value)
    }

    /// GETs a key from `db` (linearizable).
    pub async fn get_in(&self, db: u8, key: &str) -> Option<String> {
        self.entry_with(key, &format!("db={db}")).await.map(|e| e.value)
    }

    /// GETs a key from this node's own replica (`consistency=serializable`).
    pub async fn get_serializable(&self, key: &str) -> Option<String> {
        self.entry_with(key, "consistency=serializable").await.map(|e| e.value)
    }

    /// GETs a key's full entry (linearizable, db 0).
    pub async fn entry(&self, key: &str) -> Option<Entry> {
        self.entry_with(key, "").await
    }

    /// GETs a key's entry with the given query string; `None` on 404, panics otherwise.
    pub async fn entry_with(&self, key: &str, query: &str) -> Option<Entry> {
        self.try_entry_with(key, query).await.unwrap_or_else(|e| panic!("node {}: GET {key}?{query}: {e}", self.id))
    }

    /// As [`NodeClient::entry_with`], but transport errors and unexpected statuses are `Err`.
    pub async fn try_entry_with(&self, key: &str, query: &str) -> Result<Option<Entry>, String> {
        let resp = self
            .request(Method::GET, &format!("{}?{query}", key_path(key)))
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| format!("reading the body: {e}"))?;
        match status {
            StatusCode::OK => serde_json::from_str(&body).map(Some).map_err(|e| format!("undecodable {body:?}: {e}")),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(format!("{other}: {body}")),
        }
    }

    /// DELETEs a key from db 0; panics unless 200.
    pub async fn delete(&self, key: &str) -> Deleted {
        self.delete_in(0, key).await
    }

    /// DELETEs a key from `db`; panics unless 200.
    pub async fn delete_in(&self, db: u8, key: &str) -> Deleted {
        let what = format!("DELETE {key} in db {db}");
        let req = self.request(Method::DELETE, &format!("{}?db={db}", key_path(key)));
        expect_json(&what, self.send(&what, req).await).await
    }

    /// One listing page: `GET /v1/kv?{query}`; panics unless 200.
    pub async fn list(&self, query: &str) -> Listing {
        let what = format!("GET /v1/kv?{query}");
        expect_json(&what, self.send(&what, self.request(Method::GET, &format!("/v1/kv?{query}"))).await).await
    }

    /// Every key of `db` under `prefix`, following cursors with pages of `limit`.
    pub async fn list_all(&self, db: u8, prefix: &str, limit: usize) -> Vec<Entry> {
        self.list_all_with(db, prefix, limit, "").await
    }

    /// As [`NodeClient::list_all`], with more query parameters (e.g. `consistency=serializable`).
    pub async fn list_all_with(&self, db: u8, prefix: &str, limit: usize, extra: &str) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("db={db}&prefix={}&limit={limit}", query_value(prefix));
            if !extra.is_empty() {
                q.push('&');
                q.push_str(extra);
            }
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={}", query_value(c)));
            }
            let page = self.list(&q).await;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    }

    /// Scrapes `/metrics`; panics unless 200.
    pub async fn metrics(&self) -> Metrics {
        let resp = self.send("GET /metrics", self.request(Method::GET, "/metrics")).await;
        assert_eq!(resp.status(), StatusCode::OK, "node {}: GET /metrics", self.id);
        Metrics(resp.text().await.unwrap_or_else(|e| panic!("node {}: /metrics body: {e}", self.id)))
    }

    /// `GET /v1/cluster`; panics unless 200.
    pub async fn cluster_view(&self) -> ClusterView {
        self.try_cluster_view().await.unwrap_or_else(|e| panic!("node {}: GET /v1/cluster: {e}", self.id))
    }

    /// `GET /v1/cluster`, with errors as `Err`.
    pub async fn try_cluster_view(&self) -> Result<ClusterView, String> {
        let resp = self.request(Method::GET, "/v1/cluster").send().await.map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::OK {
            return Err(format!("status {}", resp.status()));
        }
        resp.json().await.map_err(|e| e.to_string())
    }

    /// Whether `/readyz` answers 200 (false on any error).
    pub async fn is_ready(&self) -> bool {
        match self.request(Method::GET, "/readyz").send().await {
            Ok(r) => r.status() == StatusCode::OK,
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        let data: Vec<u8> = (0..=255u8).collect();
        for n in 0..10 {
            assert_eq!(base64_decode(&base64_encode(&data[..n])).as_deref(), Some(&data[..n]));
        }
        assert_eq!(base64_encode(b"\xff"), "/w==");
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_decode("*AAA"), None);
    }

    #[test]
    fn keys_are_percent_encoded_but_keep_slashes() {
        assert_eq!(key_path("a/b c%"), "/v1/kv/a/b%20c%25");
        assert_eq!(key_path("ü"), "/v1/kv/%C3%BC");
    }

    #[test]
    fn metrics_samples_are_found_by_labels() {
        let m = Metrics(
            "# HELP x\nringkv_keys{shard=\"0\"} 3\nringkv_keys{shard=\"1\"} 4\nringkv_keys_other 9\n\
             ringkv_http_requests_total{method=\"PUT\",route=\"/v1/kv/{*key}\",status=\"200\"} 2\n"
                .to_string(),
        );
        assert_eq!(m.sum("ringkv_keys"), 7.0);
        assert_eq!(m.value("ringkv_keys", &[("shard", "1")]), Some(4.0));
        assert_eq!(m.value("ringkv_http_requests_total", &[("route", "/v1/kv/{*key}"), ("status", "200")]), Some(2.0));
    }
}
