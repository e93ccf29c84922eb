//! The calls a router sends to a shard, one type each with its own answer type: the
//! router runs any [`ShardCall`] (here, or forwarded to the leader) and hands back that
//! call's answer, so no caller matches on a union of possible answers.
//!
//! Forwarded, a call travels as `tag ‖ call` and its answer as `Ok(tag ‖ answer)` or
//! `Err(ServeError)`, postcard-encoded: the same bytes as the `ShardRequest` and
//! `ShardResponse` enums these types replaced (a postcard enum is its variant index, then
//! its fields), so nodes of both versions forward to each other during a rolling upgrade.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ServeError, WriteOp};
use crate::shard::read_index::ReadIndexError;
use crate::shard::types::{now_ms, CommandResult, KeyEntry};
use crate::shard::Shard;

/// A call to one shard and the answer it gets.
pub trait ShardCall: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    type Answer: Serialize + DeserializeOwned + Send + 'static;
    /// The call's (and its answer's) tag in a forwarded call.
    const TAG: u8;
    /// The call's name in metrics.
    const NAME: &'static str;
    /// Whether the call changes data (a write): then a call that may have reached a
    /// leader and got no answer may still apply.
    const WRITES: bool = false;
    /// The keys the call touches (none for a listing or a revision).
    fn keys(&self) -> Vec<(u8, &[u8])>;
    /// Served by this node's replica, which must lead the shard.
    fn on_leader(self, sh: &Shard) -> impl Future<Output = Result<Self::Answer, ServeError>> + Send;
}

/// A call answered from a replica's applied state: by the leader after a read index
/// (linearizable), or by any voting replica as it stands (serializable).
pub trait ShardRead: ShardCall {
    /// The answer from this replica's state now; a slice that does not hold what is asked
    /// refuses with `WrongShard`.
    fn read_local(&self, sh: &Shard) -> Result<Self::Answer, ServeError>;
}

/// A read on the leader: confirm leadership with a read index, then read.
async fn linearized<C: ShardRead>(call: &C, sh: &Shard) -> Result<C::Answer, ServeError> {
    match sh.read_index.linearize(&sh.raft).await {
        Ok(()) => call.read_local(sh),
        Err(ReadIndexError::NotLeader(h)) => Err(ServeError::NotLeader(h)),
        Err(ReadIndexError::Retry(m)) => Err(ServeError::Retry(m)),
    }
}

/// A transaction on keys of the shard; the answer has one result per op.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Write(pub WriteOp);

impl ShardCall for Write {
    type Answer = CommandResult;
    const TAG: u8 = 0;
    const NAME: &'static str = "write";
    const WRITES: bool = true;

    fn keys(&self) -> Vec<(u8, &[u8])> {
        self.0.keys()
    }

    async fn on_leader(self, sh: &Shard) -> Result<CommandResult, ServeError> {
        use crate::shard::proposer::ProposeError;
        match sh.proposer.propose(self.0.into_command(now_ms())).await {
            Ok(CommandResult { wrong_shard: Some(ws), .. }) => Err(ServeError::WrongShard(ws)),
            Ok(r) => Ok(r),
            Err(ProposeError::NotLeader(h)) => Err(ServeError::NotLeader(h)),
            Err(ProposeError::Retry(m)) => Err(ServeError::Retry(m)),
        }
    }
}

/// One key's entry (`None`: absent or expired).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Get {
    pub db: u8,
    pub key: Vec<u8>,
}

impl ShardCall for Get {
    type Answer = Option<KeyEntry>;
    const TAG: u8 = 1;
    const NAME: &'static str = "get";

    fn keys(&self) -> Vec<(u8, &[u8])> {
        vec![(self.db, &self.key)]
    }

    async fn on_leader(self, sh: &Shard) -> Result<Option<KeyEntry>, ServeError> {
        linearized(&self, sh).await
    }
}

impl ShardRead for Get {
    fn read_local(&self, sh: &Shard) -> Result<Option<KeyEntry>, ServeError> {
        let s = sh.read();
        if s.serves(self.db, &self.key) {
            Ok(s.get(self.db, &self.key, now_ms()))
        } else {
            Err(ServeError::WrongShard(s.refusal()))
        }
    }
}

/// Keys of one shard, which must be at `modulus` (the router's view): a shard that split
/// or merged since refuses, so a listing never silently misses moved keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct List {
    pub db: u8,
    pub prefix: Vec<u8>,
    pub start_after: Option<Vec<u8>>,
    pub limit: usize,
    pub modulus: u32,
}

