//! `POST /v1/batch`: several puts, deletes and gets in one request.
//!
//! Ops are grouped by shard. Each shard's group is one Raft command: its preconditions
//! are checked first and then either every op of the group applies, in request order,
//! or none does (gets see the group's earlier writes). Across shards there is no
//! atomicity: each group commits or fails on its own, and the answer says, per op, what
//! happened. The whole request is validated before anything is proposed.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Access, Op};
use super::{extract, params};
use crate::api::error::ApiError;
use crate::node::Node;
use crate::ring::ShardId;
use crate::router::ClientOp;
use crate::shard::types::{now_ms, CommandResult, OpResult};
use ringkv_api::v1::{BatchAnswer, BatchResult, Encoding, ErrorDetail, OpKind};

/// One validated op: its position in the request, where it goes, what it does.
type Planned = (usize, u8, Vec<u8>, ClientOp);

/// Most ops in one batch.
pub const MAX_OPS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    #[serde(default, deserialize_with = "params::json_int")]
    db: Option<u8>,
    /// Objects only: each is decoded into a [`BatchOp`] on its own, so an array in place
    /// of an op is refused rather than read in field order.
    ops: Vec<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchOp {
    op: String,
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    ttl: Option<Value>,
    #[serde(default, deserialize_with = "params::json_int")]
    prev_revision: Option<u64>,
    #[serde(default, deserialize_with = "params::json_int")]
    db: Option<u8>,
}

fn bad(i: usize, msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("bad_batch", format!("ops[{i}]: {msg}"))
}

/// Validates one op into what the shard will run.
fn decode_op(i: usize, op: BatchOp, default_db: u8, node: &Node) -> Result<(OpKind, u8, Vec<u8>, ClientOp), ApiError> {
    if op.prev_revision.is_some_and(|r| r > params::MAX_REVISION) {
        return Err(bad(i, format!("`prev_revision` must be 0..={}", params::MAX_REVISION)));
    }
    let db = op.db.unwrap_or(default_db);
    if db > crate::ring::MAX_DB {
        return Err(ApiError::bad_request("bad_db", format!("ops[{i}]: db must be 0..={}", crate::ring::MAX_DB)));
    }
    let key = params::key(&op.key, node.config.max_key_bytes)?;
    let only_put =
        |what: &str, present: bool| if present { Err(bad(i, format!("`{what}` only applies to put"))) } else { Ok(()) };
    let (kind, client_op) = match op.op.as_str() {
        "put" => {
            let value = op.value.ok_or_else(|| bad(i, "put needs a string `value`"))?;
            let body = json!({"value": value, "encoding": op.encoding});
            let (value, _) = params::put_body(body.to_string().as_bytes())?;
            params::value_len(value.len(), node.config.max_value_bytes)?;
            let ttl_ms = op.ttl.as_ref().filter(|v| !v.is_null()).map(params::json_ttl).transpose()?;
            let ttl_ms = ttl_ms.map(|d| d.as_millis().max(1) as u64);
            (OpKind::Put, ClientOp::Put { db, key: key.clone(), value: value.into(), ttl_ms, expect: op.prev_revision })
        }
        "delete" => {
            only_put("value", op.value.is_some())?;
            only_put("ttl", op.ttl.is_some())?;
            only_put("encoding", op.encoding.is_some())?;
            (OpKind::Delete, ClientOp::Delete { db, key: key.clone(), expect: op.prev_revision })
        }
        "get" => {
            only_put("value", op.value.is_some())?;
            only_put("ttl", op.ttl.is_some())?;
            only_put("encoding", op.encoding.is_some())?;
            if op.prev_revision.is_some() {
                return Err(bad(i, "`prev_revision` applies to put and delete"));
            }
            (OpKind::Get, ClientOp::Get { db, key: key.clone() })
        }
        other => return Err(bad(i, format!("op must be put, delete or get, not `{other}`"))),
    };
    Ok((kind, db, key, client_op))
}

/// One op's result as the client sees it.
/// How much a group's failure says about the batch, for choosing the batch's answer:
/// "may still apply" (a client must read before retrying) over "retry" over "not applied,
/// the disk is full" (retry later) over anything else.
fn severity(e: &ApiError) -> u8 {
    match e {
        ApiError::OutcomeUnknown { .. } => 3,
        ApiError::Unavailable { .. } => 2,
        ApiError::InsufficientStorage { .. } => 1,
        _ => 0,
    }
}

