//! Seeded fault schedules against a five-node cluster, each node its own host in a
//! network namespace, checked the way Jepsen checks a store (issue 14).
//!
//! A [`Schedule`] is a list of faults, drawn from a seed: which fault, which nodes, how
//! long it holds. [`run`] starts the cluster and, while the schedule plays, keeps up
//! - a recorded mixed load (puts, deletes, CAS, linearizable reads) on a few keys through
//!   every node ([`crate::load`]),
//! - a watch on each of those keys through each node ([`crate::watcher`]),
//! - keys written with a TTL and read before and after it runs out ([`crate::ttl`]),
//! - a writer of unique keys whose acknowledged writes are all read back at the end
//!   ([`crate::writer`]),
//! - and, for a schedule with `ring`, the ring changing underneath: 4 → 8 → 16 shards,
//!   a node drained and added back, then 16 → 4 (the planner's own driver).
//!
//! After each fault heals (partitions removed, killed nodes restarted, paused nodes
//! continued) it measures how long until every node is ready and all agree on one leader
//! per shard; longer than [`RECOVERY_BOUND`] is a violation. At the end it checks the
//! history for linearizability, every acknowledged write for being readable, every watch
//! stream for gaps, every TTL read against its window, and reports [`RunReport`].
//!
//! The seed fixes the schedule (faults, targets, holds); it cannot fix thread timing, so
//! a rerun of a seed replays the same faults, not the same interleaving.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use ringkv_node::wal::fs::FAULTS_ENV;

use crate::load::Load;
use crate::ttl::TtlProbe;
use crate::watcher::Watches;
use crate::{Cluster, Network, Writer};

/// Nodes in every schedule: five, so that bridges and majority rings exist.
pub const NODES: usize = 5;
/// Shards at the start (and at the end of a ring schedule).
pub const SHARDS: u32 = 4;
/// After a fault heals, every node is ready with agreed leaders within this, or the run
/// records a violation.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(20);
/// TTL of the probe's keys.
const TTL: Duration = Duration::from_millis(1500);

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The leader of a random shard cut off from every other node.
    IsolateLeader,
    /// One or two nodes cut off, together, from the other three.
    Minority,
    /// Jepsen's bridge: two sides of two nodes each, and one node that reaches both.
    Bridge,
    /// Jepsen's majorities ring: in a shuffled ring, each node reaches only its two
    /// neighbours (each sees a majority; no two see the same one).
    MajoritiesRing,
    /// One node's packets to another dropped; the other way still delivers.
    OneWay,
    /// 10–40 % of one node's packets dropped at random, each way.
    Loss,
    /// Delay, jitter and reordering on one node's link (`tc netem`; where the kernel has
    /// no netem this runs as [`Fault::Loss`] and says so).
    Delay,
    /// SIGKILL of a node (a shard leader half the time), restarted when the fault heals.
    Kill,
    /// SIGSTOP of a node (a shard leader half the time), SIGCONT when the fault heals.
    Pause,
    /// A node's disk (its own tmpfs) filled to 4 MiB free, freed when the fault heals.
    DiskFull,
    /// The next fsync of a node's WAL fails (the test-only fault file system): the node
    /// must fence itself (exit 75); the heal restarts it as a supervisor would.
    FsyncError,
    /// Every fsync of a node's WAL takes 100–400 ms more.
    SlowFsync,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 12] = [
        Fault::IsolateLeader,
        Fault::Minority,
        Fault::Bridge,
        Fault::MajoritiesRing,
        Fault::OneWay,
        Fault::Loss,
        Fault::Delay,
        Fault::Kill,
        Fault::Pause,
        Fault::DiskFull,
        Fault::FsyncError,
        Fault::SlowFsync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::IsolateLeader => "isolate-leader",
            Fault::Minority => "minority",
            Fault::Bridge => "bridge",
            Fault::MajoritiesRing => "majorities-ring",
            Fault::OneWay => "one-way",
            Fault::Loss => "loss",
            Fault::Delay => "delay",
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::DiskFull => "disk-full",
            Fault::FsyncError => "fsync-error",
            Fault::SlowFsync => "slow-fsync",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fault of a schedule.
#[derive(Clone, Debug)]
pub struct Step {
    pub fault: Fault,
    /// How long the fault holds before it heals.
    pub hold: Duration,
    /// How long the schedule waits after the cluster recovered, before the next fault.
    pub rest: Duration,
    /// Seeds the choice of nodes (drawn when the step runs: "a leader" needs the cluster).
    pub pick: u64,
}

/// A seeded list of faults.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub seed: u64,
    pub steps: Vec<Step>,
    /// Whether the ring changes (splits, merges, a drain and an add) under the faults.
    pub ring: bool,
}

