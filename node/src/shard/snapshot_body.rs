//! The bytes of a snapshot as openraft moves them: either already encoded, or the state
//! of a split's new shard, encoded only if something actually reads it (a follower
//! that needs the snapshot). A new shard can then open the moment the split applies,
//! whatever the size of the keys it took over.

use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// What a lazy body encodes on first use (a shard's state: `state_machine.rs`).
pub trait Encode: Send + Sync + 'static {
    /// The snapshot's bytes.
    fn encode(&self) -> io::Result<Vec<u8>>;
}

/// A snapshot body (openraft's `SnapshotData`).
pub struct SnapshotBody(Body);

enum Body {
    Bytes(Cursor<Vec<u8>>),
    Lazy(Box<dyn Encode>),
}

impl SnapshotBody {
    pub fn bytes(v: Vec<u8>) -> Self {
        SnapshotBody(Body::Bytes(Cursor::new(v)))
    }

    /// A body that encodes `state` on first use.
    pub fn lazy(state: impl Encode) -> Self {
        SnapshotBody(Body::Lazy(Box::new(state)))
    }

    fn cursor(&mut self) -> io::Result<&mut Cursor<Vec<u8>>> {
        if let Body::Lazy(state) = &self.0 {
            let bytes = state.encode()?;
            self.0 = Body::Bytes(Cursor::new(bytes));
        }
        match &mut self.0 {
            Body::Bytes(c) => Ok(c),
            Body::Lazy(_) => unreachable!("encoded above"),
        }
    }

    /// The encoded bytes.
    pub fn into_bytes(mut self) -> io::Result<Vec<u8>> {
        self.cursor()?;
        match self.0 {
            Body::Bytes(c) => Ok(c.into_inner()),
            Body::Lazy(_) => unreachable!("encoded above"),
        }
    }
}

impl AsyncRead for SnapshotBody {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().cursor() {
            Ok(c) => Pin::new(c).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for SnapshotBody {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut().cursor() {
            Ok(c) => Pin::new(c).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotBody {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        Pin::new(self.get_mut().cursor()?).start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut().cursor() {
            Ok(c) => Pin::new(c).poll_complete(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
