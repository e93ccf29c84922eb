//! Bad requests: each gets its exact status and a JSON error with the expected code, and
//! none of them changes anything.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use ringkv_tests::{base64_encode, key_path, Cluster, NodeClient};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_KEY: usize = 4096;
const MAX_VALUE: usize = 1 << 20;

/// One bad request and the answer it must get.
struct Case {
    what: String,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn req(method: Method, path: &str, status: u16, code: &'static str) -> Case {
    Case {
        what: format!("{method} {path}"),
        method,
        path: path.to_string(),
        content_type: None,
        body: Vec::new(),
        status,
        code,
    }
}

fn put_raw(path: &str, ct: Option<&'static str>, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case { content_type: ct, body: body.into(), ..req(Method::PUT, path, status, code) }
}

fn put_json(path: &str, body: impl Into<String>, status: u16, code: &'static str) -> Case {
    let body: String = body.into();
    let mut c = put_raw(path, Some("application/json"), body.clone(), status, code);
    c.what = format!("PUT {path} with JSON {}", if body.len() > 80 { format!("{}…", &body[..80]) } else { body });
    c
}

/// Every bad input the API must refuse, with its status and error code.
fn cases() -> Vec<Case> {
    let long_key = "k".repeat(MAX_KEY + 1);
    let long_utf8_key = "é".repeat(MAX_KEY / 2 + 1); // 4098 bytes in 2049 characters
    let big_value = vec![b'v'; MAX_VALUE + 1];
    let big_json = json!({ "value": "v".repeat(MAX_VALUE + 1) }).to_string();
    let big_b64 = json!({ "value": base64_encode(&vec![0xffu8; MAX_VALUE + 1]), "encoding": "base64" }).to_string();
    let mut v = vec![
        // Databases are 0..=15.
        req(Method::GET, "/v1/kv/k?db=abc", 400, "bad_db"),
        put_raw("/v1/kv/k?db=16", None, "v", 400, "bad_db"),
        req(Method::GET, "/v1/kv?db=-1", 400, "bad_db"),
        req(Method::DELETE, "/v1/kv/k?db=99", 400, "bad_db"),
        put_raw("/v1/kv/k?db=", None, "v", 400, "bad_db"),
        // TTLs are positive, at most ten years, with known units.
        put_raw("/v1/kv/k?ttl=soon", None, "v", 400, "bad_ttl"),
        put_raw("/v1/kv/k?ttl=-5", None, "v", 400, "bad_ttl"),
        put_raw("/v1/kv/k?ttl=-5s", None, "v", 400, "bad_ttl"),
        put_raw("/v1/kv/k?ttl=0", None, "v", 400, "bad_ttl"),
        put_raw("/v1/kv/k?ttl=0ms", None, "v", 400, "bad_ttl"),
        put_raw("/v1/kv/k?ttl=", None, "v", 400, "bad_ttl"),
        put_raw("/v1/kv/k?ttl=99999999999", None, "v", 400, "bad_ttl"),
        put_raw("/v1/kv/k?ttl=100000h", None, "v", 400, "bad_ttl"),
        put_raw("/v1/kv/k?ttl=5parsecs", None, "v", 400, "bad_ttl"),
        put_json("/v1/kv/k", r#"{"value":"x","ttl":-1}"#, 400, "bad_ttl"),
        put_json("/v1/kv/k", r#"{"value":"x","ttl":0}"#, 400, "bad_ttl"),
        put_json("/v1/kv/k", r#"{"value":"x","ttl":"forever"}"#, 400, "bad_ttl"),
        put_json("/v1/kv/k", r#"{"value":"x","ttl":true}"#, 400, "bad_ttl"),
        put_json("/v1/kv/k", r#"{"value":"x","ttl":1e300}"#, 400, "bad_ttl"),
        put_json("/v1/kv/k?ttl=5s", r#"{"value":"x","ttl":"5s"}"#, 400, "bad_ttl"),
        // JSON bodies: well-formed, a string value, known fields only.
        put_json("/v1/kv/k", r#"{"value": "x""#, 400, "bad_json"),
        put_json("/v1/kv/k", "", 400, "bad_json"),
        put_json("/v1/kv/k", "not json", 400, "bad_json"),
        put_json("/v1/kv/k", r#"{"value": 42}"#, 400, "bad_json"),
        put_json("/v1/kv/k", r#"{"value": null}"#, 400, "bad_json"),
        put_json("/v1/kv/k", r#"{"value": ["x"]}"#, 400, "bad_json"),
        put_json("/v1/kv/k", r#"{"value":"x","colour":"red"}"#, 400, "bad_json"),
        put_json("/v1/kv/k", "{}", 400, "bad_json"),
        put_json("/v1/kv/k", "[1,2]", 400, "bad_json"),
        put_json("/v1/kv/k", r#"{"value":"!!not base64!!","encoding":"base64"}"#, 400, "bad_json"),
        put_json("/v1/kv/k", r#"{"value":"x","encoding":"rot13"}"#, 400, "bad_json"),
        // Size limits.
        put_raw(&format!("/v1/kv/{long_key}"), None, "v", 413, "key_too_large"),
        req(Method::GET, &format!("/v1/kv/{long_key}"), 413, "key_too_large"),
        put_raw(&key_path(&long_utf8_key), None, "v", 413, "key_too_large"),
        put_raw("/v1/kv/big", Some("application/octet-stream"), big_value, 413, "value_too_large"),
        put_json("/v1/kv/big", big_json, 413, "value_too_large"),
        put_json("/v1/kv/big", big_b64, 413, "value_too_large"),
        // Content types.
        put_raw("/v1/kv/k", Some("multipart/form-data; boundary=x"), "--x--", 415, "unsupported_media_type"),
        put_raw("/v1/kv/k", Some("application/xml"), "<v/>", 415, "unsupported_media_type"),
        put_raw("/v1/kv/k", Some("image/png"), "png", 415, "unsupported_media_type"),
        // Query parameters: known ones, each at most once.
        put_raw("/v1/kv/k?colour=red", None, "v", 400, "bad_query"),
        put_raw("/v1/kv/k?db=1&db=2", None, "v", 400, "bad_query"),
        req(Method::GET, "/v1/kv/k?db=1&db=1", 400, "bad_query"),
        req(Method::GET, "/v1/kv/k?ttl=5s", 400, "bad_query"),
        req(Method::DELETE, "/v1/kv/k?ttl=5s", 400, "bad_query"),
        req(Method::GET, "/v1/kv?prefix=a&foo=1", 400, "bad_query"),
        req(Method::GET, "/v1/kv/k?consistency=eventual", 400, "bad_consistency"),
        // Routes and methods.
        req(Method::GET, "/v1/nope", 404, "no_route"),
        req(Method::GET, "/v2/kv/k", 404, "no_route"),
        req(Method::GET, "/", 404, "no_route"),
        req(Method::POST, "/v1/kv/x", 405, "method_not_allowed"),
        req(Method::PATCH, "/v1/kv/x", 405, "method_not_allowed"),
        req(Method::DELETE, "/v1/kv", 405, "method_not_allowed"),
        req(Method::PUT, "/v1/cluster", 405, "method_not_allowed"),
        req(Method::POST, "/readyz", 405, "method_not_allowed"),
        // Listing parameters.
        req(Method::GET, "/v1/kv?cursor=!!!", 400, "bad_cursor"),
        req(Method::GET, "/v1/kv?cursor=%FF", 400, "bad_query"), // not UTF-8: refused while decoding the query
        req(Method::GET, "/v1/kv?cursor=not*base64", 400, "bad_cursor"),
        req(Method::GET, "/v1/kv?limit=0", 400, "bad_limit"),
        req(Method::GET, "/v1/kv?limit=1001", 400, "bad_limit"),
        req(Method::GET, "/v1/kv?limit=abc", 400, "bad_limit"),
        req(Method::GET, "/v1/kv?limit=-1", 400, "bad_limit"),
        req(Method::GET, "/v1/kv?limit=", 400, "bad_limit"),
        // Keys must be valid percent-encoded UTF-8.
        req(Method::GET, "/v1/kv/%FF", 400, "bad_key"),
        put_raw("/v1/kv/%FF", None, "v", 400, "bad_key"),
        put_raw("/v1/kv/a%E2%82", None, "v", 400, "bad_key"),
        req(Method::DELETE, "/v1/kv/%C0%AF", 400, "bad_key"),
    ];
    for c in &mut v {
        if c.what.len() > 120 {
            c.what = format!("{}…", &c.what[..c.what.char_indices().nth(100).map_or(c.what.len(), |(i, _)| i)]);
        }
    }
    v
}

/// Sends a case and returns what was wrong with the answer, if anything.
async fn check(n: &NodeClient, c: &Case) -> Option<String> {
    // A fresh connection per case, so one case's connection handling cannot fail the next
    // (that is tested on its own below).
    let mut r = n.request(c.method.clone(), &c.path).header("connection", "close");
    if let Some(ct) = c.content_type {
        r = r.header("content-type", ct);
    }
    if !c.body.is_empty() || c.method == Method::PUT {
        r = r.body(c.body.clone());
    }
    let resp = match r.send().await {
        Ok(resp) => resp,
        Err(e) => return Some(format!("{}: no answer: {e}", c.what)),
    };
    let status = resp.status().as_u16();
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let shape_ok = body.as_object().is_some_and(|o| o.len() == 1)
        && body["error"].as_object().is_some_and(|o| o.len() == 2)
        && body["error"]["message"].as_str().is_some_and(|m| !m.is_empty());
    let code = body["error"]["code"].as_str().unwrap_or("");
    if status != c.status || code != c.code || !shape_ok || !ctype.starts_with("application/json") {
        let shown: String = text.chars().take(200).collect();
        return Some(format!(
            "{}: want {} {}, got {status} {code:?} (content-type {ctype:?}, body {shown})",
            c.what, c.status, c.code
        ));
    }
    None
}

/// Sum over shards of a per-shard gauge.
async fn total(n: &NodeClient, metric: &str) -> f64 {
    n.metrics().await.sum(metric)
}

#[tokio::test]
async fn every_bad_input_gets_its_status_and_error_code_and_changes_nothing() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let log_before = total(&n, "ringkv_raft_last_log_index").await;

    let mut wrong = Vec::new();
    for case in cases() {
        if let Some(why) = check(&n, &case).await {
            wrong.push(why);
        }
    }

    // Nothing reached the Raft log and nothing was stored, in any database.
    let mut leftovers = Vec::new();
    for db in 0..=15u8 {
        for e in n.list_all(db, "", 1000).await {
            leftovers.push(format!("db {db}: {:?} = {:?}", e.key, e.value));
        }
    }
    let log_after = total(&n, "ringkv_raft_last_log_index").await;
    assert!(
        wrong.is_empty() && leftovers.is_empty() && log_after == log_before,
        "{} of {} bad inputs were answered wrongly:\n  {}\nkeys written by rejected requests: {leftovers:?}\n\
         raft log entries appended: {}",
        wrong.len(),
        cases().len(),
        wrong.join("\n  "),
        log_after - log_before,
    );

    // The node is still healthy and serves good requests.
    assert!(n.is_ready().await, "the node is still ready");
    n.put("k", "fine").await;
    assert_eq!(n.get("k").await.as_deref(), Some("fine"));
}

/// `%` must start a two-hex-digit escape. Taking a malformed escape literally makes
/// `/v1/kv/100%` and `/v1/kv/100%25` name the same key, and a client's encoding bug
/// silently writes a key it never meant.
#[tokio::test]
async fn keys_with_malformed_percent_escapes_are_rejected_not_taken_literally() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let cases = [
        req(Method::GET, "/v1/kv/%ZZ", 400, "bad_key"),
        put_raw("/v1/kv/100%", None, "v", 400, "bad_key"),
        put_raw("/v1/kv/%4", None, "v", 400, "bad_key"),
        put_raw("/v1/kv/a%G1b", None, "v", 400, "bad_key"),
        req(Method::DELETE, "/v1/kv/%%", 400, "bad_key"),
    ];
    let mut wrong = Vec::new();
    for case in &cases {
        wrong.extend(check(&n, case).await);
    }
    let written: Vec<String> = n.list_all(0, "", 1000).await.into_iter().map(|e| e.key).collect();
    assert!(
        wrong.is_empty() && written.is_empty(),
        "malformed escapes were accepted:\n  {}\nkeys written: {written:?}",
        wrong.join("\n  ")
    );
}

#[tokio::test]
async fn rejected_puts_leave_an_existing_key_untouched() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    n.put("keep", "original").await;
    let before = n.entry("keep").await.expect("stored");
    let big = vec![b'x'; MAX_VALUE + 1];
    let attempts = vec![
        put_raw("/v1/kv/keep?ttl=soon", None, "changed", 400, "bad_ttl"),
        put_raw("/v1/kv/keep?ttl=-1", None, "changed", 400, "bad_ttl"),
        put_json("/v1/kv/keep", r#"{"value":"changed","ttl":"-1s"}"#, 400, "bad_ttl"),
        put_json("/v1/kv/keep", r#"{"value":"changed","bogus":1}"#, 400, "bad_json"),
        put_json("/v1/kv/keep", r#"{"value":"changed""#, 400, "bad_json"),
        put_raw("/v1/kv/keep", Some("multipart/form-data; boundary=x"), "changed", 415, "unsupported_media_type"),
        put_raw("/v1/kv/keep", Some("application/octet-stream"), big, 413, "value_too_large"),
        put_raw("/v1/kv/keep?db=0&extra=1", None, "changed", 400, "bad_query"),
        req(Method::DELETE, "/v1/kv/keep?db=0&db=0", 400, "bad_query"),
    ];
    for a in &attempts {
        if let Some(why) = check(&n, a).await {
            panic!("{why}");
        }
        let now = n.entry("keep").await.unwrap_or_else(|| panic!("{}: the key is gone", a.what));
        assert_eq!(now, before, "{} changed the key", a.what);
    }
    // A bad request in another database does not touch db 0 either.
    let resp = n.request(Method::PUT, "/v1/kv/keep?db=16").body("changed").send().await.expect("PUT");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(n.entry("keep").await.expect("stored"), before);
}

/// Reads one HTTP/1.1 response (head and Content-Length body) from `conn`: the status
/// line and the lower-cased headers. `Err` on EOF, reset or timeout.
async fn read_response(conn: &mut TcpStream) -> Result<(String, Vec<(String, String)>), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let status = lines.next().unwrap_or_default().to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize =
                    headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                while buf.len() < end + 4 + len {
                    match conn.read(&mut chunk).await {
                        Ok(0) => return Err("EOF in the response body".to_string()),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                return Ok((status, headers));
            }
            match conn.read(&mut chunk).await {
                Ok(0) => return Err("connection closed before a response".to_string()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.map_err(|_| "no response within 5s".to_string())?
}

/// The node answers 413 from the Content-Length alone, before reading the body. It must
/// then either read and discard the body, keeping the connection usable, or say
/// `Connection: close`. Answering without `close` and then closing the connection
/// breaks keep-alive clients: their next request on that connection fails (with reqwest:
/// `IncompleteMessage` or `BrokenPipe`, in about a third of attempts).
#[tokio::test]
async fn a_413_before_the_body_is_read_keeps_the_connection_usable_or_says_close() {
    let c = Cluster::standalone().await;
    let addr = c.url(1).trim_start_matches("http://").to_string();
    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "PUT /v1/kv/too-big HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/octet-stream\r\n\
         content-length: {}\r\n\r\n",
        MAX_VALUE + 1
    );
    conn.write_all(head.as_bytes()).await.expect("send the head");
    let (status, headers) = read_response(&mut conn).await.expect("a response to the head alone");
    assert!(status.contains(" 413 "), "{status}");
    if headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close")) {
        return; // The client is told not to reuse the connection.
    }
    // The server promised a persistent connection: finish the request, send another.
    let rest = async {
        conn.write_all(&vec![b'x'; MAX_VALUE + 1]).await.map_err(|e| format!("sending the body: {e}"))?;
        conn.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| format!("sending the next request: {e}"))?;
        read_response(&mut conn).await
    };
    match rest.await {
        Ok((status, _)) => assert!(status.contains(" 200 "), "the next request on the connection got {status}"),
        Err(e) => panic!(
            "the 413 did not say `Connection: close` (headers {headers:?}), yet the next request on the \
             connection failed: {e}"
        ),
    }
}

#[tokio::test]
async fn limits_are_inclusive_a_key_and_value_at_the_limit_are_accepted() {
    let c = Cluster::standalone().await;
    let n = c.node(1);
    let key = "k".repeat(MAX_KEY);
    let value = vec![0xabu8; MAX_VALUE];
    let resp = n
        .request(Method::PUT, &key_path(&key))
        .header("content-type", "application/octet-stream")
        .body(value.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap_or_default());
    let got =
        n.request(Method::GET, &key_path(&key)).header("accept", "application/octet-stream").send().await.expect("GET");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.expect("body").len(), MAX_VALUE);
    let listed = n.list("limit=1000").await;
    assert_eq!(listed.count, 1);
    assert_eq!(listed.items[0].key.len(), MAX_KEY);
}

/// A client that does not send `Expect: 100-continue` (Python's urllib and `requests`
/// do not) writes its whole body before it reads the answer. An over-limit value must
/// still get the 413 JSON answer, not a reset connection and a broken pipe (before the
/// fix: 29 of 30 such PUTs of 1.1–8 MB failed that way). Ten tries each of a declared
/// length and of a chunked body, 1 MiB to 8 MiB over the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_limit_body_sent_without_100_continue_gets_the_413_answer_not_a_reset() {
    let c = Cluster::standalone().await;
    let addr = c.url(1).trim_start_matches("http://").to_string();
    for i in 0..20usize {
        let chunked = i % 2 == 1;
        let size = MAX_VALUE + (1 << 20) * (1 + i % 8);
        let body = vec![b'x'; size];
        let conn = TcpStream::connect(&addr).await.expect("connect");
        let (mut rd, mut wr) = conn.into_split();
        let head = if chunked {
            format!("PUT /v1/kv/big-{i} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n")
        } else {
            format!("PUT /v1/kv/big-{i} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {size}\r\n\r\n")
        };
        // As urllib does: head and body first, then read.
        let send = async move {
            wr.write_all(head.as_bytes()).await?;
            if chunked {
                for part in body.chunks(64 << 10) {
                    wr.write_all(format!("{:x}\r\n", part.len()).as_bytes()).await?;
                    wr.write_all(part).await?;
                    wr.write_all(b"\r\n").await?;
                }
                wr.write_all(b"0\r\n\r\n").await?;
            } else {
                wr.write_all(&body).await?;
            }
            wr.flush().await
        };
        let sent = tokio::time::timeout(Duration::from_secs(20), send).await.expect("the body is taken within 20s");
        assert!(sent.is_ok(), "try {i} ({size} bytes, chunked {chunked}): sending the body failed: {sent:?}");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut answer)).await;
        assert!(matches!(read, Ok(Ok(_))), "try {i}: reading the answer failed: {read:?}");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "try {i} ({size} bytes, chunked {chunked}): {text}");
        assert!(text.contains(r#""code":"value_too_large""#), "try {i}: {text}");
    }
    assert_eq!(c.node(1).get("big-0").await, None, "nothing was stored");
}
