//! `GET /v1/watch?key=K` or `?prefix=P`: changes as server-sent events.
//!
//! Events come from this node's replicas' change histories ([`crate::shard::events`]),
//! which see every committed change of their shard in revision order whoever leads, so a
//! leader change loses nothing. Each event's SSE `id` is a resume cursor — the revision
//! seen so far in every watched shard — that a client sends back as `Last-Event-ID`
//! (browsers' EventSource does this by itself). When the history no longer holds what a
//! cursor needs (it is bounded, and it starts afresh when a node restarts or installs a
//! snapshot), the client gets an explicit `resync` event instead of a silent gap: re-read
//! the keys, then keep consuming the stream.
//!
//! Watches follow the ring. After a split the new shard's history continues its
//! parent's (both count revisions on from the parent's at the split), so the stream
//! delivers the parent's events up to the split, then the new shard's, without a gap.
//! When a merge (or anything else) moves the watched keys, the stream adds the shard
//! that holds them now with a `resync` event (the keys' history up to the move lives
//! elsewhere), and drops the ones that no longer hold them after delivering what they
//! still have here.
//! A node without a replica of the shard a key watch needs passes the watch on to one
//! that has it (over the internal port) and relays the stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::params;
use crate::api::error::ApiError;
use crate::node::Node;
use crate::ring::ShardId;
use crate::router::calls;
use crate::shard::events::{Event, Since};
use crate::shard::Shard;

/// What a watch follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Key(Vec<u8>),
    Prefix(Vec<u8>),
}

impl Target {
    fn matches(&self, key: &[u8]) -> bool {
        match self {
            Target::Key(k) => k == key,
            Target::Prefix(p) => key.starts_with(p),
        }
    }
}

/// Encodes per-shard cursors as an SSE id: `shard:revision` pairs joined by `.`.
pub fn encode_cursor(cursors: &[(ShardId, u64)]) -> String {
    cursors.iter().map(|(s, r)| format!("{s}:{r}")).collect::<Vec<_>>().join(".")
}

/// Decodes a `Last-Event-ID` cursor into the position in each of `shards` it names
/// (`None`: a shard the cursor does not know, after a ring change), followed by the
/// shards it names that are no longer watched (a split's parent, whose cursor the new
/// shard continues from; the stream lets them go after that).
pub fn decode_cursor(s: &str, shards: &[ShardId]) -> Result<Vec<(ShardId, Option<u64>)>, ApiError> {
    let bad = || ApiError::bad_request("bad_cursor", "Last-Event-ID is not a cursor of this watch");
    let mut named = std::collections::BTreeMap::new();
    for part in s.split('.') {
        let (shard, rev) = part.split_once(':').ok_or_else(bad)?;
        named.insert(shard.parse::<ShardId>().map_err(|_| bad())?, rev.parse::<u64>().map_err(|_| bad())?);
    }
    let mut cursors: Vec<(ShardId, Option<u64>)> = shards.iter().map(|s| (*s, named.get(s).copied())).collect();
    cursors.extend(named.into_iter().filter(|(s, _)| !shards.contains(s)).map(|(s, r)| (s, Some(r))));
    Ok(cursors)
}

/// The shards a watch needs now, as this node's routes see the ring.
fn wanted(node: &Node, db: u8, target: &Target) -> Vec<ShardId> {
    match target {
        Target::Key(k) => vec![node.router.locate(db, k)],
        Target::Prefix(_) => node.router.ring_shards(),
    }
}

fn sse_event(e: &Event, shard: ShardId, cursor: &str) -> SseEvent {
    let mut data = json!({
        "type": e.kind.as_str(),
        "key": String::from_utf8_lossy(&e.key),
        "db": e.db,
        "shard": shard,
        "revision": e.revision,
    });
    if let Some(v) = &e.value {
        let (value, encoding) = params::encode_value(v);
        data["value"] = json!(value);
        if let Some(enc) = encoding {
            data["encoding"] = json!(enc);
        }
    }
    SseEvent::default().event(e.kind.as_str()).id(cursor).data(data.to_string())
}

/// `GET /v1/watch`: served here, or relayed from a node that holds what it needs.
pub async fn watch(
    State(node): State<Arc<Node>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    open(node, q, headers, true).await
}

/// `GET /internal/watch`: a watch relayed by a peer; never relayed further.
pub async fn watch_internal(
    State(node): State<Arc<Node>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    open(node, q, headers, false).await
}

