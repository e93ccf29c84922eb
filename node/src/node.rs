//! The node: every hosted shard, the shared WAL, the peer client, and the background
//! work (bootstrap, TTL reaper, WAL compaction, leadership handoff on shutdown).

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::raft_net::PeerClient;
use crate::ring::{NodeId, Ring, ShardId, ShardInfo};
use crate::router::table::Router;
use crate::shard::state_machine::voter_ids;
use crate::shard::{OpenError, Shard, ShardDeps};
use crate::wal::{Wal, WalOptions};

pub mod background;
pub mod disk;
mod election;
mod hosting;
mod identity;
mod inbound;
pub mod raft_network;
pub mod reshard;
mod shard_set;
pub mod watch;

pub use disk::{DiskGuard, Fence};
pub use shard_set::ShardSet;

use hosting::{bootstrap_slice, hosted_on_disk, shard_dir, SplitRelay};

/// Errors starting a node, each naming what to fix, and the one way a running node
/// stops on its own ([`StartError::Fenced`]).
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
    #[error(
        "{source}\nThis node has no peers to copy shard {shard} from, so nothing was changed. Restore the data \
         directory from a backup; or, to serve the other shards without it (its keys would be lost), move \
         {dir}/shards/{shard} out of the way and remove {shard} from \"hosted\" in {dir}/ring.json."
    )]
    Unopenable { shard: ShardId, dir: String, source: OpenError },
    #[error("{0}")]
    Refused(String),
    /// A certificate, key or CA file that does not load.
    #[error("TLS: {0}")]
    Tls(String),
    /// Not a start error: the running node fenced itself (see [`Fence`]); the binary
    /// exits with [`disk::EXIT_FENCED`].
    #[error("fenced: {0}")]
    Fenced(String),
}

/// How long stopping one Raft group may take before the node goes on without it.
pub const RAFT_SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// How far a replica's applied index may trail its committed index and still count as
/// ready: a busy shard's apply always trails commit by the batches in flight, and a
/// readiness that flapped with them would drop the pod from its Service under load.
pub const READY_LAG: u64 = 1024;

/// This node's status as its peers see it on the internal port.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub shard_count: u32,
    /// Shards on this node that already have Raft state.
    pub initialized: Vec<ShardId>,
}

/// A running node: a few named parts, each with its own type and file, and the shared
/// services they use. What the node *does* is spread over files by concern:
/// `hosting.rs` (open, split, retire replicas), `router.rs` (serve, forward, retry),
/// `reshard.rs` (the admin operations), `background.rs` (the node's periodic work),
/// `inbound.rs` (peers' calls).
pub struct Node {
    pub config: Config,
    pub id: NodeId,
    /// The shard count the ring was bootstrapped with (fixed for the data directory).
    pub shard_count: u32,
    /// The replicas hosted here and what hosting them takes (`shard_set.rs`).
    pub shards: ShardSet,
    /// Where every shard of the ring is, hosted here or not (`router/table.rs`).
    pub router: Router,
    pub peers: PeerClient,
    pub metrics: Arc<Metrics>,
    pub wal: Wal,
    /// Woken whenever any hosted shard applies changes (watchers wait on it).
    pub changes: Arc<tokio::sync::Notify>,
    /// Cancelled when the node starts shutting down: long-lived streams (watches) end
    /// so that draining does not wait for them.
    pub stopping: CancellationToken,
    /// Free space on the data directory, and what the node refuses while it is low.
    pub disk: DiskGuard,
    /// Tripped when the WAL fails for good: the node stops serving at once.
    pub fence: Fence,
}

/// Writes `name` in `dir` atomically: temporary file, fsync, rename, fsync the directory.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

