//! Table-driven tests of `next_step` and `is_balanced`: each case is a spec, an
//! observation and the answer the planner must give. The simulations live in `sim`.

use std::collections::BTreeSet;

use super::*;

mod sim;

pub(crate) fn spec(shards: u32, replication: usize, nodes: &[NodeId]) -> Spec {
    Spec { shards, replication, nodes: nodes.iter().copied().collect() }
}

pub(crate) fn shard(id: ShardId, modulus: u32, voters: &[NodeId], leader: NodeId) -> ShardState {
    ShardState {
        id,
        modulus,
        voters: voters.iter().copied().collect(),
        learners: BTreeSet::new(),
        leader: Some(leader),
        frozen: false,
        lost: BTreeSet::new(),
    }
}

/// An observation in which `nodes` are healthy and `down` are not.
pub(crate) fn observed(nodes: &[NodeId], down: &[NodeId], shards: Vec<ShardState>) -> Observed {
    let nodes = (nodes.iter().map(|&n| (n, true))).chain(down.iter().map(|&n| (n, false)));
    Observed { nodes: nodes.collect(), shards: shards.into_iter().map(|s| (s.id, s)).collect() }
}

/// A settled ring of `count` shards over healthy `nodes`: shard `s` on `r` consecutive
/// nodes starting at `nodes[s % n]`, led by the first. Balanced by construction.
pub(crate) fn ring(count: u32, nodes: &[NodeId], r: usize) -> Observed {
    let shards = (0..count).map(|s| {
        let voters: Vec<NodeId> = (0..r).map(|i| nodes[(s as usize + i) % nodes.len()]).collect();
        shard(s, count, &voters, voters[0])
    });
    observed(nodes, &[], shards.collect())
}

/// Changes `observed` in place and hands it back, for one-line cases.
fn with(mut observed: Observed, change: impl FnOnce(&mut Observed)) -> Observed {
    change(&mut observed);
    observed
}

fn step(step: Step) -> Next {
    Next::Step(step)
}

fn add(shard: ShardId, node: NodeId) -> Next {
    step(Step::AddReplica { shard, node })
}

fn remove(shard: ShardId, node: NodeId) -> Next {
    step(Step::RemoveReplica { shard, node })
}

fn transfer(shard: ShardId, to: NodeId) -> Next {
    step(Step::TransferLeader { shard, to })
}

