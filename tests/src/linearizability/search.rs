//! The search: Wing & Gong / Lowe with memoization over (linearized set, register),
//! per key, with the reductions for writes of unknown outcome described in the parent
//! module.

use std::collections::{BTreeMap, HashMap};

use super::{CheckStats, Op, Outcome, Record, Violation};

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
        let Some(blocker) =
            remaining.clone().filter(|&i| self.ops[i].group.is_none()).min_by_key(|&i| self.ret_entry[i])
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
mod tests;