impl Node {
    /// Opens the data directory, recovers the WAL and starts every hosted shard's Raft
    /// group.
    pub async fn open(config: Config, metrics: Arc<Metrics>) -> Result<Arc<Node>, StartError> {
        let dir = config.data_dir.clone();
        let dir_err = |source| StartError::DataDir { path: dir.display().to_string(), source };
        std::fs::create_dir_all(&dir).map_err(dir_err)?;
        let mut peers_map = config.peers.clone();
        peers_map.entry(config.node_id).or_insert_with(|| config.internal_addr().to_string());
        let internal_tls = match config.internal_tls() {
            Some(files) => Some(
                crate::tls::reloading(files, crate::tls::internal_configs)
                    .map_err(|e| StartError::Tls(format!("internal port: {e}")))?,
            ),
            None => None,
        };
        let peers =
            PeerClient::new(peers_map, internal_tls).map_err(|e| StartError::Tls(format!("internal client: {e}")))?;
        let shard_count = identity::shard_count(&dir, &config, &peers).await?;
        let on_disk = hosted_on_disk(&dir, shard_count).map_err(dir_err)?;
        let mut hosted = on_disk.hosted;

        let m = metrics.clone();
        let fence = Fence::default();
        let f = fence.clone();
        let opts = WalOptions {
            segment_bytes: config.wal_segment_bytes,
            fs: crate::wal::fs::for_node(),
            on_fsync: Some(Arc::new(move |d: Duration, n: usize| {
                m.wal_fsync.observe(d.as_secs_f64());
                m.wal_batch_records.observe(n as f64);
            })),
            on_failure: Some(Arc::new(move |e: &crate::wal::Error| f.trip(format!("the WAL failed for good: {e}")))),
        };
        let (wal, mut recovered) = Wal::open(&dir.join("wal"), opts)?;
        if let Some((file, offset)) = &recovered.torn_tail {
            tracing::warn!(file = %file.display(), offset, "WAL had a torn tail (a write cut by a crash); truncated it");
        }

        let raft_config = Arc::new(
            openraft::Config {
                cluster_name: "ringkv".into(),
                heartbeat_interval: config.heartbeat.as_millis() as u64,
                election_timeout_min: config.election_timeout.as_millis() as u64,
                // openraft 0.9's leader lease is `election_timeout_max`: a leadership
                // transfer waits that long (see node/reshard.rs), so the range is kept narrow.
                election_timeout_max: config.election_timeout.as_millis() as u64 * 4 / 3,
                install_snapshot_timeout: 10_000,
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
                // Entries kept behind a snapshot so a briefly lagging follower catches up
                // from the log instead of a full snapshot.
                max_in_snapshot_log_to_keep: (config.snapshot_entries / 4).min(1_000),
                max_payload_entries: 1_000,
                // Elections are the node's (pre-vote first): see node/election.rs.
                enable_elect: false,
                ..Default::default()
            }
            .validate()
            .map_err(|e| OpenError::Raft { shard: 0, message: e.to_string() })?,
        );

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let relay = Arc::new(SplitRelay {
            bootstrapped: on_disk.bootstrapped.into(),
            hosted: Mutex::new(hosted.clone()),
            not_durable: Mutex::default(),
            retired: Mutex::new(on_disk.retired),
            retiring: Mutex::new(on_disk.retiring.clone()),
            lost: Mutex::new(on_disk.lost.clone()),
            states: Mutex::default(),
            tx,
            node_id: config.node_id,
            data_dir: dir.clone(),
            saving: tokio::sync::Mutex::new(()),
        });
        let changes = Arc::new(tokio::sync::Notify::new());
        let deps = ShardDeps {
            node_id: config.node_id,
            raft_config,
            wal: wal.clone(),
            changes: changes.clone(),
            host: relay.clone(),
            limits: Default::default(),
        };
        // Retirements a crash cut off are finished first (rules: `Node::retire`), and so
        // are those of replicas written before that order existed, recognised by a log
        // that lost committed entries with no purge to explain it.
        // (A recorded retirement has its epoch in `retired` already: `None`.)
        let mut finish: Vec<(ShardId, Option<u64>)> = on_disk.retiring.iter().map(|id| (*id, None)).collect();
        let mut shards = BTreeMap::new();
        let mut held = Vec::new();
        // Highest id first: a split's new shard (always a higher id than its parent's)
        // is open when the parent replays its log, so a merge's end replayed there finds
        // the donor's replica and its epoch (see `SplitRelay::merged`).
        let to_open: Vec<ShardId> = hosted.iter().rev().copied().filter(|id| !on_disk.retiring.contains(id)).collect();
        let net = |id| raft_network::NetworkFactory::new(id, peers.clone());
        for id in to_open {
            let slice = bootstrap_slice(id, shard_count);
            match Shard::open(id, &shard_dir(&dir, id), recovered.shards.remove(&id), slice, None, &deps, net(id)).await
            {
                Ok(shard) => {
                    if !config.is_standalone() {
                        // (see `Node::release_elections`)
                        held.push(id);
                    }
                    relay.states.lock().insert(id, shard.state.clone());
                    shards.insert(id, Arc::new(shard));
                }
                Err(OpenError::LostEntries { shard, reason, forgotten: true, epoch }) => {
                    tracing::warn!(shard, %reason, "the replica's retirement was cut off by a crash (its log was forgotten first); finishing it");
                    finish.push((shard, Some(epoch)));
                }
                // A replica that cannot be opened must not keep the node down: where
                // its group lives on elsewhere, the node starts without it and reports
                // it lost, and planners re-replicate it (see `hosting::quarantine`).
                Err(e) if config.is_standalone() => {
                    return Err(StartError::Unopenable { shard: id, dir: dir.display().to_string(), source: e });
                }
                Err(e) => {
                    recovered.shards.remove(&id);
                    hosting::quarantine(&dir, &wal, id, &e).await.map_err(dir_err)?;
                    hosted.remove(&id);
                    relay.hosted.lock().remove(&id);
                    relay.lost.lock().insert(id);
                }
            }
        }
        if !finish.is_empty() {
            // A retired replica's epoch keeps replayed splits from bringing it back; where
            // its snapshot is gone (data from before the order of `Node::retire`), no
            // split this node has seen is newer than its shards. A recorded retirement
            // keeps the epoch it recorded: a split replayed since (one that creates a new
            // shard under a merged donor's id) must still create it.
            let newest = shards.values().map(|s| s.slice().epoch).max().unwrap_or(0);
            for &(id, epoch) in &finish {
                recovered.shards.remove(&id);
                wal.write(id, vec![crate::wal::Record::Forget]).await?;
                hosting::remove_shard_dir(&dir, id).map_err(dir_err)?;
                hosted.remove(&id);
                relay.hosted.lock().remove(&id);
                relay.retiring.lock().remove(&id);
                let mut retired = relay.retired.lock();
                let e = retired.entry(id).or_insert(0);
                if let Some(epoch) = epoch {
                    *e = (*e).max(epoch).max(newest);
                }
                tracing::info!(shard = id, epoch = *e, "retirement finished on start");
            }
        }
        // Shards the WAL forgot (retired replicas) have nothing left to hand back.
        recovered.shards.retain(|_, log| *log != crate::wal::ShardLog::default());
        if !recovered.shards.is_empty() {
            tracing::info!(shards = ?recovered.shards.keys().collect::<Vec<_>>(), "WAL holds shards not hosted at start; kept for a split replayed from a parent's log");
        }
        let config_reserve = config.disk_reserve_bytes;
        let node = Arc::new(Node {
            id: config.node_id,
            shard_count,
            config,
            shards: ShardSet::new(shards, deps, relay, std::mem::take(&mut recovered.shards), rx, held),
            router: Router::new(shard_count),
            peers,
            metrics,
            wal,
            changes,
            stopping: CancellationToken::new(),
            disk: DiskGuard::new(dir.clone(), config_reserve),
            fence,
        });
        node.save_hosted().await.map_err(dir_err)?;
        node.refresh_local_routes();
        Ok(node)
    }

