//! A linearizability checker for per-key register histories.
//!
//! A test records every client call with a [`History`] (`invoke` before the request,
//! `complete` with what came back; a dropped [`Pending`] counts as an unknown outcome),
//! then hands [`History::records`] to [`check`]. Keys are independent registers, so the
//! history is split by key and each key is checked on its own (linearizability is
//! compositional over objects).
//!
//! Per key the search is Wing & Gong's, with Lowe's memoization, in the shape of
//! porcupine's `checkSingle`: calls and returns are sorted into one doubly linked list;
//! an op may be linearized next when its call comes before every return still in the
//! list; linearizing it unlinks its call and return, backtracking links them back. A set
//! of (ops linearized, register value) already explored is never explored again.
//!
//! A write whose outcome is unknown (timeout, 503, broken connection) returns at +∞: it
//! may take effect at any point after its call, or never. A read whose outcome is
//! unknown tells nothing and is dropped. Unknown writes are what make such searches blow
//! up (each may or may not have happened by any point), so the search treats them apart,
//! exactly:
//! - Values that no read returned and no CAS expected are indistinguishable to every op,
//!   so they are interned as one value; an unknown write of a value that only it writes
//!   and someone observed must have taken effect before that observer returned.
//! - The rest are optional: the search linearizes them only in a short burst right
//!   before a required op that needs each of them, and unknown writes with the same
//!   effect in the order of their calls, so it only tracks how many of each it used. A
//!   state reached with one of them fewer used, and refuted, refutes this one too.
//! - A relaxed search first lets each unknown write take effect any number of times. Its
//!   state space has no trace of them, so it is fast; a failure there is a violation, and
//!   a linearization that uses no unknown write twice is a pass. Only otherwise does the
//!   exact search run.
//!
//! The search is bounded ([`check`] returns "search budget exhausted", an error, when it
//! gives up). A cross-check against trying every order, on thousands of small random
//! histories, is among the tests.
//!
//! Written by hand because no well-kept crate checks register histories whose writes may
//! have unknown outcomes: porcupine and Knossos are Go and Clojure, and stateright's
//! `LinearizabilityTester` enumerates interleavings without a memo and lets a thread have
//! one op in flight only at the very end (a client that timed out and went on cannot be
//! recorded).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// A call a client made on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { value: String },
    Delete,
    Get,
    /// Put `value` only if the key currently holds `expect` (`None` = absent).
    CasPut { expect: Option<String>, value: String },
}

/// What the client learned about its call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged.
    Put,
    /// Acknowledged; true if a live key was removed.
    Deleted(bool),
    /// The value read (`None` = absent).
    Got(Option<String>),
    /// True = applied, false = the precondition failed (409).
    Cas(bool),
    /// Timed out, 503 or a connection error: a write may or may not have applied. Reads
    /// with this outcome are dropped by [`check`].
    Unknown,
}

/// One client call and its outcome, with times in ns since its [`History`] started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub op: Op,
    pub invoked_ns: u64,
    /// `None` when the caller never saw an answer.
    pub completed_ns: Option<u64>,
    pub outcome: Outcome,
}

/// Thread-safe recorder of client calls. Clones share one record list and one clock (a
/// single `Instant`, so times are monotonic and comparable across threads).
#[derive(Clone, Debug)]
pub struct History {
    inner: Arc<Recorder>,
}

#[derive(Debug)]
struct Recorder {
    start: Instant,
    records: Mutex<Vec<Record>>,
}

impl History {
    pub fn new() -> Self {
        History { inner: Arc::new(Recorder { start: Instant::now(), records: Mutex::new(Vec::new()) }) }
    }

    /// Marks the start of a call. Take it before the request leaves the client.
    pub fn invoke(&self, key: &str, op: Op) -> Pending {
        Pending { history: self.clone(), call: Some((key.to_string(), op, self.now_ns())) }
    }

