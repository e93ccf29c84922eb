//! Watch streams recorded under faults, and the check that they have no silent gap.
//!
//! [`Watches::start`] opens one key watch (`GET /v1/watch?key=K`, server-sent events)
//! per key per node and keeps it open through the faults: when a stream breaks (its node
//! was killed, paused past a timeout, or restarted) it reconnects to the same node with
//! the last event id it saw, as a browser's EventSource would. Every event is recorded
//! with the time it arrived, on the clock of the load's [`History`].
//!
//! [`Watches::check`] then holds each stream to what the watch API promises:
//! - **no gap**: every put the cluster acknowledged (and every CAS that applied) on the
//!   key shows up in every stream on that key, unless the stream got a `resync` event
//!   for the key's shard after the write was invoked (a resync says "re-read, something
//!   may be missing": allowed; a silently skipped change is not);
//! - **order**: within a stream the key's revisions only go up, between resyncs;
//! - **only what happened**: a put event carries a value some client wrote, and never a
//!   value whose write the node answered `unavailable` (it said the write did not apply).
//!
//! Deletes are not checked for gaps (their events carry no value to match).

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::client::query_value;
use crate::linearizability::{History, Op, Outcome, Record};

/// How long a broken stream waits before it reconnects.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// One event a stream delivered.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived, in ns on the load history's clock.
    pub at_ns: u64,
    /// `put`, `delete`, `expire` or `resync`.
    pub kind: String,
    pub value: Option<String>,
    pub shard: Option<u32>,
    pub revision: Option<u64>,
}

/// One stream: a key watched through one node, across its reconnects.
struct Stream {
    key: String,
    node: String,
    seen: Mutex<Vec<Seen>>,
    /// When the first connection was answered 200 (ns on the history's clock).
    opened_ns: Mutex<Option<u64>>,
    reconnects: std::sync::atomic::AtomicUsize,
}

/// Every stream of a run.
pub struct Watches {
    streams: Vec<Arc<Stream>>,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
    history: History,
}

/// What the streams showed.
#[derive(Debug, Default)]
pub struct WatchReport {
    pub streams: usize,
    pub events: usize,
    pub resyncs: usize,
    pub reconnects: usize,
    /// Acknowledged writes a stream skipped without a resync: "key=value via node".
    pub gaps: Vec<String>,
    /// Revisions going back, values nobody wrote, refused writes delivered.
    pub violations: Vec<String>,
}

impl Watches {
    /// Opens a watch on each of `keys` through each of `nodes` (base URLs) and waits until
    /// every stream is open (60 s at most, then panics), so each covers every write that
    /// starts afterwards.
    pub async fn start(nodes: &[String], keys: &[String], history: History) -> Watches {
        let http = ringkv_api::client::http()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let stop = Arc::new(AtomicBool::new(false));
        let mut streams = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for key in keys {
            for node in nodes {
                let s = Arc::new(Stream {
                    key: key.clone(),
                    node: node.clone(),
                    seen: Mutex::new(Vec::new()),
                    opened_ns: Mutex::new(None),
                    reconnects: Default::default(),
                });
                streams.push(s.clone());
                tasks.spawn(follow(s, http.clone(), stop.clone(), history.clone()));
            }
        }
        let w = Watches { streams, stop, tasks, history };
        crate::eventually("every watch stream open", Duration::from_secs(60), || async {
            let closed = w.streams.iter().filter(|s| s.opened_ns.lock().is_none()).count();
            if closed == 0 {
                Ok(())
            } else {
                Err(format!("{closed} of {} not open yet", w.streams.len()))
            }
        })
        .await;
        w
    }

    /// Waits (up to `timeout`) until every stream has delivered every write the history
    /// acknowledged (or resynced past it), stops the streams, and checks them.
    /// `shards_of(key)` is every shard the key lived in during the run (one per ring size
    /// the run used): a resync of any of them excuses the key's earlier writes.
    pub async fn check(
        mut self,
        refused: &[(String, String)],
        timeout: Duration,
        shards_of: impl Fn(&str) -> Vec<u32>,
    ) -> WatchReport {
        let records = self.history.records();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let missing: usize = self.streams.iter().map(|s| gaps(s, &records, &shards_of).len()).sum();
            if missing == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.store(true, Ordering::Release);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}

