//! Hardened input, beyond `bad_input.rs`: invalid UTF-8 inside JSON bodies, malformed
//! forms, unsupported methods and oversized bodies on the seed-compatible routes, and
//! stalled clients. A client that stops in the middle of a request head, or sends its
//! body too slowly, is cut off within a bound while every other client is served; busy
//! connections are not. Also: the OpenAPI document a live node serves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use ringkv_tests::{Cluster, NodeClient};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
const MAX_KEY: usize = 4096;
const MAX_VALUE: usize = 1 << 20;
/// The compat routes' body limit: six times the value limit (escaping) plus 64 KiB.
const COMPAT_BODY_LIMIT: usize = 6 * MAX_VALUE + (64 << 10);
/// The node closes a connection whose request head or body has not arrived within 10 s
/// (`serve::Timeouts::default()`); the bound these tests allow.
const CUT_OFF: Duration = Duration::from_secs(15);
/// The slowest answer a well-behaved client may get while others stall.
const SERVED_WITHIN: Duration = Duration::from_secs(5);

/// Sends one request on a fresh connection and returns what is wrong with the answer, if
/// anything: it must have `status` and a v1 JSON error with `code`.
async fn expect_error(
    n: &NodeClient,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &str,
) -> Option<String> {
    let body: Vec<u8> = body.into();
    let shown: String = String::from_utf8_lossy(&body).chars().take(60).collect();
    let what = format!("{method} {} {content_type:?} {shown:?}", &path[..path.len().min(80)]);
    let mut r = n.request(method.clone(), path).header("connection", "close");
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    if !body.is_empty() {
        r = r.body(body);
    }
    let resp = match r.send().await {
        Ok(resp) => resp,
        Err(e) => return Some(format!("{what}: no answer: {e}")),
    };
    let got = resp.status().as_u16();
    let allow = resp.headers().get("allow").is_some();
    let text = resp.text().await.unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let got_code = json["error"]["code"].as_str().unwrap_or("");
    let has_message = json["error"]["message"].as_str().is_some_and(|m| !m.is_empty());
    if got != status || got_code != code || !has_message {
        return Some(format!("{what}: want {status} {code}, got {got} {}", &text[..text.len().min(200)]));
    }
    if status == 405 && !allow {
        return Some(format!("{what}: 405 without an Allow header"));
    }
    None
}

/// Every key in every database, as `db/key=value`.
async fn everything(n: &NodeClient) -> Vec<String> {
    let mut out = Vec::new();
    for db in 0..=15u8 {
        for e in n.list_all(db, "", 1000).await {
            out.push(format!("{db}/{}={}", e.key, &e.value[..e.value.len().min(20)]));
        }
    }
    out
}

/// Asserts the node is ready and a write and a read go through.
async fn still_serves(n: &NodeClient, key: &str) {
    assert!(n.is_ready().await, "the node is no longer ready");
    n.put(key, "still-fine").await;
    assert_eq!(n.get(key).await.as_deref(), Some("still-fine"));
}

