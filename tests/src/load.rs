//! A recorded mixed load: clients doing puts, deletes, compare-and-swaps and
//! linearizable reads on a few shared keys through random nodes, every call recorded
//! for the linearizability checker. A test starts it, changes the cluster under it, then
//! [`Load::finish`]es it: final reads of every key through every node join the history,
//! and the history must be linearizable with no answer but success, 404, 409 or a
//! retryable 503.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::key_path;
use crate::linearizability::{check, History, Op, Outcome};

/// The load's shared state.
struct Ctx {
    urls: Vec<String>,
    keys: usize,
    http: reqwest::Client,
    history: History,
    stop: AtomicBool,
    ops: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Ctx {
    fn unexpected(&self, what: String) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what);
    }
}

/// What a finished load did.
#[derive(Debug)]
pub struct LoadReport {
    pub ops: usize,
    pub keys: usize,
    /// Calls whose outcome is unknown (a timeout, a 503, a node killed mid-call).
    pub unknown: usize,
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
        let ctx = Arc::new(Ctx {
            urls,
            keys,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            history: History::new(),
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            errors: Default::default(),
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

    /// Stops the clients, reads every key through every node (each read must get an
    /// answer), and checks the whole history. Panics on any violation.
    pub async fn finish(mut self) -> LoadReport {
        self.ctx.stop.store(true, Ordering::Release);
        while self.tasks.join_next().await.is_some() {}
        let ctx = &self.ctx;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for k in 0..ctx.keys {
            let key = format!("lin-{k}");
            for url in &ctx.urls {
                let url = format!("{url}{}", key_path(&key));
                while get(ctx, &key, &url).await.is_none() {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no answer to the final read of {url} within a minute"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let errors = ctx.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(
            errors.is_empty(),
            "answers other than success, 404/409 or a retryable 503: {errors:?}"
        );
        let stats =
            check(&ctx.history.records()).unwrap_or_else(|v| panic!("not linearizable: {v:?}"));
        LoadReport {
            ops: stats.ops,
            keys: stats.keys,
            unknown: stats.unknown,
        }
    }
}

/// One client: random operations on the shared keys against random nodes, each recorded.
async fn client(c: Arc<Ctx>, me: usize, writer: bool) {
    let mut seq = 0u64;
    while !c.stop.load(Ordering::Acquire) {
        let (key, node, roll) = {
            let mut rng = rand::rng();
            (
                format!("lin-{}", rng.random_range(0..c.keys)),
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
        } else if roll < 7 {
            let p = c.history.invoke(
                &key,
                Op::Put {
                    value: value.clone(),
                },
            );
            match c.http.put(&url).body(value).send().await {
                Ok(r) if r.status() == 200 => p.complete(Outcome::Put),
                Ok(r) if r.status() == 503 => p.complete(Outcome::Unknown),
                Ok(r) => c.unexpected(format!("PUT {url}: {}", r.status())),
                Err(_) => p.complete(Outcome::Unknown),
            }
        } else if roll < 8 {
            let p = c.history.invoke(&key, Op::Delete);
            match c.http.delete(&url).send().await {
                Ok(r) if r.status() == 200 => {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    p.complete(Outcome::Deleted(v["deleted"] == 1));
                }
                Ok(r) if r.status() == 503 => p.complete(Outcome::Unknown),
                Ok(r) => c.unexpected(format!("DELETE {url}: {}", r.status())),
                Err(_) => p.complete(Outcome::Unknown),
            }
        } else {
            // Compare-and-swap: read the key, then write only if it is unchanged.
            let Some((current, revision)) = get(&c, &key, &url).await else {
                continue;
            };
            let p = c.history.invoke(
                &key,
                Op::CasPut {
                    expect: current,
                    value: value.clone(),
                },
            );
            match c
                .http
                .put(format!("{url}?prev_revision={revision}"))
                .body(value)
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => p.complete(Outcome::Cas(true)),
                Ok(r) if r.status() == 409 => p.complete(Outcome::Cas(false)),
                Ok(r) if r.status() == 503 => p.complete(Outcome::Unknown),
                Ok(r) => c.unexpected(format!("CAS {url}: {}", r.status())),
                Err(_) => p.complete(Outcome::Unknown),
            }
        }
        c.ops.fetch_add(1, Ordering::Relaxed);
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
