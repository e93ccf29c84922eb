//! What must hold for any input to the node's decoders: the oracle shared by the
//! bounded proptest run (`node/tests/fuzz_decoders.rs`) and the cargo-fuzz targets
//! (`fuzz/`, which include this file by path).
//!
//! Request decoders (`api::params`, `api::extract`, `api::compat`) may refuse anything,
//! but only with a client error (400, 413 or 415) that has a code and a message, and
//! whatever they accept must satisfy the documented bounds. WAL replay
//! (`Wal::open` over an in-memory file system) is checked against an independent
//! reference decoder written from the byte layout in `wal/format.rs`: the same records,
//! the same torn-tail cut, the same corruption offset. In particular no record with a
//! wrong CRC is ever returned.

#![allow(dead_code)] // each includer uses part of it

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ringkv_node::api::error::ApiError;
use ringkv_node::api::query::{Db, Param};
use ringkv_node::api::{compat, extract, params};
use ringkv_node::ring::MAX_DB;
use ringkv_node::router::Consistency;
use ringkv_node::wal::fs::{FileSystem, WalFile};
use ringkv_node::wal::{Error as WalError, ShardLog, Wal, WalOptions};

/// The key size limit the node starts with.
pub const MAX_KEY: usize = 4096;

/// Asserts that a decoder's refusal is a client error with a code and a message.
#[track_caller]
pub fn client_error(e: &ApiError, input: &dyn std::fmt::Debug) {
    let status = e.status().as_u16();
    assert!(matches!(status, 400 | 413 | 415), "{input:?} was refused with {status} ({e:?}); want 400, 413 or 415");
    assert!(!e.code().is_empty() && !e.to_string().is_empty(), "{input:?}: error without code or message: {e:?}");
}

#[track_caller]
fn check_ttl_bounds(d: Duration, input: &dyn std::fmt::Debug) {
    assert!(!d.is_zero() && d <= params::MAX_TTL, "{input:?} was accepted as ttl {d:?}, outside (0, 10 years]");
}

/// A query string through every parameter decoder a route applies to it.
pub fn check_query(raw: &str) {
    const ALLOWED: &[&str] = &["db", "ttl", "prefix", "limit", "cursor", "consistency", "key", "value"];
    let q = match params::query(Some(raw), ALLOWED) {
        Ok(q) => q,
        Err(e) => return client_error(&e, &raw),
    };
    assert!(q.keys().all(|k| ALLOWED.contains(&k.as_str())), "{raw:?}: unknown parameter accepted: {q:?}");
    let v1_db = q.get("db").map_or(Ok(0), |s| Db::parse(s).map(|d| d.0));
    match &v1_db {
        Ok(db) => assert!(*db <= MAX_DB, "{raw:?}: db {db} accepted"),
        Err(e) => client_error(e, &raw),
    }
    if let Some(Err(e)) = q.get("consistency").map(|c| Consistency::parse(c)) {
        client_error(&e, &raw);
    }
    match compat::resolve_db(&q, &HeaderMap::new()) {
        Ok(db) => {
            assert_eq!(Ok(db), v1_db.map_err(|e| e.to_string()), "{raw:?}: compat and v1 disagree on db")
        }
        Err(e) => client_error(&e, &raw),
    }
    if let Some(t) = q.get("ttl") {
        check_ttl(t);
    }
    if let Some(c) = q.get("cursor") {
        check_cursor(c);
    }
    if let Some(k) = q.get("key") {
        check_key(k);
    }
    // A query any route accepted survives re-encoding unchanged.
    let pairs: Vec<(&String, &String)> = q.iter().collect();
    let again = serde_urlencoded::to_string(&pairs).expect("pairs of strings encode");
    assert_eq!(params::query(Some(&again), ALLOWED).ok(), Some(q.clone()), "{raw:?} re-encoded as {again:?}");
}

/// A TTL string, as the query and as JSON give it.
pub fn check_ttl(s: &str) {
    let direct = params::ttl(s);
    match &direct {
        Ok(d) => check_ttl_bounds(*d, &s),
        Err(e) => client_error(e, &s),
    }
    let via_json = params::json_ttl(&serde_json::Value::String(s.to_string()));
    assert_eq!(direct.ok(), via_json.ok(), "{s:?}: the query and JSON disagree");
}