impl Schedule {
    /// Every fault of `kinds` once, in an order and with holds drawn from `seed`.
    pub fn covering(seed: u64, kinds: &[Fault], ring: bool) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut kinds = kinds.to_vec();
        kinds.shuffle(&mut rng);
        let steps = kinds.into_iter().map(|fault| step(&mut rng, fault)).collect();
        Schedule { seed, steps, ring }
    }

    /// `n` faults drawn from `kinds` by `seed`.
    pub fn random(seed: u64, n: usize, kinds: &[Fault], ring: bool) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let steps = (0..n)
            .map(|_| {
                let fault = *kinds.choose(&mut rng).expect("some fault kind");
                step(&mut rng, fault)
            })
            .collect();
        Schedule { seed, steps, ring }
    }

    /// `seed 7 [ring]: kill 2.1s, bridge 3.4s, …`
    pub fn describe(&self) -> String {
        let steps: Vec<String> =
            self.steps.iter().map(|s| format!("{} {:.1}s", s.fault, s.hold.as_secs_f64())).collect();
        format!("seed {}{}: {}", self.seed, if self.ring { " [ring]" } else { "" }, steps.join(", "))
    }
}

fn step(rng: &mut StdRng, fault: Fault) -> Step {
    Step {
        fault,
        hold: Duration::from_millis(rng.random_range(1500..=4500)),
        rest: Duration::from_millis(rng.random_range(300..=1500)),
        pick: rng.random(),
    }
}

/// What one schedule's run showed.
#[derive(Debug, Default)]
pub struct RunReport {
    pub seed: u64,
    /// Client calls: load operations, unique writes acknowledged, TTL keys and reads,
    /// watch events delivered.
    pub operations: usize,
    /// Linearizability, error answers other than 404/409/503/507, TTL windows, watch
    /// order and phantom values, recovery past its bound, a ring that did not converge.
    pub violations: Vec<String>,
    /// Acknowledged unique writes not read back at the end.
    pub lost_writes: Vec<String>,
    /// Acknowledged writes a watch stream skipped with no resync.
    pub watch_gaps: Vec<String>,
    /// Time from each heal until every node was ready with agreed leaders, by fault.
    pub recovery: BTreeMap<Fault, Vec<Duration>>,
    /// Notes (a fault run as another one, why).
    pub notes: Vec<String>,
    /// Counts for the summary: (what, how many).
    pub counts: Vec<(&'static str, usize)>,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.lost_writes.is_empty() && self.watch_gaps.is_empty()
    }

    /// Multi-line human summary: counts, recoveries, every problem.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "seed {}: operations {}, violations {}, lost writes {}, watch gaps {}\n",
            self.seed,
            self.operations,
            self.violations.len(),
            self.lost_writes.len(),
            self.watch_gaps.len()
        );
        let counts: Vec<String> = self.counts.iter().map(|(w, n)| format!("{w} {n}")).collect();
        out.push_str(&format!("  counts: {}\n", counts.join(", ")));
        for (fault, times) in &self.recovery {
            let t: Vec<String> = times.iter().map(|d| format!("{:.2}s", d.as_secs_f64())).collect();
            out.push_str(&format!("  recovery after {fault}: {}\n", t.join(" ")));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        for (what, list) in [("violation", &self.violations), ("lost", &self.lost_writes), ("gap", &self.watch_gaps)] {
            for v in list.iter().take(20) {
                out.push_str(&format!("  {what}: {v}\n"));
            }
            if list.len() > 20 {
                out.push_str(&format!("  … {} more {what}s\n", list.len() - 20));
            }
        }
        out
    }
}

/// Whether schedules can run here (root, `ip`, `iptables`); the reason when not.
pub fn available() -> Result<(), String> {
    Network::available()
}

