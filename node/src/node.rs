//! The node: every hosted shard, the shared WAL, the peer client, and the background
//! work (bootstrap, TTL reaper, WAL compaction, leadership handoff on shutdown).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::raft_net::PeerClient;
use crate::ring::{NodeId, Ring, ShardId, ShardInfo};
use crate::shard::state_machine::voter_ids;
use crate::shard::types::{now_ms, Command};
use crate::shard::{OpenError, Shard, ShardDeps};
use crate::wal::{Wal, WalOptions};

/// Errors starting a node; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("data directory {path} belongs to {found}, but this node was started as {wanted}; refusing to mix data")]
    Identity { path: String, found: String, wanted: String },
    #[error("WAL: {0}")]
    Wal(#[from] crate::wal::Error),
    #[error(transparent)]
    Shard(#[from] OpenError),
}

/// What a data directory was created for; checked on every start.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Identity {
    node_id: NodeId,
    shards: u32,
}

/// This node's status as its peers see it on the internal port.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub shard_count: u32,
    /// Shards on this node that already have Raft state.
    pub initialized: Vec<ShardId>,
}

/// A running node.
pub struct Node {
    pub config: Config,
    pub id: NodeId,
    pub shard_count: u32,
    pub shards: BTreeMap<ShardId, Shard>,
    pub peers: PeerClient,
    pub metrics: Arc<Metrics>,
    pub wal: Wal,
    /// Woken whenever any hosted shard applies changes (watchers wait on it).
    pub changes: Arc<tokio::sync::Notify>,
    /// Cancelled when the node starts shutting down: long-lived streams (watches) end
    /// so that draining does not wait for them.
    pub stopping: CancellationToken,
}

