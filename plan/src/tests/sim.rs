//! Simulations: a tiny in-memory cluster applies each step the way the nodes would, and
//! `next_step` drives it to convergence. Every step is checked for safety before it is
//! applied and every state after it: the ring stays a partition, no shard loses its
//! healthy majority or drops below the replication it had, a leader is never removed.
//! A lost replica (a member whose node reports the shard lost) counts as neither
//! healthy nor held, and only its removal clears it.

use std::collections::{BTreeMap, BTreeSet};

use super::{observed, ring, shard, spec};
use crate::{is_balanced, next_step, Next, NodeId, Observed, ShardId, ShardState, Spec, Step};

/// What the nodes do when the driver sends `step`; panics on a step they would refuse
/// (or that the planner must never send).
fn apply(step: &Step, observed: &mut Observed) {
    let shards = &mut observed.shards;
    match *step {
        Step::Split { shard, modulus } => {
            let s = shards.get_mut(&shard).expect("split of a known shard");
            assert_eq!(s.modulus * 2, modulus, "a split doubles the modulus");
            s.modulus = modulus;
            let mut new = s.clone();
            new.id = shard + modulus / 2;
            assert!(shards.insert(new.id, new).is_none(), "a split creates a new shard");
        }
        Step::Merge { receiver, donor } => {
            let d = shards.remove(&donor).expect("merge of a known donor");
            let r = shards.get_mut(&receiver).expect("merge into a known receiver");
            assert_eq!(r.modulus, d.modulus, "merged shards are siblings");
            assert_eq!(donor, receiver + r.modulus / 2, "the donor is the upper sibling");
            assert_eq!(r.voters, d.voters, "merged shards are co-located");
            assert!(r.learners.is_empty() && d.learners.is_empty(), "no learners in a merge");
            assert!(r.lost.is_empty() && d.lost.is_empty(), "no lost replicas in a merge");
            r.modulus /= 2;
        }
        Step::AddReplica { shard, node } => {
            let s = shards.get_mut(&shard).expect("add to a known shard");
            assert!(!s.lost.contains(&node), "a lost replica is removed, never promoted");
            s.learners.remove(&node);
            s.voters.insert(node);
        }
        Step::RemoveReplica { shard, node } => {
            let s = shards.get_mut(&shard).expect("remove from a known shard");
            assert_ne!(s.leader, Some(node), "a leader is transferred away, never removed");
            assert!(s.voters.remove(&node) || s.learners.remove(&node), "remove a member");
            s.lost.remove(&node);
        }
        Step::TransferLeader { shard, to } => {
            let s = shards.get_mut(&shard).expect("transfer in a known shard");
            assert!(s.voters.contains(&to), "leadership goes to a voter");
            assert!(!s.lost.contains(&to), "a lost replica cannot lead");
            s.leader = Some(to);
        }
    }
}

/// An `AddReplica` that the driver's death cut short: the node joined as a learner.
fn apply_interrupted(step: &Step, observed: &mut Observed) {
    match *step {
        Step::AddReplica { shard, node } if !observed.shards[&shard].learners.contains(&node) => {
            let s = observed.shards.get_mut(&shard).expect("add to a known shard");
            if !s.voters.contains(&node) {
                s.learners.insert(node);
            }
        }
        _ => apply(step, observed),
    }
}

/// Whether more than half of `voters` (of `shard`) are healthy and not lost.
fn healthy_majority(observed: &Observed, shard: &ShardState, voters: &BTreeSet<NodeId>) -> bool {
    let serving = voters.iter().filter(|&&n| observed.healthy(n) && !shard.lost.contains(&n));
    2 * serving.count() > voters.len()
}

/// The voters that hold the shard: all but the lost ones.
fn held(shard: &ShardState) -> usize {
    shard.voters.difference(&shard.lost).count()
}

