//! Node-to-node traffic on the internal port: the transport knows node ids, shard ids
//! and bytes, nothing of shards' contents or of the routes served over it.
//!
//! The hot calls (AppendEntries, votes, forwarded client requests) use the wire, a small
//! binary protocol with one connection per peer ([`wire`]); snapshots, admin calls, status
//! and relayed watches use HTTP/2 (h2c) on the same port, which tells the two apart by a
//! connection's first bytes ([`listener`]). Bodies are postcard either way. Which calls
//! exist is [`call`]; the node answers them ([`listener::Inbound`]) and the API layer
//! mounts the HTTP routes (`api::internal`). With mutual TLS on ([`crate::tls::Mutual`]),
//! both run inside it: a connection that fails the handshake never reaches either.

pub mod call;
pub mod client;
pub mod error;
pub mod listener;
pub mod stream;
pub mod wire;

pub use call::{Call, RaftRpc};
pub use client::PeerClient;
pub use error::{CallError, NetError};
