//! The replicated state's rules: transactions, revisions, expiry, splits.

use super::*;

fn put(s: &mut KvState, key: &str, val: &str, expires: Option<u64>, now: u64) -> CommandResult {
    txn(
        s,
        rand_id(),
        now,
        vec![Op::Put {
            db: 0,
            key: key.into(),
            value: bytes::Bytes::copy_from_slice(val.as_bytes()),
            expires_at_ms: expires,
            expect: None,
        }],
    )
}

fn txn(s: &mut KvState, id: u64, now: u64, ops: Vec<Op>) -> CommandResult {
    s.apply_command(Command::Txn { id, now_ms: now, ops }, &mut Vec::new()).0
}

fn rand_id() -> u64 {
    rand::random()
}

fn del(key: &str, expect: Option<u64>) -> Op {
    Op::Delete { db: 0, key: key.into(), expect }
}

#[test]
fn a_split_moves_exactly_the_new_shards_keys_and_carries_revisions_and_request_ids() {
    let mut s = KvState { slice: Slice { shard: 1, modulus: 4, epoch: 1 }, ..Default::default() };
    let mut owned = Vec::new();
    for i in 0..2_000u32 {
        let key = format!("k{i}");
        if s.slice.owns(0, key.as_bytes()) {
            owned.push(key);
        }
    }
    for (n, k) in owned.iter().enumerate() {
        txn(
            &mut s,
            n as u64 + 1,
            0,
            vec![Op::Put {
                db: 0,
                key: k.clone().into_bytes(),
                value: bytes::Bytes::from(b"v".to_vec()),
                expires_at_ms: Some(u64::MAX),
                expect: None,
            }],
        );
    }
    let before = s.revision;
    let child = s.split(8, 2).unwrap().expect("a new shard");
    assert_eq!(child.slice, Slice { shard: 5, modulus: 8, epoch: 2 });
    assert_eq!(s.slice, Slice { shard: 1, modulus: 8, epoch: 2 });
    assert_eq!(s.len() + child.len(), owned.len(), "no key lost or duplicated");
    for k in &owned {
        let h = key_hash(0, k.as_bytes()) % 8;
        let (here, there) = (s.get(0, k.as_bytes(), 0).is_some(), child.get(0, k.as_bytes(), 0).is_some());
        assert_eq!((here, there), (h == 1, h == 5), "{k}");
    }
    // Roughly half moved (measured, not assumed).
    assert!(child.len() * 3 > owned.len() && child.len() * 3 < owned.len() * 2, "{} of {}", child.len(), owned.len());
    assert_eq!(child.revision, before, "the new shard's revisions go on from the old one's");
    // The TTL index moved with the keys.
    assert_eq!(child.expired(u64::MAX, usize::MAX).len(), child.len());
    assert_eq!(s.expired(u64::MAX, usize::MAX).len(), s.len());
    // A request applied before the split and retried on the new shard applies once.
    let mut child = child;
    let moved_key = owned.iter().position(|k| key_hash(0, k.as_bytes()) % 8 == 5).unwrap();
    let retry = txn(
        &mut child,
        moved_key as u64 + 1,
        0,
        vec![Op::Put {
            db: 0,
            key: owned[moved_key].clone().into_bytes(),
            value: bytes::Bytes::from(b"again".to_vec()),
            expires_at_ms: None,
            expect: None,
        }],
    );
    assert_eq!(retry.revision, moved_key as u64 + 1, "the first answer, not a new write");
    // The old shard refuses the moved keys, whole transactions at a time.
    let r = txn(
        &mut s,
        99_999,
        0,
        vec![Op::Put {
            db: 0,
            key: owned[moved_key].clone().into_bytes(),
            value: bytes::Bytes::from(b"x".to_vec()),
            expires_at_ms: None,
            expect: None,
        }],
    );
    assert_eq!(r.wrong_shard, Some(WrongShard { shard: 1, modulus: 8, epoch: 2 }));
    assert!(!r.ok && s.revision == before);
    // A repeated split is a no-op; a jump of two levels is refused.
    assert!(s.split(8, 2).unwrap().is_none());
    assert!(s.split(32, 3).is_err());
}

