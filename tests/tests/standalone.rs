//! One standalone node: the key-value API end to end, and durability across restarts.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::seq::SliceRandom;
use reqwest::{Method, StatusCode};
use ringkv_tests::{base64_decode, base64_encode, eventually, key_path, Cluster};
use serde_json::json;

#[tokio::test]
async fn put_get_overwrite_and_delete_round_trip() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    assert_eq!(n.get("greeting").await, None);
    n.put("greeting", "hello").await;
    assert_eq!(n.get("greeting").await.as_deref(), Some("hello"));
    n.put("greeting", "bonjour").await;
    assert_eq!(n.get("greeting").await.as_deref(), Some("bonjour"));

    let d = n.delete("greeting").await;
    assert_eq!(d.deleted, 1);
    assert_eq!(n.get("greeting").await, None);
    assert_eq!(n.delete("greeting").await.deleted, 0, "deleting an absent key deletes nothing");

    let resp = n.request(Method::GET, "/v1/kv/greeting").send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    // Every request is counted by route template, method and status.
    let m = n.metrics().await;
    let count = |method: &str, status: &str| {
        m.value("ringkv_http_requests_total", &[("route", "/v1/kv/{*key}"), ("method", method), ("status", status)])
    };
    assert_eq!(count("PUT", "200"), Some(2.0));
    assert_eq!(count("DELETE", "200"), Some(2.0));
    assert_eq!(count("GET", "200"), Some(2.0));
    assert_eq!(count("GET", "404"), Some(3.0));
}

#[tokio::test]
async fn json_and_raw_puts_store_the_same_bytes() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let value = "line one\nline \"two\" & ünïcödé";
    let raw_types = [
        None,
        Some("application/octet-stream"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
    ];
    for (i, ct) in raw_types.iter().enumerate() {
        let key = format!("raw-{i}");
        let mut req = n.request(Method::PUT, &key_path(&key)).body(value);
        if let Some(ct) = ct {
            req = req.header("content-type", *ct);
        }
        let resp = req.send().await.expect("PUT");
        assert_eq!(resp.status(), StatusCode::OK, "content type {ct:?}: {}", resp.text().await.unwrap_or_default());
        assert_eq!(n.get(&key).await.as_deref(), Some(value), "content type {ct:?}");
    }
    for (i, ct) in ["application/json", "application/merge-patch+json"].iter().enumerate() {
        let key = format!("json-{i}");
        let resp = n
            .request(Method::PUT, &key_path(&key))
            .header("content-type", *ct)
            .body(json!({ "value": value }).to_string())
            .send()
            .await
            .expect("PUT");
        assert_eq!(resp.status(), StatusCode::OK, "{ct}: {}", resp.text().await.unwrap_or_default());
        let e = n.entry(&key).await.expect("stored");
        assert_eq!(e.value, value, "the JSON envelope is not stored, only the value ({ct})");
        assert_eq!(e.encoding, None);
    }
    // A raw body that happens to look like JSON is stored verbatim.
    let doc = r#"{"value":"not unwrapped"}"#;
    n.put("raw-json-looking", doc).await;
    assert_eq!(n.get("raw-json-looking").await.as_deref(), Some(doc));
}

