//! The wire: a small binary protocol on the internal port for the hot node-to-node
//! calls (AppendEntries, votes, forwarded client requests).
//!
//! Why by hand: these calls went over HTTP/2 (reqwest/hyper/h2), and a profile of a
//! 3-replica PUT load showed h2's framing, HPACK, flow control and per-stream tasks among
//! the largest costs per write. What the hot path needs is much less: one TCP connection
//! per peer, requests tagged with an id and answered out of order, and every frame that
//! is ready written in one syscall, so the AppendEntries of all shards bound for the same
//! peer share a write (and a wake-up) instead of paying for one each. No crate does that
//! for postcard bodies without bringing its own RPC framework and runtime assumptions.
//!
//! A connection starts with [`MAGIC`]; the internal port tells it from HTTP by those
//! bytes (see [`super::listener`]). Frames, big-endian:
//! - request: `len u32 | id u64 | kind u8 | shard u32 | body` (`len` counts what follows it)
//! - answer:  `len u32 | id u64 | status u8 | body` (status 0: the body is the postcard
//!   answer; otherwise the body is an error text)
//!
//! Snapshots, admin calls, status and relayed watches stay on HTTP: they are rare, large
//! or streamed, and must not queue behind (or in front of) the appends of other shards.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::error::NetError;
use super::stream::{server_name, Connection, Reader, Writer};
use crate::ring::{NodeId, ShardId};
use crate::tls::{Mutual, Reloading};

/// The first bytes a wire connection sends.
pub const MAGIC: &[u8; 4] = b"RKW1";
/// Largest frame accepted (append batches are bounded far below; merges' absorb chunks too).
pub const MAX_FRAME: usize = 512 << 20;
/// Bytes of a request frame's header after its length.
const REQ_HEADER: usize = 8 + 1 + 4;
/// Bytes of an answer frame's header after its length.
const ANS_HEADER: usize = 8 + 1;
/// Frames written in one batch at most (then flushed).
const WRITE_BATCH_BYTES: usize = 256 << 10;
/// A connection with calls waiting and no answer for this long is dropped and redialled.
const SILENT_LIMIT: Duration = Duration::from_secs(2);

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Append = 1,
    Vote = 2,
    Serve = 3,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Append),
            2 => Some(Kind::Vote),
            3 => Some(Kind::Serve),
            _ => None,
        }
    }
}

/// Status byte of an answer.
pub const OK: u8 = 0;
pub const FAILED: u8 = 1;

/// Encodes a request frame with a postcard body.
fn request_frame<T: Serialize>(id: u64, kind: Kind, shard: ShardId, body: &T) -> Result<Vec<u8>, postcard::Error> {
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&id.to_be_bytes());
    v.push(kind as u8);
    v.extend_from_slice(&shard.to_be_bytes());
    let mut v = postcard::to_extend(body, v)?;
    let len = (v.len() - 4) as u32;
    v[..4].copy_from_slice(&len.to_be_bytes());
    Ok(v)
}

/// Bytes an answer frame puts before its body (length, id, status).
pub const ANSWER_PREFIX: usize = 4 + ANS_HEADER;

/// Encodes an answer frame.
pub fn answer_frame(id: u64, status: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ANSWER_PREFIX + body.len());
    v.resize(ANSWER_PREFIX, 0);
    v.extend_from_slice(body);
    answer_frame_in(id, status, v)
}

/// Makes `v` — [`ANSWER_PREFIX`] bytes of room, then the body — an answer frame in
/// place, so a large answer (a read, a list) is not copied once more to be framed.
pub fn answer_frame_in(id: u64, status: u8, mut v: Vec<u8>) -> Vec<u8> {
    debug_assert!(v.len() >= ANSWER_PREFIX);
    let len = (v.len() - 4) as u32;
    v[..4].copy_from_slice(&len.to_be_bytes());
    v[4..12].copy_from_slice(&id.to_be_bytes());
    v[12] = status;
    v
}

/// A decoded request frame.
pub struct Request {
    pub id: u64,
    pub kind: u8,
    pub shard: ShardId,
    pub body: Bytes,
}

/// Reads one frame's length and the rest of it; `None` at a clean end of stream.
async fn read_frame(r: &mut BufReader<Reader>, header: usize) -> std::io::Result<Option<Vec<u8>>> {
    let len = match r.read_u32().await {
        Ok(n) => n as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if len < header || len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad frame length {len}")));
    }
    // Grown as the bytes arrive: a bogus length cannot make the node allocate it up front.
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    (&mut *r).take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() < len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "frame cut short"));
    }
    Ok(Some(buf))
}

