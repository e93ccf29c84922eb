//! The node's background work, one task each, all stopped by one token: bootstrap of
//! a new ring, the release of held elections after a restart, the TTL reaper, WAL
//! compaction, route refresh, the retirement of removed replicas and the disk guard
//! (`disk.rs`). (The task that
//! opens and retires replicas as splits and merges apply is the shard set's:
//! `Node::open_split_shards` in `hosting.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Node, NodeStatus};
use crate::ring::{NodeId, Ring, ShardId};
use crate::shard::types::{now_ms, Command};

/// The largest gap between route refreshes from peers.
const ROUTE_REFRESH: Duration = Duration::from_secs(1);

/// Starts every background task of `node` on `tracker`; they end when `stop` is
/// cancelled.
pub fn spawn(node: &Arc<Node>, tracker: &TaskTracker, stop: &CancellationToken) {
    tracker.spawn(node.clone().bootstrap(stop.clone()));
    let grace = node.config.election_timeout * 5;
    tracker.spawn(node.clone().release_elections(grace, stop.clone()));
    tracker.spawn(node.clone().reap_expired(stop.clone()));
    tracker.spawn(node.clone().compact_wal(stop.clone()));
    tracker.spawn(node.clone().open_split_shards(stop.clone()));
    tracker.spawn(node.clone().refresh_routes(stop.clone()));
    tracker.spawn(node.clone().retire_removed_replicas(stop.clone()));
    tracker.spawn(node.clone().run_elections(stop.clone()));
    tracker.spawn(node.clone().watch_disk(stop.clone()));
}

