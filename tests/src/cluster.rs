//! A cluster of node processes on loopback (or each in its own network namespace), in a
//! temporary directory it owns.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitStatus;
use std::time::Duration;

use rand::Rng;
use tempfile::TempDir;

use crate::client::{ClusterView, NodeClient};
use crate::eventually;
use crate::netns::{Network, CLIENT_PORT, INTERNAL_PORT};
use crate::process::NodeProcess;

/// How long a cluster may take to become ready (bootstrap, elections, catch-up).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Per-request timeout of the harness's HTTP client. Longer than any `--request-timeout`
/// the suites use, so a node that never answers shows up as a client error, not a hang.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Options for a cluster before it starts.
pub struct ClusterBuilder {
    nodes: usize,
    shards: u32,
    standalone: bool,
    joining: usize,
    flags: Vec<(String, String)>,
    env: Vec<(String, String)>,
    network: Option<Network>,
    /// Extra environment of one node's first start (see [`ClusterBuilder::node_env`]).
    node_env: Vec<(u64, String, String)>,
    /// Size of a tmpfs mounted at each node's data directory (see [`ClusterBuilder::tmpfs_data_dirs`]).
    tmpfs_bytes: Option<u64>,
    /// TLS on both ports (see [`ClusterBuilder::tls`]).
    tls: bool,
}

impl ClusterBuilder {
    /// Sets an environment variable for node `id`'s first start only, after those of
    /// [`ClusterBuilder::env`] (e.g. a per-node `RINGKV_WAL_FAULTS` control file).
    pub fn node_env(mut self, id: u64, name: &str, value: &str) -> Self {
        self.node_env.push((id, name.to_string(), value.to_string()));
        self
    }

    /// Gives each node's data directory a tmpfs of its own of `bytes` (needs root: check
    /// [`tmpfs_available`] first), so that a test can fill one node's disk. Unmounted when
    /// the cluster is dropped, after its nodes are killed.
    pub fn tmpfs_data_dirs(mut self, bytes: u64) -> Self {
        self.tmpfs_bytes = Some(bytes);
        self
    }

    /// Runs node `id` as its own host in `network`'s namespace for it, on
    /// [`Network::addr`]`(id)` with fixed ports ([`CLIENT_PORT`], [`INTERNAL_PORT`]),
    /// instead of on loopback. The cluster owns the network ([`Cluster::net`] to cut its
    /// links) and removes it after killing its nodes.
    pub fn network(mut self, network: Network) -> Self {
        self.network = Some(network);
        self
    }

    /// TLS on every node's client port and mutual TLS on the internal ports, with a CA and
    /// certificates made for this cluster ([`Cluster::pki`]); the harness's clients trust
    /// the CA and present a certificate of their own (`harness`).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Sets `--shards` (default 4).
    pub fn shards(mut self, n: u32) -> Self {
        self.shards = n;
        self
    }

    /// The last `n` nodes are not founders: `--peers` lists only the others, so these
    /// start empty and join the ring once the admin API gives them replicas.
    pub fn joining(mut self, n: usize) -> Self {
        self.joining = n;
        self
    }