/// Reads the next request frame (server side).
pub async fn read_request(r: &mut BufReader<Reader>) -> std::io::Result<Option<Request>> {
    let Some(buf) = read_frame(r, REQ_HEADER).await? else { return Ok(None) };
    let id = u64::from_be_bytes(buf[0..8].try_into().unwrap_or_default());
    let kind = buf[8];
    let shard = ShardId::from_be_bytes(buf[9..13].try_into().unwrap_or_default());
    let body = Bytes::from(buf).slice(REQ_HEADER..);
    Ok(Some(Request { id, kind, shard, body }))
}

/// Writes frames as they come, every frame already queued (up to a batch) in one write.
/// Cancels `stop` when the connection fails or the channel closes.
pub async fn write_loop(w: Writer, mut rx: mpsc::UnboundedReceiver<Vec<u8>>, stop: CancellationToken) {
    let mut w = BufWriter::with_capacity(WRITE_BATCH_BYTES, w);
    'frames: loop {
        let first = tokio::select! {
            f = rx.recv() => f,
            _ = stop.cancelled() => None,
        };
        let mut queued = 0;
        let mut next = first;
        while let Some(frame) = next {
            queued += frame.len();
            if w.write_all(&frame).await.is_err() {
                break 'frames;
            }
            next = if queued < WRITE_BATCH_BYTES { rx.try_recv().ok() } else { None };
        }
        if queued == 0 || w.flush().await.is_err() {
            break; // the channel closed, stop was cancelled, or the connection failed
        }
    }
    stop.cancel();
    let _ = w.shutdown().await;
}

type Reply = Result<(u8, Bytes), String>;

/// One connection to a peer: frames out through the writer task, answers matched to
/// their callers by id in the reader task.
struct Conn {
    addr: String,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>,
    next_id: AtomicU64,
    /// Cancelled once the connection is unusable; the next call dials again.
    dead: CancellationToken,
    opened: Instant,
    /// Milliseconds after `opened` of the last answer read.
    last_answer_ms: Arc<AtomicU64>,
}

impl Conn {
    /// Connects to `addr` (with mutual TLS when `tls` is given: the peer must prove a
    /// certificate of the cluster's CA for that name) and says the wire's magic.
    async fn dial(addr: &str, timeout: Duration, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Arc<Conn>, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let s = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr}: no answer in {timeout:?}"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        let mut s = match tls {
            None => Connection::Plain(s),
            Some(config) => {
                let name = server_name(addr)?;
                let tls = tokio::time::timeout_at(deadline, tokio_rustls::TlsConnector::from(config).connect(name, s))
                    .await
                    .map_err(|_| format!("TLS handshake with {addr}: no answer in {timeout:?}"))?
                    .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                Connection::ClientTls(Box::new(tls))
            }
        };
        s.write_all(MAGIC).await.map_err(|e| e.to_string())?;
        let (r, w) = s.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            addr: addr.to_string(),
            tx,
            pending: Arc::default(),
            next_id: AtomicU64::new(1),
            dead: CancellationToken::new(),
            opened: Instant::now(),
            last_answer_ms: Arc::default(),
        });
        tokio::spawn(write_loop(w, rx, conn.dead.clone()));
        tokio::spawn(read_answers(
            r,
            conn.pending.clone(),
            conn.dead.clone(),
            conn.opened,
            conn.last_answer_ms.clone(),
        ));
        Ok(conn)
    }

    fn fail(&self, id: u64) {
        self.pending.lock().remove(&id);
    }
}

