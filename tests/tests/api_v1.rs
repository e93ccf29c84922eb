//! The v1 additions on real clusters: compare-and-swap under contention, batches that are
//! atomic per shard, and watches that see every committed change across a leader kill
//! and resume (or are told to resync) after a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use ringkv_tests::{eventually, key_in_shard, key_path, Cluster, NodeClient};
use serde_json::{json, Value};

/// Adds one to `key` with a read, then a compare-and-swap, retrying on 409.
async fn cas_increment(n: &NodeClient, key: &str) -> u32 {
    let mut conflicts = 0;
    loop {
        let (value, rev) = match n.entry(key).await {
            Some(e) => (e.value.parse::<u64>().expect("a counter"), e.mod_revision),
            None => (0, 0),
        };
        let resp = n
            .request(Method::PUT, &format!("{}?prev_revision={rev}", key_path(key)))
            .body((value + 1).to_string())
            .send()
            .await
            .expect("PUT");
        match resp.status() {
            StatusCode::OK => return conflicts,
            StatusCode::CONFLICT => {
                let body: Value = resp.json().await.expect("JSON");
                assert_eq!(body["error"]["code"], "revision_mismatch");
                assert!(body["error"]["current_revision"].as_u64().is_some(), "{body}");
                conflicts += 1;
            }
            other => panic!("CAS PUT answered {other}: {}", resp.text().await.unwrap_or_default()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_increments_end_with_the_exact_count() {
    const CLIENTS: usize = 8;
    const EACH: usize = 25;
    let c = Cluster::start(3, 4).await;
    c.wait_for_leaders(&c.ids()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let n = c.node(c.ids()[i % 3]); // through leaders and followers alike
        tasks.spawn(async move {
            let mut conflicts = 0;
            for _ in 0..EACH {
                conflicts += cas_increment(&n, "counter").await;
            }
            conflicts
        });
    }
    let mut conflicts = 0;
    while let Some(r) = tasks.join_next().await {
        conflicts += r.expect("client");
    }
    let e = c.node(c.ids()[0]).entry("counter").await.expect("the counter exists");
    assert_eq!(e.value, (CLIENTS * EACH).to_string(), "every successful CAS counted exactly once");
    assert_eq!(e.version as usize, CLIENTS * EACH, "one version per increment");
    assert!(conflicts > 0, "{CLIENTS} clients on one key must have collided at least once");
}

async fn batch(n: &NodeClient, body: Value) -> (StatusCode, Value) {
    let resp = n.request(Method::POST, "/v1/batch").json(&body).send().await.expect("POST /v1/batch");
    let status = resp.status();
    (status, resp.json().await.expect("JSON answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_atomic_within_a_shard_and_reports_each_shard_group() {
    let c = Cluster::start(3, 4).await;
    c.wait_for_leaders(&c.ids()).await;
    let n = c.node(c.ids()[1]);
    let (a1, a2) = (key_in_shard("a", 0, 4), key_in_shard("aa", 0, 4));
    let b = key_in_shard("b", 1, 4);
    n.put(&a1, "old").await;

    // Same shard: a failed precondition on one op applies nothing of the group.
    let (status, body) = batch(
        &n,
        json!({"ops": [
            {"op": "put", "key": a2, "value": "new"},
            {"op": "delete", "key": a1, "prev_revision": 999},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["applied"], false);
    assert_eq!(body["results"][0]["skipped"], true);
    assert!(body["results"][1]["current_revision"].as_u64().is_some_and(|r| r > 0), "{body}");
    assert_eq!(n.get(&a2).await, None, "nothing of the failed group applied");
    assert_eq!(n.get(&a1).await.as_deref(), Some("old"));

    // Across shards: each group stands alone; the answer says which applied.
    let (status, body) = batch(
        &n,
        json!({"ops": [
            {"op": "put", "key": b, "value": "applied"},
            {"op": "put", "key": a2, "value": "x", "prev_revision": 12345},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["results"][0]["ok"], true, "{body}");
    assert_eq!(body["results"][1]["ok"], false, "{body}");
    assert_eq!(n.get(&b).await.as_deref(), Some("applied"));

    // All good: 200, gets see the group's earlier writes, deletes report what they did.
    let (status, body) = batch(
        &n,
        json!({"ops": [
            {"op": "put", "key": a2, "value": "v2", "prev_revision": 0},
            {"op": "get", "key": a2},
            {"op": "delete", "key": a1},
            {"op": "get", "key": "never-written"},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], true);
    assert_eq!(body["results"][1]["value"], "v2");
    assert_eq!(body["results"][2]["deleted"], 1);
    assert_eq!(body["results"][3]["found"], false);

    // Bad input is refused before anything is proposed.
    for bad in [
        json!({"ops": []}),
        json!({"ops": [{"op": "frobnicate", "key": "k"}]}),
        json!({"ops": [{"op": "put", "key": "k"}]}),
        json!({"ops": [{"op": "put", "key": "k", "value": "v"}, {"op": "get", "key": "k", "ttl": "5s"}]}),
        json!({"ops": [{"op": "put", "key": "k", "value": "v", "db": 16}]}),
        json!({"ops": [{"op": "put", "key": "k", "value": "v", "ttl": "-1s"}]}),
    ] {
        let (status, body) = batch(&n, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} → {body}");
        assert!(body["error"]["code"].is_string());
    }
    assert_eq!(n.get("k").await, None, "a rejected batch wrote nothing");
}

/// One parsed server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: String,
    data: Value,
}

/// Reads server-sent events from `resp` into a channel until the stream ends.
fn follow(resp: reqwest::Response) -> tokio::sync::mpsc::UnboundedReceiver<Sse> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut resp = resp;
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if event.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::Null);
                if tx.send(Sse { event, id, data }).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn open_watch(n: &NodeClient, query: &str, last_id: Option<&str>) -> tokio::sync::mpsc::UnboundedReceiver<Sse> {
    let mut req = n.request(Method::GET, &format!("/v1/watch?{query}"));
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.expect("GET /v1/watch");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap_or("").starts_with("text/event-stream"));
    follow(resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_every_committed_change_in_order_across_a_leader_kill() {
    let c = Cluster::start(3, 4).await;
    let leaders = c.wait_for_leaders(&c.ids()).await;
    let victim = c.ids().into_iter().max_by_key(|id| leaders.values().filter(|l| *l == id).count()).expect("3 nodes");
    let survivors: Vec<u64> = c.ids().into_iter().filter(|&id| id != victim).collect();
    let watcher = c.node(survivors[0]);
    let writer = c.node(survivors[1]);
    let mut events = open_watch(&watcher, "prefix=w/", None).await;

    // Writes before, during and after the kill of the node leading the most shards.
    let mut acked: Vec<(String, String)> = Vec::new();
    for round in 0..3 {
        if round == 1 {
            c.kill(victim);
        }
        for i in 0..20 {
            let (k, v) = (format!("w/{i:02}"), format!("r{round}-{i}"));
            // Retry through the election: only acknowledged writes are expected.
            eventually("a write through the election", Duration::from_secs(20), || {
                let (writer, k, v) = (writer.clone(), k.clone(), v.clone());
                async move { writer.try_put(&k, &v).await.map(|_| ()) }
            })
            .await;
            acked.push((k, v));
        }
    }
    writer.put("elsewhere/x", "not watched").await; // outside the prefix: never delivered

    // Every acknowledged write shows up, each key's events in increasing revision order.
    let mut seen: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let want = acked.len();
    let mut got = 0;
    while got < want {
        let e = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap_or_else(|_| panic!("only {got} of {want} events arrived"))
            .expect("the stream stays open");
        assert_ne!(e.event, "resync", "no resync expected while the watcher's node stays up: {e:?}");
        assert_eq!(e.event, "put", "{e:?}");
        let key = e.data["key"].as_str().expect("key").to_string();
        assert!(key.starts_with("w/"), "only the prefix is delivered: {key}");
        assert!(!e.id.is_empty());
        seen.entry(key)
            .or_default()
            .push((e.data["revision"].as_u64().expect("revision"), e.data["value"].as_str().unwrap_or("").to_string()));
        got += 1;
    }
    for (key, evs) in &seen {
        assert!(evs.windows(2).all(|w| w[0].0 < w[1].0), "{key}: revisions not increasing: {evs:?}");
    }
    for (k, v) in &acked {
        assert!(seen[k].iter().any(|(_, value)| value == v), "acknowledged write {k}={v} never reached the watcher");
    }
}

/// A watch announces its position as it opens (an id-only SSE block), so a client whose
/// connection breaks before the first change resumes from there: nothing written while
/// it was away is missed. (The nemesis found the gap: a node killed right after its
/// watches opened; the clients came back with no Last-Event-ID and started at "now".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_breaks_before_its_first_change_resumes_from_where_it_opened() {
    let c = Cluster::standalone_builder().shards(2).start().await;
    let n = c.node(c.ids()[0]);
    n.put("before", "x").await; // a revision to start after
    let mut resp = n.request(Method::GET, "/v1/watch?prefix=o/").send().await.expect("GET /v1/watch");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut head = String::new();
    while !head.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("the stream's first block within 10 s")
            .expect("the stream is open")
            .expect("a first block");
        head.push_str(&String::from_utf8_lossy(&chunk));
    }
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("the stream opens with its position as an id: {head:?}"));
    assert!(!head.contains("event:"), "the opening block dispatches no event: {head:?}");
    drop(resp); // the connection breaks before any change

    n.put("o/1", "a").await;
    n.put("o/2", "b").await;
    let mut events = open_watch(&n, "prefix=o/", Some(&id)).await;
    for want in ["a", "b"] {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap_or_else(|_| panic!("the change to {want:?} made while away is delivered"))
            .expect("open");
        assert_eq!((e.event.as_str(), e.data["value"].as_str()), ("put", Some(want)), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_from_its_last_event_id_and_is_told_to_resync_after_compaction() {
    let c = Cluster::standalone_builder().shards(1).flag("--snapshot-entries", "100").start().await;
    c.wait_ready().await;
    let n = c.node(c.ids()[0]);
    let mut events = open_watch(&n, "key=k", None).await;
    n.put("k", "1").await;
    let first = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("an event").expect("open");
    assert_eq!(first.data["value"], "1");
    n.put("k", "2").await;
    n.put("k", "3").await;

    // Reconnect with the first event's id: the two later changes are replayed, in order.
    drop(events);
    let mut resumed = open_watch(&n, "key=k", Some(&first.id)).await;
    for want in ["2", "3"] {
        let e = tokio::time::timeout(Duration::from_secs(10), resumed.recv()).await.expect("an event").expect("open");
        assert_eq!(e.data["value"], want, "{e:?}");
    }
    drop(resumed);

    // Many more writes, a snapshot and a restart: the history before the snapshot is
    // gone, and a watcher resuming from the first id is told so instead of missing events.
    for i in 0..300 {
        n.put("k", &format!("x{i}")).await;
    }
    eventually("a snapshot past the first event", Duration::from_secs(30), || {
        let n = n.clone();
        async move {
            let v = n.try_cluster_view().await?;
            if v.shards[0].snapshot_index > 10 {
                Ok(())
            } else {
                Err(format!("snapshot at {}", v.shards[0].snapshot_index))
            }
        }
    })
    .await;
    c.kill(c.ids()[0]);
    c.restart(c.ids()[0]);
    c.wait_ready().await;
    let mut after = open_watch(&n, "key=k", Some(&first.id)).await;
    let e = tokio::time::timeout(Duration::from_secs(10), after.recv()).await.expect("an event").expect("open");
    assert_eq!(e.event, "resync", "{e:?}");
    assert!(e.data["current_revision"].as_u64().is_some_and(|r| r >= 300), "{e:?}");
    // The stream goes on from there.
    n.put("k", "after").await;
    let e = tokio::time::timeout(Duration::from_secs(10), after.recv()).await.expect("an event").expect("open");
    assert_eq!((e.event.as_str(), e.data["value"].as_str()), ("put", Some("after")));
}

/// A watch opened without a start revision starts after every write acknowledged before
/// it opened, even on a follower that has not applied the last write yet: the start is
/// the revision the shard leader confirms, not the replica's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_opened_on_a_follower_never_delivers_writes_acknowledged_before_it_opened() {
    let c = Cluster::start(3, 1).await;
    let leaders = c.wait_for_leaders(&c.ids()).await;
    let leader = leaders[&0];
    let follower = c.node(c.ids().into_iter().find(|id| *id != leader).expect("a follower"));
    let writer = c.node(leader);
    for round in 0..20 {
        writer.put("fresh", &format!("old-{round}")).await;
        let mut events = open_watch(&follower, "key=fresh", None).await;
        writer.put("fresh", &format!("new-{round}")).await;
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("an event").expect("open");
        assert_eq!(e.data["value"], format!("new-{round}"), "round {round}: {e:?}");
    }
}

/// What the OpenAPI document promises and schemathesis found refused (issue 13): a watch
/// naming neither `key` nor `prefix` follows the whole database; an empty `Last-Event-ID`
/// is no cursor; both `key` and `prefix` are refused; a batch takes integers written
/// `3.0` and refuses `encoding` on a get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_of_a_whole_database_and_the_edges_the_document_states() {
    let c = Cluster::start(1, 4).await;
    c.wait_for_leaders(&c.ids()).await;
    let n = c.node(c.ids()[0]);
    let mut events = open_watch(&n, "db=3", Some("")).await;
    for (db, key) in [(0, "zero/elsewhere"), (3, "a"), (3, "z/b")] {
        let resp = n.request(Method::PUT, &format!("/v1/kv/{key}?db={db}")).body("v").send().await.expect("PUT");
        assert_eq!(resp.status(), StatusCode::OK, "{db}/{key}");
    }
    let mut keys = Vec::new();
    while keys.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap_or_else(|_| panic!("only {keys:?} arrived"))
            .expect("the stream stays open");
        assert_eq!(e.data["db"], 3, "only db 3 is watched: {e:?}");
        assert!(!e.id.is_empty(), "{e:?}");
        keys.push(e.data["key"].as_str().expect("key").to_string());
    }
    keys.sort();
    assert_eq!(keys, ["a", "z/b"]);

    let both = n.request(Method::GET, "/v1/watch?key=a&prefix=a").send().await.expect("GET");
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
    let body: Value = both.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "bad_query");

    let (status, body) = batch(&n, json!({"db": 3.0, "ops": [{"op": "get", "key": "a", "db": 3.0}]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["found"], true, "{body}");
    assert_eq!(body["results"][0]["db"], 3, "{body}");
    let (status, body) = batch(&n, json!({"db": 3.5, "ops": [{"op": "get", "key": "a"}]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = batch(&n, json!({"ops": [{"op": "get", "key": "a", "encoding": "utf8"}]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad_batch", "{body}");
}