#[tokio::test]
async fn invalid_utf8_inside_json_bodies_is_400_on_every_json_route() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let put = |body: &[u8]| (Method::PUT, "/v1/kv/k", Some(JSON), body.to_vec());
    let cases: Vec<(Method, &str, Option<&str>, Vec<u8>)> = vec![
        put(b"{\"value\":\"\xff\xfe\"}"),
        put(b"{\"value\":\"ok\",\"encoding\":\"\xc3\x28\"}"),
        put(b"{\"value\":\"\xed\xa0\x80\"}"), // a UTF-16 surrogate, UTF-8 encoded
        put(b"{\"value\":\"\xc0\xaf\"}"),     // an overlong '/'
        put(b"{\"value\":\"\\ud800\"}"),      // a lone surrogate escape
        put(b"{\"value\":\"x\",\"ttl\":\"5\xffs\"}"),
        put(b"{\"val\xffue\":\"x\"}"),
        (Method::POST, "/set", Some(JSON), b"{\"key\":\"\xff\",\"value\":\"v\"}".to_vec()),
        (Method::POST, "/set", Some(JSON), b"{\"key\":\"k\",\"value\":\"\\udfff\"}".to_vec()),
        // curl -d without -H: form-typed, read as JSON because it starts with `{`.
        (Method::POST, "/set", Some(FORM), b"{\"key\":\"k\",\"value\":\"\xfe\"}".to_vec()),
        (Method::POST, "/set_with_ttl", Some(JSON), b"{\"key\":\"k\",\"value\":\"v\",\"ttl\":\"\xff\"}".to_vec()),
        (Method::POST, "/select_db", Some(JSON), b"{\"db\":\"\xff\"}".to_vec()),
        (
            Method::POST,
            "/v1/batch",
            Some(JSON),
            b"{\"ops\":[{\"op\":\"put\",\"key\":\"\xff\",\"value\":\"v\"}]}".to_vec(),
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, ct, body) in cases {
        wrong.extend(expect_error(&n, method, path, ct, body, 400, "bad_json").await);
    }
    let stored = everything(&n).await;
    assert!(wrong.is_empty() && stored.is_empty(), "{}\nstored: {stored:?}", wrong.join("\n"));
    still_serves(&n, "after-utf8").await;
}

#[tokio::test]
async fn malformed_form_bodies_on_set_and_store_are_400_and_store_nothing() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let cases: &[(Method, &str, Option<&str>, &str, &str)] = &[
        (Method::POST, "/set", Some(FORM), "key=k&value=v&ttl=5", "bad_form"),
        (Method::POST, "/set", Some(FORM), "key=k&key=j&value=v", "bad_form"),
        (Method::POST, "/set", Some(FORM), "key=k&value=v&value=w", "bad_form"),
        (Method::POST, "/set?key=k", Some(FORM), "key=j&value=v", "bad_form"),
        (Method::POST, "/set", Some(FORM), "=v&key=k&value=v", "bad_form"),
        (Method::POST, "/set", Some("text/plain"), "just some text", "bad_form"),
        (Method::POST, "/set", Some(FORM), "value=v", "bad_key"),
        (Method::POST, "/set", Some(FORM), "key=&value=v", "bad_key"),
        (Method::POST, "/set", Some(FORM), "key=k", "bad_value"),
        (Method::POST, "/set", Some(FORM), "{\"key\": \"k\"", "bad_json"),
        (Method::POST, "/set", Some(FORM), "{\"key\": \"k\", \"value\": 1}", "bad_json"),
        (Method::PUT, "/set?key=k&value=v&colour=red", None, "", "bad_query"),
        (Method::POST, "/store", Some(FORM), "key=k&value=v&db=1", "bad_form"),
        (Method::POST, "/store", Some(FORM), "key=k&value=v&colour=red", "bad_form"),
        (Method::PUT, "/store?key=k&value=v", Some(FORM), "value=w", "bad_form"),
        (Method::POST, "/store?db=16", Some(FORM), "key=k&value=v", "bad_db"),
        (Method::GET, "/store?key=k", None, "", "bad_value"),
        (Method::GET, "/store?value=v", None, "", "bad_key"),
    ];
    let mut wrong = Vec::new();
    for (method, path, ct, body, code) in cases {
        wrong.extend(expect_error(&n, method.clone(), path, *ct, body.as_bytes(), 400, code).await);
    }
    let stored = everything(&n).await;
    assert!(wrong.is_empty() && stored.is_empty(), "{}\nstored: {stored:?}", wrong.join("\n"));
    still_serves(&n, "after-forms").await;
}