#[tokio::test]
async fn binary_values_round_trip_through_base64_json_and_octet_stream() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let bytes: Vec<u8> = (0..=255u8).rev().chain([0, 0xff, 0xfe, 0x80]).collect();

    // In as octet-stream, out as JSON (base64-tagged) and as raw bytes.
    let resp = n
        .request(Method::PUT, "/v1/kv/bin-raw")
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), StatusCode::OK);
    let e = n.entry("bin-raw").await.expect("stored");
    assert_eq!(e.encoding.as_deref(), Some("base64"), "a non-UTF-8 value must be tagged");
    assert_eq!(base64_decode(&e.value).as_deref(), Some(bytes.as_slice()));
    let raw = n
        .request(Method::GET, "/v1/kv/bin-raw")
        .header("accept", "application/octet-stream")
        .send()
        .await
        .expect("GET raw");
    assert_eq!(raw.status(), StatusCode::OK);
    assert_eq!(raw.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/octet-stream"));
    assert_eq!(raw.bytes().await.expect("body").as_ref(), bytes.as_slice());

    // In as base64 JSON, out as raw bytes.
    let resp = n
        .request(Method::PUT, "/v1/kv/bin-json")
        .header("content-type", "application/json")
        .body(json!({ "value": base64_encode(&bytes), "encoding": "base64" }).to_string())
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), StatusCode::OK);
    let raw = n
        .request(Method::GET, "/v1/kv/bin-json")
        .header("accept", "application/octet-stream")
        .send()
        .await
        .expect("GET raw")
        .bytes()
        .await
        .expect("body");
    assert_eq!(raw.as_ref(), bytes.as_slice());

    // A UTF-8 value sent as base64 comes back as plain text with no encoding tag.
    let resp = n
        .request(Method::PUT, "/v1/kv/b64-text")
        .header("content-type", "application/json")
        .body(json!({ "value": base64_encode("héllo".as_bytes()), "encoding": "base64" }).to_string())
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), StatusCode::OK);
    let e = n.entry("b64-text").await.expect("stored");
    assert_eq!((e.value.as_str(), e.encoding), ("héllo", None));
}

#[tokio::test]
async fn keys_with_slashes_spaces_and_escapes_are_stored_exactly() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let keys = [
        "app/config/db",
        "a/b",
        "a",
        "with space",
        "per%cent",
        "q?x=1&y",
        "hash#frag",
        "ünï/cödé",
        "plus+sign",
        "dir/",
    ];
    for (i, k) in keys.iter().enumerate() {
        let w = n.put(k, &format!("v{i}")).await;
        assert_eq!(w.key, *k, "the answer names the decoded key");
    }
    for (i, k) in keys.iter().enumerate() {
        let e = n.entry(k).await.unwrap_or_else(|| panic!("{k:?} not found"));
        assert_eq!((e.key.as_str(), e.value.as_str()), (*k, format!("v{i}").as_str()));
    }
    // `a`, `a/b` and `a%2Fb`-style prefixes are different keys: each holds its own value.
    assert_eq!(n.get("a").await.as_deref(), Some("v2"));
    assert_eq!(n.get("a/b").await.as_deref(), Some("v1"));
    assert_eq!(n.get("a/").await, None);

    let listed: Vec<String> = n.list_all(0, "", 100).await.into_iter().map(|e| e.key).collect();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(listed, want, "listing returns every key once, in byte order");
    let under: Vec<String> = n.list_all(0, "app/", 100).await.into_iter().map(|e| e.key).collect();
    assert_eq!(under, ["app/config/db"]);
}

