//! The checker against known histories, random linearizable ones, planted stale reads
//! and a brute-force oracle.

use super::*;
use crate::linearizability::History;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn rec(op: Op, outcome: Outcome, invoked_ns: u64, completed_ns: Option<u64>) -> Record {
    Record { key: "k".to_string(), op, invoked_ns, completed_ns, outcome }
}

fn put(value: &str, start: u64, end: u64) -> Record {
    rec(Op::Put { value: value.to_string() }, Outcome::Put, start, Some(end))
}

fn put_unknown(value: &str, start: u64) -> Record {
    rec(Op::Put { value: value.to_string() }, Outcome::Unknown, start, None)
}

fn get(value: Option<&str>, start: u64, end: u64) -> Record {
    rec(Op::Get, Outcome::Got(value.map(str::to_string)), start, Some(end))
}

fn delete(live: bool, start: u64, end: u64) -> Record {
    rec(Op::Delete, Outcome::Deleted(live), start, Some(end))
}

fn cas(expect: Option<&str>, value: &str, applied: bool, start: u64, end: u64) -> Record {
    let op = Op::CasPut { expect: expect.map(str::to_string), value: value.to_string() };
    rec(op, Outcome::Cas(applied), start, Some(end))
}

fn assert_not_linearizable(records: &[Record]) -> Violation {
    let v = check(records).expect_err("history should not be linearizable");
    assert!(v.message.starts_with("not linearizable"), "unexpected failure: {v}");
    v
}

#[test]
fn a_sequential_history_passes() {
    let h = [
        get(None, 0, 1),
        put("a", 2, 3),
        get(Some("a"), 4, 5),
        cas(Some("a"), "b", true, 6, 7),
        delete(true, 8, 9),
        delete(false, 10, 11),
        get(None, 12, 13),
    ];
    let stats = check(&h).expect("linearizable");
    assert_eq!(stats, CheckStats { keys: 1, ops: 7, unknown: 0 });
}

#[test]
fn a_read_overlapping_a_put_may_see_either_value() {
    for seen in ["a", "b"] {
        let h = [put("a", 0, 10), put("b", 20, 40), get(Some(seen), 30, 50)];
        check(&h).expect("linearizable");
    }
}

#[test]
fn a_read_after_an_acknowledged_put_cannot_see_the_older_value() {
    let h = [put("a", 0, 10), put("b", 20, 30), get(Some("a"), 40, 50)];
    let v = assert_not_linearizable(&h);
    assert!(v.message.contains("record #2 get -> \"a\""), "{v}");
}

#[test]
fn a_read_of_a_value_never_written_fails() {
    assert_not_linearizable(&[put("a", 0, 10), get(Some("z"), 5, 15)]);
}

#[test]
fn an_acknowledged_write_cannot_be_lost() {
    assert_not_linearizable(&[put("a", 0, 10), get(None, 20, 30)]);
    // Concurrent readers agree on one order: once one saw "b", a later one can't see "a".
    let h = [put("a", 0, 10), put("b", 20, 100), get(Some("b"), 30, 40), get(Some("a"), 50, 60)];
    assert_not_linearizable(&h);
}

#[test]
fn a_write_with_unknown_outcome_may_apply_late_or_never() {
    let late = [put("a", 0, 10), put_unknown("b", 20), get(Some("a"), 30, 40), get(Some("b"), 500, 600)];
    let stats = check(&late).expect("the unknown put applied after the first read");
    assert_eq!(stats.unknown, 1);
    check(&[put("a", 0, 10), put_unknown("b", 20), get(Some("a"), 500, 600)]).expect("never applied");
    // An answer that came after a timeout still means "may apply later".
    let answered = rec(Op::Put { value: "b".into() }, Outcome::Unknown, 20, Some(30));
    check(&[put("a", 0, 10), answered, get(Some("a"), 40, 50), get(Some("b"), 60, 70)]).expect("late");
    // But not before it was called.
    assert_not_linearizable(&[get(Some("b"), 0, 10), put_unknown("b", 20)]);
}

#[test]
fn a_write_with_unknown_outcome_applies_at_most_once() {
    let delete_unknown = rec(Op::Delete, Outcome::Unknown, 20, None);
    let once = [put("a", 0, 10), delete_unknown.clone(), get(None, 30, 40)];
    check(&once).expect("the delete applied once");
    let twice = [once[0].clone(), delete_unknown, get(None, 30, 40), put("b", 50, 60), get(None, 70, 80)];
    let v = assert_not_linearizable(&twice);
    assert!(!v.message.contains("weaker check"), "only the exact check can tell: {v}");
}

