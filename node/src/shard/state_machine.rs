//! The shard state machine: an ordered map of keys with revisions and expiry, and its
//! snapshots.
//!
//! The map is an `imbl::OrdMap`, a persistent B-tree: cloning it is O(1) and shares
//! structure, so a snapshot is taken under the lock in constant time and serialised
//! outside it while writes go on. State is not persisted on apply; the snapshot file is
//! (fsynced, then renamed into place), and on start the shard rebuilds from the snapshot
//! plus the WAL's committed entries.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use imbl::OrdMap;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::types::{
    Command, CommandResult, Entry, KeyEntry, LogId, ProposalResult, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig,
};
use crate::ring::{NodeId, ShardId};

/// `(db, key)`: the map key. Ordered by db, then key bytes.
pub type MapKey = (u8, Vec<u8>);

/// The state every replica of a shard agrees on.
#[derive(Clone, Default)]
pub struct KvState {
    pub data: OrdMap<MapKey, KeyEntry>,
    /// `(expires_at_ms, db, key)` for keys with a TTL; drives the reaper.
    expiry: BTreeSet<(u64, u8, Vec<u8>)>,
    /// The shard's revision: bumped by every mutation, identical on every replica (the
    /// commands are applied in log order), and carried in snapshots.
    pub revision: u64,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

impl KvState {
    /// The live (unexpired) entry of a key.
    pub fn get(&self, db: u8, key: &[u8], now_ms: u64) -> Option<KeyEntry> {
        self.data
            .get(&(db, key.to_vec()))
            .filter(|e| !e.is_expired(now_ms))
            .cloned()
    }

    /// Live keys of `db` starting with `prefix`, after `start_after`, in key order.
    pub fn list(
        &self,
        db: u8,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Vec<(Vec<u8>, KeyEntry)> {
        let from = match start_after {
            Some(k) if k >= prefix => (db, k.to_vec()),
            _ => (db, prefix.to_vec()),
        };
        let exclusive = start_after.is_some_and(|k| k >= prefix);
        self.data
            .range(from..)
            .skip_while(|((_, k), _)| exclusive && Some(k.as_slice()) == start_after)
            .take_while(|((d, k), _)| *d == db && k.starts_with(prefix))
            .filter(|(_, e)| !e.is_expired(now_ms))
            .take(limit)
            .map(|((_, k), e)| (k.clone(), e.clone()))
            .collect()
    }

    /// Keys whose TTL passed at `now_ms`, with the revision the reaper must match.
    pub fn expired(&self, now_ms: u64, max: usize) -> Vec<(u8, Vec<u8>, u64)> {
        self.expiry
            .iter()
            .take_while(|(t, _, _)| *t <= now_ms)
            .take(max)
            .filter_map(|(_, db, key)| {
                let e = self.data.get(&(*db, key.clone()))?;
                Some((*db, key.clone(), e.mod_revision))
            })
            .collect()
    }

    /// Number of stored keys, expired-but-not-yet-reaped included.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn remove(&mut self, db: u8, key: &[u8]) -> Option<KeyEntry> {
        let old = self.data.remove(&(db, key.to_vec()))?;
        if let Some(t) = old.expires_at_ms {
            self.expiry.remove(&(t, db, key.to_vec()));
        }
        Some(old)
    }

    /// Applies one command. Deterministic: depends only on the command and the state,
    /// never on the local clock. Each mutation takes the next revision; a command that
    /// changes nothing (deleting an absent key) reports the current one.
    pub fn apply_command(&mut self, cmd: Command) -> CommandResult {
        match cmd {
            Command::Put { db, key, value, expires_at_ms, now_ms } => {
                self.revision += 1;
                let revision = self.revision;
                let map_key = (db, key);
                // One lookup, then one in-place replace (not remove + insert).
                let (create_revision, version) = match self.data.get(&map_key) {
                    Some(p) => {
                        if let Some(t) = p.expires_at_ms {
                            self.expiry.remove(&(t, db, map_key.1.clone()));
                        }
                        if p.is_expired(now_ms) { (revision, 1) } else { (p.create_revision, p.version + 1) }
                    }
                    None => (revision, 1),
                };
                if let Some(t) = expires_at_ms {
                    self.expiry.insert((t, db, map_key.1.clone()));
                }
                let entry = KeyEntry { value, create_revision, mod_revision: revision, version, expires_at_ms };
                self.data.insert(map_key, entry);
                CommandResult { revision, deleted: 0 }
            }
            Command::Delete { db, key, now_ms } => {
                let deleted = self.remove(db, &key).filter(|e| !e.is_expired(now_ms)).is_some();
                self.revision += u64::from(deleted);
                CommandResult { revision: self.revision, deleted: u64::from(deleted) }
            }
            Command::Expire { keys } => {
                let mut deleted = 0;
                for (db, key, mod_revision) in keys {
                    if self.data.get(&(db, key.clone())).is_some_and(|e| e.mod_revision == mod_revision) {
                        self.remove(db, &key);
                        self.revision += 1;
                        deleted += 1;
                    }
                }
                CommandResult { revision: self.revision, deleted }
            }
        }
    }

