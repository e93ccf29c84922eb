//! Seed-compatible routes: the documented requests of the Go stores ringkv replaces
//! (govault, GoKeyDB, Distributed-KV-Database, KeyValueStore) answered by the same
//! shards as `/v1/kv`. kv-store's `/v1/kv/{key}` is the v1 API itself.
//!
//! `POST /set` is shared: a JSON body is govault (201, empty), a form body or query is
//! GoKeyDB / Distributed-KV-Database (200). The database comes from `?db=`, else the
//! `X-Ringkv-Db` header, else the `ringkv_db` cookie that `/select_db` sets, else 0. The
//! seeds' server-wide "active database" is deliberately per client: on a shared server it
//! would let one client's `select_db` redirect another's writes.
//!
//! Every route reads and writes through [`put`], [`get`] and [`delete`], which hold the
//! request's [`Access`] to the key and database they touch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Access, Op};
use super::query::{Db, Param};
use super::{extract, params};
use crate::api::error::ApiError;
use crate::node::Node;
use crate::router::{calls, Consistency};

/// Header naming the database of one request.
pub const DB_HEADER: &str = "x-ringkv-db";
/// Cookie set by `/select_db`, carried by cookie-aware clients.
pub const DB_COOKIE: &str = "ringkv_db";

/// Which seed a `/set` request speaks.
#[derive(Debug, PartialEq, Eq)]
pub enum SetKind {
    /// govault: a JSON body `{"key", "value"}`.
    Json,
    /// GoKeyDB / Distributed-KV-Database: `key` and `value` in a form body or the query.
    Form,
}

/// Tells the seeds apart by content type. JSON types are govault; form, none or
/// `text/plain` are form/query. govault's server decodes JSON whatever the content type,
/// so a form-typed body that starts with `{` (`curl -d '{...}'` without `-H`) is JSON too:
/// no form with a `key` field can start with `{`. Other types are 415.
pub fn set_kind(content_type: Option<&str>, body: &[u8]) -> Result<SetKind, ApiError> {
    let mime = content_type.and_then(|c| c.split(';').next()).unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        return Ok(SetKind::Json);
    }
    if !(mime.is_empty() || mime == "application/x-www-form-urlencoded" || mime == "text/plain") {
        return Err(ApiError::UnsupportedMediaType {
            message: format!("unsupported content type `{mime}` on /set: send application/json or a form"),
        });
    }
    if body.trim_ascii_start().starts_with(b"{") {
        Ok(SetKind::Json)
    } else {
        Ok(SetKind::Form)
    }
}

/// The request's database: `?db=` > `X-Ringkv-Db` header > `ringkv_db` cookie > 0. Each
/// source is validated as the v1 `db` parameter; a bad one is 400, not skipped.
pub fn resolve_db(q: &HashMap<String, String>, headers: &HeaderMap) -> Result<u8, ApiError> {
    if let Some(db) = q.get("db") {
        return Db::parse(db).map(|d| d.0);
    }
    let parse = |s: &str, source: &str| {
        Db::parse(s.trim()).map(|d| d.0).map_err(|e| ApiError::bad_request("bad_db", format!("{source}: {e}")))
    };
    if let Some(h) = headers.get(DB_HEADER) {
        return parse(h.to_str().unwrap_or("invalid"), "X-Ringkv-Db header");
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.split_once('='))
        .find(|(name, _)| name.trim() == DB_COOKIE);
    match cookie {
        Some((_, v)) => parse(v, "ringkv_db cookie"),
        None => Ok(0),
    }
}

/// The `Set-Cookie` value that selects `db` for later requests of the same client.
pub fn db_cookie(db: u8) -> String {
    format!("{DB_COOKIE}={db}; Path=/; HttpOnly; SameSite=Lax")
}