impl ShardCall for List {
    type Answer = Vec<(Vec<u8>, KeyEntry)>;
    const TAG: u8 = 2;
    const NAME: &'static str = "list";

    fn keys(&self) -> Vec<(u8, &[u8])> {
        Vec::new()
    }

    async fn on_leader(self, sh: &Shard) -> Result<Self::Answer, ServeError> {
        linearized(&self, sh).await
    }
}

impl ShardRead for List {
    fn read_local(&self, sh: &Shard) -> Result<Self::Answer, ServeError> {
        let s = sh.read();
        if s.slice.modulus == self.modulus && self.modulus > 0 && s.frozen.is_none() {
            Ok(s.list(self.db, &self.prefix, self.start_after.as_deref(), self.limit, now_ms()))
        } else {
            Err(ServeError::WrongShard(s.refusal()))
        }
    }
}

/// The shard's revision at a linearizable point (a watch "from now" starts after it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Revision;

impl ShardCall for Revision {
    type Answer = u64;
    const TAG: u8 = 3;
    const NAME: &'static str = "revision";

    fn keys(&self) -> Vec<(u8, &[u8])> {
        Vec::new()
    }

    async fn on_leader(self, sh: &Shard) -> Result<u64, ServeError> {
        linearized(&self, sh).await
    }
}

impl ShardRead for Revision {
    fn read_local(&self, sh: &Shard) -> Result<u64, ServeError> {
        Ok(sh.read().revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::ClientOp;

    /// The enum the calls replaced, as older nodes still send and answer it.
    #[derive(Serialize)]
    enum OldRequest {
        Write(WriteOp),
        Get { db: u8, key: Vec<u8> },
        List { db: u8, prefix: Vec<u8>, start_after: Option<Vec<u8>>, limit: usize, modulus: u32 },
        Revision,
    }

    #[derive(Serialize)]
    enum OldResponse {
        #[allow(dead_code)] // here for the variant indices after it
        Written(CommandResult),
        Value(Option<KeyEntry>),
        Items(Vec<(Vec<u8>, KeyEntry)>),
        Revision(u64),
    }

    fn bytes<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_stdvec(v).expect("encode")
    }

    /// A forwarded call and its answer are the bytes an older node sends and expects.
    #[test]
    fn forwarded_calls_keep_the_older_encoding() {
        let write = WriteOp { id: 7, ops: vec![ClientOp::Delete { db: 1, key: b"k".to_vec(), expect: Some(3) }] };
        assert_eq!(bytes(&(Write::TAG, Write(write.clone()))), bytes(&OldRequest::Write(write)));
        let get = Get { db: 2, key: b"key".to_vec() };
        assert_eq!(bytes(&(Get::TAG, &get)), bytes(&OldRequest::Get { db: 2, key: b"key".to_vec() }));
        let list = List { db: 0, prefix: b"p".to_vec(), start_after: Some(b"a".to_vec()), limit: 10, modulus: 4 };
        let old =
            OldRequest::List { db: 0, prefix: b"p".to_vec(), start_after: Some(b"a".to_vec()), limit: 10, modulus: 4 };
        assert_eq!(bytes(&(List::TAG, &list)), bytes(&old));
        assert_eq!(bytes(&(Revision::TAG, Revision)), bytes(&OldRequest::Revision));

        let answer: Result<(u8, u64), ServeError> = Ok((Revision::TAG, 42));
        let old: Result<OldResponse, ServeError> = Ok(OldResponse::Revision(42));
        assert_eq!(bytes(&answer), bytes(&old));
        let answer: Result<(u8, Option<KeyEntry>), ServeError> = Ok((Get::TAG, None));
        assert_eq!(bytes(&answer), bytes(&Ok::<_, ServeError>(OldResponse::Value(None))));
        let answer: Result<(u8, <List as ShardCall>::Answer), ServeError> = Ok((List::TAG, Vec::new()));
        assert_eq!(bytes(&answer), bytes(&Ok::<_, ServeError>(OldResponse::Items(Vec::new()))));
        let refused: Result<(u8, u64), ServeError> = Err(ServeError::NotLeader(Some(2)));
        assert_eq!(bytes(&refused), bytes(&Err::<OldResponse, _>(ServeError::NotLeader(Some(2)))));
    }
}
