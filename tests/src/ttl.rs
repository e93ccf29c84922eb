//! Keys with a TTL under faults: none visible after its TTL, none gone before it.
//!
//! [`TtlProbe::start`] writes a fresh key with a TTL every `every` through a random node
//! (each key written once, by nobody else), and for each acknowledged one reads it
//! linearizably through random nodes: once at a random moment before the TTL can have
//! run out, once at a random moment after it surely has.
//!
//! The leader stamps the expiry into the Raft entry as its wall clock plus the TTL when
//! it proposes the put, so the expiry `E` lies between the put's invocation `t0` and its
//! answer `t1` (plus the TTL), on the same machine's clock the probe reads. A read that
//! **finished** before `t0 + ttl` must see the value; a read that **started** after
//! `t1 + ttl` must not. A read answered 503 (or not at all) says nothing. The slack
//! [`CLOCK_SLACK`] covers the millisecond granularity of the node's clock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rand::Rng;

use crate::key_path;

/// Tolerance for clock granularity between the probe and the node.
const CLOCK_SLACK: Duration = Duration::from_millis(20);

struct Ctx {
    urls: Vec<String>,
    prefix: String,
    ttl: Duration,
    http: reqwest::Client,
    stop: AtomicBool,
    puts: AtomicUsize,
    reads: AtomicUsize,
    violations: Mutex<Vec<String>>,
}

/// A running probe.
pub struct TtlProbe {
    ctx: Arc<Ctx>,
    tasks: Arc<Mutex<tokio::task::JoinSet<()>>>,
    driver: tokio::task::JoinHandle<()>,
}

/// What a probe saw.
#[derive(Debug, Default)]
pub struct TtlReport {
    /// Keys whose put was acknowledged.
    pub keys: usize,
    /// Reads that got an answer and were checked.
    pub reads: usize,
    pub violations: Vec<String>,
}

impl TtlProbe {
    /// Starts writing `{prefix}N` with `ttl` every `every` through `urls`.
    pub fn start(urls: Vec<String>, prefix: &str, ttl: Duration, every: Duration) -> TtlProbe {
        let ctx = Arc::new(Ctx {
            urls,
            prefix: prefix.to_string(),
            ttl,
            http: ringkv_api::client::http().no_proxy().timeout(Duration::from_secs(10)).build().expect("client"),
            stop: AtomicBool::new(false),
            puts: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            violations: Mutex::new(Vec::new()),
        });
        let tasks = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
        let driver = {
            let (ctx, tasks) = (ctx.clone(), tasks.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !ctx.stop.load(Ordering::Acquire) {
                    tasks.lock().spawn(probe(ctx.clone(), format!("{}{n}", ctx.prefix)));
                    n += 1;
                    tokio::time::sleep(every).await;
                }
            })
        };
        TtlProbe { ctx, tasks, driver }
    }

    /// Stops starting keys, lets every key started finish its reads, and reports.
    pub async fn finish(self) -> TtlReport {
        self.ctx.stop.store(true, Ordering::Release);
        let _ = self.driver.await;
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        while tasks.join_next().await.is_some() {}
        TtlReport {
            keys: self.ctx.puts.load(Ordering::Relaxed),
            reads: self.ctx.reads.load(Ordering::Relaxed),
            violations: self.ctx.violations.lock().clone(),
        }
    }
}

fn random_node(c: &Ctx) -> String {
    c.urls[rand::rng().random_range(0..c.urls.len())].clone()
}

