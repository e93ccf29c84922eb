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
use super::wire::{self, Kind, MAGIC};
use crate::ring::ShardId;

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
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for HttpSide {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
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
/// others to the returned HTTP side.
pub fn split<H: Inbound>(listener: TcpListener, node: Arc<H>, stop: CancellationToken) -> std::io::Result<HttpSide> {
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
                    tokio::spawn(sniff(s, addr, tx.clone(), node.clone(), stop.clone()));
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

async fn sniff<H: Inbound>(
    s: TcpStream,
    addr: SocketAddr,
    http: mpsc::Sender<(TcpStream, SocketAddr)>,
    node: Arc<H>,
    stop: CancellationToken,
) {
    let mut head = [0u8; 4];
    let peeked = tokio::time::timeout(SNIFF_LIMIT, async {
        loop {
            let n = s.peek(&mut head).await?;
            if n == 0 || n >= head.len() {
                return Ok::<usize, std::io::Error>(n);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    match peeked {
        Ok(Ok(4)) if &head == MAGIC => serve_wire(s, node, stop).await,
        Ok(Ok(n)) if n > 0 => {
            let _ = http.send((s, addr)).await;
        }
        _ => {} // closed, silent or broken before saying anything
    }
}

/// Serves one wire connection: each request in its own task (a slow append must not hold
/// up a vote), answers written back in batches by the connection's writer.
async fn serve_wire<H: Inbound>(s: TcpStream, node: Arc<H>, stop: CancellationToken) {
    let (r, w) = s.into_split();
    let mut r = BufReader::with_capacity(64 << 10, r);
    let mut magic = [0u8; 4];
    if r.read_exact(&mut magic).await.is_err() {
        return;
    }
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
