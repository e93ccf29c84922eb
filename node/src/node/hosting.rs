//! Which shards this node hosts and where the others are: the persisted hosted set
//! (`ring.json`), replicas opened by splits or for a leader to fill, replicas retired
//! after removal, and the route table every request is located with.

use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{write_durably, Node, StartError};
use crate::ring::{NodeId, Route, ShardId, ShardInfo};
use crate::shard::kv::{KvState, Slice};
use crate::shard::state_machine::{HostFuture, SplitHost};
use crate::shard::Shard;

/// Which shards this node hosts, persisted in `ring.json` so that a restart reopens
/// exactly them (shards created by splits included).
#[derive(Serialize, Deserialize, Default, Debug)]
pub(super) struct HostedFile {
    pub(super) hosted: BTreeSet<ShardId>,
    /// Shards whose replica this node retired, with the ring epoch of the slice it had
    /// then. Replaying a split from a parent's log (a replica added again, a restart)
    /// must not bring back a child as old as that: its group went on without this node.
    #[serde(default)]
    pub(super) retired: BTreeMap<ShardId, u64>,
    /// Replicas whose retirement began and may not have ended (see [`Node::retire`]):
    /// a restart finishes it before anything else.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(super) retiring: BTreeSet<ShardId>,
    /// Replicas that could not be opened and were quarantined (see [`quarantine`]),
    /// until this node hosts a fresh replica of the shard.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(super) lost: BTreeSet<ShardId>,
    /// Set once this node has bootstrapped the ring (or found it bootstrapped): a
    /// restart never bootstraps again, whatever replicas it holds by then.
    #[serde(default)]
    pub(super) bootstrapped: bool,
}

/// A change of the ring a shard's state machine reports to its node.
pub(super) enum RingChange {
    /// A split of `parent` created `child` here, durable, with this state (or a
    /// snapshot skipped that split: no state, the child's leader sends one).
    Created { parent: ShardId, child: ShardId, state: Option<Box<KvState>> },
    /// The first snapshot of `shard`, created here by a split, is durable: `ring.json`
    /// may list it.
    Durable { shard: ShardId },
    /// `receiver` finished absorbing `donor`: the donor's replica here can go (if it
    /// is still the one the merge absorbed: see [`Node::superseded`]).
    Merged { receiver: ShardId, donor: ShardId },
    /// The retirement of this replica (a merged donor) is recorded in `ring.json`:
    /// finish it (see [`Node::finish_retire`]).
    Retire { shard: ShardId },
}

/// The split and merge hook the state machines call: remembers new shards and hands
/// changes to the node's task that opens and retires replicas.
pub(super) struct SplitRelay {
    pub(super) bootstrapped: std::sync::atomic::AtomicBool,
    pub(super) hosted: Mutex<BTreeSet<ShardId>>,
    /// Split children open here whose first snapshot is not durable yet: left out of
    /// `ring.json`, so a crash before it is durable has the parent's log replay the split.
    pub(super) not_durable: Mutex<BTreeSet<ShardId>>,
    pub(super) retired: Mutex<BTreeMap<ShardId, u64>>,
    /// Retirements under way: recorded before the replica's data goes (see [`Node::retire`]).
    pub(super) retiring: Mutex<BTreeSet<ShardId>>,
    /// Replicas lost here (see [`quarantine`]).
    pub(super) lost: Mutex<BTreeSet<ShardId>>,
    /// The applied state of every replica opened here, for the epoch of its slice.
    pub(super) states: Mutex<BTreeMap<ShardId, Arc<RwLock<KvState>>>>,
    pub(super) tx: tokio::sync::mpsc::UnboundedSender<RingChange>,
    pub(super) node_id: NodeId,
    pub(super) data_dir: PathBuf,
    /// One `ring.json` write at a time.
    pub(super) saving: tokio::sync::Mutex<()>,
}