impl Node {
    /// Lets the replicas opened from disk campaign again: each as soon as it has heard
    /// from its shard's leader, all of them after `grace`. A restarted node that does not
    /// hear from the leader within an election timeout (on Kubernetes a new pod has a new
    /// address, which the leader's connections and DNS learn only after a while) would
    /// otherwise campaign at a higher term, and the healthy leader would step down when it
    /// saw that term: every write stalled ~2.4 s at each pod of a rolling update. The
    /// pre-vote (`election.rs`) now keeps such a node from raising the term while the group
    /// is healthy; holding it back as well keeps a restarted node, whose log may still be
    /// catching up, from winning an election the others would grant. The price: after a
    /// restart of every node at once, the first election waits `grace`.
    pub async fn release_elections(self: Arc<Self>, grace: Duration, stop: CancellationToken) {
        let until = tokio::time::Instant::now() + grace;
        loop {
            let expired = tokio::time::Instant::now() >= until;
            let done = {
                let mut held = self.shards.held_elections.lock();
                held.retain(|id| match self.shards.get(*id) {
                    Some(s)
                        if !expired
                            && !s.heard_from_leader.load(std::sync::atomic::Ordering::Acquire)
                            && !self.sole_voter(&s) =>
                    {
                        true
                    }
                    Some(_) => false,
                    None => false,
                });
                held.is_empty()
            };
            if done {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Brings up every shard that has no Raft state anywhere. Only the lowest-id member
    /// does this, only once every member answers and none has state for the shard, and
    /// only once per data directory (remembered in `ring.json`), so a wiped or restarted
    /// node never re-initialises a live group, even one whose replicas all moved to
    /// nodes that joined later.
    pub async fn bootstrap(self: Arc<Self>, stop: CancellationToken) {
        use std::sync::atomic::Ordering;
        if self.shards.relay.bootstrapped.load(Ordering::Acquire) {
            return;
        }
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
                Ok(true) => {
                    self.shards.relay.bootstrapped.store(true, Ordering::Release);
                    if let Err(e) = self.save_hosted().await {
                        tracing::warn!(error = %e, "could not record the bootstrap in ring.json");
                    }
                    return;
                }
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
                self.peers
                    .get_json::<NodeStatus>(id, "/internal/status", Duration::from_secs(1))
                    .await
                    .map_err(|e| e.to_string())?
            };
            if st.node_id != id || st.shard_count != self.shard_count {
                return Err(format!(
                    "peer {id} reports node {} with {} shards; expected node {id} with {}",
                    st.node_id, st.shard_count, self.shard_count
                ));
            }
            initialized.extend(st.initialized);
        }
        for s in self.shards.list().iter().filter(|s| s.id < self.shard_count) {
            if initialized.contains(&s.id) {
                continue;
            }
            match s.raft.initialize(members.clone()).await {
                Ok(()) => {
                    tracing::info!(shard = s.id, members = ?members.keys().collect::<Vec<_>>(), "shard bootstrapped")
                }
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
            for s in self.shards.list() {
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
            // Snapshots rewrite whole shards: take them only once the WAL has grown as
            // large as the data they would rewrite, so compaction costs at most about as
            // many bytes as the writes did (not a rewrite of every shard per segment).
            let (wal_bytes, _) = self.wal.disk_usage();
            let data: u64 =
                self.shards.list().iter().map(|s| s.snapshot_bytes.load(std::sync::atomic::Ordering::Relaxed)).sum();
            if wal_bytes < data {
                continue;
            }
            for id in self.wal.pinning_shards() {
                let Some(s) = self.shards.get(id) else { continue };
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

    /// Keeps the routes fresh: the hosted replicas' own state, the shards peers host, and
    /// the peers' internal addresses as the shards' memberships name them.
    pub async fn refresh_routes(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(ROUTE_REFRESH);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.refresh_local_routes();
            for s in self.shards.members() {
                let m = s.raft.metrics().borrow().membership_config.clone();
                for (id, n) in m.membership().nodes() {
                    if self.peers.addr(*id).is_none() && !n.addr.is_empty() {
                        self.peers.learn(*id, n.addr.clone());
                    }
                }
            }
            for peer in self.peers.ids().into_iter().filter(|p| *p != self.id) {
                match self
                    .peers
                    .get_json::<Ring>(peer, ringkv_api::admin::routes::RING, Duration::from_millis(500))
                    .await
                {
                    Ok(r) => self.router.learn(&r.shards),
                    Err(e) => tracing::debug!(peer, error = %e, "ring refresh"),
                }
            }
        }
    }

    /// Closes and deletes replicas whose shard no longer counts this node as a member
    /// (removed by a membership change). Seen twice in a row, so a replica that is
    /// still catching up on its own membership is left alone.
    pub async fn retire_removed_replicas(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut suspects: BTreeSet<ShardId> = BTreeSet::new();
        let mut leaderless: BTreeSet<ShardId> = BTreeSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Donors of merges this node missed the end of (down at the time, or the
            // merge arrived in a snapshot).
            for d in self.shards.list() {
                if let Some(r) = self.superseded(&d) {
                    self.retire_merged(r, d.id).await;
                }
            }
            let mut now_suspect = BTreeSet::new();
            for s in self.shards.members() {
                let m = s.raft.metrics().borrow().membership_config.clone();
                let membership = m.membership();
                let member = membership.nodes().any(|(id, _)| *id == self.id);
                if !member && membership.get_joint_config().len() == 1 {
                    now_suspect.insert(s.id);
                }
            }
            for id in now_suspect.intersection(&suspects) {
                if let Err(e) = self.retire(*id).await {
                    tracing::warn!(shard = id, error = %e, "could not retire a removed replica");
                }
            }
            suspects = now_suspect;
            // A replica removed while it lagged never sees the membership without it: it
            // campaigns for ever, and keeps the node unready. Nor does the leader's
            // `/retire` reach it when that leader dies right after the removal. So a
            // replica leaderless for two rounds asks the shard's leader itself. (Such a
            // replica no longer campaigns, its pre-votes refused: it still names its old
            // leader, whom it has not heard from since.)
            let stale_after = self.leader_stale_after();
            let now_leaderless: BTreeSet<ShardId> = self
                .shards
                .members()
                .iter()
                .filter(|s| s.leader_checked(self.id, stale_after).is_none())
                .map(|s| s.id)
                .collect();
            for id in now_leaderless.intersection(&leaderless) {
                // Its group may be gone altogether: removed from it while down, then
                // the shard merged away. No leader will answer for it again, but the
                // ring its peers report says so.
                if let Some(d) = self.shards.get(*id).filter(|d| self.merged_away(d)) {
                    match self.retire(d.id).await {
                        Ok(()) => {
                            tracing::info!(shard = id, "retired a leaderless replica of a shard the ring merged away")
                        }
                        Err(e) => {
                            tracing::warn!(shard = id, error = %e, "could not retire a replica of a shard merged away")
                        }
                    }
                    continue;
                }
                match self.retire_if_removed(*id).await {
                    Ok(true) => {
                        tracing::info!(shard = id, "retired a replica its group had removed while it was behind")
                    }
                    Ok(false) => {}
                    Err(e) => tracing::debug!(shard = id, error = %e, "leaderless replica: still a member"),
                }
            }
            leaderless = now_leaderless;
        }
    }
}
