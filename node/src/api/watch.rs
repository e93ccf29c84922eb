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

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::auth::{Access, Op};
use super::params;
use super::query::{Query, WatchQuery};
use crate::api::error::ApiError;
use crate::node::watch::{self, decode_cursor, encode_cursor, now_cursors, wanted, Item, Target};
use crate::node::Node;
use crate::ring::ShardId;
use crate::shard::events::Event;

/// How many items the follow loop may be ahead of the client.
const BACKLOG: usize = 256;

/// One change as an SSE event; its id is the resume cursor.
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

/// A follow-loop item as an SSE event. A resync with no shard followed at this moment
/// has no position to give, and an empty `id:` would clear the client's resume point:
/// that event carries none.
fn to_sse(item: Item) -> SseEvent {
    match item {
        Item::Change { event, shard, cursor } => sse_event(&event, shard, &cursor),
        Item::Resync { resync, cursor } => {
            let data = serde_json::to_string(&resync).unwrap_or_default();
            let event = SseEvent::default().event("resync").data(data);
            match cursor {
                Some(c) => event.id(c),
                None => event,
            }
        }
    }
}

/// `GET /v1/watch`: served here, or relayed from a node that holds what it needs. The
/// principal is checked here, before any stream opens; a relayed watch is not checked
/// again (the internal port trusts its peers).
pub async fn watch(
    State(node): State<Arc<Node>>,
    access: Access,
    Query(q): Query<WatchQuery>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match (&q.key, &q.prefix) {
        (Some(key), None) => access.allow(Op::Read, q.db.0, key.as_bytes())?,
        (None, prefix) => access.allow_prefix(Op::Read, q.db.0, prefix.as_deref().unwrap_or("").as_bytes())?,
        (Some(_), Some(_)) => {} // refused by `open` (400)
    }
    open(node, q, raw, headers, true).await
}

/// `GET /internal/watch`: a watch relayed by a peer; never relayed further.
pub async fn watch_internal(
    State(node): State<Arc<Node>>,
    Query(q): Query<WatchQuery>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    open(node, q, raw, headers, false).await
}

/// Opens a watch here, or relays it (`raw`: the query as the client sent it).
async fn open(
    node: Arc<Node>,
    q: WatchQuery,
    raw: Option<String>,
    headers: HeaderMap,
    may_relay: bool,
) -> Result<Response, ApiError> {
    let db = q.db.0;
    let target = match (q.key, q.prefix) {
        (Some(k), None) => Target::Key(params::key(&k, node.config.max_key_bytes)?),
        (None, Some(p)) => Target::Prefix(p.into_bytes()),
        // Neither: every key of the database, as `GET /v1/kv` lists them all.
        (None, None) => Target::Prefix(Vec::new()),
        (Some(_), Some(_)) => return Err(ApiError::bad_request("bad_query", "give `key` or `prefix`, not both")),
    };
    // An empty id is no id (the SSE rule: it resets the client's last event id).
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).filter(|id| !id.trim().is_empty());
    let start = q.start_revision.map(|r| r.0);
    let shards = wanted(&node, db, &target);
    let missing: Vec<ShardId> = shards.iter().copied().filter(|s| node.shards.get(*s).is_none()).collect();
    if !missing.is_empty() || shards.is_empty() {
        return match may_relay {
            true => relay(&node, &target, &missing, raw.as_deref().unwrap_or(""), last_id).await,
            false => Err(ApiError::Unavailable { message: format!("no replica of shard(s) {missing:?} here") }),
        };
    }
    let cursors: Vec<(ShardId, Option<u64>)> = match (last_id, start) {
        (Some(id), _) => decode_cursor(id, &shards).map_err(|e| ApiError::bad_request("bad_cursor", e.to_string()))?,
        (None, Some(r)) => shards.iter().map(|s| (*s, Some(r - 1))).collect(),
        (None, None) => now_cursors(&node, &shards).await?,
    };
    // The stream opens with its position as an SSE id (no event is dispatched), so a
    // client whose connection breaks before the first change still resumes from here:
    // without it, it would reconnect with no Last-Event-ID and start at "now", missing
    // whatever changed meanwhile. (Found by the nemesis: a node killed right after its
    // watches opened.)
    let opening: Option<Vec<(ShardId, u64)>> = cursors.iter().map(|(s, r)| r.map(|r| (*s, r))).collect();
    let opening =
        opening.filter(|c| !c.is_empty()).map(|c| SseEvent::default().id(encode_cursor(&c)).comment("watching"));
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(watch::follow(node, db, target, cursors, tx));
    let events =
        tokio_stream::iter(opening).chain(ReceiverStream::new(rx).map(to_sse)).map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
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
