//! When a replica campaigns: elections with a pre-vote (Ongaro's thesis, §9.6).
//!
//! openraft 0.9 campaigns on its own timer and has no pre-vote, so a replica cut off from
//! its group calls election after election, each at a higher term; when the link heals,
//! the healthy leader sees that term in an answer and steps down, and every write of the
//! shard stalls for an election. Here openraft's timer is off (`enable_elect: false`) and
//! this task decides: a voter that has not heard from a leader for its election timeout
//! first asks the other voters whether they would vote for it ([`PreVote`], which changes
//! nothing anywhere), and calls a real election only when a majority says yes. A voter
//! says yes only when it has not heard from a leader itself for an election timeout (a
//! leader: when no quorum has answered it for that long) and the asker's log is at least
//! as up to date as its own. So a node that is cut off, or that restarts while the group
//! is healthy, never raises the term, and its return deposes nobody.
//!
//! Elections that must happen at once still call openraft directly: a new shard's first
//! election after a split (`hosting.rs`), a leadership transfer's target (`reshard.rs`),
//! the ring's bootstrap (`initialize` elects).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Node;
use crate::raft_net::{Call, RaftRpc};
use crate::ring::{NodeId, ShardId};
use crate::shard::types::LogId;
use crate::shard::Shard;

/// "Would you vote for me?", asked of a shard's voters before a real election.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVote {
    pub candidate: NodeId,
    /// The asker's current term (its election would be at the next one).
    pub term: u64,
    /// The last entry of the asker's log.
    pub last_log_id: Option<LogId>,
}

/// The answer to a [`PreVote`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteAnswer {
    pub granted: bool,
    /// Why not, for the debug log.
    pub reason: String,
}

impl Node {
    /// How long a voter waits without hearing from a leader before it asks for votes:
    /// openraft's own follower timeout, the leader lease (`election_timeout_max`, during
    /// which the others refuse any vote) plus a random election timeout.
    fn first_campaign_after(&self) -> Duration {
        let t = self.config.election_timeout;
        t * 4 / 3 + self.random_election_timeout()
    }

    /// A random election timeout in `[election_timeout, 4/3 × election_timeout)`, as
    /// openraft draws its own: voters that lost their leader together do not ask together.
    fn random_election_timeout(&self) -> Duration {
        let t = self.config.election_timeout;
        t + t.mul_f64(rand::rng().random_range(0.0..(1.0 / 3.0)))
    }

