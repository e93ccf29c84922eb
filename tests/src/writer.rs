//! A background writer that records which writes the cluster acknowledged.
//!
//! Failover tests run one while they kill and restart nodes, then read every
//! acknowledged write back: a write answered 200 must never be lost.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinHandle;

use crate::client::NodeClient;
use crate::eventually;

/// Pause after a failed write, so a refused connection does not spin the loop.
const BACKOFF_AFTER_FAILURE: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Shared {
    acked: Vec<(String, String)>,
    failed: usize,
    last_failures: Vec<String>,
}

/// Writes `{prefix}-000000`, `{prefix}-000001`, … one at a time, each key once, with a
/// unique value, through whichever node it is currently pointed at.
pub struct Writer {
    target: Arc<Mutex<NodeClient>>,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

/// What a writer did.
#[derive(Debug)]
pub struct WriterReport {
    /// (key, value) of every write answered 200, in order.
    pub acked: Vec<(String, String)>,
    /// Writes that got an error or no answer (they may or may not have been applied).
    pub failed: usize,
    /// The last few failure reasons, for assertion messages.
    pub last_failures: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    m.lock()
}

impl Writer {
    /// Starts writing through `target`.
    pub fn start(prefix: &str, target: NodeClient) -> Writer {
        let target = Arc::new(Mutex::new(target));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (t, s, sh, prefix) = (target.clone(), stop.clone(), shared.clone(), prefix.to_string());
        let nonce: u32 = rand::rng().random();
        let task = tokio::spawn(async move {
            let mut i = 0u64;
            while !s.load(Ordering::SeqCst) {
                let key = format!("{prefix}-{i:06}");
                let value = format!("{key}@{nonce:08x}");
                let node = lock(&t).clone();
                match node.try_put(&key, &value).await {
                    Ok(_) => lock(&sh).acked.push((key, value)),
                    Err(e) => {
                        {
                            let mut g = lock(&sh);
                            g.failed += 1;
                            g.last_failures.push(format!("{key} via node {}: {e}", node.id()));
                            if g.last_failures.len() > 5 {
                                g.last_failures.remove(0);
                            }
                        }
                        tokio::time::sleep(BACKOFF_AFTER_FAILURE).await;
                    }
                }
                i += 1;
            }
        });
        Writer { target, stop, shared, task }
    }

    /// Sends the following writes through `node`.
    pub fn send_to(&self, node: NodeClient) {
        *lock(&self.target) = node;
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> usize {
        lock(&self.shared).acked.len()
    }

    /// Waits until `n` more writes than now have been acknowledged: the cluster is
    /// accepting writes through the writer's node.
    pub async fn wait_for_progress(&self, n: usize, timeout: Duration) {
        let target = self.acked() + n;
        eventually(&format!("{n} more acknowledged writes"), timeout, || async move {
            let g = lock(&self.shared);
            if g.acked.len() >= target {
                Ok(())
            } else {
                Err(format!("{} acked, {} failed, last failures {:?}", g.acked.len(), g.failed, g.last_failures))
            }
        })
        .await
    }

    /// Stops after the write in flight and reports.
    pub async fn finish(self) -> WriterReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the writer task does not panic");
        let g = std::mem::take(&mut *lock(&self.shared));
        WriterReport { acked: g.acked, failed: g.failed, last_failures: g.last_failures }
    }
}