#[tokio::test]
async fn unsupported_methods_on_compat_routes_are_405_with_allow_and_change_nothing() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    n.put("keep", "original").await;
    let before = n.entry("keep").await.expect("stored");
    let cases: &[(Method, &str)] = &[
        (Method::GET, "/set_with_ttl"),
        (Method::PUT, "/set_with_ttl"),
        (Method::DELETE, "/set_with_ttl"),
        (Method::GET, "/select_db"),
        (Method::PUT, "/select_db"),
        (Method::POST, "/get?key=keep"),
        (Method::PUT, "/get?key=keep"),
        (Method::DELETE, "/get?key=keep"),
        (Method::POST, "/get/keep"),
        (Method::PUT, "/get/keep"),
        (Method::GET, "/delete?key=keep"),
        (Method::POST, "/delete?key=keep"),
        (Method::GET, "/delete/keep"),
        (Method::PUT, "/delete/keep"),
        (Method::DELETE, "/store?key=keep&value=changed"),
        (Method::PATCH, "/store?key=keep&value=changed"),
        (Method::POST, "/retrieve?key=keep"),
        (Method::DELETE, "/retrieve?key=keep"),
    ];
    let mut wrong = Vec::new();
    for (method, path) in cases {
        wrong.extend(expect_error(&n, method.clone(), path, None, Vec::new(), 405, "method_not_allowed").await);
        let now = n.entry("keep").await;
        if now.as_ref() != Some(&before) {
            wrong.push(format!("{method} {path} changed `keep` to {now:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let stored = everything(&n).await;
    assert_eq!(stored, ["0/keep=original"]);
}

#[tokio::test]
async fn oversized_keys_values_and_bodies_on_compat_routes_are_413() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let big = "v".repeat(MAX_VALUE + 1);
    let long_key = "k".repeat(MAX_KEY + 1);
    let cases: Vec<(Method, String, Option<&str>, String, &str)> = vec![
        (Method::POST, "/set".into(), Some(FORM), format!("key=k&value={big}"), "value_too_large"),
        (Method::POST, "/set".into(), Some(FORM), format!("key={long_key}&value=v"), "key_too_large"),
        (Method::POST, "/set".into(), Some(JSON), format!(r#"{{"key":"k","value":"{big}"}}"#), "value_too_large"),
        (Method::POST, "/set".into(), Some(JSON), format!(r#"{{"key":"{long_key}","value":"v"}}"#), "key_too_large"),
        (
            Method::POST,
            "/set_with_ttl".into(),
            Some(JSON),
            format!(r#"{{"key":"k","value":"{big}","ttl":5}}"#),
            "value_too_large",
        ),
        (Method::POST, "/store".into(), Some(FORM), format!("key=k&value={big}"), "value_too_large"),
        (Method::PUT, format!("/store?key={long_key}&value=v"), None, String::new(), "key_too_large"),
        (Method::GET, format!("/get?key={long_key}"), None, String::new(), "key_too_large"),
        (Method::GET, format!("/get/{long_key}"), None, String::new(), "key_too_large"),
        (Method::DELETE, format!("/delete/{long_key}"), None, String::new(), "key_too_large"),
        (
            Method::POST,
            "/select_db".into(),
            Some(JSON),
            format!(r#"{{"db": 1{}}}"#, " ".repeat(64 << 10)),
            "value_too_large",
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, ct, body, code) in cases {
        wrong.extend(expect_error(&n, method, &path, ct, body.into_bytes(), 413, code).await);
    }
    let stored = everything(&n).await;
    assert!(wrong.is_empty() && stored.is_empty(), "{}\nstored: {stored:?}", wrong.join("\n"));

    // Bodies over the route's limit: declared (refused from the head) and chunked (refused
    // once the limit is passed), on a raw connection so the whole body need not be sent.
    let addr = addr(&c);
    let declared = format!(
        "POST /set HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {FORM}\r\ncontent-length: {}\r\n\r\n",
        COMPAT_BODY_LIMIT + 1
    );
    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    conn.write_all(declared.as_bytes()).await.expect("send the head");
    let answer = read_until_closed(&mut conn, CUT_OFF).await;
    assert_eq!(answer.status(), Some(413), "declared oversized body: {answer:?}");

    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    let head =
        format!("POST /store HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {FORM}\r\ntransfer-encoding: chunked\r\n\r\n");
    conn.write_all(head.as_bytes()).await.expect("send the head");
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        // Just over the limit, then the end of the body: nothing is left unsent that the
        // server would have to read before closing.
        let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, "v".repeat(64 << 10));
        for _ in 0..=COMPAT_BODY_LIMIT / (64 << 10) {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                return; // the server stopped reading: expected
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
        // Keep the write half open until the test is done with the connection.
        std::future::pending::<()>().await;
    });
    let answer = read_until_closed(&mut rd, CUT_OFF).await;
    writer.abort();
    assert_eq!(answer.status(), Some(413), "chunked oversized body: {answer:?}");
    still_serves(&n, "after-oversized").await;
}

/// The client address of node 1 as `ip:port`.
fn addr(c: &Cluster) -> String {
    c.url(1).trim_start_matches("http://").to_string()
}

/// What a raw connection received before the server closed it.
#[derive(Debug)]
struct Closed {
    bytes: Vec<u8>,
    /// From the start of reading to EOF or reset; `None` if it was still open at the bound.
    after: Option<Duration>,
}

impl Closed {
    /// The status of the (first) response, if one arrived.
    fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    /// The JSON body of the (first) response.
    fn json(&self) -> Value {
        let text = String::from_utf8_lossy(&self.bytes);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or(Value::Null)
    }
}

/// Reads until the server closes the connection (EOF or reset), for at most `bound`.
async fn read_until_closed(conn: &mut (impl AsyncReadExt + Unpin), bound: Duration) -> Closed {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => bytes.extend_from_slice(&buf[..k]),
            }
        }
    };
    let after = tokio::time::timeout(bound, read).await.ok().map(|()| start.elapsed());
    Closed { bytes, after }
}

/// Makes requests through the harness's client until `stop`, and returns the slowest
/// answer time and every failure.
async fn serve_others_until(n: NodeClient, stop: Arc<AtomicBool>) -> (Duration, Vec<String>) {
    let mut slowest = Duration::ZERO;
    let mut failures = Vec::new();
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let key = format!("other-{i}");
        match n.try_put(&key, "v").await {
            Ok(_) => {}
            Err(e) => failures.push(format!("PUT {key}: {e}")),
        }
        match n.try_entry_with(&key, "").await {
            Ok(Some(_)) => {}
            other => failures.push(format!("GET {key}: {other:?}")),
        }
        slowest = slowest.max(start.elapsed());
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (slowest, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stall_before_finishing_a_request_head_are_disconnected_while_others_are_served() {
    let c = Cluster::standalone().await;
    let addr = addr(&c);
    // Each stalls forever after sending this much. Several of each, at once.
    let stalls: [(&str, &[u8]); 5] = [
        ("half a request head", b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-"),
        ("a request line only", b"GET /healthz HTTP/1.1\r\n"),
        ("nothing at all", b""),
        ("the first byte of an HTTP/2 preface", b"P"),
        ("a whole HTTP/2 preface, then nothing", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ];
    let mut conns = Vec::new();
    for round in 0..8 {
        for (what, bytes) in stalls {
            let mut conn = TcpStream::connect(&addr).await.unwrap_or_else(|e| panic!("connect #{round}: {e}"));
            conn.write_all(bytes).await.expect("send the partial request");
            conns.push((what, conn));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let others = tokio::spawn(serve_others_until(c.node(1), stop.clone()));
    let mut waits = tokio::task::JoinSet::new();
    for (what, mut conn) in conns {
        waits.spawn(async move { (what, read_until_closed(&mut conn, CUT_OFF).await) });
    }
    let mut wrong = Vec::new();
    while let Some(r) = waits.join_next().await {
        let (what, closed) = r.expect("no panic");
        if closed.after.is_none() {
            wrong.push(format!("{what}: still open after {CUT_OFF:?}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (slowest, failures) = others.await.expect("no panic");
    assert!(wrong.is_empty(), "stalled connections not cut off:\n{}", wrong.join("\n"));
    assert!(failures.is_empty(), "other clients failed meanwhile: {failures:?}");
    assert!(slowest < SERVED_WITHIN, "other clients waited up to {slowest:?} meanwhile");
    still_serves(&c.node(1), "after-stalled-heads").await;
}

/// Sends `head` and `body_start`, then one more byte every 500 ms, and returns what came
/// back before the server closed the connection.
async fn trickle(addr: String, head: String, body_start: &'static [u8]) -> Closed {
    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    conn.write_all(head.as_bytes()).await.expect("send the head");
    conn.write_all(body_start).await.expect("send the start of the body");
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if wr.write_all(b"v").await.is_err() {
                return;
            }
        }
    });
    let closed = read_until_closed(&mut rd, CUT_OFF).await;
    writer.abort();
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_is_cut_off_with_408_while_others_are_served() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let addr = addr(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let others = tokio::spawn(serve_others_until(n.clone(), stop.clone()));
    let h = |line: &str, extra: &str| format!("{line} HTTP/1.1\r\nhost: {addr}\r\n{extra}\r\n");
    let slow = [
        ("v1 PUT, raw body", h("PUT /v1/kv/slow-raw", "content-length: 1000\r\n"), &b"0123456789"[..]),
        (
            "v1 PUT, JSON body",
            h("PUT /v1/kv/slow-json", "content-type: application/json\r\ncontent-length: 1000\r\n"),
            b"{\"value\":\"vv",
        ),
        ("v1 PUT, chunked", h("PUT /v1/kv/slow-chunked", "transfer-encoding: chunked\r\n"), b"3e8\r\nvvv"),
        (
            "compat /set form",
            h("POST /set", &format!("content-type: {FORM}\r\ncontent-length: 1000\r\n")),
            b"key=slow-set&value=vv",
        ),
        ("v1 batch", h("POST /v1/batch", "content-type: application/json\r\ncontent-length: 1000\r\n"), b"{\"ops\":["),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (what, head, start) in slow {
        let addr = addr.clone();
        tasks.spawn(async move { (what, trickle(addr, head, start).await) });
    }
    let mut wrong = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (what, closed) = r.expect("no panic");
        let json = closed.json();
        let close = String::from_utf8_lossy(&closed.bytes).to_ascii_lowercase().contains("connection: close");
        if closed.after.is_none() || closed.status() != Some(408) || json["error"]["code"] != "body_timeout" || !close {
            wrong.push(format!("{what}: {:?} after {:?}", String::from_utf8_lossy(&closed.bytes), closed.after));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (slowest, failures) = others.await.expect("no panic");
    assert!(wrong.is_empty(), "slow bodies not cut off with 408 within {CUT_OFF:?}:\n{}", wrong.join("\n"));
    assert!(failures.is_empty(), "other clients failed meanwhile: {failures:?}");
    assert!(slowest < SERVED_WITHIN, "other clients waited up to {slowest:?} meanwhile");
    let slow_keys: Vec<String> = everything(&n).await.into_iter().filter(|k| k.contains("slow")).collect();
    assert!(slow_keys.is_empty(), "a cut-off request wrote {slow_keys:?}");
    still_serves(&n, "after-slow-bodies").await;
}

/// Reads one HTTP/1.1 response with a Content-Length body: its status and body.
async fn read_response(conn: &mut TcpStream) -> Result<(u16, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status =
                    head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad head {head:?}"))?;
                return Ok((status, buf[end + 4..end + 4 + len].to_vec()));
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) => return Err(format!("closed after {} bytes", buf.len())),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The time limits are on stalls, not on connections: a keep-alive connection that keeps
/// sending requests, and a watch stream, outlive them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_keep_alive_connections_and_watch_streams_outlive_the_stall_limits() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let addr = addr(&c);
    // The harness's client gives up on a request after 15 s, body included; a stream may not.
    let streaming = ringkv_api::client::http().no_proxy().build().expect("an HTTP client");
    let mut watch = streaming.get(c.url(1) + "/v1/watch?prefix=w/").send().await.expect("open a watch");
    assert_eq!(watch.status(), StatusCode::OK);

    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    let start = Instant::now();
    let mut answered = 0;
    while start.elapsed() < CUT_OFF {
        let req = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n");
        conn.write_all(req.as_bytes()).await.expect("the connection is still open");
        let answer = tokio::time::timeout(SERVED_WITHIN, read_response(&mut conn)).await;
        match answer {
            Ok(Ok((200, _))) => answered += 1,
            other => panic!("request {answered} on a busy connection, after {:?}: {other:?}", start.elapsed()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(answered >= 10, "{answered}");

    n.put("w/late", "still watching").await;
    let mut seen = String::new();
    let found = tokio::time::timeout(SERVED_WITHIN, async {
        while let Ok(Some(chunk)) = watch.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("still watching") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the watch stream, open for {:?}, did not deliver the put: {seen:?}", start.elapsed());
}

/// A response that never ends (a watch stream), or a client stalled mid-head, must not
/// keep a node from stopping: SIGTERM drains for a bounded time, then closes what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_open_watch_stream_and_a_stalled_client_still_exits_zero() {
    let c = Cluster::standalone().await;
    let streaming = ringkv_api::client::http().no_proxy().build().expect("an HTTP client");
    let watch = streaming.get(c.url(1) + "/v1/watch?prefix=p/").send().await.expect("open a watch");
    assert_eq!(watch.status(), StatusCode::OK);
    let mut stalled = TcpStream::connect(addr(&c)).await.expect("connect");
    stalled.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("send half a head");
    let start = Instant::now();
    let status = c.stop(1).await; // panics if the node is still running after 20 s
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < CUT_OFF, "stopping took {:?}", start.elapsed());
    drop(watch);
}

#[tokio::test]
async fn a_live_node_serves_an_openapi_document_of_every_v1_route() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let resp = n.request(Method::GET, "/v1/openapi.json").send().await.expect("GET /v1/openapi.json");
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(ct.starts_with("application/json"), "{ct}");
    let doc: Value = resp.json().await.expect("JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    let generated: Value =
        serde_json::from_str(&ringkv_node::api::openapi::document().to_json().expect("serializes")).expect("JSON");
    assert_eq!(doc, generated, "the served document is not the one the code generates");
    let routes = [
        ("put", "/v1/kv/{key}"),
        ("get", "/v1/kv/{key}"),
        ("delete", "/v1/kv/{key}"),
        ("get", "/v1/kv"),
        ("post", "/v1/batch"),
        ("get", "/v1/watch"),
        ("get", "/v1/cluster"),
        ("get", "/v1/openapi.json"),
    ];
    let missing: Vec<_> = routes.iter().filter(|(m, p)| doc["paths"][p][m].is_null()).collect();
    assert!(missing.is_empty(), "not in the document: {missing:?}");

    // And every documented operation is routed: none is answered as an unknown route or
    // method. Requests are made harmless (a bad db) where they would write.
    let mut unrouted = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let concrete = match (method.as_str(), path.as_str()) {
                ("put" | "delete", _) => format!("{}?db=99", path.replace("{key}", "openapi-probe")),
                (_, "/v1/watch") => "/v1/watch?key=k&db=99".to_string(),
                _ => path.replace("{key}", "openapi-probe"),
            };
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
            let resp = n.request(m, &concrete).send().await.expect("an answer");
            let status = resp.status();
            let code: Value =
                if status.is_client_error() { resp.json().await.unwrap_or(Value::Null) } else { Value::Null };
            if status == StatusCode::METHOD_NOT_ALLOWED || code["error"]["code"] == "no_route" {
                unrouted.push(format!("{method} {path}: {status} {code}"));
            }
        }
    }
    assert!(unrouted.is_empty(), "documented but not routed: {unrouted:?}");
}
