//! Rules 1–3 and the health pause: get every shard to a leader, no stray learners, at
//! least `replication` voters, and voters only on spec nodes. These run even while some
//! nodes are unhealthy, since they restore redundancy; everything after them waits
//! until every spec node is healthy.

use crate::census::Census;
use crate::state::NodeId;
use crate::step::{Next, Step};

/// Rule 1a: every shard has a healthy leader among its voters and a healthy majority;
/// a membership change needs both, so until then nothing moves.
pub(crate) fn await_leaders(c: &Census) -> Option<Next> {
    c.observed.shards.values().find_map(|shard| {
        let why = match shard.leader {
            None => "has no leader".to_owned(),
            Some(l) if !shard.voters.contains(&l) => format!("reports leader {l}, not a voter"),
            Some(l) if !c.healthy(l) => format!("is led by node {l}, which is not healthy"),
            Some(_) if !c.healthy_majority(shard.voters.iter().copied()) => {
                "has no healthy majority of voters".to_owned()
            }
            Some(_) => return None,
        };
        Some(Next::Wait(format!("shard {} {why}", shard.id)))
    })
}

/// Rule 1b: a learner is an `AddReplica` that was interrupted. Finish it when the node
/// is a healthy spec node (the step is idempotent and promotes it); otherwise remove
/// it, which never touches the quorum.
pub(crate) fn finish_learners(c: &Census) -> Option<Next> {
    c.observed.shards.values().find_map(|shard| {
        let &node = shard.learners.first()?;
        let step = if c.spec.nodes.contains(&node) && c.healthy(node) {
            Step::AddReplica { shard: shard.id, node }
        } else {
            Step::RemoveReplica { shard: shard.id, node }
        };
        Some(Next::Step(step))
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
/// shard never drops below `replication` voters. The lowest shard id goes first and
/// finishes before the next starts.
pub(crate) fn drain(c: &Census) -> Option<Next> {
    c.observed.shards.values().find_map(|shard| {
        let drained = shard.voters.iter().copied().filter(|n| !c.spec.nodes.contains(n));
        // Unhealthy first (removing them never costs quorum), then non-leaders.
        let node: NodeId = drained.min_by_key(|&n| (c.healthy(n), shard.leader == Some(n), n))?;
        if shard.voters.len() > c.spec.replication {
            return Some(c.remove_voter(shard, node, |n| c.spec.nodes.contains(&n)));
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
    let down: Vec<String> =
        (c.spec.nodes.iter()).filter(|&&n| !c.healthy(n)).map(|n| n.to_string()).collect();
    (!down.is_empty()).then(|| {
        Next::Wait(format!(
            "spec node(s) {} not healthy; resharding and balancing wait for them",
            down.join(", ")
        ))
    })
}