async fn open(node: Arc<Node>, raw: Option<String>, headers: HeaderMap, may_relay: bool) -> Result<Response, ApiError> {
    let q = params::query(raw.as_deref(), &["key", "prefix", "db", "start_revision"])?;
    let db = params::db(&q)?;
    let target = match (q.get("key"), q.get("prefix")) {
        (Some(k), None) => Target::Key(params::key(k, node.config.max_key_bytes)?),
        (None, Some(p)) => Target::Prefix(p.as_bytes().to_vec()),
        // Neither: every key of the database, as `GET /v1/kv` lists them all.
        (None, None) => Target::Prefix(Vec::new()),
        (Some(_), Some(_)) => return Err(ApiError::bad_request("bad_query", "give `key` or `prefix`, not both")),
    };
    // An empty id is no id (the SSE rule: it resets the client's last event id).
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).filter(|id| !id.trim().is_empty());
    let start = q
        .get("start_revision")
        .map(|s| s.parse::<u64>().ok().filter(|r| (1..=params::MAX_REVISION).contains(r)))
        .map(|r| {
            let why = format!("start_revision must be an integer 1..={}", params::MAX_REVISION);
            r.ok_or_else(|| ApiError::bad_request("bad_revision", why))
        })
        .transpose()?;
    let shards = wanted(&node, db, &target);
    let missing: Vec<ShardId> = shards.iter().copied().filter(|s| node.shards.get(*s).is_none()).collect();
    if !missing.is_empty() || shards.is_empty() {
        return match may_relay {
            true => relay(&node, &target, &missing, raw.as_deref().unwrap_or(""), last_id).await,
            false => Err(ApiError::Unavailable { message: format!("no replica of shard(s) {missing:?} here") }),
        };
    }
    let cursors: Vec<(ShardId, Option<u64>)> = match (last_id, start) {
        (Some(id), _) => decode_cursor(id, &shards)?,
        (None, Some(r)) => shards.iter().map(|s| (*s, Some(r - 1))).collect(),
        (None, None) => now_cursors(&node, &shards).await?,
    };
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(stream_events(node, db, target, cursors, tx));
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// Cursors for a watch "from now": each shard's revision at a linearizable point,
/// confirmed by its leader, so a write acknowledged before the watch opened is never
/// delivered, even when this replica has not applied it yet (the stream then waits for
/// the replica to pass that revision).
async fn now_cursors(node: &Node, shards: &[ShardId]) -> Result<Vec<(ShardId, Option<u64>)>, ApiError> {
    let revisions = futures::future::join_all(shards.iter().map(|s| node.execute(*s, calls::Revision))).await;
    let mut cursors = Vec::with_capacity(shards.len());
    for (shard, r) in shards.iter().zip(revisions) {
        cursors.push((*shard, Some(r?)));
    }
    Ok(cursors)
}

