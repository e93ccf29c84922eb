//! The fuzz targets' checks: the same oracle the node's bounded proptest run uses.

#[path = "../../node/tests/fuzz_support/oracle.rs"]
mod oracle;

pub use oracle::{check_request_bytes, check_wal_bytes};