#[tokio::test]
async fn ttl_keys_report_time_left_then_expire_and_are_reaped() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    n.put("forever", "x").await;
    let resp =
        n.request(Method::PUT, &format!("{}?ttl=1s", key_path("short-query"))).body("q").send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = n
        .request(Method::PUT, &key_path("short-json"))
        .header("content-type", "application/json")
        .body(json!({ "value": "j", "ttl": 1 }).to_string())
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = n.request(Method::PUT, &format!("{}?ttl=1m30s", key_path("long"))).body("l").send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::OK);

    assert_eq!(n.entry("forever").await.expect("stored").ttl_ms, None, "no ttl_ms without a TTL");
    for k in ["short-query", "short-json"] {
        let ttl = n.entry(k).await.expect("not yet expired").ttl_ms.expect("ttl_ms present");
        assert!(ttl > 0 && ttl <= 1000, "{k}: ttl_ms {ttl}");
    }
    let long = n.entry("long").await.expect("stored").ttl_ms.expect("ttl_ms present");
    assert!(long > 85_000 && long <= 90_000, "1m30s gives ttl_ms {long}");
    let keys_before = n.metrics().await.sum("ringkv_keys");
    assert_eq!(keys_before, 4.0);

    // Time itself is under test: wait out the TTL, then poll.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    eventually("the 1s keys to read as absent", Duration::from_secs(5), || async {
        match (n.entry("short-query").await, n.entry("short-json").await) {
            (None, None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let listed: Vec<String> = n.list_all(0, "", 100).await.into_iter().map(|e| e.key).collect();
    assert_eq!(listed, ["forever", "long"], "expired keys are not listed");
    // Removed from storage, not just hidden: the key gauge drops.
    eventually("expired keys to be reaped", Duration::from_secs(10), || async {
        let m = n.metrics().await;
        match (m.sum("ringkv_keys"), m.sum("ringkv_expired_keys_total")) {
            (keys, reaped) if keys == 2.0 && reaped == 2.0 => Ok(()),
            other => Err(format!("ringkv_keys, ringkv_expired_keys_total = {other:?}")),
        }
    })
    .await;
    assert_eq!(n.get("forever").await.as_deref(), Some("x"));

    // A put over an expired key starts a new key (version 1), without the old TTL.
    n.put("short-query", "again").await;
    let e = n.entry("short-query").await.expect("stored");
    assert_eq!((e.version, e.ttl_ms), (1, None));

    // Overwriting a key that has a TTL without one makes it permanent: the reaper must
    // not remove it when the old TTL passes.
    let resp = n
        .request(Method::PUT, &format!("{}?ttl=500ms", key_path("made-permanent")))
        .body("t")
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), StatusCode::OK);
    n.put("made-permanent", "p").await;
    assert_eq!(n.entry("made-permanent").await.expect("stored").ttl_ms, None);
    let reaped = n.metrics().await.sum("ringkv_expired_keys_total");
    tokio::time::sleep(Duration::from_millis(1000)).await; // past the old TTL and a few reaper rounds
    let e = n.entry("made-permanent").await.expect("the old TTL no longer applies");
    assert_eq!((e.value.as_str(), e.version), ("p", 2));
    assert_eq!(n.metrics().await.sum("ringkv_expired_keys_total"), reaped);
}

#[tokio::test]
async fn the_same_key_in_two_databases_is_two_keys() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    n.put_in(0, "user:1", "alice in db 0").await;
    n.put_in(3, "user:1", "alice in db 3").await;
    assert_eq!(n.get_in(0, "user:1").await.as_deref(), Some("alice in db 0"));
    assert_eq!(n.get_in(3, "user:1").await.as_deref(), Some("alice in db 3"));
    assert_eq!(n.get_in(15, "user:1").await, None);
    let db3: Vec<(String, u8)> = n.list_all(3, "", 100).await.into_iter().map(|e| (e.value, e.db)).collect();
    assert_eq!(db3, [("alice in db 3".to_string(), 3)]);

    assert_eq!(n.delete_in(3, "user:1").await.deleted, 1);
    assert_eq!(n.get_in(3, "user:1").await, None);
    assert_eq!(n.get_in(0, "user:1").await.as_deref(), Some("alice in db 0"), "a delete in db 3 leaves db 0 alone");
    assert!(n.list_all(3, "", 100).await.is_empty());
}

