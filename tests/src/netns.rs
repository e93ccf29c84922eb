//! Hosts in network namespaces: each node of a test cluster runs as its own machine on
//! a private bridge, and the test cuts, drops and slows the links between them.
//!
//! One [`Network`] per test, tagged `T` (four hex digits that name its subnet
//! 10.x.y.0/24, chosen at random so that tests running in parallel never share one):
//! ```text
//!  root namespace (the test)     rkvT-br: bridge br0        rkvT-n<id>: node <id>
//!  rkvT-h  10.x.y.1/24 ─────────── rkvT-bh
//!                                  rkvT-b<id> ──────────────── rkvT-e<id>  10.x.y.(id+1)/24
//! ```
//! The test process stays in the root namespace and reaches every node through its own
//! veth; nodes reach each other through the bridge.
//!
//! Faults are iptables DROP rules inside the node namespaces (each namespace has its own
//! tables). A node's link traffic, in and out, passes chain `rkv-cut` (partitions and
//! one-way cuts) and then `rkv-loss` (random loss). A DROP is silent, as a real partition
//! is, and it stops established connections as well as new ones. The test's own link
//! (.1) is never cut: the test can always watch every node, the isolated ones included.
//! `tc netem` shapes a link where the kernel has it ([`Network::netem_available`]).
//!
//! Each network is recorded in `$TMPDIR/ringkv-netns/<tag>` with its owner's pid, so that
//! a later test removes what a killed test (no `Drop` ran) left behind, the node
//! processes still running in its namespaces included.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;
use rand::Rng;

/// The port of every node's client API (each node has its own address).
pub const CLIENT_PORT: u16 = 7100;

/// The port of every node's internal (Raft) API.
pub const INTERNAL_PORT: u16 = 7101;

/// Chain for cuts: both-way and one-way drops between nodes.
const CUT_CHAIN: &str = "rkv-cut";

/// Chain for random loss on a node's link.
const LOSS_CHAIN: &str = "rkv-loss";

/// How many random subnets [`Network::create`] tries before giving up.
const CLAIM_ATTEMPTS: usize = 64;

/// Runs `argv`; its stdout, or an error naming the command and what it printed on stderr.
fn run(argv: &[&str]) -> Result<String, String> {
    run_with_input(argv, None)
}

/// [`run`] with `input` on the command's stdin.
fn run_with_input(argv: &[&str], input: Option<&str>) -> Result<String, String> {
    let shown = argv.join(" ");
    let (program, args) = argv.split_first().ok_or("an empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{shown}`: {e}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).map_err(|e| format!("`{shown}`: writing its input: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("`{shown}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// [`run`], panicking with the command's stderr when it fails.
fn must(argv: &[&str]) -> String {
    run(argv).unwrap_or_else(|e| panic!("{e}"))
}

/// The effective uid of this process (from `/proc/self/status`).
fn effective_uid() -> Result<u32, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| "no effective uid in /proc/self/status".to_string())
}

/// `a.b.c.d/len` (or a bare address, /32) as (address, prefix length).
fn parse_prefix(s: &str) -> Option<(u32, u32)> {
    let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(addr.parse::<Ipv4Addr>().ok()?), len))
}

/// Whether a route of `ip -4 route` (one line) covers any address of `subnet`/24.
/// `default` routes are not counted: they cover everything and say nothing.
fn route_overlaps(line: &str, subnet: Ipv4Addr) -> bool {
    // The destination is the first word, or the second after a type (`unreachable …`).
    let Some((addr, len)) = line.split_whitespace().take(2).find_map(parse_prefix) else {
        return false;
    };
    let shorter = len.min(24);
    let mask = if shorter == 0 { 0 } else { u32::MAX << (32 - shorter) };
    (addr ^ u32::from(subnet)) & mask == 0
}

/// Where networks are recorded with their owner's pid.
fn records_dir() -> PathBuf {
    std::env::temp_dir().join("ringkv-netns")
}

/// SIGKILLs every process left in namespace `ns` (a namespace lives on, unlisted, while a
/// process is inside). Only namespaces a test made hold processes it started.
fn kill_inside(ns: &str) {
    let pids = run(&["ip", "netns", "pids", ns]).unwrap_or_default();
    for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        eprintln!("netns: killing process {pid} left in {ns}");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Removes every namespace (and the processes left in them) and the root-side veth of
/// the network tagged `tag`, ignoring what is already gone.
fn remove_network(tag: &str) {
    let _ = run(&["ip", "link", "del", &format!("rkv{tag}-h")]);
    let prefix = format!("rkv{tag}-");
    let listed = run(&["ip", "netns", "list"]).unwrap_or_default();
    for ns in listed.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with(&prefix)) {
        kill_inside(ns);
        let _ = run(&["ip", "netns", "del", ns]);
    }
}