impl SplitRelay {
    /// Writes `ring.json` from the current sets, durably.
    pub(super) async fn save(&self) -> std::io::Result<()> {
        let _g = self.saving.lock().await;
        let not_durable = self.not_durable.lock().clone();
        let hosted = self.hosted.lock().iter().copied().filter(|id| !not_durable.contains(id)).collect();
        let retired = self.retired.lock().clone();
        let retiring = self.retiring.lock().clone();
        let lost = self.lost.lock().clone();
        let bootstrapped = self.bootstrapped.load(std::sync::atomic::Ordering::Acquire);
        let file = HostedFile { hosted, retired, retiring, lost, bootstrapped };
        let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || write_durably(&dir, "ring.json", &bytes))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Remembers that this node's replica of `id`, as of ring `epoch`, is gone.
    pub(super) fn note_retired(&self, id: ShardId, epoch: u64) {
        let mut retired = self.retired.lock();
        let e = retired.entry(id).or_insert(epoch);
        *e = (*e).max(epoch);
    }

    /// The ring epoch of the slice of this node's replica of `id`, if it is open: 0 for
    /// an empty one (added to its group, waiting for its leader's snapshot).
    fn applied_epoch(&self, id: ShardId) -> Option<u64> {
        let state = self.states.lock().get(&id).cloned()?;
        let st = state.read();
        Some(if st.last_applied.is_some() { st.slice.epoch } else { 0 })
    }
}

impl SplitHost for SplitRelay {
    fn should_create(&self, shard: ShardId, epoch: u64) -> bool {
        let hosted = self.hosted.lock().contains(&shard);
        let retired = self.retired.lock().get(&shard).is_some_and(|e| *e >= epoch);
        !hosted && !retired
    }

    fn created(&self, parent: ShardId, shard: ShardId, state: KvState) {
        self.hosted.lock().insert(shard);
        self.not_durable.lock().insert(shard);
        let _ = self.tx.send(RingChange::Created { parent, child: shard, state: Some(Box::new(state)) });
    }

    fn missed(&self, parent: ShardId, shard: ShardId) {
        let _ = self.tx.send(RingChange::Created { parent, child: shard, state: None });
    }

    /// Step 1 of the donor's retirement (see [`Node::retire`]) happens here, in the
    /// receiver's apply, when the replica here is older than the merge: the receiver's
    /// next entries may be a split that creates a new shard under the donor's id, and
    /// it must find the old replica out of `hosted` (else it creates nothing here and
    /// the old replica would go on under the new shard's id). The node's task finishes
    /// the retirement before it opens that new shard, and the new shard's first
    /// snapshot waits for it too (the directory is the same). A replica of that id as
    /// new as the merge or newer (created again since: a receiver replaying its log)
    /// stays. An empty replica (added just before the merge, never filled) goes too: its
    /// group is gone, and nobody would ever fill or retire it.
    fn merged(&self, receiver: ShardId, donor: ShardId, epoch: u64) -> HostFuture<'_> {
        Box::pin(async move {
            let old = self.applied_epoch(donor).filter(|e| *e < epoch && self.hosts(donor));
            let Some(old) = old else {
                let _ = self.tx.send(RingChange::Merged { receiver, donor });
                return;
            };
            self.hosted.lock().remove(&donor);
            self.retiring.lock().insert(donor);
            self.note_retired(donor, old);
            match self.save().await {
                Ok(()) => crate::crash_point!("retire-recorded"),
                // Not durable: a crash replays the merge's end from the receiver's log.
                Err(e) => {
                    tracing::error!(shard = donor, error = %e, "could not record a merged donor's retirement in ring.json")
                }
            }
            let _ = self.tx.send(RingChange::Retire { shard: donor });
        })
    }

    fn retiring(&self, shard: ShardId) -> bool {
        self.retiring.lock().contains(&shard)
    }

    fn durable(&self, shard: ShardId) {
        self.not_durable.lock().remove(&shard);
        let _ = self.tx.send(RingChange::Durable { shard });
    }

    fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn hosts(&self, shard: ShardId) -> bool {
        self.hosted.lock().contains(&shard)
    }
}