/// Runs `schedule` on a fresh cluster in `net` (five hosts) and checks it.
pub async fn run(schedule: &Schedule, net: Network) -> RunReport {
    let netem = net.netem_available();
    let disks = crate::cluster::tmpfs_available();
    let controls = tempfile::Builder::new().prefix("ringkv-wal-faults-").tempdir().expect("a temporary directory");
    let mut builder =
        Cluster::builder(NODES).shards(SHARDS).network(net).flag("--disk-reserve-bytes", &RESERVE.to_string());
    if disks.is_ok() {
        builder = builder.tmpfs_data_dirs(DISK_BYTES);
    }
    for id in 1..=u64::try_from(NODES).expect("small") {
        builder = builder.node_env(id, FAULTS_ENV, &control_file(controls.path(), id).display().to_string());
    }
    let c = builder.start().await;
    let env = Env { netem: netem.is_ok(), disks: disks.is_ok(), controls: controls.path().to_path_buf() };
    let mut report = RunReport { seed: schedule.seed, ..RunReport::default() };
    if let (Err(why), true) = (&netem, schedule.steps.iter().any(|s| s.fault == Fault::Delay)) {
        report.notes.push(format!("delay ran as loss: {why}"));
    }
    if let (Err(why), true) = (&disks, schedule.steps.iter().any(|s| s.fault == Fault::DiskFull)) {
        report.notes.push(format!("SKIPPED disk-full (ran as slow-fsync): no tmpfs for the data directories: {why}"));
    }
    let urls: Vec<String> = c.ids().iter().map(|id| c.url(*id)).collect();
    let mut load = Load::start_on("nem-", urls.clone(), 6, 4, 10);
    let watches = Watches::start(&urls, &load.keys(), load.history()).await;
    let ttl = TtlProbe::start(urls.clone(), "ttl-", TTL, Duration::from_millis(250));
    let writer = Writer::start("acked", c.node(1));
    let ring_stop = Arc::new(AtomicBool::new(false));
    let ring = schedule.ring.then(|| tokio::spawn(change_ring(c.driver(), ring_stop.clone())));

    // A ring schedule plays its faults again (three times at most) while the ring is
    // still changing, so that splits, moves and merges all happen under faults.
    let rounds = if schedule.ring { 3 } else { 1 };
    let plays = schedule.steps.iter().cycle().take(schedule.steps.len() * rounds).enumerate();
    for (i, s) in plays {
        if i >= schedule.steps.len() && ring.as_ref().is_none_or(|r| r.is_finished()) {
            break;
        }
        let mut rng = StdRng::seed_from_u64(s.pick.wrapping_add(i as u64));
        let applied = apply(&c, s.fault, &mut rng, &env).await;
        eprintln!("nemesis seed {} step {i}: {}", schedule.seed, applied.describe);
        tokio::time::sleep(s.hold).await;
        let healed = Instant::now();
        for v in heal(&c, &applied, &env).await {
            report.violations.push(format!("step {i} ({}): {v}", applied.describe));
        }
        match recovered(&c, healed).await {
            Ok(t) => report.recovery.entry(s.fault).or_default().push(t),
            Err(why) => report.violations.push(format!(
                "step {i} ({}): not every node ready with agreed leaders {}s after the heal: {why}",
                applied.describe,
                RECOVERY_BOUND.as_secs()
            )),
        }
        writer.send_to(c.node(*c.ids().choose(&mut rng).expect("nodes")));
        tokio::time::sleep(s.rest).await;
    }

    if let Some(ring) = ring {
        ring_stop.store(true, Ordering::Release);
        match tokio::time::timeout(Duration::from_secs(240), ring).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(why))) => report.violations.push(format!("the ring did not converge after the faults: {why}")),
            Ok(Err(e)) => report.violations.push(format!("the ring task failed: {e}")),
            Err(_) => report.violations.push("the ring did not converge within 240 s after the faults".into()),
        }
    }
    if let Err(why) = recovered(&c, Instant::now()).await {
        report.violations.push(format!("not ready with agreed leaders at the end: {why}"));
    }

    // The verdicts.
    let ttl = ttl.finish().await;
    report.violations.extend(ttl.violations.iter().map(|v| format!("ttl: {v}")));
    load.stop().await;
    let shard_counts: Vec<u32> = if schedule.ring { vec![4, 8, 16] } else { vec![SHARDS] };
    let watch = watches
        .check(&load.refused_writes(), Duration::from_secs(20), |key| {
            shard_counts.iter().map(|n| ringkv_node::ring::shard_for(0, key.as_bytes(), *n)).collect()
        })
        .await;
    report.watch_gaps = watch.gaps;
    report.violations.extend(watch.violations);
    let written = writer.finish().await;
    report.lost_writes = c.read_back(&written.acked, &c.ids()).await;
    let load_ops = match load.try_finish().await {
        Ok(r) => r.ops,
        Err(why) => {
            report.violations.push(why);
            0
        }
    };
    report.operations = load_ops + written.acked.len() + ttl.keys + ttl.reads + watch.events;
    report.counts = vec![
        ("load ops", load_ops),
        ("unique writes", written.acked.len()),
        ("ttl keys", ttl.keys),
        ("ttl reads", ttl.reads),
        ("watch streams", watch.streams),
        ("watch events", watch.events),
        ("resyncs", watch.resyncs),
        ("reconnects", watch.reconnects),
    ];
    if !report.ok() {
        let kept = c.keep_data();
        report.notes.push(format!("data and logs kept in {}", kept.display()));
    }
    report
}

