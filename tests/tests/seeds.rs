//! The documented curl requests of the Go stores ringkv replaces, replayed against a
//! 3-node cluster with the bodies and content types curl sends (`curl -d` is
//! `application/x-www-form-urlencoded`; `-X PUT` without `-d` sends no body and no type).
//! Requests go to followers as well as leaders, and a redirect is never followed: curl
//! without `-L` would not follow it either.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use ringkv_node::ring::shard_for;
use ringkv_tests::{eventually, Cluster};
use serde_json::{json, Value};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
/// Bound on waiting for a TTL to expire (the longest TTL used here is 5 s).
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(20);

/// A curl-like client. With a cookie jar it keeps the cookies servers set and sends them
/// back, as `curl -c jar -b jar` or a browser does (the harness's reqwest is built
/// without a cookie store, so the jar is kept here).
struct Curl {
    http: reqwest::Client,
    jar: Option<Mutex<BTreeMap<String, String>>>,
}

/// An answer, read completely.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    set_cookie: Vec<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts the status and returns the body.
    fn expect(&self, status: u16) -> &str {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        &self.body
    }

    /// Asserts a v1 JSON error with this status and code.
    fn expect_error(&self, status: u16, code: &str) {
        self.expect(status);
        assert_eq!(self.json()["error"]["code"], code, "{self:?}");
    }

    /// Asserts govault's not-found answer.
    fn expect_govault_not_found(&self) {
        self.expect(404);
        assert_eq!(self.json(), json!({"message": {"error": "Key not found"}}), "{self:?}");
    }
}

impl Curl {
    fn new(with_cookies: bool) -> Self {
        let http = ringkv_api::client::http()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client");
        Curl { http, jar: with_cookies.then(|| Mutex::new(BTreeMap::new())) }
    }