/// A TTL as a JSON value (number, string or anything else).
pub fn check_json_ttl(v: &serde_json::Value) {
    match params::json_ttl(v) {
        Ok(d) => check_ttl_bounds(d, v),
        Err(e) => client_error(&e, v),
    }
}

/// A key against the default limit.
pub fn check_key(k: &str) {
    match params::key(k, MAX_KEY) {
        Ok(bytes) => {
            assert!(bytes == k.as_bytes() && (1..=MAX_KEY).contains(&bytes.len()), "{k:?} accepted as {bytes:?}")
        }
        Err(e) => {
            client_error(&e, &k);
            let want = if k.is_empty() { 400 } else { 413 };
            assert_eq!(e.status().as_u16(), want, "{} bytes: {e:?}", k.len());
        }
    }
}

/// The key in a raw request path.
pub fn check_key_from_path(raw: &str) {
    let path = format!("/v1/kv/{raw}");
    match extract::key_from_path(&path, "/v1/kv/") {
        Ok(key) => {
            if !raw.contains('%') {
                assert_eq!(key, raw, "{raw:?}: a path without escapes changed");
            }
            // Escaping every byte and decoding again gives the same key.
            let escaped: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
            let again = extract::key_from_path(&format!("/v1/kv/{escaped}"), "/v1/kv/");
            assert_eq!(again.ok().as_deref(), Some(key.as_str()), "{raw:?}: fully escaped key does not round-trip");
            check_key(&key);
        }
        Err(e) => {
            client_error(&e, &raw);
            assert_eq!(e.code(), "bad_key", "{raw:?}");
        }
    }
}

/// A `Content-Type` for a v1 PUT and for compat `/set` with `body`.
pub fn check_content_type(ct: &str, body: &[u8]) {
    if let Err(e) = params::body_kind(Some(ct)) {
        client_error(&e, &ct);
        assert_eq!(e.status().as_u16(), 415, "{ct:?}");
    }
    if let Err(e) = compat::set_kind(Some(ct), body) {
        client_error(&e, &(ct, body));
        assert_eq!(e.status().as_u16(), 415, "{ct:?}");
    }
}

/// A JSON PUT body.
pub fn check_put_body(bytes: &[u8]) {
    match params::put_body(bytes) {
        Ok((value, ttl)) => {
            if let Some(d) = ttl {
                check_ttl_bounds(d, &String::from_utf8_lossy(bytes));
            }
            let parsed: serde_json::Value = serde_json::from_slice(bytes).expect("an accepted body is JSON");
            // Only an object is ever accepted (an array in field order is refused).
            assert!(parsed.is_object(), "a non-object body was accepted");
            let (text, encoding) = (&parsed["value"], parsed.get("encoding"));
            let text = text.as_str().expect("an accepted body has a string value");
            match encoding.and_then(|e| e.as_str()) {
                Some("base64") => {}
                _ => assert_eq!(value, text.as_bytes(), "utf8 value changed"),
            }
        }
        Err(e) => {
            client_error(&e, &String::from_utf8_lossy(bytes));
            assert!(matches!(e.code(), "bad_json" | "bad_ttl"), "{e:?}");
        }
    }
}

/// A listing cursor: accepted cursors are exactly the ones the server would hand out.
pub fn check_cursor(s: &str) {
    match params::decode_cursor(s) {
        Ok(key) => assert_eq!(params::encode_cursor(&key), s, "cursor {s:?} is not canonical"),
        Err(e) => {
            client_error(&e, &s);
            assert_eq!(e.code(), "bad_cursor");
        }
    }
}

/// A form body of GoKeyDB's `/set` or KeyValueStore's `/store`, with `key` possibly in
/// the query.
pub fn check_form(query_key: Option<&str>, body: &[u8]) {
    let q: HashMap<String, String> = query_key.map(|k| ("key".to_string(), k.to_string())).into_iter().collect();
    for need_value in [true, false] {
        match compat::form_fields(&q, body, need_value) {
            Ok((key, value)) => {
                assert!(!need_value || value.is_some(), "{body:?}: accepted without a value");
                assert!(query_key.is_none_or(|k| k == key), "{body:?}: key given in the query and the body");
            }
            Err(e) => client_error(&e, &String::from_utf8_lossy(body)),
        }
    }
}