/// Removes the networks whose owner process is gone (killed before its `Drop` ran).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(records_dir()) else { return };
    for entry in entries.flatten() {
        let tag = entry.file_name().to_string_lossy().into_owned();
        if tag.len() != 4 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let owner: Option<u32> = std::fs::read_to_string(entry.path()).ok().and_then(|s| s.trim().parse().ok());
        if owner.is_some_and(|pid| PathBuf::from(format!("/proc/{pid}")).exists()) {
            continue;
        }
        eprintln!("netns: removing network {tag} left behind by process {owner:?}");
        remove_network(&tag);
        let _ = std::fs::remove_file(entry.path());
    }
}

/// One test's hosts: a bridge namespace, one namespace per node, and a link from the
/// root namespace. Dropping it removes all of them (kill the processes inside first:
/// a [`crate::Cluster`] that owns its network does).
pub struct Network {
    /// Four hex digits, the subnet's x and y: every name this network makes contains it.
    tag: String,
    /// 10.x.y.0/24.
    subnet: [u8; 2],
    nodes: usize,
    /// Namespaces made so far, the bridge's first.
    namespaces: Vec<String>,
    root_veth: Option<String>,
    record: Option<PathBuf>,
    /// Nodes whose links have a netem qdisc.
    shaped: Mutex<BTreeSet<u64>>,
}