    /// The finished calls so far (completed or dropped), in the order they finished.
    pub fn records(&self) -> Vec<Record> {
        self.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Record>> {
        self.inner.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

/// A call in flight. Dropping it without [`Pending::complete`] records the call with an
/// [`Outcome::Unknown`] and no completion time: the write may still apply.
#[derive(Debug)]
#[must_use = "dropping a Pending records its call with an Unknown outcome"]
pub struct Pending {
    history: History,
    call: Option<(String, Op, u64)>,
}

impl Pending {
    /// Records the call's outcome. Take it after the answer arrived.
    pub fn complete(mut self, outcome: Outcome) {
        if let Some((key, op, invoked_ns)) = self.call.take() {
            let completed_ns = Some(self.history.now_ns());
            self.history.lock().push(Record { key, op, invoked_ns, completed_ns, outcome });
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((key, op, invoked_ns)) = self.call.take() {
            let record = Record { key, op, invoked_ns, completed_ns: None, outcome: Outcome::Unknown };
            self.history.lock().push(record);
        }
    }
}

/// Why a key's history was rejected. `message` says whether no linearization exists
/// ("not linearizable"), the search gave up ("search budget exhausted"), or a record was
/// malformed; for the first it lists the ops around where the search got stuck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?}: {}", self.key, self.message)
    }
}

impl std::error::Error for Violation {}

/// What [`check`] looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Distinct keys in the records.
    pub keys: usize,
    /// Ops checked: every record but the reads with an unknown outcome.
    pub ops: usize,
    /// Checked writes with an unknown outcome.
    pub unknown: usize,
}

/// How much one key's search may do before it gives up with "search budget exhausted".
/// Giving up is an error, never a pass.
#[derive(Clone, Copy)]
struct Budget {
    /// The memo's size in 64-bit words.
    memo_words: usize,
    /// Search steps (an op tried, or a backtrack).
    steps: u64,
}

/// How each kind of failure's message starts.
const NOT_LINEARIZABLE: &str = "not linearizable";
const EXHAUSTED: &str = "search budget exhausted";
const RELAXED_NOTE: &str = "(found by a weaker check, which lets each write with unknown outcome \
    take effect any number of times)";

/// 256 MiB of memo, and some tens of seconds of steps in a debug build.
const BUDGET: Budget = Budget { memo_words: 1 << 25, steps: 300_000_000 };

/// Checks every key's history against a register that starts absent. Keys are checked
/// in name order; the first that fails is returned.
pub fn check(records: &[Record]) -> Result<CheckStats, Violation> {
    check_with_budget(records, BUDGET)
}

fn check_with_budget(records: &[Record], budget: Budget) -> Result<CheckStats, Violation> {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        by_key.entry(r.key.as_str()).or_default().push(i);
    }
    let mut stats = CheckStats { keys: by_key.len(), ..CheckStats::default() };
    for (key, indexes) in by_key {
        let violation = |message| Violation { key: key.to_string(), message };
        let history = KeyHistory::new(records, &indexes).map_err(violation)?;
        stats.ops += history.ops.len();
        stats.unknown += history.unknown;
        // Where unknown writes abound, the relaxed search is far cheaper than the exact
        // one, and its answer is usually final: a failure is, and so is a linearization
        // that happens to use no unknown write twice.
        if !history.groups.is_empty() {
            match history.search(budget, true) {
                Ok(found) if history.needs_no_reuse(&found) => continue,
                Err(m) if m.starts_with(NOT_LINEARIZABLE) => {
                    return Err(violation(format!("{m}\n{RELAXED_NOTE}")));
                }
                _ => {}
            }
        }
        history.search(budget, false).map_err(violation)?;
    }
    Ok(stats)
}

/// An interned register value. Interning keeps the search's state a small integer.
type Val = u32;
const ABSENT: Val = 0;
/// Every value that no read returned and no CAS expected: no op can tell them apart.
const UNOBSERVED: Val = 1;

