//! TLS for both ports (rustls, ring provider): certificates and keys read from PEM files
//! and re-read when the files change, so a rotation (cert-manager's, the operator's)
//! needs no restart. New connections use the new files; open ones keep their session.
//!
//! - Client port: server TLS, optionally verifying client certificates against a CA;
//!   a verified client's name reaches the API as [`ClientIdentity`].
//! - Internal port: mutual TLS. Every connection, in or out, presents a certificate the
//!   cluster's CA signed; anything else fails the handshake, before a frame is read.

use std::sync::Arc;

/// The verified name of a client certificate on the client port (its first DNS name,
/// else its common name), as a request extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity(pub Arc<str>);

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use tokio_util::sync::CancellationToken;

pub use ringkv_api::tls::{certificates, mutual_client_config, private_key, provider, roots};

/// The PEM files of one TLS setup.
#[derive(Clone, Debug)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client port: the CA of client certificates (optional). Internal port: the
    /// cluster's CA (required).
    pub ca: Option<PathBuf>,
}

impl Files {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(self.cert.as_path()), Some(self.key.as_path()), self.ca.as_deref()].into_iter().flatten()
    }
}

/// The client port's server configuration: this node's certificate, and client
/// certificates verified against `files.ca` when there is one (optional: a client
/// without one still connects, and authenticates with a token).
pub fn client_port_config(files: &Files) -> Result<ServerConfig, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certificates(&files.cert)?, private_key(&files.key)?)
        .map_err(|e| format!("{}: the key does not fit the certificate: {e}", files.cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether two CA bundles share a certificate. One CA for client certificates on the
/// client port and for the internal port lets every client certificate open the internal
/// port too (where any certificate of its CA may do everything).
pub fn share_a_ca(a: &Path, b: &Path) -> bool {
    match (certificates(a), certificates(b)) {
        (Ok(a), Ok(b)) => a.iter().any(|c| b.contains(c)),
        _ => false,
    }
}

/// Both sides of the internal port's mutual TLS, from one certificate: the server
/// requires a client certificate the cluster's CA signed, the client presents this
/// node's and trusts only that CA.
#[derive(Clone)]
pub struct Mutual {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// Builds [`Mutual`] from the internal port's files.
pub fn internal_configs(files: &Files) -> Result<Mutual, String> {
    let ca = files.ca.as_deref().ok_or("mutual TLS needs the cluster's CA")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
        .build()
        .map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&files.cert)?, private_key(&files.key)?)
        .map_err(|e| format!("{}: the key does not fit the certificate: {e}", files.cert.display()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let client = mutual_client_config(&files.cert, &files.key, ca)?;
    Ok(Mutual { server: Arc::new(server), client: Arc::new(client) })
}

/// A TLS configuration that follows its files (see [`crate::reload`]).
pub type Reloading<T> = crate::reload::Reloading<T>;

/// `build` from `files`, built again whenever they change; an error here stops the node
/// from starting.
pub fn reloading<T: Send + Sync + 'static>(
    files: Files,
    build: fn(&Files) -> Result<T, String>,
) -> Result<Arc<Reloading<T>>, String> {
    let paths = files.paths().map(Path::to_path_buf).collect();
    Reloading::new("TLS certificate", paths, move || build(&files))
}

/// The name a verified client certificate proves: its first DNS name; its common name
/// only when it has no subject alternative names at all (a certificate with SANs is
/// named by them, never by a CN its requester may have chosen freely); nothing when the
/// SAN extension does not parse.
pub fn certificate_name(der: &[u8]) -> Option<Arc<str>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    match cert.subject_alternative_name() {
        Err(_) => None,
        Ok(Some(san)) => san.value.general_names.iter().find_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(Arc::<str>::from(*d)),
            _ => None,
        }),
        Ok(None) => cert.subject().iter_common_name().next()?.as_str().ok().map(Arc::from),
    }
}

/// A served connection's client identity, if it proved one.
pub trait PeerIdentity {
    fn client_identity(&self) -> Option<ClientIdentity>;
}

impl PeerIdentity for tokio::net::TcpStream {
    fn client_identity(&self) -> Option<ClientIdentity> {
        None
    }
}

impl<IO> PeerIdentity for tokio_rustls::server::TlsStream<IO> {
    fn client_identity(&self) -> Option<ClientIdentity> {
        let (_, session) = self.get_ref();
        let cert = session.peer_certificates()?.first()?;
        certificate_name(cert).map(ClientIdentity)
    }
}

/// How long a client may take over its TLS handshake.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// A TLS listener for `axum`-style serving: accepts TCP, runs each handshake in its own
/// task (a slow client holds up nobody) with the configuration current at that moment,
/// and yields the connections that completed it.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl TlsListener {
    pub fn new(
        listener: tokio::net::TcpListener,
        config: Arc<Reloading<ServerConfig>>,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = stop.cancelled() => return,
                };
                let (tcp, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "client port: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(config.current());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "client port: TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "client port: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            None => std::future::pending().await, // stopping: the server's shutdown ends the wait
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