#[test]
fn a_split_command_returns_the_new_shard_as_its_effect_and_a_refused_one_is_not_ok() {
    let mut s = KvState { slice: Slice { shard: 1, modulus: 4, epoch: 1 }, ..Default::default() };
    put(&mut s, "k", "v", None, 0);
    let split =
        |s: &mut KvState, modulus: u32, epoch: u64| s.apply_command(Command::Split { modulus, epoch }, &mut Vec::new());
    let (r, effect) = split(&mut s, 8, 2);
    assert!(r.ok && r.revision == s.revision);
    let Effect::Split(child) = effect else { panic!("a new shard") };
    assert_eq!(child.slice, Slice { shard: 5, modulus: 8, epoch: 2 });
    let (r, effect) = split(&mut s, 8, 2);
    assert!(r.ok && matches!(effect, Effect::None), "a repeated split is done, with nothing to create");
    let (r, effect) = split(&mut s, 32, 3);
    assert!(!r.ok && matches!(effect, Effect::SplitRefused(_)), "a jump of two levels");
    assert_eq!(s.slice, Slice { shard: 1, modulus: 8, epoch: 2 });
}

/// Runs a sweep the way the state machine's background pass does, in small batches.
fn sweep(s: &mut KvState) -> usize {
    let mut dropped = 0;
    while let Some((mark, view)) = s.stale_view() {
        let mut after = None;
        loop {
            let (stale, next) = view.stale_keys(after.as_ref(), 7);
            assert!(s.drop_stale(mark, &stale));
            dropped += stale.len();
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        s.stale_dropped(mark);
    }
    dropped
}

#[test]
fn a_split_shares_the_map_and_a_sweep_drops_the_other_shards_keys_unseen() {
    let mut s = KvState { slice: Slice { shard: 0, modulus: 1, epoch: 1 }, ..Default::default() };
    for i in 0..500u64 {
        let ttl = (i % 3 == 0).then_some(10);
        txn(
            &mut s,
            i + 1,
            0,
            vec![Op::Put {
                db: 0,
                key: format!("k{i:03}").into_bytes(),
                value: bytes::Bytes::from(b"v".to_vec()),
                expires_at_ms: ttl,
                expect: None,
            }],
        );
    }
    let mut child = s.split(2, 2).unwrap().expect("a new shard");
    // Both hold the whole map, yet each shows only its own keys, everywhere.
    assert_eq!(s.data.len(), 500);
    assert_eq!(child.data.len(), 500);
    let (mine, theirs) = (s.len(), child.len());
    assert_eq!(mine + theirs, 500);
    for (st, n) in [(&s, mine), (&child, theirs)] {
        assert_eq!(st.list(0, b"", None, usize::MAX, 0).len(), n);
        assert_eq!(st.image().entries.len(), n);
        assert_eq!(st.export(None, usize::MAX).len(), n);
        assert!(st.expired(u64::MAX, usize::MAX).iter().all(|(db, k, _)| st.slice.owns(*db, k)));
        let hidden = (0..500u64).map(|i| format!("k{i:03}")).filter(|k| !st.slice.owns(0, k.as_bytes())).count();
        assert_eq!(hidden, 500 - n);
        assert!((0..500u64).all(|i| {
            let k = format!("k{i:03}");
            st.get(0, k.as_bytes(), 0).is_some() == st.slice.owns(0, k.as_bytes())
        }));
    }
    // A write during the sweep lands; the sweep drops exactly the other shard's keys.
    let own = (0..500u64).map(|i| format!("k{i:03}")).find(|k| s.slice.owns(0, k.as_bytes())).unwrap();
    txn(
        &mut s,
        10_001,
        0,
        vec![Op::Put {
            db: 0,
            key: own.clone().into_bytes(),
            value: bytes::Bytes::from(b"new".to_vec()),
            expires_at_ms: None,
            expect: None,
        }],
    );
    assert_eq!(sweep(&mut s), 500 - mine);
    assert_eq!(sweep(&mut child), 500 - theirs);
    assert_eq!((s.data.len(), child.data.len()), (mine, theirs));
    assert_eq!(s.get(0, own.as_bytes(), 0).unwrap().value, &b"new"[..]);
    assert!(s.stale_view().is_none() && child.stale_view().is_none());
    // A newer split invalidates a running sweep's batches; a merge's absorb drops
    // the leftovers at once, so absorbed keys never meet stale copies.
    let grandchild = s.split(4, 3).unwrap().unwrap();
    let (mark, view) = s.stale_view().unwrap();
    let (stale, _) = view.stale_keys(None, usize::MAX);
    let _ = s.split(8, 4).unwrap().unwrap();
    assert!(!s.drop_stale(mark, &stale), "a sweep of an older split starts over");
    let mut r = s.clone();
    let mut grandchild = grandchild;
    let gone = grandchild.export(None, usize::MAX)[0].1.clone();
    txn(&mut grandchild, 20_001, 0, vec![del(std::str::from_utf8(&gone).unwrap(), None)]);
    let donor_entries = grandchild.export(None, usize::MAX);
    r.slice = Slice { shard: 0, modulus: 4, epoch: 3 };
    r.stale = Some(3);
    let n = donor_entries.len();
    r.apply_command(Command::Absorb { modulus: 4, entries: donor_entries, applied: vec![] }, &mut Vec::new());
    assert!(r.stale_view().is_none(), "absorb dropped the leftovers first");
    let own = r.data.keys().filter(|(db, k)| r.slice.owns(*db, k)).count();
    assert_eq!(r.data.len(), own + n, "only the slice's keys and the absorbed ones remain");
    assert!(n > 0 && own > 0);
    r.apply_command(Command::MergeDone { modulus: 2, epoch: 5, revision: grandchild.revision }, &mut Vec::new());
    assert_eq!(r.get(0, &gone, 0), None, "a key the donor deleted does not come back from a stale copy");
}

#[test]
fn revisions_track_create_mod_and_version() {
    let mut s = KvState::default();
    put(&mut s, "other", "x", None, 0); // revision 1
    put(&mut s, "k", "a", None, 0); // 2
    put(&mut s, "k", "b", None, 0); // 3
    let e = s.get(0, b"k", 0).unwrap();
    assert_eq!((e.create_revision, e.mod_revision, e.version, &e.value[..]), (2, 3, 2, &b"b"[..]));
    let r = txn(&mut s, 1, 0, vec![del("k", None)]);
    assert_eq!((r.ops[0].clone(), r.revision), (OpResult::Delete { deleted: true }, 4));
    let r = txn(&mut s, 2, 0, vec![del("k", None)]);
    assert_eq!((r.ops[0].clone(), r.revision), (OpResult::Delete { deleted: false }, 4), "a no-op takes no revision");
    put(&mut s, "k", "c", None, 0);
    let e = s.get(0, b"k", 0).unwrap();
    assert_eq!((e.create_revision, e.mod_revision, e.version), (5, 5, 1), "a re-created key starts over");
}

#[test]
fn compare_and_swap_applies_only_on_the_expected_revision() {
    let mut s = KvState::default();
    let absent = |v: &str| Op::Put {
        db: 0,
        key: b"c".to_vec(),
        value: bytes::Bytes::copy_from_slice(v.as_bytes()),
        expires_at_ms: None,
        expect: Some(0),
    };
    assert!(txn(&mut s, 1, 0, vec![absent("1")]).ok, "0 means only if absent");
    let r = txn(&mut s, 2, 0, vec![absent("2")]);
    assert_eq!((r.ok, r.ops[0].clone()), (false, OpResult::Conflict { current: 1 }));
    let swap = |v: &str, at| Op::Put {
        db: 0,
        key: b"c".to_vec(),
        value: bytes::Bytes::copy_from_slice(v.as_bytes()),
        expires_at_ms: None,
        expect: Some(at),
    };
    assert!(txn(&mut s, 3, 0, vec![swap("2", 1)]).ok);
    assert!(!txn(&mut s, 4, 0, vec![swap("3", 1)]).ok, "a stale revision loses");
    assert_eq!(s.get(0, b"c", 0).unwrap().value, &b"2"[..]);
    assert!(!txn(&mut s, 5, 0, vec![del("c", Some(1))]).ok);
    assert!(txn(&mut s, 6, 0, vec![del("c", Some(2))]).ok);
    assert!(s.get(0, b"c", 0).is_none());
}

#[test]
fn a_failed_precondition_applies_nothing_of_the_transaction() {
    let mut s = KvState::default();
    put(&mut s, "a", "1", None, 0);
    let before = s.revision;
    let ops = vec![
        Op::Put {
            db: 0,
            key: b"b".to_vec(),
            value: bytes::Bytes::from(b"x".to_vec()),
            expires_at_ms: None,
            expect: None,
        },
        del("a", Some(99)),
    ];
    let r = txn(&mut s, 7, 0, ops);
    assert!(!r.ok);
    assert_eq!(r.ops, vec![OpResult::Skipped, OpResult::Conflict { current: 1 }]);
    assert!(s.get(0, b"b", 0).is_none(), "nothing half-applied");
    assert_eq!(s.revision, before);
}

#[test]
fn gets_in_a_transaction_see_its_earlier_writes() {
    let mut s = KvState::default();
    let ops = vec![
        Op::Put {
            db: 0,
            key: b"k".to_vec(),
            value: bytes::Bytes::from(b"v".to_vec()),
            expires_at_ms: None,
            expect: Some(0),
        },
        Op::Get { db: 0, key: b"k".to_vec() },
    ];
    let r = txn(&mut s, 9, 0, ops);
    match &r.ops[1] {
        OpResult::Get(Some(e)) => assert_eq!(e.value, &b"v"[..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_retried_request_id_applies_once() {
    let mut s = KvState::default();
    let op = || {
        vec![Op::Put {
            db: 0,
            key: b"k".to_vec(),
            value: bytes::Bytes::from(b"v".to_vec()),
            expires_at_ms: None,
            expect: Some(0),
        }]
    };
    let first = txn(&mut s, 42, 0, op());
    let retry = txn(&mut s, 42, 0, op());
    assert!(first.ok);
    assert_eq!(first, retry, "the retry gets the first answer, not a conflict");
    assert_eq!(s.revision, 1);
    // The table survives a snapshot image.
    let restored = KvState::from_image(s.image(), None, Default::default());
    let mut restored = restored;
    assert_eq!(txn(&mut restored, 42, 0, op()), first);
}

#[test]
fn expired_keys_are_hidden_then_reaped_unless_rewritten() {
    let mut s = KvState::default();
    put(&mut s, "gone", "x", Some(1_000), 0);
    put(&mut s, "kept", "y", Some(1_000), 0);
    assert!(s.get(0, b"gone", 999).is_some());
    assert!(s.get(0, b"gone", 1_000).is_none(), "never returned once expired");
    assert!(s.list(0, b"", None, 10, 1_000).is_empty());
    let expired = s.expired(1_000, 10);
    assert_eq!(expired.len(), 2);
    // "kept" is rewritten before the reaper's proposal applies: the reaper must not delete it.
    put(&mut s, "kept", "z", None, 1_001);
    let mut events = Vec::new();
    let (r, _) = s.apply_command(Command::Expire { keys: expired }, &mut events);
    assert_eq!(r.expired, 1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Expire);
    assert_eq!(s.len(), 1);
    assert_eq!(s.get(0, b"kept", u64::MAX).unwrap().value, &b"z"[..]);
    assert!(s.expired(u64::MAX, 10).is_empty(), "expiry index follows the rewrite");
}

#[test]
fn list_is_ordered_prefix_bounded_and_resumable() {
    let mut s = KvState::default();
    for k in ["a/1", "a/2", "a/3", "b/1", "a"] {
        put(&mut s, k, "v", None, 0);
    }
    txn(
        &mut s,
        5,
        0,
        vec![Op::Put {
            db: 1,
            key: b"a/9".to_vec(),
            value: bytes::Bytes::from(b"v".to_vec()),
            expires_at_ms: None,
            expect: None,
        }],
    );
    let keys =
        |v: Vec<(Vec<u8>, KeyEntry)>| v.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect::<Vec<_>>();
    assert_eq!(keys(s.list(0, b"a/", None, 10, 0)), ["a/1", "a/2", "a/3"]);
    assert_eq!(keys(s.list(0, b"a/", Some(b"a/1"), 10, 0)), ["a/2", "a/3"]);
    assert_eq!(keys(s.list(0, b"a/", None, 2, 0)), ["a/1", "a/2"]);
    assert_eq!(keys(s.list(0, b"", None, 10, 0)), ["a", "a/1", "a/2", "a/3", "b/1"]);
    assert_eq!(keys(s.list(1, b"", None, 10, 0)), ["a/9"]);
}

#[test]
fn every_mutation_emits_one_event_in_revision_order() {
    let mut s = KvState::default();
    let mut events = Vec::new();
    let ops = vec![
        Op::Put {
            db: 0,
            key: b"a".to_vec(),
            value: bytes::Bytes::from(b"1".to_vec()),
            expires_at_ms: None,
            expect: None,
        },
        Op::Put {
            db: 0,
            key: b"a".to_vec(),
            value: bytes::Bytes::from(b"2".to_vec()),
            expires_at_ms: None,
            expect: None,
        },
        del("a", None),
        del("a", None),
        Op::Get { db: 0, key: b"a".to_vec() },
    ];
    s.apply_command(Command::Txn { id: 1, now_ms: 0, ops }, &mut events);
    let got: Vec<(u64, EventKind)> = events.iter().map(|e| (e.revision, e.kind)).collect();
    assert_eq!(got, vec![(1, EventKind::Put), (2, EventKind::Put), (3, EventKind::Delete)]);
    assert_eq!(events[1].value.as_deref(), Some(&b"2"[..]));
}

#[test]
fn rewriting_a_key_moves_its_expiry_and_an_expired_key_starts_a_new_life() {
    let mut s = KvState::default();
    put(&mut s, "k", "a", Some(1_000), 0);
    put(&mut s, "k", "b", Some(5_000), 10); // new deadline: only the new one is indexed
    assert!(s.expired(1_000, 10).is_empty(), "the old deadline left the index");
    assert_eq!(s.expired(5_000, 10).len(), 1);
    put(&mut s, "k", "c", Some(5_000), 20); // same deadline: still indexed once
    assert_eq!(s.expired(u64::MAX, 10).len(), 1);
    let live = s.get(0, b"k", 30).expect("live");
    assert_eq!((live.version, live.create_revision, live.mod_revision), (3, 1, 3));
    // Rewritten after it expired (not reaped yet): a new key, version 1.
    put(&mut s, "k", "d", None, 6_000);
    let e = s.get(0, b"k", 6_000).expect("rewritten");
    assert_eq!((e.version, e.create_revision, e.mod_revision), (1, 4, 4));
    assert!(s.expired(u64::MAX, 10).is_empty(), "no deadline left");
}

#[tokio::test]
async fn a_lazy_snapshot_body_reads_back_as_the_encoded_state() {
    use std::io::SeekFrom;

    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    use crate::shard::snapshot_body::SnapshotBody;

    let state = KvState::default();
    let want = postcard::to_stdvec(&state.image()).unwrap();
    let mut body = SnapshotBody::lazy(state.clone());
    let mut got = Vec::new();
    body.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, want);
    body.seek(SeekFrom::Start(0)).await.unwrap();
    let image: KvImage = postcard::from_bytes(&SnapshotBody::lazy(state).into_bytes().unwrap()).unwrap();
    assert_eq!(image.revision, 0);
}