/// What the faults need to know about the machine and the cluster.
struct Env {
    /// `tc netem` works (else delay runs as loss).
    netem: bool,
    /// Each node's data directory is its own tmpfs (else disk-full runs as slow-fsync).
    disks: bool,
    /// Where the nodes' WAL fault control files are.
    controls: std::path::PathBuf,
}

/// Size of each node's tmpfs data directory.
const DISK_BYTES: u64 = 256 << 20;
/// The nodes' `--disk-reserve-bytes`: client writes are refused below it.
const RESERVE: u64 = 16 << 20;
/// What a disk-full fault leaves free.
const LEFT_FREE: u64 = 4 << 20;

/// Node `id`'s WAL fault control file (`RINGKV_WAL_FAULTS`).
fn control_file(controls: &std::path::Path, id: u64) -> std::path::PathBuf {
    controls.join(format!("node-{id}"))
}

/// A fault in force, and what healing it takes.
struct Applied {
    describe: String,
    killed: Vec<u64>,
    paused: Vec<u64>,
    shaped: Vec<u64>,
    /// Filler files that fill a node's disk.
    fillers: Vec<std::path::PathBuf>,
    /// Nodes whose WAL control file holds a fault.
    wal_faults: Vec<u64>,
    /// A node that must fence itself (exit 75) before the heal.
    must_fence: Option<u64>,
}

/// Puts `fault` in force, choosing its nodes with `rng`.
async fn apply(c: &Cluster, fault: Fault, rng: &mut StdRng, env: &Env) -> Applied {
    let mut ids = c.ids();
    ids.shuffle(rng);
    let mut a = Applied {
        describe: String::new(),
        killed: vec![],
        paused: vec![],
        shaped: vec![],
        fillers: vec![],
        wal_faults: vec![],
        must_fence: None,
    };
    let net = c.net();
    match fault {
        Fault::IsolateLeader => {
            let victim = a_leader(c, rng).await.unwrap_or(ids[0]);
            net.isolate(victim);
            a.describe = format!("isolate leader {victim}");
        }
        Fault::Minority => {
            let n = rng.random_range(1..=2);
            let (minority, rest) = ids.split_at(n);
            net.partition(&[minority, rest]);
            a.describe = format!("partition {minority:?} | {rest:?}");
        }
        Fault::Bridge => {
            let (left, bridge, right) = (&ids[0..2], ids[2], &ids[3..5]);
            for l in left {
                for r in right {
                    net.cut(*l, *r);
                }
            }
            a.describe = format!("bridge {left:?} <{bridge}> {right:?}");
        }
        Fault::MajoritiesRing => {
            // Ring order ids[0..5]: node i reaches i±1 only; cut i from i+2 (and so i-2).
            for i in 0..ids.len() {
                net.cut(ids[i], ids[(i + 2) % ids.len()]);
            }
            a.describe = format!("majorities ring {ids:?}");
        }
        Fault::OneWay => {
            let from = a_leader(c, rng).await.unwrap_or(ids[0]);
            let to = *ids.iter().find(|id| **id != from).expect("two nodes");
            net.cut_one_way(from, to);
            a.describe = format!("one-way drop {from} -> {to}");
        }
        Fault::Loss => {
            let percent = rng.random_range(10..=40);
            net.loss(ids[0], percent);
            a.describe = format!("loss {percent}% on {}", ids[0]);
        }
        Fault::Delay if env.netem => {
            let spec = format!("delay {}ms {}ms reorder 25% 50%", rng.random_range(20..=120), rng.random_range(5..=40));
            net.netem(ids[0], &spec);
            a.shaped.push(ids[0]);
            a.describe = format!("netem {spec} on {}", ids[0]);
        }
        Fault::Delay => {
            net.loss(ids[0], 20);
            a.describe = format!("loss 20% on {} (netem missing: delay ran as loss)", ids[0]);
        }
        Fault::Kill => {
            let victim = half_the_time_a_leader(c, rng, ids[0]).await;
            c.kill(victim);
            a.killed.push(victim);
            a.describe = format!("kill -9 {victim}");
        }
        Fault::Pause => {
            let victim = half_the_time_a_leader(c, rng, ids[0]).await;
            c.pause(victim);
            a.paused.push(victim);
            a.describe = format!("SIGSTOP {victim}");
        }
        Fault::DiskFull if env.disks => {
            let victim = half_the_time_a_leader(c, rng, ids[0]).await;
            match fill(&c.data_dir(victim), LEFT_FREE) {
                Ok(filler) => a.fillers.push(filler),
                Err(e) => a.describe = format!("(could not fill: {e}) "),
            }
            a.describe += &format!("disk of {victim} full");
        }
        Fault::FsyncError => {
            let victim = a_leader(c, rng).await.unwrap_or(ids[0]);
            write_control(env, victim, "fsync-error");
            a.wal_faults.push(victim);
            a.must_fence = Some(victim);
            a.describe = format!("fsync of {victim} fails");
        }
        Fault::SlowFsync | Fault::DiskFull => {
            let ms = rng.random_range(100..=400);
            write_control(env, ids[0], &format!("slow-fsync {ms}"));
            a.wal_faults.push(ids[0]);
            a.describe = format!("fsync of {} slowed by {ms} ms", ids[0]);
        }
    }
    a
}

