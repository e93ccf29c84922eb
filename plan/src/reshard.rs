//! Rules 4 and 5: change the shard count one split or merge at a time.
//!
//! Splits go in order of (modulus, id) and merges take the highest id first, so a ring
//! part-way through a doubling or halving always has the same shape for its count:
//! growing from `S` to `2S`, shards `0..k` and `S..S+k` have modulus `2S` and the rest
//! `S`; shrinking retraces that backwards. Both rules compare moduli with the spec
//! rather than counts, which is the same test on such rings and still converges on any
//! other valid ring (merges only above the target modulus, splits only below it).

use crate::census::Census;
use crate::state::ShardState;
use crate::step::{Next, Step};

/// Rule 1b: a frozen shard is the donor of a merge that was cut off after the freeze
/// (a driver killed, or the spec changed, mid-merge). The donor refuses every request
/// until its receiver absorbs it, so finishing that merge comes before anything else,
/// whatever the spec asks; nothing has changed either shard's voters since the freeze,
/// so they are still co-located.
pub(crate) fn finish_merges(c: &Census) -> Option<Next> {
    let mut frozen = c.observed.shards.values().filter(|s| s.frozen).peekable();
    let first = frozen.peek()?.id;
    let receiver_of = |donor: &ShardState| {
        let half = donor.modulus / 2;
        (donor.id >= half)
            .then(|| c.observed.shards.get(&(donor.id - half)))
            .flatten()
            .filter(|r| r.modulus == donor.modulus && !r.frozen)
    };
    Some(
        frozen
            .find_map(|d| receiver_of(d).map(|r| Next::Step(Step::Merge { receiver: r.id, donor: d.id })))
            .unwrap_or_else(|| {
                Next::Wait(format!("shard {first} is frozen for a merge whose receiver is not observed"))
            }),
    )
}

/// Rules 4 (too many shards: merge) and 5 (too few: split). `None` when the moduli all
/// equal the spec's shard count, or when the shard to split has excess voters (the
/// excess rule runs next and trims them).
pub(crate) fn reshard(c: &Census) -> Option<Next> {
    let target = c.spec.shards;
    let widest = c.observed.shards.values().map(|s| s.modulus).max()?;
    if widest > target {
        return Some(merge(c, widest));
    }
    let shard = (c.observed.shards.values()).min_by_key(|s| (s.modulus, s.id))?;
    if shard.modulus < target {
        return split(c, shard);
    }
    None
}

/// Rule 4: merge the highest shard `d` with modulus `m` into `d - m/2`. The donor's
/// voters first become the receiver's, alternating add and remove so the donor holds
/// at most `replication + 1` voters; then the merge.
fn merge(c: &Census, modulus: u32) -> Next {
    let shards = &c.observed.shards;
    // In a valid ring the highest id with the widest modulus is at least modulus/2,
    // and its sibling has the same modulus (anything wider would overlap it).
    let pair = (shards.values().rev())
        .find(|s| s.modulus == modulus)
        .and_then(|d| Some((shards.get(&d.id.checked_sub(modulus / 2)?)?, d)));
    let Some((receiver, donor)) = pair.filter(|(r, _)| r.modulus == modulus) else {
        return Next::Blocked(format!("no pair of shards at modulus {modulus} to merge"));
    };
    let missing = receiver.voters.difference(&donor.voters).next().copied();
    let extra = (donor.voters.difference(&receiver.voters)).min_by_key(|&&n| (donor.leader == Some(n), n)).copied();
    match (missing, extra) {
        // Remove while the donor has a spare voter, or when nothing is left to add
        // (then the donor holds all the receiver's voters and more, so it is above
        // replication). Leadership moves to a voter the donor keeps.
        (m, Some(node)) if m.is_none() || donor.voters.len() > c.spec.replication => {
            c.remove_voter(donor, node, |n| receiver.voters.contains(&n))
        }
        (Some(node), _) => Next::Step(Step::AddReplica { shard: donor.id, node }),
        _ => Next::Step(Step::Merge { receiver: receiver.id, donor: donor.id }),
    }
}

/// Rule 5: split the shard with the smallest modulus (lowest id among ties) once it has
/// exactly `replication` voters; the new shard inherits them, so every node's replica
/// count grows by the shards it already holds.
fn split(c: &Census, shard: &ShardState) -> Option<Next> {
    (shard.voters.len() == c.spec.replication)
        .then(|| Next::Step(Step::Split { shard: shard.id, modulus: shard.modulus * 2 }))
}