    /// Whether this node is known to be the only voter of `shard`'s group (then nobody
    /// else can lead it). `false` while its membership is not loaded yet.
    fn sole_voter(&self, shard: &Shard) -> bool {
        let voters = voter_ids(&shard.raft.metrics().borrow().membership_config);
        !voters.is_empty() && voters.iter().all(|v| *v == self.id)
    }

    /// How long a leader may go without a quorum's answer before it stops counting itself
    /// as leader: the longest election timeout, after which followers elect anew.
    pub fn leader_stale_after(&self) -> Duration {
        self.config.election_timeout * 2
    }

    /// What peers need to know for bootstrap.
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            node_id: self.id,
            shard_count: self.shard_count,
            initialized: self.shards.list().iter().filter(|s| !s.log.is_empty()).map(|s| s.id).collect(),
        }
    }

    /// One hosted replica as `GET /v1/cluster` and the admin API report it.
    pub fn shard_info(&self, s: &Shard) -> ShardInfo {
        let m = s.raft.metrics().borrow().clone();
        let (slice, revision, keys, frozen) = {
            let st = s.read();
            (st.slice, st.revision, st.stored() as u64, st.frozen.is_some())
        };
        let membership = m.membership_config.membership();
        let members = voter_ids(&m.membership_config);
        let learners = membership.learner_ids().collect();
        ShardInfo {
            id: s.id,
            modulus: slice.modulus,
            epoch: slice.epoch,
            members,
            learners,
            revision,
            keys,
            // A leader cut off from its quorum is not reported as one, nor a leader this
            // replica has not heard from lately.
            leader: s.leader_checked(self.id, self.leader_stale_after()),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: s.log.committed_index(),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            // Raft's role, except that a leader cut off from its quorum (which openraft
            // 0.9 keeps leading until it hears a higher term) says so: it serves nothing.
            state: if s.leads_without_quorum(&m, self.leader_stale_after()) {
                "LeaderWithoutQuorum".to_string()
            } else {
                format!("{:?}", m.state)
            },
            frozen,
        }
    }

    /// This node's view of the ring: its replicas.
    pub fn ring(&self) -> Ring {
        // A merged donor not yet retired is no longer part of the ring.
        let shards: Vec<ShardInfo> =
            self.shards.members().iter().filter(|s| self.superseded(s).is_none()).map(|s| self.shard_info(s)).collect();
        self.router.learn(&shards);
        let (epoch, shard_count) = {
            let routes = self.router.table();
            (routes.epoch(), routes.shards.len() as u32)
        };
        let lost = self.shards.lost();
        Ring { node_id: self.id, epoch, shard_count, shards, ready: self.ready().is_ok(), lost }
    }

    /// Whether every hosted shard has a leader and, where this node votes, has applied
    /// what it knows is committed (after the first time since start: up to
    /// [`READY_LAG`] entries behind).
    pub fn ready(&self) -> Result<(), String> {
        let members = self.shards.members();
        {
            // An empty replica is fine where the shard lives on elsewhere (a node that
            // joined later serves such shards by forwarding), not while the ring is
            // still bootstrapping it.
            let routes = self.router.table();
            for s in self.shards.list() {
                let known = routes.shards.get(&s.id).is_some_and(|r| !r.members.is_empty());
                if !known && !members.iter().any(|m| m.id == s.id) {
                    return Err(format!("shard {} is not bootstrapped yet", s.id));
                }
            }
            if members.is_empty() && !routes.shards.values().any(|r| !r.members.is_empty()) {
                return Err("the ring is not bootstrapped yet".into());
            }
        }
        for s in members {
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
            if s.leader_checked(self.id, self.leader_stale_after()).is_none() {
                return Err(format!("shard {} has not heard from its leader lately", s.id));
            }
            // A learner serves nothing: its catching up (a replica being added) does not
            // make the node unready. A voter must have caught up once since start; from
            // then on apply may trail commit by the batches in flight under load.
            if !m.membership_config.membership().voter_ids().any(|v| v == self.id) {
                continue;
            }
            let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
            let committed = s.log.committed_index();
            let lag = if s.caught_up.load(std::sync::atomic::Ordering::Acquire) { READY_LAG } else { 0 };
            if applied + lag < committed {
                return Err(format!("shard {} is catching up ({applied} < {committed})", s.id));
            }
            s.caught_up.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// Refreshes per-shard gauges; called when /metrics is scraped.
    pub fn refresh_metrics(&self) {
        let (bytes, segments) = self.wal.disk_usage();
        self.metrics.wal_bytes.set(bytes as i64);
        self.metrics.wal_segments.set(segments as i64);
        self.publish_disk();
        for s in self.shards.list() {
            let m = s.raft.metrics().borrow().clone();
            let l = s.id.to_string();
            let l = [l.as_str()];
            self.metrics.raft_term.with_label_values(&l).set(m.current_term as i64);
            self.metrics.raft_leader.with_label_values(&l).set(m.current_leader.unwrap_or(0) as i64);
            self.metrics.raft_is_leader.with_label_values(&l).set(i64::from(m.current_leader == Some(self.id)));
            self.metrics.raft_last_log_index.with_label_values(&l).set(m.last_log_index.unwrap_or(0) as i64);
            self.metrics.raft_commit_index.with_label_values(&l).set(s.log.committed_index() as i64);
            self.metrics
                .raft_applied_index
                .with_label_values(&l)
                .set(m.last_applied.map(|x| x.index).unwrap_or(0) as i64);
            self.metrics.raft_snapshot_index.with_label_values(&l).set(m.snapshot.map(|x| x.index).unwrap_or(0) as i64);
            self.metrics.raft_purged_index.with_label_values(&l).set(m.purged.map(|x| x.index).unwrap_or(0) as i64);
            self.metrics.keys.with_label_values(&l).set(s.read().stored() as i64);
        }
    }

    /// Leadership handoff on shutdown, for every shard this node leads at once (bounded
    /// by `max_wait`): hand leadership to the most caught-up follower (see
    /// [`Node::transfer_leader`]: with three voters, no lease to sit out); if that fails,
    /// wait until some follower holds every entry, so the next leader has all
    /// acknowledged writes and the election after we stop is quick.
    pub async fn hand_off_leadership(&self, max_wait: Duration) {
        if self.config.is_standalone() {
            return;
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        futures::future::join_all(self.shards.list().into_iter().map(|s| self.hand_off(s, deadline))).await;
    }

    async fn hand_off(&self, s: Arc<Shard>, deadline: tokio::time::Instant) {
        let m = s.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            return;
        }
        let matched = |id: &NodeId| crate::shard::matched_index(&m, *id);
        let others = m.membership_config.membership().voter_ids().filter(|v| *v != self.id);
        if let Some(target) = others.max_by_key(matched) {
            match tokio::time::timeout_at(deadline, self.transfer_leader(s.id, target)).await {
                Ok(Ok(())) => {
                    tracing::info!(shard = s.id, target, "leadership handed over");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::info!(shard = s.id, target, error = %e, "leadership transfer failed; stepping away")
                }
                Err(_) => tracing::info!(shard = s.id, target, "leadership transfer timed out; stepping away"),
            }
        }
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

    /// Stops every Raft group (together, each within [`RAFT_SHUTDOWN_BOUND`]: a group stuck
    /// on a full disk must not keep the WAL open), then closes the WAL after everything
    /// queued is fsynced.
    pub async fn stop(&self) {
        let shards = self.shards.list();
        futures::future::join_all(shards.iter().map(|s| s.shutdown(Some(RAFT_SHUTDOWN_BOUND)))).await;
        self.wal.close();
    }
}