/// Passes the watch to a node holding a replica of every shard it needs and relays the
/// stream. A prefix watch needs all of them: on a ring where no node holds every shard
/// it is refused with a clear 503.
async fn relay(
    node: &Node,
    target: &Target,
    missing: &[ShardId],
    query: &str,
    last_id: Option<&str>,
) -> Result<Response, ApiError> {
    let ring = node.router.ring_shards();
    let need: Vec<ShardId> = match target {
        Target::Key(_) => missing.to_vec(),
        Target::Prefix(_) => ring.clone(),
    };
    let mut holders: Option<std::collections::BTreeSet<u64>> = None;
    for s in &need {
        let members: std::collections::BTreeSet<u64> =
            node.router.route(*s).map(|r| r.members.into_iter().collect()).unwrap_or_default();
        holders = Some(match holders {
            None => members,
            Some(h) => h.intersection(&members).copied().collect(),
        });
    }
    let holders: Vec<u64> = holders.unwrap_or_default().into_iter().filter(|n| *n != node.id).collect();
    if holders.is_empty() {
        return Err(ApiError::Unavailable {
            message: format!(
                "no node holds a replica of every shard this watch needs ({need:?}); watch single keys, or place every shard on some node"
            ),
        });
    }
    let mut last = String::new();
    for peer in holders {
        match node.peers.open_stream(peer, &format!("/internal/watch?{query}"), last_id).await {
            Ok(mut resp) => {
                let (tx, rx) = mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(64);
                tokio::spawn(async move {
                    loop {
                        let chunk = tokio::select! {
                            c = resp.chunk() => c,
                            _ = tx.closed() => return,
                        };
                        match chunk {
                            Ok(Some(b)) => {
                                if tx.send(Ok(b)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) | Err(_) => return, // the client resumes with Last-Event-ID
                        }
                    }
                });
                let body = axum::body::Body::from_stream(ReceiverStream::new(rx));
                return Ok((
                    [
                        (axum::http::header::CONTENT_TYPE, "text/event-stream"),
                        (axum::http::header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
                    .into_response());
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(ApiError::Unavailable { message: format!("could not open the watch on a node holding its shards: {last}") })
}

/// Most events taken from one shard's history per pass.
const PASS: usize = 512;

/// A `resync` event carrying `data`, with the cursors reached so far as its id.
fn resync_event(cursors: &[(ShardId, u64)], data: &serde_json::Value) -> SseEvent {
    let event = SseEvent::default().event("resync").data(data.to_string());
    // With no shard followed at this moment there is no position to give, and an empty
    // `id:` would clear the client's resume point: the event then carries none.
    if cursors.is_empty() {
        event
    } else {
        event.id(encode_cursor(cursors))
    }
}

/// The stream ended: the client went away.
struct Closed;

/// Delivers the events of `cursors[i]`'s shard after its cursor, up to revision `upto`:
/// a shard the watch is about to stop following. `Ok(false)` when the history needed
/// is no longer kept here.
async fn drain(
    sh: &Shard,
    i: usize,
    upto: u64,
    db: u8,
    target: &Target,
    cursors: &mut [(ShardId, u64)],
    tx: &mpsc::Sender<Result<SseEvent, Infallible>>,
) -> Result<bool, Closed> {
    loop {
        if cursors[i].1 >= upto {
            return Ok(true);
        }
        let Since::Events(events) = sh.events.since(cursors[i].1, PASS) else { return Ok(false) };
        if events.is_empty() {
            return Ok(true);
        }
        for e in events {
            if e.revision > upto {
                return Ok(true);
            }
            cursors[i].1 = e.revision;
            if e.db == db && target.matches(&e.key) {
                let ev = sse_event(&e, cursors[i].0, &encode_cursor(cursors));
                tx.send(Ok(ev)).await.map_err(|_| Closed)?;
            }
        }
    }
}

/// When `child` is a split's new shard opened here and the watch has a cursor in its
/// parent, also hosted here: the parent's replica, its cursor index and the revision of
/// the split. The child's history continues the parent's from there, so the watch goes
/// on without a gap.
fn split_origin(node: &Node, child: ShardId, cursors: &[(ShardId, u64)]) -> Option<(Arc<Shard>, usize, u64)> {
    let sh = node.shards.get(child)?;
    let born = sh.events.born()?;
    let parent = child.checked_sub(sh.slice().modulus / 2)?;
    let i = cursors.iter().position(|(s, _)| *s == parent)?;
    Some((node.shards.get(parent)?, i, born))
}

/// How long a watch keeps following a parent while this node opens the split's new
/// shard, before it gives up on continuing without a gap and resyncs instead.
const OPENING_PATIENCE: Duration = Duration::from_secs(5);

/// When `child` is a split's new shard that this node holds a replica of (as the routes
/// say) but has not opened yet, and the watch follows its parent here: the parent.
fn opening_parent(node: &Node, child: ShardId, cursors: &[(ShardId, u64)]) -> Option<ShardId> {
    let route = node.router.route(child)?;
    if !route.members.contains(&node.id) {
        return None;
    }
    let parent = child.checked_sub(route.modulus / 2)?;
    node.shards.get(parent)?;
    cursors.iter().any(|(s, _)| *s == parent).then_some(parent)
}

async fn stream_events(
    node: Arc<Node>,
    db: u8,
    target: Target,
    start: Vec<(ShardId, Option<u64>)>,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
) {
    let mut cursors: Vec<(ShardId, u64)> = start.into_iter().filter_map(|(s, at)| Some((s, at?))).collect();
    let mut opening: std::collections::BTreeMap<ShardId, tokio::time::Instant> = Default::default();
    loop {
        // Register for wake-ups before looking, so no change slips between look and wait.
        let changed = node.changes.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        // The ring may have moved the watched keys: follow them. A split's new shard
        // continues from its parent's cursor (the parent's history holds the moved
        // keys' events up to the split); any other new shard starts with a resync.
        let mut want = wanted(&node, db, &target);
        let mut resync: Vec<ShardId> = Vec::new();
        let mut kept: Vec<ShardId> = Vec::new();
        for s in want.iter().copied().filter(|s| !cursors.iter().any(|(c, _)| c == s)).collect::<Vec<_>>() {
            if node.shards.get(s).is_none() {
                // A split's new shard with a replica here that is not open yet (the
                // routes can learn of it before the local parent applies the split):
                // keep following the parent a moment longer.
                let since = *opening.entry(s).or_insert_with(tokio::time::Instant::now);
                if let Some(p) = opening_parent(&node, s, &cursors).filter(|_| since.elapsed() < OPENING_PATIENCE) {
                    kept.push(p);
                    continue;
                }
            }
            let Some((ps, i, born)) = split_origin(&node, s, &cursors) else {
                resync.push(s);
                continue;
            };
            // The parent's events up to the split come first, also when the parent is
            // still followed (a prefix watch): after it, the keys' events are the new
            // shard's, which may otherwise overtake a backlog of the parent's.
            match drain(&ps, i, born, db, &target, &mut cursors, &tx).await {
                Ok(true) => {}
                Ok(false) => {
                    resync.push(s);
                    continue;
                }
                Err(Closed) => return,
            }
            cursors.push((s, born));
        }
        opening.retain(|s, _| !cursors.iter().any(|(c, _)| c == s));
        want.extend(kept);
        // Shards no longer followed: deliver what they still hold, then let them go. One
        // already gone from this node (a merge's retired donor) may have had more.
        let mut lost: Vec<ShardId> = Vec::new();
        for i in 0..cursors.len() {
            let shard = cursors[i].0;
            if want.contains(&shard) {
                continue;
            }
            let drained = match node.shards.get(shard) {
                Some(sh) => drain(&sh, i, sh.events.current(), db, &target, &mut cursors, &tx).await,
                None => Ok(false),
            };
            match drained {
                Ok(true) => {}
                Ok(false) => lost.push(shard),
                Err(Closed) => return,
            }
        }
        cursors.retain(|(s, _)| want.contains(s));
        for shard in lost {
            let data = json!({
                "type": "resync", "shard": shard,
                "reason": "the watched keys moved out of this shard and its remaining history is not on this node; re-read them, then continue",
            });
            if tx.send(Ok(resync_event(&cursors, &data))).await.is_err() {
                return;
            }
        }
        for shard in resync {
            let Some(sh) = node.shards.get(shard) else {
                // Moved to a shard this node does not hold: the client reconnects (any
                // node relays it to one that does) and resumes from its cursor.
                let data = json!({ "type": "resync", "shard": shard, "reason": "the watched keys moved to a shard this node does not hold; reconnect" });
                let _ = tx.send(Ok(resync_event(&cursors, &data))).await;
                return;
            };
            let current = sh.events.current();
            cursors.push((shard, current));
            let data = json!({
                "type": "resync", "shard": shard, "current_revision": current,
                "reason": "the ring changed: the watched keys are (also) in this shard now; re-read them, then continue",
            });
            if tx.send(Ok(resync_event(&cursors, &data))).await.is_err() {
                return;
            }
        }
        let mut more = false;
        for i in 0..cursors.len() {
            let (shard, after) = cursors[i];
            let Some(sh) = node.shards.get(shard) else {
                // Its replica here was moved away: the client reconnects (any node
                // relays it to one that holds the shard) and resumes from its cursor.
                let data = json!({ "type": "resync", "shard": shard, "reason": "this node no longer holds the watched shard; reconnect" });
                let _ = tx.send(Ok(resync_event(&cursors, &data))).await;
                return;
            };
            match sh.events.since(after, PASS) {
                Since::Events(events) => {
                    more |= events.len() == PASS;
                    for e in events {
                        cursors[i].1 = e.revision;
                        if e.db == db && target.matches(&e.key) {
                            let ev = sse_event(&e, shard, &encode_cursor(&cursors));
                            if tx.send(Ok(ev)).await.is_err() {
                                return; // the client went away
                            }
                        }
                    }
                }
                Since::Gap { first, current } => {
                    cursors[i].1 = current;
                    let data = json!({
                        "type": "resync", "shard": shard, "from_revision": after + 1,
                        "first_available": first, "current_revision": current,
                        "reason": "history needed for this cursor is not kept here; re-read the keys, then continue",
                    });
                    let ev = resync_event(&cursors, &data);
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
            }
        }
        if more {
            continue;
        }
        tokio::select! {
            _ = &mut changed => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {} // ring changes arrive without events
            _ = tx.closed() => return,
            _ = node.stopping.cancelled() => return, // the stream ends; clients resume with Last-Event-ID
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_follow_a_changed_ring() {
        let c = vec![(0, 5), (1, 0), (3, 17)];
        let s = encode_cursor(&c);
        assert_eq!(s, "0:5.1:0.3:17");
        assert_eq!(decode_cursor(&s, &[0, 1, 3]).unwrap(), vec![(0, Some(5)), (1, Some(0)), (3, Some(17))]);
        // Shard 3 merged away and shard 2 is new: 2 has no cursor, 3's comes last.
        assert_eq!(decode_cursor(&s, &[0, 1, 2]).unwrap(), vec![(0, Some(5)), (1, Some(0)), (2, None), (3, Some(17))]);
        assert!(decode_cursor("garbage", &[0]).is_err());
        assert!(decode_cursor("0:x", &[0]).is_err());
    }

    #[test]
    fn targets_match_keys_or_prefixes() {
        assert!(Target::Key(b"a/b".to_vec()).matches(b"a/b"));
        assert!(!Target::Key(b"a/b".to_vec()).matches(b"a/bc"));
        assert!(Target::Prefix(b"a/".to_vec()).matches(b"a/bc"));
        assert!(Target::Prefix(Vec::new()).matches(b"anything"));
    }
}
