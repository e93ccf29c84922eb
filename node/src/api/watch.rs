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
use crate::error::ApiError;
use crate::node::Node;
use crate::ring::ShardId;
use crate::shard::events::{Event, Since};

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

/// Decodes a `Last-Event-ID` cursor; it must name exactly the watched shards.
pub fn decode_cursor(s: &str, shards: &[ShardId]) -> Result<Vec<(ShardId, u64)>, ApiError> {
    let bad = || ApiError::bad_request("bad_cursor", "Last-Event-ID is not a cursor of this watch");
    let mut out = Vec::new();
    for part in s.split('.') {
        let (shard, rev) = part.split_once(':').ok_or_else(bad)?;
        out.push((shard.parse().map_err(|_| bad())?, rev.parse().map_err(|_| bad())?));
    }
    let named: Vec<ShardId> = out.iter().map(|(s, _)| *s).collect();
    if named != shards {
        return Err(bad());
    }
    Ok(out)
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

/// `GET /v1/watch`.
pub async fn watch(
    State(node): State<Arc<Node>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = params::query(q.as_deref(), &["key", "prefix", "db", "start_revision"])?;
    let db = params::db(&q)?;
    let target = match (q.get("key"), q.get("prefix")) {
        (Some(k), None) => Target::Key(params::key(k, node.config.max_key_bytes)?),
        (None, Some(p)) => Target::Prefix(p.as_bytes().to_vec()),
        _ => return Err(ApiError::bad_request("bad_query", "give exactly one of `key` or `prefix`")),
    };
    let shards: Vec<ShardId> = match &target {
        Target::Key(k) => vec![node.locate(db, k)],
        Target::Prefix(_) => node.shard_list().iter().map(|s| s.id).collect(),
    };
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let start = q
        .get("start_revision")
        .map(|s| s.parse::<u64>().ok().filter(|r| *r >= 1))
        .map(|r| r.ok_or_else(|| ApiError::bad_request("bad_revision", "start_revision must be an integer >= 1")))
        .transpose()?;
    let cursors = match (last_id, start) {
        (Some(id), _) => decode_cursor(id, &shards)?,
        (None, Some(r)) => shards.iter().map(|s| (*s, r - 1)).collect(),
        (None, None) => shards
            .iter()
            .map(|s| Ok((*s, node.shard(*s).ok_or_else(|| ApiError::internal("shard not hosted"))?.events.current())))
            .collect::<Result<_, ApiError>>()?,
    };
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(stream_events(node, db, target, cursors, tx));
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// Most events taken from one shard's history per pass.
const PASS: usize = 512;

async fn stream_events(
    node: Arc<Node>,
    db: u8,
    target: Target,
    mut cursors: Vec<(ShardId, u64)>,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
) {
    loop {
        // Register for wake-ups before looking, so no change slips between look and wait.
        let changed = node.changes.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let mut more = false;
        for i in 0..cursors.len() {
            let (shard, after) = cursors[i];
            let Some(sh) = node.shard(shard) else { return };
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
                    let ev = SseEvent::default().event("resync").id(encode_cursor(&cursors)).data(data.to_string());
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
            _ = tx.closed() => return,
            _ = node.stopping.cancelled() => return, // the stream ends; clients resume with Last-Event-ID
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_must_name_the_watched_shards() {
        let c = vec![(0, 5), (1, 0), (3, 17)];
        let s = encode_cursor(&c);
        assert_eq!(s, "0:5.1:0.3:17");
        assert_eq!(decode_cursor(&s, &[0, 1, 3]).unwrap(), c);
        assert!(decode_cursor(&s, &[0, 1, 2]).is_err());
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