/// The shards to open on start: those `ring.json` lists (all bootstrap shards on a fresh
/// directory), plus any shard directory holding a snapshot (a split's new shard whose
/// creation was cut off before `ring.json` was rewritten).
pub(super) fn hosted_on_disk(dir: &Path, bootstrap_shards: u32) -> std::io::Result<HostedFile> {
    let mut file = match std::fs::read(dir.join("ring.json")) {
        Ok(bytes) => serde_json::from_slice::<HostedFile>(&bytes).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            HostedFile { hosted: (0..bootstrap_shards).collect(), ..Default::default() }
        }
        Err(e) => return Err(e),
    };
    let hosted = &mut file.hosted;
    if let Ok(entries) = std::fs::read_dir(dir.join("shards")) {
        for e in entries.flatten() {
            let id = e.file_name().to_str().and_then(|n| n.parse::<ShardId>().ok());
            // A split's first snapshot that never became durable is not to be trusted;
            // the parent's log replays the split.
            let _ = std::fs::remove_file(e.path().join(crate::shard::state_machine::INITIAL_TMP));
            // A retiring replica's leftover directory is not a new shard.
            let retiring = |id: &ShardId| file.retiring.contains(id);
            if let Some(id) = id.filter(|id| !retiring(id) && e.path().join("snapshot.bin").exists()) {
                hosted.insert(id);
            }
        }
    }
    Ok(file)
}

/// Whether `log` can be a split's new shard's own: its log starts right after the
/// first snapshot (index 0, which openraft may purge at once), so nothing past index 0
/// is purged and any entries start at index 1. (Before, a purge of index 0 made the
/// node drop such a log, and a restarted follower lost entries it had acknowledged.)
pub(super) fn is_new_shard_log(log: &crate::wal::ShardLog) -> bool {
    log.purged.as_ref().is_none_or(|(upto, _)| *upto == 0) && log.entries.keys().next().is_none_or(|first| *first == 1)
}

/// Where shard `id` keeps its snapshot.
pub(super) fn shard_dir(data_dir: &Path, id: ShardId) -> PathBuf {
    data_dir.join("shards").join(id.to_string())
}

/// What a bootstrap shard owns before its first snapshot: `hash mod S == id` at epoch 1.
/// Any other shard starts owning nothing; its first snapshot (a split's or a leader's)
/// says what it owns.
pub(super) fn bootstrap_slice(id: ShardId, shard_count: u32) -> Slice {
    if id < shard_count {
        Slice { shard: id, modulus: shard_count, epoch: 1 }
    } else {
        Slice { shard: id, modulus: 0, epoch: 0 }
    }
}

/// Elects this replica as the first leader of a shard a split just created. The other
/// replicas may not have applied the split yet (their vote requests fail until they
/// have), so it tries again briefly until some leader exists.
async fn campaign(shard: Arc<Shard>, me: NodeId, stop: CancellationToken) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline && !stop.is_cancelled() {
        if shard.leader().is_some() {
            return;
        }
        if let Err(e) = shard.raft.trigger().elect().await {
            tracing::debug!(shard = shard.id, error = %e, "campaign");
            return;
        }
        let mut rx = shard.raft.metrics();
        let _ = tokio::time::timeout(Duration::from_millis(150), rx.wait_for(|m| m.current_leader.is_some())).await;
    }
    tracing::debug!(shard = shard.id, me, leader = ?shard.leader(), "campaign over");
}

impl Node {
    /// Takes a shard's refusal into the routes.
    pub fn learn_refusal(&self, ws: crate::shard::types::WrongShard) {
        self.router.learn_refusal(ws);
        self.refresh_local_routes();
    }

    /// Updates the routes from the hosted replicas' own state (authoritative for them).
    pub fn refresh_local_routes(&self) {
        let infos: Vec<ShardInfo> = self.shards.list().iter().map(|s| self.shard_info(s)).collect();
        self.router.learn(&infos);
    }

    pub(super) async fn save_hosted(&self) -> std::io::Result<()> {
        self.shards.relay.save().await
    }

    /// Opens a shard's replica on this node (idempotent): a split's new shard (its first
    /// snapshot is on disk) or an empty replica that a leader is about to fill (add
    /// replica). Returns the replica.
    pub async fn host_shard(&self, id: ShardId) -> Result<Arc<Shard>, StartError> {
        self.host_shard_with(id, None).await
    }