    /// Adds a flag given to every node on every start, e.g. `.flag("--snapshot-entries", "100")`.
    pub fn flag(mut self, name: &str, value: &str) -> Self {
        self.flags.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets an environment variable for every node's first start only (restarts go
    /// without it), e.g. `.env("FAILPOINTS", "merge-done=return")`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts every node and waits until each one is ready.
    pub async fn start(self) -> Cluster {
        let dir = tempfile::Builder::new().prefix("ringkv-test-").tempdir().expect("a temporary directory");
        let mut nodes: Vec<NodeProcess> = match &self.network {
            // Each cluster takes a random run of loopback addresses so that tests running in
            // parallel do not collide; node `id` gets 127.0.0.(base + id - 1).
            None => {
                let max_base = 250 - u8::try_from(self.nodes).expect("fewer than 250 nodes");
                let base: u8 = rand::rng().random_range(2..=max_base);
                (1..=self.nodes)
                    .map(|i| {
                        let id = u64::try_from(i).expect("small");
                        let ip = Ipv4Addr::new(127, 0, 0, base + u8::try_from(i - 1).expect("small"));
                        NodeProcess::new(id, ip, dir.path())
                    })
                    .collect()
            }
            // Each node owns its address in its own namespace: fixed ports cannot collide.
            Some(net) => {
                assert!(net.nodes() >= self.nodes, "a network of {} hosts for {} nodes", net.nodes(), self.nodes);
                net.ids()
                    .into_iter()
                    .take(self.nodes)
                    .map(|id| {
                        let ip = net.addr(id);
                        let (client, internal) =
                            (SocketAddr::from((ip, CLIENT_PORT)), SocketAddr::from((ip, INTERNAL_PORT)));
                        let mut n = NodeProcess::at(id, client, internal, dir.path());
                        n.set_exec_prefix(net.exec_prefix(id));
                        n
                    })
                    .collect()
            }
        };
        let pki = self.tls.then(|| Pki::new(dir.path(), &nodes));
        let founders = self.nodes - self.joining.min(self.nodes - 1);
        let peers =
            nodes.iter().take(founders).map(|n| format!("{}={}", n.id, n.internal_addr)).collect::<Vec<_>>().join(",");
        for n in &mut nodes {
            let mut args = vec![
                "--node-id".to_string(),
                n.id.to_string(),
                "--listen".to_string(),
                n.client_addr.to_string(),
                "--internal-listen".to_string(),
                n.internal_addr.to_string(),
                "--shards".to_string(),
                self.shards.to_string(),
                "--data-dir".to_string(),
                n.data_dir.display().to_string(),
            ];
            if !self.standalone {
                args.extend(["--peers".to_string(), peers.clone()]);
            }
            if let Some(pki) = &pki {
                let issued = pki.node(n.id);
                for (flag, path) in [
                    ("--tls-cert", &issued.cert),
                    ("--tls-key", &issued.key),
                    ("--tls-client-ca", &pki.clients.cert),
                    ("--internal-tls-cert", &issued.cert),
                    ("--internal-tls-key", &issued.key),
                    ("--internal-tls-ca", &pki.ca.cert),
                ] {
                    args.extend([flag.to_string(), path.display().to_string()]);
                }
            }
            for (k, v) in &self.flags {
                args.extend([k.clone(), v.clone()]);
            }
            n.set_args(args);
        }
        let http = ringkv_api::client::http().no_proxy().timeout(HTTP_TIMEOUT).connect_timeout(Duration::from_secs(2));
        let internal_http = match &pki {
            Some(pki) => {
                let h = ringkv_api::client::http().no_proxy().timeout(HTTP_TIMEOUT);
                Some(h.tls_backend_preconfigured(pki.internal_config()).build().expect("an HTTP client"))
            }
            None => None,
        };
        let http = match &pki {
            Some(pki) => http.tls_backend_preconfigured(pki.client_port_config()),
            None => http,
        };
        let http = http.build().expect("an HTTP client");
        let mut mounts = Vec::new();
        if let Some(bytes) = self.tmpfs_bytes {
            for n in &nodes {
                mount_tmpfs(&n.data_dir, bytes).unwrap_or_else(|e| panic!("node {}'s data dir: {e}", n.id));
                mounts.push(n.data_dir.clone());
            }
        }
        let cluster = Cluster {
            nodes,
            shards: self.shards,
            http,
            internal_http,
            keep: false.into(),
            net: self.network,
            mounts,
            pki,
            dir,
        };
        for n in &cluster.nodes {
            let mut env = self.env.clone();
            env.extend(self.node_env.iter().filter(|(id, _, _)| *id == n.id).map(|(_, k, v)| (k.clone(), v.clone())));
            n.set_next_env(env);
            n.spawn();
        }
        cluster.wait_ready().await;
        cluster
    }
}

/// Node processes started together. Node ids are `1..=n`; every method takes an id.
pub struct Cluster {
    nodes: Vec<NodeProcess>,
    /// The `--shards` every node runs with.
    pub shards: u32,
    http: reqwest::Client,
    /// With TLS: the client of the internal ports (the cluster CA's `harness-admin`).
    internal_http: Option<reqwest::Client>,
    /// Keep the data and logs when dropped (see [`Cluster::keep_data`]).
    keep: std::sync::atomic::AtomicBool,
    // Dropped after `Drop::drop` killed the nodes: a namespace goes only once empty.
    net: Option<Network>,
    /// tmpfs mounts at data directories, unmounted by `Drop::drop` after the kills.
    mounts: Vec<std::path::PathBuf>,
    /// The certificates of a cluster started with [`ClusterBuilder::tls`].
    pki: Option<Pki>,
    // Dropped last: the processes are killed before their data directory is removed.
    dir: TempDir,
}

impl Cluster {
    /// A cluster of `nodes` replicas of `shards` shards; waits until it is ready.
    pub async fn start(nodes: usize, shards: u32) -> Cluster {
        Cluster::builder(nodes).shards(shards).start().await
    }