fn op_result(kind: OpKind, key: &[u8], db: u8, shard: ShardId, group_ok: bool, r: &OpResult) -> BatchResult {
    let mut v = BatchResult {
        op: kind,
        key: String::from_utf8_lossy(key).into_owned(),
        db,
        shard,
        ok: group_ok,
        revision: None,
        deleted: None,
        found: None,
        value: None,
        encoding: None,
        create_revision: None,
        mod_revision: None,
        version: None,
        ttl_ms: None,
        current_revision: None,
        skipped: None,
        error: None,
    };
    match r {
        OpResult::Put { revision } => v.revision = Some(*revision),
        OpResult::Delete { deleted } => v.deleted = Some(u8::from(*deleted)),
        OpResult::Get(entry) => {
            v.found = Some(entry.is_some());
            if let Some(e) = entry {
                let (value, encoding) = params::encode_value(&e.value);
                v.value = Some(value);
                v.encoding = encoding.map(|_| Encoding::Base64);
                v.create_revision = Some(e.create_revision);
                v.mod_revision = Some(e.mod_revision);
                v.version = Some(e.version);
                v.ttl_ms = e.expires_at_ms.map(|t| t.saturating_sub(now_ms()));
            }
        }
        OpResult::Conflict { current } => {
            v.ok = false;
            v.current_revision = Some(*current);
        }
        OpResult::Skipped => {
            v.ok = false;
            v.skipped = Some(true);
        }
    }
    v
}

/// `POST /v1/batch`.
pub async fn batch(
    State(node): State<Arc<Node>>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if params::body_kind(ct)? != params::BodyKind::Json {
        return Err(ApiError::UnsupportedMediaType { message: "POST /v1/batch takes application/json".into() });
    }
    let limit = node.config.max_value_bytes.saturating_mul(8).clamp(1 << 20, 64 << 20);
    let bytes = extract::read_body(body, &headers, limit, "batch body").await?;
    params::require_json_object(&bytes)?;
    let b: BatchBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("bad_json", format!("invalid batch body: {e}")))?;
    if b.ops.is_empty() || b.ops.len() > MAX_OPS {
        return Err(ApiError::bad_request("bad_batch", format!("a batch has 1..={MAX_OPS} ops")));
    }
    let default_db = b.db.unwrap_or(0);
    if default_db > crate::ring::MAX_DB {
        return Err(ApiError::bad_request("bad_db", format!("db must be 0..={}", crate::ring::MAX_DB)));
    }
    // Validate everything before proposing anything.
    let mut kinds = Vec::with_capacity(b.ops.len());
    let mut groups: BTreeMap<ShardId, Vec<Planned>> = BTreeMap::new();
    for (i, op) in b.ops.into_iter().enumerate() {
        let op: BatchOp = serde_json::from_value(Value::Object(op)).map_err(|e| bad(i, e))?;
        let (kind, db, key, client_op) = decode_op(i, op, default_db, &node)?;
        // Each op, before any is proposed: one outside the principal's limits refuses the batch.
        let need = match kind {
            OpKind::Get => Op::Read,
            OpKind::Put | OpKind::Delete => Op::Write,
        };
        access.allow(need, db, &key).map_err(|e| match e {
            ApiError::Forbidden { message } => ApiError::Forbidden { message: format!("ops[{i}]: {message}") },
            other => other,
        })?;
        kinds.push(kind);
        let shard = node.router.locate(db, &key);
        groups.entry(shard).or_default().push((i, db, key, client_op));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (shard, group) in groups {
        let node = node.clone();
        tasks.spawn(async move {
            let ops = group.iter().map(|(_, _, _, op)| op.clone()).collect();
            let r: Result<CommandResult, ApiError> = node.transact(shard, ops).await.map_err(ApiError::from);
            (shard, group, r)
        });
    }
    let mut results: Vec<Option<BatchResult>> = kinds.iter().map(|_| None).collect();
    let (mut all_ok, mut failure): (bool, Option<ApiError>) = (true, None);
    while let Some(joined) = tasks.join_next().await {
        let (shard, group, r) = joined.map_err(ApiError::internal)?;
        match r {
            Ok(r) => {
                all_ok &= r.ok;
                for ((i, db, key, _), res) in group.iter().zip(&r.ops) {
                    results[*i] = Some(op_result(kinds[*i], key, *db, shard, r.ok, res));
                }
            }
            Err(e) => {
                all_ok = false;
                for (i, db, key, _) in &group {
                    let mut failed = op_result(kinds[*i], key, *db, shard, false, &OpResult::Skipped);
                    failed.skipped = None;
                    failed.error = Some(e.to_string());
                    results[*i] = Some(failed);
                }
                // The batch answers with its worst group's failure, not its last one's:
                // "may have applied" must never be hidden behind "applied nothing".
                if failure.as_ref().is_none_or(|f| severity(&e) > severity(f)) {
                    failure = Some(e);
                }
            }
        }
    }
    let detail = |code: &str, message: String| ErrorDetail { code: code.to_owned(), message, current_revision: None };
    let (status, error) = match (&failure, all_ok) {
        (Some(e), _) => {
            let message = format!("{e} (other shards' groups may have applied; see results)");
            (e.status(), Some(detail(e.code(), message)))
        }
        (None, false) => {
            let message = "a precondition failed; that shard's group applied nothing".to_owned();
            (StatusCode::CONFLICT, Some(detail("revision_mismatch", message)))
        }
        (None, true) => (StatusCode::OK, None),
    };
    // Every op is in exactly one group, and every group answered.
    let results = results
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ApiError::internal("a batch op got no result"))?;
    let body = BatchAnswer { results, applied: all_ok, error };
    Ok((status, Json(body)).into_response())
}
