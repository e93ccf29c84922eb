//! Who may call the client API, and what they may do.
//!
//! Off unless `--auth-tokens FILE` is given: then the API stays open as before. With it,
//! `/healthz` and `/readyz` stay open (probes carry no credentials), `/metrics` too unless
//! `--metrics-auth`, and every other request needs a principal: a bearer token
//! (`Authorization: Bearer rkv_...`) or a verified TLS client certificate
//! ([`ClientIdentity`]) named in the file. A request that sends a token is judged by the
//! token alone, certificate or not. No or an unknown credential is 401 (with
//! `WWW-Authenticate: Bearer realm="ringkv"`); a known one asking for more than it may is
//! 403 `forbidden`, and nothing is applied.
//!
//! Every request is checked twice. [`authenticate`], the middleware, resolves the
//! principal, refuses a role below what the route's class needs ([`route_needs`]: by
//! method and route, so a route added later without its own check still cannot be
//! written by a read token), and hands the principal on as an [`Access`]. Each handler
//! takes that `Access` as an extractor and asks it about each key, prefix or database it
//! touches ([`Access::allow`]), before it reads a body or proposes anything: the database
//! and prefix limits only the handler can see.
//!
//! # The token file
//!
//! ```json
//! {"tokens": [
//!   {"name": "app", "sha256": "<64 hex digits>", "role": "readwrite", "databases": [0, 3], "prefixes": ["app/"]},
//!   {"name": "dash", "sha256": "<64 hex digits>", "role": "read"},
//!   {"name": "ops-client", "certificate": "ops.example", "role": "admin"}
//! ]}
//! ```
//!
//! - `name`: unique, for messages and logs (a token itself is never logged).
//! - `sha256`: the SHA-256 of the whole token as sent (with its `rkv_` prefix), in hex:
//!   `printf %s "$TOKEN" | sha256sum`. The file holds no token, only hashes; [`new_token`]
//!   makes a token and its hash.
//! - `certificate`: instead of `sha256`, the name of a verified client certificate (its
//!   first DNS name, else its common name).
//! - `role`: `read` (get, list, watch, batches of gets), `readwrite` (also put, delete,
//!   compare-and-swap, batches with writes, the seed routes' writes) or `admin` (also
//!   `/v1/cluster`).
//! - `databases` (optional, default all): the database numbers it may use.
//! - `prefixes` (optional, default all keys): keys must start with one of these (bytes).
//!   A listing or watch must ask for a prefix that starts with one of them: one without
//!   a prefix, or with a shorter one, would reach keys outside.
//!
//! Unknown fields, a bad value, two entries with one name, hash or certificate, and
//! entries with both or neither of `sha256` and `certificate` are errors naming the
//! entry. The file is re-read within a second or two of a change (its content, see
//! [`crate::reload`]): a valid new file takes effect for the next request, an invalid
//! one is ignored with a warning and the previous tokens stay in force. A file that is
//! missing or invalid at start stops the node from starting.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::node::Node;
use crate::reload::Reloading;
use crate::tls::ClientIdentity;

/// What a principal may do. Each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    ReadWrite,
    Admin,
}

impl Role {
    /// As the token file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::ReadWrite => "readwrite",
            Role::Admin => "admin",
        }
    }
}

/// What a request does, as the role check sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Get, list, watch.
    Read,
    /// Put, delete, compare-and-swap.
    Write,
    /// The cluster view.
    Admin,
}

impl Op {
    /// The least role that may do this.
    fn needs(self) -> Role {
        match self {
            Op::Read => Role::Read,
            Op::Write => Role::ReadWrite,
            Op::Admin => Role::Admin,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Admin => "use the admin routes",
        }
    }
}

/// One principal: who, in what role, within which limits.
#[derive(Debug, PartialEq, Eq)]
struct Principal {
    name: String,
    role: Role,
    /// `None`: every database.
    databases: Option<Vec<u8>>,
    /// `None`: every key.
    prefixes: Option<Vec<Vec<u8>>>,
}

/// The principal of one request, as a request extension and an extractor. Without
/// `--auth-tokens` it is [`Access::open`]: an admin without limits.
#[derive(Clone, Debug)]
pub struct Access(Arc<Principal>);