    /// One node with no peers (replication 1), 4 shards; waits until it is ready.
    pub async fn standalone() -> Cluster {
        Cluster::standalone_builder().start().await
    }

    /// Options for a cluster of `nodes` peers.
    pub fn builder(nodes: usize) -> ClusterBuilder {
        assert!(nodes >= 1);
        ClusterBuilder {
            nodes,
            shards: 4,
            standalone: false,
            joining: 0,
            flags: Vec::new(),
            env: Vec::new(),
            network: None,
            node_env: Vec::new(),
            tmpfs_bytes: None,
            tls: false,
        }
    }

    /// Options for a standalone node (no `--peers`).
    pub fn standalone_builder() -> ClusterBuilder {
        ClusterBuilder { standalone: true, ..Cluster::builder(1) }
    }

    fn process(&self, id: u64) -> &NodeProcess {
        usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| self.nodes.get(i))
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// Every node id.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Ids of the nodes this harness has running.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.iter().filter(|n| n.is_running()).map(|n| n.id).collect()
    }

    /// `http://ip:port` (`https://` with TLS) of a node's client API.
    pub fn url(&self, id: u64) -> String {
        format!("{}://{}", self.scheme(), self.process(id).client_addr)
    }

    fn scheme(&self) -> &'static str {
        if self.pki.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The certificates of a cluster started with [`ClusterBuilder::tls`].
    pub fn pki(&self) -> &Pki {
        self.pki.as_ref().expect("this cluster runs without TLS: start it with ClusterBuilder::tls")
    }

    /// A node's internal (Raft) address, as given to `--peers`.
    pub fn internal_addr(&self, id: u64) -> std::net::SocketAddr {
        self.process(id).internal_addr
    }

    /// The planning library's driver for every node of the cluster (their internal ports).
    pub fn driver(&self) -> ringkv_ctl::driver::Driver {
        let d =
            ringkv_ctl::driver::Driver::new(self.ids().iter().map(|id| self.internal_addr(*id).to_string()).collect());
        match &self.pki {
            Some(pki) => d.with_client(
                ringkv_api::client::AdminClient::with_tls(pki.internal_config()).expect("an admin client"),
            ),
            None => d,
        }
    }

    /// A client for one node's API.
    pub fn node(&self, id: u64) -> NodeClient {
        NodeClient::new(id, self.url(id), self.http.clone())
    }

    /// The harness's HTTP client (timeouts set, no proxy).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Where this cluster keeps its data and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Everything node `id` has logged so far, across restarts.
    pub fn log(&self, id: u64) -> String {
        self.process(id).log()
    }

    /// The network the nodes run in; panics for a cluster on loopback.
    pub fn net(&self) -> &Network {
        self.net.as_ref().expect("this cluster runs on loopback: start it with ClusterBuilder::network")
    }

