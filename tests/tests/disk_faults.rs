//! Disk faults on real node processes (issue 14, "disks"): a full disk refuses writes
//! with 507 and keeps serving reads, and the node takes writes again by itself once space
//! returns; a follower's full disk pauses only its own replication, and it catches up
//! afterwards; a failed fsync fences the node (exit 75) and a restart recovers it from its
//! WAL; slow fsyncs slow writes down but keep them linearizable; a WAL write that a full
//! disk refused waits for space and goes on, with no restart, and a node whose log waits
//! so still stops on SIGTERM, closing its WAL.
//!
//! The full-disk tests give each node's data directory a tmpfs of its own, which needs
//! root: without it each prints `SKIPPED <test>: <reason>` and returns. The others inject
//! faults through the test-only control file `RINGKV_WAL_FAULTS` names (the node's
//! `failpoints` feature). Every test prints what it measured as `FIGURE <test>: …` lines
//! on stderr (`--no-capture` shows them for passing tests too).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use ringkv_node::wal::fs::FAULTS_ENV;
use ringkv_tests::cluster::tmpfs_available;
use ringkv_tests::load::Load;
use ringkv_tests::{eventually, key_in_shard, key_path, Cluster, NodeClient, Writer};

const NODES: usize = 3;
const SHARDS: u32 = 2;

/// Each node's data directory, for the full-disk tests.
const TMPFS_BYTES: u64 = 96 << 20;
/// `--disk-reserve-bytes` for the full-disk tests.
const RESERVE: u64 = 16 << 20;
/// What a filled disk keeps free: under half the reserve, so replication stops too.
const LEFT_FREE: u64 = RESERVE / 4;

/// Writes are refused within this of a disk filling up (the guard looks every 200 ms).
const REFUSE_BOUND: Duration = Duration::from_secs(3);
/// Writes are taken again within this of space returning.
const RECOVER_BOUND: Duration = Duration::from_secs(5);
/// A node whose fsync failed exits within this.
const FENCE_BOUND: Duration = Duration::from_secs(10);
/// A lagging replica catches up within this once it can.
const CATCH_UP_BOUND: Duration = Duration::from_secs(30);

/// A cluster whose nodes each have a tmpfs data directory and the test's reserve, or
/// `None` after printing why this machine cannot make one.
async fn full_disk_cluster(test: &str) -> Option<Cluster> {
    if let Err(why) = tmpfs_available() {
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    let c = Cluster::builder(NODES)
        .shards(SHARDS)
        .tmpfs_data_dirs(TMPFS_BYTES)
        .flag("--disk-reserve-bytes", &RESERVE.to_string())
        .flag("--wal-segment-bytes", &(1u64 << 20).to_string())
        .start()
        .await;
    Some(c)
}

/// A cluster whose node `id` injects WAL faults as the file `controls.join("node-{id}")` says.
async fn fault_cluster(controls: &Path) -> Cluster {
    let mut b = Cluster::builder(NODES).shards(SHARDS);
    for id in 1..=NODES as u64 {
        let control = control_file(controls, id);
        b = b.node_env(id, FAULTS_ENV, &control.display().to_string());
    }
    b.start().await
}

fn control_file(controls: &Path, id: u64) -> PathBuf {
    controls.join(format!("node-{id}"))
}

/// Writes `fault` into node `id`'s control file (`""`: no fault).
fn inject(controls: &Path, id: u64, fault: &str) {
    std::fs::write(control_file(controls, id), fault).expect("write the control file");
}

/// Bytes available on the file system of `dir`, as `df` reports them.
fn available(dir: &Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().expect("df runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("df said {text:?}"))
}

/// Fills the file system of `dir` with a filler file until `leave` bytes are free, and
/// returns the filler's path.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler.bin");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("create the filler");
    let chunk = vec![0xa5u8; 1 << 20];
    loop {
        let free = available(dir);
        if free <= leave {
            return path;
        }
        let n = usize::try_from((free - leave).min(chunk.len() as u64)).expect("small");
        f.write_all(&chunk[..n]).expect("write the filler");
        f.sync_all().expect("sync the filler");
    }
}

/// PUT `value` at `key` through `node`: the status, the JSON body (Null if none) and the
/// Retry-After header.
async fn put(
    node: &NodeClient,
    key: &str,
    value: &str,
) -> Result<(StatusCode, serde_json::Value, Option<String>), String> {
    let resp =
        node.request(Method::PUT, &key_path(key)).body(value.to_string()).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, body, retry))
}

