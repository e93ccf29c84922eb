//! Request routing: find the key's shard, serve it here if this node leads the shard,
//! otherwise forward it to the leader over the internal port. NotLeader answers and
//! elections are retried with bounded backoff until the request deadline; only then does
//! the client get 503.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::node::Node;
use crate::ring::{NodeId, ShardId};
use crate::shard::types::{Command, CommandResult, Op, WrongShard};

pub mod calls;
pub mod table;

pub use calls::{ShardCall, ShardRead};

/// One operation as the client asked for it: TTLs are relative; the leader turns them
/// into absolute expiry times with its own clock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientOp {
    Put { db: u8, key: Vec<u8>, value: bytes::Bytes, ttl_ms: Option<u64>, expect: Option<u64> },
    Delete { db: u8, key: Vec<u8>, expect: Option<u64> },
    Get { db: u8, key: Vec<u8> },
}

/// A client transaction on keys of one shard. `id` is chosen once by the node that took
/// the request, so retries through elections and forwarding apply at most once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteOp {
    pub id: u64,
    pub ops: Vec<ClientOp>,
}

impl WriteOp {
    /// A transaction with a fresh request id.
    pub fn new(ops: Vec<ClientOp>) -> Self {
        Self { id: rand::random(), ops }
    }

    /// The keys the transaction touches.
    fn keys(&self) -> Vec<(u8, &[u8])> {
        self.ops
            .iter()
            .map(|op| match op {
                ClientOp::Put { db, key, .. } | ClientOp::Delete { db, key, .. } | ClientOp::Get { db, key } => {
                    (*db, key.as_slice())
                }
            })
            .collect()
    }

    fn into_command(self, now_ms: u64) -> Command {
        let ops = self
            .ops
            .into_iter()
            .map(|op| match op {
                ClientOp::Put { db, key, value, ttl_ms, expect } => {
                    Op::Put { db, key, value, expires_at_ms: ttl_ms.map(|t| now_ms.saturating_add(t)), expect }
                }
                ClientOp::Delete { db, key, expect } => Op::Delete { db, key, expect },
                ClientOp::Get { db, key } => Op::Get { db, key },
            })
            .collect();
        Command::Txn { id: self.id, now_ms, ops }
    }
}

/// Why a replica could not serve a request.
#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
pub enum ServeError {
    /// This replica does not lead the shard; the hint names the leader it knows of.
    #[error("not the leader (hint: {0:?})")]
    NotLeader(Option<NodeId>),
    /// Transient: no quorum, shutting down, unreachable. Retry.
    #[error("retry: {0}")]
    Retry(String),
    /// The shard is not hosted on the node asked.
    #[error("shard {0} is not hosted here")]
    UnknownShard(ShardId),
    /// The shard does not own the keys (any more): the ring changed.
    #[error("shard {} does not own the keys (modulus {}, epoch {})", .0.shard, .0.modulus, .0.epoch)]
    WrongShard(WrongShard),
    /// The leader's disk is nearly full: a write was refused before it was proposed.
    /// (Last, so the encodings of the others are unchanged.)
    #[error("{0}")]
    InsufficientStorage(String),
}

/// Why a routed request got no answer, named for what the caller should do. (The HTTP
/// layer turns these into statuses: `api::error`.)
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No leader answered before the request's deadline, the ring changed under the
    /// request, or this node knows it cannot reach a quorum: retry later. A write surely
    /// did not apply and never will (no attempt of it reached a leader able to propose it).
    #[error("{0}")]
    Unavailable(String),
    /// As `Unavailable`, but a write may still apply: an attempt of it was proposed, or
    /// went to a peer and got no answer.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The shard's leader refused a write because its disk is nearly full: it surely did
    /// not apply. Retry once space returns.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A one-key write's precondition failed: the key's revision is `current`.
    #[error("the key's revision is {current}, not the expected {expected}")]
    Conflict { current: u64, expected: u64 },
    /// A shard answered what it never should (a bug).
    #[error("{0}")]
    Internal(String),
}

/// Why an attempt sent to a peer failed: the peer's answer, or no answer (the peer could
/// not be reached: the request may be relayed through another member).
enum Forwarded {
    Answered(ServeError),
    Unreachable(String),
}

/// How often a request in flight looks whether its shard's replica here lost its quorum.
const CUT_OFF_POLL: Duration = Duration::from_millis(50);

/// Consistency level of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Read index through the leader (default).
    Linearizable,
    /// Local applied state of whichever replica is asked.
    Serializable,
}