/// The kind of answer and, for `Wait` and `Blocked`, a fragment of the message.
#[derive(Debug)]
enum Want {
    Is(Next),
    Wait(&'static str),
    Blocked(&'static str),
}

struct Case {
    name: &'static str,
    spec: Spec,
    observed: Observed,
    want: Want,
}

fn case(name: &'static str, spec: Spec, observed: Observed, want: Want) -> Case {
    Case { name, spec, observed, want }
}

fn check(cases: Vec<Case>) {
    for Case { name, spec, observed, want } in cases {
        let got = next_step(&spec, &observed);
        let ok = match (&want, &got) {
            (Want::Is(want), got) => want == got,
            (Want::Wait(frag), Next::Wait(msg)) | (Want::Blocked(frag), Next::Blocked(msg)) => msg.contains(frag),
            _ => false,
        };
        assert!(ok, "{name}: want {want:?}, got {got:?}");
    }
}

#[test]
fn health_gates_come_first() {
    let three = [1, 2, 3];
    check(vec![
        case(
            "a settled, balanced ring is converged",
            spec(4, 3, &three),
            ring(4, &three, 3),
            Want::Is(Next::Converged),
        ),
        case(
            "a shard without a leader waits",
            spec(8, 3, &three),
            with(ring(4, &three, 3), |o| o.shards.get_mut(&2).unwrap().leader = None),
            Want::Wait("shard 2 has no leader"),
        ),
        case(
            "a leader on an unhealthy node waits",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| {
                o.nodes.insert(2, false);
            }),
            Want::Wait("shard 1 is led by node 2, which is not healthy"),
        ),
        case(
            "a leader that is not a voter waits",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| o.shards.get_mut(&0).unwrap().leader = Some(9)),
            Want::Wait("shard 0 reports leader 9"),
        ),
        case(
            "a shard with two of three voters down waits",
            spec(4, 3, &[1, 2, 3, 4, 5]),
            observed(&[1, 2, 3], &[4, 5], vec![shard(0, 2, &[1, 2, 3], 1), shard(1, 2, &[1, 4, 5], 1)]),
            Want::Wait("shard 1 has no healthy majority"),
        ),
        case(
            "an interrupted add is resumed",
            spec(4, 3, &[1, 2, 3, 4]),
            with(ring(4, &three, 3), |o| {
                o.nodes.insert(4, true);
                o.shards.get_mut(&3).unwrap().learners.insert(4);
            }),
            Want::Is(add(3, 4)),
        ),
        case(
            "a learner on a node leaving the spec is removed",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| {
                o.nodes.insert(4, true);
                o.shards.get_mut(&1).unwrap().learners.insert(4);
            }),
            Want::Is(remove(1, 4)),
        ),
        case(
            "a learner on an unhealthy spec node is removed",
            spec(4, 3, &[1, 2, 3, 4]),
            with(ring(4, &three, 3), |o| {
                o.nodes.insert(4, false);
                o.shards.get_mut(&1).unwrap().learners.insert(4);
            }),
            Want::Is(remove(1, 4)),
        ),
        case(
            "an unhealthy spec node pauses everything after repair",
            spec(8, 3, &[1, 2, 3, 4]),
            with(ring(4, &three, 3), |o| {
                o.nodes.insert(4, false);
            }),
            Want::Wait("spec node(s) 4 not healthy"),
        ),
    ]);
}

#[test]
fn spec_and_ring_must_make_sense() {
    let three = [1, 2, 3];
    check(vec![
        case(
            "fewer spec nodes than the replication is blocked",
            spec(4, 3, &[1, 2]),
            ring(4, &three, 3),
            Want::Blocked("spec lists 2 node(s) but replication is 3"),
        ),
        case(
            "a shard count that is no power of two is blocked",
            spec(6, 3, &three),
            ring(4, &three, 3),
            Want::Blocked("must be a power of two"),
        ),
        case("replication zero is blocked", spec(4, 0, &three), ring(4, &three, 3), Want::Blocked("replication 0")),
        case(
            "an empty ring is blocked",
            spec(4, 3, &three),
            observed(&three, &[], vec![]),
            Want::Blocked("bootstrapped"),
        ),
        case(
            "overlapping shards are blocked",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| o.shards.get_mut(&1).unwrap().modulus = 2),
            Want::Blocked("shards 1 (modulus 2) and 3 (modulus 4) own the same keys"),
        ),
        case(
            "a gap in the ring is blocked",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| {
                o.shards.remove(&3);
            }),
            Want::Blocked("unowned"),
        ),
        case(
            "a modulus not above the id is blocked",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| o.shards.get_mut(&3).unwrap().modulus = 2),
            Want::Blocked("shard 3 has modulus 2"),
        ),
    ]);
}