fn write_control(env: &Env, id: u64, fault: &str) {
    let path = control_file(&env.controls, id);
    std::fs::write(&path, fault).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Fills the file system of `dir` until `leave` bytes are free; returns the filler.
fn fill(dir: &std::path::Path, leave: u64) -> Result<std::path::PathBuf, String> {
    use std::io::Write;
    let path = dir.join("nemesis-filler.bin");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| e.to_string())?;
    let chunk = vec![0x5au8; 1 << 20];
    loop {
        let st = nix::sys::statvfs::statvfs(dir).map_err(|e| e.to_string())?;
        let free = st.blocks_available().saturating_mul(st.fragment_size());
        if free <= leave {
            return Ok(path);
        }
        let n = usize::try_from((free - leave).min(chunk.len() as u64)).unwrap_or(chunk.len());
        f.write_all(&chunk[..n]).map_err(|e| e.to_string())?;
    }
}

/// Ends a fault: links healed, shaping removed, disks freed, WAL faults cleared, paused
/// nodes continued, killed and fenced ones restarted (with their fault control file, as
/// at the first start). Returns what went wrong: a node that should have fenced itself
/// and did not, or any node that exited unasked (it is restarted too).
async fn heal(c: &Cluster, a: &Applied, env: &Env) -> Vec<String> {
    let mut wrong = Vec::new();
    c.net().heal();
    for id in &a.shaped {
        c.net().clear_netem(*id);
    }
    for f in &a.fillers {
        if let Err(e) = std::fs::remove_file(f) {
            wrong.push(format!("removing the filler {}: {e}", f.display()));
        }
    }
    let mut fenced = None;
    if let Some(id) = a.must_fence {
        // Under load the next fsync comes at once; give the fence a moment regardless.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = c.exited(id) {
                fenced = Some(status);
                break;
            }
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
        match fenced {
            Some(s) if s.code() == Some(ringkv_node::node::disk::EXIT_FENCED) => {}
            Some(s) => wrong.push(format!("node {id} exited with {s}, not the fence's code 75")),
            None => wrong.push(format!("node {id} did not fence itself within 5 s of a failed fsync")),
        }
    }
    for id in &a.wal_faults {
        write_control(env, *id, "");
    }
    for id in &a.paused {
        c.resume(*id);
    }
    for id in c.ids() {
        let down = match c.exited(id) {
            Some(s) => {
                wrong.push(format!("node {id} exited unasked: {s}; its log ends:\n{}", tail(c, id)));
                true
            }
            None => a.killed.contains(&id) || (fenced.is_some() && a.must_fence == Some(id)),
        };
        if down {
            let control = control_file(&env.controls, id).display().to_string();
            c.restart_with_env(id, &[(FAULTS_ENV, &control)]);
        }
    }
    wrong
}