        let written: HashSet<(String, String)> = records
            .iter()
            .filter_map(|r| match &r.op {
                Op::Put { value } | Op::CasPut { value, .. } => Some((r.key.clone(), value.clone())),
                _ => None,
            })
            .collect();
        let refused: HashSet<&(String, String)> = refused.iter().collect();
        let mut report = WatchReport { streams: self.streams.len(), ..WatchReport::default() };
        for s in &self.streams {
            let seen = s.seen.lock().clone();
            report.events += seen.iter().filter(|e| e.kind != "resync").count();
            report.resyncs += seen.iter().filter(|e| e.kind == "resync").count();
            report.reconnects += s.reconnects.load(Ordering::Relaxed);
            report.gaps.extend(gaps(s, &records, &shards_of));
            report.violations.extend(misdeliveries(s, &seen, &written, &refused));
        }
        report
    }
}

/// What stream `s` delivered that it should not have: a revision of its key going back
/// with no resync between, a value no client wrote, a value whose write was refused.
fn misdeliveries(
    s: &Stream,
    seen: &[Seen],
    written: &HashSet<(String, String)>,
    refused: &HashSet<&(String, String)>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut last_revision: Option<u64> = None;
    for e in seen {
        if e.kind == "resync" {
            last_revision = None;
            continue;
        }
        if let (Some(last), Some(r)) = (last_revision, e.revision) {
            if r <= last {
                wrong.push(format!(
                    "watch of {} via {}: revision {r} after {last} with no resync between",
                    s.key, s.node
                ));
            }
        }
        last_revision = e.revision.or(last_revision);
        if e.kind == "put" {
            let pair = (s.key.clone(), e.value.clone().unwrap_or_default());
            if refused.contains(&pair) {
                wrong.push(format!(
                    "watch of {} via {} delivered {:?}, a write the node answered `unavailable`",
                    s.key, s.node, pair.1
                ));
            } else if !written.contains(&pair) {
                wrong
                    .push(format!("watch of {} via {} delivered {:?}, a value no client wrote", s.key, s.node, pair.1));
            }
        }
    }
    wrong
}

/// The acknowledged writes of `s`'s key that `s` has not delivered and no later resync
/// excuses.
fn gaps(s: &Stream, records: &[Record], shards_of: &impl Fn(&str) -> Vec<u32>) -> Vec<String> {
    let Some(opened) = *s.opened_ns.lock() else {
        return vec![format!("watch of {} via {} never opened", s.key, s.node)];
    };
    let seen = s.seen.lock();
    let delivered: BTreeSet<&str> =
        seen.iter().filter(|e| e.kind == "put").filter_map(|e| e.value.as_deref()).collect();
    let shards: BTreeSet<u32> = shards_of(&s.key).into_iter().collect();
    let resyncs: Vec<u64> = seen
        .iter()
        .filter(|e| e.kind == "resync" && e.shard.is_none_or(|sh| shards.contains(&sh)))
        .map(|e| e.at_ns)
        .collect();
    records
        .iter()
        .filter(|r| r.key == s.key && r.invoked_ns >= opened)
        .filter_map(|r| match (&r.op, &r.outcome) {
            (Op::Put { value }, Outcome::Put) | (Op::CasPut { value, .. }, Outcome::Cas(true)) => Some((r, value)),
            _ => None,
        })
        .filter(|(r, value)| !delivered.contains(value.as_str()) && !resyncs.iter().any(|at| *at >= r.invoked_ns))
        .map(|(_, value)| format!("{}={value} via {}", s.key, s.node))
        .collect()
}