#[test]
fn repair_and_drain_keep_replication() {
    let four = [1, 2, 3, 4];
    check(vec![
        case(
            "a shard below the replication gains the least-loaded healthy node",
            spec(2, 3, &four),
            observed(&four, &[], vec![shard(0, 2, &[1, 2, 3], 1), shard(1, 2, &[1, 2], 2)]),
            Want::Is(add(1, 4)),
        ),
        case(
            "ties go to the lowest id, unhealthy nodes never gain replicas",
            spec(2, 3, &four),
            observed(&[1, 2, 4], &[3], vec![shard(0, 2, &[1, 2], 1), shard(1, 2, &[1, 2], 2)]),
            Want::Is(add(0, 4)),
        ),
        case(
            "too few healthy spec nodes to repair is blocked",
            spec(2, 3, &[1, 2, 3]),
            observed(&[1, 2], &[3], vec![shard(0, 2, &[1, 2], 1), shard(1, 2, &[1, 2, 3], 2)]),
            Want::Blocked("only 2 of the 3 spec nodes are healthy (unhealthy: 3)"),
        ),
        case(
            "a drained voter gets its replacement first",
            spec(2, 3, &four),
            observed(&[1, 2, 3, 4, 5], &[], vec![shard(0, 2, &[1, 2, 5], 1), shard(1, 2, &[2, 3, 4], 2)]),
            Want::Is(add(0, 3)),
        ),
        case(
            "then the drained voter goes",
            spec(2, 3, &four),
            observed(&[1, 2, 3, 4, 5], &[], vec![shard(0, 2, &[1, 2, 3, 5], 1), shard(1, 2, &[2, 3, 4], 2)]),
            Want::Is(remove(0, 5)),
        ),
        case(
            "a drained leader hands over to the spec voter leading fewest shards",
            spec(2, 3, &four),
            observed(&[1, 2, 3, 4, 5], &[], vec![shard(0, 2, &[1, 2, 3, 5], 5), shard(1, 2, &[2, 3, 4], 2)]),
            Want::Is(transfer(0, 1)),
        ),
        case(
            "a drained leader hands over before its replacement joins (while the shard \
             has three voters a node hands over at once; with four, writes wait ~0.9 s)",
            spec(2, 3, &four),
            observed(&[1, 2, 3, 4, 5], &[], vec![shard(0, 2, &[1, 2, 5], 5), shard(1, 2, &[2, 3, 4], 2)]),
            Want::Is(transfer(0, 1)),
        ),
        case(
            "an unhealthy drained node is replaced like a healthy one",
            spec(2, 3, &[1, 2, 3]),
            observed(&[1, 2, 3], &[4], vec![shard(0, 2, &[1, 2, 4], 1), shard(1, 2, &[1, 2, 3], 2)]),
            Want::Is(add(0, 3)),
        ),
        case(
            "a drain that needs an unhealthy spec node is blocked",
            spec(2, 3, &[1, 2, 3]),
            observed(&[1, 2, 4], &[3], vec![shard(0, 2, &[1, 2, 4], 1), shard(1, 2, &[1, 2, 3], 2)]),
            Want::Blocked("shard 0 needs a replica on another node"),
        ),
        case(
            "no removal that leaves no healthy majority",
            spec(2, 3, &[1, 2, 3]),
            observed(&[1, 4, 5], &[2, 3], vec![shard(0, 2, &[1, 2, 3, 4, 5], 1), shard(1, 2, &[1, 4, 5], 1)]),
            Want::Wait("removing node 4 from shard 0 would leave it without a healthy majority"),
        ),
    ]);
}

/// `observed` with the replica of `shard` on `node` reported lost by its node.
fn lost(mut observed: Observed, shard: ShardId, node: NodeId) -> Observed {
    observed.shards.get_mut(&shard).unwrap().lost.insert(node);
    observed
}