    fn from_snapshot(meta: &SnapshotMeta, body: SnapshotBody) -> Self {
        let mut s = KvState {
            revision: body.revision,
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            ..Default::default()
        };
        for (db, key, e) in body.entries {
            if let Some(t) = e.expires_at_ms {
                s.expiry.insert((t, db, key.clone()));
            }
            s.data.insert((db, key), e);
        }
        s
    }
}

/// The snapshot payload sent between replicas (the meta travels beside it).
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    revision: u64,
    entries: Vec<(u8, Vec<u8>, KeyEntry)>,
}

/// On-disk snapshot file: `MAGIC | meta_len u32 LE | meta (postcard) | body | crc32 u32 LE`,
/// the CRC covering everything before it. Written to a temporary name, fsynced, renamed.
const SNAP_MAGIC: &[u8; 8] = b"RKVSNAP1";
const SNAP_FILE: &str = "snapshot.bin";

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn write_snapshot_file(dir: &Path, meta: &SnapshotMeta, body: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta_bytes = postcard::to_stdvec(meta).map_err(io_err)?;
    let mut buf = Vec::with_capacity(SNAP_MAGIC.len() + 8 + meta_bytes.len() + body.len());
    buf.extend_from_slice(SNAP_MAGIC);
    buf.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(&meta_bytes);
    buf.extend_from_slice(body);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("snapshot.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?; // durable before it replaces the previous snapshot
    }
    std::fs::rename(&tmp, dir.join(SNAP_FILE))?;
    std::fs::File::open(dir)?.sync_all() // the rename itself is durable
}

/// Reads the snapshot file, if any. A damaged file is an error, never silently ignored:
/// the log before it may already be purged.
fn read_snapshot_file(dir: &Path) -> std::io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let path = dir.join(SNAP_FILE);
    let buf = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |why: &str| io_err(format!("snapshot {} is corrupt: {why}", path.display()));
    if buf.len() < SNAP_MAGIC.len() + 8 || &buf[..8] != SNAP_MAGIC {
        return Err(bad("bad header"));
    }
    let (content, crc) = buf.split_at(buf.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(content) != crc {
        return Err(bad("checksum mismatch"));
    }
    let meta_len = u32::from_le_bytes([content[8], content[9], content[10], content[11]]) as usize;
    let meta_end = 12usize.checked_add(meta_len).filter(|e| *e <= content.len()).ok_or_else(|| bad("bad meta length"))?;
    let meta: SnapshotMeta = postcard::from_bytes(&content[12..meta_end]).map_err(|_| bad("bad meta"))?;
    Ok(Some((meta, content[meta_end..].to_vec())))
}

/// The shard's state machine as openraft drives it, plus a shared read handle.
pub struct StateMachineStore {
    shard: ShardId,
    dir: PathBuf,
    state: Arc<RwLock<KvState>>,
    snapshot_seq: u64,
}

impl StateMachineStore {
    /// Opens the shard's state machine, restoring the last snapshot in `dir`.
    pub fn open(shard: ShardId, dir: PathBuf) -> std::io::Result<Self> {
        let mut state = KvState::default();
        if let Some((meta, body)) = read_snapshot_file(&dir)? {
            let body: SnapshotBody = postcard::from_bytes(&body).map_err(io_err)?;
            state = KvState::from_snapshot(&meta, body);
        }
        Ok(Self { shard, dir, state: Arc::new(RwLock::new(state)), snapshot_seq: 0 })
    }