/// An op with its outcome, as one transition of the register. `None` = unknown outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    Put(Val),
    Delete(Option<bool>),
    Get(Val),
    Cas { expect: Val, value: Val, applied: Option<bool> },
}

impl Step {
    /// The register after this op, or `None` if the op cannot have seen `state`.
    fn apply(self, state: Val) -> Option<Val> {
        match self {
            Step::Put(v) => Some(v),
            Step::Delete(None) => Some(ABSENT),
            Step::Delete(Some(live)) => (live == (state != ABSENT)).then_some(ABSENT),
            Step::Get(v) => (v == state).then_some(state),
            Step::Cas { expect, value, applied } => {
                let matches = state == expect;
                match applied {
                    Some(a) if a != matches => None,
                    _ => Some(if matches { value } else { state }),
                }
            }
        }
    }
}

struct KeyOp {
    /// Index into the caller's records, for messages.
    record: usize,
    step: Step,
    call: u64,
    /// `u64::MAX` for an unknown outcome, unless [`bound_unknown_writers`] found a bound.
    ret: u64,
    /// For an optional op, its index in [`KeyHistory::groups`]. An optional op is a write
    /// that may take effect at any time from its call on, or never: unknown outcome, and
    /// no bound. The search need not linearize it, and only does where it matters.
    group: Option<usize>,
}

/// One key's ops and their calls and returns in time order.
struct KeyHistory<'a> {
    records: &'a [Record],
    ops: Vec<KeyOp>,
    /// How many of `ops` are writes with an unknown outcome.
    unknown: usize,
    /// Names of interned values, indexed by `Val` (the first two are placeholders).
    names: Vec<String>,
    /// Entry `e` (1-based; 0 and 2n+1 are the list's head and tail) is op
    /// `entry_op[e]`'s call if `entry_is_call[e]`, else its return.
    entry_op: Vec<usize>,
    entry_is_call: Vec<bool>,
    call_entry: Vec<usize>,
    ret_entry: Vec<usize>,
    /// The optional ops grouped by step, each group in call order. Ops of a group are
    /// interchangeable, so they are used in that order (any valid order can be rearranged
    /// into it): what the search needs to know of a group is how many it used.
    groups: Vec<Vec<usize>>,
}

/// An unknown write of a value that no other op writes, once some op observed that value,
/// must have taken effect before that op returned: its return moves there. Without this,
/// every such write stays concurrent with the rest of the history, and a search that must
/// refute a long history explores each subset of them.
fn bound_unknown_writers(ops: &mut [KeyOp]) {
    let mut writers: HashMap<Val, (usize, usize)> = HashMap::new();
    let mut observed_by: HashMap<Val, u64> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let (written, observed) = match op.step {
            Step::Put(v) => (Some(v), None),
            Step::Get(v) => (None, Some(v)),
            Step::Cas { expect, value, applied } => (Some(value), (applied == Some(true)).then_some(expect)),
            Step::Delete(_) => (None, None),
        };
        if let Some(v) = written {
            writers.entry(v).or_insert((0, i)).0 += 1;
        }
        if let Some(v) = observed.filter(|&v| v > UNOBSERVED) {
            let t = observed_by.entry(v).or_insert(u64::MAX);
            *t = (*t).min(op.ret);
        }
    }
    for (v, (count, i)) in writers {
        if let (1, Some(&t)) = (count, observed_by.get(&v)) {
            ops[i].ret = ops[i].ret.min(t.max(ops[i].call));
        }
    }
}

