//! `/v1/kv`: put, get, delete and prefix listing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ringkv_api::v1::{Deleted, Encoding, Entry, Listing, Written};

use super::auth::{Access, Op};
use super::extract;
use super::params::{self, BodyKind};
use super::query::{DeleteQuery, GetQuery, ListQuery, PutQuery, Query};
use crate::api::error::ApiError;
use crate::node::Node;
use crate::router::{calls, Consistency};
use crate::shard::types::{now_ms, KeyEntry};

fn path_key(uri: &Uri, node: &Node) -> Result<Vec<u8>, ApiError> {
    params::key(&extract::key_from_path(uri.path(), "/v1/kv/")?, node.config.max_key_bytes)
}

/// `PUT /v1/kv/{key}`: the raw body is the value, or a JSON body `{"value", "ttl", "encoding"}`.
pub async fn put_key(
    State(node): State<Arc<Node>>,
    access: Access,
    uri: Uri,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Written>, ApiError> {
    let key = path_key(&uri, &node)?;
    let (db, expect) = (q.db.0, q.prev_revision.map(|r| r.0));
    // Before the body is read: a refused writer's value is never buffered.
    access.allow(Op::Write, db, &key)?;
    let mut ttl = q.ttl.map(|t| t.0);
    let ct = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("invalid"));
    let max = node.config.max_value_bytes;
    let value = match params::body_kind(ct)? {
        // One copy, on purpose: the body's `Bytes` is a slice of the connection's read
        // buffer (8 KiB or more), which a stored small value would otherwise keep alive
        // for as long as the key (and the watch history and the in-memory log) hold it.
        // From here on the value is shared, never copied (retries, apply, events).
        BodyKind::Raw => bytes::Bytes::copy_from_slice(&extract::read_body(body, &headers, max, "value").await?),
        BodyKind::Json => {
            // JSON escaping or base64 can grow a value up to ~6x; the decoded value is checked below.
            let bytes =
                extract::read_body(body, &headers, max.saturating_mul(6).saturating_add(64 << 10), "body").await?;
            let (value, json_ttl) = params::put_body(&bytes)?;
            if let Some(t) = json_ttl {
                if ttl.is_some() {
                    return Err(ApiError::bad_request("bad_ttl", "ttl given both in the query and in the body"));
                }
                ttl = Some(t);
            }
            bytes::Bytes::from(value)
        }
    };
    params::value_len(value.len(), max)?;
    let ttl_ms = ttl.map(|d: Duration| d.as_millis().max(1) as u64);
    let w = node.write_key(db, key.clone(), Some(value), ttl_ms, expect).await?;
    Ok(Json(Written { key: String::from_utf8_lossy(&key).into_owned(), db, shard: w.shard, revision: w.revision }))
}

/// A stored entry as the client API shows it (`ttl_ms` counted from `now`).
fn to_entry(key: &[u8], db: u8, e: &KeyEntry, now: u64) -> Entry {
    let (value, encoding) = params::encode_value(&e.value);
    Entry {
        key: String::from_utf8_lossy(key).into_owned(),
        value,
        db,
        create_revision: e.create_revision,
        mod_revision: e.mod_revision,
        version: e.version,
        ttl_ms: e.expires_at_ms.map(|t| t.saturating_sub(now)),
        encoding: encoding.map(|_| Encoding::Base64),
    }
}

/// `GET /v1/kv/{key}`: JSON, or the raw bytes with `Accept: application/octet-stream`.
pub async fn get_key(
    State(node): State<Arc<Node>>,
    access: Access,
    uri: Uri,
    Query(q): Query<GetQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = path_key(&uri, &node)?;
    let (db, c) = (q.db.0, q.consistency.unwrap_or(Consistency::Linearizable));
    access.allow(Op::Read, db, &key)?;
    let shard = node.router.locate(db, &key);
    let entry = node.read(shard, calls::Get { db, key: key.clone() }, c).await?;
    let Some(e) = entry else {
        return Err(ApiError::NotFound {
            message: format!("key `{}` not found in db {db}", String::from_utf8_lossy(&key)),
        });
    };
    let raw = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/octet-stream"));
    if raw {
        return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], e.value).into_response());
    }
    Ok(Json(to_entry(&key, db, &e, now_ms())).into_response())
}

/// `DELETE /v1/kv/{key}`: `{"deleted": 1}`, or `{"deleted": 0}` when absent.
pub async fn delete_key(
    State(node): State<Arc<Node>>,
    access: Access,
    uri: Uri,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let key = path_key(&uri, &node)?;
    let (db, expect) = (q.db.0, q.prev_revision.map(|r| r.0));
    access.allow(Op::Write, db, &key)?;
    let w = node.write_key(db, key.clone(), None, None, expect).await?;
    let key = String::from_utf8_lossy(&key).into_owned();
    Ok(Json(Deleted { key, db, deleted: u8::from(w.deleted), revision: w.revision }))
}

/// One pass over every shard of the ring as this node knows it, asking each for up to
/// `limit + 1` keys (if the merged result has more than `limit`, a next page exists).
async fn list_once(
    node: &Arc<Node>,
    db: u8,
    prefix: &[u8],
    start_after: Option<&Vec<u8>>,
    limit: usize,
    c: crate::router::Consistency,
) -> Result<Vec<(Vec<u8>, crate::shard::types::KeyEntry)>, ApiError> {
    let mut tasks = tokio::task::JoinSet::new();
    for shard in node.router.ring_shards() {
        let node = node.clone();
        let modulus = node.router.route(shard).map_or(node.shard_count, |r| r.modulus);
        let req =
            calls::List { db, prefix: prefix.to_vec(), start_after: start_after.cloned(), limit: limit + 1, modulus };
        tasks.spawn(async move { node.read(shard, req, c).await });
    }
    let mut items = Vec::new();
    while let Some(r) = tasks.join_next().await {
        items.extend(r.map_err(ApiError::internal)??);
    }
    Ok(items)
}

/// `GET /v1/kv?prefix=P&limit=L&cursor=C`: keys of one db in key order across every
/// shard. `next_cursor` continues the listing; it is null on the last page.
pub async fn list(
    State(node): State<Arc<Node>>,
    access: Access,
    Query(q): Query<ListQuery>,
) -> Result<Json<Listing>, ApiError> {
    let (db, c) = (q.db.0, q.consistency.unwrap_or(Consistency::Linearizable));
    let prefix = q.prefix.unwrap_or_default().into_bytes();
    access.allow_prefix(Op::Read, db, &prefix)?;
    let limit = q.limit.map_or(100, |l| l.0);
    let start_after = q.cursor.map(|c| c.0);
    // A split during the listing makes a shard refuse (its modulus changed): list again
    // with the new routes, a few times, before telling the client to retry.
    let mut attempt = 0;
    let mut items = loop {
        attempt += 1;
        match list_once(&node, db, &prefix, start_after.as_ref(), limit, c).await {
            Err(ApiError::Unavailable { .. }) if attempt < 4 => {
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await
            }
            other => break other?,
        }
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more { items.last().map(|(k, _)| params::encode_cursor(k)) } else { None };
    let now = now_ms();
    let items: Vec<Entry> = items.iter().map(|(k, e)| to_entry(k, db, e, now)).collect();
    Ok(Json(Listing { db, count: items.len(), items, next_cursor }))
}