/// One key in each shard.
fn probes(prefix: &str) -> Vec<String> {
    (0..SHARDS).map(|s| key_in_shard(prefix, s, SHARDS)).collect()
}

/// Node `id`'s metric `name` (no labels).
async fn metric(c: &Cluster, id: u64, name: &str) -> Option<f64> {
    c.node(id).metrics().await.value(name, &[])
}

/// Moves the leadership of every shard off node `off`.
async fn move_leaders_off(c: &Cluster, off: u64) {
    let others: Vec<u64> = c.ids().into_iter().filter(|id| *id != off).collect();
    eventually(&format!("no shard led by node {off}"), Duration::from_secs(30), || {
        let others = others.clone();
        async move {
            let leaders = c.wait_for_leaders(&c.ids()).await;
            let led: Vec<u32> = leaders.iter().filter(|(_, l)| **l == off).map(|(s, _)| *s).collect();
            if led.is_empty() {
                return Ok(());
            }
            for shard in &led {
                let url = format!("http://{}/internal/admin/shards/{shard}/leader/{}", c.internal_addr(off), others[0]);
                let _ = c.http().post(url).send().await;
            }
            Err(format!("node {off} still leads shards {led:?}"))
        }
    })
    .await
}

/// Shard → the commit index its leader reports now.
async fn leaders_commit(c: &Cluster) -> BTreeMap<u32, u64> {
    let leaders = c.wait_for_leaders(&c.running()).await;
    let mut out = BTreeMap::new();
    for (shard, leader) in leaders {
        out.insert(shard, c.node(leader).cluster_view().await.shard(shard).commit_index);
    }
    out
}

