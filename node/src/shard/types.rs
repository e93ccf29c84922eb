//! The Raft type configuration and the commands a shard's log carries.

use serde::{Deserialize, Serialize};

use crate::ring::{NodeId, ShardId};

openraft::declare_raft_types!(
    /// openraft types for one ringkv shard.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = super::snapshot_body::SnapshotBody,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;

/// One Raft entry's payload: the commands the leader batched into it, applied in order.
///
/// Batching many client commands into one entry amortises the per-entry cost of
/// consensus (one append, one replication round, one apply) over all of them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proposal {
    pub commands: Vec<Command>,
}

/// The result of each command of a [`Proposal`], in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProposalResult {
    pub results: Vec<CommandResult>,
}

/// A state-machine command, proposed by the shard's leader.
///
/// Absolute times (`expires_at_ms`, `now_ms`) are stamped by the leader when it proposes,
/// so every replica applies the same bytes and ends with the same state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Command {
    /// A client transaction on keys of this shard: every op's precondition is checked
    /// first; if one fails nothing changes, otherwise the ops apply in order. `id`
    /// identifies the client request: a retry of an id already applied returns the
    /// first result instead of applying twice.
    Txn { id: u64, now_ms: u64, ops: Vec<Op> },
    /// Remove keys whose TTL has passed, each only if it is still at the given
    /// `mod_revision` (a newer put wins over the reaper).
    Expire { keys: Vec<(u8, Vec<u8>, u64)> },
    /// Split the shard to `modulus` (twice its current one) at ring `epoch`: every
    /// replica hands the keys of shard `id + modulus / 2` to a new local shard with the
    /// same members. A shard already at `modulus` ignores it.
    Split { modulus: u32, epoch: u64 },
    /// Freeze this shard as a merge's donor at ring `epoch`: from this entry on it
    /// refuses every request (a retryable `WrongShard` naming the receiver), so the
    /// state it holds is final. Repeats are no-ops.
    Freeze { epoch: u64 },
    /// On a merge's receiver (still at `modulus`): take in a chunk of the frozen donor's
    /// keys and request ids, not yet visible.
    Absorb { modulus: u32, entries: Vec<(u8, Vec<u8>, KeyEntry)>, applied: Vec<(u64, CommandResult)> },
    /// On a merge's receiver: own the donor's slice too, now at `modulus` (half the old
    /// one) from ring `epoch` on, with revisions continuing above the donor's `revision`.
    MergeDone { modulus: u32, epoch: u64, revision: u64 },
}

/// One operation of a transaction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`; `expires_at_ms` is unix-epoch milliseconds. `expect`:
    /// `Some(0)` = only if absent, `Some(r)` = only if the key's `mod_revision` is `r`.
    /// The value is copied once at the HTTP layer (out of the connection's read buffer,
    /// which it must not pin) and from there to the map moved and shared, never copied
    /// again (it encodes exactly as the `Vec<u8>` it once was).
    Put { db: u8, key: Vec<u8>, value: bytes::Bytes, expires_at_ms: Option<u64>, expect: Option<u64> },
    /// Delete `key` if present, under the same `expect` rule.
    Delete { db: u8, key: Vec<u8>, expect: Option<u64> },
    /// Read `key` as of this point of the transaction.
    Get { db: u8, key: Vec<u8> },
}

/// What one op did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum OpResult {
    /// Written at this revision.
    Put { revision: u64 },
    /// Whether a live key was removed.
    Delete { deleted: bool },
    /// The live entry, if any.
    Get(Option<KeyEntry>),
    /// The precondition failed: the key's current `mod_revision` (0 = absent).
    Conflict { current: u64 },
    /// Not applied because another op's precondition failed.
    Skipped,
}

/// What applying a command did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommandResult {
    /// The shard's revision after the command.
    pub revision: u64,
    /// Whether every precondition held (so every op applied).
    pub ok: bool,
    /// Per op, in order (transactions).
    pub ops: Vec<OpResult>,
    /// Keys removed by an expiry.
    pub expired: u64,
    /// Set when the command touched keys this shard does not own (nothing applied).
    pub wrong_shard: Option<WrongShard>,
}

/// A shard's refusal of keys outside its slice; the router refreshes its ring view from
/// it and retries on the owner.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrongShard {
    pub shard: ShardId,
    /// The refusing shard's modulus now: keys go to `hash mod modulus` or a coarser shard.
    pub modulus: u32,
    pub epoch: u64,
}

/// A stored key's value and metadata, as every replica holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEntry {
    /// Refcounted: cloning an entry (a read, a copy-on-write of the map after a snapshot
    /// or split shared it) does not copy the value.
    pub value: bytes::Bytes,
    /// Revision of the put that created the key.
    pub create_revision: u64,
    /// Revision of the last put to the key.
    pub mod_revision: u64,
    /// Number of puts since the key was created (1 after the first).
    pub version: u64,
    /// Expiry in unix-epoch milliseconds.
    pub expires_at_ms: Option<u64>,
}

impl KeyEntry {
    /// Whether the entry is expired at `now_ms`. Expired entries are never returned.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| t <= now_ms)
    }
}

/// Unix-epoch milliseconds from the wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How many bits of a Raft term count elections within one group; the bits above
/// hold the ring epoch at which the group was created (see [`origin_term`]).
pub const TERM_EPOCH_SHIFT: u32 = 32;

/// The Raft term a split's new shard starts at (its origin entry's and its first vote's):
/// the ring epoch of the split, shifted above [`TERM_EPOCH_SHIFT`] bits. A shard id can
/// name two groups over time (a merged donor that a later split re-creates), and an old
/// replica of the first may still be hosted where its node was down through the merge.
/// With terms counted from 1 in both, their log ids coincide and the new group's leader
/// would take the old replica for a follower holding its entries (acknowledging entries
/// it never had). With terms above the birth epoch, every Raft message says which group
/// sent it, and a node refuses those of a group born after its replica's slice epoch
/// (see `Node::raft_call`, [`born_epoch`]): no replica of that group can be that old.
pub fn origin_term(epoch: u64) -> u64 {
    epoch.saturating_mul(1 << TERM_EPOCH_SHIFT)
}

/// The ring epoch at which the group that used Raft term `term` was created (0 for the
/// bootstrap shards' groups and those created before [`origin_term`] existed).
pub fn born_epoch(term: u64) -> u64 {
    term >> TERM_EPOCH_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Op::Put`'s value became `Bytes` (no copies on the write path); WAL records and
    /// forwarded calls written by older nodes, where it was a `Vec<u8>`, must still read
    /// the same, and newer ones must read on older nodes.
    #[test]
    fn a_put_encodes_as_it_did_when_its_value_was_a_vec() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        enum OldOp {
            Put { db: u8, key: Vec<u8>, value: Vec<u8>, expires_at_ms: Option<u64>, expect: Option<u64> },
        }
        let value: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let old = OldOp::Put { db: 3, key: b"k".to_vec(), value: value.clone(), expires_at_ms: Some(7), expect: None };
        let new = Op::Put {
            db: 3,
            key: b"k".to_vec(),
            value: bytes::Bytes::from(value),
            expires_at_ms: Some(7),
            expect: None,
        };
        let (old_bytes, new_bytes) = (postcard::to_stdvec(&old).unwrap(), postcard::to_stdvec(&new).unwrap());
        assert_eq!(old_bytes, new_bytes);
        assert_eq!(postcard::from_bytes::<Op>(&old_bytes).unwrap(), new);
        assert_eq!(postcard::from_bytes::<OldOp>(&new_bytes).unwrap(), old);
    }
}
