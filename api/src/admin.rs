//! The admin API on a node's internal port: every request a planner (the operator, the
//! admin CLI, a node finishing a step) sends, as one enum. Each request names its method,
//! its route (the node mounts exactly [`routes`]) and its query (the node's handlers
//! decode the same query types), so the two ends cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, ShardId};

/// The routes, as the node mounts them (axum's `{param}` syntax).
pub mod routes {
    /// `GET`: the ring as this node sees it ([`crate::Ring`]).
    pub const RING: &str = "/internal/ring";
    pub const SPLIT: &str = "/internal/admin/shards/{shard}/split";
    pub const FREEZE: &str = "/internal/admin/shards/{shard}/freeze";
    pub const MERGE: &str = "/internal/admin/shards/{shard}/merge";
    pub const HOST: &str = "/internal/admin/shards/{shard}/host";
    /// `POST` adds the node as a replica, `DELETE` removes it.
    pub const REPLICA: &str = "/internal/admin/shards/{shard}/replicas/{node}";
    pub const RETIRE: &str = "/internal/admin/shards/{shard}/retire";
    pub const LEADER: &str = "/internal/admin/shards/{shard}/leader/{node}";
    pub const CAMPAIGN: &str = "/internal/admin/shards/{shard}/campaign";
}

/// `split`'s query: the new modulus (twice the shard's) at ring `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitQuery {
    pub modulus: u32,
    pub epoch: u64,
}

/// `freeze`'s query: the ring epoch of the merge the shard is frozen for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeQuery {
    pub epoch: u64,
}

/// `merge`'s query: the donor absorbed by the receiver (the path's shard) at `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeQuery {
    pub donor: ShardId,
    pub epoch: u64,
}

/// `replica` (POST)'s query: the new replica's internal address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddReplicaQuery {
    pub addr: String,
}

/// `campaign`'s query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignQuery {
    /// How long to keep trying; default four election timeouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<u64>,
    /// Campaign only once this replica's log reaches this index (the old leader's last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
}

/// An admin request, addressed to the node that must act on it (a shard's leader for
/// changes of its group; the node itself for `Host`, `Retire` and `Campaign`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminRequest {
    /// Split `shard` in two at `query.modulus`; the leader proposes it.
    Split { shard: ShardId, query: SplitQuery },
    /// Freeze a merge's donor: it refuses every request from then on.
    Freeze { shard: ShardId, query: FreezeQuery },
    /// Merge `query.donor` into `receiver` (co-located first).
    Merge { receiver: ShardId, query: MergeQuery },
    /// Open an empty replica of `shard` here, to be added as a learner.
    Host { shard: ShardId },
    /// Add `node` (at `query.addr`) to `shard`'s group: learner, caught up, voter.
    AddReplica { shard: ShardId, node: NodeId, query: AddReplicaQuery },
    /// Remove `node` from `shard`'s group.
    RemoveReplica { shard: ShardId, node: NodeId },
    /// Drop this node's replica of `shard` if its group no longer counts it.
    Retire { shard: ShardId },
    /// Hand `shard`'s leadership to `to`.
    TransferLeader { shard: ShardId, to: NodeId },
    /// Have this node's replica of `shard` campaign (a leader transfer's last step).
    Campaign { shard: ShardId, query: CampaignQuery },
}

/// The HTTP method of an admin request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Post,
    Delete,
}

impl AdminRequest {
    pub fn method(&self) -> Method {
        match self {
            AdminRequest::RemoveReplica { .. } => Method::Delete,
            _ => Method::Post,
        }
    }