    /// [`Node::host_shard`], starting from `initial` (a split's new shard, whose first
    /// snapshot holding exactly this state is durable) instead of reading the snapshot.
    async fn host_shard_with(&self, id: ShardId, initial: Option<Box<KvState>>) -> Result<Arc<Shard>, StartError> {
        if let Some(s) = self.shards.get(id) {
            return Ok(s);
        }
        let guard = self.shards.lock.lock().await;
        if let Some(s) = self.shards.get(id) {
            return Ok(s);
        }
        // A replica lost here comes back only as a fresh one, once its group no longer
        // counts this node as a voter: an empty replica voting would break Raft.
        let lost = self.shards.relay.lost.lock().contains(&id);
        if lost {
            if self.router.route(id).is_none_or(|r| r.members.contains(&self.id)) {
                return Err(StartError::Refused(format!(
                    "shard {id}'s replica on node {} was lost; its group must remove this node before it hosts a new one",
                    self.id
                )));
            }
            self.shards.relay.lost.lock().remove(&id);
        }
        // A bootstrap shard's log may be replayed from its first entry, so the empty
        // replica starts from the bootstrap slice; any other shard's log begins after a
        // snapshot, which this replica receives first and which says what it owns.
        let slice = bootstrap_slice(id, self.shard_count);
        let dir = shard_dir(&self.config.data_dir, id);
        // A shard the WAL has Raft state of but that was not hosted at start (a split's new
        // shard that voted or took entries before its first snapshot was durable) gets it
        // back: what it acknowledged must not be forgotten. Its commit index is left for
        // the leader to tell again (it need not be durable).
        let placeholder = initial.is_none();
        let recovered = self.shards.unclaimed.lock().remove(&id);
        let recovered = recovered.filter(|l| initial.is_some() && is_new_shard_log(l));
        let recovered = recovered.map(|l| crate::wal::ShardLog { committed: None, ..l });
        let net = super::raft_network::NetworkFactory::new(id, self.peers.clone());
        let shard =
            Arc::new(Shard::open(id, &dir, recovered, slice, initial.map(|b| *b), &self.shards.deps, net).await?);
        self.shards.insert(shard.clone());
        self.shards.relay.hosted.lock().insert(id);
        self.shards.relay.states.lock().insert(id, shard.state.clone());
        drop(guard);
        self.save_hosted()
            .await
            .map_err(|source| StartError::DataDir { path: self.config.data_dir.display().to_string(), source })?;
        if placeholder {
            crate::crash_point!("replica-hosted");
        }
        self.refresh_local_routes();
        tracing::info!(shard = id, "replica opened");
        Ok(shard)
    }