impl<'a> KeyHistory<'a> {
    fn new(records: &'a [Record], indexes: &[usize]) -> Result<Self, String> {
        // Only values some op can observe get their own id.
        let mut ids: HashMap<&str, Val> = HashMap::new();
        let mut names = vec!["absent".to_string(), "a value no op observed".to_string()];
        for &i in indexes {
            let observed = match (&records[i].op, &records[i].outcome) {
                (_, Outcome::Got(Some(v))) | (Op::CasPut { expect: Some(v), .. }, _) => v,
                _ => continue,
            };
            ids.entry(observed).or_insert_with(|| {
                names.push(format!("{observed:?}"));
                Val::try_from(names.len() - 1).unwrap_or(Val::MAX)
            });
        }
        let val = |v: &str| ids.get(v).copied().unwrap_or(UNOBSERVED);
        let opt = |v: &Option<String>| v.as_deref().map_or(ABSENT, val);

        let mut ops = Vec::with_capacity(indexes.len());
        let mut unknown = 0;
        for &i in indexes {
            let r = &records[i];
            let known = r.outcome != Outcome::Unknown;
            let step = match (&r.op, &r.outcome) {
                (Op::Get, Outcome::Unknown) => continue,
                (Op::Get, Outcome::Got(v)) => Step::Get(opt(v)),
                (Op::Put { value }, Outcome::Put | Outcome::Unknown) => Step::Put(val(value)),
                (Op::Delete, Outcome::Deleted(live)) => Step::Delete(Some(*live)),
                (Op::Delete, Outcome::Unknown) => Step::Delete(None),
                (Op::CasPut { expect, value }, Outcome::Cas(a)) => {
                    Step::Cas { expect: opt(expect), value: val(value), applied: Some(*a) }
                }
                (Op::CasPut { expect, value }, Outcome::Unknown) => {
                    Step::Cas { expect: opt(expect), value: val(value), applied: None }
                }
                (op, outcome) => {
                    return Err(format!("malformed record #{i}: outcome {outcome:?} does not answer {op:?}"));
                }
            };
            unknown += usize::from(!known);
            let ret = match r.completed_ns {
                Some(t) if known => t.max(r.invoked_ns),
                _ => u64::MAX,
            };
            ops.push(KeyOp { record: i, step, call: r.invoked_ns, ret, group: None });
        }
        bound_unknown_writers(&mut ops);

        // Sort calls and returns; at equal times calls go first, so ops that touch
        // are concurrent (A precedes B only if A returned strictly before B's call).
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            order.push((op.call, false, i));
            order.push((op.ret, true, i));
        }
        order.sort_unstable();
        let mut entry_op = vec![usize::MAX; order.len() + 2];
        let mut entry_is_call = vec![false; order.len() + 2];
        let mut call_entry = vec![0; ops.len()];
        let mut ret_entry = vec![0; ops.len()];
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<Step, usize> = HashMap::new();
        for (e, &(_, is_ret, i)) in order.iter().enumerate() {
            let e = e + 1;
            entry_op[e] = i;
            entry_is_call[e] = !is_ret;
            if is_ret {
                ret_entry[i] = e;
                continue;
            }
            call_entry[i] = e;
            let op = &mut ops[i];
            let fallible = matches!(op.step, Step::Get(_) | Step::Delete(Some(_)) | Step::Cas { applied: Some(_), .. });
            if op.ret == u64::MAX && !fallible {
                let g = *group_of.entry(op.step).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
                groups[g].push(i);
                op.group = Some(g);
            }
        }
        Ok(KeyHistory { records, ops, unknown, names, entry_op, entry_is_call, call_entry, ret_entry, groups })
    }

    /// Looks for a linearization; on failure says why in words. With `reuse`, an optional
    /// op may take effect any number of times: a weaker condition, whose search does not
    /// grow with the subsets of optional ops used, so it refutes long histories quickly.
    /// On success returns the linearization, with the frontier each op went in at.
    fn search(&self, budget: Budget, reuse: bool) -> Result<Vec<Frame>, String> {
        let n = self.ops.len();
        let tail = 2 * n + 1;
        let mut next: Vec<usize> = (1..=tail + 1).collect();
        let mut prev: Vec<usize> = (0..=tail).map(|e| e.wrapping_sub(1)).collect();
        let lift = |next: &mut [usize], prev: &mut [usize], i: usize| {
            for e in [self.call_entry[i], self.ret_entry[i]] {
                next[prev[e]] = next[e];
                prev[next[e]] = prev[e];
            }
        };
        let unlift = |next: &mut [usize], prev: &mut [usize], i: usize| {
            for e in [self.ret_entry[i], self.call_entry[i]] {
                next[prev[e]] = e;
                prev[next[e]] = e;
            }
        };
        // The list holds the required ops; optional ones are tried from their groups.
        for &i in self.groups.iter().flatten() {
            lift(&mut next, &mut prev, i);
        }

        let zobrist: Vec<u64> = (0..n as u64).map(splitmix64).collect();
        let mut done = Bits::new(n);
        let mut hash = 0u64;
        let mut state = ABSENT;
        let mut stack: Vec<Frame> = Vec::new();
        // How many frames at the top of the stack are optional ops: the current burst.
        let mut burst = 0;
        // How many of each group are linearized (without `reuse`).
        let mut used = vec![0; self.groups.len()];
        let mut memo = Memo::new(done.words.len());
        let mut deepest: (Vec<usize>, Val) = (Vec::new(), ABSENT);
        let mut required = self.ops.iter().filter(|o| o.group.is_none()).count();
        let mut steps = 0u64;

        // Each step first tries the required ops in the list up to its first return (the
        // frontier), then one optional op of each group called before the frontier, so
        // that the search tries to do without optional ops first. Once no required op is
        // left, the optional ones can follow in any order, or never.
        let mut cursor = Cursor::Required(next[0]);
        let mut frontier = tail;
        while required > 0 {
            steps += 1;
            if steps > budget.steps || memo.arena.len() > budget.memo_words {
                return Err(format!(
                    "{EXHAUSTED} after {steps} steps and {} states ({n} ops, {} with unknown \
                     outcome): the history is neither proven linearizable nor refuted",
                    memo.len, self.unknown,
                ));
            }
            let (i, skip) = match cursor {
                Cursor::Required(e) if self.entry_is_call[e] => (self.entry_op[e], Cursor::Required(next[e])),
                Cursor::Required(e) => {
                    frontier = e;
                    cursor = Cursor::Optional(0);
                    continue;
                }
                Cursor::Optional(g) if g < self.groups.len() => {
                    let member = self.groups[g].get(if reuse { 0 } else { used[g] });
                    match member {
                        Some(&i) if self.call_entry[i] < frontier => (i, Cursor::Optional(g + 1)),
                        _ => {
                            cursor = Cursor::Optional(g + 1);
                            continue;
                        }
                    }
                }
                Cursor::Optional(_) => {
                    // Nothing can go next, yet the op at the frontier must: backtrack.
                    let Some(top) = stack.pop() else {
                        return Err(self.explain(&deepest.0, deepest.1));
                    };
                    let j = top.op;
                    (state, burst, frontier) = (top.before, top.burst, top.frontier);
                    match self.ops[j].group {
                        None => {
                            required += 1;
                            unlift(&mut next, &mut prev, j);
                            cursor = Cursor::Required(next[self.call_entry[j]]);
                        }
                        Some(g) => {
                            used[g] -= usize::from(!reuse);
                            cursor = Cursor::Optional(g + 1);
                        }
                    }
                    if !(reuse && self.ops[j].group.is_some()) {
                        done.flip(j);
                        hash ^= zobrist[j];
                    }
                    continue;
                }
            };
            let Some(after) = self.next_state(i, state, &stack[stack.len() - burst..]) else {
                cursor = skip;
                continue;
            };
            let group = self.ops[i].group;
            // With `reuse`, an optional op is applied but not used up.
            if !(reuse && group.is_some()) {
                done.flip(i);
                hash ^= zobrist[i];
            }
            // Only states after a required op are memoized: what may follow a state in
            // mid-burst depends on the burst, not just on the state. A dominated state
            // is memoized too, so that states with yet more optional ops find it.
            let dominated = group.is_none() && self.dominated(&mut done, hash, after, &used, &memo, &zobrist);
            if group.is_none() && (!memo.insert(memo_hash(hash, after), after, &done.words) || dominated) {
                done.flip(i);
                hash ^= zobrist[i];
                cursor = skip;
                continue;
            }
            stack.push(Frame { op: i, before: state, burst, frontier });
            (state, burst) = (after, if group.is_some() { burst + 1 } else { 0 });
            match group {
                None => {
                    required -= 1;
                    lift(&mut next, &mut prev, i);
                }
                Some(g) => used[g] += usize::from(!reuse),
            }
            if stack.len() > deepest.0.len() {
                deepest = (stack.iter().map(|f| f.op).collect(), state);
            }
            cursor = Cursor::Required(next[0]);
        }
        Ok(stack)
    }

    /// Whether a linearization found with `reuse` is one without: whether each group has
    /// a distinct op, called in time, for every use of it. Ops of a group are used in call
    /// order, so matching the k-th use with the k-th op is the best assignment.
    fn needs_no_reuse(&self, linearization: &[Frame]) -> bool {
        let mut used = vec![0; self.groups.len()];
        linearization.iter().all(|f| match self.ops[f.op].group {
            None => true,
            Some(g) => {
                used[g] += 1;
                self.groups[g].get(used[g] - 1).is_some_and(|&i| self.call_entry[i] < f.frontier)
            }
        })
    }

    /// Whether the same register was reached with one optional op fewer, and refuted:
    /// leaving an optional op unused never hurts, so this state fails too. Every memo
    /// entry off the search's path is refuted, and none on it can match, since each
    /// follows a required op. Only the last op used of a group can be left out, as the
    /// search uses a group's ops in order.
    fn dominated(&self, done: &mut Bits, hash: u64, state: Val, used: &[usize], memo: &Memo, zobrist: &[u64]) -> bool {
        let last_used = self.groups.iter().zip(used).filter_map(|(g, &k)| k.checked_sub(1).map(|k| g[k]));
        last_used.into_iter().any(|x| {
            done.flip(x);
            let found = memo.contains(memo_hash(hash ^ zobrist[x], state), state, &done.words);
            done.flip(x);
            found
        })
    }

    /// The register after op `i`, if the search should linearize `i` next, after the
    /// optional ops of `burst`. An optional op is linearized only in a burst of them just
    /// before a required op that needs every one: the register takes no value twice in a
    /// burst, no optional op comes right before an unconditional optional write (which
    /// would undo it), and the required op must fail, or leave another value, when any
    /// one of them is left out. The search stays exact: a valid linearization that uses
    /// the fewest optional ops obeys all of this.
    fn next_state(&self, i: usize, state: Val, burst: &[Frame]) -> Option<Val> {
        let op = &self.ops[i];
        let after = op.step.apply(state)?;
        if op.group.is_some() {
            let repeats = after == state || burst.iter().any(|f| f.before == after);
            let undoes = !burst.is_empty() && matches!(op.step, Step::Put(_) | Step::Delete(None));
            return (!repeats && !undoes).then_some(after);
        }
        let start = burst.first().map_or(state, |f| f.before);
        for skip in 0..burst.len() {
            let kept = burst.iter().enumerate().filter(|&(k, _)| k != skip);
            let without = kept.fold(start, |s, (_, f)| self.ops[f.op].step.apply(s).unwrap_or(s));
            if op.step.apply(without) == Some(after) {
                return None;
            }
        }
        Some(after)
    }

    /// Describes the longest linearizable prefix the search found and the ops that
    /// could not follow it.
    fn explain(&self, prefix: &[usize], state: Val) -> String {
        const SHOWN_PREFIX: usize = 8;
        const SHOWN_CANDIDATES: usize = 12;
        let n = self.ops.len();
        let mut linearized = vec![false; n];
        let mut states = Vec::with_capacity(prefix.len());
        let mut s = ABSENT;
        for &i in prefix {
            linearized[i] = true;
            s = self.ops[i].step.apply(s).unwrap_or(s);
            states.push(s);
        }
        let mut out = format!(
            "{NOT_LINEARIZABLE}: the longest linearizable prefix found has {} of the {n} ops \
             (times in ms since the history started)\n",
            prefix.len()
        );
        if prefix.is_empty() {
            out.push_str("no op can go first; the register starts absent\n");
        } else {
            out.push_str("the longest linearizable prefix ends with:\n");
            let from = prefix.len().saturating_sub(SHOWN_PREFIX);
            for (&i, &s) in prefix.iter().zip(&states).skip(from) {
                out.push_str(&format!("  {}  => {}\n", self.describe(i), self.name(s)));
            }
        }
        // The earliest return still to come bounds which ops may go next.
        let remaining = (0..n).filter(|&i| !linearized[i]);
        let Some(blocker) = remaining.clone().filter(|&i| self.ops[i].group.is_none()).min_by_key(|&i| self.ret_entry[i])
        else {
            return out;
        };
        out.push_str(&format!("then, with the register {}, no op can go next:\n", self.name(state)));
        let (optional, candidates): (Vec<usize>, Vec<usize>) = remaining
            .filter(|&i| self.call_entry[i] < self.ret_entry[blocker])
            .partition(|&i| self.ops[i].group.is_some());
        for &i in candidates.iter().take(SHOWN_CANDIDATES) {
            let why = match self.ops[i].step.apply(state) {
                None => "its outcome is impossible from that value",
                Some(_) => "possible here, but every order that follows fails",
            };
            out.push_str(&format!("  {}: {why}\n", self.describe(i)));
        }
        if candidates.len() > SHOWN_CANDIDATES {
            out.push_str(&format!("  … and {} more\n", candidates.len() - SHOWN_CANDIDATES));
        }
        if !optional.is_empty() {
            out.push_str(&format!(
                "  nor any help from the {} writes with unknown outcome called by then\n",
                optional.len()
            ));
        }
        out.push_str(&format!(
            "record #{} returned before any later call, so one of these had to take effect first",
            self.ops[blocker].record
        ));
        out
    }

    fn name(&self, v: Val) -> &str {
        self.names.get(v as usize).map_or("?", String::as_str)
    }

    fn describe(&self, i: usize) -> String {
        let index = self.ops[i].record;
        let r = &self.records[index];
        let value = |v: &Option<String>| v.as_ref().map_or("absent".to_string(), |s| format!("{s:?}"));
        let call = match &r.op {
            Op::Put { value } => format!("put {value:?}"),
            Op::Delete => "delete".to_string(),
            Op::Get => "get".to_string(),
            Op::CasPut { expect, value: v } => format!("cas {} -> {v:?}", value(expect)),
        };
        let outcome = match &r.outcome {
            Outcome::Put => "ok".to_string(),
            Outcome::Deleted(true) => "deleted".to_string(),
            Outcome::Deleted(false) => "was absent".to_string(),
            Outcome::Got(v) => value(v),
            Outcome::Cas(true) => "applied".to_string(),
            Outcome::Cas(false) => "409".to_string(),
            Outcome::Unknown => "unknown".to_string(),
        };
        let ms = |ns: u64| format!("{:.3}", ns as f64 / 1e6);
        let end = match (r.completed_ns, &r.outcome) {
            (Some(t), Outcome::Unknown) => format!("{} (may apply later)", ms(t)),
            (Some(t), _) => ms(t),
            (None, _) => "never answered".to_string(),
        };
        format!("record #{index} {call} -> {outcome} [{}, {end}]", ms(r.invoked_ns))
    }
}