    /// `curl -X method url`, with the jar's cookies.
    fn req(&self, c: &Cluster, node: u64, method: Method, path: &str) -> RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", c.url(node))).header("accept", "*/*");
        if let Some(jar) = &self.jar {
            let jar = jar.lock().expect("jar lock");
            if !jar.is_empty() {
                r = r.header("cookie", jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "));
            }
        }
        r
    }

    /// `curl -X method url -d body -H 'Content-Type: ct'`.
    fn with_body(&self, c: &Cluster, node: u64, method: Method, path: &str, ct: &str, body: &str) -> RequestBuilder {
        self.req(c, node, method, path).header("content-type", ct).body(body.to_string())
    }

    async fn send(&self, req: RequestBuilder) -> Reply {
        let resp = req.send().await.expect("the node answers");
        let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_type = header("content-type");
        let set_cookie: Vec<String> =
            resp.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
        if let Some(jar) = &self.jar {
            let mut jar = jar.lock().expect("jar lock");
            for c in &set_cookie {
                let pair = c.split(';').next().unwrap_or("");
                if let Some((k, v)) = pair.split_once('=') {
                    jar.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        let status = resp.status();
        let body = resp.text().await.expect("a readable body");
        Reply { status, content_type, set_cookie, body }
    }
}

/// The nodes in the order followers of `key`'s shard first, then its leader.
async fn followers_first(c: &Cluster, db: u8, key: &str) -> Vec<u64> {
    let leaders = c.wait_for_leaders(&c.ids()).await;
    let leader = leaders[&shard_for(db, key.as_bytes(), c.shards)];
    let mut order: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
    order.push(leader);
    order
}

/// The value of `key` in `db` through the v1 API of `node`, to check that compat
/// writes land in the same store.
async fn v1_value(c: &Cluster, node: u64, db: u8, key: &str) -> Option<String> {
    c.node(node).get_in(db, key).await
}

/// Polls until `GET path` answers 404 on `node`, bounded by [`EXPIRY_TIMEOUT`].
async fn wait_gone(curl: &Curl, c: &Cluster, node: u64, path: &str) {
    eventually(&format!("{path} to expire"), EXPIRY_TIMEOUT, || async move {
        let r = curl.send(curl.req(c, node, Method::GET, path)).await;
        match r.status {
            StatusCode::NOT_FOUND => Ok(()),
            StatusCode::OK => Err(format!("still there: {:?}", r.body)),
            _ => panic!("unexpected answer while waiting for expiry: {r:?}"),
        }
    })
    .await
}

#[tokio::test]
async fn govault_set_get_delete_ttl_and_select_db_work_on_every_node() {
    let c = Cluster::start(3, 4).await;
    let curl = Curl::new(false);
    let [f1, f2, leader] = followers_first(&c, 0, "foo").await[..] else { panic!("three nodes") };

    // curl -X POST http://localhost:8080/set -d '{"key": "foo", "value": "bar"}' -H "Content-Type: application/json"
    let r = curl.send(curl.with_body(&c, f1, Method::POST, "/set", JSON, r#"{"key": "foo", "value": "bar"}"#)).await;
    assert_eq!(r.expect(201), "", "govault's set answers 201 with no body");
    // curl -X GET http://localhost:8080/get/foo
    for node in [f2, leader, f1] {
        let r = curl.send(curl.req(&c, node, Method::GET, "/get/foo")).await;
        assert_eq!(r.expect(200), "bar", "the raw value, from node {node}");
        assert!(r.content_type.as_deref().is_some_and(|t| t.starts_with("text/plain")), "{r:?}");
        assert_eq!(curl.send(curl.req(&c, node, Method::GET, "/get?key=foo")).await.expect(200), "bar");
    }
    assert_eq!(v1_value(&c, leader, 0, "foo").await.as_deref(), Some("bar"));
    // The same line without -H: curl sends it form-typed, and govault read JSON anyway.
    let r = curl.send(curl.with_body(&c, f2, Method::POST, "/set", FORM, r#"{"key": "foo", "value": "baz"}"#)).await;
    r.expect(201);
    assert_eq!(curl.send(curl.req(&c, f1, Method::GET, "/get/foo")).await.expect(200), "baz");

    // curl -X DELETE http://localhost:8080/delete/foo
    assert_eq!(curl.send(curl.req(&c, f2, Method::DELETE, "/delete/foo")).await.expect(204), "");
    curl.send(curl.req(&c, f1, Method::GET, "/get/foo")).await.expect_govault_not_found();
    curl.send(curl.req(&c, leader, Method::GET, "/get?key=foo")).await.expect_govault_not_found();
    // Deleting an absent key is idempotent.
    curl.send(curl.req(&c, f1, Method::DELETE, "/delete/foo")).await.expect(204);
    curl.send(curl.with_body(&c, leader, Method::POST, "/set", JSON, r#"{"key":"q","value":"v"}"#)).await.expect(201);
    curl.send(curl.req(&c, f1, Method::DELETE, "/delete?key=q")).await.expect(204);
    assert_eq!(v1_value(&c, f2, 0, "q").await, None);

    // Bad JSON, missing key or value, wrong value type: 400 with the project's error.
    for body in [r#"{"key": "foo"}"#, r#"{"value": "bar"}"#, r#"{"key": "foo", "value": 1}"#, "{", ""] {
        curl.send(curl.with_body(&c, f1, Method::POST, "/set", JSON, body)).await.expect_error(400, "bad_json");
    }

    govault_set_with_ttl_expires(&c, &curl).await;
    govault_select_db_is_per_client(&c).await;
}

/// `POST /set_with_ttl` with the TTL as integer seconds, fractional seconds and a
/// duration string: each key is there, then gone; a key without TTL stays.
async fn govault_set_with_ttl_expires(c: &Cluster, curl: &Curl) {
    let [f1, f2, leader] = followers_first(c, 0, "session").await[..] else { panic!("three nodes") };
    curl.send(curl.with_body(c, leader, Method::POST, "/set", JSON, r#"{"key": "keeper", "value": "k"}"#))
        .await
        .expect(201);
    let cases = [("session", "2"), ("frac", "1.5"), ("string", r#""2s""#)];
    for (key, ttl) in cases {
        let body = format!(r#"{{"key": "{key}", "value": "v-{key}", "ttl": {ttl}}}"#);
        assert_eq!(curl.send(curl.with_body(c, f1, Method::POST, "/set_with_ttl", JSON, &body)).await.expect(201), "");
        let e = c.node(f2).entry(key).await.unwrap_or_else(|| panic!("{key} is there right after the set"));
        assert_eq!(e.value, format!("v-{key}"));
        assert!(e.ttl_ms.is_some_and(|t| t <= 2000), "ttl {ttl} was applied: {e:?}");
    }
    for (key, _) in cases {
        wait_gone(curl, c, f2, &format!("/get/{key}")).await;
    }
    assert_eq!(curl.send(curl.req(c, f1, Method::GET, "/get/keeper")).await.expect(200), "k");

    for (body, code) in [
        (r#"{"key": "x", "value": "v"}"#, "bad_ttl"),
        (r#"{"key": "x", "value": "v", "ttl": 0}"#, "bad_ttl"),
        (r#"{"key": "x", "value": "v", "ttl": -3}"#, "bad_ttl"),
        (r#"{"key": "x", "value": "v", "ttl": "soon"}"#, "bad_ttl"),
        (r#"{"key": "x", "ttl": 5}"#, "bad_json"),
    ] {
        curl.send(curl.with_body(c, f1, Method::POST, "/set_with_ttl", JSON, body)).await.expect_error(400, code);
    }
}

/// `POST /select_db` sets a cookie: the client that carries it reads and writes its
/// database; a client without it stays in db 0. `?db=` and the header override it.
async fn govault_select_db_is_per_client(c: &Cluster) {
    let [f1, f2, leader] = followers_first(c, 3, "shared").await[..] else { panic!("three nodes") };
    let alice = Curl::new(true);
    let bob = Curl::new(false);

    let r = alice.send(alice.with_body(c, f1, Method::POST, "/select_db", JSON, r#"{"db": 3}"#)).await;
    r.expect(200);
    assert!(r.set_cookie.iter().any(|s| s.starts_with("ringkv_db=3;") && s.contains("HttpOnly")), "{r:?}");

    alice
        .send(alice.with_body(c, f2, Method::POST, "/set", JSON, r#"{"key": "shared", "value": "alice"}"#))
        .await
        .expect(201);
    bob.send(bob.with_body(c, leader, Method::POST, "/set", JSON, r#"{"key": "shared", "value": "bob"}"#))
        .await
        .expect(201);
    for node in [f1, f2, leader] {
        assert_eq!(alice.send(alice.req(c, node, Method::GET, "/get/shared")).await.expect(200), "alice");
        assert_eq!(bob.send(bob.req(c, node, Method::GET, "/get?key=shared")).await.expect(200), "bob");
    }
    assert_eq!(v1_value(c, f1, 3, "shared").await.as_deref(), Some("alice"));
    assert_eq!(v1_value(c, f1, 0, "shared").await.as_deref(), Some("bob"));

    // Precedence: query > header > cookie.
    let get = |who: &Curl, path: &str, header: Option<&str>| {
        let mut r = who.req(c, f2, Method::GET, path);
        if let Some(h) = header {
            r = r.header("x-ringkv-db", h);
        }
        r
    };
    assert_eq!(alice.send(get(&alice, "/get/shared", Some("0"))).await.expect(200), "bob");
    assert_eq!(alice.send(get(&alice, "/get/shared?db=0", Some("3"))).await.expect(200), "bob");
    assert_eq!(bob.send(get(&bob, "/get/shared", Some("3"))).await.expect(200), "alice");
    assert_eq!(bob.send(get(&bob, "/retrieve?key=shared&db=3", None)).await.expect(200), "alice");

    // Alice's delete removes her db's key only.
    alice.send(alice.req(c, leader, Method::DELETE, "/delete/shared")).await.expect(204);
    alice.send(alice.req(c, f1, Method::GET, "/get/shared")).await.expect_govault_not_found();
    assert_eq!(bob.send(bob.req(c, f1, Method::GET, "/get/shared")).await.expect(200), "bob");

    bob.send(bob.with_body(c, f1, Method::POST, "/select_db", JSON, r#"{"db": 16}"#)).await.expect_error(400, "bad_db");
    bob.send(bob.req(c, f1, Method::GET, "/get/shared?db=99")).await.expect_error(400, "bad_db");
}

#[tokio::test]
async fn gokeydb_form_set_and_query_get_work_on_every_node() {
    let c = Cluster::start(3, 4).await;
    let curl = Curl::new(false);
    let [f1, f2, leader] = followers_first(&c, 0, "mykey").await[..] else { panic!("three nodes") };

    // curl -X POST http://localhost:8080/set -d 'key=mykey&value=myvalue'
    let r = curl.send(curl.with_body(&c, f1, Method::POST, "/set", FORM, "key=mykey&value=myvalue")).await;
    r.expect(200);
    assert_eq!(r.json()["key"], "mykey", "{r:?}");
    // curl http://localhost:8080/get?key=mykey
    for node in [f2, leader, f1] {
        assert_eq!(curl.send(curl.req(&c, node, Method::GET, "/get?key=mykey")).await.expect(200), "myvalue");
    }
    assert_eq!(v1_value(&c, f2, 0, "mykey").await.as_deref(), Some("myvalue"));

    // PUT and GET with the fields in the query; percent-encoding decoded as a form.
    curl.send(curl.with_body(&c, f2, Method::PUT, "/set", FORM, "key=a%20b&value=x%26y%3Dz")).await.expect(200);
    assert_eq!(v1_value(&c, leader, 0, "a b").await.as_deref(), Some("x&y=z"));
    curl.send(curl.req(&c, leader, Method::GET, "/set?key=mykey&value=v2")).await.expect(200);
    assert_eq!(curl.send(curl.req(&c, f1, Method::GET, "/get?key=mykey")).await.expect(200), "v2");

    curl.send(curl.req(&c, f2, Method::GET, "/get?key=missing")).await.expect_govault_not_found();
    curl.send(curl.with_body(&c, f1, Method::POST, "/set", FORM, "value=v")).await.expect_error(400, "bad_key");
    curl.send(curl.with_body(&c, f1, Method::POST, "/set", FORM, "key=k&value=v&ttl=5"))
        .await
        .expect_error(400, "bad_form");
    curl.send(curl.with_body(&c, f1, Method::POST, "/set", "multipart/form-data; boundary=x", ""))
        .await
        .expect_error(415, "unsupported_media_type");
    // The project's limits apply: an over-long key is 413.
    let long = format!("key={}&value=v", "k".repeat(4097));
    curl.send(curl.with_body(&c, f1, Method::POST, "/set", FORM, &long)).await.expect_error(413, "key_too_large");
}

#[tokio::test]
async fn distributed_kv_database_query_set_and_get_work_on_every_node() {
    let c = Cluster::start(3, 4).await;
    let curl = Curl::new(false);
    let [f1, f2, leader] = followers_first(&c, 0, "exampleKey").await[..] else { panic!("three nodes") };

    // curl -X PUT 'http://localhost:8080/set?key=exampleKey&value=exampleValue' (no body, no type)
    let r = curl.send(curl.req(&c, f1, Method::PUT, "/set?key=exampleKey&value=exampleValue")).await;
    r.expect(200);
    assert_eq!(r.json()["key"], "exampleKey", "{r:?}");
    // curl http://localhost:8080/get?key=exampleKey
    for node in [f2, leader, f1] {
        assert_eq!(curl.send(curl.req(&c, node, Method::GET, "/get?key=exampleKey")).await.expect(200), "exampleValue");
    }
    // Any method sets.
    for (i, m) in [Method::POST, Method::GET, Method::PATCH].into_iter().enumerate() {
        curl.send(curl.req(&c, f2, m.clone(), &format!("/set?key=exampleKey&value=v{i}"))).await.expect(200);
        assert_eq!(
            curl.send(curl.req(&c, leader, Method::GET, "/get?key=exampleKey")).await.expect(200),
            format!("v{i}"),
            "{m}"
        );
    }
    curl.send(curl.req(&c, f1, Method::GET, "/get?key=nope")).await.expect_govault_not_found();
    // The README's unquoted URL reaches the server as `/set?key=exampleKey` (the shell
    // cuts at `&`): refused, with a hint, rather than storing an empty value.
    let r = curl.send(curl.req(&c, f1, Method::PUT, "/set?key=exampleKey")).await;
    r.expect_error(400, "bad_value");
    assert!(r.body.contains("quote the URL"), "{r:?}");
    assert_eq!(curl.send(curl.req(&c, leader, Method::GET, "/get?key=exampleKey")).await.expect(200), "v2");
}

#[tokio::test]
async fn keyvaluestore_store_and_retrieve_answer_on_every_node_without_redirects() {
    let c = Cluster::start(3, 4).await;
    let curl = Curl::new(false);
    let [f1, f2, leader] = followers_first(&c, 0, "mykey").await[..] else { panic!("three nodes") };

    // curl -Lkv 'http://localhost:8081/store?key=mykey&value=myvalue'
    curl.send(curl.req(&c, f1, Method::GET, "/store?key=mykey&value=myvalue")).await.expect(200);
    // curl -Lkv 'http://localhost:8081/retrieve?key=mykey'
    for node in [f2, leader, f1] {
        let r = curl.send(curl.req(&c, node, Method::GET, "/retrieve?key=mykey")).await;
        assert_eq!(r.expect(200), "myvalue", "node {node} answers itself, no redirect");
    }
    for (i, m) in [Method::POST, Method::PUT].into_iter().enumerate() {
        curl.send(curl.req(&c, f2, m, &format!("/store?key=mykey&value=v{i}"))).await.expect(200);
        assert_eq!(curl.send(curl.req(&c, f1, Method::GET, "/retrieve?key=mykey")).await.expect(200), format!("v{i}"));
    }
    assert_eq!(v1_value(&c, leader, 0, "mykey").await.as_deref(), Some("v1"));
    // curl http://localhost:8081/retrieve?key=test
    curl.send(curl.req(&c, f2, Method::GET, "/retrieve?key=test")).await.expect_error(404, "not_found");
    curl.send(curl.req(&c, f2, Method::GET, "/retrieve")).await.expect_error(400, "bad_key");
    curl.send(curl.req(&c, f2, Method::DELETE, "/store?key=k&value=v")).await.expect_error(405, "method_not_allowed");
}

#[tokio::test]
async fn kv_store_v1_put_with_go_duration_ttl_works_on_every_node() {
    let c = Cluster::start(3, 4).await;
    let curl = Curl::new(false);
    let [f1, f2, leader] = followers_first(&c, 0, "mykey").await[..] else { panic!("three nodes") };

    // curl -X PUT http://localhost:8080/v1/kv/mykey -H "Content-Type: application/json" -d '{"value": "myvalue", "ttl": "5s"}'
    let r = curl
        .send(curl.with_body(&c, f1, Method::PUT, "/v1/kv/mykey", JSON, r#"{"value": "myvalue", "ttl": "5s"}"#))
        .await;
    r.expect(200);
    for node in [f2, leader] {
        let r = curl.send(curl.req(&c, node, Method::GET, "/v1/kv/mykey")).await;
        r.expect(200);
        assert_eq!(r.json()["value"], "myvalue", "{r:?}");
        assert!(r.json()["ttl_ms"].as_u64().is_some_and(|t| t <= 5000), "{r:?}");
    }
    wait_gone(&curl, &c, f2, "/v1/kv/mykey").await;
    curl.send(curl.with_body(&c, leader, Method::PUT, "/v1/kv/mykey", JSON, r#"{"value": "again"}"#)).await.expect(200);
    curl.send(curl.req(&c, f1, Method::DELETE, "/v1/kv/mykey")).await.expect(200);
    curl.send(curl.req(&c, f2, Method::GET, "/v1/kv/mykey")).await.expect_error(404, "not_found");
}
