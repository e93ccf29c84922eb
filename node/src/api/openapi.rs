//! The OpenAPI 3.1 document of the client API, served at `GET /v1/openapi.json`.
//!
//! Generated with utoipa from the declarations below: one `#[utoipa::path]` stub per
//! operation (the handlers themselves live in `kv`, `batch`, `watch`, `compat` and
//! `health`) and one `ToSchema` type per JSON shape, mirroring what the handlers write.
//! A test lists every routed method and path and fails when one is missing here; the
//! integration suite checks that every documented operation is routed. Another test
//! holds each operation's `security` and 401/403 to what [`super::auth::route_needs`]
//! asks of its route.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, ToSchema};

use super::params;
use super::query::{DeleteQuery, GetQuery, ListQuery, PutQuery, WatchQuery};
pub use ringkv_api::v1::{
    BatchAnswer, BatchResult, ClusterNode, ClusterView, Deleted, Encoding, Entry, ErrorBody, ErrorDetail, Listing,
    OpKind, RingShard, Written,
};

/// A TTL: a duration string or seconds, positive and at most ten years. The schema
/// describes a conservative subset of what the server reads (it also takes `1m30s`):
/// 1 to 9999 ms, s, m or h, or plain seconds (fractions down to a microsecond).
#[derive(Serialize, Deserialize)]
pub struct Ttl;

/// The `ttl` string forms the schema promises (every one of them within ten years).
pub const TTL_PATTERN: &str =
    "^([1-9][0-9]{0,3}(ms|s|m|h)?|[1-9][0-9]{0,3}\\.[0-9]{0,6}|0?\\.[0-9]{0,5}[1-9][0-9]{0,3})$";

impl utoipa::PartialSchema for Ttl {
    fn schema() -> RefOr<Schema> {
        let text = ObjectBuilder::new().schema_type(Type::String).pattern(Some(TTL_PATTERN));
        // At least a millisecond (less would round to none), at most ten years.
        let secs = ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0.001))
            .maximum(Some(params::MAX_TTL.as_secs() as f64));
        OneOfBuilder::new()
            .item(text)
            .item(secs)
            .description(Some("`500ms`, `5s`, `10m`, `1h`, or seconds as a number"))
            .into()
    }
}

impl ToSchema for Ttl {}

/// Standard base64 with padding and canonical trailing bits: what `encoding: base64`
/// values must be.
pub const BASE64_PATTERN: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";

/// `utf8` (the default).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Utf8 {
    Utf8,
}

/// `base64`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Base64 {
    Base64,
}

/// The JSON body of `PUT /v1/kv/{key}`: the value as text, or base64 with
/// `"encoding": "base64"`. Unknown fields are refused.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PutBody {
    Text(TextValue),
    Base64(Base64Value),
}

/// A value as UTF-8 text.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextValue {
    pub value: String,
    pub ttl: Option<Ttl>,
    pub encoding: Option<Utf8>,
}

/// A value in base64.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Base64Value {
    #[schema(pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$")]
    pub value: String,
    pub ttl: Option<Ttl>,
    pub encoding: Base64,
}

/// `put`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PutOpKind {
    Put,
}

/// `delete`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeleteOpKind {
    Delete,
}

/// `get`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GetOpKind {
    Get,
}

/// One operation of a batch, by `op`; `db` overrides the batch's. Unknown fields, and
/// fields of another kind of op, are refused.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchOp {
    Put(PutOp),
    PutBase64(PutBase64Op),
    Delete(DeleteOp),
    Get(GetOp),
}

/// A put of a text value.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutOp {
    pub op: PutOpKind,
    #[schema(min_length = 1)]
    pub key: String,
    pub value: String,
    pub encoding: Option<Utf8>,
    pub ttl: Option<Ttl>,
    /// 0 = only if absent, else the key's mod_revision must equal it.
    #[schema(minimum = 0, maximum = 9007199254740991_f64)]
    pub prev_revision: Option<u64>,
    #[schema(minimum = 0, maximum = 15)]
    pub db: Option<u8>,
}