/// Where the search looks for the next op to linearize.
#[derive(Clone, Copy)]
enum Cursor {
    /// An entry of the list of required ops.
    Required(usize),
    /// A group of optional ops.
    Optional(usize),
}

/// One linearized op on the search's stack, with what to restore when it is undone.
struct Frame {
    op: usize,
    /// The register before it.
    before: Val,
    /// The burst's length before it.
    burst: usize,
    /// For an optional op, the frontier (first return in the list) it went in before.
    frontier: usize,
}

/// The set of linearized ops.
struct Bits {
    words: Vec<u64>,
}

impl Bits {
    fn new(n: usize) -> Self {
        Bits { words: vec![0; n.div_ceil(64).max(1)] }
    }

    fn flip(&mut self, i: usize) {
        self.words[i / 64] ^= 1 << (i % 64);
    }
}

/// The explored (linearized set, register) pairs: an open-addressing table over an
/// arena, so each entry costs its bitset plus two words and no allocation.
struct Memo {
    /// Words per entry: hash, register, then the bitset.
    stride: usize,
    arena: Vec<u64>,
    /// Entry index + 1, or 0 for an empty slot. A power of two, at most half full.
    table: Vec<u32>,
    len: usize,
}

impl Memo {
    fn new(bit_words: usize) -> Self {
        Memo { stride: bit_words + 2, arena: Vec::new(), table: vec![0; 1024], len: 0 }
    }