impl Node {
    /// Routes `req` to the leader of `shard` and returns its answer, retrying through
    /// elections, leader changes and ring changes (a split moves keys to another shard)
    /// until the request deadline.
    pub async fn execute<C: ShardCall>(&self, shard: ShardId, req: C) -> Result<C::Answer, RouteError> {
        self.execute_here(shard, req, true).await
    }

    /// [`Node::execute`]; `may_relay`: when the leader cannot be reached from here, the
    /// request may go through another member of the shard that routes it on (a node cut
    /// off from the leader alone still serves). A relayed request is not relayed again.
    pub async fn execute_here<C: ShardCall>(
        &self,
        shard: ShardId,
        req: C,
        may_relay: bool,
    ) -> Result<C::Answer, RouteError> {
        let deadline = Instant::now() + self.config.request_timeout;
        let mut shard = shard;
        let mut hint: Option<NodeId> = None;
        let mut backoff = Duration::from_millis(5);
        let mut attempt = 0usize;
        let mut last_err;
        // Whether an attempt of a write may have been proposed (see `RouteError`).
        let mut may_apply = false;
        // The member to relay the next attempt through, after the leader was unreachable.
        let mut relay_via: Option<NodeId> = None;
        let unavailable = |may_apply: bool, message: String| {
            if may_apply && C::WRITES {
                RouteError::OutcomeUnknown(format!("{message}; the write may still be applied"))
            } else if C::WRITES {
                RouteError::Unavailable(format!("{message}; the write was not applied"))
            } else {
                RouteError::Unavailable(message)
            }
        };
        loop {
            attempt += 1;
            // A replica here that knows it cannot reach a quorum answers at once: no
            // leader this node can reach will answer before the deadline.
            if let Some(why) = self.cut_off(shard) {
                return Err(unavailable(may_apply, why));
            }
            let leader = hint.take().or_else(|| self.leader_of(shard, attempt));
            let via = relay_via.take();
            let attempt_fut = async {
                if let Some(p) = via {
                    return self.forward(p, shard, &req, deadline, crate::raft_net::Call::Relay).await;
                }
                match leader {
                    Some(l) if l == self.id => {
                        // Bounded: a leader cut off from its quorum never commits; the
                        // client gets 503 at the deadline rather than waiting forever.
                        let left = deadline.saturating_duration_since(Instant::now());
                        match tokio::time::timeout(left, self.serve_local(shard, req.clone())).await {
                            Ok(r) => r.map_err(Forwarded::Answered),
                            Err(_) => {
                                Err(Forwarded::Answered(ServeError::Retry("timed out waiting for a quorum".into())))
                            }
                        }
                    }
                    Some(l) => self.forward(l, shard, &req, deadline, crate::raft_net::Call::Serve).await,
                    None => Err(Forwarded::Answered(ServeError::Retry("no leader elected".into()))),
                }
            };
            let outcome = tokio::select! {
                r = attempt_fut => r,
                why = self.until_cut_off(shard) => Err(Forwarded::Answered(ServeError::Retry(why))),
            };
            // The leader could not be reached from here: try through another member next.
            if let (true, None, Some(l), Err(Forwarded::Unreachable(_))) = (may_relay, via, leader, &outcome) {
                relay_via = self.relay_peer(shard, l, attempt);
            }
            let outcome = outcome.map_err(|f| match f {
                Forwarded::Answered(e) => e,
                Forwarded::Unreachable(m) => ServeError::Retry(m),
            });
            // Refusals say the call was not proposed; anything else from an attempt that
            // reached a leader (or may have) leaves a write's outcome open.
            if (leader.is_some() || via.is_some()) && matches!(outcome, Err(ServeError::Retry(_))) {
                may_apply = true;
            }
            if relay_via.is_some() {
                continue;
            }
            match outcome {
                Ok(r) => return Ok(r),
                Err(ServeError::NotLeader(h)) => {
                    last_err = match h {
                        Some(l) => format!("the shard's leader moved (to node {l})"),
                        None => "the shard's leader moved (no new leader known yet)".to_string(),
                    };
                    // A fresh hint is worth one immediate retry.
                    if h.is_some() && h != leader {
                        hint = h;
                        continue;
                    }
                }
                Err(ServeError::WrongShard(ws)) => {
                    self.learn_refusal(ws);
                    last_err = format!("shard {shard} no longer owns the keys");
                    match self.relocate(&req) {
                        Some(s) if s != shard => {
                            shard = s;
                            continue; // the owner is known: go there at once
                        }
                        Some(_) => {} // routes not updated yet: back off
                        None => {
                            return Err(unavailable(
                                may_apply,
                                format!("the ring changed during the request ({last_err}); retry"),
                            ))
                        }
                    }
                }
                Err(ServeError::UnknownShard(s)) => {
                    last_err = format!("shard {s} is not hosted where it was looked for");
                    self.refresh_local_routes();
                }
                Err(ServeError::Retry(m)) => last_err = m,
                // Not retried: space seldom returns within a request's deadline.
                Err(ServeError::InsufficientStorage(m)) => {
                    return Err(if may_apply { unavailable(true, m) } else { RouteError::InsufficientStorage(m) });
                }
            }
            // The ring may have moved the keys while this request waited (a merge's
            // receiver owns them now): route the retry afresh.
            if let Some(s) = self.relocate(&req).filter(|s| *s != shard) {
                shard = s;
            }
            let now = Instant::now();
            if now + backoff >= deadline {
                return Err(unavailable(
                    may_apply,
                    format!(
                        "shard {shard} has no available leader within {:?}: {last_err}",
                        self.config.request_timeout
                    ),
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }

    /// Why this node's replica of `shard` knows it cannot reach a quorum of its voters,
    /// if it does (see [`crate::shard::Shard::cut_off`]).
    fn cut_off(&self, shard: ShardId) -> Option<String> {
        let s = self.shards.get(shard)?;
        s.cut_off(self.id, self.leader_stale_after()).map(|why| format!("shard {shard}: {why}"))
    }

    /// Resolves once this node's replica of `shard` knows it is cut off from a quorum
    /// (never, where the shard is not hosted here: then no timer is set at all).
    async fn until_cut_off(&self, shard: ShardId) -> String {
        if self.shards.get(shard).is_none() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(CUT_OFF_POLL).await;
            if let Some(why) = self.cut_off(shard) {
                return why;
            }
        }
    }

    /// The leader to try for `shard`: the local replica's view if hosted here, else the
    /// routes' hint, else the shard's members in turn (they answer with a hint).
    fn leader_of(&self, shard: ShardId, attempt: usize) -> Option<NodeId> {
        if let Some(s) = self.shards.get(shard) {
            if let Some(l) = s.leader_checked(self.id, self.leader_stale_after()) {
                return Some(l);
            }
        }
        let route = self.router.route(shard)?;
        if attempt % 2 == 1 {
            if let Some(l) = route.leader {
                return Some(l);
            }
        }
        route.members.get(attempt % route.members.len().max(1)).copied()
    }

    /// The answer for a request to a shard this node does not host. When the routes here
    /// give its keys to a coarser, newer shard (a merge retired the one asked for), a
    /// `WrongShard` naming that shard, as the frozen donor itself would have answered,
    /// so the asking router learns the merge and re-routes at once.
    fn not_hosted<C: ShardCall>(&self, shard: ShardId, req: &C) -> ServeError {
        let asked = self.router.route(shard).map_or(0, |r| r.modulus);
        match self.relocate(req).and_then(|s| Some((s, self.router.route(s)?))) {
            Some((s, r)) if s != shard && r.modulus > 0 && (asked == 0 || r.modulus < asked) => {
                ServeError::WrongShard(WrongShard { shard: s, modulus: r.modulus, epoch: r.epoch })
            }
            _ => ServeError::UnknownShard(shard),
        }
    }

    /// The one shard that owns every key of `req` now, if there is one.
    fn relocate<C: ShardCall>(&self, req: &C) -> Option<ShardId> {
        let mut shards = req.keys().into_iter().map(|(db, key)| self.router.locate(db, key));
        let first = shards.next()?;
        shards.all(|s| s == first).then_some(first)
    }

    /// Sends `req` to `to`: to serve as the leader (`Call::Serve`) or to route on
    /// (`Call::Relay`).
    async fn forward<C: ShardCall>(
        &self,
        to: NodeId,
        shard: ShardId,
        req: &C,
        deadline: Instant,
        call: crate::raft_net::Call,
    ) -> Result<C::Answer, Forwarded> {
        self.metrics.forwards.with_label_values(&[C::NAME]).inc();
        let mut timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
        // A leader that does not answer for as long as a leader may go without its
        // quorum is taken for unreachable (a silent partition leaves the connection open,
        // nothing on it ever answers): the next attempt relays through another member.
        // (A retried write is applied at most once: its id is the same.)
        if call == crate::raft_net::Call::Serve {
            timeout = timeout.min(self.leader_stale_after());
        }
        // `tag ‖ call` out, `tag ‖ answer` back (see `calls`).
        let out: Result<Result<(u8, C::Answer), ServeError>, _> =
            self.peers.send(to, None, call, shard, &(C::TAG, req), timeout).await;
        match out {
            Ok(Ok((tag, answer))) if tag == C::TAG => Ok(answer),
            Ok(Ok((tag, _))) => {
                Err(Forwarded::Answered(ServeError::Retry(format!("peer {to} answered a {} with tag {tag}", C::NAME))))
            }
            Ok(Err(e)) => Err(Forwarded::Answered(e)),
            Err(crate::raft_net::NetError::Unreachable(..)) => {
                Err(Forwarded::Unreachable(format!("node {to} could not be reached from node {}", self.id)))
            }
            Err(e) => Err(Forwarded::Answered(ServeError::Retry(e.to_string()))),
        }
    }

    /// A member of `shard` other than its `leader` and this node to relay through, in
    /// turn by `attempt`.
    fn relay_peer(&self, shard: ShardId, leader: NodeId, attempt: usize) -> Option<NodeId> {
        let members = self.router.route(shard)?.members;
        let others: Vec<NodeId> = members.into_iter().filter(|m| *m != leader && *m != self.id).collect();
        others.get(attempt % others.len().max(1)).copied()
    }

    /// Serves a call on this node's replica, which must lead the shard (reads at
    /// `Serializable` are answered from the local state by [`Node::read`] instead).
    pub async fn serve_local<C: ShardCall>(&self, shard: ShardId, req: C) -> Result<C::Answer, ServeError> {
        let sh = self.shards.get(shard).ok_or_else(|| self.not_hosted(shard, &req))?;
        if sh.transferring.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ServeError::Retry(format!("shard {shard}'s leadership is moving")));
        }
        // A write is refused before it is proposed where the leader's disk is nearly full,
        // whichever node took it (forwarded writes are served here too). A replica that
        // does not lead answers NotLeader as usual, sending the write on.
        if C::WRITES && sh.leader() == Some(self.id) {
            if let Some(why) = self.disk.refuses_writes() {
                return Err(ServeError::InsufficientStorage(format!("shard {shard}: {why}")));
            }
        }
        req.on_leader(&sh).await
    }

    /// Reads with the requested consistency. A serializable read is answered from this
    /// node's replica when it hosts one that owns the key and votes in the shard's group;
    /// otherwise it goes to the leader. (An empty replica opened for a move starts with
    /// its bootstrap slice, so it "owns" keys it holds nothing of: a node that answered
    /// from one gave 404 for keys that exist, seen on a real cluster.)
    pub async fn read<C: ShardRead>(&self, shard: ShardId, req: C, c: Consistency) -> Result<C::Answer, RouteError> {
        if c == Consistency::Serializable {
            if let Some(sh) = self.shards.get(shard).filter(|sh| sh.is_voter(self.id)) {
                if let Ok(r) = req.read_local(&sh) {
                    return Ok(r);
                }
            }
        }
        self.execute(shard, req).await
    }
}

/// The outcome of a one-key write.
pub struct Written {
    pub shard: ShardId,
    /// The shard's revision after the write (for a put: the key's new `mod_revision`).
    pub revision: u64,
    /// Whether a delete removed a live key.
    pub deleted: bool,
}

impl Node {
    /// Runs a transaction on the keys of one shard; a failed precondition is a result
    /// (`ok == false`), not an error.
    pub async fn transact(&self, shard: ShardId, ops: Vec<ClientOp>) -> Result<CommandResult, RouteError> {
        self.execute(shard, calls::Write(WriteOp::new(ops))).await
    }

    /// Writes (`Some(value)`) or deletes (`None`) one key, optionally only if its
    /// `mod_revision` is `expect` (0: only if absent). A failed precondition is 409.
    pub async fn write_key(
        &self,
        db: u8,
        key: Vec<u8>,
        value: Option<bytes::Bytes>,
        ttl_ms: Option<u64>,
        expect: Option<u64>,
    ) -> Result<Written, RouteError> {
        let shard = self.router.locate(db, &key);
        let op = match value {
            Some(value) => ClientOp::Put { db, key, value, ttl_ms, expect },
            None => ClientOp::Delete { db, key, expect },
        };
        let r = self.transact(shard, vec![op]).await?;
        match r.ops.first() {
            Some(crate::shard::types::OpResult::Conflict { current }) => {
                Err(RouteError::Conflict { current: *current, expected: expect.unwrap_or_default() })
            }
            Some(crate::shard::types::OpResult::Put { revision }) => {
                Ok(Written { shard, revision: *revision, deleted: false })
            }
            Some(crate::shard::types::OpResult::Delete { deleted }) => {
                Ok(Written { shard, revision: r.revision, deleted: *deleted })
            }
            other => Err(RouteError::Internal(format!("unexpected op result {other:?}"))),
        }
    }
}