/// The last lines of node `id`'s log.
fn tail(c: &Cluster, id: u64) -> String {
    let log = c.log(id);
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// A shard leader (as the nodes see it now) half the time, else `other`.
async fn half_the_time_a_leader(c: &Cluster, rng: &mut StdRng, other: u64) -> u64 {
    match rng.random_bool(0.5) {
        true => a_leader(c, rng).await.unwrap_or(other),
        false => other,
    }
}

/// The leader of a random shard, as the nodes see it now.
async fn a_leader(c: &Cluster, rng: &mut StdRng) -> Option<u64> {
    let leaders: Vec<u64> = c.leaders().await.into_values().collect();
    leaders.choose(rng).copied()
}

/// How long after `since` every node answered ready and all agreed on a leader per
/// shard; past [`RECOVERY_BOUND`], what was still wrong.
async fn recovered(c: &Cluster, since: Instant) -> Result<Duration, String> {
    loop {
        let why = match all_ready_with_leaders(c).await {
            Ok(()) => return Ok(since.elapsed()),
            Err(why) => why,
        };
        if since.elapsed() >= RECOVERY_BOUND {
            return Err(why);
        }
        tokio::time::sleep(crate::POLL_INTERVAL).await;
    }
}

async fn all_ready_with_leaders(c: &Cluster) -> Result<(), String> {
    for id in c.ids() {
        if !c.node(id).is_ready().await {
            return Err(format!("node {id} not ready"));
        }
    }
    agreed_leaders(c).await
}

/// Whether the replicas of every shard agree on its leader, and that leader says it
/// leads. (On a ring with R = 3 of 5 nodes a node lists only the replicas it hosts, so
/// [`Cluster::agreed_leaders`], which asks every node about every shard, does not fit.)
async fn agreed_leaders(c: &Cluster) -> Result<(), String> {
    let mut replicas: BTreeMap<u32, Vec<(u64, Option<u64>, String)>> = BTreeMap::new();
    for id in c.ids() {
        let view = c.node(id).try_cluster_view().await.map_err(|e| format!("node {id}: {e}"))?;
        for s in view.shards {
            replicas.entry(s.id).or_default().push((id, s.leader, s.state));
        }
    }
    for (shard, seen) in &replicas {
        let leaders: Vec<Option<u64>> = seen.iter().map(|(_, l, _)| *l).collect();
        let leader = match leaders.first().copied().flatten() {
            Some(l) if leaders.iter().all(|x| *x == Some(l)) => l,
            _ => return Err(format!("shard {shard}: replicas (node, leader, state) {seen:?}")),
        };
        if !seen.iter().any(|(id, _, state)| *id == leader && state == "Leader") {
            return Err(format!("shard {shard}: {leader} is named leader, replicas {seen:?}"));
        }
    }
    Ok(())
}

/// The ring's changes under the faults: R = 3, then 4 → 8 → 16 shards, node 5 drained
/// and added back, then 16 → 4. Each target is retried until it converges (a fault can
/// stall a step); once `stop` is set, what remains must converge without faults.
async fn change_ring(d: ringkv_ctl::driver::Driver, stop: Arc<AtomicBool>) -> Result<(), String> {
    let all: Vec<u64> = (1..=u64::try_from(NODES).expect("small")).collect();
    let without_last: Vec<u64> = all[..all.len() - 1].to_vec();
    let targets: [(u32, &[u64]); 6] = [(4, &all), (8, &all), (16, &all), (16, &without_last), (16, &all), (4, &all)];
    for (shards, nodes) in targets {
        let nodes: std::collections::BTreeSet<u64> = nodes.iter().copied().collect();
        let mut failed_after_stop = 0;
        loop {
            let spec = {
                let nodes = nodes.clone();
                move |_: &ringkv_ctl::driver::Cluster| ringkv_plan::Spec {
                    shards,
                    replication: 3,
                    nodes: nodes.clone(),
                }
            };
            let stopped = stop.load(Ordering::Acquire);
            match d.converge(&spec, Duration::from_secs(60), |_| {}).await {
                Ok(_) => {
                    eprintln!("nemesis ring: converged to {shards} shards on {nodes:?}");
                    break;
                }
                Err(e) if stopped && failed_after_stop >= 1 => {
                    return Err(format!("{shards} shards on {nodes:?}: {e}"))
                }
                Err(e) => {
                    eprintln!("nemesis ring: {shards} shards on {nodes:?} not yet: {e}");
                    failed_after_stop += usize::from(stopped);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}
