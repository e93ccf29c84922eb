//! Merges in the replicated state: freeze, absorb, done.

use super::*;

fn put(s: &mut KvState, id: u64, key: &str, val: &str) -> CommandResult {
    let ops = vec![Op::Put {
        db: 0,
        key: key.into(),
        value: bytes::Bytes::copy_from_slice(val.as_bytes()),
        expires_at_ms: None,
        expect: None,
    }];
    s.apply_command(Command::Txn { id, now_ms: 0, ops }, &mut Vec::new()).0
}

/// Shards 1 and 5 at modulus 8, each holding the keys it owns from `k0..k2000`.
fn siblings() -> (KvState, KvState, usize) {
    let mut r = KvState { slice: Slice { shard: 1, modulus: 8, epoch: 2 }, ..Default::default() };
    let mut d = KvState { slice: Slice { shard: 5, modulus: 8, epoch: 2 }, ..Default::default() };
    let mut n = 0;
    for i in 0..2_000u32 {
        let key = format!("k{i}");
        for s in [&mut r, &mut d] {
            if s.slice.owns(0, key.as_bytes()) {
                n += 1;
                assert!(put(s, u64::from(i) + 1, &key, &format!("v{i}")).ok);
            }
        }
    }
    // The donor's counter runs ahead of the receiver's.
    let hot = donor_key(&d);
    for _ in 0..50 {
        assert!(put(&mut d, rand::random(), &hot, "again").ok);
    }
    (r, d, n)
}

/// A key the donor owns.
fn donor_key(d: &KvState) -> String {
    (0..).map(|i| format!("k{i}")).find(|k| d.slice.owns(0, k.as_bytes())).unwrap()
}

fn absorb_all(r: &mut KvState, d: &KvState, chunk: usize) {
    let mut after = None;
    let mut applied = Some(d.applied_results());
    loop {
        let entries = d.export(after.as_ref(), chunk);
        let last = entries.is_empty();
        after = entries.last().map(|(db, k, _)| (*db, k.clone()));
        let cmd = Command::Absorb { modulus: 8, entries, applied: applied.take().unwrap_or_default() };
        let (result, effect) = r.apply_command(cmd, &mut Vec::new());
        assert!(result.ok && matches!(effect, Effect::Absorbed));
        if last {
            break;
        }
    }
}

#[test]
fn a_frozen_donor_refuses_everything_naming_its_receiver() {
    let (_, mut d, _) = siblings();
    let key = (0..).map(|i| format!("x{i}")).find(|k| d.slice.owns(0, k.as_bytes())).unwrap();
    let (r, effect) = d.apply_command(Command::Freeze { epoch: 3 }, &mut Vec::new());
    assert!(r.ok && matches!(effect, Effect::Frozen));
    let before = (d.revision, d.len());
    let r = put(&mut d, 999_999, &key, "late");
    assert_eq!(r.wrong_shard, Some(WrongShard { shard: 1, modulus: 4, epoch: 3 }));
    assert!(!r.ok);
    assert_eq!((d.revision, d.len()), before, "nothing applied");
    assert!(!d.serves(0, key.as_bytes()));
    assert!(d.split(16, 4).is_err(), "a frozen shard does not split");
    // A retry of a request applied before the freeze still gets its first answer.
    let (id, first) = d.applied_results().last().cloned().unwrap();
    assert_eq!(put(&mut d, id, &key, "retried"), first);
}

#[test]
fn a_merge_moves_every_key_keeps_revisions_and_request_ids_and_is_idempotent() {
    let (mut r, mut d, n) = siblings();
    d.apply_command(Command::Freeze { epoch: 3 }, &mut Vec::new());
    let donor_keys: Vec<(u8, Vec<u8>, KeyEntry)> = d.export(None, usize::MAX);
    let receiver_len = r.len();

    // Absorbed but not done: invisible.
    absorb_all(&mut r, &d, 300);
    let (db, key, _) = &donor_keys[0];
    assert!(!r.serves(*db, key));
    assert_eq!(r.list(0, b"k", None, 10_000, 0).len(), receiver_len, "a listing shows only owned keys");
    // A resumed merge sends every chunk again: same result.
    absorb_all(&mut r, &d, 1000);

    let done = Command::MergeDone { modulus: 4, epoch: 3, revision: d.revision };
    let (result, effect) = r.apply_command(done.clone(), &mut Vec::new());
    assert!(result.ok);
    assert!(matches!(effect, Effect::Merged { donor: 5, epoch: 3 }), "the receiver retires the donor's replicas");
    assert_eq!(r.slice, Slice { shard: 1, modulus: 4, epoch: 3 });
    assert_eq!(r.len(), n, "every key of both shards");
    for (db, key, e) in &donor_keys {
        assert_eq!(r.get(*db, key, 0).as_ref(), Some(e), "absorbed as it was, revisions included");
    }
    assert_eq!(r.revision, d.revision, "revisions go on above the donor's");
    let hot = donor_key(&d);
    let w = put(&mut r, 424_242, &hot, "after");
    assert!(w.ok && w.revision > d.revision);
    // A request the donor applied is not applied again when retried on the receiver.
    let (id, first) = d.applied_results().last().cloned().unwrap();
    let again = put(&mut r, id, &hot, "retried");
    assert_eq!(again, first);
    assert_eq!(r.get(0, hot.as_bytes(), 0).unwrap().value, &b"after"[..]);

    // Late duplicates change nothing.
    let rev = r.revision;
    let (result, effect) = r.apply_command(done, &mut Vec::new());
    assert!(result.ok, "done again: still done");
    assert!(matches!(effect, Effect::None), "and nothing to retire again");
    let stale = Command::Absorb { modulus: 8, entries: donor_keys.clone(), applied: Vec::new() };
    assert!(!r.apply_command(stale, &mut Vec::new()).0.ok);
    assert_eq!((r.revision, r.get(0, hot.as_bytes(), 0).unwrap().value), (rev, bytes::Bytes::from_static(b"after")));
}

#[test]
fn a_merge_survives_a_snapshot_taken_half_way() {
    let (mut r, mut d, n) = siblings();
    d.apply_command(Command::Freeze { epoch: 3 }, &mut Vec::new());
    let first = d.export(None, 2_000);
    r.apply_command(Command::Absorb { modulus: 8, entries: first, applied: d.applied_results() }, &mut Vec::new());
    let image = postcard::to_stdvec(&r.image()).unwrap();
    let mut restored = KvState::from_image(postcard::from_bytes(&image).unwrap(), None, StoredMembership::default());
    absorb_all(&mut restored, &d, 2_000);
    restored.apply_command(Command::MergeDone { modulus: 4, epoch: 3, revision: d.revision }, &mut Vec::new());
    assert_eq!(restored.len(), n);
    // The donor's frozen flag survives its own snapshot.
    let di = postcard::to_stdvec(&d.image()).unwrap();
    let d2 = KvState::from_image(postcard::from_bytes(&di).unwrap(), None, StoredMembership::default());
    assert_eq!(d2.frozen, Some(3));
}