#[test]
fn lost_replicas_are_removed_for_repair_to_replace() {
    let three = [1, 2, 3];
    let (four, five) = ([1, 2, 3, 4], [1, 2, 3, 4, 5]);
    check(vec![
        case(
            "a lost voter is removed, even at the replication",
            spec(4, 3, &three),
            lost(ring(4, &three, 3), 0, 2),
            Want::Is(remove(0, 2)),
        ),
        case(
            "before a shard below the replication gains a voter",
            spec(4, 3, &four),
            with(lost(ring(4, &four, 3), 2, 4), |o| {
                o.shards.get_mut(&1).unwrap().voters.remove(&4);
            }),
            Want::Is(remove(2, 4)),
        ),
        case(
            "of five voters with two lost, the lowest lost goes first",
            spec(2, 5, &five),
            lost(lost(observed(&five, &[], vec![shard(0, 2, &five, 1), shard(1, 2, &five, 2)]), 0, 4), 0, 3),
            Want::Is(remove(0, 3)),
        ),
        case(
            "two lost voters of three wait",
            spec(4, 3, &three),
            lost(lost(ring(4, &three, 3), 0, 2), 0, 3),
            Want::Wait("shard 0: replica on node 2 is lost and the rest is no healthy majority"),
        ),
        case(
            "a lost voter and a down voter of three wait",
            spec(2, 3, &three),
            lost(observed(&[1, 2], &[3], vec![shard(0, 2, &three, 1), shard(1, 2, &three, 1)]), 0, 2),
            Want::Wait("shard 0: replica on node 2 is lost and the rest is no healthy majority"),
        ),
        case(
            "a leader reported lost is waited for, never removed",
            spec(4, 3, &three),
            lost(ring(4, &three, 3), 0, 1),
            Want::Wait("shard 0 is led by node 1, which reports it lost"),
        ),
        case(
            "a lost learner on a healthy spec node is removed, not promoted",
            spec(4, 3, &four),
            with(ring(4, &three, 3), |o| {
                o.nodes.insert(4, true);
                let s = o.shards.get_mut(&1).unwrap();
                s.learners.insert(4);
                s.lost.insert(4);
            }),
            Want::Is(remove(1, 4)),
        ),
        case(
            "a lost report from a node that is no member is ignored",
            spec(4, 3, &three),
            lost(ring(4, &three, 3), 0, 4),
            Want::Is(Next::Converged),
        ),
    ]);
}

#[test]
fn resharding_splits_and_merges_in_ring_order() {
    let three = [1, 2, 3];
    check(vec![
        case(
            "doubling starts at shard 0",
            spec(8, 3, &three),
            ring(4, &three, 3),
            Want::Is(step(Step::Split { shard: 0, modulus: 8 })),
        ),
        case(
            "mid-doubling, the next shard at the old modulus splits",
            spec(8, 3, &three),
            with(ring(4, &three, 3), |o| {
                o.shards.get_mut(&0).unwrap().modulus = 8;
                o.shards.insert(4, shard(4, 8, &three, 1));
            }),
            Want::Is(step(Step::Split { shard: 1, modulus: 8 })),
        ),
        case(
            "mid-doubling with the spec back at the old count, the split is undone",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| {
                o.shards.get_mut(&0).unwrap().modulus = 8;
                o.shards.insert(4, shard(4, 8, &three, 1));
            }),
            Want::Is(step(Step::Merge { receiver: 0, donor: 4 })),
        ),
        case(
            "halving merges the highest shard into its sibling",
            spec(2, 3, &three),
            ring(4, &three, 3),
            Want::Is(step(Step::Merge { receiver: 1, donor: 3 })),
        ),
        case(
            "the donor first gains the receiver's voters",
            spec(2, 3, &[1, 2, 3, 4, 5]),
            observed(
                &[1, 2, 3, 4, 5],
                &[],
                vec![
                    shard(0, 4, &[1, 2, 3], 1),
                    shard(1, 4, &[2, 3, 4], 2),
                    shard(2, 4, &[3, 4, 5], 3),
                    shard(3, 4, &[4, 5, 1], 4),
                ],
            ),
            Want::Is(add(3, 2)),
        ),
        case(
            "then loses a voter the receiver lacks, not its leader",
            spec(2, 3, &[1, 2, 3, 4, 5]),
            observed(
                &[1, 2, 3, 4, 5],
                &[],
                vec![
                    shard(0, 4, &[1, 2, 3], 1),
                    shard(1, 4, &[2, 3, 4], 2),
                    shard(2, 4, &[3, 4, 5], 3),
                    shard(3, 4, &[1, 2, 4, 5], 4),
                ],
            ),
            Want::Is(remove(3, 1)),
        ),
        case(
            "and hands leadership to a voter it keeps before losing its leader",
            spec(2, 3, &[1, 2, 3, 4, 5]),
            observed(
                &[1, 2, 3, 4, 5],
                &[],
                vec![
                    shard(0, 4, &[1, 2, 3], 1),
                    shard(1, 4, &[2, 3, 4], 2),
                    shard(2, 4, &[3, 4, 5], 3),
                    shard(3, 4, &[2, 3, 4, 5], 5),
                ],
            ),
            Want::Is(transfer(3, 4)),
        ),
        case(
            "a merge cut off after its freeze is finished first, whatever the spec says",
            spec(8, 3, &three),
            with(ring(4, &three, 3), |o| o.shards.get_mut(&3).unwrap().frozen = true),
            Want::Is(step(Step::Merge { receiver: 1, donor: 3 })),
        ),
        case(
            "even before a drain, which would take the donor's replicas away",
            spec(4, 3, &[1, 2, 3, 4]),
            with(ring(4, &[1, 2, 3, 4, 5], 3), |o| {
                o.shards.insert(2, shard(2, 4, &[3, 4, 5], 3));
                o.shards.get_mut(&2).unwrap().frozen = true;
                o.shards.insert(0, shard(0, 4, &[3, 4, 5], 3));
            }),
            Want::Is(step(Step::Merge { receiver: 0, donor: 2 })),
        ),
        case(
            "a frozen shard whose receiver split meanwhile is waited for",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| {
                o.shards.get_mut(&3).unwrap().frozen = true;
                o.shards.get_mut(&1).unwrap().modulus = 8;
                o.shards.insert(5, shard(5, 8, &three, 1));
            }),
            Want::Wait("shard 3 is frozen for a merge whose receiver is not observed"),
        ),
        case(
            "and does not hold up another frozen shard's merge",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| {
                o.shards.get_mut(&3).unwrap().frozen = true;
                o.shards.get_mut(&1).unwrap().modulus = 8;
                o.shards.insert(5, shard(5, 8, &three, 1));
                o.shards.get_mut(&2).unwrap().frozen = true;
            }),
            Want::Is(step(Step::Merge { receiver: 0, donor: 2 })),
        ),
        case(
            "a split waits for the shard to shed its excess voter",
            spec(8, 3, &[1, 2, 3, 4]),
            observed(&[1, 2, 3, 4], &[], vec![shard(0, 2, &[1, 2, 3, 4], 1), shard(1, 2, &[2, 3, 4], 2)]),
            Want::Is(remove(0, 4)),
        ),
    ]);
}