    /// The route template the request is served at (one of [`routes`]).
    pub fn route(&self) -> &'static str {
        match self {
            AdminRequest::Split { .. } => routes::SPLIT,
            AdminRequest::Freeze { .. } => routes::FREEZE,
            AdminRequest::Merge { .. } => routes::MERGE,
            AdminRequest::Host { .. } => routes::HOST,
            AdminRequest::AddReplica { .. } | AdminRequest::RemoveReplica { .. } => routes::REPLICA,
            AdminRequest::Retire { .. } => routes::RETIRE,
            AdminRequest::TransferLeader { .. } => routes::LEADER,
            AdminRequest::Campaign { .. } => routes::CAMPAIGN,
        }
    }

    /// The path and query to send: the route with its parameters filled in.
    pub fn path(&self) -> String {
        let (shard, node, query) = match self {
            AdminRequest::Split { shard, query } => (*shard, None, encode(query)),
            AdminRequest::Freeze { shard, query } => (*shard, None, encode(query)),
            AdminRequest::Merge { receiver, query } => (*receiver, None, encode(query)),
            AdminRequest::Host { shard } | AdminRequest::Retire { shard } => (*shard, None, String::new()),
            AdminRequest::AddReplica { shard, node, query } => (*shard, Some(*node), encode(query)),
            AdminRequest::RemoveReplica { shard, node } => (*shard, Some(*node), String::new()),
            AdminRequest::TransferLeader { shard, to } => (*shard, Some(*to), String::new()),
            AdminRequest::Campaign { shard, query } => (*shard, None, encode(query)),
        };
        let mut path = self.route().replace("{shard}", &shard.to_string());
        if let Some(node) = node {
            path = path.replace("{node}", &node.to_string());
        }
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query);
        }
        path
    }
}

/// A query's `application/x-www-form-urlencoded` form. The query types hold numbers and
/// plain strings, which always encode.
fn encode<Q: Serialize>(q: &Q) -> String {
    serde_urlencoded::to_string(q).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_request() -> Vec<AdminRequest> {
        vec![
            AdminRequest::Split { shard: 3, query: SplitQuery { modulus: 8, epoch: 7 } },
            AdminRequest::Freeze { shard: 5, query: FreezeQuery { epoch: 9 } },
            AdminRequest::Merge { receiver: 1, query: MergeQuery { donor: 5, epoch: 9 } },
            AdminRequest::Host { shard: 2 },
            AdminRequest::AddReplica { shard: 2, node: 4, query: AddReplicaQuery { addr: "[::1]:8180".into() } },
            AdminRequest::RemoveReplica { shard: 2, node: 4 },
            AdminRequest::Retire { shard: 6 },
            AdminRequest::TransferLeader { shard: 0, to: 3 },
            AdminRequest::Campaign { shard: 0, query: CampaignQuery { within_ms: Some(300), log_index: Some(41) } },
        ]
    }

    /// Each path matches its route template segment by segment, and its query decodes
    /// back into the query type the node's handler reads.
    #[test]
    fn paths_fill_their_routes_and_queries_round_trip() {
        for req in every_request() {
            let path = req.path();
            let (p, q) = path.split_once('?').unwrap_or((&path, ""));
            let want: Vec<&str> = req.route().split('/').collect();
            let got: Vec<&str> = p.split('/').collect();
            assert_eq!(want.len(), got.len(), "{path}");
            for (w, g) in want.iter().zip(&got) {
                if w.starts_with('{') {
                    assert!(g.parse::<u64>().is_ok(), "{path}: {g} for {w}");
                } else {
                    assert_eq!(w, g, "{path}");
                }
            }
            let round_trips = match &req {
                AdminRequest::Split { query, .. } => {
                    serde_urlencoded::from_str::<SplitQuery>(q).ok().as_ref() == Some(query)
                }
                AdminRequest::Freeze { query, .. } => {
                    serde_urlencoded::from_str::<FreezeQuery>(q).ok().as_ref() == Some(query)
                }
                AdminRequest::Merge { query, .. } => {
                    serde_urlencoded::from_str::<MergeQuery>(q).ok().as_ref() == Some(query)
                }
                AdminRequest::AddReplica { query, .. } => {
                    serde_urlencoded::from_str::<AddReplicaQuery>(q).ok().as_ref() == Some(query)
                }
                AdminRequest::Campaign { query, .. } => {
                    serde_urlencoded::from_str::<CampaignQuery>(q).ok().as_ref() == Some(query)
                }
                _ => q.is_empty(),
            };
            assert!(round_trips, "{path}");
        }
        assert_eq!(
            AdminRequest::Split { shard: 3, query: SplitQuery { modulus: 8, epoch: 7 } }.path(),
            "/internal/admin/shards/3/split?modulus=8&epoch=7"
        );
        assert_eq!(AdminRequest::RemoveReplica { shard: 2, node: 4 }.method(), Method::Delete);
    }
}