/// One key: put with the TTL, then a read before and a read after it runs out.
async fn probe(c: Arc<Ctx>, key: String) {
    let value = format!("ttl@{}", rand::rng().random::<u32>());
    let ttl_ms = c.ttl.as_millis();
    let url = format!("{}{}?ttl={ttl_ms}ms", random_node(&c), key_path(&key));
    let t0 = SystemTime::now();
    let acked = matches!(c.http.put(&url).body(value.clone()).send().await, Ok(r) if r.status() == 200);
    let t1 = SystemTime::now();
    if !acked {
        return; // unknown or refused: nothing to hold the node to
    }
    c.puts.fetch_add(1, Ordering::Relaxed);
    // Before: a random moment in [t1, t0 + ttl - 3·slack), if there is one.
    let before_end = t0 + c.ttl.saturating_sub(CLOCK_SLACK * 3);
    if let Ok(room) = before_end.duration_since(SystemTime::now()) {
        let wait = rand::rng().random_range(0..=room.as_millis());
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
        read(&c, &key, &value, t0, t1).await;
    }
    // After: a random moment in (t1 + ttl, t1 + ttl + 1 s].
    let after = t1 + c.ttl + CLOCK_SLACK;
    if let Ok(until) = after.duration_since(SystemTime::now()) {
        let jitter = Duration::from_millis(rand::rng().random_range(0..1000));
        tokio::time::sleep(until + jitter).await;
    }
    read(&c, &key, &value, t0, t1).await;
}

/// A linearizable read of `key`, checked against the put's window `[t0, t1]`.
async fn read(c: &Ctx, key: &str, value: &str, t0: SystemTime, t1: SystemTime) {
    let url = format!("{}{}", random_node(c), key_path(key));
    let r0 = SystemTime::now();
    let Ok(r) = c.http.get(&url).send().await else { return };
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let r1 = SystemTime::now();
    let ms = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let window = format!(
        "put in [{}, {}] ms with ttl {} ms, read in [{}, {}] ms via {url}",
        ms(t0),
        ms(t1),
        c.ttl.as_millis(),
        ms(r0),
        ms(r1)
    );
    if matches!(status, 200 | 404) {
        c.reads.fetch_add(1, Ordering::Relaxed);
    }
    let got = (status == 200).then(|| body["value"].as_str().unwrap_or_default().to_string());
    if let Some(why) = judge(status, got.as_deref(), value, (t0, t1), (r0, r1), c.ttl) {
        c.violations.lock().push(format!("{key}: {why}; {window}"));
    }
}

/// The verdict on one read of a key put with `ttl` in the window `put` (invocation,
/// answer) and read in the window `read`: `None` when the answer fits, else why not.
/// `status` 200 with `got`, 404, or anything else (a 503 says nothing).
fn judge(
    status: u16,
    got: Option<&str>,
    value: &str,
    put: (SystemTime, SystemTime),
    read: (SystemTime, SystemTime),
    ttl: Duration,
) -> Option<String> {
    match status {
        200 if got != Some(value) => Some(format!("read {got:?} instead of {value:?}")),
        200 if read.0 > put.1 + ttl + CLOCK_SLACK => Some("visible after its TTL".into()),
        404 if read.1 + CLOCK_SLACK < put.0 + ttl => Some("gone before its TTL".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_held_to_the_puts_window() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ms = Duration::from_millis;
        let put = (t0, t0 + ms(50));
        let ttl = ms(1500);
        let at = |a: u64, b: u64| (t0 + ms(a), t0 + ms(b));
        // Before the TTL: the value must be there.
        assert_eq!(judge(200, Some("v"), "v", put, at(100, 200), ttl), None);
        assert!(judge(404, None, "v", put, at(100, 200), ttl).unwrap_or_default().contains("gone before"));
        assert!(judge(200, Some("w"), "v", put, at(100, 200), ttl).unwrap_or_default().contains("instead of"));
        // Between t0 + ttl and t1 + ttl either answer fits.
        assert_eq!(judge(404, None, "v", put, at(1510, 1530), ttl), None);
        assert_eq!(judge(200, Some("v"), "v", put, at(1510, 1530), ttl), None);
        // After t1 + ttl: the value must be gone.
        assert_eq!(judge(404, None, "v", put, at(1600, 1700), ttl), None);
        assert!(judge(200, Some("v"), "v", put, at(1600, 1700), ttl).unwrap_or_default().contains("after its TTL"));
        // A 503 says nothing.
        assert_eq!(judge(503, None, "v", put, at(1600, 1700), ttl), None);
    }
}