/// A put of a base64 value.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBase64Op {
    pub op: PutOpKind,
    #[schema(min_length = 1)]
    pub key: String,
    #[schema(pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$")]
    pub value: String,
    pub encoding: Base64,
    pub ttl: Option<Ttl>,
    #[schema(minimum = 0, maximum = 9007199254740991_f64)]
    pub prev_revision: Option<u64>,
    #[schema(minimum = 0, maximum = 15)]
    pub db: Option<u8>,
}

/// A delete.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteOp {
    pub op: DeleteOpKind,
    #[schema(min_length = 1)]
    pub key: String,
    /// 0 = only if absent, else the key's mod_revision must equal it.
    #[schema(minimum = 0, maximum = 9007199254740991_f64)]
    pub prev_revision: Option<u64>,
    #[schema(minimum = 0, maximum = 15)]
    pub db: Option<u8>,
}

/// A read.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOp {
    pub op: GetOpKind,
    #[schema(min_length = 1)]
    pub key: String,
    #[schema(minimum = 0, maximum = 15)]
    pub db: Option<u8>,
}

/// `POST /v1/batch`. Ops on keys of one shard commit together or not at all; across
/// shards each shard's group is independent.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Default database of the ops (0).
    #[schema(minimum = 0, maximum = 15)]
    pub db: Option<u8>,
    #[schema(min_items = 1, max_items = 1000)]
    pub ops: Vec<BatchOp>,
}

/// `put`, `delete`, `expire` or `resync`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Put,
    Delete,
    Expire,
    Resync,
}

/// The `data:` of one watch event. `resync` (history for the cursor is gone: re-read,
/// then continue) carries `shard`, `from_revision`, `first_available`,
/// `current_revision` and `reason` instead of a key.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub key: Option<String>,
    pub db: Option<u8>,
    pub shard: u32,
    pub revision: Option<u64>,
    /// Put: the new value.
    pub value: Option<String>,
    pub encoding: Option<Encoding>,
    pub from_revision: Option<u64>,
    pub first_available: Option<u64>,
    pub current_revision: Option<u64>,
    pub reason: Option<String>,
}

/// One server-sent event of `GET /v1/watch`: its `data` is a [`WatchEvent`] as JSON;
/// its `id` the resume cursor (absent when the stream follows no shard at that moment).
pub struct WatchSse;

/// A watch cursor: `shard:revision` per followed shard, joined by `.` (empty: none, as
/// an SSE client sends after an event without an id).
pub const CURSOR_PATTERN: &str = "^([0-9]{1,9}:[0-9]{1,19}(\\.[0-9]{1,9}:[0-9]{1,19})*)?$";

impl utoipa::PartialSchema for WatchSse {
    fn schema() -> RefOr<Schema> {
        let kinds = ["put", "delete", "expire", "resync"];
        let mut data = ObjectBuilder::new().schema_type(Type::String).content_media_type("application/json").build();
        // JSON Schema's `contentSchema` (the JSON inside the string); utoipa has no
        // builder for it.
        let inner = serde_json::json!({"$ref": "#/components/schemas/WatchEvent"});
        data.extensions.get_or_insert_with(Default::default).insert("contentSchema".into(), inner);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("event", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(kinds)))
            .property("id", ObjectBuilder::new().schema_type(Type::String).pattern(Some(CURSOR_PATTERN)))
            .property("data", data)
            .required("data")
            .into()
    }
}

impl ToSchema for WatchSse {}

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub status: String,
}

/// The name of the bearer-token security scheme in `components.securitySchemes`, as each
/// operation that needs a principal names it in its `security` (the attributes below
/// take only a literal there).
pub const BEARER_AUTH: &str = "bearerAuth";

/// The 401 of every operation that needs a principal ([`super::auth`]).
const UNAUTHORIZED: &str = "With `--auth-tokens`: no credentials, or a token or client certificate that names \
    no principal (`unauthorized`). `WWW-Authenticate: Bearer realm=\"ringkv\"` is set";