/// `key` and `value` from the query and a form body; a field given in both is refused,
/// as a repeated query parameter is. `value` is required only when `need_value`.
pub fn form_fields(
    q: &HashMap<String, String>,
    body: &[u8],
    need_value: bool,
) -> Result<(String, Option<String>), ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("bad_form", "form body is not UTF-8"))?;
    let pairs =
        params::form_pairs(text).map_err(|e| ApiError::bad_request("bad_form", format!("malformed form body: {e}")))?;
    let mut fields: HashMap<String, String> =
        q.iter().filter(|(k, _)| *k != "db").map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in pairs {
        if k != "key" && k != "value" {
            return Err(ApiError::bad_request("bad_form", format!("unknown form field `{k}` (allowed: key, value)")));
        }
        if fields.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request("bad_form", format!("`{k}` given twice (query and body)")));
        }
    }
    let key = fields.remove("key").ok_or_else(|| ApiError::bad_request("bad_key", "missing `key`"))?;
    let value = fields.remove("value");
    if need_value && value.is_none() {
        // An unquoted `curl http://h/set?key=k&value=v` runs `curl .../set?key=k` in the background.
        return Err(ApiError::bad_request(
            "bad_value",
            "missing `value` (in a shell, quote the URL: `&` ends a command)",
        ));
    }
    Ok((key, value))
}

/// govault's JSON bodies. Unknown fields are refused so a typo cannot drop a TTL.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct GovaultSet {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub ttl: Option<Value>,
}

/// Decodes govault's `{"key", "value"}` (and `"ttl"` when `with_ttl`): integer or
/// fractional seconds, or a duration string.
pub fn govault_body(bytes: &[u8], with_ttl: bool) -> Result<(String, String, Option<Duration>), ApiError> {
    params::require_json_object(bytes)?;
    let b: GovaultSet = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("bad_json", format!("invalid JSON body (want {{\"key\", \"value\"}}): {e}"))
    })?;
    let ttl = match (with_ttl, b.ttl) {
        (true, Some(t)) if !t.is_null() => Some(params::json_ttl(&t)?),
        (true, _) => return Err(ApiError::bad_request("bad_ttl", "missing `ttl` (seconds or e.g. \"5s\")")),
        (false, Some(_)) => return Err(ApiError::bad_request("bad_json", "`ttl` belongs on /set_with_ttl")),
        (false, None) => None,
    };
    Ok((b.key, b.value, ttl))
}

/// Body limit: percent- or JSON-escaping can grow a value up to ~6x; decoded sizes are
/// checked against the configured limits afterwards.
fn body_limit(node: &Node) -> usize {
    node.config.max_value_bytes.saturating_mul(6).saturating_add(64 << 10)
}

/// Writes `key`; returns the v1 put answer (`{key, db, shard, revision}`).
async fn put(
    node: &Node,
    access: &Access,
    db: u8,
    key: &str,
    value: String,
    ttl: Option<Duration>,
) -> Result<Value, ApiError> {
    let key = params::key(key, node.config.max_key_bytes)?;
    access.allow(Op::Write, db, &key)?;
    params::value_len(value.len(), node.config.max_value_bytes)?;
    let ttl_ms = ttl.map(|d| d.as_millis().max(1) as u64);
    let w = node.write_key(db, key.clone(), Some(value.into_bytes().into()), ttl_ms, None).await?;
    Ok(json!({
        "key": String::from_utf8_lossy(&key), "db": db, "shard": w.shard, "revision": w.revision,
    }))
}

/// A linearizable read of `key`: its value, or `None` when absent or expired.
async fn get(node: &Node, access: &Access, db: u8, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
    let key = params::key(key, node.config.max_key_bytes)?;
    access.allow(Op::Read, db, &key)?;
    let shard = node.router.locate(db, &key);
    let entry = node.read(shard, calls::Get { db, key }, Consistency::Linearizable).await?;
    Ok(entry.map(|e| e.value.into()))
}

/// The value as the Go seeds wrote it: the raw bytes, as text when they are UTF-8.
fn raw(value: Vec<u8>) -> Response {
    let ct = if std::str::from_utf8(&value).is_ok() { "text/plain; charset=utf-8" } else { "application/octet-stream" };
    ([(header::CONTENT_TYPE, ct)], value).into_response()
}