/// A govault JSON body for `/set` and `/set_with_ttl`.
pub fn check_govault_body(bytes: &[u8]) {
    for with_ttl in [false, true] {
        match compat::govault_body(bytes, with_ttl) {
            Ok((_, _, ttl)) => match ttl {
                Some(d) => check_ttl_bounds(d, &String::from_utf8_lossy(bytes)),
                None => assert!(!with_ttl, "{bytes:?}: /set_with_ttl without a ttl"),
            },
            Err(e) => client_error(&e, &String::from_utf8_lossy(bytes)),
        }
    }
}

/// The compat database from the `X-Ringkv-Db` header and the cookie, as raw bytes.
pub fn check_db_sources(header: Option<&[u8]>, cookie: Option<&[u8]>) {
    let mut h = HeaderMap::new();
    for (name, value) in [("x-ringkv-db", header), ("cookie", cookie)] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    match compat::resolve_db(&HashMap::new(), &h) {
        Ok(db) => assert!(db <= MAX_DB, "{h:?}: db {db}"),
        Err(e) => {
            client_error(&e, &h);
            assert_eq!(e.code(), "bad_db");
        }
    }
}

/// Splits fuzzer bytes into a decoder choice and its input, and runs that check.
pub fn check_request_bytes(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let (a, b) = match rest.iter().position(|&c| c == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    match which % 10 {
        0 => check_query(&text),
        1 => check_ttl(&text),
        2 => {
            if let Ok(v) = serde_json::from_slice(rest) {
                check_json_ttl(&v);
            }
        }
        3 => check_key_from_path(&text),
        4 => check_content_type(&String::from_utf8_lossy(a), b),
        5 => check_put_body(rest),
        6 => check_cursor(&text),
        7 => check_form((which & 0x80 != 0).then(|| String::from_utf8_lossy(a)).as_deref(), b),
        8 => check_govault_body(rest),
        _ => check_db_sources(Some(a), Some(b)),
    }
}

// ---------------------------------------------------------------------------------------
// The WAL

/// An in-memory file system: files by path, shared by clones.
#[derive(Clone, Default)]
pub struct MemFs {
    files: Arc<Mutex<BTreeMap<PathBuf, Vec<u8>>>>,
}

struct MemFile {
    fs: MemFs,
    path: PathBuf,
}

impl MemFs {
    fn files(&self) -> parking_lot::MutexGuard<'_, BTreeMap<PathBuf, Vec<u8>>> {
        self.files.lock()
    }

    /// Puts a file in place.
    pub fn put(&self, path: PathBuf, data: Vec<u8>) {
        self.files().insert(path, data);
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl FileSystem for MemFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self.files().keys().filter(|p| p.parent() == Some(dir)).cloned().collect())
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let mut files = self.files();
        if files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, path.display().to_string()));
        }
        files.insert(path.to_path_buf(), Vec::new());
        Ok(Box::new(MemFile { fs: self.clone(), path: path.to_path_buf() }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        if !self.files().contains_key(path) {
            return Err(not_found(path));
        }
        Ok(Box::new(MemFile { fs: self.clone(), path: path.to_path_buf() }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files().get(path).cloned().ok_or_else(|| not_found(path))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.files().remove(path).map(drop).ok_or_else(|| not_found(path))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut files = self.files();
        let f = files.get_mut(path).ok_or_else(|| not_found(path))?;
        f.truncate(usize::try_from(len).map_err(|_| io::Error::other("length"))?);
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

impl WalFile for MemFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.fs.files().get_mut(&self.path).ok_or_else(|| not_found(&self.path))?.extend_from_slice(buf);
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.fs.truncate(&self.path, len)
    }
    fn len(&self) -> u64 {
        self.fs.files().get(&self.path).map_or(0, |f| f.len() as u64)
    }
}

/// The segment header, written out from the documented layout.
pub fn reference_header() -> Vec<u8> {
    let mut h = b"RKVWAL\r\n".to_vec();
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// One record as `len | crc | shard | kind | payload`, with a correct CRC whatever the
/// kind and payload (so malformed-but-checksummed records are reachable).
pub fn reference_record(shard: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = shard.to_le_bytes().to_vec();
    body.push(kind);
    body.extend_from_slice(payload);
    let mut out = u32::try_from(body.len()).expect("small record").to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

const MAX_RECORD_LEN: usize = 64 << 20;

/// A frame whose length is in range, fits in `data` and whose CRC matches: returns
/// `(shard, kind, payload, size)`.
fn reference_frame(data: &[u8]) -> Option<(u32, u8, &[u8], usize)> {
    let len = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?);
    if !(5..=MAX_RECORD_LEN).contains(&len) {
        return None;
    }
    let body = data.get(8..8 + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let shard = u32::from_le_bytes(body[0..4].try_into().ok()?);
    Some((shard, body[4], &body[5..], 8 + len))
}

fn u64_at(p: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(p.get(0..8)?.try_into().ok()?))
}

/// Applies a checksummed record to a shard's log; `None` if its kind or payload is
/// invalid (corruption, never a torn write).
fn reference_apply(log: &mut ShardLog, kind: u8, payload: &[u8]) -> Option<()> {
    match kind {
        1 => log.vote = Some(payload.to_vec()),
        2 => log.committed = Some(payload.to_vec()),
        3 => {
            log.entries.insert(u64_at(payload)?, payload[8..].to_vec());
        }
        4 if payload.len() == 8 => {
            let since = u64_at(payload)?;
            log.entries.retain(|i, _| *i < since);
        }
        5 => {
            let upto = u64_at(payload)?;
            log.entries.retain(|i, _| *i > upto);
            log.purged = Some((upto, payload[8..].to_vec()));
        }
        6 if payload.is_empty() => *log = ShardLog::default(),
        _ => return None,
    }
    Some(())
}

/// What opening segments `1..=n` must give.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// The shards, and the (segment index, offset) a torn tail was cut at.
    Ok { shards: BTreeMap<u32, ShardLog>, torn: Option<(usize, u64)> },
    /// Corruption in segment `index` at byte `offset`.
    Corrupt { segment: usize, offset: u64 },
}

/// Replays segments by the documented rules.
pub fn reference_replay(segments: &[Vec<u8>]) -> Replay {
    let header = reference_header();
    let mut shards: BTreeMap<u32, ShardLog> = BTreeMap::new();
    let mut torn = None;
    for (i, data) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if data.get(..header.len()) != Some(&header[..]) {
            let unwritten = (data.len() < header.len() && header.starts_with(data)) || data.iter().all(|b| *b == 0);
            if last && unwritten {
                if !data.is_empty() {
                    torn = Some((i, 0));
                }
                continue;
            }
            return Replay::Corrupt { segment: i, offset: 0 };
        }
        let mut at = header.len();
        while at < data.len() {
            match reference_frame(&data[at..]) {
                Some((shard, kind, payload, size)) => {
                    if reference_apply(shards.entry(shard).or_default(), kind, payload).is_none() {
                        return Replay::Corrupt { segment: i, offset: at as u64 };
                    }
                    at += size;
                }
                None => {
                    let valid_after = (at + 1..data.len()).any(|o| reference_frame(&data[o..]).is_some());
                    if last && !valid_after {
                        torn = Some((i, at as u64));
                        break;
                    }
                    return Replay::Corrupt { segment: i, offset: at as u64 };
                }
            }
        }
    }
    Replay::Ok { shards, torn }
}

fn segment_path(dir: &Path, seq: usize) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

fn open(fs: &MemFs, dir: &Path, n: usize) -> Replay {
    let opts = WalOptions { fs: Arc::new(fs.clone()), ..WalOptions::default() };
    let index_of = |p: &Path| (1..=n).find(|s| segment_path(dir, *s) == p).expect("a segment we wrote") - 1;
    match Wal::open(dir, opts) {
        Ok((wal, recovered)) => {
            wal.close();
            let torn = recovered.torn_tail.map(|(p, off)| (index_of(&p), off));
            Replay::Ok { shards: recovered.shards, torn }
        }
        Err(WalError::Corruption { segment, offset, .. }) => Replay::Corrupt { segment: index_of(&segment), offset },
        Err(other) => panic!("an in-memory WAL failed with {other}"),
    }
}

/// Whether replaying the same state again must give it back: the checkpoint the writer
/// writes on open re-applies each shard's purge, which would also drop entries at or
/// below the purged index, something a real log never holds.
fn reopen_is_identity(shards: &BTreeMap<u32, ShardLog>) -> bool {
    shards.values().all(|l| match &l.purged {
        Some((upto, _)) => l.entries.keys().all(|i| i > upto),
        None => true,
    })
}

/// Opens `segments` (as files `1..=n`) with the real WAL and compares with the reference;
/// then opens again and expects the same state with nothing left to cut.
pub fn check_wal_segments(segments: &[Vec<u8>]) {
    let dir = Path::new("/wal");
    let fs = MemFs::default();
    for (i, s) in segments.iter().enumerate() {
        fs.put(segment_path(dir, i + 1), s.clone());
    }
    let want = reference_replay(segments);
    let got = open(&fs, dir, segments.len());
    assert_eq!(got, want, "WAL replay disagrees with the format's reference for segments {segments:02x?}");
    if let Replay::Ok { shards, .. } = want {
        let n = fs.list(dir).map(|l| l.len()).unwrap_or(0);
        match open(&fs, dir, n) {
            Replay::Ok { shards: again, torn } => {
                assert_eq!(torn, None, "a second open cut again");
                if reopen_is_identity(&shards) {
                    let non_empty = |m: BTreeMap<u32, ShardLog>| -> BTreeMap<u32, ShardLog> {
                        m.into_iter().filter(|(_, l)| *l != ShardLog::default()).collect()
                    };
                    assert_eq!(non_empty(again), non_empty(shards), "a second open changed the state");
                }
            }
            corrupt => panic!("the WAL's own recovery left {corrupt:?}"),
        }
    }
}

/// A change to encoded bytes, applied in order.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// XOR the byte at `at % len`.
    Flip { at: usize, mask: u8 },
    /// Cut the data to `at % (len + 1)` bytes.
    Truncate { at: usize },
    /// Insert bytes at `at % (len + 1)`.
    Insert { at: usize, bytes: Vec<u8> },
}

