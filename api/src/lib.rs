//! The contract between ringkv's parts: what the node, the planner, the operator and the
//! admin CLI must agree on, declared once.
//!
//! - [`ids`]: node and shard ids, and key placement (`key_hash`, `shard_for`): every
//!   node, every version and the operator agree on which shard owns a key.
//! - [`ring`]: the ring as a node reports it (`GET /internal/ring`, `GET /v1/cluster`),
//!   and the walk from a shard to the coarser slices that may have absorbed it.
//! - [`admin`]: the admin requests a planner sends to the nodes' internal port, each with
//!   its method, route and query, as one enum; the node mounts the same routes.
//! - [`v1`]: the client API's answers (written by the node, described by its OpenAPI
//!   document from the same types).
//! - `client` (feature `client`): a typed client for those requests.
//!
//! The end-to-end test client (`tests/src/client.rs`) keeps its own copy of the client
//! API's wire types on purpose: it checks the server against an independent reading.

pub mod admin;
#[cfg(feature = "client")]
pub mod client;
pub mod ids;
pub mod ring;
#[cfg(feature = "tls")]
pub mod tls;
pub mod v1;

pub use admin::AdminRequest;
pub use ids::{key_hash, shard_for, validate_shard_count, NodeId, ShardId, MAX_DB, MAX_SHARDS};
pub use ring::{coarser_slices, Ring, ShardInfo};
