//! The client API's answers (`/v1/...`), as the node writes them and its OpenAPI
//! document describes them: one declaration for both. (Request bodies are decoded by the
//! node's own strict readers and documented beside them.)

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The v1 error body: `{"error": {"code", "message"}}`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a message for humans.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// e.g. `bad_db`, `bad_ttl`, `bad_json`, `key_too_large`, `revision_mismatch`; on a
    /// 503 `unavailable` (a write was not applied and will not be) or `outcome_unknown`
    /// (a write was proposed and may still apply); on a 507 `insufficient_storage` (the
    /// shard leader's disk is nearly full: the write was not applied; retry later).
    pub code: String,
    pub message: String,
    /// Only on 409 `revision_mismatch`: the key's mod_revision now (0 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
}

/// How a value travels in JSON: the string itself (`utf8`, the default) or base64.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Utf8,
    Base64,
}

/// A successful put.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Written {
    pub key: String,
    pub db: u8,
    pub shard: u32,
    /// The shard's mutation counter after this write: the key's new mod_revision.
    pub revision: u64,
}

/// A key and its value with revisions.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub db: u8,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Puts since the key was created.
    pub version: u64,
    /// Milliseconds left, for keys with a TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// `base64` when the value is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
}

/// A delete: `deleted` is 1, or 0 when the key was absent (deletes are idempotent).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub key: String,
    pub db: u8,
    #[schema(minimum = 0, maximum = 1)]
    pub deleted: u8,
    pub revision: u64,
}

/// One page of a listing, in key order across every shard.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Listing {
    pub db: u8,
    pub count: usize,
    pub items: Vec<Entry>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}
/// `put`, `delete` or `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Put,
    Delete,
    Get,
}

/// The result of one op, in request order.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    pub op: OpKind,
    pub key: String,
    pub db: u8,
    pub shard: u32,
    /// Whether the op's shard group applied.
    pub ok: bool,
    /// Put: the new revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Delete: 1, or 0 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<u8>,
    /// Get: whether the key exists; the entry fields follow when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// The op whose precondition failed: the key's mod_revision now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
    /// The op was not applied because another op of its shard group failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<bool>,
    /// The shard group failed for another reason (e.g. no leader in time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to a batch: 200 when every group applied, 409 when a precondition failed
/// (with `error`), another 4xx/5xx when a group could not be run.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct BatchAnswer {
    pub results: Vec<BatchResult>,
    /// True when every op applied.
    pub applied: bool,
    /// Present when `applied` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// A member node.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ClusterNode {
    pub id: u64,
    pub internal_addr: String,
}

/// `GET /v1/cluster`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    pub node_id: u64,
    pub epoch: u64,
    pub shard_count: u32,
    pub replication_factor: usize,
    pub nodes: Vec<ClusterNode>,
    /// This node's replicas (the type the node serves).
    pub shards: Vec<crate::ring::ShardInfo>,
    /// Every shard of the ring as this node's routes know it, hosted here or not.
    pub ring: Vec<RingShard>,
}

/// One shard of the ring in `GET /v1/cluster`'s `ring`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RingShard {
    pub id: u32,
    /// The shard owns the keys with `hash mod modulus == id`.
    pub modulus: u32,
    pub epoch: u64,
    pub members: Vec<u64>,
    pub leader: Option<u64>,
    pub hosted_here: bool,
}