#[test]
fn reads_with_unknown_outcome_are_dropped() {
    let h = [put("a", 0, 10), rec(Op::Get, Outcome::Unknown, 20, None)];
    assert_eq!(check(&h).expect("linearizable"), CheckStats { keys: 1, ops: 1, unknown: 0 });
}

#[test]
fn consistent_cas_outcomes_pass() {
    let h = [
        cas(None, "a", true, 0, 10),
        cas(None, "b", false, 20, 30),
        cas(Some("a"), "c", true, 40, 60),
        cas(Some("a"), "d", false, 50, 70),
        get(Some("c"), 80, 90),
    ];
    check(&h).expect("linearizable");
}

#[test]
fn two_cas_with_the_same_expectation_cannot_both_apply() {
    let h = [put("a", 0, 10), cas(Some("a"), "x", true, 20, 40), cas(Some("a"), "y", true, 30, 50)];
    assert_not_linearizable(&h);
}

#[test]
fn deleting_an_absent_key_cannot_report_a_live_key() {
    assert_not_linearizable(&[delete(true, 0, 10)]);
    assert_not_linearizable(&[put("a", 0, 10), delete(true, 20, 30), delete(true, 40, 50)]);
}

#[test]
fn keys_are_checked_independently() {
    let mut other = put("a", 100, 110);
    other.key = "other".to_string();
    let h = [put("a", 0, 10), other, get(Some("a"), 20, 30)];
    assert_eq!(check(&h).expect("linearizable"), CheckStats { keys: 2, ops: 3, unknown: 0 });
    let mut stale = get(None, 200, 210);
    stale.key = "other".to_string();
    let v = check(&[h[0].clone(), h[1].clone(), h[2].clone(), stale]).expect_err("stale read on other");
    assert_eq!(v.key, "other");
}

#[test]
fn a_mismatched_outcome_is_reported_as_malformed() {
    let v = check(&[rec(Op::Get, Outcome::Put, 0, Some(1))]).expect_err("malformed");
    assert!(v.message.starts_with("malformed record #0"), "{v}");
}

#[test]
fn running_out_of_budget_is_an_error_distinct_from_a_violation() {
    let h: Vec<Record> = (0..20).map(|i| put(&format!("v{i}"), 0, 100)).collect();
    for budget in [Budget { memo_words: 4, ..BUDGET }, Budget { steps: 10, ..BUDGET }] {
        let v = check_with_budget(&h, budget).expect_err("budget");
        assert!(v.message.starts_with("search budget exhausted"), "{v}");
    }
    check(&h).expect("linearizable with the real budget");
}

#[test]
fn the_recorder_keeps_outcomes_and_marks_dropped_calls_unknown() {
    let history = History::new();
    let recorder = history.clone();
    let call = recorder.invoke("k", Op::Put { value: "a".into() });
    call.complete(Outcome::Put);
    drop(recorder.invoke("k", Op::Delete));
    let records = history.records();
    assert_eq!(history.len(), 2);
    assert_eq!(records[0].outcome, Outcome::Put);
    assert!(records[0].completed_ns.is_some_and(|t| t >= records[0].invoked_ns));
    assert_eq!((&records[1].op, &records[1].outcome, records[1].completed_ns), (&Op::Delete, &Outcome::Unknown, None));
    check(&records).expect("linearizable");
}

/// One generated op: its times, and where it took effect in the true order.
struct Planned {
    invoked: u64,
    effect: u64,
    completed: u64,
    kind: usize,
    unknown: bool,
    applied: bool,
}

