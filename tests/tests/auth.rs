//! Tokens and roles on the client API (`--auth-tokens`): a table of attempts by each kind
//! of principal, each with the status it must get and, for every refused one, proof that
//! nothing was applied; the open routes; `--metrics-auth`; re-reading the token file; and
//! a node that refuses to start on a bad one.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use ringkv_node::api::auth::{hash_token, new_token};
use ringkv_tests::{eventually, key_path, Cluster, NodeClient};
use serde_json::{json, Value};

/// Who sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Nobody,
    /// A well-formed token that is not in the file.
    Stranger,
    Admin,
    /// readwrite, every key of every database.
    Writer,
    /// read, every key.
    Reader,
    /// readwrite, keys under `app/` of db 0 only.
    App,
    /// readwrite, db 3 only.
    Db3,
}

/// The tokens of one test, and the file that holds their hashes.
struct Tokens {
    admin: String,
    writer: String,
    reader: String,
    app: String,
    db3: String,
    stranger: String,
}

impl Tokens {
    fn new() -> Tokens {
        Tokens {
            admin: new_token().0,
            writer: new_token().0,
            reader: new_token().0,
            app: new_token().0,
            db3: new_token().0,
            stranger: new_token().0,
        }
    }

    fn file(&self) -> Value {
        json!({"tokens": [
            {"name": "admin", "sha256": hash_token(&self.admin), "role": "admin"},
            {"name": "writer", "sha256": hash_token(&self.writer), "role": "readwrite"},
            {"name": "reader", "sha256": hash_token(&self.reader), "role": "read"},
            {"name": "app", "sha256": hash_token(&self.app), "role": "readwrite",
             "databases": [0], "prefixes": ["app/"]},
            {"name": "db3", "sha256": hash_token(&self.db3), "role": "readwrite", "databases": [3]},
        ]})
    }

    fn of(&self, who: Who) -> Option<&str> {
        match who {
            Who::Nobody => None,
            Who::Stranger => Some(&self.stranger),
            Who::Admin => Some(&self.admin),
            Who::Writer => Some(&self.writer),
            Who::Reader => Some(&self.reader),
            Who::App => Some(&self.app),
            Who::Db3 => Some(&self.db3),
        }
    }
}