async fn read_answers(
    r: Reader,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>,
    dead: CancellationToken,
    opened: Instant,
    last_answer_ms: Arc<AtomicU64>,
) {
    let mut r = BufReader::with_capacity(64 << 10, r);
    let why = loop {
        let frame = tokio::select! {
            f = read_frame(&mut r, ANS_HEADER) => f,
            _ = dead.cancelled() => break "connection closed".to_string(),
        };
        match frame {
            Ok(Some(buf)) => {
                last_answer_ms.store(opened.elapsed().as_millis() as u64, Ordering::Relaxed);
                let id = u64::from_be_bytes(buf[0..8].try_into().unwrap_or_default());
                let status = buf[8];
                let waiter = pending.lock().remove(&id);
                if let Some(w) = waiter {
                    let _ = w.send(Ok((status, Bytes::from(buf).slice(ANS_HEADER..))));
                }
            }
            Ok(None) => break "the peer closed the connection".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    dead.cancel();
    let waiters: Vec<_> = pending.lock().drain().collect();
    for (_, w) in waiters {
        let _ = w.send(Err(why.clone()));
    }
}

/// Wire connections to every peer, dialled on first use and again after a failure.
pub struct WireClient {
    conns: Mutex<HashMap<NodeId, Arc<Conn>>>,
    dialling: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<()>>>>,
    /// Mutual TLS to the peers, when the internal port runs it (new connections take the
    /// current certificate; open ones keep their session).
    tls: Option<Arc<Reloading<Mutual>>>,
}

impl WireClient {
    pub fn new(tls: Option<Arc<Reloading<Mutual>>>) -> Self {
        Self { conns: Mutex::default(), dialling: Mutex::default(), tls }
    }

    fn live(&self, node: NodeId, addr: &str) -> Option<Arc<Conn>> {
        let conns = self.conns.lock();
        conns.get(&node).filter(|c| c.addr == addr && !c.dead.is_cancelled()).cloned()
    }

    async fn conn(&self, node: NodeId, addr: &str, timeout: Duration) -> Result<Arc<Conn>, NetError> {
        if let Some(c) = self.live(node, addr) {
            return Ok(c);
        }
        let guard = self.dialling.lock().entry(node).or_default().clone();
        let _one_dial_at_a_time = guard.lock().await;
        if let Some(c) = self.live(node, addr) {
            return Ok(c);
        }
        let tls = self.tls.as_ref().map(|t| t.current().client.clone());
        let c = Conn::dial(addr, timeout.min(Duration::from_millis(500)), tls)
            .await
            .map_err(|e| NetError::Unreachable(node, e))?;
        if let Some(old) = self.conns.lock().insert(node, c.clone()) {
            old.dead.cancel();
        }
        Ok(c)
    }

    /// Sends one request and waits for its answer, at most `timeout` in all.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        addr: &str,
        kind: Kind,
        shard: ShardId,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = tokio::time::timeout_at(deadline, self.conn(node, addr, timeout))
            .await
            .map_err(|_| NetError::Unreachable(node, format!("no connection within {timeout:?}")))??;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = request_frame(id, kind, shard, req).map_err(|e| NetError::Remote(node, format!("encode: {e}")))?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(id, tx);
        // Checked after registering: a reader that died before then has drained the map.
        if conn.dead.is_cancelled() || conn.tx.send(frame).is_err() {
            conn.fail(id);
            return Err(NetError::Unreachable(node, "connection lost".into()));
        }
        let reply = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("connection lost".to_string()),
            Err(_) => {
                conn.fail(id);
                let since_answer = conn
                    .opened
                    .elapsed()
                    .saturating_sub(Duration::from_millis(conn.last_answer_ms.load(Ordering::Relaxed)));
                if since_answer > SILENT_LIMIT {
                    conn.dead.cancel(); // a peer gone without a reset: dial again next time
                }
                return Err(NetError::Unreachable(node, format!("timeout after {timeout:?}")));
            }
        };
        match reply {
            Ok((OK, body)) => postcard::from_bytes(&body).map_err(|e| NetError::Remote(node, format!("decode: {e}"))),
            Ok((_, body)) => Err(NetError::Remote(node, String::from_utf8_lossy(&body).into_owned())),
            Err(e) => Err(NetError::Unreachable(node, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_length_id_kind_and_shard() {
        let f = request_frame(7, Kind::Vote, 3, &(1u8, "x")).expect("encode");
        let len = u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, f.len() - 4);
        assert_eq!(u64::from_be_bytes(f[4..12].try_into().unwrap()), 7);
        assert_eq!(Kind::from_u8(f[12]), Some(Kind::Vote));
        assert_eq!(u32::from_be_bytes(f[13..17].try_into().unwrap()), 3);
        let body: (u8, String) = postcard::from_bytes(&f[17..]).expect("decode");
        assert_eq!(body, (1, "x".to_string()));
        let a = answer_frame(9, FAILED, b"no");
        assert_eq!(u32::from_be_bytes(a[0..4].try_into().unwrap()) as usize, a.len() - 4);
        assert_eq!(&a[13..], b"no");
        assert_eq!(Kind::from_u8(0), None);
    }
}