#[test]
fn balancing_moves_replicas_then_leaders() {
    let four = [1, 2, 3, 4];
    check(vec![
        case(
            "excess goes from the most-loaded voter, highest id first",
            spec(2, 3, &four),
            observed(&four, &[], vec![shard(0, 2, &[1, 2, 3, 4], 1), shard(1, 2, &[1, 2, 3], 2)]),
            Want::Is(remove(0, 3)),
        ),
        case(
            "excess on the leader moves leadership first",
            spec(2, 3, &four),
            observed(&four, &[], vec![shard(0, 2, &[1, 2, 3, 4], 3), shard(1, 2, &[1, 2, 3], 2)]),
            Want::Is(transfer(0, 1)),
        ),
        case(
            "a new empty node takes a shard its busiest peer does not lead",
            spec(4, 3, &four),
            with(ring(4, &[1, 2, 3], 3), |o| {
                o.nodes.insert(4, true);
            }),
            Want::Is(add(0, 4)),
        ),
        case(
            "replicas within one of the share are left alone; leaders are spread",
            spec(4, 3, &[1, 2, 3]),
            with(ring(4, &[1, 2, 3], 3), |o| {
                o.shards.values_mut().for_each(|s| s.leader = Some(1));
            }),
            Want::Is(transfer(0, 2)),
        ),
        case(
            "with no single transfer that helps, leadership moves along a chain",
            spec(4, 2, &[1, 2, 3, 4, 5]),
            observed(
                &[1, 2, 3, 4, 5],
                &[],
                vec![
                    shard(0, 4, &[1, 2], 1),
                    shard(1, 4, &[1, 3], 1),
                    shard(2, 4, &[2, 4], 2),
                    shard(3, 4, &[3, 5], 3),
                ],
            ),
            Want::Is(transfer(0, 2)),
        ),
        case(
            "and the chain's next hop is a single transfer that helps",
            spec(4, 2, &[1, 2, 3, 4, 5]),
            observed(
                &[1, 2, 3, 4, 5],
                &[],
                vec![
                    shard(0, 4, &[1, 2], 2),
                    shard(1, 4, &[1, 3], 1),
                    shard(2, 4, &[2, 4], 2),
                    shard(3, 4, &[3, 5], 3),
                ],
            ),
            Want::Is(transfer(2, 4)),
        ),
    ]);
}