/// Keeps one stream open until stopped, reconnecting with the last event id.
async fn follow(s: Arc<Stream>, http: reqwest::Client, stop: Arc<AtomicBool>, history: History) {
    let mut last_id: Option<String> = None;
    let url = format!("{}/v1/watch?key={}", s.node, query_value(&s.key));
    while !stop.load(Ordering::Acquire) {
        let mut req = http.get(&url);
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
        }
        let mut resp = match req.send().await {
            Ok(r) if r.status() == 200 => r,
            _ => {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        {
            let mut opened = s.opened_ns.lock();
            if opened.is_none() {
                *opened = Some(history.now_ns());
            } else {
                s.reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (id, seen) = parse(&block, history.now_ns());
                if let Some(id) = id {
                    last_id = Some(id); // also from an id-only block: the stream's opening position
                }
                if let Some(seen) = seen {
                    s.seen.lock().push(seen);
                }
            }
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// One SSE block as its id (if it has one) and its event (`None` for a keep-alive
/// comment or an id-only block).
fn parse(block: &str, at_ns: u64) -> (Option<String>, Option<Seen>) {
    let (mut event, mut id, mut data) = (String::new(), None, String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_string()).filter(|i| !i.is_empty());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim());
        }
    }
    if event.is_empty() {
        return (id, None);
    }
    let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
    let shard = v["shard"].as_u64().and_then(|s| u32::try_from(s).ok());
    let revision = v["revision"].as_u64().or_else(|| v["current_revision"].as_u64());
    let value = v["value"].as_str().map(str::to_string);
    (id, Some(Seen { at_ns, kind: event, value, shard, revision }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(opened: u64, seen: Vec<Seen>) -> Stream {
        Stream {
            key: "k".into(),
            node: "n1".into(),
            seen: Mutex::new(seen),
            opened_ns: Mutex::new(Some(opened)),
            reconnects: Default::default(),
        }
    }

    fn put(at_ns: u64, value: &str, revision: u64) -> Seen {
        Seen { at_ns, kind: "put".into(), value: Some(value.into()), shard: Some(0), revision: Some(revision) }
    }

    fn resync(at_ns: u64, shard: u32) -> Seen {
        Seen { at_ns, kind: "resync".into(), value: None, shard: Some(shard), revision: None }
    }

    fn acked(value: &str, invoked_ns: u64) -> Record {
        Record {
            key: "k".into(),
            op: Op::Put { value: value.into() },
            invoked_ns,
            completed_ns: Some(invoked_ns + 5),
            outcome: Outcome::Put,
        }
    }

    #[test]
    fn an_acknowledged_write_missing_from_a_stream_is_a_gap_unless_a_resync_follows_it() {
        let records = vec![acked("a", 10), acked("b", 20), acked("c", 30)];
        let shards = |_: &str| vec![0];
        // Every write delivered: no gap.
        let s = stream(5, vec![put(12, "a", 1), put(22, "b", 2), put(32, "c", 3)]);
        assert!(gaps(&s, &records, &shards).is_empty());
        // "b" skipped silently: a gap.
        let s = stream(5, vec![put(12, "a", 1), put(32, "c", 3)]);
        assert_eq!(gaps(&s, &records, &shards), vec!["k=b via n1".to_string()]);
        // "b" skipped, but a resync of the key's shard came after it was written: allowed.
        let s = stream(5, vec![put(12, "a", 1), resync(25, 0), put(32, "c", 3)]);
        assert!(gaps(&s, &records, &shards).is_empty());
        // A resync of another shard excuses nothing.
        let s = stream(5, vec![put(12, "a", 1), resync(25, 1), put(32, "c", 3)]);
        assert_eq!(gaps(&s, &records, &shards).len(), 1);
        // A resync before the write was invoked excuses nothing either.
        let s = stream(5, vec![put(12, "a", 1), resync(15, 0), put(32, "c", 3)]);
        assert_eq!(gaps(&s, &records, &shards).len(), 1);
        // Writes from before the stream opened are not its to deliver.
        let s = stream(25, vec![put(32, "c", 3)]);
        assert!(gaps(&s, &records, &shards).is_empty());
    }

    #[test]
    fn revisions_going_back_unknown_values_and_refused_writes_are_misdeliveries() {
        let written: HashSet<(String, String)> =
            [("k", "a"), ("k", "b"), ("k", "x")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let refused_pair = ("k".to_string(), "x".to_string());
        let refused: HashSet<&(String, String)> = [&refused_pair].into_iter().collect();
        let s = stream(0, vec![]);
        let ok = vec![put(1, "a", 1), put(2, "b", 2), resync(3, 0), put(4, "a", 1)];
        assert!(misdeliveries(&s, &ok, &written, &refused).is_empty());
        let back = vec![put(1, "a", 2), put(2, "b", 2)];
        assert!(misdeliveries(&s, &back, &written, &refused)[0].contains("revision 2 after 2"));
        let phantom = vec![put(1, "zz", 1)];
        assert!(misdeliveries(&s, &phantom, &written, &refused)[0].contains("no client wrote"));
        let broken_word = vec![put(1, "x", 1)];
        assert!(misdeliveries(&s, &broken_word, &written, &refused)[0].contains("unavailable"));
    }
}
