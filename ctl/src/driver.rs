//! The driver: observe the ring through the nodes' admin API, ask the planner
//! ([`next_step`]) what to do, do it, wait, repeat until converged. The operator runs
//! the same driver (one step per reconcile), the CLI runs it to convergence.
//!
//! Level-triggered and resumable: nothing is remembered between rounds, every step is
//! idempotent on the nodes, and the ring's state lives in the shards' Raft logs. Kill the
//! driver at any moment and start it again: it observes where things are and goes on.

use std::collections::BTreeMap;
use std::time::Duration;

use ringkv_api::admin::{AddReplicaQuery, AdminRequest, MergeQuery, SplitQuery};
use ringkv_api::client::AdminClient;
use ringkv_api::ring::coarser_slices;
use ringkv_api::{Ring, ShardInfo};
use ringkv_plan::{next_step, Next, NodeId, Observed, ShardId, ShardState, Spec, Step};
use tokio::time::Instant;

/// A failed round trip to a node.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no node answered at {0:?}")]
    NoNodes(Vec<String>),
    #[error("{0}")]
    Http(String),
    #[error("blocked: {0}")]
    Blocked(String),
    #[error("not converged within {0:?}; last: {1}")]
    Timeout(Duration, String),
}

/// How long an observed ring may stay contradictory (overlapping or missing slices)
/// before the driver gives up: views taken while a split or merge applies can disagree
/// for a moment.
pub const BLOCKED_GRACE: Duration = Duration::from_secs(10);

/// What one observation round found.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub observed: Observed,
    /// Internal address of every node that answered.
    pub addrs: BTreeMap<NodeId, String>,
    /// The newest ring epoch any shard reports.
    pub epoch: u64,
    /// Keys per shard as its leader reports them.
    pub keys: BTreeMap<ShardId, u64>,
}

impl Cluster {
    /// Node ids that answered.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.addrs.keys().copied().collect()
    }

    /// One line per shard, for status output.
    pub fn describe(&self) -> String {
        let mut out =
            format!("ring epoch {}, {} shards, nodes {:?}\n", self.epoch, self.observed.shards.len(), self.node_ids());
        for s in self.observed.shards.values() {
            out.push_str(&format!(
                "  shard {:>4}  modulus {:>4}  voters {:?}  learners {:?}  leader {}  keys {}",
                s.id,
                s.modulus,
                s.voters,
                s.learners,
                s.leader.map_or("-".to_string(), |l| l.to_string()),
                self.keys.get(&s.id).copied().unwrap_or(0)
            ));
            if !s.lost.is_empty() {
                out.push_str(&format!("  lost {:?}", s.lost));
            }
            out.push('\n');
        }
        out
    }
}

/// Records in each observed shard the members whose node reports it lost. A report
/// from a node that is no member (as observed) is ignored: the shard no longer counts
/// on it, and the node is free to host a fresh replica.
pub(crate) fn mark_lost(observed: &mut Observed, views: &[Ring]) {
    for view in views {
        for id in &view.lost {
            let Some(shard) = observed.shards.get_mut(id) else { continue };
            let node = view.node_id;
            if shard.voters.contains(&node) || shard.learners.contains(&node) {
                shard.lost.insert(node);
            }
        }
    }
}

/// Talks to the nodes' internal ports.
#[derive(Clone)]
pub struct Driver {
    client: AdminClient,
    seeds: Vec<String>,
}

/// What the driver reports as it goes.
#[derive(Clone, Debug)]
pub enum Progress {
    Step(Step),
    StepFailed(Step, String),
    Waiting(String),
    Converged,
}

impl Driver {
    /// A driver for the nodes at `seeds` (internal `host:port` addresses).
    pub fn new(seeds: Vec<String>) -> Self {
        Self { client: AdminClient::new(), seeds }
    }

    /// Talks through `client` instead (mutual TLS: [`AdminClient::with_tls`]).
    pub fn with_client(mut self, client: AdminClient) -> Self {
        self.client = client;
        self
    }

    /// Adds a node address to observe (a new node joining).
    pub fn add_seed(&mut self, addr: String) {
        if !self.seeds.contains(&addr) {
            self.seeds.push(addr);
        }
    }

