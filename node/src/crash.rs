//! Named crash points: places right after a durable step (a split's new shard created,
//! a merge chunk absorbed, `ring.json` rewritten, a WAL segment rotated...) where the
//! crash-point suite makes the process abort, to prove that a restart on the same data
//! finishes or rolls forward whatever the step was part of.
//!
//! Built on the `fail` crate (TiKV's failpoints) and compiled in only with the
//! `failpoints` feature; without it [`crash_point!`] is nothing. With it, a point armed
//! through the `FAILPOINTS` environment variable (`FAILPOINTS=merge-absorbed=return`,
//! or `1*return` to fire once, `off` by default) prints `crash point NAME` on stderr and
//! aborts, as abruptly as `kill -9`: no destructor, no flush, no leadership handoff.

/// Every crash point, in the order an operation reaches them. The suite drives each.
pub const POINTS: &[&str] = &[
    "split-applied",
    "split-created",
    "split-snapshot-written",
    "split-recorded",
    "split-sweep",
    "merge-frozen",
    "merge-absorbed",
    "merge-done",
    "retire-recorded",
    "retire-forgotten",
    "retire-removed",
    "replica-hosted",
    "replica-added",
    "replica-removed",
    "snapshot-written",
    "snapshot-installed",
    "wal-rotated",
    "wal-compacted",
    "leader-transfer",
];

/// Aborts the process if crash point `$name` is armed.
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {{
        #[cfg(feature = "failpoints")]
        {
            debug_assert!($crate::crash::POINTS.contains(&$name), "crash point {} is not listed", $name);
            if ::fail::eval($name, |_| ()).is_some() {
                $crate::crash::abort($name);
            }
        }
    }};
}

/// Reads `FAILPOINTS` once at start (only with the `failpoints` feature).
pub fn arm_from_env() {
    #[cfg(feature = "failpoints")]
    if std::env::var_os("FAILPOINTS").is_some() {
        std::mem::forget(fail::FailScenario::setup());
        eprintln!("crash points armed: {}", std::env::var("FAILPOINTS").unwrap_or_default());
    }
}

/// Aborts at crash point `name`, saying so first.
#[cold]
pub fn abort(name: &str) -> ! {
    eprintln!("crash point {name}: aborting");
    std::process::abort()
}

/// How long the test-only delay point `name` is armed to wait (`FAILPOINTS=name=return(MS)`);
/// `None` unless armed (and always without the `failpoints` feature). The multi-process
/// tests use `internal-serve-delay` to keep a restarted node's internal port shut for a
/// while, as a Kubernetes pod with a new address is unreachable until its peers learn it.
pub fn delay(name: &str) -> Option<std::time::Duration> {
    #[cfg(feature = "failpoints")]
    if let Some(ms) = fail::eval(name, |arg| arg.and_then(|a| a.parse::<u64>().ok())).flatten() {
        eprintln!("delay point {name}: {ms} ms");
        return Some(std::time::Duration::from_millis(ms));
    }
    let _ = name;
    None
}