    /// SIGSTOPs node `id`: it keeps its sockets but answers nothing until [`Cluster::resume`].
    pub fn pause(&self, id: u64) {
        self.process(id).signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONTs a node paused by [`Cluster::pause`].
    pub fn resume(&self, id: u64) {
        self.process(id).signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// The pid of node `id`'s process, if it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.process(id).pid()
    }

    /// SIGKILLs node `id` (no chance to flush or hand off).
    pub fn kill(&self, id: u64) {
        self.process(id).kill();
    }

    /// SIGTERMs node `id` and returns its exit status once it has stopped.
    pub async fn stop(&self, id: u64) -> ExitStatus {
        self.process(id).terminate(STOP_TIMEOUT).await
    }

    /// Starts a stopped node again with the same flags, addresses and data dir. Does not
    /// wait for it: follow with [`Cluster::wait_ready`].
    pub fn restart(&self, id: u64) {
        self.process(id).spawn();
    }

    /// [`Cluster::restart`] with extra environment for this start only.
    pub fn restart_with_env(&self, id: u64, env: &[(&str, &str)]) {
        let p = self.process(id);
        p.set_next_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        p.spawn();
    }

    /// Changes flag `name` of node `id` for its later starts (see [`Cluster::restart`]).
    pub fn set_flag(&mut self, id: u64, name: &str, value: &str) {
        let i = self.nodes.iter().position(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"));
        self.nodes[i].set_flag(name, value);
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> std::path::PathBuf {
        self.process(id).data_dir.clone()
    }

    /// Keeps the data directories and logs when the cluster is dropped (a failed check
    /// outside a panicking test, say); returns where they are.
    pub fn keep_data(&self) -> std::path::PathBuf {
        self.keep.store(true, std::sync::atomic::Ordering::Release);
        self.dir.path().to_path_buf()
    }

    /// The exit status of node `id` if it stopped on its own since the last look.
    pub fn exited(&self, id: u64) -> Option<ExitStatus> {
        self.process(id).exited()
    }

    /// Waits until every running node answers 200 on `/readyz`. Panics if a node exits.
    pub async fn wait_ready(&self) {
        eventually("every running node to be ready", READY_TIMEOUT, || async move {
            for n in self.nodes.iter() {
                if let Some(status) = n.exited() {
                    let log = n.log_tail(20);
                    panic!("node {} exited with {status} while the cluster was starting; its log ends:\n{log}", n.id);
                }
            }
            for id in self.running() {
                if !self.node(id).is_ready().await {
                    return Err(format!("node {id} is not ready"));
                }
            }
            Ok(())
        })
        .await
    }

    /// The cluster views of every running node that answers.
    pub async fn views(&self) -> BTreeMap<u64, ClusterView> {
        let mut out = BTreeMap::new();
        for id in self.running() {
            if let Ok(v) = self.node(id).try_cluster_view().await {
                out.insert(id, v);
            }
        }
        out
    }

    /// Node `id`'s `GET /internal/ring` (its replicas, `lost`, readiness) as JSON.
    pub async fn internal_ring(&self, id: u64) -> Result<serde_json::Value, String> {
        let url = format!("{}://{}/internal/ring", self.scheme(), self.internal_addr(id));
        let http = self.internal_http.as_ref().unwrap_or(&self.http);
        let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
        resp.json().await.map_err(|e| e.to_string())
    }

    /// The node that leads `shard`: of the running nodes that say they lead it, the one
    /// with the highest term (an old leader cut off from the rest may still think it leads).
    pub async fn leader_of(&self, shard: u32) -> Option<u64> {
        self.leaders().await.get(&shard).copied()
    }

    /// Shard → leading node, for the shards that have a leader (see [`Cluster::leader_of`]).
    pub async fn leaders(&self) -> BTreeMap<u32, u64> {
        let mut best: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for (id, view) in self.views().await {
            for s in view.shards.iter().filter(|s| s.state == "Leader") {
                let e = best.entry(s.id).or_insert((s.term, id));
                if s.term > e.0 {
                    *e = (s.term, id);
                }
            }
        }
        best.into_iter().map(|(s, (_, id))| (s, id)).collect()
    }

    /// Waits until every shard has a leader among `among` that every running node agrees
    /// on, and returns shard → leader.
    pub async fn wait_for_leaders(&self, among: &[u64]) -> BTreeMap<u32, u64> {
        let among = among.to_vec();
        eventually("every shard to have an agreed leader", READY_TIMEOUT, || {
            let among = among.clone();
            async move {
                let views = self.views().await;
                let running = self.running();
                if views.len() != running.len() {
                    return Err(format!("only {:?} of {running:?} answered", views.keys()));
                }
                let mut leaders = BTreeMap::new();
                for shard in 0..self.shards {
                    let seen: Vec<Option<u64>> = views
                        .values()
                        .map(|v| v.shards.iter().find(|s| s.id == shard).and_then(|s| s.leader))
                        .collect();
                    match seen.first().copied().flatten() {
                        Some(l) if among.contains(&l) && seen.iter().all(|x| *x == Some(l)) => {
                            leaders.insert(shard, l);
                        }
                        _ => return Err(format!("shard {shard}: leaders seen by {:?}: {seen:?}", views.keys())),
                    }
                }
                Ok(leaders)
            }
        })
        .await
    }

    /// Shard → (leader, its term) when every node in `seen_by` answers, names the same
    /// leader for every shard, and that leader is one of them and says it leads: a
    /// majority's view while the other nodes are cut off. `Err` says what is missing.
    pub async fn agreed_leaders(&self, seen_by: &[u64]) -> Result<BTreeMap<u32, (u64, u64)>, String> {
        let mut views = BTreeMap::new();
        for &id in seen_by {
            views.insert(id, self.node(id).try_cluster_view().await.map_err(|e| format!("node {id}: {e}"))?);
        }
        let mut leaders = BTreeMap::new();
        for shard in 0..self.shards {
            let seen: Vec<Option<u64>> =
                views.values().map(|v| v.shards.iter().find(|s| s.id == shard).and_then(|s| s.leader)).collect();
            let leader = match seen.first().copied().flatten() {
                Some(l) if seen.iter().all(|x| *x == Some(l)) => l,
                _ => return Err(format!("shard {shard}: leaders seen by {seen_by:?}: {seen:?}")),
            };
            let own = views.get(&leader).and_then(|v| v.shards.iter().find(|s| s.id == shard));
            match own {
                Some(s) if s.state == "Leader" => leaders.insert(shard, (leader, s.term)),
                Some(s) => return Err(format!("shard {shard}: node {leader} is named leader but is {}", s.state)),
                None => return Err(format!("shard {shard}: leader {leader} is not among {seen_by:?}")),
            };
        }
        Ok(leaders)
    }

    /// Reads every `(key, value)` back with linearizable GETs, spread round-robin over
    /// `via`, a few at a time, and returns a line for each key that is missing or wrong.
    pub async fn read_back(&self, pairs: &[(String, String)], via: &[u64]) -> Vec<String> {
        self.read_back_with(pairs, via, "").await
    }

    /// [`Cluster::read_back`] with a query string on each GET (`consistency=serializable`).
    pub async fn read_back_with(&self, pairs: &[(String, String)], via: &[u64], query: &str) -> Vec<String> {
        const IN_FLIGHT: usize = 16;
        assert!(!via.is_empty());
        let mut wrong = Vec::new();
        for (chunk_no, chunk) in pairs.chunks(IN_FLIGHT).enumerate() {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, (k, v)) in chunk.iter().enumerate() {
                let node = self.node(via[(chunk_no * IN_FLIGHT + i) % via.len()]);
                let (k, v, query) = (k.clone(), v.clone(), query.to_string());
                tasks.spawn(async move {
                    match node.try_entry_with(&k, &query).await {
                        Ok(Some(e)) if e.value == v => None,
                        Ok(Some(e)) => Some(format!("{k}: node {} has {:?}, acknowledged {v:?}", node.id(), e.value)),
                        Ok(None) => Some(format!("{k}: node {} says not found", node.id())),
                        Err(e) => Some(format!("{k}: node {}: {e}", node.id())),
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                wrong.extend(r.expect("a read-back task does not panic"));
            }
        }
        wrong
    }

    /// Prints the last `lines` lines of every node's log to stderr.
    pub fn print_logs(&self, lines: usize) {
        for n in &self.nodes {
            eprintln!("----- node {} ({}), last {lines} log lines -----", n.id, n.log_path.display());
            let log = n.log();
            // A panic deep in a long log is what matters most: show where it started.
            if let Some(at) = log.find("panicked at") {
                let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
                let excerpt: Vec<&str> = log[start..].lines().take(12).collect();
                eprintln!("first panic:\n{}\n-----", excerpt.join("\n"));
            }
            eprintln!("{}", n.log_tail(lines));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs(60);
        }
        for n in &self.nodes {
            n.kill();
        }
        for m in &self.mounts {
            if let Err(e) = umount(m) {
                eprintln!("cannot unmount the tmpfs at {}: {e}", m.display());
            }
        }
        let keep = self.keep.load(std::sync::atomic::Ordering::Acquire);
        if keep || (std::thread::panicking() && std::env::var_os("RINGKV_KEEP_TEST_DATA").is_some()) {
            eprintln!("RINGKV_KEEP_TEST_DATA: data and logs kept in {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}

/// Mounts a tmpfs of `bytes` at `dir` (created if missing).
fn mount_tmpfs(dir: &std::path::Path, bytes: u64) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("running mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("mount -t tmpfs at {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Unmounts `dir` (lazily: a process still holding a file there does not stop it).
fn umount(dir: &std::path::Path) -> Result<(), String> {
    let out = std::process::Command::new("umount").arg("-l").arg(dir).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Whether this machine lets the tests mount a tmpfs ([`ClusterBuilder::tmpfs_data_dirs`]):
/// it tries one. `Err` says why not (not root, no `mount`, a container without the
/// capability).
pub fn tmpfs_available() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    mount_tmpfs(dir.path(), 1 << 20)?;
    umount(dir.path())
}

/// The certificates of a TLS cluster: the cluster's CA and each node's certificate (for
/// its address and `localhost`, on both ports); a separate CA for client certificates on
/// the client port (one CA for both would let any client certificate open the internal
/// port), and the harness's certificate of each.
pub struct Pki {
    pub ca: crate::pki::Ca,
    /// The client port's `--tls-client-ca`.
    pub clients: crate::pki::Ca,
    nodes: BTreeMap<u64, crate::pki::Issued>,
    /// The harness on the client port (`harness`, of [`Pki::clients`]).
    pub harness: crate::pki::Issued,
    /// The harness on the internal ports (`harness-admin`, of the cluster's CA).
    pub admin: crate::pki::Issued,
}

impl Pki {
    fn new(dir: &std::path::Path, nodes: &[NodeProcess]) -> Pki {
        let ca = crate::pki::Ca::new(dir, "cluster");
        let nodes = nodes
            .iter()
            .map(|n| {
                let ip = n.client_addr.ip().to_string();
                (n.id, ca.issue(&format!("node-{}", n.id), &[&ip, "localhost"], 30))
            })
            .collect();
        let clients = crate::pki::Ca::new(dir, "clients");
        let harness = clients.issue("harness", &["harness"], 30);
        let admin = ca.issue("harness-admin", &["harness-admin"], 30);
        Pki { ca, clients, nodes, harness, admin }
    }

    /// Node `id`'s certificate files (rewrite them to rotate).
    pub fn node(&self, id: u64) -> &crate::pki::Issued {
        &self.nodes[&id]
    }

    /// For the client ports: trusts the cluster's CA, presents `harness`.
    pub fn client_port_config(&self) -> rustls::ClientConfig {
        crate::pki::client_config(&self.ca.cert, Some(&self.harness))
    }

    /// For the internal ports: trusts the cluster's CA, presents `harness-admin`.
    pub fn internal_config(&self) -> rustls::ClientConfig {
        crate::pki::client_config(&self.ca.cert, Some(&self.admin))
    }
}