/// Encodes `records` (shard, kind, payload) after a header, mutates the bytes, splits
/// them into segments at `splits` (offsets, taken modulo the length) and checks replay.
pub fn check_wal_records(records: &[(u32, u8, Vec<u8>)], mutations: &[Mutation], splits: &[usize]) {
    let mut data = reference_header();
    for (shard, kind, payload) in records {
        data.extend(reference_record(*shard, *kind, payload));
    }
    for m in mutations {
        match m {
            Mutation::Flip { at, mask } if !data.is_empty() => {
                let i = at % data.len();
                data[i] ^= mask;
            }
            Mutation::Flip { .. } => {}
            Mutation::Truncate { at } => data.truncate(at % (data.len() + 1)),
            Mutation::Insert { at, bytes } => {
                let i = at % (data.len() + 1);
                data.splice(i..i, bytes.iter().copied());
            }
        }
    }
    // Later segments start with their own header, as the writer makes them.
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (data.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut segments = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        let mut seg = if start == 0 { Vec::new() } else { reference_header() };
        seg.extend_from_slice(&data[start..cut.max(start)]);
        segments.push(seg);
        start = cut.max(start);
    }
    check_wal_segments(&segments);
}

/// Reads fuzzer bytes as records, mutations and splits, or (first bit clear) as the raw
/// bytes of one segment after a valid header.
pub fn check_wal_bytes(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let mut seg = if mode & 2 == 0 { reference_header() } else { Vec::new() };
        seg.extend_from_slice(rest);
        return check_wal_segments(&[seg]);
    }
    let mut r = Reader(rest);
    let mut records = Vec::new();
    for _ in 0..r.byte() % 16 {
        let shard = u32::from(r.byte() % 4);
        let kind = match r.byte() {
            k @ 0..=239 => k % 6, // mostly the known kinds, and kind 0
            k => k,
        };
        let len = usize::from(r.byte() % 24);
        let payload = match r.byte() {
            // Mostly a small log index first, so entries, truncations and purges meet.
            i @ 0..=191 => [&u64::from(i % 8).to_le_bytes()[..], r.take(len.saturating_sub(8))].concat(),
            _ => r.take(len).to_vec(),
        };
        records.push((shard, kind, payload));
    }
    let mut mutations = Vec::new();
    for _ in 0..r.byte() % 4 {
        let at = usize::from(r.byte()) << 8 | usize::from(r.byte());
        mutations.push(match r.byte() % 3 {
            0 => Mutation::Flip { at, mask: r.byte().max(1) },
            1 => Mutation::Truncate { at },
            _ => {
                let n = usize::from(r.byte() % 16);
                Mutation::Insert { at, bytes: r.take(n).to_vec() }
            }
        });
    }
    let splits: Vec<usize> = (0..r.byte() % 3).map(|_| usize::from(r.byte()) << 8 | usize::from(r.byte())).collect();
    check_wal_records(&records, &mutations, &splits);
}

/// Consumes fuzzer bytes; zeros once they run out.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}
