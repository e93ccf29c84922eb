//! Resharding and rebalancing for ringkv: from a [`Spec`] and an [`Observed`] ring, the
//! next safe [`Step`].
//!
//! Pure: no I/O, no clock, no randomness. A driver (`ringkv-ctl`'s, which the operator
//! runs too) observes the cluster through the nodes' admin API, calls [`next_step`],
//! executes the one step it returns, and observes again, until [`Next::Converged`]. Every step is idempotent and the planner
//! keeps no state, so a driver that dies between steps resumes by observing.
//!
//! [`state`] holds the inputs and their sanity checks, [`step`] the outputs. A call
//! builds a `census` (replica and leader counts per node), then asks the rules in
//! priority order; the first with something to say wins:
//!
//! 1. `repair`: every shard needs a healthy leader and majority (else wait); then a
//!    merge cut off after freezing its donor is finished (`reshard`); learners left by
//!    an interrupted add are promoted, or removed if their node is leaving, down or
//!    reports the shard lost; then a voter whose node reports the shard lost (it
//!    restarted without its replica) is removed, and rule 2 replaces it.
//! 2. `repair`: a shard below the replication gains a voter.
//! 3. `repair`: voters on nodes outside the spec are drained, add before remove.
//!
//!    Then, while any spec node is unhealthy, wait.
//! 4. `reshard`: merge from the top, co-locating the donor with the receiver first.
//! 5. `reshard`: split the shard with the smallest modulus.
//! 6. `balance`: a shard above the replication loses its most-loaded voter.
//! 7. `balance`: replicas move from the most- to the least-loaded node.
//! 8. `balance`: leaders move towards `S/N` per node.
//!
//! No step removes a voter unless the shard has more than the replication and keeps a
//! healthy majority without it, and a leader is never removed, only transferred away.
//! The one exemption from the replication bound is a lost voter (its node reports
//! holding nothing of the shard, so removing it costs no redundancy); its removal still
//! needs a healthy majority. Lost voters count as unhealthy for every majority and
//! never take a leadership.

mod balance;
mod census;
mod repair;
mod reshard;
pub mod state;
pub mod step;

#[cfg(test)]
mod tests;

pub use state::{NodeId, Observed, ShardId, ShardState, Spec};
pub use step::{Next, Step};

use census::Census;

/// The rules in priority order (see the crate documentation).
const RULES: [fn(&Census) -> Option<Next>; 11] = [
    repair::await_leaders,
    reshard::finish_merges,
    repair::finish_learners,
    repair::replace_lost,
    repair::repair,
    repair::drain,
    repair::await_spec_nodes,
    reshard::reshard,
    balance::trim_excess,
    balance::spread_replicas,
    balance::spread_leaders,
];

/// The next step from `observed` towards `spec`, or why there is none.
pub fn next_step(spec: &Spec, observed: &Observed) -> Next {
    if let Err(why) = spec.check().and_then(|()| observed.check_ring()) {
        return Next::Blocked(why);
    }
    let census = Census::new(spec, observed);
    RULES.iter().find_map(|rule| rule(&census)).unwrap_or(Next::Converged)
}

/// Whether `observed` is the ring `spec` asks for, balanced: `spec.shards` shards each
/// with that modulus, each with exactly `replication` voters on spec nodes, no
/// learners, no lost voters and a leader among its voters; every spec node holding its
/// share of replicas (`S·R/N`) and of leaders (`S/N`), rounded down or up (so any two
/// nodes differ by at most one). Says what is off first.
/// Node health is not part of it: [`next_step`] waits for unhealthy spec nodes on its
/// own.
pub fn is_balanced(spec: &Spec, observed: &Observed) -> Result<(), String> {
    spec.check()?;
    observed.check_ring()?;
    if observed.shards.len() != spec.shards as usize {
        return Err(format!("{} shards observed, spec asks for {}", observed.shards.len(), spec.shards));
    }
    for shard in observed.shards.values() {
        let id = shard.id;
        if shard.modulus != spec.shards {
            return Err(format!("shard {id} has modulus {}", shard.modulus));
        }
        if shard.frozen {
            return Err(format!("shard {id} is frozen for a merge"));
        }
        if !shard.learners.is_empty() {
            return Err(format!("shard {id} has learners {:?}", shard.learners));
        }
        if let Some(n) = shard.lost_voters().next() {
            return Err(format!("shard {id} has a voter on node {n} that reports it lost"));
        }
        if shard.voters.len() != spec.replication {
            return Err(format!("shard {id} has {} voters", shard.voters.len()));
        }
        if let Some(n) = shard.voters.iter().find(|n| !spec.nodes.contains(n)) {
            return Err(format!("shard {id} has a voter on node {n}, outside the spec"));
        }
        if !shard.leader.is_some_and(|l| shard.voters.contains(&l)) {
            return Err(format!("shard {id} has no leader among its voters"));
        }
    }
    let census = Census::new(spec, observed);
    balance::replica_spread(&census)?;
    balance::leader_spread(&census)
}
