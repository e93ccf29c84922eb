//! Rules 6–8 and the balance predicate: every spec node holds about `S·R/N` replicas
//! and leads about `S/N` shards.
//!
//! "About" is exact: a count `c` is balanced when it is the even share rounded down or
//! up, `⌊S·R/N⌋ ≤ c ≤ ⌈S·R/N⌉`, so the counts of any two nodes differ by at most one
//! (within ±1 of the share is not enough: 7/6/6/5 replicas on four nodes are each within
//! one of 6, and 6/6/6/6 is possible). When some node is off, the most- and least-loaded
//! nodes differ by at least two: one is past a rounding of the mean, so another is on
//! the other side of the mean.
//!
//! Rules 6 and 7 cannot ping-pong. Rule 7 runs only when no shard has excess voters, so
//! the spec nodes hold exactly `S·R` voters; then "some node is off its share by more
//! than one" implies the most-loaded node A and least-loaded node B differ by at least
//! two. Rule 7 adds a replica of a shard on A to B; rule 6 then removes the voter of
//! that shard with the most replicas, highest id first, which is A (the highest id
//! among the most-loaded) and never B (now at most A's count minus one). Each such pair
//! lowers the sum of squared counts by `2(a − b) − 2 > 0`, so balancing terminates.
//! Rule 8 transfers leadership from a node to one leading at least two fewer, which
//! lowers the sum of squared leader counts the same way, or takes the neutral first
//! hop of a chain towards such a transfer (see [`leader_chain`]).

use std::collections::{BTreeMap, VecDeque};

use crate::census::Census;
use crate::state::NodeId;
use crate::step::{Next, Step};

/// Rule 6: a shard with more voters than `replication` loses the voter on the node with
/// the most replicas (ties: highest id), after a leader transfer if that node leads.
/// A lost voter would go first (it holds nothing), though rule 1c removes those
/// before this rule runs.
pub(crate) fn trim_excess(c: &Census) -> Option<Next> {
    let shard = (c.observed.shards.values()).find(|s| s.voters.len() > c.spec.replication)?;
    let node = (shard.voters.iter().copied()).max_by_key(|&n| (shard.lost.contains(&n), c.voters(n), n))?;
    Some(c.remove_voter(shard, node, |_| true))
}

/// Rule 7: when replicas are unbalanced, the most-loaded spec node A (ties: highest id)
/// gives a shard to the least-loaded B (ties: lowest id): an `AddReplica` on B now, and
/// rule 6 removes A's replica next round. Prefers a shard A does not lead; when A
/// leads it, leadership moves first ([`Census::hand_off_before_move`]).
pub(crate) fn spread_replicas(c: &Census) -> Option<Next> {
    replica_spread(c).err()?;
    let nodes = || c.spec.nodes.iter().copied();
    let from = nodes().max_by_key(|&n| c.voters(n))?;
    let to = nodes().min_by_key(|&n| c.voters(n))?;
    if c.voters(from) < c.voters(to) + 2 {
        return None; // unreachable with exactly S·R voters (see the module comment)
    }
    let shard = (c.observed.shards.values())
        .filter(|s| s.voters.contains(&from) && !s.voters.contains(&to))
        .min_by_key(|s| (s.leader == Some(from), s.id))?;
    if let Some(hand_off) = c.hand_off_before_move(shard, from, |_| true) {
        return Some(hand_off);
    }
    Some(Next::Step(Step::AddReplica { shard: shard.id, node: to }))
}

/// Rule 8: when leaders are unbalanced, move one leadership to a voter of the same
/// shard that leads at least two fewer shards and serves it (never a lost voter): the
/// widest such gap first (ties: lowest shard id, then lowest node id). When no single
/// transfer helps, start a chain.
pub(crate) fn spread_leaders(c: &Census) -> Option<Next> {
    leader_spread(c).err()?;
    let mut best: Option<(usize, Step)> = None;
    for shard in c.observed.shards.values() {
        let Some(leader) = shard.leader else { continue };
        for &to in shard.voters.iter().filter(|&&n| c.serves(shard, n)) {
            let gap = c.leaders(leader).saturating_sub(c.leaders(to));
            if gap >= 2 && best.as_ref().is_none_or(|(g, _)| gap > *g) {
                best = Some((gap, Step::TransferLeader { shard: shard.id, to }));
            }
        }
    }
    best.map(|(_, step)| step).or_else(|| leader_chain(c)).map(Next::Step)
}

/// When every leader's voters lead at most one shard fewer, an overloaded node can
/// still shed a leadership along a chain: `L → x1 → … → U` (each arrow "leads a shard
/// on which the next is a voter"), with `U` leading two fewer than `L`. Breadth-first
/// from all the most-loaded nodes, the first hop of the shortest chain. That hop is
/// neutral (`x1` leads one fewer than `L`, else a shorter chain or a single transfer
/// would exist) and makes `x1` a most-loaded node one hop closer to `U`, so after at
/// most the chain's length an improving transfer appears. `None` when no chain exists
/// (a placement whose nodes do not share shards); then leaders stay as they are.
fn leader_chain(c: &Census) -> Option<Step> {
    let most = c.spec.nodes.iter().map(|&n| c.leaders(n)).max()?;
    // Each reached node, with the first hop of the chain that reached it.
    let mut reached: BTreeMap<NodeId, Option<Step>> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for &n in c.spec.nodes.iter().filter(|&&n| c.leaders(n) == most) {
        reached.insert(n, None);
        queue.push_back(n);
    }
    while let Some(from) = queue.pop_front() {
        let first = reached.get(&from).cloned().flatten();
        for shard in c.observed.shards.values().filter(|s| s.leader == Some(from)) {
            for &to in &shard.voters {
                let eligible = c.spec.nodes.contains(&to) && c.serves(shard, to);
                if reached.contains_key(&to) || !eligible {
                    continue;
                }
                let hop = first.clone().unwrap_or(Step::TransferLeader { shard: shard.id, to });
                if c.leaders(to) + 2 <= most {
                    return Some(hop);
                }
                reached.insert(to, Some(hop));
                queue.push_back(to);
            }
        }
    }
    None
}

/// Whether every spec node's voter count is `S·R/N` rounded down or up.
pub(crate) fn replica_spread(c: &Census) -> Result<(), String> {
    let total = c.shard_count() * c.spec.replication;
    spread(c, total, "replicas", |n| c.voters(n))
}

/// Whether every spec node's leader count is `S/N` rounded down or up.
pub(crate) fn leader_spread(c: &Census) -> Result<(), String> {
    spread(c, c.shard_count(), "leaders", |n| c.leaders(n))
}

fn spread(c: &Census, total: usize, what: &str, count: impl Fn(NodeId) -> usize) -> Result<(), String> {
    let nodes = c.spec.nodes.len().max(1);
    let (low, high) = (total / nodes, total.div_ceil(nodes));
    match c.spec.nodes.iter().find(|&&n| !(low..=high).contains(&count(n))) {
        None => Ok(()),
        Some(&n) => Err(format!(
            "node {n} has {} {what}; the even share is {total}/{nodes}, so each node \
             should have {}",
            count(n),
            if low == high { format!("{low}") } else { format!("{low} or {high}") }
        )),
    }
}