/// govault's not-found answer, kept byte-compatible for its clients.
fn govault_not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": {"error": "Key not found"}}))).into_response()
}

/// `/set`, any method. govault (JSON `{"key", "value"}` → 201, empty), GoKeyDB (`-d
/// 'key=K&value=V'`) and Distributed-KV-Database (`PUT /set?key=K&value=V`) → 200 with
/// the v1 put answer. See [`set_kind`].
pub async fn set(
    State(node): State<Arc<Node>>,
    access: Access,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = extract::read_body(body, &headers, body_limit(&node), "body").await?;
    let ct = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("invalid"));
    match set_kind(ct, &bytes)? {
        SetKind::Json => {
            let q = params::query(q.as_deref(), &["db"])?;
            let db = resolve_db(&q, &headers)?;
            let (key, value, _) = govault_body(&bytes, false)?;
            put(&node, &access, db, &key, value, None).await?;
            Ok(StatusCode::CREATED.into_response())
        }
        SetKind::Form => form_put(&node, &access, q.as_deref(), &headers, &bytes).await,
    }
}

/// `/store?key=K&value=V` (GET, POST, PUT), KeyValueStore: 200 with the v1 put answer.
/// Served by whichever node is asked: never the seed's redirect to the owning shard.
pub async fn store(
    State(node): State<Arc<Node>>,
    access: Access,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = extract::read_body(body, &headers, body_limit(&node), "body").await?;
    form_put(&node, &access, q.as_deref(), &headers, &bytes).await
}

async fn form_put(
    node: &Node,
    access: &Access,
    q: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let q = params::query(q, &["key", "value", "db"])?;
    let db = resolve_db(&q, headers)?;
    let (key, value) = form_fields(&q, body, true)?;
    let answer = put(node, access, db, &key, value.unwrap_or_default(), None).await?;
    Ok(Json(answer).into_response())
}