    /// Asks every node for its ring and merges the views: for each shard, the view of
    /// the node that leads it (else the most advanced one).
    pub async fn observe(&self) -> Result<Cluster, DriverError> {
        let mut views = Vec::new();
        let mut addrs = BTreeMap::new();
        for addr in &self.seeds {
            let Ok(view) = self.client.ring(addr, Duration::from_secs(2)).await else { continue };
            addrs.insert(view.node_id, addr.clone());
            views.push(view);
        }
        if views.is_empty() {
            return Err(DriverError::NoNodes(self.seeds.clone()));
        }
        let mut best: BTreeMap<ShardId, (bool, u64, u64, ShardInfo)> = BTreeMap::new();
        for v in &views {
            for s in &v.shards {
                let rank = (s.leader == Some(v.node_id), s.epoch, s.applied_index);
                let better = best.get(&s.id).is_none_or(|(l, e, a, _)| rank > (*l, *e, *a));
                if better {
                    best.insert(s.id, (rank.0, rank.1, rank.2, s.clone()));
                }
            }
        }
        // A merge's donor still hosted by a node that has not caught up is covered by its
        // receiver at a newer epoch: it is no longer part of the ring.
        let absorbed: Vec<ShardId> = best
            .values()
            .filter(|(_, epoch, _, s)| {
                coarser_slices(s.id, s.modulus)
                    .any(|(id, m)| best.get(&id).is_some_and(|(_, e, _, r)| r.modulus == m && e > epoch))
            })
            .map(|(_, _, _, s)| s.id)
            .collect();
        for id in absorbed {
            best.remove(&id);
        }
        let epoch = views.iter().map(|v| v.epoch).chain(best.values().map(|b| b.1)).max().unwrap_or(0);
        // A node is healthy when it answered and is ready: one catching up (just
        // restarted, say) is waited for, never counted on for a majority.
        let nodes = views.iter().map(|v| (v.node_id, v.ready)).collect();
        let mut observed = Observed { nodes, shards: BTreeMap::new() };
        let mut keys = BTreeMap::new();
        for (id, (leads, _, _, s)) in best {
            // A leader nobody confirms (its own view says otherwise) counts as none.
            let leader = if leads { s.leader } else { None };
            observed.shards.insert(
                id,
                ShardState {
                    id,
                    modulus: s.modulus,
                    voters: s.members.iter().copied().collect(),
                    learners: s.learners.iter().copied().collect(),
                    leader,
                    frozen: s.frozen,
                    lost: Default::default(),
                },
            );
            keys.insert(id, s.keys);
        }
        mark_lost(&mut observed, &views);
        // Members that did not answer are unhealthy, not absent.
        for s in observed.shards.values() {
            for n in s.voters.iter().chain(&s.learners) {
                observed.nodes.entry(*n).or_insert(false);
            }
        }
        Ok(Cluster { observed, addrs, epoch, keys })
    }

    async fn send(&self, addr: &str, req: AdminRequest) -> Result<(), DriverError> {
        let long = Duration::from_secs(60);
        self.client.send(addr, &req, long).await.map(drop).map_err(|e| DriverError::Http(e.to_string()))
    }

    fn addr(c: &Cluster, node: NodeId) -> Result<&str, DriverError> {
        c.addrs.get(&node).map(String::as_str).ok_or_else(|| DriverError::Http(format!("node {node} did not answer")))
    }

    fn leader_addr(c: &Cluster, shard: ShardId) -> Result<&str, DriverError> {
        let leader = c.observed.shards.get(&shard).and_then(|s| s.leader);
        let leader = leader.ok_or_else(|| DriverError::Http(format!("shard {shard} has no leader")))?;
        Self::addr(c, leader)
    }