/// What must hold for `step` before it is applied.
fn check_step(spec: &Spec, observed: &Observed, step: &Step, last_added: Option<&Step>) {
    let says = step.describe();
    match *step {
        Step::AddReplica { shard, node } => {
            assert!(spec.nodes.contains(&node) && observed.healthy(node), "{says}: bad home");
            assert!(!observed.shards[&shard].lost.contains(&node), "{says}: a lost replica");
        }
        Step::TransferLeader { shard, to } => {
            assert!(observed.healthy(to), "{says}: unhealthy");
            assert!(!observed.shards[&shard].lost.contains(&to), "{says}: a lost replica");
        }
        Step::RemoveReplica { shard, node } => {
            let s = &observed.shards[&shard];
            if s.voters.contains(&node) {
                let mut left = s.voters.clone();
                left.remove(&node);
                // A lost voter holds nothing: removing it at the replication costs none.
                let spare = s.voters.len() > spec.replication || s.lost.contains(&node);
                assert!(spare, "{says}: below the replication");
                assert!(healthy_majority(observed, s, &s.voters), "{says}: no quorum to commit");
                assert!(healthy_majority(observed, s, &left), "{says}: majority lost");
            }
            let undo = Step::AddReplica { shard, node };
            assert_ne!(last_added, Some(&undo), "{says}: undoes the add before it");
        }
        Step::Split { .. } | Step::Merge { .. } => {}
    }
}

/// What must hold after every step, given the state before it.
fn check_state(spec: &Spec, before: &Observed, after: &Observed, step: &Step) {
    let says = step.describe();
    if let Err(why) = after.check_ring() {
        panic!("{says}: the ring broke: {why}");
    }
    for (id, s) in &after.shards {
        let Some(was) = before.shards.get(id) else { continue };
        if held(was) >= spec.replication {
            assert!(held(s) >= spec.replication, "{says}: shard {id} under-replicated");
        }
        if healthy_majority(before, was, &was.voters) {
            assert!(healthy_majority(after, s, &s.voters), "{says}: shard {id} lost its majority");
        }
    }
}

struct Run {
    steps: Vec<Step>,
    end: Next,
    observed: Observed,
}

/// Drives `observed` towards `spec` until the planner stops giving steps; panics after
/// `max_steps`. Every `interrupt`-th `AddReplica` (if any) stops at the learner.
fn run(spec: &Spec, mut observed: Observed, max_steps: usize, interrupt: Option<usize>) -> Run {
    let mut steps: Vec<Step> = Vec::new();
    let mut adds = 0;
    loop {
        let next = next_step(spec, &observed);
        let Next::Step(step) = next else {
            return Run { steps, end: next, observed };
        };
        assert!(steps.len() < max_steps, "not done after {max_steps} steps: {}", step.describe());
        let last_added = steps.iter().rev().find(|s| match (s, &step) {
            (Step::AddReplica { shard: a, .. }, Step::RemoveReplica { shard: b, .. }) => a == b,
            _ => false,
        });
        check_step(spec, &observed, &step, last_added);
        let before = observed.clone();
        if matches!(step, Step::AddReplica { .. }) {
            adds += 1;
        }
        match interrupt {
            Some(every) if matches!(step, Step::AddReplica { .. }) && adds % every == 0 => {
                apply_interrupted(&step, &mut observed);
            }
            _ => apply(&step, &mut observed),
        }
        check_state(spec, &before, &observed, &step);
        steps.push(step);
    }
}

/// Runs to convergence and checks the result is balanced and stays converged.
fn converge(spec: &Spec, observed: Observed, max_steps: usize) -> Run {
    let run = run(spec, observed, max_steps, None);
    assert_eq!(run.end, Next::Converged, "after {} steps", run.steps.len());
    assert_eq!(is_balanced(spec, &run.observed), Ok(()));
    assert_eq!(next_step(spec, &run.observed), Next::Converged, "converged is idempotent");
    run
}

fn replicas(observed: &Observed) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for s in observed.shards.values() {
        for &n in &s.voters {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts
}

fn leaders(observed: &Observed) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for leader in observed.shards.values().filter_map(|s| s.leader) {
        *counts.entry(leader).or_default() += 1;
    }
    counts
}

