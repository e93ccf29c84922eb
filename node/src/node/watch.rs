//! Watches, the core of them: what a watch follows (`Target`), its resume cursor, and
//! the loop that follows the watched keys through this node's replicas' change
//! histories ([`crate::shard::events`]) as the ring splits and merges, handing each
//! change or `resync` to a channel as a [`Item`]. How it reaches a client (server-sent
//! events, the relay through a peer) is the HTTP layer's: `api::watch`, which also has
//! the whole story of cursors and resyncs.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::Node;
use crate::ring::ShardId;
use crate::router::{calls, RouteError};
use crate::shard::events::{Event, Since};
use crate::shard::Shard;

/// What a watch follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Key(Vec<u8>),
    Prefix(Vec<u8>),
}

impl Target {
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            Target::Key(k) => k == key,
            Target::Prefix(p) => key.starts_with(p),
        }
    }
}

/// A resume cursor that is not one of this watch's.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("Last-Event-ID is not a cursor of this watch")]
pub struct BadCursor;

/// What the follow loop hands on, in order.
#[derive(Debug)]
pub enum Item {
    /// A change of a watched key in `shard`; `cursor` resumes right after it.
    Change { event: Event, shard: ShardId, cursor: String },
    /// The stream cannot show every change from here on: re-read, then continue.
    /// `cursor` is the position reached (none when no shard is followed right now).
    Resync { resync: Resync, cursor: Option<String> },
}

/// Why a watch resyncs, and where each shard stands (the `resync` event's data).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Resync {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub shard: ShardId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_available: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
    pub reason: &'static str,
}

impl Resync {
    fn new(shard: ShardId, reason: &'static str) -> Self {
        Resync { kind: "resync", shard, from_revision: None, first_available: None, current_revision: None, reason }
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
pub fn decode_cursor(s: &str, shards: &[ShardId]) -> Result<Vec<(ShardId, Option<u64>)>, BadCursor> {
    let bad = || BadCursor;
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
pub fn wanted(node: &Node, db: u8, target: &Target) -> Vec<ShardId> {
    match target {
        Target::Key(k) => vec![node.router.locate(db, k)],
        Target::Prefix(_) => node.router.ring_shards(),
    }
}

/// Cursors for a watch "from now": each shard's revision at a linearizable point,
/// confirmed by its leader, so a write acknowledged before the watch opened is never
/// delivered, even when this replica has not applied it yet (the stream then waits for
/// the replica to pass that revision).
pub async fn now_cursors(node: &Node, shards: &[ShardId]) -> Result<Vec<(ShardId, Option<u64>)>, RouteError> {
    let revisions = futures::future::join_all(shards.iter().map(|s| node.execute(*s, calls::Revision))).await;
    let mut cursors = Vec::with_capacity(shards.len());
    for (shard, r) in shards.iter().zip(revisions) {
        cursors.push((*shard, Some(r?)));
    }
    Ok(cursors)
}

/// Most events taken from one shard's history per pass.
const PASS: usize = 512;

/// A resync, with the cursors reached so far (none when no shard is followed).
fn resync_item(cursors: &[(ShardId, u64)], resync: Resync) -> Item {
    Item::Resync { resync, cursor: (!cursors.is_empty()).then(|| encode_cursor(cursors)) }
}

/// A change of a watched key, with the cursors that resume after it.
fn change_item(event: Event, shard: ShardId, cursors: &[(ShardId, u64)]) -> Item {
    Item::Change { event, shard, cursor: encode_cursor(cursors) }
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
    tx: &mpsc::Sender<Item>,
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
                tx.send(change_item(e, cursors[i].0, cursors)).await.map_err(|_| Closed)?;
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

/// Follows `target` in `db` from the `start` cursors (a shard without one is not
/// followed until the ring says so), handing every change and resync to `tx` until the
/// receiver goes away, the node stops, or the watched keys leave this node (a last
/// resync says to reconnect).
pub async fn follow(
    node: Arc<Node>,
    db: u8,
    target: Target,
    start: Vec<(ShardId, Option<u64>)>,
    tx: mpsc::Sender<Item>,
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
            let why = "the watched keys moved out of this shard and its remaining history is not on this node; re-read them, then continue";
            if tx.send(resync_item(&cursors, Resync::new(shard, why))).await.is_err() {
                return;
            }
        }
        for shard in resync {
            let Some(sh) = node.shards.get(shard) else {
                // Moved to a shard this node does not hold: the client reconnects (any
                // node relays it to one that does) and resumes from its cursor.
                let why = "the watched keys moved to a shard this node does not hold; reconnect";
                let _ = tx.send(resync_item(&cursors, Resync::new(shard, why))).await;
                return;
            };
            let current = sh.events.current();
            cursors.push((shard, current));
            let why = "the ring changed: the watched keys are (also) in this shard now; re-read them, then continue";
            let resync = Resync { current_revision: Some(current), ..Resync::new(shard, why) };
            if tx.send(resync_item(&cursors, resync)).await.is_err() {
                return;
            }
        }
        let mut more = false;
        for i in 0..cursors.len() {
            let (shard, after) = cursors[i];
            let Some(sh) = node.shards.get(shard) else {
                // Its replica here was moved away: the client reconnects (any node
                // relays it to one that holds the shard) and resumes from its cursor.
                let why = "this node no longer holds the watched shard; reconnect";
                let _ = tx.send(resync_item(&cursors, Resync::new(shard, why))).await;
                return;
            };
            match sh.events.since(after, PASS) {
                Since::Events(events) => {
                    more |= events.len() == PASS;
                    for e in events {
                        cursors[i].1 = e.revision;
                        if e.db == db
                            && target.matches(&e.key)
                            && tx.send(change_item(e, shard, &cursors)).await.is_err()
                        {
                            return; // the client went away
                        }
                    }
                }
                Since::Gap { first, current } => {
                    cursors[i].1 = current;
                    let why = "history needed for this cursor is not kept here; re-read the keys, then continue";
                    let resync = Resync {
                        from_revision: Some(after + 1),
                        first_available: Some(first),
                        current_revision: Some(current),
                        ..Resync::new(shard, why)
                    };
                    if tx.send(resync_item(&cursors, resync)).await.is_err() {
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
