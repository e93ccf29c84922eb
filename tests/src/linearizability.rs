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

use parking_lot::{Mutex, MutexGuard};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// A call a client made on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        value: String,
    },
    Delete,
    Get,
    /// Put `value` only if the key currently holds `expect` (`None` = absent).
    CasPut {
        expect: Option<String>,
        value: String,
    },
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

    /// Now, in ns since the history started (the clock of every record's times).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Record>> {
        self.inner.records.lock()
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

impl Pending {
    /// The node answered that the call did not and will not apply (a 503 `unavailable`
    /// to a write): it is left out of the history, so the check holds the node to its
    /// word. A refused write that applied after all shows up as a read of a value no
    /// write in the history explains, or a revision out of order: not linearizable.
    pub fn refused(mut self) {
        self.call = None;
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

mod search;

pub use search::check;
