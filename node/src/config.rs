//! The node's one typed configuration: command-line flags, each also read from a
//! `RINGKV_*` environment variable (the Helm chart sets env and nothing else).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::ring::{validate_shard_count, NodeId};

/// ringkv storage node. With no flags it runs standalone: one node, every shard local,
/// replication 1, data in ./ringkv-data, HTTP on 127.0.0.1:8080.
#[derive(Parser, Debug, Clone)]
#[command(name = "ringkv-node", version, about)]
pub struct Config {
    /// This node's id (unique in the cluster, > 0).
    #[arg(long, env = "RINGKV_NODE_ID", default_value_t = 1)]
    pub node_id: NodeId,

    /// Client HTTP API address.
    #[arg(long, env = "RINGKV_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Internal (Raft, forwarding, admin) address. Default: the client port + 100.
    #[arg(long, env = "RINGKV_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,

    /// The nodes that bootstrap the ring, as `id=host:port` internal addresses,
    /// comma-separated. Empty: standalone. A node listed here is a founding member: the
    /// lowest id bootstraps every shard once all of them answer. A node not listed here
    /// joins an existing ring: it bootstraps nothing, learns the ring from the listed
    /// nodes, and holds replicas once the admin API adds them (so every pod of a
    /// StatefulSet can share one list, whatever the node count grows to).
    #[arg(long, env = "RINGKV_PEERS", default_value = "", value_parser = parse_peers)]
    pub peers: Peers,

    /// Number of shards, a power of two.
    #[arg(long, env = "RINGKV_SHARDS", default_value_t = 4)]
    pub shards: u32,

    /// Data directory (WAL and snapshots).
    #[arg(long, env = "RINGKV_DATA_DIR", default_value = "./ringkv-data")]
    pub data_dir: PathBuf,

    /// Largest key, in bytes.
    #[arg(long, env = "RINGKV_MAX_KEY_BYTES", default_value_t = 4096)]
    pub max_key_bytes: usize,

    /// Largest value, in bytes.
    #[arg(long, env = "RINGKV_MAX_VALUE_BYTES", default_value_t = 1 << 20)]
    pub max_value_bytes: usize,

    /// How long a request may wait for a shard leader before the client gets 503.
    #[arg(long, env = "RINGKV_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Raft heartbeat interval.
    #[arg(long, env = "RINGKV_HEARTBEAT", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// Minimum Raft election timeout (the maximum is twice this).
    #[arg(long, env = "RINGKV_ELECTION_TIMEOUT", default_value = "600ms", value_parser = humantime::parse_duration)]
    pub election_timeout: Duration,

    /// Take a shard snapshot (and purge its log) after this many new entries.
    #[arg(long, env = "RINGKV_SNAPSHOT_ENTRIES", default_value_t = 20_000)]
    pub snapshot_entries: u64,

    /// WAL segment size in bytes.
    #[arg(long, env = "RINGKV_WAL_SEGMENT_BYTES", default_value_t = 64 << 20)]
    pub wal_segment_bytes: u64,

    /// Free space, in bytes, kept on the data directory's file system. Below it the node
    /// refuses client writes it would propose (507 `insufficient_storage`); below half of
    /// it, also replication into its replicas (the leaders retry). Reads always work, and
    /// writes resume by themselves once space returns. 0 turns the guard off.
    #[arg(long, alias = "disk-reserve", env = "RINGKV_DISK_RESERVE_BYTES", default_value_t = 64 << 20)]
    pub disk_reserve_bytes: u64,

    /// Async worker threads. Default: one per CPU core. Lower it when several nodes
    /// share a small machine (fewer threads, fewer cross-thread wake-ups).
    #[arg(long, env = "RINGKV_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Log format.
    #[arg(long, env = "RINGKV_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// TLS on the client port: this node's certificate chain (PEM). With `--tls-key`.
    /// The files are re-read when they change (a cert-manager rotation needs no restart).
    #[arg(long, env = "RINGKV_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS on the client port: the certificate's private key (PEM).
    #[arg(long, env = "RINGKV_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA bundle (PEM) for client certificates on the client port. Clients that present
    /// one it signed are identified by it (an alternative to a bearer token); clients
    /// without a certificate still connect and use tokens.
    #[arg(long, env = "RINGKV_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Mutual TLS on the internal port: this node's certificate (PEM), presented to peers
    /// both as a server and as a client. With `--internal-tls-key` and `--internal-tls-ca`.
    #[arg(long, env = "RINGKV_INTERNAL_TLS_CERT", requires_all = ["internal_tls_key", "internal_tls_ca"])]
    pub internal_tls_cert: Option<PathBuf>,

    /// Mutual TLS on the internal port: the certificate's private key (PEM).
    #[arg(long, env = "RINGKV_INTERNAL_TLS_KEY", requires = "internal_tls_cert")]
    pub internal_tls_key: Option<PathBuf>,

    /// Mutual TLS on the internal port: the cluster's CA (PEM). Every connection, in or
    /// out, must present a certificate it signed; anything else is refused in the
    /// handshake, before a Raft or admin frame is read.
    #[arg(long, env = "RINGKV_INTERNAL_TLS_CA", requires = "internal_tls_cert")]
    pub internal_tls_ca: Option<PathBuf>,

    /// Bearer tokens for the client API (a JSON file of hashed tokens and their roles;
    /// see docs/security.md). Re-read when it changes. Without it the client API is open.
    #[arg(long, env = "RINGKV_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,

    /// With `--auth-tokens`: `/metrics` needs a token too (any role). `/healthz` and
    /// `/readyz` are always open.
    #[arg(long, env = "RINGKV_METRICS_AUTH", default_value_t = false)]
    pub metrics_auth: bool,
}

