//! Data directories of a node killed (SIGKILL) in the middle of a merge by a build
//! that retired a merge's donor in the wrong order (the WAL forgot the replica before
//! `ring.json` stopped listing it). That build could never start on them again:
//!
//!     shard 11: raft: when Read LogIndex(0): Failed to get log entries, expected index: [0, 3)
//!
//! Each must start, finish the cut-off retirement (the rule is in `node/src/node/hosting.rs`,
//! `Node::retire`), keep every other replica with its keys, and start again after
//! another SIGKILL with exactly the same state. The other nodes of those clusters are
//! not part of the fixture, so the node runs alone here: no shard has a leader, and its
//! replicas answer serializable reads from what they applied. Rejoining a live cluster
//! after a crash at each step of a retirement is covered by `crash_points.rs`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use ringkv_tests::process::{free_port, NodeProcess};
use ringkv_tests::{eventually, NodeClient};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for e in std::fs::read_dir(from).expect("fixture").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
            let mut perms = std::fs::metadata(&target).expect("meta").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).expect("chmod");
        }
    }
}

#[derive(Debug, PartialEq)]
struct Seen {
    /// (shard, modulus, keys) of every hosted replica.
    shards: Vec<(u64, u64, u64)>,
    /// Every key with its value, from a serializable listing of the whole ring.
    keys: Vec<(String, String)>,
}

/// Starts the node on its data and waits until it serves; returns what it holds.
async fn start_and_look(n: &NodeProcess, client: &NodeClient, http: &reqwest::Client) -> Seen {
    n.spawn();
    let url = format!("http://{}/v1/cluster", n.client_addr);
    let view: serde_json::Value = eventually("the node to serve", Duration::from_secs(30), || async {
        if let Some(status) = n.exited() {
            panic!("node exited with {status} on its data:\n{}", n.log_tail(30));
        }
        let r = http.get(&url).send().await.map_err(|e| e.to_string())?;
        r.json::<serde_json::Value>().await.map_err(|e| e.to_string())
    })
    .await;
    let shards: Vec<(u64, u64, u64)> = view["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| {
            (s["id"].as_u64().expect("id"), s["modulus"].as_u64().expect("modulus"), s["keys"].as_u64().expect("keys"))
        })
        .collect();
    let listed = client.list_all_with(0, "", 100, "consistency=serializable").await;
    let keys = listed.into_iter().map(|e| (e.key, e.value)).collect();
    Seen { shards, keys }
}

async fn fixture_starts(name: &str, finished: u64, hosted: &[u64]) {
    let tmp = tempfile::Builder::new().prefix("ringkv-fixture-").tempdir().expect("tempdir");
    let ip = Ipv4Addr::new(127, 0, 0, 1);
    let n = NodeProcess::new(2, ip, tmp.path());
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name), &n.data_dir);
    // The node's peers are down (the fixture holds only its own directory).
    let peers = format!("1=127.0.0.1:{},2={},3=127.0.0.1:{}", free_port(ip), n.internal_addr, free_port(ip));
    let mut n = n;
    n.set_args(
        [
            "--node-id",
            "2",
            "--listen",
            &n.client_addr.to_string(),
            "--internal-listen",
            &n.internal_addr.to_string(),
            "--peers",
            &peers,
            "--shards",
            "4",
            "--data-dir",
            &n.data_dir.display().to_string(),
        ]
        .map(String::from)
        .to_vec(),
    );
    let http = ringkv_api::client::http().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");
    let client = NodeClient::new(2, format!("http://{}", n.client_addr), http.clone());

    let first = start_and_look(&n, &client, &http).await;
    let log = n.log();
    assert!(
        log.contains("finishing it") && log.contains(&format!("retirement finished on start shard={finished}")),
        "the cut-off retirement of shard {finished} was not finished:\n{}",
        n.log_tail(40)
    );
    eprintln!("{name}: started with {:?}", first.shards.iter().map(|s| s.0).collect::<Vec<_>>());
    // The donors this node's receivers had absorbed are retired too (in the background).
    let ring_json = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(n.data_dir.join("ring.json")).expect("ring.json")).expect("json")
    };
    let ring = eventually("absorbed donors to be retired", Duration::from_secs(15), || async {
        let v: serde_json::Value = http
            .get(format!("http://{}/v1/cluster", n.client_addr))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let now: Vec<u64> =
            v["shards"].as_array().expect("shards").iter().map(|s| s["id"].as_u64().expect("id")).collect();
        let ring = ring_json();
        let on_disk: Vec<u64> =
            ring["hosted"].as_array().expect("hosted").iter().map(|v| v.as_u64().expect("id")).collect();
        if now == hosted && on_disk == hosted && ring.get("retiring").is_none() {
            Ok(ring)
        } else {
            Err(format!("serves {now:?}; ring.json {ring}"))
        }
    })
    .await;
    assert!(ring["retired"][finished.to_string()].as_u64().is_some(), "ring.json: {ring}");
    assert!(!n.data_dir.join("shards").join(finished.to_string()).exists(), "shard {finished}'s directory is left");
    // Restarted once retirements settled: this is what it holds.
    let first = kill_and_start(&n, &client, &http).await;
    // Every key a replica holds is listed once, from the shard that owns it.
    let total: u64 = first.shards.iter().map(|s| s.2).sum();
    assert_eq!(first.keys.len() as u64, total, "{first:?}");
    assert!(total > 0, "the fixture's keys are gone: {first:?}");
    // And a SIGKILL now changes nothing.
    let again = kill_and_start(&n, &client, &http).await;
    assert_eq!(again, first);
    eprintln!("{name}: started, finished shard {finished}'s retirement, hosts {hosted:?} with {total} keys, and starts again the same");
}

/// SIGKILL, then [`start_and_look`].
async fn kill_and_start(n: &NodeProcess, client: &NodeClient, http: &reqwest::Client) -> Seen {
    n.kill();
    start_and_look(n, client, http).await
}

/// Node 2 killed during 16 → 8: donors 15–12 absorbed and retired, 11–9 absorbed but
/// not retired, shard 11's retirement cut off after its log was forgotten.
#[tokio::test]
async fn a_node_killed_while_retiring_a_merged_donor_starts_and_finishes_the_retirement() {
    fixture_starts("killed-mid-merge", 11, &[0, 1, 2, 3, 4, 5, 6, 7, 8]).await;
}

/// Node 2 killed during 16 → 8 → 4 with shard 13 listed both hosted and retired, its
/// latest incarnation's log forgotten.
#[tokio::test]
async fn a_node_killed_with_a_donor_listed_hosted_and_retired_starts() {
    fixture_starts("killed-mid-merge-2", 13, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]).await;
}
