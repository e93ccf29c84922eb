//! `ringkv-ctl` as a user runs it, against real nodes: each action runs to
//! convergence, exits 0 and prints its steps; a bad request exits non-zero with a reason.

use std::process::Command;

use ringkv_tests::process::workspace_binary;
use ringkv_tests::Cluster;

/// Runs `ringkv-ctl --nodes <nodes' internal addresses> <args>`; returns
/// whether it exited 0, and what it printed.
async fn admin(c: &Cluster, nodes: &[u64], args: &[&str]) -> (bool, String) {
    let list = nodes.iter().map(|id| c.internal_addr(*id).to_string()).collect::<Vec<_>>().join(",");
    let mut cmd = Command::new(workspace_binary("ringkv-ctl", "ringkv-ctl"));
    cmd.args(["--timeout", "90s", "--nodes", &list]).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("ringkv-ctl runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("$ ringkv-ctl {}\n{text}", args.join(" "));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_action_converges_and_says_what_it_did() {
    // Three founders with 2 shards; node 4 runs but holds nothing until it is added.
    let c = Cluster::builder(4).shards(2).joining(1).start().await;
    let mut written = Vec::new();
    for i in 0..100 {
        let (k, v) = (format!("cli-{i}"), format!("v{i}"));
        c.node(1).put(&k, &v).await;
        written.push((k, v));
    }
    let d = c.driver();
    let founders = [1, 2, 3];

    let (ok, out) = admin(&c, &founders, &["status"]).await;
    assert!(ok && out.contains("2 shards"), "{out}");

    let (ok, out) = admin(&c, &founders, &["reshard", "--shards", "4"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("target: 4 shards, replication 3") && out.contains("split shard 0") && out.contains("converged"),
        "{out}"
    );
    assert_eq!(d.observe().await.expect("ring").observed.shards.len(), 4);

    let addr4 = c.internal_addr(4).to_string();
    let (ok, out) = admin(&c, &founders, &["add-node", &addr4]).await;
    assert!(ok && out.contains("on node 4"), "{out}");
    let ring = d.observe().await.expect("ring");
    let spec = ringkv_plan::Spec { shards: 4, replication: 3, nodes: [1, 2, 3, 4].into() };
    ringkv_plan::is_balanced(&spec, &ring.observed).unwrap_or_else(|e| panic!("{e}:\n{}", ring.describe()));
    let on4 = ring.observed.shards.values().filter(|s| s.voters.contains(&4)).count();
    assert!(on4 >= 2, "node 4 holds its share (4 shards × 3 / 4 nodes, ±1):\n{}", ring.describe());
    // Exactly those: a replica added after a split does not also open the split's new
    // shard, of which it is no member (it would sit there leaderless, the node unready).
    let view: serde_json::Value =
        c.http().get(format!("http://{addr4}/internal/ring")).send().await.expect("ring").json().await.expect("json");
    let hosted: Vec<u64> = view["shards"].as_array().expect("shards").iter().filter_map(|s| s["id"].as_u64()).collect();
    let member: Vec<u64> =
        ring.observed.shards.values().filter(|s| s.voters.contains(&4)).map(|s| u64::from(s.id)).collect();
    assert_eq!(hosted, member, "node 4 hosts {view}");
    assert_eq!(view["ready"], true, "node 4 is ready: {view}");

    let (ok, out) = admin(&c, &c.ids(), &["drain", "2"]).await;
    assert!(ok && out.contains("node 2 drained"), "{out}");
    let ring = d.observe().await.expect("ring");
    assert!(
        ring.observed.shards.values().all(|s| !s.voters.contains(&2) && s.leader != Some(2)),
        "{}",
        ring.describe()
    );
    assert!(ring.observed.shards.values().all(|s| s.voters.len() == 3), "{}", ring.describe());

    let live = [1, 3, 4];
    let (ok, out) = admin(&c, &live, &["--replication", "3", "rebalance"]).await;
    assert!(
        ok && out.contains("converged") && !out.contains("] split") && !out.contains("] add"),
        "already balanced: {out}"
    );

    // Bad requests: refused with a reason, nothing changed.
    let (ok, out) = admin(&c, &live, &["reshard", "--shards", "3"]).await;
    assert!(!ok && out.contains("power of two"), "{out}");
    let (ok, out) = admin(&c, &live, &["drain", "9"]).await;
    assert!(!ok && out.contains("node 9 is not in the ring"), "{out}");
    let (ok, out) = admin(&c, &live, &["add-node", "127.0.0.1:1"]).await;
    assert!(!ok && out.contains("no ringkv node answered"), "{out}");
    assert_eq!(d.observe().await.expect("ring").observed.shards.len(), 4);

    let missing = c.read_back(&written, &live).await;
    assert!(missing.is_empty(), "lost: {missing:?}");

    // Halving, then at once one read of every key through every node: a node whose
    // route still names a merged-away shard re-routes the request (it used to wait out
    // the request timeout and answer 503).
    let (ok, out) = admin(&c, &live, &["reshard", "--shards", "2"]).await;
    assert!(ok && out.contains("merge shard 3 into shard 1"), "{out}");
    for via in live {
        let missing = c.read_back(&written, &[via]).await;
        assert!(missing.is_empty(), "through node {via} right after the merges: {missing:?}");
    }
}
