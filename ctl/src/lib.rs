//! `ringkv-ctl`: the planning library's driver against the nodes' internal ports, for
//! clusters run without Kubernetes (and for operators of a Kubernetes cluster who want
//! to look or act by hand). It needs no Kubernetes client to build.
//!
//! Every action is one spec for the driver: `reshard` sets the shard count, `drain`
//! leaves a node out, `add-node` and `rebalance` take every node that answers. What the
//! command line does not say is read from the ring, so that running an action again
//! after an interruption aims at the same place: the shard count when every shard has
//! the same modulus (a ring part-way through a reshard is refused: only `reshard` knows
//! which way it was going), the replication factor as the voter count most shards
//! have (a move adds before it removes, so a shard in the middle of one has one more;
//! a tie is refused: `--replication` says it).

pub mod driver;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use driver::{Cluster, Driver, Progress};
use ringkv_plan::{NodeId, Spec};

/// ringkv-ctl: drive a ringkv cluster through its nodes' admin API (internal ports):
/// reshard, rebalance, drain a node, add a node. Prints each step and exits 0 once
/// converged. Safe to kill and run again at any moment.
#[derive(Parser, Debug, Clone)]
#[command(name = "ringkv-ctl", version, about)]
pub struct AdminArgs {
    /// The nodes' internal addresses (`host:port`), comma-separated.
    #[arg(long, env = "RINGKV_ADMIN_NODES", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,

    /// Replication factor to keep. Default: the largest voter count of any shard now.
    #[arg(long)]
    pub replication: Option<usize>,

    /// Give up after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Mutual TLS to the internal ports: the cluster's CA (PEM). With `--cert` and `--key`.
    #[arg(long, env = "RINGKV_ADMIN_CA", requires_all = ["cert", "key"])]
    pub ca: Option<std::path::PathBuf>,

    /// This client's certificate (PEM), signed by the cluster's CA.
    #[arg(long, env = "RINGKV_ADMIN_CERT", requires = "ca")]
    pub cert: Option<std::path::PathBuf>,

    /// This client's private key (PEM).
    #[arg(long, env = "RINGKV_ADMIN_KEY", requires = "ca")]
    pub key: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub action: AdminAction,
}

/// What `ringkv-ctl` does.
#[derive(Subcommand, Debug, Clone)]
pub enum AdminAction {
    /// Print the ring as the nodes report it.
    Status,
    /// Split (or merge) shards until the ring has this many (a power of two).
    Reshard {
        #[arg(long)]
        shards: u32,
    },
    /// Spread replicas and leaders evenly over every node that answers.
    Rebalance,
    /// Move every replica off a node (before removing it).
    Drain { node_id: u64 },
    /// Bring a new node (its internal address) into the ring and rebalance onto it.
    AddNode { addr: String },
}

/// What an action converges to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub shards: u32,
    pub replication: usize,
    /// A node to move every replica off.
    pub drained: Option<NodeId>,
}

/// The target of `action` on the ring as observed (`replication`: the flag, if given).
pub fn target(ring: &Cluster, action: &AdminAction, replication: Option<usize>) -> Result<Target, String> {
    let shards = match action {
        AdminAction::Reshard { shards } => *shards,
        _ => {
            let moduli: std::collections::BTreeSet<u32> = ring.observed.shards.values().map(|s| s.modulus).collect();
            match moduli.iter().collect::<Vec<_>>()[..] {
                [m] => *m,
                [] => return Err("the nodes report no shards; is the ring bootstrapped?".into()),
                _ => {
                    let list: Vec<String> = moduli.iter().map(u32::to_string).collect();
                    return Err(format!(
                        "the ring is part-way through a reshard (shards at moduli {}); finish it first with \
                         `reshard --shards N` for one of those",
                        list.join(" and ")
                    ));
                }
            }
        }
    };
    let replication = match replication {
        Some(r) => r,
        None => {
            let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
            for s in ring.observed.shards.values() {
                *counts.entry(s.voters.len()).or_default() += 1;
            }
            // The most common voter count. A tie is a change of replication cut off
            // half-way (or a move in flight on a ring of two shards): which way it was
            // going is not in the ring, so it must be said.
            let most = counts.values().copied().max().unwrap_or(0);
            let tied: Vec<usize> = counts.iter().filter(|(_, n)| **n == most).map(|(r, _)| *r).collect();
            match tied[..] {
                [r] => r,
                [] => 1,
                _ => {
                    let list: Vec<String> = tied.iter().map(usize::to_string).collect();
                    return Err(format!(
                        "as many shards have {} voters: the replication factor is not clear from the ring; give --replication",
                        list.join(" as ")
                    ));
                }
            }
        }
    };
    let drained = match action {
        AdminAction::Drain { node_id } => Some(*node_id),
        _ => None,
    };
    Ok(Target { shards, replication, drained })
}