/// Adds the [`BEARER_AUTH`] scheme: the derive has no attribute for security schemes.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(
            "`Authorization: Bearer rkv_...`: a token whose SHA-256 is in the node's `--auth-tokens` \
             file, with a role (`read`, `readwrite` or `admin`) and optionally limited to some \
             databases and key prefixes. A verified TLS client certificate named in that file can \
             stand in for a token; a request that sends a token is judged by the token alone. \
             Without `--auth-tokens` no credentials are needed.",
        ));
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER_AUTH, SecurityScheme::Http(scheme.build()));
    }
}

/// Documentation stubs: one per operation, never called.
#[allow(dead_code)]
mod ops {
    use super::*;

    #[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv", security(("bearerAuth" = [])),
        summary = "Write a key",
        description = "The raw body is the value (no content type, application/octet-stream, \
            text/*, or form-encoded as `curl -d` sends), or a JSON body `{value, ttl?, encoding?}`.",
        params(("key" = String, Path, min_length = 1, description = "The key, percent-encoded; may contain `/`. At most 4 KiB."), PutQuery),
        request_body(content(
            (PutBody = "application/json"),
            (String = "application/octet-stream"),
            (String = "text/plain"),
            (String = "application/x-www-form-urlencoded"),
        )),
        responses(
            (status = 200, description = "Written", body = Written),
            (status = 400, description = "Bad db, ttl, query, key or JSON", body = ErrorBody),
            (status = 401, description = UNAUTHORIZED, body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ringkv\"`"))),
            (status = 403, description = "The principal may not write this key or database (`forbidden`): a `read` role, or outside its databases or key prefixes. Nothing was applied", body = ErrorBody),
            (status = 409, description = "`prev_revision` did not match (`revision_mismatch`, with `current_revision`)", body = ErrorBody),
            (status = 413, description = "Key over 4 KiB or value over 1 MiB (configurable)", body = ErrorBody),
            (status = 415, description = "Unsupported content type", body = ErrorBody),
            (status = 503, description = "No shard leader within the request deadline, or none this node can reach; `Retry-After` is set. `unavailable`: the write was not applied and will not be; `outcome_unknown`: it was proposed and may still apply", body = ErrorBody),
            (status = 507, description = "The shard leader's disk is nearly full (`insufficient_storage`): the write was not applied; `Retry-After` is set. Reads still work", body = ErrorBody),
        ))]
    fn put_key() {}

    #[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv", security(("bearerAuth" = [])),
        summary = "Read a key",
        description = "JSON with revisions, or the raw bytes with `Accept: application/octet-stream`.",
        params(("key" = String, Path, min_length = 1, description = "The key, percent-encoded; may contain `/`."), GetQuery),
        responses(
            (status = 200, description = "The entry", content(
                (Entry = "application/json"),
                (String = "application/octet-stream"),
            )),
            (status = 400, description = "Bad db, consistency, query or key", body = ErrorBody),
            (status = 401, description = UNAUTHORIZED, body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ringkv\"`"))),
            (status = 403, description = "The key or database is outside the principal's limits (`forbidden`)", body = ErrorBody),
            (status = 404, description = "Absent or expired", body = ErrorBody),
            (status = 413, description = "Key over the limit", body = ErrorBody),
            (status = 503, description = "No shard leader in time", body = ErrorBody),
        ))]
    fn get_key() {}

    #[utoipa::path(delete, path = "/v1/kv/{key}", tag = "kv", security(("bearerAuth" = [])),
        summary = "Delete a key (idempotent)",
        params(("key" = String, Path, min_length = 1, description = "The key, percent-encoded; may contain `/`."), DeleteQuery),
        responses(
            (status = 200, description = "Deleted, or already absent (`deleted: 0`)", body = Deleted),
            (status = 400, description = "Bad db, query or key", body = ErrorBody),
            (status = 401, description = UNAUTHORIZED, body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ringkv\"`"))),
            (status = 403, description = "The principal may not delete this key (`forbidden`): a `read` role, or outside its databases or key prefixes. Nothing was applied", body = ErrorBody),
            (status = 409, description = "`prev_revision` did not match", body = ErrorBody),
            (status = 413, description = "Key over the limit", body = ErrorBody),
            (status = 503, description = "No shard leader in time; `unavailable`: not applied, `outcome_unknown`: may still apply", body = ErrorBody),
            (status = 507, description = "The shard leader's disk is nearly full (`insufficient_storage`): not applied; `Retry-After` is set", body = ErrorBody),
        ))]
    fn delete_key() {}

    #[utoipa::path(get, path = "/v1/kv", tag = "kv", security(("bearerAuth" = [])),
        summary = "List keys by prefix, in key order across every shard",
        params(ListQuery),
        responses(
            (status = 200, description = "One page", body = Listing),
            (status = 400, description = "Bad db, limit, cursor, consistency or query", body = ErrorBody),
            (status = 401, description = UNAUTHORIZED, body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ringkv\"`"))),
            (status = 403, description = "The database or prefix is outside the principal's limits (`forbidden`): with key prefixes, ask for a prefix starting with one of them", body = ErrorBody),
            (status = 503, description = "No shard leader in time", body = ErrorBody),
        ))]
    fn list() {}

    #[utoipa::path(post, path = "/v1/batch", tag = "kv", security(("bearerAuth" = [])),
        summary = "Several puts, deletes and gets in one request",
        description = "Ops are grouped by shard; each group is atomic (all its ops apply, in \
            order, or none). Groups of different shards are independent. Everything is \
            validated before anything is proposed.",
        request_body(content = BatchRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "Every op applied", body = BatchAnswer),
            (status = 400, description = "Invalid batch (nothing proposed)", body = ErrorBody),
            (status = 401, description = UNAUTHORIZED, body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ringkv\"`"))),
            (status = 403, description = "An op the principal may not do (`forbidden`, naming `ops[i]`): a put or delete with a `read` role, or a key or database outside its limits. Nothing was proposed", body = ErrorBody),
            (status = 409, description = "A precondition failed: that shard's group applied nothing", body = BatchAnswer),
            (status = 413, description = "Body, key or value over the limit", body = ErrorBody),
            (status = 415, description = "Not application/json", body = ErrorBody),
            (status = 503, description = "A shard had no leader in time; other groups may have applied", body = BatchAnswer),
            (status = 507, description = "A shard leader's disk is nearly full (`insufficient_storage`): that group applied nothing; other groups may have applied", body = BatchAnswer),
        ))]
    fn batch() {}

    #[utoipa::path(get, path = "/v1/watch", tag = "kv", security(("bearerAuth" = [])),
        summary = "Stream changes of a key or a prefix (server-sent events)",
        description = "Events `put`, `delete`, `expire` and `resync`; each `data:` is a \
            WatchEvent JSON object. The SSE `id:` is a resume cursor: reconnect with \
            `Last-Event-ID` to continue without gaps.",
        params(WatchQuery, ("Last-Event-ID" = Option<String>, Header, nullable = false,
            pattern = "^([0-9]{1,9}:[0-9]{1,19}(\\.[0-9]{1,9}:[0-9]{1,19})*)?$",
            description = "Resume after this event id (an `id:` this watch sent).")),
        responses(
            (status = 200, description = "An event stream; `data:` of each event is a WatchEvent", content(
                (WatchSse = "text/event-stream"),
            )),
            (status = 400, description = "Bad query, db, revision or cursor", body = ErrorBody),
            (status = 401, description = UNAUTHORIZED, body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ringkv\"`"))),
            (status = 403, description = "The key, prefix or database is outside the principal's limits (`forbidden`): with key prefixes, ask for a prefix starting with one of them", body = ErrorBody),
            (status = 413, description = "Key over the limit", body = ErrorBody),
            (status = 503, description = "No shard leader to start from now, or the relay to a node holding the shard failed", body = ErrorBody),
        ))]
    fn watch() {}

    #[utoipa::path(get, path = "/v1/cluster", tag = "cluster", security(("bearerAuth" = [])),
        summary = "Shards, members, leaders, terms and indexes as this node sees them",
        description = "With `--auth-tokens`, for the `admin` role only.",
        responses(
            (status = 200, description = "The cluster view", body = ClusterView),
            (status = 401, description = UNAUTHORIZED, body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ringkv\"`"))),
            (status = 403, description = "The principal's role is not `admin` (`forbidden`)", body = ErrorBody),
        ))]
    fn cluster() {}

    #[utoipa::path(get, path = "/v1/openapi.json", tag = "cluster", security(("bearerAuth" = [])),
        summary = "This document",
        description = "With `--auth-tokens`, for any role.",
        responses(
            (status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object),
            (status = 401, description = UNAUTHORIZED, body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ringkv\"`"))),
        ))]
    fn openapi() {}

    // Optional security (`{}` or a token): open unless `--metrics-auth`.
    #[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("bearerAuth" = [])),
        summary = "Prometheus metrics",
        description = "Open, even with `--auth-tokens`, unless the node also runs with `--metrics-auth`: \
            then it needs a principal (a token or client certificate of any role), as the v1 routes do.",
        responses(
            (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
            (status = 401, description = "Only with `--auth-tokens` and `--metrics-auth`: no credentials, or a token or \
                client certificate that names no principal (`unauthorized`). `WWW-Authenticate: Bearer realm=\"ringkv\"` is set",
                body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ringkv\"`"))),
        ))]
    fn metrics() {}

    #[utoipa::path(get, path = "/healthz", tag = "operations", security(),
        summary = "Alive",
        description = "Always open, also with `--auth-tokens`: probes carry no credentials.",
        responses((status = 200, description = "The process serves HTTP", body = Status)))]
    fn healthz() {}

    #[utoipa::path(get, path = "/readyz", tag = "operations", security(),
        summary = "Ready: every local shard has a leader and is caught up",
        description = "Always open, also with `--auth-tokens`: probes carry no credentials.",
        responses(
            (status = 200, description = "Ready", body = Status),
            (status = 503, description = "Not ready, and why (`not_ready`)", body = ErrorBody),
        ))]
    fn readyz() {}
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ringkv",
        description = "Sharded, Raft-replicated key-value store: the v1 client API. Errors are \
            `{\"error\": {\"code\", \"message\"}}` with a 4xx/5xx status. The seed-compatible \
            routes (`/set`, `/get`, `/store`, ...) are described in the README.\n\n\
            Authentication is off unless the node runs with `--auth-tokens FILE`. Then every \
            operation with the `bearerAuth` security requirement needs a principal: \
            `Authorization: Bearer <token>` with a token of that file, or, standing in for a \
            token, a verified TLS client certificate named in the file (a request that sends a \
            token is judged by the token alone). Roles: `read` (gets, lists, watches, batches of \
            gets), `readwrite` (also writes) and `admin` (also `/v1/cluster`), each optionally \
            limited to some databases and key prefixes. No or an unknown credential is 401 \
            `unauthorized` with `WWW-Authenticate: Bearer realm=\"ringkv\"`; a known one asking for \
            more than it may is 403 `forbidden`, and nothing is applied. `/healthz` and \
            `/readyz` are always open; `/metrics` is open unless `--metrics-auth`.",
    ),
    paths(ops::put_key, ops::get_key, ops::delete_key, ops::list, ops::batch, ops::watch,
        ops::cluster, ops::openapi, ops::metrics, ops::healthz, ops::readyz),
    // Named inside the watch event's `contentSchema`, which the derive does not follow.
    components(schemas(WatchEvent)),
    modifiers(&BearerAuth),
    tags(
        (name = "kv", description = "Keys, batches and watches"),
        (name = "cluster", description = "The cluster and this API"),
        (name = "operations", description = "Health and metrics (not versioned)"),
    )
)]
struct ApiDoc;

/// The document, generated from the declarations in this module.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// `GET /v1/openapi.json`.
pub async fn serve() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
    ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response()
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
