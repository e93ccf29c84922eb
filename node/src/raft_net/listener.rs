//! The internal port's listener: a connection that opens with the wire's magic bytes is
//! served here as a wire connection, each request handed to an [`Inbound`]; every other
//! connection goes on to the HTTP router (which the API layer builds).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::call::Call;
use super::error::CallError;
use super::stream::{Connection, Prefixed};
use super::wire::{self, Kind, MAGIC};
use crate::ring::ShardId;
use crate::tls::{Mutual, Reloading};

/// What answers the calls that arrive over the wire: the node.
pub trait Inbound: Send + Sync + 'static {
    /// Answers `call` for `shard`: the postcard answer after [`wire::ANSWER_PREFIX`] bytes
    /// of room (see [`super::call::encode_answer`]).
    fn answer(
        &self,
        call: Call,
        shard: ShardId,
        body: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<u8>, CallError>> + Send;
}

/// How long a new connection may take to send its first four bytes.
const SNIFF_LIMIT: Duration = Duration::from_secs(5);

/// The HTTP side of the internal port, as `axum::serve` sees it.
pub struct HttpSide {
    rx: mpsc::Receiver<(Prefixed, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for HttpSide {
    type Io = Prefixed;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Prefixed, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            None => std::future::pending().await, // stopping: axum's shutdown ends the wait
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accepts on `listener` until `stop`, serving wire connections itself and passing the
/// others to the returned HTTP side. With `tls`, every connection must first complete
/// the mutual TLS handshake (a client certificate of the cluster's CA); one that does not
/// is closed before a byte of it is read as a request.
pub fn split<H: Inbound>(
    listener: TcpListener,
    node: Arc<H>,
    tls: Option<Arc<Reloading<Mutual>>>,
    stop: CancellationToken,
) -> std::io::Result<HttpSide> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => return,
            };
            match accepted {
                Ok((s, addr)) => {
                    let _ = s.set_nodelay(true);
                    let tls = tls.as_ref().map(|t| t.current().server.clone());
                    tokio::spawn(sniff(s, addr, tls, tx.clone(), node.clone(), stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!(error = %e, "internal port: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(HttpSide { rx, local })
}

/// Completes the TLS handshake if there is one, then tells the wire from HTTP by the
/// connection's first four bytes.
async fn sniff<H: Inbound>(
    s: TcpStream,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    http: mpsc::Sender<(Prefixed, SocketAddr)>,
    node: Arc<H>,
    stop: CancellationToken,
) {
    let opened = tokio::time::timeout(SNIFF_LIMIT, async {
        let mut conn = match tls {
            None => Connection::Plain(s),
            Some(config) => match tokio_rustls::TlsAcceptor::from(config).accept(s).await {
                Ok(t) => Connection::ServerTls(Box::new(t)),
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "internal port: refused a connection in the TLS handshake");
                    return None;
                }
            },
        };
        let mut head = [0u8; 4];
        conn.read_exact(&mut head).await.ok()?;
        Some((conn, head))
    })
    .await;
    match opened {
        Ok(Some((conn, head))) if &head == MAGIC => serve_wire(conn, node, stop).await,
        Ok(Some((conn, head))) => {
            let _ = http.send((Prefixed::new(head.to_vec(), conn), addr)).await;
        }
        _ => {} // refused, closed, silent or broken before saying anything
    }
}

/// Serves one wire connection (its magic already read): each request in its own task (a
/// slow append must not hold up a vote), answers written back in batches by the
/// connection's writer.
async fn serve_wire<H: Inbound>(s: Connection, node: Arc<H>, stop: CancellationToken) {
    let (r, w) = s.split();
    let mut r = BufReader::with_capacity(64 << 10, r);
    let conn_stop = stop.child_token();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(wire::write_loop(w, rx, conn_stop.clone()));
    loop {
        let next = tokio::select! {
            r = wire::read_request(&mut r) => r,
            _ = conn_stop.cancelled() => break,
        };
        let req = match next {
            Ok(Some(req)) => req,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "wire connection dropped");
                break;
            }
        };
        let (node, tx) = (node.clone(), tx.clone());
        tokio::spawn(async move {
            let answer = match Kind::from_u8(req.kind) {
                Some(kind) => node.answer(Call::from(kind), req.shard, &req.body).await,
                None => Err(CallError::Bad(format!("unknown request kind {}", req.kind))),
            };
            // An answer comes with room for the frame header in front of it.
            let frame = match answer {
                Ok(room_and_body) => wire::answer_frame_in(req.id, wire::OK, room_and_body),
                Err(e) => wire::answer_frame(req.id, wire::FAILED, e.to_string().as_bytes()),
            };
            let _ = tx.send(frame);
        });
    }
    conn_stop.cancel();
}
