//! A recorded mixed load: clients doing puts, deletes, compare-and-swaps, batches and
//! linearizable reads on a few shared keys through random nodes, every call recorded
//! for the linearizability checker (a batch as one call per key it touches). A test starts it, changes the cluster under it, then
//! [`Load::finish`]es it: final reads of every key through every node join the history,
//! and the history must be linearizable with no answer but success, 404, 409 or a
//! retryable 503.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::http::HttpSettings;
use crate::key_path;
use crate::linearizability::{check, History, Op, Outcome};

/// The load's shared state.
struct Ctx {
    urls: Vec<String>,
    /// Keys are `{prefix}0` … (`lin-` unless given): a history must start on keys nobody
    /// wrote before, since the checker starts every register absent.
    prefix: String,
    keys: usize,
    http: reqwest::Client,
    history: History,
    stop: AtomicBool,
    ops: AtomicU64,
    /// The longest a write (put, delete, CAS) waited for its answer, in µs, whatever the
    /// answer was.
    max_write_wait_us: AtomicU64,
    /// Writes that waited over [`SLOW_WRITE`]: (seconds since the start, wait, what).
    slow_writes: parking_lot::Mutex<Vec<(f64, Duration, String)>>,
    started: std::time::Instant,
    errors: parking_lot::Mutex<Vec<String>>,
    /// Puts and CASes the node answered `unavailable` (did not apply, never will):
    /// (key, value). A watch that delivers one of them caught the node breaking its word.
    refused: parking_lot::Mutex<Vec<(String, String)>>,
}

/// A write waiting longer than this is listed in [`LoadReport::slow_writes`].
const SLOW_WRITE: Duration = Duration::from_millis(300);

impl Ctx {
    fn waited(&self, since: std::time::Instant, what: impl FnOnce() -> String) {
        let waited = since.elapsed();
        let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.max_write_wait_us.fetch_max(us, Ordering::Relaxed);
        if waited > SLOW_WRITE {
            let at = since.duration_since(self.started).as_secs_f64();
            self.slow_writes.lock().push((at, waited, what()));
        }
    }

    fn unexpected(&self, what: String) {
        self.errors.lock().push(what);
    }
}

/// What a finished load did.
#[derive(Debug)]
pub struct LoadReport {
    pub ops: usize,
    pub keys: usize,
    /// Calls whose outcome is unknown (a timeout, a 503, a node killed mid-call).
    pub unknown: usize,
    /// The longest any write waited for its answer.
    pub max_write_wait: Duration,
    /// Writes that waited over 300 ms: (seconds since the load started, wait, the call
    /// and its answer), in the order they finished.
    pub slow_writes: Vec<(f64, Duration, String)>,
}

/// A running load.
pub struct Load {
    ctx: Arc<Ctx>,
    tasks: tokio::task::JoinSet<()>,
}

impl Load {
    /// Starts `clients` clients on keys `lin-0..lin-{keys}` through `urls`; the first
    /// `writers` of them write, the rest only read.
    pub fn start(urls: Vec<String>, clients: usize, writers: usize, keys: usize) -> Load {
        Load::start_on("lin-", urls, clients, writers, keys)
    }

    /// [`Load::start`] on keys `{prefix}0..{prefix}{keys}`, for a cluster that may hold
    /// keys of an earlier load (a fresh prefix per run).
    pub fn start_on(prefix: &str, urls: Vec<String>, clients: usize, writers: usize, keys: usize) -> Load {
        Load::start_with(&HttpSettings::default(), prefix, urls, clients, writers, keys)
    }