/// A concurrent history of a real register: each client runs its ops one at a time,
/// each op takes effect at a random instant between its call and its return, and the
/// outcomes come from applying the ops in that order. Linearizable by construction.
/// A write with unknown outcome takes effect with probability one half, or never.
fn random_history(rng: &mut StdRng, clients: usize, ops: usize, unique: bool, unknown: f64) -> Vec<Record> {
    let mut free = vec![0u64; clients];
    let plan: Vec<Planned> = (0..ops)
        .map(|_| {
            let client = rng.random_range(0..clients);
            let invoked = free[client] + rng.random_range(0..20);
            let at = invoked + rng.random_range(1..30);
            let completed = at + rng.random_range(1..30);
            free[client] = completed;
            // Distinct instants for a total order; scaling keeps it inside the call.
            let effect = at * 64 + client as u64;
            let (invoked, completed) = (invoked * 64, completed * 64);
            let unknown = rng.random_bool(unknown);
            let applied = !unknown || rng.random_bool(0.5);
            Planned { invoked, effect, completed, kind: rng.random_range(0..20), unknown, applied }
        })
        .collect();
    let mut order: Vec<usize> = (0..plan.len()).collect();
    order.sort_by_key(|&i| plan[i].effect);

    let mut state: Option<String> = None;
    let mut written: Vec<String> = Vec::new();
    let mut records: Vec<Option<Record>> = vec![None; plan.len()];
    for (n, &i) in order.iter().enumerate() {
        let p = &plan[i];
        let value = if unique { format!("v{n}") } else { ["a", "b", "c"][rng.random_range(0..3)].to_string() };
        let (op, outcome) = match p.kind {
            0..=7 => (Op::Put { value: value.clone() }, Outcome::Put),
            8..=14 => (Op::Get, Outcome::Got(state.clone())),
            15..=16 => (Op::Delete, Outcome::Deleted(state.is_some())),
            _ => {
                let expect = match rng.random_range(0..3) {
                    0 => state.clone(),
                    1 => None,
                    _ if written.is_empty() => None,
                    _ => Some(written[rng.random_range(0..written.len())].clone()),
                };
                (Op::CasPut { expect: expect.clone(), value }, Outcome::Cas(expect == state))
            }
        };
        if p.applied {
            match (&op, &outcome) {
                (Op::Put { value }, _) | (Op::CasPut { value, .. }, Outcome::Cas(true)) => {
                    state = Some(value.clone());
                    written.push(value.clone());
                }
                (Op::Delete, _) => state = None,
                _ => {}
            }
        }
        let (outcome, completed) = if p.unknown { (Outcome::Unknown, None) } else { (outcome, Some(p.completed)) };
        records[i] = Some(rec(op, outcome, p.invoked, completed));
    }
    records.into_iter().flatten().collect()
}

#[test]
fn random_histories_of_a_real_register_pass() {
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..200 {
        let h = random_history(&mut rng, 4, 50, round % 2 == 0, 0.05);
        if let Err(v) = check(&h) {
            panic!("round {round}: {v}\n{h:#?}");
        }
    }
}

/// The value a read would see if it ignored a write that finished before it began:
/// some write of `w` returned before another known write was called, which returned
/// before the read was called. With unique values, no linearization reads `w` there.
fn definitely_stale(h: &[Record], read: &Record) -> Option<String> {
    let written = |r: &Record| match (&r.op, &r.outcome) {
        (Op::Put { value }, Outcome::Put) | (Op::CasPut { value, .. }, Outcome::Cas(true)) => Some(value.clone()),
        _ => None,
    };
    let overwrites = |r: &Record| written(r).is_some() || matches!(r.outcome, Outcome::Deleted(_));
    let before = |a: &Record, b: &Record| a.completed_ns.is_some_and(|t| t < b.invoked_ns);
    h.iter().filter_map(|p| written(p).map(|w| (p, w))).find_map(|(p, w)| {
        let overwritten = h.iter().any(|q| overwrites(q) && before(p, q) && before(q, read));
        overwritten.then_some(w)
    })
}

#[test]
fn random_histories_with_a_stale_read_fail() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut mutated = 0;
    for round in 0..200 {
        let mut h = random_history(&mut rng, 4, 50, true, 0.05);
        let stale = h.iter().enumerate().find_map(|(i, r)| {
            let is_read = matches!(r.outcome, Outcome::Got(_));
            is_read.then(|| definitely_stale(&h, r)).flatten().map(|w| (i, w))
        });
        let Some((i, w)) = stale else { continue };
        h[i].outcome = Outcome::Got(Some(w));
        mutated += 1;
        match check(&h) {
            Err(v) if v.message.starts_with("not linearizable") => {}
            other => panic!("round {round}: record #{i} made stale, yet {other:?}"),
        }
    }
    assert!(mutated >= 100, "only {mutated} histories had a read to make stale");
}