#[test]
fn doubling_on_three_nodes_only_splits() {
    let three = [1, 2, 3];
    let run = converge(&spec(8, 3, &three), ring(4, &three, 3), 20);
    let splits = run.steps.iter().filter(|s| matches!(s, Step::Split { .. })).count();
    assert_eq!(splits, 4);
    assert_eq!(run.observed.shards.keys().copied().collect::<Vec<ShardId>>(), (0..8).collect::<Vec<_>>());
}

#[test]
fn eight_to_sixteen_to_four() {
    for nodes in [&[1, 2, 3][..], &[1, 2, 3, 4, 5]] {
        let grown = converge(&spec(16, 3, nodes), ring(8, nodes, 3), 100).observed;
        assert_eq!(grown.shards.len(), 16);
        let shrunk = converge(&spec(4, 3, nodes), grown, 300).observed;
        assert_eq!(shrunk.shards.len(), 4);
        assert!(shrunk.shards.values().all(|s| s.modulus == 4));
    }
}

#[test]
fn growing_from_three_to_five_nodes_spreads_replicas_and_leaders() {
    let five = [1, 2, 3, 4, 5];
    let mut start = ring(8, &[1, 2, 3], 3);
    start.nodes.extend([(4, true), (5, true)]);
    let run = converge(&spec(8, 3, &five), start, 100);
    let (replicas, leaders) = (replicas(&run.observed), leaders(&run.observed));
    for n in five {
        // Shares: 8·3/5 = 4.8 replicas and 8/5 = 1.6 leaders per node.
        let (r, l) = (replicas.get(&n).copied().unwrap_or(0), leaders.get(&n).copied().unwrap_or(0));
        assert!((4..=5).contains(&r), "node {n} holds {r} replicas");
        assert!((1..=2).contains(&l), "node {n} leads {l} shards");
    }
}

#[test]
fn shrinking_from_five_to_three_nodes_drains_the_leavers() {
    let run = converge(&spec(8, 3, &[1, 2, 3]), ring(8, &[1, 2, 3, 4, 5], 3), 100);
    let replicas = replicas(&run.observed);
    assert!(!replicas.contains_key(&4) && !replicas.contains_key(&5), "{replicas:?}");
}

#[test]
fn an_unhealthy_spec_node_pauses_resharding_until_it_returns() {
    let four = [1, 2, 3, 4];
    let spec = spec(16, 3, &four);
    let mut start = ring(8, &four, 3);
    start.nodes.insert(4, false);
    for s in start.shards.values_mut().filter(|s| s.leader == Some(4)) {
        s.leader = s.voters.first().copied();
    }
    let paused = run(&spec, start, 10, None);
    assert!(paused.steps.is_empty(), "{:?}", paused.steps);
    assert!(matches!(&paused.end, Next::Wait(m) if m.contains("spec node(s) 4 not healthy")));
    let mut back = paused.observed;
    back.nodes.insert(4, true);
    converge(&spec, back, 100);
}

#[test]
fn an_unhealthy_node_leaving_the_spec_is_drained_around() {
    let mut start = ring(8, &[1, 2, 3, 4], 3);
    start.nodes.insert(4, false);
    for s in start.shards.values_mut().filter(|s| s.leader == Some(4)) {
        s.leader = s.voters.first().copied();
    }
    let run = converge(&spec(8, 3, &[1, 2, 3]), start, 100);
    assert!(!replicas(&run.observed).contains_key(&4));
}

/// `observed` with the replica of `shard` on `node` reported lost by its node.
fn lose(mut observed: Observed, shard: ShardId, node: NodeId) -> Observed {
    let s = observed.shards.get_mut(&shard).expect("a known shard");
    assert!(s.voters.contains(&node) && s.leader != Some(node), "a non-leading voter");
    s.lost.insert(node);
    observed
}