/// `POST /set_with_ttl`, govault: JSON `{"key", "value", "ttl"}`, ttl in seconds
/// (integer or fractional) or a duration string such as `"5s"` → 201, empty. The body
/// is JSON whatever the content type, as govault decoded it.
pub async fn set_with_ttl(
    State(node): State<Arc<Node>>,
    access: Access,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = params::query(q.as_deref(), &["db"])?;
    let db = resolve_db(&q, &headers)?;
    let bytes = extract::read_body(body, &headers, body_limit(&node), "body").await?;
    let (key, value, ttl) = govault_body(&bytes, true)?;
    put(&node, &access, db, &key, value, ttl).await?;
    Ok(StatusCode::CREATED.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectDb {
    db: u8,
}

/// `POST /select_db`, govault: JSON `{"db": N}` → 200 `{"db": N}` and a `ringkv_db`
/// cookie. The selection is the client's (its cookie jar), not the server's; a principal
/// limited to some databases may select only those.
pub async fn select_db(
    access: Access,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    params::query(q.as_deref(), &[])?;
    let bytes = extract::read_body(body, &headers, 64 << 10, "body").await?;
    params::require_json_object(&bytes)?;
    let SelectDb { db } = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("bad_json", format!("invalid JSON body (want {{\"db\": N}}): {e}")))?;
    let db = Db::parse(&db.to_string())?.0;
    access.allow_db(Op::Read, db)?;
    let cookie = HeaderValue::from_str(&db_cookie(db)).map_err(ApiError::internal)?;
    Ok(([(header::SET_COOKIE, cookie)], Json(json!({ "db": db }))).into_response())
}

/// `GET /get/{key}`, govault: 200 with the raw value, or 404 `{"message":{"error":"Key not found"}}`.
pub async fn get_path(
    State(node): State<Arc<Node>>,
    access: Access,
    uri: Uri,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = extract::key_from_path(uri.path(), "/get/")?;
    let q = params::query(q.as_deref(), &["db"])?;
    let db = resolve_db(&q, &headers)?;
    Ok(get(&node, &access, db, &key).await?.map_or_else(govault_not_found, raw))
}

/// `GET /get?key=K`: govault, GoKeyDB and Distributed-KV-Database. 200 with the raw
/// value, or govault's 404 (the other seeds documented only the status).
pub async fn get_query(
    State(node): State<Arc<Node>>,
    access: Access,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = params::query(q.as_deref(), &["key", "db"])?;
    let db = resolve_db(&q, &headers)?;
    let (key, _) = form_fields(&q, b"", false)?;
    Ok(get(&node, &access, db, &key).await?.map_or_else(govault_not_found, raw))
}

/// `GET /retrieve?key=K`, KeyValueStore: 200 with the raw value, or 404 as a v1 error.
/// Served by whichever node is asked (no redirect).
pub async fn retrieve(
    State(node): State<Arc<Node>>,
    access: Access,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = params::query(q.as_deref(), &["key", "db"])?;
    let db = resolve_db(&q, &headers)?;
    let (key, _) = form_fields(&q, b"", false)?;
    match get(&node, &access, db, &key).await? {
        Some(v) => Ok(raw(v)),
        None => Err(ApiError::NotFound { message: format!("key `{key}` not found in db {db}") }),
    }
}

/// `DELETE /delete/{key}`, govault → 204, also when the key was absent (see [`delete`]).
pub async fn delete_path(
    State(node): State<Arc<Node>>,
    access: Access,
    uri: Uri,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = extract::key_from_path(uri.path(), "/delete/")?;
    let q = params::query(q.as_deref(), &["db"])?;
    delete(&node, &access, resolve_db(&q, &headers)?, &key).await
}

/// `DELETE /delete?key=K`, govault → 204, also when the key was absent (see [`delete`]).
pub async fn delete_query(
    State(node): State<Arc<Node>>,
    access: Access,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = params::query(q.as_deref(), &["key", "db"])?;
    let db = resolve_db(&q, &headers)?;
    let (key, _) = form_fields(&q, b"", false)?;
    delete(&node, &access, db, &key).await
}

/// Deletes are idempotent: 204 whether or not the key existed. govault's README gives no
/// answer for a missing key, and a delete retried through a leader change may find its
/// own earlier attempt already applied; a 404 would report that success as a failure.
async fn delete(node: &Node, access: &Access, db: u8, key: &str) -> Result<Response, ApiError> {
    let key = params::key(key, node.config.max_key_bytes)?;
    access.allow(Op::Write, db, &key)?;
    node.write_key(db, key, None, None, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn content_type_picks_the_seed() {
        let form = "application/x-www-form-urlencoded";
        let cases: &[(Option<&str>, &[u8], SetKind)] = &[
            (Some("application/json"), br#"{"key":"k","value":"v"}"#, SetKind::Json),
            (Some("application/json; charset=utf-8"), b"", SetKind::Json),
            (Some("application/vnd.x+json"), b"{}", SetKind::Json),
            (Some(form), b"key=k&value=v", SetKind::Form),
            (Some(form), b"", SetKind::Form),
            (None, b"", SetKind::Form),
            (Some("text/plain"), b"key=k&value=v", SetKind::Form),
            // govault's curl line without -H: curl sends it form-typed; govault read JSON anyway.
            (Some(form), br#" {"key": "foo", "value": "bar"}"#, SetKind::Json),
        ];
        for (ct, body, want) in cases {
            assert_eq!(&set_kind(*ct, body).unwrap(), want, "{ct:?} {body:?}");
        }
        let e = set_kind(Some("multipart/form-data; boundary=x"), b"").unwrap_err();
        assert_eq!(e.status().as_u16(), 415);
    }

    #[test]
    fn db_precedence_is_query_header_cookie_default() {
        let cookie = ("cookie", "theme=dark; ringkv_db=3");
        assert_eq!(resolve_db(&q(&[]), &h(&[])).unwrap(), 0);
        assert_eq!(resolve_db(&q(&[]), &h(&[cookie])).unwrap(), 3);
        assert_eq!(resolve_db(&q(&[]), &h(&[cookie, ("x-ringkv-db", "5")])).unwrap(), 5);
        assert_eq!(resolve_db(&q(&[("db", "7")]), &h(&[cookie, ("x-ringkv-db", "5")])).unwrap(), 7);
        assert_eq!(resolve_db(&q(&[]), &h(&[("cookie", "a=1"), ("cookie", "ringkv_db=9")])).unwrap(), 9);
        assert_eq!(resolve_db(&q(&[]), &h(&[("cookie", "xringkv_db=9")])).unwrap(), 0);
    }

    #[test]
    fn a_bad_db_from_any_source_is_400() {
        for (query, headers) in [
            (q(&[("db", "16")]), h(&[])),
            (q(&[]), h(&[("x-ringkv-db", "x")])),
            (q(&[]), h(&[("cookie", "ringkv_db=99")])),
        ] {
            assert_eq!(resolve_db(&query, &headers).unwrap_err().code(), "bad_db");
        }
        // A valid higher-precedence source wins over a bad lower one.
        assert_eq!(resolve_db(&q(&[("db", "1")]), &h(&[("x-ringkv-db", "x")])).unwrap(), 1);
        assert_eq!(db_cookie(4), "ringkv_db=4; Path=/; HttpOnly; SameSite=Lax");
    }

    #[test]
    fn ttl_comes_as_integer_fractional_or_duration_string() {
        let ttl = |t: &str| govault_body(format!(r#"{{"key":"k","value":"v","ttl":{t}}}"#).as_bytes(), true);
        assert_eq!(ttl("10").unwrap().2, Some(Duration::from_secs(10)));
        assert_eq!(ttl("1.5").unwrap().2, Some(Duration::from_millis(1500)));
        assert_eq!(ttl(r#""1m30s""#).unwrap().2, Some(Duration::from_secs(90)));
        assert_eq!(ttl(r#""500ms""#).unwrap().2, Some(Duration::from_millis(500)));
        for bad in ["0", "-1", "null", r#""soon""#, "true"] {
            assert_eq!(ttl(bad).unwrap_err().code(), "bad_ttl", "{bad}");
        }
        assert_eq!(govault_body(br#"{"key":"k","value":"v"}"#, true).unwrap_err().code(), "bad_ttl");
    }

    #[test]
    fn govault_bodies_need_key_and_string_value() {
        assert_eq!(govault_body(br#"{"key":"k","value":"v"}"#, false).unwrap(), ("k".into(), "v".into(), None));
        for bad in [
            &br#"{"key":"k"}"#[..],
            br#"{"value":"v"}"#,
            br#"{"key":"k","value":1}"#,
            b"{",
            b"",
            br#"{"key":"k","value":"v","vaule":1}"#,
        ] {
            assert_eq!(govault_body(bad, false).unwrap_err().code(), "bad_json", "{}", String::from_utf8_lossy(bad));
        }
        assert!(govault_body(br#"{"key":"k","value":"v","ttl":5}"#, false).is_err());
    }

    #[test]
    fn form_fields_come_from_query_or_body_but_not_both() {
        let f = |query: &[(&str, &str)], body: &str| form_fields(&q(query), body.as_bytes(), true);
        assert_eq!(f(&[], "key=my%20key&value=a+b").unwrap(), ("my key".into(), Some("a b".into())));
        assert_eq!(f(&[("key", "k"), ("value", "v"), ("db", "2")], "").unwrap(), ("k".into(), Some("v".into())));
        assert_eq!(f(&[("key", "k")], "value=v").unwrap(), ("k".into(), Some("v".into())));
        assert_eq!(f(&[("key", "k")], "value=").unwrap(), ("k".into(), Some(String::new())));
        assert_eq!(f(&[("key", "k")], "key=k2&value=v").unwrap_err().code(), "bad_form");
        assert_eq!(f(&[], "key=k&value=v&ttl=5").unwrap_err().code(), "bad_form");
        assert_eq!(f(&[], "value=v").unwrap_err().code(), "bad_key");
        assert_eq!(f(&[("key", "k")], "").unwrap_err().code(), "bad_value");
        assert_eq!(form_fields(&q(&[("key", "k")]), b"", false).unwrap(), ("k".into(), None));
    }
}
