//! Whose data a directory is (`node.json`: the node id and the shard count the ring was
//! bootstrapped with), checked on every start.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{write_durably, NodeStatus, StartError};
use crate::config::Config;
use crate::raft_net::PeerClient;
use crate::ring::NodeId;

/// The shard count the ring of this data directory was bootstrapped with: the recorded
/// one, or on a fresh directory the one learnt from the peers (see [`ring_shard_count`]),
/// recorded now.
pub(super) async fn shard_count(dir: &Path, config: &Config, peers: &PeerClient) -> Result<u32, StartError> {
    let shards = if dir.join("node.json").exists() { config.shards } else { ring_shard_count(config, peers).await };
    check_identity(dir, &Identity { node_id: config.node_id, shards })
}

/// What a data directory was created for; checked on every start.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Identity {
    node_id: NodeId,
    shards: u32,
}

/// Checks (or, on a fresh directory, records) whose data this is. Returns the shard count
/// the ring was bootstrapped with: on an existing directory that one wins over the
/// configured count, since shards split and merge after bootstrap.
fn check_identity(dir: &Path, want: &Identity) -> Result<u32, StartError> {
    let path = dir.join("node.json");
    let io = |source| StartError::DataDir { path: path.display().to_string(), source };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: Identity =
                serde_json::from_slice(&bytes).map_err(|e| io(std::io::Error::other(format!("unreadable: {e}"))))?;
            if found.node_id != want.node_id {
                return Err(StartError::Identity {
                    path: dir.display().to_string(),
                    found: format!("node {}", found.node_id),
                    wanted: format!("node {}", want.node_id),
                });
            }
            if found.shards != want.shards {
                tracing::info!(
                    bootstrapped = found.shards,
                    configured = want.shards,
                    "the data directory's ring was bootstrapped with another shard count; the ring on disk is used"
                );
            }
            Ok(found.shards)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = serde_json::to_vec_pretty(want).map_err(|e| io(std::io::Error::other(e)))?;
            write_durably(dir, "node.json", &bytes).map_err(io)?;
            Ok(want.shards)
        }
        Err(e) => Err(io(e)),
    }
}

/// The shard count a fresh data directory records: the one the ring was bootstrapped
/// with where a peer already runs it, else `--shards`. The two differ when a cluster is
/// re-created over kept volumes with another configured count; a node added then must
/// not start its replicas from the wrong bootstrap slices (they replay shard logs from
/// the first entry). A joining node waits for a peer to answer, since it has nothing to
/// serve before; a founder asks once, briefly, because at a first bootstrap its peers
/// answer only after they too have opened (`bootstrap_once` then checks the counts).
async fn ring_shard_count(config: &Config, peers: &PeerClient) -> u32 {
    let others: Vec<NodeId> = config.peers.keys().copied().filter(|id| *id != config.node_id).collect();
    if others.is_empty() {
        return config.shards;
    }
    let mut logged = false;
    loop {
        let asks =
            others.iter().map(|id| peers.get_json::<NodeStatus>(*id, "/internal/status", Duration::from_secs(1)));
        let answers = futures::future::join_all(asks).await;
        if let Some(st) = answers.iter().flatten().find(|st| !st.initialized.is_empty()) {
            if st.shard_count != config.shards {
                tracing::warn!(
                    ring = st.shard_count,
                    configured = config.shards,
                    peer = st.node_id,
                    "the ring was bootstrapped with another shard count than --shards; using the ring's"
                );
            }
            return st.shard_count;
        }
        if !config.is_joining() {
            return config.shards;
        }
        if !logged {
            tracing::info!(peers = ?others, "joining: waiting for a peer to tell the ring's bootstrap shard count");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