#[test]
fn a_lost_replica_is_removed_then_replaced() {
    for nodes in [&[1, 2, 3][..], &[1, 2, 3, 4]] {
        // Shard 0 sits on nodes 1, 2, 3, led by 1; node 2 restarted without it.
        let start = lose(ring(4, nodes, 3), 0, 2);
        assert!(is_balanced(&spec(4, 3, nodes), &start).is_err(), "a lost voter is off");
        let run = converge(&spec(4, 3, nodes), start, 20);
        assert_eq!(run.steps[0], Step::RemoveReplica { shard: 0, node: 2 }, "{nodes:?}");
        assert!(matches!(run.steps[1], Step::AddReplica { shard: 0, .. }), "{nodes:?}: {:?}", run.steps);
        assert!(run.observed.shards.values().all(|s| s.lost.is_empty()), "{nodes:?}");
        assert!(run.observed.shards.values().all(|s| s.voters.len() == 3), "{nodes:?}");
    }
    // On three nodes the only home is node 2 itself, which hosts a fresh replica.
    let run = converge(&spec(4, 3, &[1, 2, 3]), lose(ring(4, &[1, 2, 3], 3), 0, 2), 20);
    let add = Step::AddReplica { shard: 0, node: 2 };
    assert_eq!(run.steps, vec![Step::RemoveReplica { shard: 0, node: 2 }, add]);
}

#[test]
fn two_lost_replicas_of_three_wait() {
    let three = [1, 2, 3];
    let start = lose(lose(ring(4, &three, 3), 0, 2), 0, 3);
    let run = run(&spec(4, 3, &three), start, 10, None);
    assert!(run.steps.is_empty(), "{:?}", run.steps);
    let why = "shard 0: replica on node 2 is lost and the rest is no healthy majority";
    let says = format!("{:?}", run.end);
    assert!(matches!(&run.end, Next::Wait(m) if m.contains(why)), "{says}");
}

#[test]
fn too_few_healthy_spec_nodes_is_blocked_after_what_can_be_done() {
    // Nodes 4 and 5 leave the spec, node 3 is down: shard 0 can swap 4 for 2, then
    // has nowhere to put the replica on 5.
    let start = observed(&[1, 2, 4, 5], &[3], vec![shard(0, 2, &[1, 4, 5], 1), shard(1, 2, &[1, 2, 3], 2)]);
    let run = run(&spec(2, 3, &[1, 2, 3]), start, 20, None);
    let says = format!("{:?}", run.end);
    assert!(matches!(&run.end, Next::Blocked(m) if m.contains("shard 0 needs a replica")), "{says}");
    let add = Step::AddReplica { shard: 0, node: 2 };
    assert_eq!(run.steps, vec![add, Step::RemoveReplica { shard: 0, node: 4 }]);
    // The spec below the replication is blocked outright.
    let end = next_step(&spec(2, 3, &[1, 2]), &ring(2, &[1, 2, 3], 3));
    assert!(matches!(end, Next::Blocked(m) if m.contains("spec lists 2 node(s)")));
}

#[test]
fn interrupted_adds_are_finished() {
    let five = [1, 2, 3, 4, 5];
    let mut start = ring(8, &[1, 2, 3], 3);
    start.nodes.extend([(4, true), (5, true)]);
    let run = run(&spec(16, 3, &five), start, 300, Some(2));
    assert!(run.steps.iter().any(|s| matches!(s, Step::AddReplica { .. })));
    assert_eq!(run.end, Next::Converged);
    assert_eq!(is_balanced(&spec(16, 3, &five), &run.observed), Ok(()));
}

#[test]
fn changing_the_spec_mid_resharding_converges() {
    let (grow, shrink) = (spec(16, 3, &[1, 2, 3, 4, 5]), spec(2, 3, &[2, 3, 4]));
    for cut in 0..40 {
        let mut observed = ring(4, &[1, 2, 3], 3);
        observed.nodes.extend([(4, true), (5, true)]);
        for _ in 0..cut {
            let Next::Step(step) = next_step(&grow, &observed) else { break };
            apply(&step, &mut observed);
        }
        converge(&shrink, observed, 200);
    }
}