    /// A handle for reads outside Raft (API reads, the TTL reaper, metrics).
    pub fn state(&self) -> Arc<RwLock<KvState>> {
        self.state.clone()
    }
}

fn read_state(state: &RwLock<KvState>) -> std::sync::RwLockReadGuard<'_, KvState> {
    state.read().unwrap_or_else(|p| p.into_inner())
}

fn write_state(state: &RwLock<KvState>) -> std::sync::RwLockWriteGuard<'_, KvState> {
    state.write().unwrap_or_else(|p| p.into_inner())
}

/// Builds a snapshot from an O(1) clone of the map.
pub struct SnapshotBuilder {
    shard: ShardId,
    dir: PathBuf,
    state: Arc<RwLock<KvState>>,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let view = read_state(&self.state).clone(); // O(1): shares structure
        let dir = self.dir.clone();
        let shard = self.shard;
        let seq = self.seq;
        let built = tokio::task::spawn_blocking(move || -> std::io::Result<(SnapshotMeta, Vec<u8>)> {
            let body = SnapshotBody {
                revision: view.revision,
                entries: view.data.iter().map(|((db, k), e)| (*db, k.clone(), e.clone())).collect(),
            };
            let body = postcard::to_stdvec(&body).map_err(io_err)?;
            let snapshot_id = match view.last_applied {
                Some(l) => format!("{}-{}-{}-{seq}", shard, l.leader_id.term, l.index),
                None => format!("{shard}-0-0-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: view.last_applied,
                last_membership: view.membership.clone(),
                snapshot_id,
            };
            write_snapshot_file(&dir, &meta, &body)?;
            Ok((meta, body))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &io_err(e)))?
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let (meta, body) = built;
        tracing::info!(shard, last = ?meta.last_log_id, bytes = body.len(), "snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(body)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = read_state(&self.state);
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let mut s = write_state(&self.state);
        for entry in entries {
            s.last_applied = Some(entry.log_id);
            let r = match entry.payload {
                EntryPayload::Blank => ProposalResult::default(),
                EntryPayload::Normal(p) => {
                    ProposalResult { results: p.commands.into_iter().map(|c| s.apply_command(c)).collect() }
                }
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m);
                    ProposalResult::default()
                }
            };
            results.push(r);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder { shard: self.shard, dir: self.dir.clone(), state: self.state.clone(), seq: self.snapshot_seq }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let body: SnapshotBody = postcard::from_bytes(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io_err(e)))?;
        let dir = self.dir.clone();
        let meta2 = meta.clone();
        let bytes2 = bytes.clone();
        tokio::task::spawn_blocking(move || write_snapshot_file(&dir, &meta2, &bytes2))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &io_err(e)))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        *write_state(&self.state) = KvState::from_snapshot(meta, body);
        tracing::info!(shard = self.shard, last = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.dir.clone();
        let read = tokio::task::spawn_blocking(move || read_snapshot_file(&dir))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &io_err(e)))?
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(read.map(|(meta, body)| Snapshot { meta, snapshot: Box::new(Cursor::new(body)) }))
    }
}

