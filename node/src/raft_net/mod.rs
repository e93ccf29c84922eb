//! Node-to-node traffic on the internal port: Raft RPCs of every shard and forwarded
//! client requests, multiplexed over one HTTP/2 connection per peer (the shard id is in
//! the path), with postcard-encoded bodies.

pub mod client;
pub mod server;

pub use client::{NetError, NetworkFactory, PeerClient};