/// Runs `args` to convergence, printing progress to `out`.
pub async fn run(args: AdminArgs, out: &mut (impl Write + Send)) -> anyhow::Result<()> {
    // What the command line alone shows to be wrong is said before any node is asked.
    if let AdminAction::Reshard { shards } = args.action {
        if !shards.is_power_of_two() {
            anyhow::bail!("--shards {shards} is not a power of two (1, 2, 4, 8, ...)");
        }
    }
    let mut driver = Driver::new(args.nodes.clone());
    if let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) {
        let tls = ringkv_api::tls::mutual_client_config(cert, key, ca).map_err(anyhow::Error::msg)?;
        driver = driver.with_client(ringkv_api::client::AdminClient::with_tls(tls).map_err(anyhow::Error::msg)?);
    }
    if let AdminAction::AddNode { addr } = &args.action {
        driver.add_seed(addr.clone());
    }
    let now = driver.observe().await?;
    if let AdminAction::Status = args.action {
        write!(out, "{}", now.describe())?;
        return Ok(());
    }
    if let AdminAction::AddNode { addr } = &args.action {
        if !now.addrs.values().any(|a| a == addr) {
            anyhow::bail!(
                "no ringkv node answered at {addr}; start it (not listed in --peers, it joins the ring) and try again"
            );
        }
    }
    if let AdminAction::Drain { node_id } = &args.action {
        if !now.observed.nodes.contains_key(node_id) {
            anyhow::bail!("node {node_id} is not in the ring (nodes: {:?})", now.node_ids());
        }
    }
    let target = target(&now, &args.action, args.replication).map_err(anyhow::Error::msg)?;
    let drained = target.drained;
    writeln!(
        out,
        "target: {} shards, replication {}{}",
        target.shards,
        target.replication,
        drained.map_or(String::new(), |d| format!(", node {d} drained"))
    )?;
    let spec = |c: &Cluster| Spec {
        shards: target.shards,
        replication: target.replication,
        // Every node seen (answering or not: a restarting node is waited for, not drained).
        nodes: c.observed.nodes.keys().copied().filter(|id| Some(*id) != drained).collect(),
    };
    let started = Instant::now();
    let done = driver
        .converge(spec, args.timeout, |p| {
            let at = started.elapsed().as_secs_f64();
            let line = match p {
                Progress::Step(s) => format!("[{at:>6.1}s] {}", s.describe()),
                Progress::StepFailed(s, why) => format!("[{at:>6.1}s] retrying: {} failed: {why}", s.describe()),
                Progress::Waiting(why) => format!("[{at:>6.1}s] waiting: {why}"),
                Progress::Converged => format!("[{at:>6.1}s] converged"),
            };
            // Progress goes out as it happens; a closed stdout must not stop the work.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        })
        .await;
    let done = done?;
    write!(out, "{}", done.describe())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv_plan::{Observed, ShardState};

    fn ring(shards: &[(u32, u32, &[NodeId])]) -> Cluster {
        let shards = shards
            .iter()
            .map(|&(id, modulus, voters)| {
                let voters = voters.iter().copied().collect();
                (
                    id,
                    ShardState {
                        id,
                        modulus,
                        voters,
                        learners: Default::default(),
                        leader: Some(1),
                        frozen: false,
                        lost: Default::default(),
                    },
                )
            })
            .collect();
        let observed = Observed { nodes: [(1, true), (2, true), (3, true), (4, true)].into(), shards };
        Cluster { observed, addrs: Default::default(), epoch: 1, keys: Default::default() }
    }

    #[test]
    fn the_target_comes_from_the_ring_where_the_command_line_is_silent() {
        let settled = ring(&[(0, 2, &[1, 2, 3]), (1, 2, &[2, 3, 4])]);
        let t = target(&settled, &AdminAction::Rebalance, None).unwrap();
        assert_eq!(t, Target { shards: 2, replication: 3, drained: None });
        let t = target(&settled, &AdminAction::Drain { node_id: 4 }, Some(1)).unwrap();
        assert_eq!(t, Target { shards: 2, replication: 1, drained: Some(4) });
        let t = target(&settled, &AdminAction::Reshard { shards: 8 }, None).unwrap();
        assert_eq!(t.shards, 8);

        // A move in flight (one shard with an added voter) does not raise replication.
        let moving = ring(&[(0, 4, &[1, 2, 3, 4]), (1, 4, &[2, 3, 4]), (2, 4, &[1, 3, 4]), (3, 4, &[1, 2, 4])]);
        assert_eq!(target(&moving, &AdminAction::Rebalance, None).unwrap().replication, 3);
        let two = ring(&[(0, 2, &[1, 2, 3, 4]), (1, 2, &[2, 3, 4])]);
        let why = target(&two, &AdminAction::Rebalance, None).unwrap_err();
        assert!(why.contains("give --replication"), "a tie is not guessed: {why}");
        assert_eq!(target(&two, &AdminAction::Rebalance, Some(3)).unwrap().replication, 3);

        // Part-way through a reshard only `reshard` knows the way.
        let halfway = ring(&[(0, 4, &[1, 2, 3]), (1, 2, &[1, 2, 3]), (2, 4, &[1, 2, 3])]);
        let why = target(&halfway, &AdminAction::Rebalance, None).unwrap_err();
        assert!(why.contains("moduli 2 and 4"), "{why}");
        assert_eq!(target(&halfway, &AdminAction::Reshard { shards: 2 }, None).unwrap().shards, 2);
    }
}