/// Node ids of a membership's voters, sorted.
pub fn voter_ids(m: &StoredMembership) -> Vec<NodeId> {
    m.membership().voter_ids().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::types::Command;

    fn put(s: &mut KvState, _rev: u64, key: &str, val: &str, expires: Option<u64>, now: u64) {
        s.apply_command(Command::Put { db: 0, key: key.into(), value: val.into(), expires_at_ms: expires, now_ms: now });
    }

    #[test]
    fn revisions_track_create_mod_and_version() {
        let mut s = KvState::default();
        put(&mut s, 0, "other", "x", None, 0); // revision 1
        put(&mut s, 0, "k", "a", None, 0); // 2
        put(&mut s, 0, "k", "b", None, 0); // 3
        let e = s.get(0, b"k", 0).unwrap();
        assert_eq!((e.create_revision, e.mod_revision, e.version, e.value.as_slice()), (2, 3, 2, &b"b"[..]));
        let r = s.apply_command(Command::Delete { db: 0, key: b"k".to_vec(), now_ms: 0 });
        assert_eq!((r.deleted, r.revision), (1, 4));
        let r = s.apply_command(Command::Delete { db: 0, key: b"k".to_vec(), now_ms: 0 });
        assert_eq!((r.deleted, r.revision), (0, 4), "a delete that deletes nothing takes no revision");
        put(&mut s, 0, "k", "c", None, 0);
        let e = s.get(0, b"k", 0).unwrap();
        assert_eq!((e.create_revision, e.mod_revision, e.version), (5, 5, 1), "a re-created key starts over");
    }

    #[test]
    fn expired_keys_are_hidden_then_reaped_unless_rewritten() {
        let mut s = KvState::default();
        put(&mut s, 1, "gone", "x", Some(1_000), 0);
        put(&mut s, 2, "kept", "y", Some(1_000), 0);
        assert!(s.get(0, b"gone", 999).is_some());
        assert!(s.get(0, b"gone", 1_000).is_none(), "never returned once expired");
        assert!(s.list(0, b"", None, 10, 1_000).is_empty());
        let expired = s.expired(1_000, 10);
        assert_eq!(expired.len(), 2);
        // "kept" is rewritten before the reaper's proposal applies: the reaper must not delete it.
        put(&mut s, 3, "kept", "z", None, 1_001);
        let r = s.apply_command(Command::Expire { keys: expired });
        assert_eq!(r.deleted, 1);
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(0, b"kept", u64::MAX).unwrap().value, b"z");
        assert!(s.expired(u64::MAX, 10).is_empty(), "expiry index follows the rewrite");
    }

    #[test]
    fn list_is_ordered_prefix_bounded_and_resumable() {
        let mut s = KvState::default();
        for (i, k) in ["a/1", "a/2", "a/3", "b/1", "a"].iter().enumerate() {
            put(&mut s, i as u64 + 1, k, "v", None, 0);
        }
        s.apply_command(Command::Put { db: 1, key: b"a/9".to_vec(), value: b"v".to_vec(), expires_at_ms: None, now_ms: 0 });
        let keys = |v: Vec<(Vec<u8>, KeyEntry)>| v.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect::<Vec<_>>();
        assert_eq!(keys(s.list(0, b"a/", None, 10, 0)), ["a/1", "a/2", "a/3"]);
        assert_eq!(keys(s.list(0, b"a/", Some(b"a/1"), 10, 0)), ["a/2", "a/3"]);
        assert_eq!(keys(s.list(0, b"a/", None, 2, 0)), ["a/1", "a/2"]);
        assert_eq!(keys(s.list(0, b"", None, 10, 0)), ["a", "a/1", "a/2", "a/3", "b/1"]);
        assert_eq!(keys(s.list(1, b"", None, 10, 0)), ["a/9"]);
    }

    #[tokio::test]
    async fn snapshot_round_trips_through_disk_and_install() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open(0, dir.path().join("a")).unwrap();
        {
            let st = sm.state();
            let mut s = st.write().unwrap();
            put(&mut s, 1, "k1", "v1", None, 0);
            put(&mut s, 2, "k2", "v2", Some(u64::MAX), 0);
            s.last_applied = Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 2));
        }
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));

        // Reopen from disk: the same state comes back.
        let reopened = StateMachineStore::open(0, dir.path().join("a")).unwrap();
        assert_eq!(reopened.state().read().unwrap().get(0, b"k2", 0).unwrap().value, b"v2");

        // Install on a fresh replica: same state, and the file is persisted there too.
        let mut other = StateMachineStore::open(0, dir.path().join("b")).unwrap();
        let data = snap.snapshot.into_inner();
        other.install_snapshot(&snap.meta, Box::new(Cursor::new(data))).await.unwrap();
        let got = other.state().read().unwrap().data.clone();
        assert_eq!(got, sm.state().read().unwrap().data);
        assert_eq!(other.state().read().unwrap().revision, 2, "the revision counter travels with the snapshot");
        assert!(other.get_current_snapshot().await.unwrap().is_some());
        assert_eq!(other.state().read().unwrap().expired(u64::MAX - 1, 10).len(), 0);
    }

    #[test]
    fn corrupt_snapshot_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta::default();
        write_snapshot_file(dir.path(), &meta, b"body").unwrap();
        let path = dir.path().join(SNAP_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = read_snapshot_file(dir.path()).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
