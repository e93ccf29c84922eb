//! The state machine through openraft's storage API: snapshots to disk and installed.

use super::*;
use crate::shard::types::{Command, Op};

fn put(s: &mut KvState, id: u64, key: &str, val: &str, expires: Option<u64>, now: u64) {
    let ops = vec![Op::Put {
        db: 0,
        key: key.into(),
        value: bytes::Bytes::copy_from_slice(val.as_bytes()),
        expires_at_ms: expires,
        expect: None,
    }];
    s.apply_command(Command::Txn { id, now_ms: now, ops }, &mut Vec::new());
}

/// Shard 0's state machine in `dir`, on a node that never splits.
fn open(dir: PathBuf) -> std::io::Result<StateMachineStore> {
    StateMachineStore::open(0, dir, Arc::default(), Slice::default(), Arc::new(NoSplits), Arc::default())
}

#[tokio::test]
async fn snapshot_round_trips_through_disk_and_install() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path().join("a")).unwrap();
    {
        let st = sm.state();
        let mut s = st.write();
        put(&mut s, 1, "k1", "v1", None, 0);
        put(&mut s, 2, "k2", "v2", Some(u64::MAX), 0);
        s.last_applied = Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 2));
    }
    let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));

    // Reopen from disk: the same state comes back.
    let reopened = open(dir.path().join("a")).unwrap();
    assert_eq!(reopened.state().read().get(0, b"k2", 0).unwrap().value, &b"v2"[..]);

    // Install on a fresh replica: same state, and the file is persisted there too.
    let mut other = open(dir.path().join("b")).unwrap();
    let data = snap.snapshot.into_bytes().unwrap();
    other.install_snapshot(&snap.meta, Box::new(SnapshotBody::bytes(data))).await.unwrap();
    let got = other.state().read().data.clone();
    assert_eq!(got, sm.state().read().data);
    assert_eq!(other.state().read().revision, 2, "the revision counter travels with the snapshot");
    assert!(other.get_current_snapshot().await.unwrap().is_some());
    assert_eq!(other.events().current(), 2, "watch history restarts at the snapshot");
    assert_eq!(other.state().read().expired(u64::MAX - 1, 10).len(), 0);
}

#[test]
fn a_corrupt_snapshot_file_fails_the_open_instead_of_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot_file(dir.path(), &SnapshotMeta::default(), b"body").unwrap();
    let path = dir.path().join(crate::shard::snapshot_file::SNAP_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = open(dir.path().into()).err().expect("a damaged snapshot is refused");
    assert!(err.to_string().contains("corrupt"), "{err}");
}
