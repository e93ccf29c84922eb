//! Change events of a shard, kept in a bounded in-memory history for watchers.
//!
//! Every replica records the events of the commands it applies, in revision order, so a
//! watcher served by any node sees every committed change of the shard, whoever leads.
//! The history is bounded (bytes and count); a watcher asking for revisions older than
//! what is kept — or kept before this process started — gets an explicit resync instead
//! of a silent gap.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
pub use tokio::sync::Notify;

/// Largest history kept per shard, in key + value bytes.
pub const MAX_HISTORY_BYTES: usize = 32 << 20;
/// Largest history kept per shard, in events.
pub const MAX_HISTORY_EVENTS: usize = 200_000;

/// What happened to a key.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
    Expire,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Put => "put",
            EventKind::Delete => "delete",
            EventKind::Expire => "expire",
        }
    }
}

/// One change, at the revision it created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    pub db: u8,
    pub key: Vec<u8>,
    /// The new value (puts only).
    pub value: Option<bytes::Bytes>,
}

impl Event {
    fn bytes(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, bytes::Bytes::len) + 32
    }
}

/// What a watcher gets when it asks for events after a revision.
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// Every event after the revision asked for that exists so far (maybe none).
    Events(Vec<Event>),
    /// Events after the revision asked for are no longer (or never were) kept here; the
    /// history is complete from `first` on, and the shard is now at `current`.
    Gap { first: u64, current: u64 },
}

#[derive(Default)]
struct Inner {
    events: VecDeque<Event>,
    bytes: usize,
    /// Every event with a revision ≥ `first` is in `events` (until evicted).
    first: u64,
    /// The shard's revision after the last recorded command.
    current: u64,
    /// For a split's new shard opened in this process: the parent's revision at the
    /// split, where this history continues the parent's (see [`EventLog::born`]).
    born: Option<u64>,
}

/// A shard's event history, shared by its state machine (writer) and watchers.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Mutex<Inner>>,
    /// Wakes every watcher of the node when any shard records events.
    notify: Arc<Notify>,
}

impl EventLog {
    /// An empty history for a shard whose state is at `revision`: nothing before it is
    /// known here.
    pub fn new(revision: u64, notify: Arc<Notify>) -> Self {
        let inner = Inner { first: revision + 1, current: revision, ..Default::default() };
        Self { inner: Arc::new(Mutex::new(inner)), notify }
    }

    /// The history of a split's new shard, whose state is the parent's at `revision`:
    /// the parent's history up to `revision` holds this shard's earlier events, and this
    /// one holds every later event.
    pub fn split_child(revision: u64, notify: Arc<Notify>) -> Self {
        let log = Self::new(revision, notify);
        log.lock().born = Some(revision);
        log
    }

    /// For a split's new shard: the parent's revision at the split. A watcher that has
    /// every event of the parent up to it continues here after it. `None` when this
    /// history does not start at a split (opened from a snapshot, or reset by one).
    pub fn born(&self) -> Option<u64> {
        self.lock().born
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Records applied events; the shard is now at `revision`.
    pub fn record(&self, events: Vec<Event>, revision: u64) {
        {
            let mut g = self.lock();
            for e in events {
                g.bytes += e.bytes();
                g.events.push_back(e);
            }
            g.current = revision;
            while g.events.len() > MAX_HISTORY_EVENTS || g.bytes > MAX_HISTORY_BYTES {
                let Some(old) = g.events.pop_front() else { break };
                g.bytes -= old.bytes();
                g.first = old.revision + 1;
            }
        }
        self.notify.notify_waiters();
    }

    /// The state was replaced (a snapshot installed): history before it is unknown.
    pub fn reset(&self, revision: u64) {
        {
            let mut g = self.lock();
            *g = Inner { first: revision + 1, current: revision, ..Default::default() };
        }
        self.notify.notify_waiters();
    }

    /// Events with a revision above `after`, at most `max`.
    pub fn since(&self, after: u64, max: usize) -> Since {
        let g = self.lock();
        if after + 1 < g.first {
            return Since::Gap { first: g.first, current: g.current };
        }
        // Revisions are increasing: find the first one above `after`.
        let start = g.events.partition_point(|e| e.revision <= after);
        Since::Events(g.events.iter().skip(start).take(max).cloned().collect())
    }

    /// The shard's current revision as recorded here.
    pub fn current(&self) -> u64 {
        self.lock().current
    }

    /// The node-wide wake-up for watchers.
    pub fn notify(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(revision: u64) -> Event {
        Event { revision, kind: EventKind::Put, db: 0, key: b"k".to_vec(), value: Some(vec![0; 10].into()) }
    }

    #[test]
    fn since_returns_exactly_the_later_events() {
        let log = EventLog::new(0, Arc::default());
        log.record(vec![ev(1), ev(2), ev(3)], 3);
        let revs = |s: Since| match s {
            Since::Events(v) => v.iter().map(|e| e.revision).collect::<Vec<_>>(),
            gap => panic!("{gap:?}"),
        };
        assert_eq!(revs(log.since(0, 10)), [1, 2, 3]);
        assert_eq!(revs(log.since(2, 10)), [3]);
        assert_eq!(revs(log.since(3, 10)), Vec::<u64>::new());
        assert_eq!(revs(log.since(0, 2)), [1, 2]);
    }

    #[test]
    fn history_from_before_the_start_or_a_reset_is_a_gap() {
        let log = EventLog::new(10, Arc::default());
        assert_eq!(log.since(5, 10), Since::Gap { first: 11, current: 10 });
        assert_eq!(log.since(10, 10), Since::Events(vec![]));
        log.record(vec![ev(11)], 11);
        log.reset(50);
        assert_eq!(log.since(11, 10), Since::Gap { first: 51, current: 50 });
    }

    #[test]
    fn eviction_moves_the_start_of_the_history() {
        let log = EventLog::new(0, Arc::default());
        let n = MAX_HISTORY_EVENTS as u64 + 5;
        log.record((1..=n).map(ev).collect(), n);
        assert_eq!(log.since(0, 1), Since::Gap { first: 6, current: n });
        assert!(matches!(log.since(5, 1), Since::Events(v) if v[0].revision == 6));
    }
}