impl Network {
    /// Whether this machine can make networks for tests; the reason when not: not root,
    /// `ip`, `iptables` or `tc` missing, or a namespace with iptables in it cannot be made.
    pub fn available() -> Result<(), String> {
        let euid = effective_uid()?;
        if euid != 0 {
            return Err(format!("network namespaces need root (effective uid {euid})"));
        }
        for (tool, flag) in [("ip", "-V"), ("iptables", "-V"), ("iptables-restore", "--version"), ("tc", "-V")] {
            Command::new(tool)
                .arg(flag)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("`{tool}` cannot be run ({e}); install iproute2 and iptables"))?;
        }
        let probe = format!("rkvp{:x}", std::process::id());
        let _ = run(&["ip", "netns", "del", &probe]);
        run(&["ip", "netns", "add", &probe]).map_err(|e| format!("cannot make a network namespace: {e}"))?;
        let iptables = run(&["ip", "netns", "exec", &probe, "iptables", "-w", "-S"]);
        let _ = run(&["ip", "netns", "del", &probe]);
        iptables.map(|_| ()).map_err(|e| format!("iptables does not work in a network namespace: {e}"))
    }

    /// The network for test `test`, or `None` after printing `SKIPPED <test>: <reason>`
    /// to stderr when this machine cannot make one. Panics if it can but making it fails.
    pub fn for_test(test: &str, nodes: usize) -> Option<Network> {
        if let Err(why) = Network::available() {
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        Some(Network::create(nodes).unwrap_or_else(|e| panic!("{test}: cannot make its network: {e}")))
    }

    /// Makes the bridge, `nodes` node namespaces (ids `1..=nodes`) and the root link.
    /// On failure, removes what it made and says which command failed.
    pub fn create(nodes: usize) -> Result<Network, String> {
        if !(1..=200).contains(&nodes) {
            return Err(format!("{nodes} nodes: a network has 1 to 200"));
        }
        sweep_stale();
        Network::claim(nodes)?.build()
    }

    /// Picks a free random subnet and claims it by making its bridge namespace (`ip netns
    /// add` fails if another test made that name first).
    fn claim(nodes: usize) -> Result<Network, String> {
        let mut last = String::new();
        for _ in 0..CLAIM_ATTEMPTS {
            let subnet: [u8; 2] = {
                let mut rng = rand::rng();
                [rng.random(), rng.random()]
            };
            let net24 = Ipv4Addr::new(10, subnet[0], subnet[1], 0);
            let routes = run(&["ip", "-4", "route", "show", "table", "all"])?;
            if let Some(route) = routes.lines().find(|l| route_overlaps(l, net24)) {
                last = format!("{net24}/24 overlaps route {route:?}");
                continue;
            }
            let tag = format!("{:02x}{:02x}", subnet[0], subnet[1]);
            let bridge = format!("rkv{tag}-br");
            match run(&["ip", "netns", "add", &bridge]) {
                Ok(_) => {}
                Err(e) if e.contains("exists") => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let mut net = Network {
                tag,
                subnet,
                nodes,
                namespaces: vec![bridge],
                root_veth: None,
                record: None,
                shaped: Mutex::new(BTreeSet::new()),
            };
            let record = records_dir().join(&net.tag);
            std::fs::create_dir_all(records_dir())
                .and_then(|()| std::fs::write(&record, std::process::id().to_string()))
                .map_err(|e| format!("{}: {e}", record.display()))?;
            net.record = Some(record);
            return Ok(net);
        }
        Err(format!("no free subnet in {CLAIM_ATTEMPTS} tries; last: {last}"))
    }

    /// Makes everything but the bridge namespace. Names are recorded as they are made, so
    /// `Drop` removes a half-built network too.
    fn build(mut self) -> Result<Network, String> {
        let br = self.bridge_ns();
        run(&["ip", "-n", &br, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &br, "link", "set", "br0", "up"])?;
        for id in self.ids() {
            let (ns, veth, port) = (self.namespace(id), self.node_veth(id), format!("rkv{}-b{id}", self.tag));
            run(&["ip", "netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run(&["ip", "link", "add", &veth, "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &br])?;
            run(&["ip", "-n", &ns, "addr", "add", &format!("{}/24", self.addr(id)), "dev", &veth])?;
            run(&["ip", "-n", &ns, "link", "set", &veth, "up"])?;
            run(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            // The fault chains, on the node's link only (never its loopback).
            let rules = format!(
                "*filter\n:{CUT_CHAIN} - [0:0]\n:{LOSS_CHAIN} - [0:0]\n\
                 -A INPUT -i {veth} -j {CUT_CHAIN}\n-A INPUT -i {veth} -j {LOSS_CHAIN}\n\
                 -A OUTPUT -o {veth} -j {CUT_CHAIN}\n-A OUTPUT -o {veth} -j {LOSS_CHAIN}\nCOMMIT\n"
            );
            run_with_input(&["ip", "netns", "exec", &ns, "iptables-restore", "-w"], Some(&rules))?;
        }
        let (host, port) = (format!("rkv{}-h", self.tag), format!("rkv{}-bh", self.tag));
        run(&["ip", "link", "add", &host, "type", "veth", "peer", "name", &port, "netns", &br])?;
        self.root_veth = Some(host.clone());
        run(&["ip", "addr", "add", &format!("{}/24", self.client_addr()), "dev", &host])?;
        run(&["ip", "link", "set", &host, "up"])?;
        run(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"])?;
        Ok(self)
    }

    /// This network's tag (four hex digits in every name it makes).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// How many node namespaces it has.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Node ids, `1..=nodes`.
    pub fn ids(&self) -> Vec<u64> {
        (1..=u64::try_from(self.nodes).expect("few nodes")).collect()
    }

    fn check_id(&self, id: u64) -> u8 {
        let n = u8::try_from(id).ok().filter(|n| (1..=self.nodes).contains(&usize::from(*n)));
        n.unwrap_or_else(|| panic!("no node {id} in network {} of {} nodes", self.tag, self.nodes))
    }

    /// Node `id`'s address: 10.x.y.(id+1).
    pub fn addr(&self, id: u64) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], self.check_id(id) + 1)
    }

    /// The test's own address in the root namespace: 10.x.y.1. No fault touches it.
    pub fn client_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], 1)
    }

    /// Node `id`'s namespace: `rkv<tag>-n<id>`.
    pub fn namespace(&self, id: u64) -> String {
        format!("rkv{}-n{}", self.tag, self.check_id(id))
    }

    fn bridge_ns(&self) -> String {
        format!("rkv{}-br", self.tag)
    }

    /// Node `id`'s end of its link (inside its namespace).
    fn node_veth(&self, id: u64) -> String {
        format!("rkv{}-e{}", self.tag, self.check_id(id))
    }

    /// The words that run a command inside node `id`'s namespace: `ip netns exec <ns>`.
    /// It execs the command, so the pid of what it starts is the command's own.
    pub fn exec_prefix(&self, id: u64) -> Vec<String> {
        ["ip", "netns", "exec"].iter().map(|s| s.to_string()).chain([self.namespace(id)]).collect()
    }

    /// Runs `argv` inside node `id`'s namespace; panics with its stderr on failure.
    fn exec(&self, id: u64, argv: &[&str]) -> String {
        let ns = self.namespace(id);
        let full: Vec<&str> = ["ip", "netns", "exec", ns.as_str()].into_iter().chain(argv.iter().copied()).collect();
        must(&full)
    }

    /// Appends DROP rules to chain `rkv-cut`, per node, one `iptables-restore` per node.
    fn add_drops(&self, drops: BTreeMap<u64, Vec<String>>) {
        for (id, rules) in drops {
            let mut input = String::from("*filter\n");
            for r in rules {
                input.push_str(&format!("-A {CUT_CHAIN} {r} -j DROP\n"));
            }
            input.push_str("COMMIT\n");
            let ns = self.namespace(id);
            run_with_input(&["ip", "netns", "exec", &ns, "iptables-restore", "-w", "--noflush"], Some(&input))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// The rules that drop everything between `a` and `b`, at both ends.
    fn both_ways(&self, drops: &mut BTreeMap<u64, Vec<String>>, a: u64, b: u64) {
        assert_ne!(a, b, "a node cannot be cut from itself");
        for (me, peer) in [(a, b), (b, a)] {
            let peer = self.addr(peer);
            drops.entry(me).or_default().extend([format!("-s {peer}"), format!("-d {peer}")]);
        }
    }

    /// Drops every packet between nodes `a` and `b`, both ways, established connections
    /// included, until [`Network::heal`].
    pub fn cut(&self, a: u64, b: u64) {
        let mut drops = BTreeMap::new();
        self.both_ways(&mut drops, a, b);
        self.add_drops(drops);
    }

    /// Drops the packets `from` sends to `to`; those `to` sends to `from` still arrive.
    /// (TCP needs both ways, so connections between them stall either way; datagrams
    /// and SYNs from `to` still land.)
    pub fn cut_one_way(&self, from: u64, to: u64) {
        assert_ne!(from, to, "a node cannot be cut from itself");
        let mut drops = BTreeMap::new();
        drops.insert(from, vec![format!("-d {}", self.addr(to))]);
        drops.insert(to, vec![format!("-s {}", self.addr(from))]);
        self.add_drops(drops);
    }

    /// Cuts node `id` from every other node. The test still reaches it (and it the test).
    pub fn isolate(&self, id: u64) {
        let mut drops = BTreeMap::new();
        for other in self.ids().into_iter().filter(|o| *o != id) {
            self.both_ways(&mut drops, id, other);
        }
        self.add_drops(drops);
    }

    /// Splits the nodes into `groups`: nodes in different groups cannot reach each other.
    /// Every node must be in exactly one group.
    pub fn partition(&self, groups: &[&[u64]]) {
        let mut group_of = BTreeMap::new();
        for (g, ids) in groups.iter().enumerate() {
            for id in *ids {
                self.check_id(*id);
                assert!(group_of.insert(*id, g).is_none(), "node {id} is in two groups of {groups:?}");
            }
        }
        let missing: Vec<u64> = self.ids().into_iter().filter(|id| !group_of.contains_key(id)).collect();
        assert!(missing.is_empty(), "nodes {missing:?} are in no group of {groups:?}");
        let mut drops = BTreeMap::new();
        for (a, ga) in &group_of {
            for (b, gb) in group_of.range(a + 1..) {
                if ga != gb {
                    self.both_ways(&mut drops, *a, *b);
                }
            }
        }
        self.add_drops(drops);
    }

    /// Removes every cut and every random loss on every node ([`Network::clear_netem`]
    /// for netem shaping).
    pub fn heal(&self) {
        for id in self.ids() {
            self.exec(id, &["iptables", "-w", "-F", CUT_CHAIN]);
            self.exec(id, &["iptables", "-w", "-F", LOSS_CHAIN]);
        }
    }

    /// Drops `percent` % of node `id`'s link packets at random, each way (iptables'
    /// `statistic` match: loss without netem), until [`Network::heal`] or
    /// [`Network::clear_loss`].
    pub fn loss(&self, id: u64, percent: u8) {
        assert!(percent <= 100);
        let p = format!("{:.4}", f64::from(percent) / 100.0);
        self.exec(
            id,
            &[
                "iptables",
                "-w",
                "-A",
                LOSS_CHAIN,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        );
    }

    /// Ends [`Network::loss`] on node `id`.
    pub fn clear_loss(&self, id: u64) {
        self.exec(id, &["iptables", "-w", "-F", LOSS_CHAIN]);
    }

    /// Whether `tc netem` works here; the reason when not (a kernel without `sch_netem`
    /// answers "Specified qdisc kind is unknown").
    pub fn netem_available(&self) -> Result<(), String> {
        let br = self.bridge_ns();
        let tc = ["ip", "netns", "exec", &br, "tc", "qdisc"];
        let add: Vec<&str> = tc.iter().copied().chain(["add", "dev", "lo", "root", "netem", "delay", "0ms"]).collect();
        run(&add).map_err(|e| format!("tc netem is not available: {e}"))?;
        let del: Vec<&str> = tc.iter().copied().chain(["del", "dev", "lo", "root"]).collect();
        run(&del).map(|_| ())
    }

    /// Shapes node `id`'s link with netem `spec` (e.g. `loss 20% delay 30ms 10ms reorder
    /// 10%`), each way: on the node's end (what it sends) and on the bridge's end (what it
    /// receives). Replaces earlier shaping; panics where netem is missing.
    pub fn netem(&self, id: u64, spec: &str) {
        for (ns, dev) in
            [(self.namespace(id), self.node_veth(id)), (self.bridge_ns(), format!("rkv{}-b{id}", self.tag))]
        {
            let argv: Vec<&str> = ["ip", "netns", "exec", ns.as_str(), "tc", "qdisc", "replace", "dev", dev.as_str()]
                .into_iter()
                .chain(["root", "netem"])
                .chain(spec.split_whitespace())
                .collect();
            must(&argv);
        }
        self.shaped.lock().insert(id);
    }

    /// Removes node `id`'s netem shaping, if any.
    pub fn clear_netem(&self, id: u64) {
        if !self.shaped.lock().remove(&id) {
            return;
        }
        for (ns, dev) in
            [(self.namespace(id), self.node_veth(id)), (self.bridge_ns(), format!("rkv{}-b{id}", self.tag))]
        {
            must(&["ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root"]);
        }
    }

    /// The fault rules now on node `id` (`iptables -S` of both chains), for messages.
    pub fn rules(&self, id: u64) -> String {
        [CUT_CHAIN, LOSS_CHAIN].iter().map(|c| self.exec(id, &["iptables", "-w", "-S", c])).collect()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // The root link first (its bridge end goes with it), then the namespaces: their
        // veths go with them once no process is left inside.
        if let Some(host) = self.root_veth.take() {
            if let Err(e) = run(&["ip", "link", "del", &host]) {
                eprintln!("netns cleanup: {e}");
            }
        }
        for ns in self.namespaces.drain(..).rev() {
            kill_inside(&ns);
            if let Err(e) = run(&["ip", "netns", "del", &ns]) {
                eprintln!("netns cleanup: {e}");
            }
        }
        if let Some(record) = self.record.take() {
            let _ = std::fs::remove_file(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_that_cover_any_address_of_the_subnet_overlap_it() {
        let ours = Ipv4Addr::new(10, 7, 9, 0);
        let cases = [
            ("10.7.9.0/24 dev rkv0709-h proto kernel scope link src 10.7.9.1", true),
            ("10.7.9.128/25 dev x", true),
            ("10.7.9.77 dev x scope link", true),
            ("10.0.0.0/8 via 192.0.2.1 dev eth0", true),
            ("unreachable 10.7.0.0/16", true),
            ("local 10.7.9.1 dev rkv0709-h table local proto kernel scope host src 10.7.9.1", true),
            ("10.7.8.0/24 dev x", false),
            ("10.7.10.0/23 dev x", false),
            ("192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2", false),
            ("default via 192.0.2.1 dev eth0", false),
            ("broadcast 127.255.255.255 dev lo table local", false),
            ("", false),
        ];
        for (line, want) in cases {
            assert_eq!(route_overlaps(line, ours), want, "{line:?}");
        }
    }

    #[test]
    fn prefixes_parse_with_or_without_a_length() {
        assert_eq!(parse_prefix("10.1.2.0/24"), Some((0x0a01_0200, 24)));
        assert_eq!(parse_prefix("10.1.2.3"), Some((0x0a01_0203, 32)));
        assert_eq!(parse_prefix("10.1.2.0/33"), None);
        assert_eq!(parse_prefix("dev"), None);
    }
}
