//! A value built from files and built again when they change: the TLS configurations
//! (certificates, keys, CAs) and the token file. So a rotation (cert-manager's, the
//! operator's, a Secret edited by hand) needs no restart.
//!
//! The files are read whole every [`RELOAD_EVERY`] (a few KiB) and compared by content,
//! so a change that keeps a file's length and modification time is seen too, and a
//! Kubernetes Secret volume's symlink swap is followed. The reads run on the blocking
//! pool, never on an async worker. A rebuild that fails (a half-written rotation, a key
//! that does not fit, a token file with a typo) keeps the last good value and says why,
//! once per change.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

/// How often the files are checked for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

type Build<T, E> = Box<dyn Fn() -> Result<T, E> + Send + Sync>;

/// A value built from `paths` and rebuilt when they change. Readers take the current one
/// per use (a TLS configuration per connection, the tokens per request).
pub struct Reloading<T, E = String> {
    /// What the files are, for the log lines ("TLS certificate", "auth token file").
    what: &'static str,
    paths: Vec<PathBuf>,
    build: Build<T, E>,
    current: RwLock<Arc<T>>,
    stamp: Mutex<Vec<Option<Vec<u8>>>>,
    generation: AtomicU64,
}

impl<T, E> Reloading<T, E>
where
    T: Send + Sync + 'static,
    E: std::fmt::Display + 'static,
{
    /// Builds the first value; an error here must stop the node from starting.
    pub fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, E> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, E> {
        // Stamped before building: a change during the build is built again by the next look.
        let stamp = read(&paths);
        let first = build()?;
        Ok(Arc::new(Self {
            what,
            paths,
            build: Box::new(build),
            current: RwLock::new(Arc::new(first)),
            stamp: Mutex::new(stamp),
            generation: AtomicU64::new(0),
        }))
    }

    /// The value in force.
    pub fn current(&self) -> Arc<T> {
        self.current.read().clone()
    }

    /// How many times the value was rebuilt (a user of it rebuilds what it derived from
    /// [`Reloading::current`] when this moves).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Rebuilds if the files changed since the last look (blocking: file reads); whether
    /// a new value took effect.
    pub fn reload_if_changed(&self) -> bool {
        let now = read(&self.paths);
        {
            let mut seen = self.stamp.lock();
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        let file = self.paths.first().map(|p| p.display().to_string()).unwrap_or_default();
        match (self.build)() {
            Ok(t) => {
                *self.current.write() = Arc::new(t);
                self.generation.fetch_add(1, Ordering::AcqRel);
                tracing::info!(%file, "{} reloaded", self.what);
                true
            }
            Err(e) => {
                tracing::warn!(%file, error = %e, "{} changed but does not load; keeping the one in force", self.what);
                false
            }
        }
    }

    /// Checks the files every [`RELOAD_EVERY`] until `stop`.
    pub fn watch(self: &Arc<Self>, stop: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                let look = this.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || look.reload_if_changed()).await {
                    tracing::warn!(error = %e, "looking for a change of the {} failed", this.what);
                }
            }
        });
    }
}

/// The files' contents (`None`: unreadable, which is a state of its own).
fn read(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_content_is_built_once_and_a_bad_one_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("n");
        std::fs::write(&path, "1").expect("write");
        let p = path.clone();
        let r = Reloading::new("number", vec![path.clone()], move || -> Result<u32, String> {
            std::fs::read_to_string(&p).map_err(|e| e.to_string())?.trim().parse().map_err(|e| format!("{e}"))
        })
        .expect("the first value");
        assert_eq!((*r.current(), r.generation()), (1, 0));
        assert!(!r.reload_if_changed(), "unchanged");
        std::fs::write(&path, "2").expect("write");
        assert!(r.reload_if_changed());
        assert_eq!((*r.current(), r.generation()), (2, 1));
        // The same length and, within the clock's grain, the same time: seen by content.
        std::fs::write(&path, "3").expect("write");
        assert!(r.reload_if_changed());
        std::fs::write(&path, "x").expect("write");
        assert!(!r.reload_if_changed(), "does not parse");
        assert!(!r.reload_if_changed(), "the same bad file is judged once");
        std::fs::remove_file(&path).expect("remove");
        assert!(!r.reload_if_changed());
        assert_eq!((*r.current(), r.generation()), (3, 2));
    }
}
