//! Serving the client port with server-side time limits, so a client that stalls cannot
//! hold a connection (and its task and buffers) forever.
//!
//! - A connection must complete its first request head within
//!   [`Timeouts::header_read`], whether it speaks HTTP/1.1 or HTTP/2 (the protocol
//!   sniffing and the HTTP/2 preface are covered too); otherwise it is closed.
//! - On HTTP/1.1 every later request head has the same limit, counted from the end of
//!   the previous response, so an idle keep-alive connection is closed after it as well.
//! - A request body must arrive within [`Timeouts::body_read`] of its head; a handler
//!   still waiting for it then gets an error, and the client a 408 JSON error with
//!   `Connection: close`.
//!
//! `axum::serve` sets no timer on hyper, so none of these limits would apply there.
//! Shutdown: stop accepting, ask every connection to finish its in-flight requests
//! (idle ones close at once), and wait for them at most [`Timeouts::drain`]: a response
//! that never ends (a watch stream) must not keep the node from stopping.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::error::error_body;
use crate::tls::PeerIdentity;

/// Time limits on what clients send.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest wait for the first request head on a new connection. Default 10 s:
    /// a client that connects and stalls (slowloris) is cut off after this.
    pub first_head: Duration,
    /// Longest wait for each later request head on a keep-alive connection, idle time
    /// included (hyper's header timer starts when the connection goes idle). Default
    /// 120 s: longer than the idle timeout of common client connection pools (90 s), so
    /// a pooled connection is never closed just as a client reuses it.
    pub header_read: Duration,
    /// Longest time from a request's head to the end of its body. Default 10 s: the
    /// largest body the API takes (a 1 MiB value, JSON-escaped up to ~6 MiB) then needs
    /// about 0.6 MB/s.
    pub body_read: Duration,
    /// Longest wait on shutdown for in-flight requests; then the remaining connections
    /// are closed. Default 10 s.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            first_head: Duration::from_secs(10),
            header_read: Duration::from_secs(120),
            body_read: Duration::from_secs(10),
            drain: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains: returns once
/// every connection has finished its in-flight requests and closed, or after
/// [`Timeouts::drain`], closing the rest.
pub async fn serve<L>(mut listener: L, app: Router, timeouts: Timeouts, shutdown: CancellationToken)
where
    L: Listener,
    L::Io: AsyncRead + AsyncWrite + PeerIdentity + Unpin + Send + 'static,
{
    let app = app.layer(middleware::from_fn_with_state(timeouts.body_read, body_deadline));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(timeouts.header_read);
    let builder = Arc::new(builder);
    let connections = TaskTracker::new();
    let abort = CancellationToken::new();
    loop {
        // `Listener::accept` retries failed accepts itself (with a pause when out of
        // file descriptors), so it never returns an error.
        let (io, _remote) = tokio::select! {
            conn = listener.accept() => conn,
            () = shutdown.cancelled() => break,
        };
        let (builder, app, stop, abort) = (builder.clone(), app.clone(), shutdown.clone(), abort.clone());
        connections.spawn(async move {
            tokio::select! {
                () = connection(&builder, io, app, timeouts.first_head, stop) => {}
                // Dropping the connection closes the socket.
                () = abort.cancelled() => {}
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(timeouts.drain, connections.wait()).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            timeout = ?timeouts.drain,
            "closing client connections still busy after the drain timeout"
        );
        abort.cancel();
        connections.wait().await;
    }
}

/// Serves one connection. The first request head must arrive within `first_head`: on
/// HTTP/1.1 hyper's header timer covers each head, but not the protocol sniffing before
/// it, nor an HTTP/2 preface and handshake.
async fn connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    app: Router,
    first_head: Duration,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + PeerIdentity + Unpin + Send + 'static,
{
    let started = Arc::new(AtomicBool::new(false));
    let tower = TowerToHyperService::new(app);
    let seen = started.clone();
    // A verified client certificate names the client for every request it sends.
    let identity = io.client_identity();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        seen.store(true, Ordering::Relaxed);
        if let Some(id) = &identity {
            req.extensions_mut().insert(id.clone());
        }
        hyper::service::Service::call(&tower, req)
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let first_deadline = tokio::time::sleep(first_head);
    tokio::pin!(first_deadline);
    // A `select!` precondition is evaluated only when the loop comes round, which an
    // active connection may not do for hours: check `started` when the timer fires.
    let mut waiting_for_first_head = true;
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            () = &mut first_deadline, if waiting_for_first_head => {
                if !started.load(Ordering::Relaxed) {
                    tracing::debug!(timeout = ?first_head, "closing a connection that sent no request head in time");
                    return;
                }
                waiting_for_first_head = false;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Wraps each request body so that reading it fails once `limit` has passed since the
/// request head arrived, and answers such requests with 408.
async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + limit;
    let flag = expired.clone();
    let req = req.map(|inner| Body::new(DeadlineBody { inner, deadline, sleep: None, expired: flag }));
    let resp = next.run(req).await;
    if !expired.load(Ordering::Relaxed) {
        return resp;
    }
    let message = format!("the request body did not arrive within {limit:?} of its head");
    let mut resp = (StatusCode::REQUEST_TIMEOUT, axum::Json(error_body("body_timeout", &message))).into_response();
    // The rest of the body is never read: the connection cannot carry another request.
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The body read past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] when it is still incomplete at
/// `deadline`. The timer is only armed once a read has to wait.
struct DeadlineBody {
    inner: Body,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