    /// Opens the shards that splits create, as their parents' state machines report
    /// them, and retires the donors of finished merges. Where this node leads a split's
    /// parent it also starts the new group's first election, so the new shard is led by
    /// the same node and is writable within milliseconds instead of an election timeout.
    pub async fn open_split_shards(self: Arc<Self>, stop: CancellationToken) {
        let Some(mut rx) = self.shards.changes.lock().take() else { return };
        loop {
            let change = tokio::select! {
                _ = stop.cancelled() => return,
                next = rx.recv() => match next { Some(x) => x, None => return },
            };
            let (parent, child, state) = match change {
                RingChange::Created { parent, child, state } => (parent, child, state),
                RingChange::Merged { receiver, donor } => {
                    self.retire_merged(receiver, donor).await;
                    continue;
                }
                RingChange::Retire { shard } => {
                    let old = self.shards.remove(shard);
                    match self.finish_retire(shard, old).await {
                        Ok(()) => tracing::info!(donor = shard, "merge: donor replica retired"),
                        Err(e) => {
                            tracing::warn!(donor = shard, error = %e, "could not retire a merged donor's replica")
                        }
                    }
                    self.changes.notify_waiters();
                    continue;
                }
                RingChange::Durable { shard } => {
                    match self.save_hosted().await {
                        Ok(()) => crate::crash_point!("split-recorded"),
                        Err(e) => tracing::error!(shard, error = %e, "could not record a new shard in ring.json"),
                    }
                    continue;
                }
            };
            let shard = match self.host_shard_with(child, state).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(shard = child, error = %e, "could not open the shard a split created");
                    continue;
                }
            };
            self.changes.notify_waiters();
            let leads_parent = self.shards.get(parent).is_some_and(|p| p.leader() == Some(self.id));
            if leads_parent {
                tokio::spawn(campaign(shard, self.id, self.stopping.clone()));
            }
        }
    }

    /// Retires this node's replica of a merge's donor once the receiver here owns its
    /// slice (see [`Node::superseded`]).
    pub(super) async fn retire_merged(&self, receiver: ShardId, donor: ShardId) {
        let Some(d) = self.shards.get(donor) else { return };
        if self.superseded(&d) != Some(receiver) {
            return;
        }
        match self.retire(donor).await {
            Ok(()) => tracing::info!(receiver, donor, "merge: donor replica retired"),
            Err(e) => tracing::warn!(donor, error = %e, "could not retire a merged donor's replica"),
        }
        self.changes.notify_waiters();
    }

    /// The hosted shard that absorbed `d` in a merge, if any: one whose slice covers
    /// `d`'s and is newer (a higher epoch). A shard of the same id that a later split
    /// created again is newer than the merge and stays; so does anything while a
    /// replica replays its log (its slice is older then, not newer).
    pub(crate) fn superseded(&self, d: &Shard) -> Option<ShardId> {
        let ds = d.slice();
        let absorbed_by = |id: ShardId, m: u32| {
            self.shards.get(id).is_some_and(|r| {
                let rs = r.slice();
                rs.modulus == m && rs.epoch > ds.epoch && r.read().last_applied.is_some()
            })
        };
        crate::ring::coarser_slices(d.id, ds.modulus).find(|(id, m)| absorbed_by(*id, *m)).map(|(id, _)| id)
    }

    /// Whether a merge's receiver, as its own replicas (here or on peers) report it, owns
    /// `d`'s slice from a later epoch than `d`'s: `d`'s group was absorbed (its replica
    /// here missed that, and may never hear from a leader again). A route the router only
    /// inferred from a frozen donor's refusal does not count: the receiver may not have
    /// absorbed anything yet, and the donor's replicas hold the only copy of its keys.
    pub(super) fn merged_away(&self, d: &Shard) -> bool {
        let slice = d.slice();
        let route = Route { modulus: slice.modulus, epoch: slice.epoch, ..Route::default() };
        slice.modulus > 1 && self.router.absorbed(d.id, &route)
    }

    /// Stops and deletes this node's replica of `id` (a merge's donor this node's
    /// receiver absorbed, or a replica its group removed: neither is needed here again).
    ///
    /// The steps, each durable before the next, and what a restart after a crash
    /// between them does (`Node::open` keeps these rules):
    /// 1. `ring.json`: the shard leaves `hosted`, enters `retired` (with its epoch, so a
    ///    replayed split never brings this incarnation back) and `retiring`. A restart
    ///    from here on finishes the retirement and opens nothing of it, whatever its
    ///    directory and WAL still hold.
    /// 2. Raft stopped; the WAL forgets the replica (one `Forget` record, fsynced).
    /// 3. Its snapshot directory removed.
    /// 4. `ring.json`: the shard leaves `retiring`.
    ///
    /// Data written before this order existed (the WAL forgot first, `ring.json` came
    /// last) can hold a hosted replica whose log lost committed entries with no purge
    /// to explain it: a restart finishes that retirement too (see `Node::open`).
    pub(crate) async fn retire(&self, id: ShardId) -> std::io::Result<()> {
        let Some(s) = self.shards.remove(id) else { return Ok(()) };
        self.shards.relay.hosted.lock().remove(&id);
        self.shards.relay.retiring.lock().insert(id);
        self.shards.relay.note_retired(id, s.slice().epoch);
        self.save_hosted().await?;
        crate::crash_point!("retire-recorded");
        self.finish_retire(id, Some(s)).await
    }

    /// The replica that takes Raft messages for `shard`: none while a replica of it is
    /// being retired (a merged donor's old replica must not take the messages of a new
    /// group a split created under the same id meanwhile).
    pub fn raft_replica(&self, shard: ShardId) -> Option<Arc<Shard>> {
        if self.shards.relay.retiring(shard) {
            return None;
        }
        self.shards.get(shard)
    }

    /// Steps 2 to 4 of [`Node::retire`], once step 1 is durable, for replica `s` of
    /// `id` (taken out of the hosted replicas; none if it was never opened).
    pub(super) async fn finish_retire(&self, id: ShardId, s: Option<Arc<Shard>>) -> std::io::Result<()> {
        self.shards.relay.states.lock().remove(&id);
        match s {
            Some(s) => {
                s.shutdown(None).await; // its log writes stop waiting for space first
                s.log.forget().await?;
            }
            None => self.wal.write(id, vec![crate::wal::Record::Forget]).await.map_err(std::io::Error::other)?,
        }
        crate::crash_point!("retire-forgotten");
        remove_shard_dir(&self.config.data_dir, id)?;
        crate::crash_point!("retire-removed");
        self.shards.relay.retiring.lock().remove(&id);
        self.save_hosted().await?;
        // The routes here learn at once what replaced it (a merge's receiver hosted here).
        self.refresh_local_routes();
        tracing::info!(shard = id, "replica removed from this node");
        Ok(())
    }
}

