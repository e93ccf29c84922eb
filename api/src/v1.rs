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
    /// e.g. `bad_db`, `bad_ttl`, `bad_json`, `key_too_large`, `revision_mismatch`.
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