/// A small deterministic generator, so the property loop needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A settled ring of `count` shards with `r` voters each on random `nodes` and a random
/// leader: unbalanced in general.
fn random_ring(count: u32, nodes: &[NodeId], r: usize, rng: &mut XorShift) -> Observed {
    let shards = (0..count).map(|id| {
        let mut pool = nodes.to_vec();
        let voters: Vec<NodeId> = (0..r).map(|_| pool.swap_remove(rng.below(pool.len()))).collect();
        shard(id, count, &voters, voters[rng.below(r)])
    });
    observed(nodes, &[], shards.collect())
}

#[test]
fn every_combination_converges_safely_and_balanced() {
    let layouts: [(&[NodeId], &[NodeId]); 7] = [
        (&[1], &[1]),
        (&[1, 2, 3], &[1, 2, 3]),
        (&[1, 2, 3], &[1, 2, 3, 4, 5]),
        (&[1, 2, 3, 4, 5], &[1, 2, 3]),
        (&[1, 2, 3, 4, 5], &[3, 4, 5, 6, 7]),
        (&[1, 2, 3, 4], &[1, 2, 3, 4, 5, 6, 7]),
        (&[1, 2, 3, 4, 5, 6, 7], &[2, 4]),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut cases = 0;
    for (from_nodes, to_nodes) in layouts {
        for (from_r, to_r) in [(1, 1), (3, 3), (1, 3), (3, 1), (2, 2), (5, 5), (5, 3)] {
            if from_r > from_nodes.len() || to_r > to_nodes.len() {
                continue;
            }
            for from_shards in [1, 2, 4, 8, 16] {
                for to_shards in [1, 2, 4, 8, 16, 32] {
                    let spec = spec(to_shards, to_r, to_nodes);
                    let start = random_ring(from_shards, from_nodes, from_r, &mut rng);
                    let mut all = start.clone();
                    all.nodes.extend(to_nodes.iter().map(|&n| (n, true)));
                    let interrupt = (cases % 3 == 0).then_some(3);
                    let run = run(&spec, all, 500, interrupt);
                    let context =
                        format!("{from_shards}x{from_r} on {from_nodes:?} -> {to_shards}x{to_r} on {to_nodes:?}");
                    assert_eq!(run.end, Next::Converged, "{context}");
                    assert_eq!(is_balanced(&spec, &run.observed), Ok(()), "{context}");
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 300, "{cases} cases");
}

/// Replica and leader counts per node of `nodes`, in that order.
fn counts(observed: &Observed, nodes: &[NodeId]) -> (Vec<usize>, Vec<usize>) {
    let shards = || observed.shards.values();
    let replicas = nodes.iter().map(|n| shards().filter(|s| s.voters.contains(n)).count()).collect();
    let leaders = nodes.iter().map(|n| shards().filter(|s| s.leader == Some(*n)).count()).collect();
    (replicas, leaders)
}

#[test]
fn adding_a_node_evens_replicas_and_leaders_exactly() {
    // Found on a real cluster: 8 shards, replication 3, a fourth node added converged at
    // 7/6/6/5 replicas and 3/2/2/1 leaders, each within one of the share (6 and 2) but
    // two apart where 6/6/6/6 and 2/2/2/2 are possible.
    let four = [1, 2, 3, 4];
    let mut start = ring(8, &[1, 2, 3], 3);
    start.nodes.insert(4, true);
    let four_run = run(&spec(8, 3, &four), start, 100, None);
    assert_eq!(four_run.end, Next::Converged);
    assert_eq!(counts(&four_run.observed, &four), (vec![6, 6, 6, 6], vec![2, 2, 2, 2]));
    // And on five nodes: 24 replicas and 8 leaders, any two nodes at most one apart.
    let five = [1, 2, 3, 4, 5];
    let mut start = ring(8, &[1, 2, 3], 3);
    start.nodes.extend([(4, true), (5, true)]);
    let five_run = run(&spec(8, 3, &five), start, 100, None);
    assert_eq!(five_run.end, Next::Converged);
    let (replicas, leaders) = counts(&five_run.observed, &five);
    for c in [&replicas, &leaders] {
        assert!(c.iter().max().unwrap() - c.iter().min().unwrap() <= 1, "{replicas:?} {leaders:?}");
    }
}