/// How logs are written. (An unknown format is refused by the parser, with the
/// possible values, before `validate` runs.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Node id → internal address.
pub type Peers = BTreeMap<NodeId, String>;

fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = Peers::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| format!("peer `{part}` is not `id=host:port`"))?;
        let id: NodeId = id.trim().parse().map_err(|_| format!("peer id `{id}` is not a number"))?;
        let addr = addr.trim();
        if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
            return Err(format!("peer address `{addr}` is not host:port"));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("peer id {id} is listed twice"));
        }
    }
    Ok(peers)
}

impl Config {
    /// A standalone configuration with the given data dir and ports (tests).
    pub fn standalone(data_dir: PathBuf) -> Self {
        let mut c = Config::parse_from(["ringkv-node"]);
        c.data_dir = data_dir;
        c
    }

    /// The internal address to bind.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_listen.unwrap_or_else(|| {
            let mut a = self.listen;
            a.set_port(self.listen.port().saturating_add(100));
            a
        })
    }

    /// The client port's TLS files, when TLS is on there.
    pub fn client_tls(&self) -> Option<crate::tls::Files> {
        Some(crate::tls::Files {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            ca: self.tls_client_ca.clone(),
        })
    }

    /// The internal port's mutual-TLS files, when it runs mutual TLS.
    pub fn internal_tls(&self) -> Option<crate::tls::Files> {
        Some(crate::tls::Files {
            cert: self.internal_tls_cert.clone()?,
            key: self.internal_tls_key.clone()?,
            ca: Some(self.internal_tls_ca.clone()?),
        })
    }

    /// Whether this node runs alone (no peers besides itself). A node joining a ring
    /// it is not a founding member of never is.
    pub fn is_standalone(&self) -> bool {
        self.peers.keys().all(|id| *id == self.node_id)
    }

    /// Whether this node joins an existing ring instead of bootstrapping one: it has
    /// peers but is not among them.
    pub fn is_joining(&self) -> bool {
        !self.peers.is_empty() && !self.peers.contains_key(&self.node_id)
    }

    /// Reports every contradiction at once, before any port is bound.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.node_id == 0 {
            errs.push("--node-id must be > 0".to_string());
        }
        if let Err(e) = validate_shard_count(self.shards) {
            errs.push(format!("--shards: {e}"));
        }
        // Bootstrap is run by the lowest id among the peers and this node: a joining node
        // below the founders would initialise every shard a second time.
        if self.is_joining() && self.peers.keys().next().is_some_and(|lowest| self.node_id < *lowest) {
            errs.push(format!(
                "--node-id {} is not in --peers and is lower than every id there; a joining node needs a higher id \
                 than the lowest founding peer (which bootstraps the ring)",
                self.node_id
            ));
        }
        if self.max_key_bytes == 0 {
            errs.push("--max-key-bytes must be > 0".to_string());
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > 64 << 20 {
            errs.push("--max-value-bytes must be between 1 and 64 MiB".to_string());
        }
        if self.request_timeout < Duration::from_millis(100) {
            errs.push("--request-timeout must be at least 100ms".to_string());
        }
        if self.heartbeat.is_zero() || self.election_timeout < self.heartbeat * 3 {
            errs.push("--election-timeout must be at least 3x --heartbeat".to_string());
        }
        if self.snapshot_entries < 100 {
            errs.push("--snapshot-entries must be at least 100".to_string());
        }
        if self.wal_segment_bytes < 1 << 20 {
            errs.push("--wal-segment-bytes must be at least 1 MiB".to_string());
        }
        if self.worker_threads.is_some_and(|n| n == 0 || n > 1024) {
            errs.push("--worker-threads must be between 1 and 1024".to_string());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_valid_standalone_node() {
        let c = Config::parse_from(["ringkv-node"]);
        assert!(c.validate().is_ok());
        assert!(c.is_standalone());
        assert_eq!(c.internal_addr().port(), 8180);
        assert_eq!(c.shards, 4);
    }

    #[test]
    fn validate_reports_every_contradiction() {
        let c = Config::parse_from(["ringkv-node", "--shards", "3", "--node-id", "0", "--max-key-bytes", "0"]);
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("power of two")));
    }

    #[test]
    fn peers_parse_and_reject_garbage() {
        let p = parse_peers("1=127.0.0.1:8180, 2=127.0.0.2:8181").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[&2], "127.0.0.2:8181");
        assert!(parse_peers("1=a:1,1=b:2").is_err());
        assert!(parse_peers("x=a:1").is_err());
        assert!(parse_peers("1=nohost").is_err());
    }

    #[test]
    fn a_node_outside_the_peer_list_joins_and_is_never_standalone() {
        let c = Config::parse_from(["ringkv-node", "--node-id", "3", "--peers", "1=a:1,2=b:2"]);
        assert!(c.validate().is_ok());
        assert!(c.is_joining() && !c.is_standalone());
        let lone = Config::parse_from(["ringkv-node", "--node-id", "2", "--peers", "1=a:1"]);
        assert!(lone.is_joining() && !lone.is_standalone(), "one founding peer that is not us: join it");
        let founder = Config::parse_from(["ringkv-node", "--node-id", "1", "--peers", "1=a:1,2=b:2"]);
        assert!(!founder.is_joining() && !founder.is_standalone());
        let alone = Config::parse_from(["ringkv-node", "--node-id", "1", "--peers", "1=a:1"]);
        assert!(alone.is_standalone() && !alone.is_joining());
        let below = Config::parse_from(["ringkv-node", "--node-id", "1", "--peers", "2=a:1,3=b:2"]);
        assert!(below.validate().unwrap_err()[0].contains("lower than every id"));
    }
}
