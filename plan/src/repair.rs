//! Rules 1–3 and the health pause: get every shard to a leader, no stray learners, no
//! lost voters, at least `replication` voters, and voters only on spec nodes. These run
//! even while some nodes are unhealthy, since they restore redundancy; everything after
//! them waits until every spec node is healthy.

use crate::census::Census;
use crate::state::NodeId;
use crate::step::{Next, Step};

/// Rule 1a: every shard has a healthy leader among its voters and a healthy majority
/// (lost voters count as unhealthy); a membership change needs both, so until then
/// nothing moves. A majority missing because of lost voters says so, in the words of
/// [`replace_lost`], which would otherwise remove them.
pub(crate) fn await_leaders(c: &Census) -> Option<Next> {
    c.observed.shards.values().find_map(|shard| {
        let why = match shard.leader {
            None => "has no leader".to_owned(),
            Some(l) if !shard.voters.contains(&l) => format!("reports leader {l}, not a voter"),
            Some(l) if !c.healthy(l) => format!("is led by node {l}, which is not healthy"),
            Some(l) if shard.lost.contains(&l) => {
                format!("is led by node {l}, which reports it lost")
            }
            Some(_) if !c.healthy_majority(shard, shard.voters.iter().copied()) => {
                return Some(Next::Wait(
                    c.lost_without_majority(shard)
                        .unwrap_or_else(|| format!("shard {} has no healthy majority of voters", shard.id)),
                ));
            }
            Some(_) => return None,
        };
        Some(Next::Wait(format!("shard {} {why}", shard.id)))
    })
}

/// Rule 1b: a learner is an `AddReplica` that was interrupted. Finish it when the node
/// is a healthy spec node that still holds it (the step is idempotent and promotes
/// it); otherwise, its node leaving, down or reporting the shard lost, remove it,
/// which never touches the quorum.
pub(crate) fn finish_learners(c: &Census) -> Option<Next> {
    c.observed.shards.values().find_map(|shard| {
        let &node = shard.learners.first()?;
        let step = if c.spec.nodes.contains(&node) && c.serves(shard, node) {
            Step::AddReplica { shard: shard.id, node }
        } else {
            Step::RemoveReplica { shard: shard.id, node }
        };
        Some(Next::Step(step))
    })
}

/// Rule 1c: a voter whose node reports the shard lost holds nothing and answers every
/// Raft RPC for it with an error, yet still counts in the shard's quorum: the shard
/// runs one replica short and a further failure costs it its majority. Its node
/// cannot get a fresh replica while it is a member, so the lost voter is removed first,
/// even at the replication (the removal costs no redundancy: nothing was there), and
/// rule 2 then adds a replica back, on the least-loaded healthy spec node, which may
/// be the same node, now free to host a fresh one. The removal needs a quorum of the
/// current voter set: when the voters that still serve the shard are no healthy
/// majority of it, wait (rule 1a already does, with the same reason). The lowest
/// shard id first, and within a shard the lowest node id.
pub(crate) fn replace_lost(c: &Census) -> Option<Next> {
    c.observed.shards.values().find_map(|shard| {
        let node = shard.lost_voters().next()?;
        if let Some(why) = c.lost_without_majority(shard) {
            return Some(Next::Wait(why));
        }
        Some(c.remove_voter(shard, node, |_| true))
    })
}

/// Rule 2: the shard with the fewest voters below `replication` gains one on the
/// least-loaded healthy spec node; with too few healthy spec nodes, `Blocked`.
pub(crate) fn repair(c: &Census) -> Option<Next> {
    let shard = (c.observed.shards.values())
        .filter(|s| s.voters.len() < c.spec.replication)
        .min_by_key(|s| (s.voters.len(), s.id))?;
    Some(match c.new_home(shard) {
        Ok(node) => Next::Step(Step::AddReplica { shard: shard.id, node }),
        Err(next) => next,
    })
}

/// Rule 3: a voter on a node outside the spec moves out, add before remove, so the
/// shard never drops below `replication` voters; a leading one hands leadership to a
/// spec node first ([`Census::hand_off_before_move`]). The lowest shard id goes first and
/// finishes before the next starts.
pub(crate) fn drain(c: &Census) -> Option<Next> {
    c.observed.shards.values().find_map(|shard| {
        let drained = shard.voters.iter().copied().filter(|n| !c.spec.nodes.contains(n));
        // Unhealthy first (removing them never costs quorum), then non-leaders.
        let node: NodeId = drained.min_by_key(|&n| (c.serves(shard, n), shard.leader == Some(n), n))?;
        let in_spec = |n| c.spec.nodes.contains(&n);
        if shard.voters.len() > c.spec.replication {
            return Some(c.remove_voter(shard, node, in_spec));
        }
        if let Some(hand_off) = c.hand_off_before_move(shard, node, in_spec) {
            return Some(hand_off);
        }
        Some(match c.new_home(shard) {
            Ok(home) => Next::Step(Step::AddReplica { shard: shard.id, node: home }),
            Err(next) => next,
        })
    })
}

/// Between repair and the rest: resharding and balancing wait until every spec node
/// is healthy, so they neither route around a restarting node nor move replicas that
/// would move back once it returns. A node that stays down is for the spec to drop.
pub(crate) fn await_spec_nodes(c: &Census) -> Option<Next> {
    let down: Vec<String> = (c.spec.nodes.iter()).filter(|&&n| !c.healthy(n)).map(|n| n.to_string()).collect();
    (!down.is_empty()).then(|| {
        Next::Wait(format!("spec node(s) {} not healthy; resharding and balancing wait for them", down.join(", ")))
    })
}