    /// Runs the elections of every hosted replica until `stop`.
    pub async fn run_elections(self: Arc<Self>, stop: CancellationToken) {
        let tick = (self.config.heartbeat / 2).max(Duration::from_millis(10));
        // Per shard: the silence after which it asks next, and the silence when it last
        // asked (a shorter silence since means it heard from a leader: start over).
        let mut due: HashMap<ShardId, (Duration, Duration)> = HashMap::new();
        let asking: Arc<parking_lot::Mutex<std::collections::HashSet<ShardId>>> = Arc::default();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let held: Vec<ShardId> = self.shards.held_elections.lock().clone();
            let shards = self.shards.list();
            due.retain(|id, _| shards.iter().any(|s| s.id == *id));
            for s in shards {
                if held.contains(&s.id) || s.transferring.load(std::sync::atomic::Ordering::Acquire) {
                    continue;
                }
                let (leading, voters) = {
                    let m = s.raft.metrics();
                    let m = m.borrow();
                    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
                    (m.state == openraft::ServerState::Leader, voters)
                };
                if leading || !voters.contains(&self.id) {
                    due.remove(&s.id);
                    continue;
                }
                let silent = s.leader_contact.silent_for();
                let entry = due.entry(s.id).or_insert_with(|| (self.first_campaign_after(), Duration::ZERO));
                if silent < entry.1 {
                    *entry = (self.first_campaign_after(), Duration::ZERO);
                }
                // A sole voter needs nobody's vote: it campaigns at once, as openraft would.
                if voters.len() > 1 && silent < entry.0 {
                    continue;
                }
                if !asking.lock().insert(s.id) {
                    continue;
                }
                // If this attempt is lost, the next comes a random election timeout later.
                *entry = (silent + self.random_election_timeout(), silent);
                let (node, asking) = (self.clone(), asking.clone());
                tokio::spawn(async move {
                    node.campaign_if_granted(&s, &voters).await;
                    asking.lock().remove(&s.id);
                });
            }
        }
    }

    /// Asks `voters` for a pre-vote for `s` and calls an election if a majority grants it.
    async fn campaign_if_granted(&self, s: &Shard, voters: &[NodeId]) {
        if voters.len() > 1 {
            let req = PreVote {
                candidate: self.id,
                term: s.raft.metrics().borrow().current_term,
                last_log_id: s.log.last_log_id(),
            };
            let addrs: HashMap<NodeId, String> = {
                let m = s.raft.metrics();
                let m = m.borrow();
                m.membership_config.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect()
            };
            let timeout = self.config.election_timeout / 2;
            let asks = voters.iter().filter(|v| **v != self.id).map(|v| {
                let addr = addrs.get(v).cloned();
                let req = &req;
                async move {
                    let out: Result<PreVoteAnswer, _> =
                        self.peers.send(*v, addr.as_deref(), Call::Raft(RaftRpc::PreVote), s.id, req, timeout).await;
                    (*v, out)
                }
            });
            let answers = futures::future::join_all(asks).await;
            let granted = 1 + answers.iter().filter(|(_, a)| matches!(a, Ok(a) if a.granted)).count();
            // (A peer that answered with an error was reached all the same.)
            let reached = 1 + answers
                .iter()
                .filter(|(_, a)| !matches!(a, Err(crate::raft_net::NetError::Unreachable(..))))
                .count();
            // Unless a leader was heard from meanwhile, which clears it.
            if s.leader_contact.silent_for() >= self.config.election_timeout {
                s.leader_contact.set_minority(reached * 2 <= voters.len());
            }
            if granted * 2 <= voters.len() {
                tracing::debug!(shard = s.id, term = req.term, ?answers, "pre-vote lost: not campaigning");
                return;
            }
            // Heard from a leader while asking: it is alive after all.
            if s.leader_contact.silent_for() < self.config.election_timeout {
                return;
            }
        }
        if s.raft.metrics().borrow().state == openraft::ServerState::Leader {
            return;
        }
        tracing::info!(shard = s.id, "no leader heard from and a majority would vote: campaigning");
        if let Err(e) = s.raft.trigger().elect().await {
            tracing::debug!(shard = s.id, error = %e, "campaign");
        }
    }

    /// This replica's answer to `req` (see the module's documentation).
    pub fn answer_pre_vote(&self, s: &Shard, req: &PreVote) -> PreVoteAnswer {
        let no = |reason: String| PreVoteAnswer { granted: false, reason };
        let timeout = self.config.election_timeout;
        {
            let m = s.raft.metrics();
            let m = m.borrow();
            if m.state == openraft::ServerState::Leader {
                if !crate::shard::is_stale_leader(&m, timeout) {
                    return no(format!("node {} leads shard {} with a quorum", self.id, s.id));
                }
            } else if s.leader_contact.silent_for() < timeout {
                return no(format!("node {} heard from shard {}'s leader lately", self.id, s.id));
            }
        }
        let mine = s.log.last_log_id();
        if req.last_log_id < mine {
            return no(format!("node {}'s log of shard {} is ahead: {mine:?} > {:?}", self.id, s.id, req.last_log_id));
        }
        PreVoteAnswer { granted: true, reason: String::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pre_vote_encodes_and_decodes() {
        let req = PreVote {
            candidate: 3,
            term: 7,
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(7, 2), 42)),
        };
        let bytes = postcard::to_stdvec(&req).expect("encodes");
        assert_eq!(postcard::from_bytes::<PreVote>(&bytes).expect("decodes"), req);
    }
}