/// Waits until node `id` has applied, in every shard, what the leaders had committed when
/// called; returns how long that took.
async fn wait_caught_up(c: &Cluster, id: u64) -> Duration {
    let target = leaders_commit(c).await;
    let started = Instant::now();
    eventually(&format!("node {id} to catch up"), CATCH_UP_BOUND, || {
        let target = target.clone();
        async move {
            let view = c.node(id).try_cluster_view().await?;
            for (shard, commit) in &target {
                let applied = view.shard(*shard).applied_index;
                if applied < *commit {
                    return Err(format!("shard {shard}: applied {applied} < {commit}"));
                }
            }
            Ok(())
        }
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_writes_with_507_keeps_reads_and_recovers_without_a_restart() {
    const TEST: &str = "a_full_disk_refuses_writes_with_507_keeps_reads_and_recovers_without_a_restart";
    let Some(c) = full_disk_cluster(TEST).await else { return };
    let ids = c.ids();
    let before: Vec<(String, String)> = (0..20).map(|i| (format!("before-{i}"), format!("value-{i}"))).collect();
    for (k, v) in &before {
        c.node(1).put(k, v).await;
    }
    let pids: Vec<Option<u32>> = ids.iter().map(|id| c.pid(*id)).collect();
    let writer = Writer::start("full", c.node(1));
    writer.wait_for_progress(20, Duration::from_secs(20)).await;

    let fill_started = Instant::now();
    let fillers: Vec<PathBuf> = ids.iter().map(|id| fill(&c.data_dir(*id), LEFT_FREE)).collect();
    let filled = Instant::now();
    let probes = probes("probe");
    let refused_after = eventually("every node to refuse writes to every shard with 507", REFUSE_BOUND, || {
        let (ids, probes) = (ids.clone(), probes.clone());
        let c = &c;
        async move {
            for id in &ids {
                // The guard of every node, leader of a shard or not, has seen its disk fill.
                if metric(c, *id, "ringkv_disk_low").await != Some(1.0) {
                    return Err(format!("node {id}'s guard has not tripped yet"));
                }
                for key in &probes {
                    let (status, body, retry) = put(&c.node(*id), key, "refused?").await?;
                    if status != StatusCode::INSUFFICIENT_STORAGE {
                        return Err(format!("PUT {key} via node {id}: {status} {body}"));
                    }
                    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
                    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
                    assert!(retry.is_some(), "a 507 carries Retry-After");
                }
            }
            Ok(filled.elapsed())
        }
    })
    .await;

    // Reads keep working, at both consistencies, through every node; and every node stays ready.
    let wrong = c.read_back(&before, &ids).await;
    assert!(wrong.is_empty(), "linearizable reads on a full disk: {wrong:?}");
    let wrong = c.read_back_with(&before, &ids, "consistency=serializable").await;
    assert!(wrong.is_empty(), "serializable reads on a full disk: {wrong:?}");
    for id in &ids {
        assert!(c.node(*id).is_ready().await, "node {id} stays ready with a full disk");
    }

    for f in &fillers {
        std::fs::remove_file(f).expect("remove the filler");
    }
    let freed = Instant::now();
    let recovered_after = eventually("writes to every shard through every node again", RECOVER_BOUND, || {
        let (ids, probes) = (ids.clone(), probes.clone());
        let c = &c;
        async move {
            for id in &ids {
                for key in &probes {
                    let (status, body, _) = put(&c.node(*id), key, "accepted").await?;
                    if status != StatusCode::OK {
                        return Err(format!("PUT {key} via node {id}: {status} {body}"));
                    }
                }
            }
            Ok(freed.elapsed())
        }
    })
    .await;
    let now: Vec<Option<u32>> = ids.iter().map(|id| c.pid(*id)).collect();
    assert_eq!(now, pids, "no node restarted");
    writer.wait_for_progress(20, Duration::from_secs(20)).await;
    let report = writer.finish().await;
    let mut acked = report.acked.clone();
    acked.extend(before.iter().cloned());
    let wrong = c.read_back(&acked, &ids).await;
    assert!(wrong.is_empty(), "acknowledged writes lost: {wrong:?}");
    for id in &ids {
        let free = metric(&c, *id, "ringkv_disk_available_bytes").await.unwrap_or_default();
        assert!(free > RESERVE as f64, "node {id} reports {free} bytes free");
        assert_eq!(metric(&c, *id, "ringkv_disk_low").await, Some(0.0), "node {id}");
    }
    eprintln!(
        "FIGURE {TEST}: filled {NODES} nodes' disks to {LEFT_FREE} bytes free in {:?}; every write through every node \
         refused with 507 {:?} after the fill ended (bound {REFUSE_BOUND:?}); reads and /readyz fine meanwhile",
        filled - fill_started,
        refused_after
    );
    eprintln!(
        "FIGURE {TEST}: writes taken again {:?} after the fillers were deleted (bound {RECOVER_BOUND:?}), same pids; \
         {} acknowledged writes read back, {} refused or failed",
        recovered_after,
        acked.len(),
        report.failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_followers_full_disk_pauses_only_its_replication_and_it_catches_up() {
    const TEST: &str = "a_followers_full_disk_pauses_only_its_replication_and_it_catches_up";
    let Some(c) = full_disk_cluster(TEST).await else { return };
    let follower = NODES as u64;
    move_leaders_off(&c, follower).await;
    let pid = c.pid(follower);
    let writer = Writer::start("follower", c.node(1));
    writer.wait_for_progress(20, Duration::from_secs(20)).await;

    let filler = fill(&c.data_dir(follower), LEFT_FREE);
    eventually("the follower's guard to trip", REFUSE_BOUND, || async {
        match metric(&c, follower, "ringkv_disk_low").await {
            Some(1.0) => Ok(()),
            other => Err(format!("ringkv_disk_low {other:?}")),
        }
    })
    .await;
    let acked_at_fill = writer.acked();
    writer.wait_for_progress(200, Duration::from_secs(30)).await;
    let lagging = eventually("the follower to fall behind", Duration::from_secs(10), || async {
        let commit = leaders_commit(&c).await;
        let view = c.node(follower).try_cluster_view().await?;
        let behind: Vec<(u32, u64, u64)> = commit
            .iter()
            .map(|(s, ci)| (*s, view.shard(*s).last_log_index, *ci))
            .filter(|(_, last, ci)| last < ci)
            .collect();
        if behind.is_empty() {
            Err(format!("not behind: {commit:?}"))
        } else {
            Ok(behind)
        }
    })
    .await;
    // Reads through the full node still work (they go to the leaders).
    let sample: Vec<(String, String)> = writer_sample(&c, &writer).await;
    let wrong = c.read_back(&sample, &[follower]).await;
    assert!(wrong.is_empty(), "reads through the full follower: {wrong:?}");
    let written_while_full = writer.acked() - acked_at_fill;

    std::fs::remove_file(&filler).expect("remove the filler");
    let report = writer.finish().await;
    let caught_up = wait_caught_up(&c, follower).await;
    assert_eq!(c.pid(follower), pid, "the follower did not restart");
    let wrong = c.read_back_with(&report.acked, &[follower], "consistency=serializable").await;
    assert!(wrong.is_empty(), "the follower's own replica after catching up: {wrong:?}");
    let wrong = c.read_back(&report.acked, &c.ids()).await;
    assert!(wrong.is_empty(), "acknowledged writes lost: {wrong:?}");
    eprintln!(
        "FIGURE {TEST}: {written_while_full} writes acknowledged through the other two while node {follower}'s disk was \
         full (its log behind in (shard, last index, commit): {lagging:?}); it caught up {caught_up:?} after space \
         returned, same pid"
    );
}

/// A few of the writes `writer` has had acknowledged so far, read back from the leaders:
/// the pairs as the cluster holds them (each key is written once).
async fn writer_sample(c: &Cluster, writer: &Writer) -> Vec<(String, String)> {
    let n = writer.acked();
    let mut out = Vec::new();
    for i in [0, n / 2, n.saturating_sub(1)] {
        let key = format!("follower-{i:06}");
        if let Some(v) = c.node(1).get(&key).await {
            out.push((key, v));
        }
    }
    assert!(!out.is_empty(), "no acknowledged write found");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_fsync_fences_the_node_and_a_restart_recovers_it() {
    const TEST: &str = "a_failed_fsync_fences_the_node_and_a_restart_recovers_it";
    let controls = tempfile::tempdir().expect("tempdir");
    let c = fault_cluster(controls.path()).await;
    let victim = c.wait_for_leaders(&c.ids()).await[&0];
    let via = c.ids().into_iter().find(|id| *id != victim).expect("another node");
    let writer = Writer::start("fsync", c.node(via));
    writer.wait_for_progress(50, Duration::from_secs(20)).await;

    inject(controls.path(), victim, "fsync-error");
    let injected = Instant::now();
    let status = eventually(&format!("node {victim} to fence itself"), FENCE_BOUND, || async {
        c.exited(victim).ok_or_else(|| "still running".to_string())
    })
    .await;
    let fenced_after = injected.elapsed();
    assert_eq!(status.code(), Some(75), "a fenced node exits with 75: {status}");
    let log = c.log(victim);
    assert!(log.contains("fencing this node"), "the log says why");

    let acked_at_fence = writer.acked();
    writer.wait_for_progress(100, Duration::from_secs(30)).await;
    let served_meanwhile = writer.acked() - acked_at_fence;

    inject(controls.path(), victim, "");
    let restarted = Instant::now();
    c.restart(victim);
    c.wait_ready().await;
    let ready_after = restarted.elapsed();
    writer.wait_for_progress(50, Duration::from_secs(30)).await;
    let report = writer.finish().await;
    let wrong = c.read_back(&report.acked, &c.ids()).await;
    assert!(wrong.is_empty(), "acknowledged writes lost: {wrong:?}");
    let caught_up = wait_caught_up(&c, victim).await;
    let wrong = c.read_back_with(&report.acked, &[victim], "consistency=serializable").await;
    assert!(wrong.is_empty(), "the restarted node's own replica: {wrong:?}");
    eprintln!(
        "FIGURE {TEST}: node {victim} (leader of shard 0) fenced itself {fenced_after:?} after its fsync failed \
         (exit 75, bound {FENCE_BOUND:?}); the other two acknowledged {served_meanwhile} writes meanwhile"
    );
    eprintln!(
        "FIGURE {TEST}: restarted, ready in {ready_after:?}, caught up {caught_up:?} later; {} acknowledged writes \
         read back ({} failed)",
        report.acked.len(),
        report.failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_fsyncs_slow_writes_down_and_keep_them_linearizable() {
    const TEST: &str = "slow_fsyncs_slow_writes_down_and_keep_them_linearizable";
    const SLOW: Duration = Duration::from_millis(300);
    let controls = tempfile::tempdir().expect("tempdir");
    let c = fault_cluster(controls.path()).await;
    let victim = c.wait_for_leaders(&c.ids()).await[&0];
    let urls: Vec<String> = c.ids().iter().map(|id| c.url(*id)).collect();
    let load = Load::start_on("slow-", urls, 4, 2, 4);
    let key = key_in_shard("slow-probe", 0, SHARDS);
    let node = c.node(victim);

    // (sum of seconds, count, count of those under 250 ms) of the node's fsyncs.
    let fsyncs = |m: &ringkv_tests::Metrics| {
        (
            m.sum("ringkv_wal_fsync_duration_seconds_sum"),
            m.sum("ringkv_wal_fsync_duration_seconds_count"),
            m.value("ringkv_wal_fsync_duration_seconds_bucket", &[("le", "0.25")]).unwrap_or_default(),
        )
    };
    let fast = time_puts(&node, &key, 5).await;
    let before = fsyncs(&node.metrics().await);
    let ops_before = load.ops();
    inject(controls.path(), victim, &format!("slow-fsync {}", SLOW.as_millis()));
    let slow = time_puts(&node, &key, 5).await;
    let after = fsyncs(&node.metrics().await);
    inject(controls.path(), victim, "");
    let ops_slow = load.ops() - ops_before;
    let again = time_puts(&node, &key, 5).await;
    let report = load.finish().await;

    let mean_fsync = (after.0 - before.0) / (after.1 - before.1).max(1.0);
    let slow_fsyncs = (after.1 - before.1) - (after.2 - before.2);
    assert!(slow_fsyncs >= 5.0, "each slowed PUT waited for a slow fsync: {slow_fsyncs} fsyncs over 250 ms");
    eprintln!(
        "FIGURE {TEST}: node {victim}'s fsyncs took {:.0} ms on average ({slow_fsyncs} over 250 ms) with `slow-fsync {}`; a PUT to its shard took \
         {fast:?} (median) before, {slow:?} while slow, {again:?} after; the load did {ops_slow} ops meanwhile, \
         {} ops in all, linearizable",
        mean_fsync * 1000.0,
        SLOW.as_millis(),
        report.ops
    );
}

/// Median time of `n` PUTs of `key` through `node`, each of which must succeed.
async fn time_puts(node: &NodeClient, key: &str, n: usize) -> Duration {
    let mut times = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        node.try_put(key, &format!("v{i}")).await.unwrap_or_else(|e| panic!("PUT {key}: {e}"));
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wal_write_a_full_disk_refused_waits_for_space_and_goes_on_without_a_restart() {
    const TEST: &str = "a_wal_write_a_full_disk_refused_waits_for_space_and_goes_on_without_a_restart";
    let controls = tempfile::tempdir().expect("tempdir");
    let c = fault_cluster(controls.path()).await;
    let victim = c.wait_for_leaders(&c.ids()).await[&0];
    let via = c.ids().into_iter().find(|id| *id != victim).expect("another node");
    let pid = c.pid(victim);
    let writer = Writer::start("enospc", c.node(via));
    writer.wait_for_progress(50, Duration::from_secs(20)).await;

    inject(controls.path(), victim, "write-enospc");
    let acked_at_fault = writer.acked();
    writer.wait_for_progress(100, Duration::from_secs(30)).await;
    let served_meanwhile = writer.acked() - acked_at_fault;
    assert!(c.exited(victim).is_none(), "a full disk does not stop the node");
    assert!(c.log(victim).contains("waits for space"), "the node's log writes did hit the full disk");

    inject(controls.path(), victim, "");
    let report = writer.finish().await;
    let caught_up = wait_caught_up(&c, victim).await;
    assert_eq!(c.pid(victim), pid, "no restart");
    let wrong = c.read_back(&report.acked, &c.ids()).await;
    assert!(wrong.is_empty(), "acknowledged writes lost: {wrong:?}");
    let wrong = c.read_back_with(&report.acked, &[victim], "consistency=serializable").await;
    assert!(wrong.is_empty(), "the node's own replica: {wrong:?}");
    eprintln!(
        "FIGURE {TEST}: while node {victim}'s WAL writes failed with ENOSPC the others acknowledged {served_meanwhile} \
         writes; once they succeeded again it caught up in {caught_up:?}, same pid; {} acknowledged writes read back",
        report.acked.len()
    );
}

/// A node stopped (SIGTERM) while its disk stays full exits within this.
const STOP_BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_log_waits_for_space_still_stops_on_sigterm_and_closes_its_wal() {
    const TEST: &str = "a_node_whose_log_waits_for_space_still_stops_on_sigterm_and_closes_its_wal";
    let controls = tempfile::tempdir().expect("tempdir");
    let c = fault_cluster(controls.path()).await;
    let victim = c.wait_for_leaders(&c.ids()).await[&0];
    let via = c.ids().into_iter().find(|id| *id != victim).expect("another node");
    let writer = Writer::start("stuck", c.node(via));
    writer.wait_for_progress(50, Duration::from_secs(20)).await;

    inject(controls.path(), victim, "write-enospc");
    eventually(&format!("node {victim}'s log writes to wait for space"), Duration::from_secs(10), || async {
        if c.log(victim).contains("waits for space") {
            Ok(())
        } else {
            Err("no log write has hit the full disk yet".to_string())
        }
    })
    .await;

    // The disk stays full: the Raft groups' shutdown must not wait for space forever.
    let stopping = Instant::now();
    let status = c.stop(victim).await;
    let stopped_after = stopping.elapsed();
    assert!(stopped_after < STOP_BOUND, "node {victim} took {stopped_after:?} to stop (bound {STOP_BOUND:?})");
    assert_eq!(status.code(), Some(0), "a full disk is not a fence: {status}");
    let log = c.log(victim);
    assert!(log.contains("wal: writer stopped"), "the WAL was closed");
    assert!(log.contains("node stopped"), "the shutdown ran to its end");

    // Space returns: the node starts from what its WAL holds and nothing acknowledged is lost.
    inject(controls.path(), victim, "");
    c.restart(victim);
    c.wait_ready().await;
    writer.wait_for_progress(50, Duration::from_secs(30)).await;
    let report = writer.finish().await;
    let wrong = c.read_back(&report.acked, &c.ids()).await;
    assert!(wrong.is_empty(), "acknowledged writes lost: {wrong:?}");
    eprintln!(
        "FIGURE {TEST}: node {victim}, its log writes waiting for space, stopped {stopped_after:?} after SIGTERM \
         (bound {STOP_BOUND:?}, exit 0, WAL closed); restarted once space returned; {} acknowledged writes read back",
        report.acked.len()
    );
}