fn check_identity(dir: &Path, want: &Identity) -> Result<(), StartError> {
    let path = dir.join("node.json");
    let io = |source| StartError::DataDir { path: path.display().to_string(), source };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| io(std::io::Error::other(format!("unreadable: {e}"))))?;
            if &found != want {
                return Err(StartError::Identity {
                    path: dir.display().to_string(),
                    found: format!("node {} with {} shards", found.node_id, found.shards),
                    wanted: format!("node {} with {} shards", want.node_id, want.shards),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = serde_json::to_vec_pretty(want).map_err(|e| io(std::io::Error::other(e)))?;
            let tmp = dir.join("node.json.tmp");
            std::fs::write(&tmp, bytes).map_err(io)?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

impl Node {
    /// Opens the data directory, recovers the WAL and starts every shard's Raft group.
    pub async fn open(config: Config, metrics: Arc<Metrics>) -> Result<Arc<Node>, StartError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|source| StartError::DataDir { path: dir.display().to_string(), source })?;
        check_identity(&dir, &Identity { node_id: config.node_id, shards: config.shards })?;

        let m = metrics.clone();
        let opts = WalOptions {
            segment_bytes: config.wal_segment_bytes,
            on_fsync: Some(Arc::new(move |d: Duration, n: usize| {
                m.wal_fsync.observe(d.as_secs_f64());
                m.wal_batch_records.observe(n as f64);
            })),
            ..WalOptions::default()
        };
        let (wal, mut recovered) = Wal::open(&dir.join("wal"), opts)?;
        if let Some((file, offset)) = &recovered.torn_tail {
            tracing::warn!(file = %file.display(), offset, "WAL had a torn tail (a write cut by a crash); truncated it");
        }

        let mut peers_map = config.peers.clone();
        peers_map.entry(config.node_id).or_insert_with(|| config.internal_addr().to_string());
        let peers = PeerClient::new(peers_map);

        let raft_config = Arc::new(
            openraft::Config {
                cluster_name: "ringkv".into(),
                heartbeat_interval: config.heartbeat.as_millis() as u64,
                election_timeout_min: config.election_timeout.as_millis() as u64,
                election_timeout_max: config.election_timeout.as_millis() as u64 * 2,
                install_snapshot_timeout: 10_000,
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
                // Entries kept behind a snapshot so a briefly lagging follower catches up
                // from the log instead of a full snapshot.
                max_in_snapshot_log_to_keep: (config.snapshot_entries / 4).min(1_000),
                max_payload_entries: 1_000,
                ..Default::default()
            }
            .validate()
            .map_err(|e| OpenError::Raft { shard: 0, message: e.to_string() })?,
        );

        let changes = Arc::new(tokio::sync::Notify::new());
        let deps = ShardDeps {
            node_id: config.node_id,
            raft_config,
            wal: wal.clone(),
            peers: peers.clone(),
            changes: changes.clone(),
        };
        let mut shards = BTreeMap::new();
        for id in 0..config.shards {
            let sdir = dir.join("shards").join(id.to_string());
            let rec = recovered.shards.remove(&id);
            let shard = Shard::open(id, &sdir, rec, &deps).await?;
            shards.insert(id, shard);
        }
        if !recovered.shards.is_empty() {
            tracing::warn!(shards = ?recovered.shards.keys().collect::<Vec<_>>(), "WAL holds shards this node does not host; ignored");
        }
        Ok(Arc::new(Node { id: config.node_id, shard_count: config.shards, config, shards, peers, metrics, wal, changes, stopping: CancellationToken::new() }))
    }

    /// How long a leader may go without a quorum's answer before it stops counting itself
    /// as leader: the longest election timeout, after which followers elect anew.
    pub fn leader_stale_after(&self) -> Duration {
        self.config.election_timeout * 2
    }

    /// The hosted replica of `shard`.
    pub fn shard(&self, shard: ShardId) -> Option<&Shard> {
        self.shards.get(&shard)
    }

    /// What peers need to know for bootstrap.
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            node_id: self.id,
            shard_count: self.shard_count,
            initialized: self.shards.values().filter(|s| !s.log.is_empty()).map(|s| s.id).collect(),
        }
    }

    /// This node's view of the ring.
    pub fn ring(&self) -> Ring {
        let shards = self
            .shards
            .values()
            .map(|s| {
                let m = s.raft.metrics().borrow().clone();
                ShardInfo {
                    id: s.id,
                    members: voter_ids(&m.membership_config),
                    // A leader cut off from its quorum is not reported as one.
                    leader: match m.current_leader {
                        Some(l) if l == self.id && crate::shard::is_stale_leader(&m, self.leader_stale_after()) => None,
                        other => other,
                    },
                    term: m.current_term,
                    last_log_index: m.last_log_index.unwrap_or(0),
                    commit_index: s.log.committed_index(),
                    applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
                    snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
                    purged_index: m.purged.map(|l| l.index).unwrap_or(0),
                    state: format!("{:?}", m.state),
                }
            })
            .collect();
        Ring { epoch: 1, shard_count: self.shard_count, shards }
    }

    /// Whether every hosted shard has a leader and has applied what it knows is committed.
    pub fn ready(&self) -> Result<(), String> {
        for s in self.shards.values() {
            let m = s.raft.metrics().borrow().clone();
            if m.current_leader.is_none() {
                return Err(format!("shard {} has no leader", s.id));
            }
            if m.current_leader != Some(self.id) && !s.heard_from_leader.load(std::sync::atomic::Ordering::Acquire) {
                return Err(format!("shard {} has not heard from its leader since start", s.id));
            }
            if crate::shard::is_stale_leader(&m, self.leader_stale_after()) {
                return Err(format!("shard {} is led by this node but no quorum has answered lately", s.id));
            }
            let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
            if applied < s.log.committed_index() {
                return Err(format!("shard {} is catching up ({applied} < {})", s.id, s.log.committed_index()));
            }
        }
        Ok(())
    }

    /// Brings up every shard that has no Raft state anywhere. Only the lowest-id member
    /// does this, and only once every member answers and none has state for the shard, so a
    /// wiped or restarted node never re-initialises a live group.
    pub async fn bootstrap(self: Arc<Self>, stop: CancellationToken) {
        let members: BTreeMap<NodeId, BasicNode> = self
            .peers
            .ids()
            .into_iter()
            .map(|id| (id, BasicNode::new(self.peers.addr(id).unwrap_or_default())))
            .collect();
        if members.keys().next() != Some(&self.id) {
            return;
        }
        loop {
            match self.bootstrap_once(&members).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::info!(reason = %e, "bootstrap waiting for peers"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    async fn bootstrap_once(&self, members: &BTreeMap<NodeId, BasicNode>) -> Result<bool, String> {
        let mut initialized = std::collections::BTreeSet::new();
        for &id in members.keys() {
            let st = if id == self.id {
                self.status()
            } else {
                self.peers.get_json::<NodeStatus>(id, "/internal/status", Duration::from_secs(1)).await.map_err(|e| e.to_string())?
            };
            if st.node_id != id || st.shard_count != self.shard_count {
                return Err(format!(
                    "peer {id} reports node {} with {} shards; expected node {id} with {}",
                    st.node_id, st.shard_count, self.shard_count
                ));
            }
            initialized.extend(st.initialized);
        }
        for s in self.shards.values() {
            if initialized.contains(&s.id) {
                continue;
            }
            match s.raft.initialize(members.clone()).await {
                Ok(()) => tracing::info!(shard = s.id, members = ?members.keys().collect::<Vec<_>>(), "shard bootstrapped"),
                Err(e) => tracing::warn!(shard = s.id, error = %e, "shard bootstrap refused"),
            }
        }
        Ok(true)
    }

    /// Removes expired keys: each leader proposes deletes for its expired keys, so all
    /// replicas drop the same keys at the same log index.
    pub async fn reap_expired(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for s in self.shards.values() {
                if s.leader() != Some(self.id) {
                    continue;
                }
                let keys = s.read().expired(now_ms(), 1024);
                if keys.is_empty() {
                    continue;
                }
                match s.proposer.propose(Command::Expire { keys }).await {
                    Ok(r) => self.metrics.expired_keys.inc_by(r.expired),
                    Err(e) => tracing::debug!(shard = s.id, error = ?e, "expiry proposal failed; will retry"),
                }
            }
        }
    }

    /// Keeps the WAL from growing without bound: shards whose old entries pin old
    /// segments are asked to snapshot and purge.
    pub async fn compact_wal(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for id in self.wal.pinning_shards() {
                let Some(s) = self.shard(id) else { continue };
                let applied = s.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
                if applied == 0 || s.raft.trigger().snapshot().await.is_err() {
                    continue;
                }
                // Wait (bounded) for the snapshot to cover what was applied when we asked.
                let mut rx = s.raft.metrics();
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    rx.wait_for(|m| m.snapshot.map(|l| l.index).unwrap_or(0) >= applied),
                )
                .await;
                let snap = s.raft.metrics().borrow().snapshot.map(|l| l.index).unwrap_or(0);
                if snap > 0 {
                    let _ = s.raft.trigger().purge_log(snap).await;
                }
            }
        }
    }

    /// Refreshes per-shard gauges; called when /metrics is scraped.
    pub fn refresh_metrics(&self) {
        let (bytes, segments) = self.wal.disk_usage();
        self.metrics.wal_bytes.set(bytes as i64);
        self.metrics.wal_segments.set(segments as i64);
        for s in self.shards.values() {
            let m = s.raft.metrics().borrow().clone();
            let l = s.id.to_string();
            let l = [l.as_str()];
            self.metrics.raft_term.with_label_values(&l).set(m.current_term as i64);
            self.metrics.raft_leader.with_label_values(&l).set(m.current_leader.unwrap_or(0) as i64);
            self.metrics.raft_is_leader.with_label_values(&l).set(i64::from(m.current_leader == Some(self.id)));
            self.metrics.raft_last_log_index.with_label_values(&l).set(m.last_log_index.unwrap_or(0) as i64);
            self.metrics.raft_commit_index.with_label_values(&l).set(s.log.committed_index() as i64);
            self.metrics.raft_applied_index.with_label_values(&l).set(m.last_applied.map(|x| x.index).unwrap_or(0) as i64);
            self.metrics.raft_snapshot_index.with_label_values(&l).set(m.snapshot.map(|x| x.index).unwrap_or(0) as i64);
            self.metrics.raft_purged_index.with_label_values(&l).set(m.purged.map(|x| x.index).unwrap_or(0) as i64);
            self.metrics.keys.with_label_values(&l).set(s.read().len() as i64);
        }
    }

    /// Leadership handoff on shutdown: for every shard this node leads, wait (bounded)
    /// until some follower holds every entry, so the next leader has all acknowledged
    /// writes and the election after we stop is quick and loses nothing.
    pub async fn hand_off_leadership(&self, max_wait: Duration) {
        if self.config.is_standalone() {
            return;
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        for s in self.shards.values() {
            loop {
                let m = s.raft.metrics().borrow().clone();
                if m.current_leader != Some(self.id) {
                    break;
                }
                let last = m.last_log_index;
                let caught_up = m
                    .replication
                    .as_ref()
                    .is_some_and(|r| r.iter().any(|(id, matched)| *id != self.id && matched.map(|l| l.index) == last));
                if caught_up || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Stops every Raft group, then closes the WAL after everything queued is fsynced.
    pub async fn stop(&self) {
        for s in self.shards.values() {
            if let Err(e) = s.raft.shutdown().await {
                tracing::warn!(shard = s.id, error = %e, "raft shutdown");
            }
        }
        self.wal.close();
    }
}