    /// [`Load::start_on`] whose clients reach the nodes with `settings` (a CA, a token,
    /// names resolved to given addresses).
    pub fn start_with(
        settings: &HttpSettings,
        prefix: &str,
        urls: Vec<String>,
        clients: usize,
        writers: usize,
        keys: usize,
    ) -> Load {
        let ctx = Arc::new(Ctx {
            urls,
            prefix: prefix.to_string(),
            keys,
            http: settings.builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client"),
            history: History::new(),
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            max_write_wait_us: AtomicU64::new(0),
            slow_writes: Default::default(),
            started: std::time::Instant::now(),
            errors: Default::default(),
            refused: Default::default(),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..clients {
            tasks.spawn(client(ctx.clone(), i, i < writers));
        }
        Load { ctx, tasks }
    }

    /// Calls completed so far.
    pub fn ops(&self) -> u64 {
        self.ctx.ops.load(Ordering::Relaxed)
    }

    /// The keys the clients use, `{prefix}0..{prefix}{keys}`.
    pub fn keys(&self) -> Vec<String> {
        (0..self.ctx.keys).map(|k| format!("{}{k}", self.ctx.prefix)).collect()
    }

    /// The recorded history (a clone sharing the recorder: it keeps growing while the
    /// load runs).
    pub fn history(&self) -> History {
        self.ctx.history.clone()
    }

    /// Puts and CASes answered `unavailable` so far: (key, value).
    pub fn refused_writes(&self) -> Vec<(String, String)> {
        self.ctx.refused.lock().clone()
    }

    /// Stops the clients after their calls in flight (what [`Load::try_finish`] does
    /// first), so the history holds still while a caller looks at it.
    pub async fn stop(&mut self) {
        self.ctx.stop.store(true, Ordering::Release);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops the clients, reads every key through every node (each read must get an
    /// answer), and checks the whole history. Panics on any violation.
    pub async fn finish(self) -> LoadReport {
        self.try_finish().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Load::finish`] that returns what went wrong instead of panicking: no answer to a
    /// final read within a minute, an answer other than success, 404/409 or a retryable
    /// 503, or a history that is not linearizable.
    pub async fn try_finish(mut self) -> Result<LoadReport, String> {
        self.stop().await;
        let ctx = &self.ctx;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for k in 0..ctx.keys {
            let key = format!("{}{k}", ctx.prefix);
            for url in &ctx.urls {
                let url = format!("{url}{}", key_path(&key));
                while get(ctx, &key, &url).await.is_none() {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(format!("no answer to the final read of {url} within a minute"));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let errors = ctx.errors.lock().clone();
        if !errors.is_empty() {
            return Err(format!("answers other than success, 404/409 or a retryable 503: {errors:?}"));
        }
        let stats = check(&ctx.history.records()).map_err(|v| format!("not linearizable: {v:?}"))?;
        Ok(LoadReport {
            ops: stats.ops,
            keys: stats.keys,
            unknown: stats.unknown,
            max_write_wait: Duration::from_micros(ctx.max_write_wait_us.load(Ordering::Relaxed)),
            slow_writes: ctx.slow_writes.lock().clone(),
        })
    }
}

/// One client: random operations on the shared keys against random nodes, each recorded.
async fn client(c: Arc<Ctx>, me: usize, writer: bool) {
    let mut seq = 0u64;
    while !c.stop.load(Ordering::Acquire) {
        let (key, node, roll) = {
            let mut rng = rand::rng();
            (
                format!("{}{}", c.prefix, rng.random_range(0..c.keys)),
                c.urls[rng.random_range(0..c.urls.len())].clone(),
                rng.random_range(0..10),
            )
        };
        let url = format!("{node}{}", key_path(&key));
        seq += 1;
        let value = format!("c{me}-{seq}");
        if !writer || roll < 3 {
            if get(&c, &key, &url).await.is_none() {
                // A node down (killed by the test): do not spin on it.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else if roll < 6 {
            let p = c.history.invoke(&key, Op::Put { value: value.clone() });
            let since = std::time::Instant::now();
            let answer = c.http.put(&url).body(value.clone()).send().await;
            c.waited(since, || format!("PUT {url}: {}", status_of(&answer)));
            match answer {
                Ok(r) if r.status() == 200 => p.complete(Outcome::Put),
                Ok(r) if matches!(r.status().as_u16(), 503 | 507) => unavailable(&c, p, r, (&key, &value)).await,
                Ok(r) => c.unexpected(format!("PUT {url}: {}", r.status())),
                Err(_) => p.complete(Outcome::Unknown),
            }
        } else if roll < 7 {
            batch(&c, &node, me, seq).await;
        } else if roll < 8 {
            let p = c.history.invoke(&key, Op::Delete);
            let since = std::time::Instant::now();
            let answer = c.http.delete(&url).send().await;
            c.waited(since, || format!("DELETE {url}: {}", status_of(&answer)));
            match answer {
                Ok(r) if r.status() == 200 => {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    p.complete(Outcome::Deleted(v["deleted"] == 1));
                }
                Ok(r) if matches!(r.status().as_u16(), 503 | 507) => unavailable(&c, p, r, (&key, "")).await,
                Ok(r) => c.unexpected(format!("DELETE {url}: {}", r.status())),
                Err(_) => p.complete(Outcome::Unknown),
            }
        } else {
            // Compare-and-swap: read the key, then write only if it is unchanged.
            let Some((current, revision)) = get(&c, &key, &url).await else {
                continue;
            };
            let p = c.history.invoke(&key, Op::CasPut { expect: current, value: value.clone() });
            let since = std::time::Instant::now();
            let answer = c.http.put(format!("{url}?prev_revision={revision}")).body(value.clone()).send().await;
            c.waited(since, || format!("CAS {url}: {}", status_of(&answer)));
            match answer {
                Ok(r) if r.status() == 200 => p.complete(Outcome::Cas(true)),
                Ok(r) if r.status() == 409 => p.complete(Outcome::Cas(false)),
                Ok(r) if matches!(r.status().as_u16(), 503 | 507) => unavailable(&c, p, r, (&key, &value)).await,
                Ok(r) => c.unexpected(format!("CAS {url}: {}", r.status())),
                Err(_) => p.complete(Outcome::Unknown),
            }
        }
        c.ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// `POST /v1/batch` of puts on two or three distinct keys and a get of another one (the
/// keys may be in different shards), recorded as one call per key with the batch's
/// times. A put whose group applied is a put; one whose group did not is refused when
/// the batch's error says nothing was applied (`unavailable`, `insufficient_storage`),
/// else unknown.
async fn batch(c: &Ctx, node: &str, me: usize, seq: u64) {
    let mut keys: Vec<usize> = (0..c.keys).collect();
    {
        use rand::seq::SliceRandom;
        keys.shuffle(&mut rand::rng());
    }
    let puts = if c.keys >= 4 { rand::rng().random_range(2..=3) } else { 1 };
    let (put_keys, get_key) = (&keys[..puts.min(c.keys - 1)], keys[puts.min(c.keys - 1)]);
    let mut ops = Vec::new();
    let mut pending = Vec::new();
    for (i, k) in put_keys.iter().enumerate() {
        let (key, value) = (format!("{}{k}", c.prefix), format!("c{me}-{seq}b{i}"));
        pending.push((c.history.invoke(&key, Op::Put { value: value.clone() }), key.clone(), value.clone()));
        ops.push(serde_json::json!({"op": "put", "key": key, "value": value}));
    }
    let get_key = format!("{}{get_key}", c.prefix);
    let get = c.history.invoke(&get_key, Op::Get);
    ops.push(serde_json::json!({"op": "get", "key": get_key}));
    let since = std::time::Instant::now();
    let answer = c.http.post(format!("{node}/v1/batch")).json(&serde_json::json!({ "ops": ops })).send().await;
    c.waited(since, || format!("BATCH via {node}: {}", status_of(&answer)));
    let (status, body) = match answer {
        Ok(r) => (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default()),
        Err(_) => return, // every call dropped: unknown
    };
    if !matches!(status, 200 | 503 | 507) {
        c.unexpected(format!("BATCH via {node}: {status} {body}"));
        return;
    }
    let refused = matches!(body["error"]["code"].as_str(), Some("unavailable" | "insufficient_storage"));
    let results = body["results"].as_array().cloned().unwrap_or_default();
    for (i, (p, key, value)) in pending.into_iter().enumerate() {
        match results.get(i).map(|r| r["ok"] == true) {
            Some(true) => p.complete(Outcome::Put),
            _ if refused || status == 507 => {
                p.refused();
                c.refused.lock().push((key, value));
            }
            _ => p.complete(Outcome::Unknown),
        }
    }
    match results.get(put_keys.len()) {
        Some(r) if r["ok"] == true => {
            let value = (r["found"] == true).then(|| r["value"].as_str().unwrap_or_default().to_string());
            get.complete(Outcome::Got(value));
        }
        _ => get.complete(Outcome::Unknown),
    }
}

/// A write's 503 or 507, recorded as the node described it: `unavailable` (503) and
/// `insufficient_storage` (507, a full disk) say the write did not apply (the check holds
/// the node to that), `outcome_unknown` that it may still.
/// `written` is the (key, value) of a put or CAS (an empty value for a delete).
async fn unavailable(c: &Ctx, p: crate::linearizability::Pending, r: reqwest::Response, written: (&str, &str)) {
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    match body["error"]["code"].as_str() {
        Some("unavailable" | "insufficient_storage") => {
            p.refused();
            if !written.1.is_empty() {
                c.refused.lock().push((written.0.to_string(), written.1.to_string()));
            }
        }
        _ => p.complete(Outcome::Unknown),
    }
}

/// An answer's status, or the transport error, for messages.
fn status_of(answer: &reqwest::Result<reqwest::Response>) -> String {
    match answer {
        Ok(r) => r.status().to_string(),
        Err(e) => format!("no answer ({e})"),
    }
}

/// A recorded linearizable read; returns the value and its revision when it completed.
async fn get(c: &Ctx, key: &str, url: &str) -> Option<(Option<String>, u64)> {
    let p = c.history.invoke(key, Op::Get);
    match c.http.get(url).send().await {
        Ok(r) if r.status() == 200 => {
            let v: serde_json::Value = r.json().await.ok()?;
            let value = v["value"].as_str().map(str::to_string);
            p.complete(Outcome::Got(value.clone()));
            Some((value, v["mod_revision"].as_u64().unwrap_or(0)))
        }
        Ok(r) if r.status() == 404 => {
            p.complete(Outcome::Got(None));
            Some((None, 0))
        }
        Ok(r) if r.status() == 503 => {
            p.complete(Outcome::Unknown);
            None
        }
        Ok(r) => {
            c.unexpected(format!("GET {url}: {}", r.status()));
            None
        }
        Err(_) => {
            p.complete(Outcome::Unknown);
            None
        }
    }
}