/// Tries every order of the ops, straight from the definition: an unknown write may
/// also never apply. Only for a handful of ops.
fn brute_force(h: &[Record]) -> bool {
    fn apply(state: &Option<String>, r: &Record) -> Option<Option<String>> {
        let unknown = r.outcome == Outcome::Unknown;
        match (&r.op, &r.outcome) {
            (Op::Put { value }, _) => Some(Some(value.clone())),
            (Op::Delete, Outcome::Deleted(live)) if *live != state.is_some() => None,
            (Op::Delete, _) => Some(None),
            (Op::Get, Outcome::Got(v)) => (v == state).then(|| state.clone()),
            (Op::CasPut { expect, value }, outcome) => {
                let matches = expect == state;
                if unknown || *outcome == Outcome::Cas(matches) {
                    Some(if matches { Some(value.clone()) } else { state.clone() })
                } else {
                    None
                }
            }
            _ => None,
        }
    }
    fn search(ops: &[&Record], placed: &mut [bool], state: &Option<String>) -> bool {
        let waiting: Vec<bool> = (0..ops.len()).map(|i| !placed[i] && ops[i].outcome != Outcome::Unknown).collect();
        if !waiting.contains(&true) {
            return true;
        }
        for i in 0..ops.len() {
            let must_wait =
                (0..ops.len()).any(|j| waiting[j] && ops[j].completed_ns.is_some_and(|t| t < ops[i].invoked_ns));
            if placed[i] || must_wait {
                continue;
            }
            if let Some(next) = apply(state, ops[i]) {
                placed[i] = true;
                if search(ops, placed, &next) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    let ops: Vec<&Record> = h.iter().filter(|r| !(r.op == Op::Get && r.outcome == Outcome::Unknown)).collect();
    search(&ops, &mut vec![false; ops.len()], &None)
}

/// Small histories with arbitrary outcomes, linearizable or not; a fraction `unknown`
/// of them unknown, half of those answered after the timeout.
fn arbitrary_history(rng: &mut StdRng, ops: usize, unknown: f64) -> Vec<Record> {
    let value = |rng: &mut StdRng| [None, Some("a"), Some("b")][rng.random_range(0..3)].map(str::to_string);
    (0..ops)
        .map(|_| {
            let invoked = rng.random_range(0..20);
            let completed = invoked + rng.random_range(0..10);
            let (op, outcome) = match rng.random_range(0..4) {
                0 => (Op::Put { value: value(rng).unwrap_or_else(|| "c".into()) }, Outcome::Put),
                1 => (Op::Get, Outcome::Got(value(rng))),
                2 => (Op::Delete, Outcome::Deleted(rng.random_bool(0.5))),
                _ => {
                    let op = Op::CasPut { expect: value(rng), value: value(rng).unwrap_or_else(|| "c".into()) };
                    (op, Outcome::Cas(rng.random_bool(0.5)))
                }
            };
            match (rng.random_bool(unknown), rng.random_bool(0.5)) {
                (true, false) => rec(op, Outcome::Unknown, invoked, None),
                (true, true) => rec(op, Outcome::Unknown, invoked, Some(completed)),
                (false, _) => rec(op, outcome, invoked, Some(completed)),
            }
        })
        .collect()
}

#[test]
fn the_search_agrees_with_trying_every_order() {
    let mut rng = StdRng::seed_from_u64(5);
    let (mut pass, mut fail) = (0, 0);
    for round in 0..4_000 {
        // Every other history is mostly unknown writes, to exercise the twin rule.
        let h = arbitrary_history(&mut rng, 1 + round % 8, [0.1, 0.6][round % 2]);
        let expected = brute_force(&h);
        let indexes: Vec<usize> = (0..h.len()).collect();
        let history = KeyHistory::new(&h, &indexes).expect("well formed");
        assert_eq!(history.search(BUDGET, false).is_ok(), expected, "round {round}: exact search\n{h:#?}");
        if expected {
            assert!(history.search(BUDGET, true).is_ok(), "round {round}: relaxed search\n{h:#?}");
        }
        match check(&h) {
            Ok(_) if expected => pass += 1,
            Err(v) if !expected && v.message.starts_with("not linearizable") => fail += 1,
            other => panic!("round {round}: brute force says {expected}, check says {other:?}\n{h:#?}"),
        }
    }
    eprintln!("{pass} linearizable, {fail} not");
    assert!(pass > 500 && fail > 500, "{pass} passed and {fail} failed: generate better histories");
}

#[test]
fn two_thousand_ops_from_eight_clients_check_quickly() {
    let mut rng = StdRng::seed_from_u64(3);
    for unique in [true, false] {
        let h = random_history(&mut rng, 8, 2_000, unique, 0.02);
        let started = Instant::now();
        let stats = check(&h).expect("linearizable");
        eprintln!("unique values {unique}: {stats:?} checked in {:?}", started.elapsed());
    }
}
