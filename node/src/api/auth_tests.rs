//! Tests of [`super`]: the token file, hashing, the decision table, the middleware
//! over unchecked routes, and re-reading the file.

use super::*;
use axum::http::HeaderValue;

const APP: &str = "rkv_app-token";
const DASH: &str = "rkv_dash-token";

fn file() -> String {
    serde_json::json!({"tokens": [
        {"name": "app", "sha256": hash_token(APP), "role": "readwrite",
         "databases": [0, 3], "prefixes": ["app/", "shared/"]},
        {"name": "dash", "sha256": hash_token(DASH).to_ascii_uppercase(), "role": "read"},
        {"name": "ops-client", "certificate": "ops.example", "role": "admin"},
    ]})
    .to_string()
}

fn principal(role: Role, databases: Option<Vec<u8>>, prefixes: Option<&[&str]>) -> Access {
    let prefixes = prefixes.map(|ps| ps.iter().map(|p| p.as_bytes().to_vec()).collect());
    Access(Arc::new(Principal { name: "t".into(), role, databases, prefixes }))
}

#[test]
fn a_good_file_finds_each_principal_by_token_hash_or_certificate() {
    let t = Tokens::parse(file().as_bytes()).expect("a valid file");
    assert_eq!(t.len(), 3);
    let app = t.by_token(APP).expect("app");
    assert_eq!((app.name(), app.role()), ("app", Role::ReadWrite));
    assert_eq!(app.0.databases, Some(vec![0, 3]));
    assert_eq!(app.0.prefixes, Some(vec![b"app/".to_vec(), b"shared/".to_vec()]));
    // Hex digits in either case.
    assert_eq!(t.by_token(DASH).map(Access::name), Some("dash"));
    assert_eq!(t.by_certificate("ops.example").map(Access::role), Some(Role::Admin));
    assert!(t.by_token("rkv_unknown").is_none());
    assert!(t.by_token(&hash_token(APP)).is_none(), "the hash is not the token");
    assert!(t.by_certificate("app").is_none(), "names are not certificates");
    assert!(Tokens::parse(br#"{"tokens": []}"#).expect("no tokens is valid").is_empty());
}

#[test]
fn each_kind_of_bad_entry_is_refused_naming_it() {
    // (the `tokens` array, with H a valid hash; what the error must say)
    let cases: &[(&str, &str)] = &[
        (r#"{"name": "a", "sha256": H, "role": "read", "colour": 1}"#, "tokens[0] (`a`): unknown field `colour`"),
        (r#"{"name": "a", "sha256": H, "role": "owner"}"#, "tokens[0] (`a`): unknown variant `owner`"),
        (r#"{"name": "a", "sha256": H, "role": "Read"}"#, "unknown variant `Read`"),
        (r#"{"name": "a", "sha256": H}"#, "tokens[0] (`a`): missing field `role`"),
        (r#"{"sha256": H, "role": "read"}"#, "tokens[0]: missing field `name`"),
        (r#"{"name": 5, "sha256": H, "role": "read"}"#, "tokens[0]: invalid type"),
        (r#"{"name": " ", "sha256": H, "role": "read"}"#, "`name` must not be empty"),
        (r#"{"name": "a", "role": "read"}"#, "tokens[0] (`a`): give `sha256`"),
        (r#"{"name": "a", "sha256": H, "certificate": "c", "role": "read"}"#, "not both"),
        (r#"{"name": "a", "certificate": "", "role": "read"}"#, "`certificate` must not be empty"),
        (r#"{"name": "a", "sha256": "abc", "role": "read"}"#, "tokens[0] (`a`): `sha256` must be 64 hex digits"),
        (r#"{"name": "a", "sha256": "zz", "role": "read"}"#, "64 hex digits"),
        (r#"{"name": "a", "sha256": H, "role": "read", "databases": [16]}"#, "`databases`: 16 is not a database"),
        (r#"{"name": "a", "sha256": H, "role": "read", "databases": [-1]}"#, "tokens[0] (`a`): invalid value"),
        (r#"{"name": "a", "sha256": H, "role": "read", "databases": "0"}"#, "tokens[0] (`a`): invalid type"),
        (r#"{"name": "a", "sha256": H, "role": "read", "databases": []}"#, "`databases` is empty"),
        (r#"{"name": "a", "sha256": H, "role": "read", "prefixes": []}"#, "`prefixes` is empty"),
        (r#"{"name": "a", "sha256": H, "role": "read", "prefixes": "app/"}"#, "invalid type"),
        (
            r#"{"name": "a", "sha256": H, "role": "read"}, {"name": "a", "certificate": "c", "role": "read"}"#,
            "tokens[1] (`a`): the name is used",
        ),
        (
            r#"{"name": "a", "sha256": H, "role": "read"}, {"name": "b", "sha256": H, "role": "admin"}"#,
            "tokens[1] (`b`): an earlier entry has the same `sha256`",
        ),
        (
            r#"{"name": "a", "certificate": "c", "role": "read"}, {"name": "b", "certificate": "c", "role": "read"}"#,
            "tokens[1] (`b`): an earlier entry has the same `certificate`",
        ),
        ("7", "tokens[0]: invalid type"),
    ];
    let h = format!("\"{}\"", hash_token("x"));
    for (entries, want) in cases {
        let text = format!(r#"{{"tokens": [{}]}}"#, entries.replace('H', &h));
        match Tokens::parse(text.as_bytes()) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => assert!(e.contains(want), "{text}\n  gave: {e}\n  want: {want}"),
        }
    }
    for (text, want) in [
        (r#"{"tokens": {}}"#, "not a token file"),
        (r#"{"token": []}"#, "not a token file"),
        (r#"{"tokens": [], "extra": 1}"#, "unknown field `extra`"),
        ("[]", "not a token file"),
        ("", "not a token file"),
    ] {
        let e = Tokens::parse(text.as_bytes()).err().unwrap_or_else(|| panic!("accepted: {text}"));
        assert!(e.contains(want), "{text}\n  gave: {e}\n  want: {want}");
    }
}

#[test]
fn a_missing_or_bad_file_says_which_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("tokens.json");
    let e = Tokens::load(&path).expect_err("no file");
    assert!(matches!(e, LoadError::Read { .. }) && e.to_string().contains("tokens.json"), "{e}");
    std::fs::write(&path, "{").expect("write");
    let e = Guard::load(&path, false).err().expect("a bad file");
    assert!(matches!(e, LoadError::Invalid { .. }) && e.to_string().contains("tokens.json"), "{e}");
}

#[test]
fn tokens_hash_to_sha256_hex_and_new_ones_are_random_and_url_safe() {
    assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(hash_token(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    let (token, hash) = new_token();
    assert_eq!(hash, hash_token(&token));
    let body = token.strip_prefix("rkv_").expect("the rkv_ prefix");
    assert_eq!(body.len(), 43, "32 bytes in unpadded base64: {token}");
    assert!(body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
    assert_ne!(new_token().0, token);
}

#[test]
fn each_role_does_what_it_may_and_no_more() {
    use Op::*;
    use Role::{Admin as A, Read as R, ReadWrite as RW};
    let table = [
        (R, Read, true),
        (R, Write, false),
        (R, Op::Admin, false),
        (RW, Read, true),
        (RW, Write, true),
        (RW, Op::Admin, false),
        (A, Read, true),
        (A, Write, true),
        (A, Op::Admin, true),
    ];
    for (role, op, allowed) in table {
        let a = principal(role, None, None);
        assert_eq!(a.require(op).is_ok(), allowed, "{role:?} {op:?}");
        assert_eq!(a.allow(op, 7, b"any").is_ok(), allowed, "{role:?} {op:?} on a key");
        assert_eq!(a.allow_prefix(op, 7, b"").is_ok(), allowed, "{role:?} {op:?} on all keys");
        if let Err(e) = a.allow(op, 0, b"k") {
            assert_eq!((e.status().as_u16(), e.code()), (403, "forbidden"));
        }
    }
    let open = Access::open();
    assert!(open.allow(Write, 15, b"x").is_ok() && open.require(Op::Admin).is_ok());
}

#[test]
fn database_and_prefix_limits_hold_for_keys_listings_and_watches() {
    let a = principal(Role::ReadWrite, Some(vec![0, 3]), Some(&["app/", "shared/"]));
    // (db, key or prefix, allow (one key), allow_prefix (a listing or watch))
    let table: &[(u8, &str, bool, bool)] = &[
        (0, "app/x", true, true),
        (3, "shared/y", true, true),
        (0, "app/", true, true),
        (1, "app/x", false, false), // another database
        (15, "app/x", false, false),
        (0, "other", false, false),
        (0, "ap", false, false), // shorter than the prefix: reaches `apple`
        (0, "", false, false),   // everything
        (0, "App/x", false, false),
        (0, "xapp/", false, false),
    ];
    for (db, k, key_ok, prefix_ok) in table {
        assert_eq!(a.allow(Op::Write, *db, k.as_bytes()).is_ok(), *key_ok, "key {k:?} in db {db}");
        assert_eq!(a.allow(Op::Read, *db, k.as_bytes()).is_ok(), *key_ok, "read {k:?} in db {db}");
        assert_eq!(a.allow_prefix(Op::Read, *db, k.as_bytes()).is_ok(), *prefix_ok, "prefix {k:?} in db {db}");
    }
    assert!(a.allow_db(Op::Read, 3).is_ok() && a.allow_db(Op::Read, 2).is_err());
    // A role refusal comes first, whatever the key.
    let r = principal(Role::Read, Some(vec![0]), Some(&["app/"]));
    assert!(r.allow(Op::Write, 0, b"app/x").is_err() && r.allow(Op::Read, 0, b"app/x").is_ok());
    // Limits bind admins too; only the databases limit: every key of those.
    let db_only = principal(Role::Admin, Some(vec![2]), None);
    assert!(db_only.allow_prefix(Op::Read, 2, b"").is_ok() && db_only.allow(Op::Write, 0, b"k").is_err());
    let msg = a.allow(Op::Read, 0, b"other").unwrap_err().to_string();
    assert!(msg.contains("`app/`, `shared/`"), "{msg}");
}

#[test]
fn routes_need_their_class_by_route_and_method() {
    let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
    let table: &[(Option<&str>, &Method, bool, Option<Op>)] = &[
        (Some("/healthz"), &get, true, None),
        (Some("/readyz"), &get, true, None),
        (Some("/metrics"), &get, false, None),
        (Some("/metrics"), &get, true, Some(Op::Read)),
        (Some("/v1/kv/{*key}"), &get, false, Some(Op::Read)),
        (Some("/v1/kv/{*key}"), &Method::HEAD, false, Some(Op::Read)),
        (Some("/v1/kv/{*key}"), &put, false, Some(Op::Write)),
        (Some("/v1/kv/{*key}"), &delete, false, Some(Op::Write)),
        (Some("/v1/kv"), &get, false, Some(Op::Read)),
        (Some("/v1/watch"), &get, false, Some(Op::Read)),
        (Some("/v1/batch"), &post, false, Some(Op::Read)),
        (Some("/v1/cluster"), &get, false, Some(Op::Admin)),
        (Some("/v1/openapi.json"), &get, false, Some(Op::Read)),
        (Some("/set"), &get, false, Some(Op::Write)),
        (Some("/set"), &post, false, Some(Op::Write)),
        (Some("/store"), &get, false, Some(Op::Write)),
        (Some("/set_with_ttl"), &post, false, Some(Op::Write)),
        (Some("/delete/{*key}"), &delete, false, Some(Op::Write)),
        (Some("/delete"), &delete, false, Some(Op::Write)),
        (Some("/get"), &get, false, Some(Op::Read)),
        (Some("/get/{*key}"), &get, false, Some(Op::Read)),
        (Some("/retrieve"), &get, false, Some(Op::Read)),
        (Some("/select_db"), &post, false, Some(Op::Read)),
        // A route added later without an entry here: reads by GET, writes otherwise.
        (Some("/v1/new"), &get, false, Some(Op::Read)),
        (Some("/v1/new"), &post, false, Some(Op::Write)),
        (None, &get, false, Some(Op::Read)),
        (None, &Method::PATCH, false, Some(Op::Write)),
    ];
    for (route, method, metrics_auth, want) in table {
        assert_eq!(route_needs(*route, method, *metrics_auth), *want, "{method} {route:?}");
    }
}

#[test]
fn a_request_is_its_bearer_tokens_else_its_certificates() {
    let t = Tokens::parse(file().as_bytes()).expect("a valid file");
    let h = |auth: &[&str]| {
        let mut m = HeaderMap::new();
        for a in auth {
            m.append(header::AUTHORIZATION, HeaderValue::from_str(a).expect("a header value"));
        }
        m
    };
    let ops = ClientIdentity("ops.example".into());
    let stranger = ClientIdentity("stranger.example".into());
    let name = |r: Result<Access, ApiError>| r.map(|a| a.name().to_owned()).map_err(|e| e.code().to_owned());
    let cases: Vec<(HeaderMap, Option<&ClientIdentity>, Result<&str, &str>)> = vec![
        (h(&[&format!("Bearer {APP}")]), None, Ok("app")),
        (h(&[&format!("bearer  {DASH} ")]), None, Ok("dash")),
        (h(&[&format!("BEARER {APP}")]), Some(&ops), Ok("app")), // the token decides
        (h(&[]), Some(&ops), Ok("ops-client")),
        (h(&[]), Some(&stranger), Err("unauthorized")),
        (h(&[]), None, Err("unauthorized")),
        (h(&["Bearer rkv_wrong"]), Some(&ops), Err("unauthorized")), // a bad token is not saved by a certificate
        (h(&[APP]), None, Err("unauthorized")),
        (h(&[&format!("Basic {APP}")]), None, Err("unauthorized")),
        (h(&["Bearer "]), None, Err("unauthorized")),
        (h(&[&format!("Bearer {APP}"), &format!("Bearer {DASH}")]), None, Err("unauthorized")),
    ];
    for (i, (headers, identity, want)) in cases.into_iter().enumerate() {
        let got = name(resolve(&t, &headers, identity));
        assert_eq!(got.as_deref().map_err(String::as_str), want, "case {i}");
    }
}

#[test]
fn unauthorized_answers_carry_the_bearer_challenge() {
    let resp = unauthorized("no").into_response();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"ringkv\"");
    let resp = ApiError::Forbidden { message: "no".into() }.into_response();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
}

/// The middleware alone, over handlers that check nothing (as a route added without
/// its own check would): it still holds each principal to the route's class.
#[tokio::test]
async fn the_middleware_holds_routes_without_their_own_checks_to_their_class() {
    use axum::routing::get;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("tokens.json");
    let admin = serde_json::json!({"name": "root", "sha256": hash_token("rkv_root"), "role": "admin"});
    let mut body: serde_json::Value = serde_json::from_str(&file()).expect("JSON");
    body["tokens"].as_array_mut().expect("entries").push(admin);
    std::fs::write(&path, body.to_string()).expect("write");
    let guard = Guard::load(&path, true).expect("a valid file");
    let who = |axum::Extension(a): axum::Extension<Access>| async move { a.name().to_owned() };
    let app = axum::Router::new()
        .route("/v1/unchecked", get(who).put(who).post(who))
        .route("/store", get(who))
        .route("/v1/cluster", get(who))
        .route("/healthz", get(|| async { "open" }))
        .route("/metrics", get(who))
        .layer(axum::middleware::from_fn_with_state(guard, authenticate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cases: &[(Option<&str>, Method, &str, u16, &str)] = &[
        (None, Method::GET, "/healthz", 200, "open"),
        (None, Method::GET, "/v1/unchecked", 401, ""),
        (None, Method::GET, "/metrics", 401, ""),
        (Some(DASH), Method::GET, "/metrics", 200, "dash"),
        (Some(DASH), Method::GET, "/v1/unchecked", 200, "dash"),
        (Some(DASH), Method::PUT, "/v1/unchecked", 403, ""),
        (Some(DASH), Method::POST, "/v1/unchecked", 403, ""),
        (Some(DASH), Method::GET, "/store", 403, ""),
        (Some(DASH), Method::GET, "/v1/cluster", 403, ""),
        (Some(APP), Method::PUT, "/v1/unchecked", 200, "app"),
        (Some(APP), Method::GET, "/store", 200, "app"),
        (Some(APP), Method::GET, "/v1/cluster", 403, ""),
        (Some("rkv_root"), Method::GET, "/v1/cluster", 200, "root"),
    ];
    for (token, method, route, status, body) in cases {
        // Plain HTTP/1.1 by hand: the test needs no HTTP client of its own.
        let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req =
            format!("{method} {route} HTTP/1.1\r\nhost: x\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n");
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut conn, req.as_bytes()).await.expect("send");
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut conn, &mut answer).await.expect("an answer");
        let what = format!("{token:?} {method} {route}: {answer}");
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{what}");
        if *status == 200 {
            assert!(answer.ends_with(&format!("\r\n\r\n{body}")), "{what}");
        }
    }
}

#[test]
fn a_changed_file_is_reread_and_a_bad_or_missing_one_keeps_the_tokens_in_force() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, file()).expect("write");
    let g = Guard::load(&path, false).expect("a valid file");
    assert!(!g.reload_if_changed(), "unchanged");
    // Revoke `app`, add `new`.
    let next = serde_json::json!({"tokens": [
        {"name": "dash", "sha256": hash_token(DASH), "role": "read"},
        {"name": "new", "sha256": hash_token("rkv_new"), "role": "admin"},
    ]});
    std::fs::write(&path, next.to_string()).expect("write");
    assert!(g.reload_if_changed());
    assert!(g.tokens().by_token(APP).is_none());
    assert_eq!(g.tokens().by_token("rkv_new").map(Access::role), Some(Role::Admin));
    // Broken, then gone: what was in force stays.
    std::fs::write(&path, r#"{"tokens": [{"name": "x"}]}"#).expect("write");
    assert!(!g.reload_if_changed());
    std::fs::remove_file(&path).expect("remove");
    assert!(!g.reload_if_changed());
    assert_eq!(g.tokens().len(), 2);
    // Back, by a rename over the path (as a Secret update does).
    let tmp = dir.path().join("tokens.json.tmp");
    std::fs::write(&tmp, file()).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
    assert!(g.reload_if_changed());
    assert!(g.tokens().by_token(APP).is_some());
}