#[test]
fn is_balanced_says_what_is_off() {
    let three = [1, 2, 3];
    let cases: Vec<(&str, Spec, Observed, Option<&str>)> = vec![
        ("settled", spec(4, 3, &three), ring(4, &three, 3), None),
        ("settled with R=1", spec(8, 1, &three), ring(8, &three, 1), None),
        ("wrong count", spec(8, 3, &three), ring(4, &three, 3), Some("4 shards observed")),
        (
            "learner",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| {
                o.shards.get_mut(&0).unwrap().learners.insert(4);
            }),
            Some("learners"),
        ),
        ("drained voter", spec(4, 2, &[1, 2]), ring(4, &three, 2), Some("outside the spec")),
        (
            "lost voter",
            spec(4, 3, &three),
            lost(ring(4, &three, 3), 0, 2),
            Some("shard 0 has a voter on node 2 that reports it lost"),
        ),
        (
            "frozen donor",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| o.shards.get_mut(&2).unwrap().frozen = true),
            Some("frozen"),
        ),
        (
            "replicas off",
            spec(4, 1, &three),
            observed(&three, &[], (0..4).map(|s| shard(s, 4, &[1], 1)).collect()),
            Some("node 1 has 4 replicas"),
        ),
        (
            "replicas two apart, each within one of the share",
            spec(8, 3, &[1, 2, 3, 4]),
            // 7/6/6/5 replicas: shards 0..7 on these voters, each led by its first voter
            observed(&[1, 2, 3, 4], &[], {
                let voters: [&[NodeId]; 8] =
                    [&[1, 2, 3], &[2, 1, 4], &[3, 1, 4], &[2, 1, 3], &[4, 1, 2], &[3, 1, 4], &[3, 1, 2], &[4, 2, 3]];
                (0..8).map(|s| shard(s, 8, voters[s as usize], voters[s as usize][0])).collect()
            }),
            Some("node 1 has 7 replicas; the even share is 24/4, so each node should have 6"),
        ),
        (
            "leaders off",
            spec(4, 3, &three),
            with(ring(4, &three, 3), |o| {
                o.shards.values_mut().for_each(|s| s.leader = Some(3));
            }),
            Some("node 1 has 0 leaders"),
        ),
    ];
    for (name, spec, observed, want) in cases {
        match (is_balanced(&spec, &observed), want) {
            (Ok(()), None) => {}
            (Err(msg), Some(frag)) if msg.contains(frag) => {}
            (got, want) => panic!("{name}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn steps_describe_themselves_in_one_line() {
    let cases = [
        (Step::Split { shard: 3, modulus: 16 }, "split shard 3: new shard 11 takes the keys with hash % 16 == 11"),
        (Step::Merge { receiver: 3, donor: 11 }, "merge shard 11 into shard 3"),
        (Step::AddReplica { shard: 2, node: 5 }, "add a replica of shard 2 on node 5"),
        (Step::RemoveReplica { shard: 2, node: 5 }, "remove the replica of shard 2 from node 5"),
        (Step::TransferLeader { shard: 2, to: 5 }, "transfer leadership of shard 2 to node 5"),
    ];
    for (step, want) in cases {
        assert_eq!(step.describe(), want);
    }
}