#[tokio::test]
async fn prefix_listing_pages_through_every_shard_in_key_order() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let mut keys: Vec<String> = (0..250).map(|i| format!("page/{i:03}")).collect();
    keys.shuffle(&mut rand::rng());
    let mut shards = BTreeSet::new();
    for k in &keys {
        shards.insert(n.put(k, &format!("value of {k}")).await.shard);
    }
    assert_eq!(shards.len(), 4, "the keys spread over all 4 shards");
    // Neighbours that must not leak into the listing.
    for k in ["page", "pagf/000", "pagd/999", "Page/000"] {
        n.put(k, "outside").await;
    }
    n.put_in(1, "page/000", "another db").await;
    keys.sort();

    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut q = "prefix=page%2F&limit=100".to_string();
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={}", ringkv_tests::client::query_value(c)));
        }
        let page = n.list(&q).await;
        assert_eq!(page.count, page.items.len());
        pages.push(page.count);
        for e in &page.items {
            assert_eq!(e.value, format!("value of {}", e.key));
            assert_eq!(e.db, 0);
        }
        got.extend(page.items.into_iter().map(|e| e.key));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages.len() < 10, "the listing does not end");
    }
    assert_eq!(pages, [100, 100, 50]);
    assert_eq!(got, keys, "every key once, in key order, across pages");

    let one = n.list("prefix=page%2F&limit=1000").await;
    assert_eq!((one.count, one.next_cursor), (250, None));
    let exact = n.list("prefix=page%2F&limit=250").await;
    assert_eq!(exact.count, 250);
    assert_eq!(exact.next_cursor, None, "no next page when the page ends exactly at the last key");
    let default = n.list("prefix=page%2F").await;
    assert_eq!(default.count, 100, "the default limit is 100");
    let everything = n.list_all(0, "", 7).await;
    assert_eq!(everything.len(), 254);
}

#[tokio::test]
async fn revisions_count_creations_modifications_and_versions() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let w1 = n.put("rev", "one").await;
    let e1 = n.entry("rev").await.expect("stored");
    assert_eq!((e1.create_revision, e1.mod_revision, e1.version), (w1.revision, w1.revision, 1));

    let w2 = n.put("rev", "two").await;
    assert!(w2.revision > w1.revision, "{w2:?} after {w1:?}");
    let e2 = n.entry("rev").await.expect("stored");
    assert_eq!((e2.create_revision, e2.mod_revision, e2.version), (w1.revision, w2.revision, 2));

    let w3 = n.put("rev", "three").await;
    let e3 = n.entry("rev").await.expect("stored");
    assert_eq!((e3.create_revision, e3.mod_revision, e3.version), (w1.revision, w3.revision, 3));

    let d = n.delete("rev").await;
    assert!(d.revision > w3.revision);
    let w4 = n.put("rev", "reborn").await;
    let e4 = n.entry("rev").await.expect("stored");
    assert_eq!(
        (e4.create_revision, e4.mod_revision, e4.version),
        (w4.revision, w4.revision, 1),
        "a deleted key starts over"
    );
    assert!(w4.revision > d.revision);
}

async fn write_numbered(c: &Cluster, prefix: &str, count: usize) -> Vec<(String, String)> {
    let n = c.node(1);
    let mut out = Vec::new();
    for i in 0..count {
        let (k, v) = (format!("{prefix}/{i:03}"), format!("{prefix} value {i}"));
        n.put(&k, &v).await;
        out.push((k, v));
    }
    out
}

async fn assert_all_readable(c: &Cluster, written: &[(String, String)]) {
    let n = c.node(1);
    for (k, v) in written {
        assert_eq!(n.get(k).await.as_deref(), Some(v.as_str()), "{k} after restart");
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_restart() {
    let c = Cluster::standalone().await;
    let written = write_numbered(&c, "durable", 60).await;
    let before = c.node(1).entry("durable/059").await.expect("stored");
    c.kill(1);
    c.restart(1);
    c.wait_ready().await;
    assert_all_readable(&c, &written).await;
    assert_eq!(c.node(1).entry("durable/059").await.expect("stored"), before, "revisions survive too");
    // The restarted node keeps counting revisions upwards.
    let w = c.node(1).put("durable/059", "after").await;
    assert!(w.revision > before.mod_revision);

    c.kill(1);
    c.restart(1);
    c.wait_ready().await;
    assert_eq!(c.node(1).get("durable/059").await.as_deref(), Some("after"));
}

#[tokio::test]
async fn sigterm_exits_zero_and_data_survives_restart() {
    let c = Cluster::standalone().await;
    let written = write_numbered(&c, "graceful", 60).await;
    let status = c.stop(1).await;
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit, got {status}");
    c.restart(1);
    c.wait_ready().await;
    assert_all_readable(&c, &written).await;
    assert_eq!(c.node(1).list_all(0, "graceful/", 1000).await.len(), 60);
}