    /// The pair's slot if present, else the empty slot where it would go. `hash` is
    /// [`memo_hash`] of both halves.
    fn find(&self, hash: u64, state: Val, bits: &[u64]) -> Result<usize, usize> {
        let mask = self.table.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            let entry = self.table[slot] as usize;
            if entry == 0 {
                return Err(slot);
            }
            let stored = &self.arena[(entry - 1) * self.stride..entry * self.stride];
            if stored[0] == hash && stored[1] == u64::from(state) && stored[2..] == *bits {
                return Ok(slot);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn contains(&self, hash: u64, state: Val, bits: &[u64]) -> bool {
        self.find(hash, state, bits).is_ok()
    }

    /// Adds the pair; false if it was already there.
    fn insert(&mut self, hash: u64, state: Val, bits: &[u64]) -> bool {
        if 2 * (self.len + 1) > self.table.len() {
            self.grow();
        }
        let Err(slot) = self.find(hash, state, bits) else {
            return false;
        };
        self.arena.extend_from_slice(&[hash, u64::from(state)]);
        self.arena.extend_from_slice(bits);
        self.len += 1;
        // The budget keeps len far below u32::MAX.
        self.table[slot] = u32::try_from(self.len).unwrap_or(u32::MAX);
        true
    }

    fn grow(&mut self) {
        let size = self.table.len() * 2;
        let mut table = vec![0u32; size];
        for (entry, stored) in self.arena.chunks_exact(self.stride).enumerate() {
            let mut slot = stored[0] as usize & (size - 1);
            while table[slot] != 0 {
                slot = (slot + 1) & (size - 1);
            }
            table[slot] = u32::try_from(entry + 1).unwrap_or(u32::MAX);
        }
        self.table = table;
    }
}

/// The memo's hash of (linearized set, register), from the set's Zobrist hash.
fn memo_hash(set_hash: u64, state: Val) -> u64 {
    set_hash ^ splitmix64(u64::from(state) | 1 << 63)
}

/// A well-mixed 64-bit value per input (SplitMix64's finalizer), for Zobrist hashing.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

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
            let waiting: Vec<bool> =
                (0..ops.len()).map(|i| !placed[i] && ops[i].outcome != Outcome::Unknown).collect();
            if !waiting.contains(&true) {
                return true;
            }
            for i in 0..ops.len() {
                let must_wait = (0..ops.len()).any(|j| {
                    waiting[j] && ops[j].completed_ns.is_some_and(|t| t < ops[i].invoked_ns)
                });
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
        let ops: Vec<&Record> =
            h.iter().filter(|r| !(r.op == Op::Get && r.outcome == Outcome::Unknown)).collect();
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
}