static OPEN: LazyLock<Access> = LazyLock::new(|| {
    Access(Arc::new(Principal { name: "anyone".into(), role: Role::Admin, databases: None, prefixes: None }))
});

impl Access {
    /// Everything allowed: the API without `--auth-tokens`.
    pub fn open() -> Access {
        OPEN.clone()
    }

    /// The entry's `name` in the token file.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn role(&self) -> Role {
        self.0.role
    }

    fn forbidden(&self, why: String) -> ApiError {
        ApiError::Forbidden { message: format!("`{}` (role {}) {why}", self.0.name, self.0.role.as_str()) }
    }

    /// May this principal's role do `op` at all?
    pub fn require(&self, op: Op) -> Result<(), ApiError> {
        if self.0.role >= op.needs() {
            Ok(())
        } else {
            Err(self.forbidden(format!("may not {}", op.verb())))
        }
    }

    /// `op` on database `db`, no particular key (e.g. `/select_db`).
    pub fn allow_db(&self, op: Op, db: u8) -> Result<(), ApiError> {
        self.require(op)?;
        match &self.0.databases {
            Some(dbs) if !dbs.contains(&db) => Err(self.forbidden(format!("may not use db {db} (only {dbs:?})"))),
            _ => Ok(()),
        }
    }

    /// `op` on one key of database `db`: the key must start with one of the prefixes.
    pub fn allow(&self, op: Op, db: u8, key: &[u8]) -> Result<(), ApiError> {
        self.allow_db(op, db)?;
        match &self.0.prefixes {
            Some(ps) if !ps.iter().any(|p| key.starts_with(p)) => {
                Err(self.forbidden(format!("may only use keys starting with {}", shown(ps))))
            }
            _ => Ok(()),
        }
    }

    /// `op` on every key starting with `prefix` (a listing or a watch; empty: all keys).
    /// Allowed only when all of them are: `prefix` starts with one of the prefixes.
    pub fn allow_prefix(&self, op: Op, db: u8, prefix: &[u8]) -> Result<(), ApiError> {
        self.allow_db(op, db)?;
        match &self.0.prefixes {
            Some(ps) if !ps.iter().any(|p| prefix.starts_with(p)) => Err(self.forbidden(format!(
                "may only list or watch within {}: ask for a prefix starting with one of them",
                shown(ps)
            ))),
            _ => Ok(()),
        }
    }
}

fn shown(prefixes: &[Vec<u8>]) -> String {
    let quoted: Vec<String> = prefixes.iter().map(|p| format!("`{}`", String::from_utf8_lossy(p))).collect();
    quoted.join(", ")
}

/// Handlers take the request's [`Access`]. Without `--auth-tokens` that is
/// [`Access::open`]; with it the middleware must have put one there, and a request it
/// did not (a route outside the router's layers) is refused rather than served open.
impl FromRequestParts<Arc<Node>> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, ApiError> {
        match parts.extensions.get::<Access>() {
            Some(a) => Ok(a.clone()),
            None if node.config.auth_tokens.is_none() => Ok(Access::open()),
            None => Err(ApiError::internal("no principal for this request: the auth middleware did not run")),
        }
    }
}

