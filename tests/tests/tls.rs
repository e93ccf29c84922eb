//! TLS on real processes: a cluster whose client ports serve HTTPS and whose internal
//! ports run mutual TLS (Raft, forwarding, admin, resharding all inside it); a table of
//! strangers the internal port must refuse in the handshake, before a single frame is
//! read; and certificates rotated under load without one failed request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringkv_ctl::driver::{Cluster as Ring, Driver};
use ringkv_plan::Spec;
use ringkv_tests::pki::{client_config, Ca, Issued};
use ringkv_tests::{key_path, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn converge(d: &Driver, shards: u32) -> Ring {
    let spec = move |_: &Ring| Spec { shards, replication: 3, nodes: [1, 2, 3].into() };
    d.converge(&spec, Duration::from_secs(90), |_| {}).await.unwrap_or_else(|e| panic!("did not converge: {e}"))
}

/// A client of the cluster's client ports with `tls`.
fn https(tls: rustls::ClientConfig) -> reqwest::Client {
    ringkv_api::client::http()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .tls_backend_preconfigured(tls)
        .build()
        .expect("an HTTP client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_on_mutual_tls_replicates_forwards_and_reshards() {
    let c = Cluster::builder(3).tls().start().await;
    let mut written = Vec::new();
    for i in 0..60u64 {
        let (k, v) = (format!("tls-{i}"), format!("v{i}"));
        // Through every node: most keys' leaders are elsewhere, so the write is forwarded
        // over the internal port's wire, inside mutual TLS.
        c.node(1 + i % 3).put(&k, &v).await;
        written.push((k, v));
    }
    let missing = c.read_back(&written, &c.ids()).await;
    assert!(missing.is_empty(), "{missing:?}");
    // The admin API and the splits' snapshots go over the internal port's HTTP/2, inside
    // mutual TLS too.
    let d = c.driver();
    let ring = converge(&d, 8).await;
    assert_eq!(ring.observed.shards.len(), 8, "{}", ring.describe());
    let missing = c.read_back(&written, &c.ids()).await;
    assert!(missing.is_empty(), "after the splits: {missing:?}");
    // Plain HTTP to a TLS port gets no answer.
    let plain = ringkv_api::client::http().no_proxy().timeout(Duration::from_secs(5)).build().expect("client");
    let url = format!("http://{}/v1/kv/tls-1", c.url(1).trim_start_matches("https://"));
    assert!(plain.get(url).send().await.is_err(), "plain HTTP on the client port got an answer");
}

/// Every way in that is not a certificate of the cluster's CA is refused in the
/// handshake: nothing reaches the wire or the admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_port_refuses_every_stranger_in_the_handshake() {
    let c = Cluster::builder(3).tls().start().await;
    let dir = c.dir().to_path_buf();
    let other = Ca::new(&dir, "other");
    let foreign = other.issue("foreign", &["operator"], 30);
    let expired = c.pki().ca.issue("expired", &["operator"], -1);
    let ca = c.pki().ca.cert.clone();
    let leader = c.leader_of(0).await.expect("shard 0 has a leader");
    let internal = c.internal_addr(leader);
    let freeze = |scheme: &str| format!("{scheme}://{internal}/internal/admin/shards/0/freeze?epoch=1000");

    let client_port_cert = c.pki().harness.clone();
    let attempts: Vec<(&str, &str, reqwest::Client)> = vec![
        ("plain HTTP", "http", ringkv_api::client::http().no_proxy().build().expect("client")),
        ("TLS without a client certificate", "https", https(client_config(&ca, None))),
        ("a certificate of another CA", "https", https(client_config(&ca, Some(&foreign)))),
        ("an expired certificate of the cluster's CA", "https", https(client_config(&ca, Some(&expired)))),
        ("the client port's client certificate", "https", https(client_config(&ca, Some(&client_port_cert)))),
    ];
    let refusals = || c.log(leader).matches("refused a connection in the TLS handshake").count();
    for (what, scheme, client) in attempts {
        let before = refusals();
        match client.post(freeze(scheme)).timeout(Duration::from_secs(5)).send().await {
            Err(e) => assert!(!e.is_connect() || scheme == "https", "{what}: not even connected: {e}"),
            Ok(resp) => panic!("{what}: the internal port answered a forged freeze: {}", resp.status()),
        }
        // The node itself refused it, in the handshake (not the client giving up).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while refusals() == before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(refusals() > before, "{what}: the node logged no refusal");
    }
    // The wire's own magic and a frame, in the clear: the connection closes unanswered.
    let mut tcp = tokio::net::TcpStream::connect(internal).await.expect("connect");
    let mut hello = ringkv_node::raft_net::wire::MAGIC.to_vec();
    hello.extend_from_slice(b"\0\0\0\x0d\0\0\0\0\0\0\0\x01\x01\0\0\0\0");
    tcp.write_all(&hello).await.ok();
    let mut buf = [0u8; 64];
    let n =
        tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
    // At most a TLS alert record (content type 21), never a wire answer.
    assert!(n == 0 || buf[0] == 0x15, "the wire answered in the clear: {:?}", &buf[..n]);

    // Nothing was applied: shard 0 is not frozen. (The harness's own certificate is let
    // in, which shows the refusals above are the certificates', not the test's.)
    let ring = c.driver().observe().await.expect("the harness's certificate is let in");
    assert!(!ring.observed.shards[&0].frozen, "a refused connection froze shard 0");
    // The client port: a client that does not trust the cluster's CA does not talk to it.
    let stranger = https(client_config(&other.cert, None));
    assert!(stranger.get(format!("{}/readyz", c.url(1))).send().await.is_err());
}

/// Renews every node's certificate (new key, same CA) by rewriting its files, as
/// cert-manager or the operator does, while clients write through every node on new and
/// pooled connections: no request fails, and new handshakes get the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_certificates_under_load_fails_no_request() {
    let c = Arc::new(Cluster::builder(3).tls().start().await);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..3u64 {
        let (c, stop) = (c.clone(), stop.clone());
        writers.spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                // A fresh client now and then: a new handshake with whatever is current.
                let http = https(c.pki().client_port_config());
                for _ in 0..20 {
                    let (k, v) = (format!("rot-{w}-{i}"), format!("v{i}"));
                    let url = format!("{}{}", c.url(1 + (i + w) % 3), key_path(&k));
                    match http.put(url).body(v.clone()).send().await {
                        Ok(r) if r.status().is_success() => acked.push((k, v)),
                        Ok(r) => failed.push(format!("{k}: {}", r.status())),
                        Err(e) => failed.push(format!("{k}: {e}")),
                    }
                    i += 1;
                }
            }
            (acked, failed)
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut renewed: Vec<(u64, Issued)> = Vec::new();
    for id in c.ids() {
        let ip = c.url(id).trim_start_matches("https://").rsplit_once(':').expect("host:port").0.to_string();
        let next = c.pki().ca.issue(&format!("node-{id}-next"), &[&ip, "localhost"], 30);
        let current = c.pki().node(id).clone();
        // Certificate first, key a moment later: the node must keep the old pair until the
        // new one fits together.
        std::fs::rename(&next.cert, &current.cert).expect("rotate the certificate");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        std::fs::rename(&next.key, &current.key).expect("rotate the key");
        renewed.push((id, current));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Release);
    let (mut acked, mut failed) = (Vec::new(), Vec::new());
    while let Some(r) = writers.join_next().await {
        let (a, f) = r.expect("a writer");
        acked.extend(a);
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during rotation: {:?}",
        failed.len(),
        acked.len() + failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(acked.len() > 100, "the writers wrote: {}", acked.len());
    // Every node now presents the new certificate to a new connection, on both ports.
    for (id, files) in &renewed {
        let want = ringkv_api::tls::certificates(&files.cert).expect("PEM")[0].as_ref().to_vec();
        let ports = [
            ("client", c.url(*id), c.pki().client_port_config()),
            ("internal", c.internal_addr(*id).to_string(), c.pki().internal_config()),
        ];
        for (port, addr, config) in ports {
            let addr = addr.trim_start_matches("https://").to_string();
            let got = presented_certificate(&addr, config).await;
            assert_eq!(got, want, "node {id}'s {port} port still presents the old certificate");
        }
        assert!(c.log(*id).contains("TLS certificate reloaded"), "node {id} says it reloaded");
    }
    let missing = c.read_back(&acked, &c.ids()).await;
    assert!(missing.is_empty(), "{missing:?}");
}

/// The certificate a TLS server at `addr` presents to a new connection.
async fn presented_certificate(addr: &str, config: rustls::ClientConfig) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from(addr.rsplit_once(':').expect("host:port").0.to_string())
        .expect("a name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("a handshake");
    let (_, session) = tls.get_ref();
    session.peer_certificates().expect("a certificate")[0].as_ref().to_vec()
}

/// A client certificate named in the token file authenticates as that entry: the
/// harness's certificate (`harness`) is given the `read` role, so it reads but may not
/// write; a client without a certificate or token gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_named_in_the_token_file_is_its_principal() {
    let files = tempfile::tempdir().expect("a directory");
    let tokens = files.path().join("tokens.json");
    std::fs::write(&tokens, r#"{"tokens": [{"name": "harness-cert", "certificate": "harness", "role": "read"}]}"#)
        .expect("the token file");
    let c = Cluster::standalone_builder().tls().flag("--auth-tokens", &tokens.display().to_string()).start().await;
    let url = format!("{}{}", c.url(1), key_path("cert-key"));
    let read = c.http().get(&url).send().await.expect("a read");
    assert_eq!(read.status(), 404, "the certificate's read role reads: {:?}", read.text().await);
    let write = c.http().put(&url).body("v").send().await.expect("a write");
    assert_eq!(write.status(), 403, "the read role may not write");
    let anonymous = https(client_config(&c.pki().ca.cert, None));
    let refused = anonymous.get(&url).send().await.expect("an answer");
    assert_eq!(refused.status(), 401, "no certificate, no token");
    assert!(refused.headers().contains_key("www-authenticate"));
}