/// Writes `file` as the token file in `dir`.
fn write_tokens(dir: &Path, file: &Value) -> PathBuf {
    let path = dir.join("tokens.json");
    // Through a rename, as a Secret update or an editor saves it: never half a file.
    let tmp = dir.join("tokens.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(file).expect("JSON")).expect("writing the token file");
    std::fs::rename(&tmp, &path).expect("renaming the token file");
    path
}

/// A standalone node with `--auth-tokens` (and `--metrics-auth`).
async fn start(dir: &Path, tokens: &Tokens, metrics_auth: bool) -> Cluster {
    let path = write_tokens(dir, &tokens.file());
    let b = Cluster::standalone_builder().flag("--auth-tokens", &path.display().to_string());
    // A switch without a value, which `flag` cannot give: its environment variable.
    let b = if metrics_auth { b.env("RINGKV_METRICS_AUTH", "true") } else { b };
    b.start().await
}

fn send(n: &NodeClient, token: Option<&str>, method: Method, path: &str) -> reqwest::RequestBuilder {
    let r = n.request(method, path);
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

/// One attempt and what must come of it.
struct Attempt {
    who: Who,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<(&'static str, String)>,
    status: u16,
    /// Keys read back (by the admin) after the attempt: `(db, key, value or absent)`.
    after: Vec<(u8, &'static str, Option<&'static str>)>,
}

fn by(who: Who, method: Method, path: &str, status: u16) -> Attempt {
    Attempt { who, method, path: path.to_owned(), headers: Vec::new(), body: None, status, after: Vec::new() }
}

impl Attempt {
    fn body(mut self, content_type: &'static str, body: impl Into<String>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }
    fn json(self, body: Value) -> Self {
        self.body("application/json", body.to_string())
    }
    fn form(self, body: &str) -> Self {
        self.body("application/x-www-form-urlencoded", body)
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
    /// After the attempt, `key` of `db` holds `value` (`None`: absent).
    fn leaves(mut self, db: u8, key: &'static str, value: Option<&'static str>) -> Self {
        self.after.push((db, key, value));
        self
    }
    fn what(&self) -> String {
        format!("{:?} {} {}", self.who, self.method, self.path)
    }
}

/// The keys every attempt starts from (db, key, value).
const SEEDED: &[(u8, &str, &str)] = &[(0, "app/a", "a0"), (0, "other/o", "o0"), (3, "app/a", "d3"), (0, "ro/r", "r0")];

/// Attempts that must be refused (401 or 403), each leaving what it aimed at as seeded.
fn refused() -> Vec<Attempt> {
    use Method as M;
    use Who::*;
    let put_batch = json!({"ops": [{"op": "get", "key": "app/a"}, {"op": "put", "key": "app/a", "value": "x"}]});
    let split_batch =
        json!({"ops": [{"op": "put", "key": "app/new1", "value": "x"}, {"op": "put", "key": "other/o", "value": "x"}]});
    let db_batch = json!({"db": 3, "ops": [
        {"op": "put", "key": "d/1", "value": "x"},
        {"op": "put", "key": "d/2", "value": "x", "db": 0},
    ]});
    let app_a = |a: Attempt| a.leaves(0, "app/a", Some("a0"));
    let other = |a: Attempt| a.leaves(0, "other/o", Some("o0"));
    vec![
        // No credentials, or ones naming nobody: 401 on every route but the open ones.
        by(Nobody, M::GET, "/v1/kv/app/a", 401),
        app_a(by(Nobody, M::PUT, "/v1/kv/app/a", 401).body("text/plain", "x")),
        app_a(by(Nobody, M::DELETE, "/v1/kv/app/a", 401)),
        by(Nobody, M::GET, "/v1/kv", 401),
        by(Nobody, M::GET, "/v1/watch?prefix=app/", 401),
        app_a(by(Nobody, M::POST, "/v1/batch", 401).json(put_batch.clone())),
        app_a(by(Nobody, M::POST, "/set", 401).form("key=app/a&value=x")),
        app_a(by(Nobody, M::GET, "/store?key=app/a&value=x", 401)),
        by(Nobody, M::GET, "/get?key=app/a", 401),
        by(Nobody, M::GET, "/v1/cluster", 401),
        by(Nobody, M::GET, "/v1/openapi.json", 401),
        by(Nobody, M::GET, "/v1/no-such-route", 401),
        app_a(by(Stranger, M::PUT, "/v1/kv/app/a", 401).body("text/plain", "x")),
        by(Stranger, M::GET, "/v1/kv/app/a", 401),
        app_a(
            by(Nobody, M::PUT, "/v1/kv/app/a", 401)
                .header("authorization", "Basic YWRtaW46YWRtaW4=")
                .body("text/plain", "x"),
        ),
        // A big body refused before it is read still gets its answer.
        app_a(by(Nobody, M::PUT, "/v1/kv/app/a", 401).body("application/octet-stream", "x".repeat(512 << 10))),
        app_a(by(Reader, M::PUT, "/v1/kv/app/a", 403).body("application/octet-stream", "x".repeat(512 << 10))),
        // A read token writes nothing, by any route.
        app_a(by(Reader, M::PUT, "/v1/kv/app/a", 403).body("text/plain", "x")),
        app_a(by(Reader, M::PUT, "/v1/kv/app/a", 403).json(json!({"value": "x", "ttl": 60}))),
        app_a(by(Reader, M::PUT, "/v1/kv/app/a?prev_revision=0", 403).body("text/plain", "x")),
        app_a(by(Reader, M::DELETE, "/v1/kv/app/a", 403)),
        app_a(by(Reader, M::DELETE, "/v1/kv/app/a?prev_revision=1", 403)),
        app_a(by(Reader, M::POST, "/v1/batch", 403).json(put_batch.clone())),
        app_a(by(Reader, M::POST, "/v1/batch", 403).json(json!({"ops": [{"op": "delete", "key": "app/a"}]}))),
        app_a(by(Reader, M::POST, "/set", 403).json(json!({"key": "app/a", "value": "x"}))),
        app_a(by(Reader, M::POST, "/set", 403).form("key=app/a&value=x")),
        app_a(by(Reader, M::PUT, "/set?key=app/a&value=x", 403)),
        app_a(by(Reader, M::GET, "/set?key=app/a&value=x", 403)),
        app_a(by(Reader, M::POST, "/set_with_ttl", 403).json(json!({"key": "app/a", "value": "x", "ttl": 60}))),
        app_a(by(Reader, M::GET, "/store?key=app/a&value=x", 403)),
        app_a(by(Reader, M::POST, "/store?key=app/a&value=x", 403)),
        app_a(by(Reader, M::PUT, "/store", 403).form("key=app/a&value=x")),
        app_a(by(Reader, M::DELETE, "/delete/app/a", 403)),
        app_a(by(Reader, M::DELETE, "/delete?key=app/a", 403)),
        // A route's wrong method is refused by class before it is 405.
        by(Reader, M::POST, "/v1/kv/app/a", 403),
        // The cluster view is the admin's.
        by(Reader, M::GET, "/v1/cluster", 403),
        by(Writer, M::GET, "/v1/cluster", 403),
        by(App, M::GET, "/v1/cluster", 403),
        // A prefix token outside its prefix, by every route that names a key.
        by(App, M::GET, "/v1/kv/other/o", 403),
        other(by(App, M::PUT, "/v1/kv/other/o", 403).body("text/plain", "x")),
        other(by(App, M::DELETE, "/v1/kv/other/o", 403)),
        by(App, M::PUT, "/v1/kv/ap", 403).body("text/plain", "x").leaves(0, "ap", None),
        by(App, M::GET, "/v1/kv", 403),
        by(App, M::GET, "/v1/kv?prefix=", 403),
        by(App, M::GET, "/v1/kv?prefix=ap", 403),
        by(App, M::GET, "/v1/kv?prefix=other/", 403),
        by(App, M::GET, "/v1/watch", 403),
        by(App, M::GET, "/v1/watch?prefix=ap", 403),
        by(App, M::GET, "/v1/watch?prefix=other/", 403),
        by(App, M::GET, "/v1/watch?key=other/o", 403),
        other(by(App, M::POST, "/v1/batch", 403).json(split_batch)).leaves(0, "app/new1", None),
        by(App, M::POST, "/v1/batch", 403).json(json!({"ops": [{"op": "get", "key": "other/o"}]})),
        other(by(App, M::POST, "/set", 403).json(json!({"key": "other/o", "value": "x"}))),
        other(by(App, M::POST, "/set", 403).form("key=other/o&value=x")),
        other(by(App, M::POST, "/set_with_ttl", 403).json(json!({"key": "other/o", "value": "x", "ttl": 60}))),
        other(by(App, M::GET, "/store?key=other/o&value=x", 403)),
        other(by(App, M::DELETE, "/delete/other/o", 403)),
        other(by(App, M::DELETE, "/delete?key=other/o", 403)),
        by(App, M::GET, "/get?key=other/o", 403),
        by(App, M::GET, "/get/other/o", 403),
        by(App, M::GET, "/retrieve?key=other/o", 403),
        // ... and inside its prefix but in another database, by each way of naming one.
        by(App, M::GET, "/v1/kv/app/a?db=3", 403),
        by(App, M::PUT, "/v1/kv/app/a?db=3", 403).body("text/plain", "x").leaves(3, "app/a", Some("d3")),
        by(App, M::GET, "/v1/kv?prefix=app/&db=3", 403),
        by(App, M::GET, "/v1/watch?prefix=app/&db=3", 403),
        by(App, M::POST, "/v1/batch", 403)
            .json(json!({"db": 3, "ops": [{"op": "put", "key": "app/a", "value": "x"}]}))
            .leaves(3, "app/a", Some("d3")),
        by(App, M::POST, "/set?db=3", 403).form("key=app/a&value=x").leaves(3, "app/a", Some("d3")),
        by(App, M::POST, "/set", 403).header("x-ringkv-db", "3").form("key=app/a&value=x").leaves(
            3,
            "app/a",
            Some("d3"),
        ),
        by(App, M::GET, "/get?key=app/a", 403).header("cookie", "ringkv_db=3"),
        by(App, M::POST, "/select_db", 403).json(json!({"db": 3})),
        // A database-limited token on another database.
        by(Db3, M::PUT, "/v1/kv/d/1", 403).body("text/plain", "x").leaves(0, "d/1", None),
        by(Db3, M::GET, "/v1/kv/app/a", 403),
        by(Db3, M::GET, "/v1/kv?db=0", 403),
        by(Db3, M::POST, "/v1/batch", 403).json(db_batch).leaves(3, "d/1", None).leaves(0, "d/2", None),
        by(Db3, M::GET, "/retrieve?key=app/a", 403),
    ]
}

/// Attempts that must succeed, with what they leave.
fn allowed() -> Vec<Attempt> {
    use Method as M;
    use Who::*;
    vec![
        // Reads by a read token, by every read route.
        by(Reader, M::GET, "/v1/kv/app/a", 200),
        by(Reader, M::GET, "/v1/kv", 200),
        by(Reader, M::POST, "/v1/batch", 200).json(json!({"ops": [{"op": "get", "key": "app/a"}]})),
        by(Reader, M::GET, "/get?key=app/a", 200),
        by(Reader, M::GET, "/get/app/a", 200),
        by(Reader, M::GET, "/retrieve?key=app/a", 200),
        by(Reader, M::GET, "/v1/openapi.json", 200),
        by(Reader, M::POST, "/select_db", 200).json(json!({"db": 3})),
        // A failed precondition is the writer's to get: authorized, then 409.
        by(Writer, M::PUT, "/v1/kv/app/a?prev_revision=0", 409).body("text/plain", "x").leaves(0, "app/a", Some("a0")),
        by(Writer, M::PUT, "/v1/kv/w/1", 200).body("text/plain", "w1").leaves(0, "w/1", Some("w1")),
        by(Writer, M::DELETE, "/v1/kv/w/1", 200).leaves(0, "w/1", None),
        by(Admin, M::GET, "/v1/cluster", 200),
        // The prefix token inside its prefix and database.
        by(App, M::GET, "/v1/kv/app/a", 200),
        by(App, M::PUT, "/v1/kv/app/b", 200).body("text/plain", "b").leaves(0, "app/b", Some("b")),
        by(App, M::PUT, "/v1/kv/app/b?db=0", 200).json(json!({"value": "b2"})).leaves(0, "app/b", Some("b2")),
        by(App, M::GET, "/v1/kv?prefix=app/", 200),
        by(App, M::GET, "/v1/kv?prefix=app/b", 200),
        by(App, M::POST, "/v1/batch", 200)
            .json(json!({"ops": [{"op": "get", "key": "app/a"}, {"op": "put", "key": "app/c", "value": "c"}]}))
            .leaves(0, "app/c", Some("c")),
        by(App, M::POST, "/set", 201).json(json!({"key": "app/s", "value": "s"})).leaves(0, "app/s", Some("s")),
        by(App, M::POST, "/set", 200).form("key=app/f&value=f").leaves(0, "app/f", Some("f")),
        by(App, M::GET, "/store?key=app/g&value=g", 200).leaves(0, "app/g", Some("g")),
        by(App, M::GET, "/get?key=app/g", 200),
        by(App, M::DELETE, "/delete/app/g", 204).leaves(0, "app/g", None),
        by(App, M::POST, "/select_db", 200).json(json!({"db": 0})),
        by(Db3, M::PUT, "/v1/kv/d/1?db=3", 200).body("text/plain", "d").leaves(3, "d/1", Some("d")),
        by(Db3, M::GET, "/v1/kv?db=3", 200),
        by(Db3, M::POST, "/set", 200).header("x-ringkv-db", "3").form("key=d/2&value=e").leaves(3, "d/2", Some("e")),
        // The open routes need nothing, and ignore a bad token.
        by(Nobody, M::GET, "/healthz", 200),
        by(Nobody, M::GET, "/readyz", 200),
        by(Nobody, M::GET, "/metrics", 200),
        by(Stranger, M::GET, "/healthz", 200),
    ]
}

/// `key` of `db`, read by the admin.
async fn read_back(n: &NodeClient, admin: &str, db: u8, key: &str) -> Option<String> {
    let resp = send(n, Some(admin), Method::GET, &format!("{}?db={db}", key_path(key))).send().await.expect("GET");
    match resp.status().as_u16() {
        404 => None,
        200 => Some(resp.json::<Value>().await.expect("JSON")["value"].as_str().expect("a value").to_owned()),
        other => panic!("reading {key} back as the admin: {other}"),
    }
}

/// What was wrong with an answer's status, headers or body, if anything.
async fn judge(a: &Attempt, resp: Response) -> Option<String> {
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if status != a.status {
        let text: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
        return Some(format!("{}: want {}, got {status} ({text})", a.what(), a.status));
    }
    if a.path.starts_with("/v1/watch") && status == 200 {
        // The stream stays open: its head is the answer.
        return (!sse).then(|| format!("{}: 200 but not an event stream", a.what()));
    }
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let code = match status {
        401 => "unauthorized",
        403 => "forbidden",
        _ => return None,
    };
    if body["error"]["code"] != code || !body["error"]["message"].is_string() {
        return Some(format!("{}: want error code {code}, got {body}", a.what()));
    }
    let want_challenge = (status == 401).then(|| "Bearer realm=\"ringkv\"".to_owned());
    (challenge != want_challenge).then(|| format!("{}: WWW-Authenticate {challenge:?}", a.what()))
}

/// Sends each attempt and checks its answer and what it left; returns what went wrong.
async fn run(n: &NodeClient, tokens: &Tokens, attempts: &[Attempt]) -> Vec<String> {
    let admin = tokens.of(Who::Admin).expect("the admin's token");
    let mut wrong = Vec::new();
    for a in attempts {
        let mut r = send(n, tokens.of(a.who), a.method.clone(), &a.path).header("connection", "close");
        for (k, v) in &a.headers {
            r = r.header(*k, v);
        }
        if let Some((ct, body)) = &a.body {
            r = r.header("content-type", *ct).body(body.clone());
        }
        match r.send().await {
            Ok(resp) => wrong.extend(judge(a, resp).await),
            Err(e) => wrong.push(format!("{}: no answer: {e}", a.what())),
        }
        for (db, key, want) in &a.after {
            let got = read_back(n, admin, *db, key).await;
            if got.as_deref() != *want {
                wrong.push(format!("{}: left {key} of db {db} as {got:?}, want {want:?}", a.what()));
            }
        }
    }
    wrong
}

#[tokio::test]
async fn each_principal_may_do_what_its_role_and_limits_allow_and_a_refusal_applies_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens = Tokens::new();
    let c = start(dir.path(), &tokens, false).await;
    let n = c.node(1);
    let admin = tokens.of(Who::Admin).expect("admin");
    for (db, key, value) in SEEDED {
        let r = send(&n, Some(admin), Method::PUT, &format!("{}?db={db}", key_path(key))).body(*value);
        assert_eq!(r.send().await.expect("PUT").status().as_u16(), 200, "seeding {key}");
    }

    let log_before = n.metrics().await.sum("ringkv_raft_last_log_index");
    let refused = refused();
    let mut wrong = run(&n, &tokens, &refused).await;
    let appended = n.metrics().await.sum("ringkv_raft_last_log_index") - log_before;
    if appended != 0.0 {
        wrong.push(format!("the refused attempts appended {appended} Raft log entries"));
    }
    let allowed = allowed();
    wrong.extend(run(&n, &tokens, &allowed).await);
    assert!(
        wrong.is_empty(),
        "{} of {} attempts were answered wrongly:\n  {}",
        wrong.len(),
        refused.len() + allowed.len(),
        wrong.join("\n  ")
    );
}

#[tokio::test]
async fn an_allowed_watch_streams_and_a_forbidden_one_is_refused_before_any_stream() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens = Tokens::new();
    let c = start(dir.path(), &tokens, false).await;
    let n = c.node(1);

    let forbidden = send(&n, Some(&tokens.app), Method::GET, "/v1/watch?prefix=other/").send().await.expect("watch");
    assert_eq!(forbidden.status().as_u16(), 403);
    assert!(forbidden.headers()["content-type"].to_str().expect("ASCII").starts_with("application/json"));

    let mut watch = send(&n, Some(&tokens.app), Method::GET, "/v1/watch?prefix=app/").send().await.expect("watch");
    assert_eq!(watch.status().as_u16(), 200);
    assert!(watch.headers()["content-type"].to_str().expect("ASCII").starts_with("text/event-stream"));
    let put = send(&n, Some(&tokens.app), Method::PUT, "/v1/kv/app/w").body("seen").send().await.expect("PUT");
    assert_eq!(put.status().as_u16(), 200);
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains("app/w") {
            let chunk = watch.chunk().await.expect("the stream").expect("the stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the watch never showed the put; it sent: {seen}"));
}

#[tokio::test]
async fn metrics_need_a_token_only_with_metrics_auth() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens = Tokens::new();
    let c = start(dir.path(), &tokens, true).await;
    let n = c.node(1);
    let status = |who: Option<String>, path: &'static str| {
        let r = send(&n, who.as_deref(), Method::GET, path);
        async move { r.send().await.expect("GET") }
    };
    let anonymous = status(None, "/metrics").await;
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer realm=\"ringkv\"");
    assert_eq!(status(Some(tokens.stranger.clone()), "/metrics").await.status().as_u16(), 401);
    // Any role may read them.
    let reader = status(Some(tokens.reader.clone()), "/metrics").await;
    assert_eq!(reader.status().as_u16(), 200);
    assert!(reader.text().await.expect("text").contains("ringkv_"));
    assert_eq!(status(None, "/healthz").await.status().as_u16(), 200);
    assert_eq!(status(None, "/readyz").await.status().as_u16(), 200);
}