    /// Executes one step through the admin API of the nodes concerned.
    pub async fn execute(&self, c: &Cluster, step: &Step) -> Result<(), DriverError> {
        let epoch = c.epoch + 1;
        match *step {
            Step::Split { shard, modulus } => {
                let req = AdminRequest::Split { shard, query: SplitQuery { modulus, epoch } };
                self.send(Self::leader_addr(c, shard)?, req).await
            }
            Step::AddReplica { shard, node } => {
                let target = Self::addr(c, node)?;
                self.send(target, AdminRequest::Host { shard }).await?;
                let query = AddReplicaQuery { addr: target.to_string() };
                self.send(Self::leader_addr(c, shard)?, AdminRequest::AddReplica { shard, node, query }).await
            }
            Step::RemoveReplica { shard, node } => {
                self.send(Self::leader_addr(c, shard)?, AdminRequest::RemoveReplica { shard, node }).await?;
                if let Ok(addr) = Self::addr(c, node) {
                    // The leader tells it too; this covers a leader that died meanwhile.
                    let _ = self.send(addr, AdminRequest::Retire { shard }).await;
                }
                Ok(())
            }
            Step::TransferLeader { shard, to } => {
                self.send(Self::leader_addr(c, shard)?, AdminRequest::TransferLeader { shard, to }).await
            }
            Step::Merge { receiver, donor } => {
                let req = AdminRequest::Merge { receiver, query: MergeQuery { donor, epoch } };
                self.send(Self::leader_addr(c, receiver)?, req).await
            }
        }
    }

    /// Drives the ring to `spec(cluster)` (computed from each observation, so a spec of
    /// "every node that answers" follows joins), reporting progress, until converged or
    /// `timeout`.
    pub async fn converge(
        &self,
        spec: impl Fn(&Cluster) -> Spec,
        timeout: Duration,
        mut progress: impl FnMut(Progress),
    ) -> Result<Cluster, DriverError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("nothing observed yet");
        let mut last_wait = None;
        let mut blocked_since: Option<Instant> = None;
        while Instant::now() < deadline {
            let c = match self.observe().await {
                Ok(c) => c,
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let target = spec(&c);
            target.check().map_err(DriverError::Blocked)?;
            let next = match next_step(&target, &c.observed) {
                // The spec is sound, so the ring as observed is contradictory. That is
                // usually a moment's view (one node has applied a split, the node that
                // answered for its parent not yet): look again before giving up.
                Next::Blocked(why) => {
                    let since = *blocked_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= BLOCKED_GRACE {
                        return Err(DriverError::Blocked(why));
                    }
                    Next::Wait(format!("{why} (looking again)"))
                }
                other => {
                    blocked_since = None;
                    other
                }
            };
            match next {
                Next::Converged => {
                    progress(Progress::Converged);
                    return Ok(c);
                }
                Next::Blocked(why) => return Err(DriverError::Blocked(why)), // handled above
                Next::Wait(why) => {
                    if last_wait.as_ref() != Some(&why) {
                        progress(Progress::Waiting(why.clone()));
                        last_wait = Some(why.clone());
                    }
                    last = why;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Next::Step(step) => {
                    last_wait = None;
                    progress(Progress::Step(step.clone()));
                    match self.execute(&c, &step).await {
                        Ok(()) => {}
                        Err(e) => {
                            last = e.to_string();
                            progress(Progress::StepFailed(step, last.clone()));
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        }
        Err(DriverError::Timeout(timeout, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn shard(id: ShardId, voters: &[NodeId], learners: &[NodeId]) -> ShardState {
        ShardState {
            id,
            modulus: 4,
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            leader: voters.first().copied(),
            frozen: false,
            lost: BTreeSet::new(),
        }
    }

    #[test]
    fn members_that_report_a_shard_lost_are_marked() {
        let view =
            |node_id, lost: Vec<ShardId>| Ring { node_id, epoch: 1, shard_count: 4, shards: vec![], ready: true, lost };
        let mut o = Observed {
            nodes: [(1, true), (2, true), (3, true), (4, true)].into_iter().collect(),
            shards: (0..4).map(|id| (id, shard(id, &[1, 2, 3], if id == 1 { &[4] } else { &[] }))).collect(),
        };
        // Node 2 votes in shard 0 (shard 9 is unknown); node 4 learns shard 1 but is no
        // member of shard 2.
        mark_lost(&mut o, &[view(2, vec![0, 9]), view(4, vec![1, 2]), view(1, vec![])]);
        let got: Vec<(ShardId, Vec<NodeId>)> =
            o.shards.values().map(|s| (s.id, s.lost.iter().copied().collect())).collect();
        assert_eq!(got, vec![(0, vec![2]), (1, vec![4]), (2, vec![]), (3, vec![])]);
    }
}
