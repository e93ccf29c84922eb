//! Node-to-node traffic on the internal port. The hot calls (AppendEntries, votes,
//! forwarded client requests) use the wire, a small binary protocol with one connection
//! per peer ([`wire`]); snapshots, admin calls, status and relayed watches use HTTP/2
//! (h2c) on the same port, which tells the two apart by a connection's first bytes
//! ([`listener`]). Bodies are postcard either way.

pub mod client;
pub mod error;
pub mod listener;
pub mod server;
pub mod wire;

pub use client::{NetError, NetworkFactory, PeerClient};