#[tokio::test]
async fn a_rewritten_token_file_admits_new_tokens_and_revokes_removed_ones_within_seconds() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens = Tokens::new();
    let c = start(dir.path(), &tokens, false).await;
    let n = c.node(1);
    let get = |token: String| {
        let r = send(&n, Some(&token), Method::GET, "/v1/kv?limit=1");
        async move { r.send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string()) }
    };
    assert_eq!(get(tokens.reader.clone()).await, Ok(200));
    let (added, _) = new_token();
    assert_eq!(get(added.clone()).await, Ok(401));

    // Revoke the reader, add a new token.
    let mut file = tokens.file();
    let entries = file["tokens"].as_array_mut().expect("entries");
    entries.retain(|e| e["name"] != "reader");
    entries.push(json!({"name": "added", "sha256": hash_token(&added), "role": "read"}));
    let changed = Instant::now();
    write_tokens(dir.path(), &file);
    eventually("the new token file to take effect", Duration::from_secs(5), || async {
        match (get(added.clone()).await, get(tokens.reader.clone()).await) {
            (Ok(200), Ok(401)) => Ok(()),
            other => Err(format!("(added, revoked) answered {other:?}")),
        }
    })
    .await;
    let took = changed.elapsed();
    assert!(took < Duration::from_secs(3), "the file took {took:?} to take effect");
    // The others' tokens are as they were.
    assert_eq!(get(tokens.writer.clone()).await, Ok(200));
}

#[tokio::test]
async fn a_node_refuses_to_start_with_an_invalid_token_file_and_names_the_entry() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bad = json!({"tokens": [
        {"name": "good", "sha256": hash_token("rkv_x"), "role": "read"},
        {"name": "typo", "sha256": hash_token("rkv_y"), "role": "reader"},
    ]});
    let path = write_tokens(dir.path(), &bad);
    let port = |ip| ringkv_tests::process::free_port(ip).to_string();
    let ip = Ipv4Addr::LOCALHOST;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(ringkv_tests::process::node_binary())
            .args(["--node-id", "1", "--shards", "1", "--auth-tokens"])
            .arg(&path)
            .args(["--listen", &format!("{ip}:{}", port(ip)), "--internal-listen", &format!("{ip}:{}", port(ip))])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the node exits")
    .expect("the node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(stderr.contains("tokens.json") && stderr.contains("tokens[1] (`typo`)"), "{stderr}");
}