/// Sets aside a replica that cannot be opened (`error` says why), so the node can start
/// without it: its snapshot directory moves to `quarantine/` (kept for a person to look
/// at) and the WAL forgets its Raft state. That is safe because the replica stops
/// taking part at once: this node answers nothing for the shard, so it casts no vote and
/// acknowledges no entry, until its group has removed it and added a fresh replica
/// (planners do that when the node reports the shard lost). Its keys are not lost where
/// the rest of its group holds a majority; a planner waits otherwise.
pub(super) async fn quarantine(
    data_dir: &Path,
    wal: &crate::wal::Wal,
    id: ShardId,
    error: &crate::shard::OpenError,
) -> std::io::Result<()> {
    let dir = shard_dir(data_dir, id);
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let aside = data_dir.join("quarantine").join(format!("{id}-{stamp}"));
    if dir.exists() {
        std::fs::create_dir_all(data_dir.join("quarantine"))?;
        std::fs::rename(&dir, &aside)?;
        std::fs::write(aside.join("why.txt"), format!("{error}\n"))?;
        std::fs::File::open(data_dir.join("shards"))?.sync_all()?;
    }
    wal.write(id, vec![crate::wal::Record::Forget]).await.map_err(std::io::Error::other)?;
    tracing::error!(
        shard = id,
        %error,
        quarantined = %aside.display(),
        "replica cannot be opened: starting without it; it is reported lost so that its group replaces it"
    );
    Ok(())
}

/// Removes shard `id`'s snapshot directory (durably: the parent is synced).
pub(super) fn remove_shard_dir(data_dir: &Path, id: ShardId) -> std::io::Result<()> {
    let dir = shard_dir(data_dir, id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent().map(std::fs::File::open) {
        Some(Ok(parent)) => parent.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::is_new_shard_log;
    use crate::wal::ShardLog;

    #[test]
    fn a_new_shard_keeps_its_log_when_its_origin_was_purged() {
        let mut log = ShardLog { vote: Some(vec![1]), ..ShardLog::default() };
        assert!(is_new_shard_log(&log), "a vote alone is kept");
        log.entries.insert(1, vec![]);
        log.entries.insert(2, vec![]);
        assert!(is_new_shard_log(&log));
        log.purged = Some((0, vec![]));
        assert!(is_new_shard_log(&log), "openraft purges the origin (index 0) of a new shard at once");
        log.purged = Some((1, vec![]));
        log.entries.remove(&1);
        assert!(!is_new_shard_log(&log), "purged past the origin: a snapshot of its own exists");
        let mut old = ShardLog::default();
        old.entries.insert(7, vec![]);
        assert!(!is_new_shard_log(&old), "entries not from index 1 belong to something else");
    }
}