/// The SHA-256 of a token, in lowercase hex: what the token file holds. Tokens are 32
/// random bytes, so a fast unsalted hash is right: there is nothing to guess a token
/// from, and a slow password hash would only cost every request its time.
pub fn hash_token(token: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(token.as_bytes()).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A new random token (`rkv_` and 32 random bytes in unpadded URL-safe base64) and its
/// [`hash_token`], for the token file. Give the token to the client; keep only the hash.
pub fn new_token() -> (String, String) {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let token = format!("rkv_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&token);
    (token, hash)
}

/// The token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("auth token file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("auth token file {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    /// Each entry is decoded on its own, so that an error can name its entry.
    tokens: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    certificate: Option<String>,
    role: Role,
    #[serde(default)]
    databases: Option<Vec<u8>>,
    #[serde(default)]
    prefixes: Option<Vec<String>>,
}

/// The principals of one version of the token file.
#[derive(Debug, Default)]
pub struct Tokens {
    /// By [`hash_token`] of the token. Looking a hash up takes time that depends on the
    /// hash, not on how much of a stored token a guess got right.
    by_hash: HashMap<String, Access>,
    /// By certificate name.
    by_certificate: HashMap<String, Access>,
}

impl Tokens {
    /// Decodes a token file; the error names the entry at fault.
    pub fn parse(text: &[u8]) -> Result<Tokens, String> {
        let body: FileBody =
            serde_json::from_slice(text).map_err(|e| format!("not a token file (want {{\"tokens\": [...]}}): {e}"))?;
        let mut tokens = Tokens::default();
        let mut names = HashSet::new();
        for (i, value) in body.tokens.into_iter().enumerate() {
            let which = match value.get("name").and_then(|n| n.as_str()) {
                Some(name) => format!("tokens[{i}] (`{name}`)"),
                None => format!("tokens[{i}]"),
            };
            let entry: Entry = serde_json::from_value(value).map_err(|e| format!("{which}: {e}"))?;
            let (key, principal) = principal(entry).map_err(|e| format!("{which}: {e}"))?;
            if !names.insert(principal.name.clone()) {
                return Err(format!("{which}: the name is used by an earlier entry"));
            }
            let (map, slot, what) = match key {
                Key::Hash(h) => (&mut tokens.by_hash, h, "sha256"),
                Key::Certificate(c) => (&mut tokens.by_certificate, c, "certificate"),
            };
            if map.insert(slot, Access(Arc::new(principal))).is_some() {
                return Err(format!("{which}: an earlier entry has the same `{what}`"));
            }
        }
        Ok(tokens)
    }

    /// Reads and decodes the file at `path`.
    pub fn load(path: &Path) -> Result<Tokens, LoadError> {
        let shown = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| LoadError::Read { path: shown.clone(), source })?;
        Tokens::parse(&text).map_err(|message| LoadError::Invalid { path: shown, message })
    }

    /// The principal holding `token`.
    pub fn by_token(&self, token: &str) -> Option<&Access> {
        self.by_hash.get(&hash_token(token))
    }

    /// The principal of a verified client certificate.
    pub fn by_certificate(&self, name: &str) -> Option<&Access> {
        self.by_certificate.get(name)
    }

    /// How many entries the file had.
    pub fn len(&self) -> usize {
        self.by_hash.len() + self.by_certificate.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How an entry is found.
enum Key {
    Hash(String),
    Certificate(String),
}

/// Checks one entry's values.
fn principal(e: Entry) -> Result<(Key, Principal), String> {
    if e.name.trim().is_empty() {
        return Err("`name` must not be empty".into());
    }
    let key = match (e.sha256, e.certificate) {
        (Some(h), None) => {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("`sha256` must be 64 hex digits (the SHA-256 of the token)".into());
            }
            Key::Hash(h.to_ascii_lowercase())
        }
        (None, Some(c)) if !c.trim().is_empty() => Key::Certificate(c),
        (None, Some(_)) => return Err("`certificate` must not be empty".into()),
        (Some(_), Some(_)) => return Err("give `sha256` or `certificate`, not both".into()),
        (None, None) => {
            return Err("give `sha256` (a token's hash) or `certificate` (a client certificate name)".into())
        }
    };
    if let Some(dbs) = &e.databases {
        if dbs.is_empty() {
            return Err("`databases` is empty, which would allow nothing: leave it out to allow every one".into());
        }
        if let Some(bad) = dbs.iter().find(|db| **db > crate::ring::MAX_DB) {
            return Err(format!("`databases`: {bad} is not a database (0..={})", crate::ring::MAX_DB));
        }
    }
    if e.prefixes.as_ref().is_some_and(Vec::is_empty) {
        return Err("`prefixes` is empty, which would allow nothing: leave it out to allow every key".into());
    }
    let prefixes = e.prefixes.map(|ps| ps.into_iter().map(String::into_bytes).collect());
    Ok((key, Principal { name: e.name, role: e.role, databases: e.databases, prefixes }))
}

/// The middleware's state: the token file's principals, kept up to date with the file
/// (see [`crate::reload`]: a change takes effect within a second or two; a file that is
/// gone or invalid leaves the tokens in force as they were).
pub struct Guard {
    metrics_auth: bool,
    tokens: Arc<Reloading<Tokens, LoadError>>,
}

impl Guard {
    /// Reads the token file. An error here must keep the node from starting: serving
    /// open, or with no tokens at all, is not what the operator asked for.
    pub fn load(path: &Path, metrics_auth: bool) -> Result<Arc<Guard>, LoadError> {
        let file = path.to_path_buf();
        let tokens = Reloading::new("auth token file", vec![file.clone()], move || Tokens::load(&file))?;
        tracing::info!(file = %path.display(), entries = tokens.current().len(), "client API authentication on");
        Ok(Arc::new(Guard { metrics_auth, tokens }))
    }

    /// The principals in force.
    pub fn tokens(&self) -> Arc<Tokens> {
        self.tokens.current()
    }

    /// Re-reads the file if it changed since it was last seen; true when new tokens took
    /// effect.
    pub fn reload_if_changed(&self) -> bool {
        self.tokens.reload_if_changed()
    }

    /// Looks at the file every second until `stop` is cancelled.
    pub fn watch(&self, stop: CancellationToken) {
        self.tokens.watch(stop);
    }
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized { message: message.into() }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The request's principal: its bearer token's if it sent one (known or not), else its
/// client certificate's; 401 if neither names a principal.
pub fn resolve(tokens: &Tokens, headers: &HeaderMap, identity: Option<&ClientIdentity>) -> Result<Access, ApiError> {
    let mut sent = headers.get_all(header::AUTHORIZATION).iter();
    match (sent.next(), sent.next()) {
        (Some(_), Some(_)) => Err(unauthorized("more than one Authorization header")),
        (Some(value), None) => {
            let token = value
                .to_str()
                .ok()
                .and_then(bearer)
                .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
            tokens.by_token(token).cloned().ok_or_else(|| unauthorized("unknown or revoked token"))
        }
        (None, _) => match identity {
            Some(ClientIdentity(name)) => tokens
                .by_certificate(name)
                .cloned()
                .ok_or_else(|| unauthorized(format!("client certificate `{name}` is not in the token file"))),
            None => Err(unauthorized("this API needs `Authorization: Bearer <token>`")),
        },
    }
}

/// The least a request must be allowed, by route template and method; `None` for the
/// open routes. A route not named here needs `Read` for GET and HEAD and `Write` for any
/// other method, so a route added later is not writable by a read token by default.
pub fn route_needs(route: Option<&str>, method: &Method, metrics_auth: bool) -> Option<Op> {
    match route {
        // Probes carry no credentials.
        Some("/healthz" | "/readyz") => None,
        Some("/metrics") => metrics_auth.then_some(Op::Read),
        Some("/v1/cluster") => Some(Op::Admin),
        // The seed routes that write, by any method: `GET /store?key=K&value=V` writes.
        Some("/set" | "/set_with_ttl" | "/store" | "/delete" | "/delete/{*key}") => Some(Op::Write),
        // POST, but not writes by nature: a batch's handler checks each of its ops, and
        // `/select_db` only sets a cookie.
        Some("/v1/batch" | "/select_db") => Some(Op::Read),
        _ if method == Method::GET || method == Method::HEAD => Some(Op::Read),
        _ => Some(Op::Write),
    }
}

/// The middleware: finds the request's principal, holds it to its route's class
/// ([`route_needs`]) and hands it to the handler as an [`Access`].
pub async fn authenticate(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let Some(op) = route_needs(route, req.method(), guard.metrics_auth) else {
        return next.run(req).await;
    };
    let tokens = guard.tokens();
    let identity = req.extensions().get::<ClientIdentity>();
    match resolve(&tokens, req.headers(), identity).and_then(|a| a.require(op).map(|()| a)) {
        Ok(access) => {
            req.extensions_mut().insert(access);
            next.run(req).await
        }
        Err(e) => {
            tracing::debug!(method = %req.method(), path = req.uri().path(), error = %e, "client API request refused");
            e.into_response()
        }
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
