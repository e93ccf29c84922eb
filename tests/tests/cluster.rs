//! Three nodes, four shards, every shard replicated on every node: forwarding,
//! replication, leader failover under load, quorum loss and graceful shutdown.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use ringkv_tests::{eventually, key_in_shard, key_path, Cluster, Writer};

/// How long a test waits for a background writer to make progress.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_sent_to_a_follower_are_forwarded_and_readable_on_every_node() {
    let c = Cluster::start(3, 4).await;
    let leaders = c.wait_for_leaders(&c.ids()).await;
    // The node that leads the fewest shards: most writes sent to it must be forwarded.
    let via = c.ids().into_iter().min_by_key(|id| leaders.values().filter(|l| *l == id).count()).expect("3 nodes");
    let n = c.node(via);
    let forwards =
        |m: &ringkv_tests::Metrics| m.value("ringkv_forwarded_requests_total", &[("kind", "write")]).unwrap_or(0.0);
    let forwarded_before = forwards(&n.metrics().await);

    let mut written = Vec::new();
    let mut to_followers = 0;
    for i in 0..40 {
        let (k, v) = (format!("fwd/{i:02}"), format!("value {i}"));
        let w = n.put(&k, &v).await;
        if leaders[&w.shard] != via {
            to_followers += 1;
        }
        written.push((k, v));
    }
    assert!(to_followers >= 20, "node {via} leads too much for this test to mean anything: {leaders:?}");
    let forwarded = forwards(&n.metrics().await) - forwarded_before;
    assert!(
        forwarded >= f64::from(to_followers),
        "{to_followers} writes were for shards node {via} does not lead, but it forwarded {forwarded}"
    );

    // Every replica applies every write: serializable reads on each node see them all.
    for id in c.ids() {
        let node = c.node(id);
        let written = &written;
        eventually(&format!("node {id} to serve every write from its own replica"), Duration::from_secs(10), || {
            let node = node.clone();
            async move {
                for (k, v) in written {
                    let got = node.try_entry_with(k, "consistency=serializable").await?.map(|e| e.value);
                    if got.as_deref() != Some(v.as_str()) {
                        return Err(format!("{k} = {got:?}"));
                    }
                }
                Ok(())
            }
        })
        .await;
        let listed = node.list_all(0, "fwd/", 7).await;
        assert_eq!(listed.len(), 40, "node {id} lists every key across all shards");
    }
    assert!(c.read_back(&written, &c.ids()).await.is_empty());

    // Deletes sent to the same node are forwarded too, and vanish from every replica.
    let (gone, kept) = written.split_at(20);
    for (k, _) in gone {
        assert_eq!(n.delete(k).await.deleted, 1, "{k}");
    }
    for id in c.ids() {
        let node = c.node(id);
        eventually(&format!("node {id} to apply the deletes"), Duration::from_secs(10), || {
            let node = node.clone();
            async move {
                let listed = node.list_all_with(0, "fwd/", 100, "consistency=serializable").await;
                let keys: Vec<&str> = listed.iter().map(|e| e.key.as_str()).collect();
                let want: Vec<&str> = kept.iter().map(|(k, _)| k.as_str()).collect();
                if keys == want {
                    Ok(())
                } else {
                    Err(format!("{} keys listed", keys.len()))
                }
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reports_the_same_members_leaders_and_leader_gauges() {
    let c = Cluster::start(3, 4).await;
    let leaders = c.wait_for_leaders(&c.ids()).await;
    for id in c.ids() {
        let v = c.node(id).cluster_view().await;
        assert_eq!((v.node_id, v.shard_count), (id, 4));
        let nodes: Vec<(u64, String)> = v.nodes.iter().map(|n| (n.id, n.internal_addr.clone())).collect();
        let want: Vec<(u64, String)> = c.ids().into_iter().map(|i| (i, c.internal_addr(i).to_string())).collect();
        assert_eq!(nodes, want, "node {id} lists every member with its internal address");
        assert_eq!(v.shards.len(), 4);
        for s in &v.shards {
            assert_eq!(s.members, c.ids(), "node {id}, shard {}: every node replicates every shard", s.id);
            assert_eq!(s.leader, Some(leaders[&s.id]), "node {id}, shard {}", s.id);
            assert_eq!(s.state == "Leader", leaders[&s.id] == id, "node {id}, shard {}: state {}", s.id, s.state);
        }
    }
    // Exactly one node reports ringkv_raft_is_leader 1 for each shard.
    let mut is_leader = std::collections::BTreeMap::new();
    for id in c.ids() {
        let m = c.node(id).metrics().await;
        for shard in 0..4u32 {
            let v = m.value("ringkv_raft_is_leader", &[("shard", &shard.to_string())]).expect("a gauge per shard");
            if v == 1.0 {
                is_leader.entry(shard).or_insert_with(Vec::new).push(id);
            }
        }
    }
    let want: std::collections::BTreeMap<u32, Vec<u64>> = leaders.iter().map(|(s, l)| (*s, vec![*l])).collect();
    assert_eq!(is_leader, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_each_shard_leader_in_turn_loses_no_acknowledged_write() {
    let c = Cluster::start(3, 4).await;
    let mut leaders = c.wait_for_leaders(&c.ids()).await;
    let writer = Writer::start("failover", c.node(1));
    for shard in 0..c.shards {
        let victim = leaders[&shard];
        let survivors: Vec<u64> = c.ids().into_iter().filter(|&id| id != victim).collect();
        writer.send_to(c.node(survivors[0]));
        writer.wait_for_progress(10, PROGRESS_TIMEOUT).await;

        c.kill(victim);
        let after = c.wait_for_leaders(&survivors).await;
        assert!(after.values().all(|l| survivors.contains(l)), "shard {shard}: {after:?}");
        // The survivors keep taking writes while the victim is down.
        writer.wait_for_progress(30, PROGRESS_TIMEOUT).await;

        c.restart(victim);
        c.wait_ready().await;
        leaders = c.wait_for_leaders(&c.ids()).await;
    }
    let report = writer.finish().await;
    assert!(report.acked.len() >= 160, "{report:?}");
    let wrong = c.read_back(&report.acked, &c.ids()).await;
    assert!(
        wrong.is_empty(),
        "{} of {} acknowledged writes are lost or wrong:\n  {}",
        wrong.len(),
        report.acked.len(),
        wrong.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// With `--request-timeout 1s`, how long an unavailable answer may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Sends `req` and says what is wrong unless the answer is a 503 `unavailable` with a
/// Retry-After in seconds, within [`ANSWER_WITHIN`].
async fn expect_unavailable(what: &str, req: reqwest::RequestBuilder) -> Option<String> {
    let start = Instant::now();
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Some(format!("{what}: no answer within {ANSWER_WITHIN:?}")),
        Err(e) => return Some(format!("{what}: {e}")),
    };
    let took = start.elapsed();
    let status = resp.status();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let secs = retry_after.as_deref().and_then(|v| v.parse::<u64>().ok());
    // A write that was proposed (or sent to a leader that did not answer) may still
    // apply, and says so; a read was never applied.
    let codes: &[&str] = if what.starts_with("GET") { &["unavailable"] } else { &["unavailable", "outcome_unknown"] };
    let code = body["error"]["code"].as_str().unwrap_or_default();
    if status != StatusCode::SERVICE_UNAVAILABLE || !codes.contains(&code) || secs.unwrap_or(0) < 1 {
        return Some(format!("{what}: got {status} after {took:?}, Retry-After {retry_after:?}, body {body}"));
    }
    // The message is read by people: it says what happened, in words, not by printing
    // the Raft library's internal structures (membership configs, log ids, votes).
    let message = body["error"]["message"].as_str().unwrap_or_default();
    if ["BasicNode", "voters:", "LogId", "Vote {", "{", "Some("].iter().any(|s| message.contains(s)) {
        return Some(format!("{what}: the 503's message prints internal structures: {message}"));
    }
    None
}

/// Which survivor a quorum-loss test keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Survivor {
    /// The node leading the fewest shards: most of its shards lose their leader.
    LeadsFewest,
    /// The node leading the most shards: it is left an isolated leader.
    LeadsMost,
}

/// Starts 3 nodes with `--request-timeout 1s`, writes one key per shard, kills every node
/// but one, and sends PUT, GET and DELETE for each key to the survivor, all at once.
/// Returns the cluster, the survivor, the keys, and what was wrong with each answer for
/// the shards the survivor led (`led == true`) or did not lead (`led == false`).
async fn lose_quorum(keep: Survivor, led: bool) -> (Cluster, u64, Vec<String>, Vec<String>) {
    let c = Cluster::builder(3).flag("--request-timeout", "1s").start().await;
    let leaders = c.wait_for_leaders(&c.ids()).await;
    let count = |id: &u64| leaders.values().filter(|l| *l == id).count();
    let survivor = match keep {
        Survivor::LeadsFewest => c.ids().into_iter().min_by_key(count),
        Survivor::LeadsMost => c.ids().into_iter().max_by_key(count),
    }
    .expect("3 nodes");
    let n = c.node(survivor);
    let keys: Vec<String> = (0..c.shards).map(|s| key_in_shard("quorum", s, c.shards)).collect();
    for k in &keys {
        n.put(k, "before").await;
    }
    // A write is acknowledged once a majority has it: the survivor may still lack it.
    // Wait until its own replica has applied every key before taking its peers away.
    eventually("the survivor to apply every key written through it", Duration::from_secs(10), || {
        let (n, keys) = (n.clone(), keys.clone());
        async move {
            for k in &keys {
                if n.try_entry_with(k, "consistency=serializable").await?.is_none() {
                    return Err(format!("{k} not applied on the survivor yet"));
                }
            }
            Ok(())
        }
    })
    .await;
    for id in c.ids().into_iter().filter(|&id| id != survivor) {
        c.kill(id);
    }
    // Every request at once: a request that hangs must not hide the others.
    let mut tasks = tokio::task::JoinSet::new();
    for (shard, k) in keys.iter().enumerate() {
        let leader = leaders[&u32::try_from(shard).expect("few shards")];
        if (leader == survivor) != led {
            continue;
        }
        for method in [Method::PUT, Method::GET, Method::DELETE] {
            let what = format!("{method} {k} to node {survivor} (shard {shard}, led by node {leader} before the kill)");
            let req = n.request(method.clone(), &key_path(k)).timeout(ANSWER_WITHIN);
            let req = if method == Method::PUT { req.body("after") } else { req };
            tasks.spawn(async move { expect_unavailable(&what, req).await });
        }
    }
    assert!(!tasks.is_empty(), "no shard fits this test: leaders {leaders:?}, survivor {survivor}");
    let mut wrong = Vec::new();
    while let Some(r) = tasks.join_next().await {
        wrong.extend(r.expect("no panic"));
    }
    wrong.sort();
    (c, survivor, keys, wrong)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_of_three_nodes_dead_requests_for_leaderless_shards_get_503_and_retry_after() {
    let (c, survivor, keys, wrong) = lose_quorum(Survivor::LeadsFewest, false).await;
    assert!(wrong.is_empty(), "without a quorum, requests must fail fast with 503:\n  {}", wrong.join("\n  "));
    let n = c.node(survivor);
    // A node that cannot serve writes says so: it no longer reports ready.
    eventually("the survivor's /readyz to turn 503", Duration::from_secs(10), || {
        let n = n.clone();
        async move {
            if n.is_ready().await {
                Err("still ready".to_string())
            } else {
                Ok(())
            }
        }
    })
    .await;
    // The survivor's own replica still answers reads that accept staleness.
    for k in &keys {
        let e = n.entry_with(k, "consistency=serializable").await.expect("written before the failure");
        assert_eq!(e.value, "before");
    }
    // With one peer back the majority is back, and so are writes.
    let back = c.ids().into_iter().find(|&id| id != survivor).expect("3 nodes");
    c.restart(back);
    // Every shard elects its own leader again, each in its own time.
    for k in &keys {
        eventually("writes to succeed again with 2 of 3 nodes", Duration::from_secs(30), || {
            let n = n.clone();
            let k = k.clone();
            async move { n.try_put(&k, "after").await.map(|_| ()) }
        })
        .await;
        assert_eq!(n.get(k).await.as_deref(), Some("after"));
    }
}

/// A leader whose followers all died cannot commit. Its writes must still end with a 503
/// within `--request-timeout`, not hang until the client gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_of_three_nodes_dead_an_isolated_leader_answers_503_within_the_request_timeout() {
    let (_c, _survivor, _keys, wrong) = lose_quorum(Survivor::LeadsMost, true).await;
    assert!(wrong.is_empty(), "without a quorum, requests must fail fast with 503:\n  {}", wrong.join("\n  "));
}

/// A leader that lost contact with every follower cannot commit anything, so it must
/// stop presenting itself as a working leader: `/readyz` turns 503 (as it does on the
/// followers of a leaderless shard) and it stops claiming leadership in `/v1/cluster`,
/// within a few election timeouts (600ms–1.2s by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_every_follower_stops_reporting_ready_and_leading() {
    let c = Cluster::start(3, 4).await;
    let leaders = c.wait_for_leaders(&c.ids()).await;
    let survivor = c.ids().into_iter().max_by_key(|id| leaders.values().filter(|l| *l == id).count()).expect("3 nodes");
    for id in c.ids().into_iter().filter(|&id| id != survivor) {
        c.kill(id);
    }
    let n = c.node(survivor);
    eventually("the isolated leader to stop reporting ready and leading", Duration::from_secs(10), || {
        let n = n.clone();
        async move {
            let ready = n.is_ready().await;
            let view = n.try_cluster_view().await?;
            let claimed: Vec<u32> = view.shards.iter().filter(|s| s.leader == Some(survivor)).map(|s| s.id).collect();
            if ready || !claimed.is_empty() {
                return Err(format!("/readyz 200: {ready}; node {survivor} still claims to lead shards {claimed:?}"));
            }
            Ok(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_a_leader_exits_zero_and_its_shards_move_without_losing_writes() {
    let c = Cluster::start(3, 4).await;
    let leaders = c.wait_for_leaders(&c.ids()).await;
    let victim = c.ids().into_iter().max_by_key(|id| leaders.values().filter(|l| *l == id).count()).expect("3 nodes");
    let survivors: Vec<u64> = c.ids().into_iter().filter(|&id| id != victim).collect();
    let writer = Writer::start("graceful", c.node(survivors[0]));
    writer.wait_for_progress(20, PROGRESS_TIMEOUT).await;

    let led = leaders.values().filter(|l| **l == victim).count();
    let status = c.stop(victim).await;
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit, got {status}");
    // With three voters the stopping leader hands each shard to a follower (no election
    // timeout for the survivors to sit out).
    let handed = c.log(victim).matches("leadership handed over").count();
    assert_eq!(handed, led, "shards handed over on SIGTERM (of {led} led)");
    let after = c.wait_for_leaders(&survivors).await;
    assert!(after.values().all(|l| survivors.contains(l)), "{after:?}");
    writer.wait_for_progress(30, PROGRESS_TIMEOUT).await;
    let report = writer.finish().await;

    let wrong = c.read_back(&report.acked, &survivors).await;
    assert!(wrong.is_empty(), "acknowledged writes lost across a graceful stop:\n  {}", wrong.join("\n  "));

    // The stopped node comes back and catches up on what it missed.
    c.restart(victim);
    c.wait_ready().await;
    let (last_key, last_value) = report.acked.last().cloned().expect("some writes");
    let v = c.node(victim);
    eventually("the restarted node to catch up", Duration::from_secs(15), || {
        let v = v.clone();
        let (k, want) = (last_key.clone(), last_value.clone());
        async move {
            match v.try_entry_with(&k, "consistency=serializable").await? {
                Some(e) if e.value == want => Ok(()),
                other => Err(format!("{k} = {other:?}")),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_node_at_once_loses_no_acknowledged_write_or_delete() {
    const KEYS: usize = 2_000;
    const WRITERS: usize = 6;
    // Small WAL segments and frequent snapshots, so the restart replays snapshots, purged
    // logs and a WAL whose oldest segments were dropped.
    let c = Cluster::builder(3).flag("--snapshot-entries", "100").flag("--wal-segment-bytes", "1048576").start().await;
    let filler = "x".repeat(1000);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let n = c.node(c.ids()[w % 3]);
        let filler = filler.clone();
        tasks.spawn(async move {
            let mut expect = Vec::new();
            for i in (w..KEYS).step_by(WRITERS) {
                let k = format!("all/{i:05}");
                n.put(&k, &format!("first {i} {filler}")).await;
                // Every third key is overwritten, every seventh deleted.
                let last = if i % 7 == 0 {
                    assert_eq!(n.delete(&k).await.deleted, 1);
                    None
                } else if i % 3 == 0 {
                    n.put(&k, &format!("second {i}")).await;
                    Some(format!("second {i}"))
                } else {
                    Some(format!("first {i} {filler}"))
                };
                expect.push((k, last));
            }
            expect
        });
    }
    let mut expect = Vec::new();
    while let Some(r) = tasks.join_next().await {
        expect.extend(r.expect("every write is acknowledged"));
    }
    expect.sort();

    // Each node's WAL drops segments that snapshots made obsolete: what is left on disk
    // is less than the values written (each node logged every one of them).
    let written_bytes = (KEYS * filler.len()) as f64;
    let cluster = &c;
    eventually("every node to drop old WAL segments", Duration::from_secs(30), || async move {
        for id in cluster.ids() {
            let m = cluster.node(id).metrics().await;
            let (bytes, segments) = (m.sum("ringkv_wal_disk_bytes"), m.sum("ringkv_wal_segments"));
            if bytes >= written_bytes {
                return Err(format!(
                    "node {id}: {bytes} WAL bytes in {segments} segments after {written_bytes} bytes of values"
                ));
            }
        }
        Ok(())
    })
    .await;

    for id in c.ids() {
        c.kill(id);
    }
    for id in c.ids() {
        c.restart(id);
    }
    c.wait_ready().await;

    let present: Vec<(String, String)> = expect.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
    let wrong = c.read_back(&present, &c.ids()).await;
    assert!(
        wrong.is_empty(),
        "{} acknowledged writes lost or wrong:\n  {}",
        wrong.len(),
        wrong.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
    );
    // Every replica rebuilt the same state: exactly the surviving keys, no deleted ones.
    for id in c.ids() {
        let node = c.node(id);
        let present = &present;
        eventually(&format!("node {id} to hold exactly the acknowledged state"), Duration::from_secs(20), || {
            let node = node.clone();
            async move {
                let listed = node.list_all_with(0, "all/", 1000, "consistency=serializable").await;
                let got: Vec<(String, String)> = listed.into_iter().map(|e| (e.key, e.value)).collect();
                if &got == present {
                    Ok(())
                } else {
                    Err(format!("{} keys listed, {} expected", got.len(), present.len()))
                }
            }
        })
        .await;
    }
}

/// Bad traffic on the internal port's wire protocol (unknown request kinds, undecodable
/// bodies, absurd frame lengths, a frame cut short) gets an error answer or a closed
/// connection; the node keeps replicating and serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_on_the_internal_wire_are_refused_and_the_cluster_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Cluster::start(3, 2).await;
    c.wait_for_leaders(&c.ids()).await;
    let addr = c.internal_addr(1);
    let frame = |id: u64, kind: u8, shard: u32, body: &[u8]| {
        let mut f = ((13 + body.len()) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&id.to_be_bytes());
        f.push(kind);
        f.extend_from_slice(&shard.to_be_bytes());
        f.extend_from_slice(body);
        f
    };
    // Error answers, matched by id: an unknown kind, garbage for an append, a shard not hosted.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"RKW1").await.expect("magic");
    for (id, kind, shard, body) in
        [(1u64, 99u8, 0u32, &b"x"[..]), (2, 1, 0, &b"\xff\xff\xff"[..]), (3, 2, 4242, &b""[..])]
    {
        s.write_all(&frame(id, kind, shard, body)).await.expect("frame");
        let len = tokio::time::timeout(Duration::from_secs(5), s.read_u32()).await.expect("an answer").expect("len");
        let mut rest = vec![0; len as usize];
        s.read_exact(&mut rest).await.expect("answer");
        assert_eq!(u64::from_be_bytes(rest[..8].try_into().expect("id")), id);
        assert_eq!(rest[8], 1, "request {id}: an error status, got {:?}", String::from_utf8_lossy(&rest[9..]));
    }
    // An absurd length, then a frame cut short: the connection is closed, nothing allocated up front.
    for bad in
        [[&b"RKW1"[..], &u32::MAX.to_be_bytes()[..]].concat(), [&b"RKW1"[..], &frame(9, 1, 0, &[0; 64])[..20]].concat()]
    {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(&bad).await.expect("write");
        s.shutdown().await.expect("half-close");
        let mut sink = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await.expect("closed");
        assert!(r.is_err() || sink.is_empty(), "no answer to a bad frame: {sink:?}");
    }
    // HTTP on the same port still works, and so does replication.
    let status = ringkv_api::client::http()
        .build()
        .expect("an HTTP client")
        .get(format!("http://{addr}/internal/status"))
        .send()
        .await
        .expect("status");
    assert_eq!(status.status(), StatusCode::OK);
    for i in 0..20 {
        c.node(1 + i % 3).put(&format!("after-bad-frames/{i}"), "v").await;
    }
    for id in c.ids() {
        assert_eq!(c.node(id).get("after-bad-frames/19").await.as_deref(), Some("v"));
    }
}
