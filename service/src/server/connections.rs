//! What one client connection may cost a server (the `server.*` limits), for the REST server
//! and the counter's gRPC server alike: at most `max_connections` open at once (a connection
//! beyond them is closed as soon as it is accepted), none kept without a byte either way for
//! `idle_timeout`, HTTP/1 request headers within `header_read_timeout`, every REST request
//! answered within `request_timeout`, and HTTP/2 bounded in concurrent streams, frame size and
//! header-list size. So a client that opens connections and sends nothing, or half a header,
//! holds a bounded number of descriptors for a bounded time.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::api::error::{ApiError, ErrorCode};
use crate::config::ServerConfig;
use crate::metrics::METRICS;

/// Which server a connection belongs to: the `server` label of the connection metrics.
#[derive(Debug, Clone, Copy)]
pub enum ServerKind {
    /// REST (standalone, gateway) or probes and `/metrics` (counter).
    Http,
    /// The counter's gRPC server.
    Grpc,
}

impl ServerKind {
    fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// Accepts connections from a listener, within `server.max_connections`.
pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
    kind: ServerKind,
}

impl Acceptor {
    pub fn new(listener: TcpListener, config: &ServerConfig, kind: ServerKind) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(config.max_connections)),
            idle_timeout: config.idle_timeout,
            kind,
        }
    }

    /// The next connection within the bound. One beyond it is closed at once and counted; an
    /// accept error (out of descriptors, say) is logged and retried after a pause.
    pub async fn accept(&self) -> Guarded {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, server = self.kind.label(), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                METRICS
                    .connections_rejected
                    .with_label_values(&[self.kind.label()])
                    .inc();
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            return Guarded::new(stream, permit, self.idle_timeout, self.kind);
        }
    }

    /// The accepted connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<Guarded>> {
        futures::stream::unfold(self, |acceptor| async move {
            let connection = acceptor.accept().await;
            Some((Ok(connection), acceptor))
        })
    }
}

/// One open connection's place under the bound, and in the `highpress_connections` gauge.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// An accepted connection that holds its slot until dropped and ends itself (reads as end of
/// stream) once no byte has gone either way for the idle timeout. The clock is read on each
/// read and write; the timer is re-armed only when it fires, so I/O costs no timer operation.
pub struct Guarded {
    stream: TcpStream,
    idle_check: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    last_activity: Instant,
    kind: ServerKind,
    _slot: Slot,
}

impl Guarded {
    fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        idle_timeout: Duration,
        kind: ServerKind,
    ) -> Self {
        let open = METRICS.connections.with_label_values(&[kind.label()]);
        open.inc();
        let now = Instant::now();
        Self {
            stream,
            idle_check: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            idle_timeout,
            last_activity: now,
            kind,
            _slot: Slot {
                _permit: permit,
                open,
            },
        }
    }

    /// Whether the idle timeout has passed; otherwise the timer is armed to wake `cx` then.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.idle_check.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = self.last_activity + self.idle_timeout;
            if Instant::now() >= deadline {
                return true;
            }
            self.idle_check.as_mut().reset(deadline);
        }
    }

    fn touched<T>(&mut self, io: Poll<T>) -> Poll<T> {
        if io.is_ready() {
            self.last_activity = Instant::now();
        }
        io
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if read.is_pending() && this.idle_expired(cx) {
            METRICS
                .connections_idle_closed
                .with_label_values(&[this.kind.label()])
                .inc();
            // End of stream: the server closes the connection.
            return Poll::Ready(Ok(()));
        }
        this.touched(read)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.touched(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.touched(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Serves `app` on the connections of `acceptor` until `shutdown` fires, then stops accepting
/// and lets in-flight requests finish for at most `drain`.
pub async fn serve_http(
    app: Router,
    acceptor: Acceptor,
    config: &ServerConfig,
    shutdown: &CancellationToken,
    drain: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_frame_size(config.http2_max_frame_size)
        .max_header_list_size(config.http2_max_header_list_bytes);
    let service = Deadline {
        router: app,
        timeout: config.request_timeout,
    };
    let graceful = GracefulShutdown::new();
    loop {
        let connection = tokio::select! {
            connection = acceptor.accept() => connection,
            () = shutdown.cancelled() => break,
        };
        let serving = builder
            .serve_connection_with_upgrades(
                TokioIo::new(connection),
                TowerToHyperService::new(service.clone()),
            )
            .into_owned();
        let serving = graceful.watch(serving);
        tokio::spawn(async move {
            // A connection's errors (reset, malformed request, header timeout) are the client's.
            let _ = serving.await;
        });
    }
    drop(acceptor);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within server.shutdown_timeout_ms");
    }
}

/// The router, with `server.request_timeout_ms` on every request.
#[derive(Clone)]
struct Deadline {
    router: Router,
    timeout: Duration,
}

impl tower::Service<Request<hyper::body::Incoming>> for Deadline {
    type Response = Response;
    type Error = Infallible;
    type Future = DeadlineFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<hyper::body::Incoming>) -> DeadlineFuture {
        DeadlineFuture {
            inner: tower::Service::call(&mut self.router, request),
            deadline: tokio::time::sleep(self.timeout),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, or 503 `unavailable` once the deadline passed. The deadline's timer
    /// is registered only if the answer is not ready at the first poll.
    pub struct DeadlineFuture {
        #[pin]
        inner: RouteFuture<Infallible>,
        #[pin]
        deadline: Sleep,
    }
}

impl Future for DeadlineFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(answer) = this.inner.poll(cx) {
            return Poll::Ready(answer);
        }
        if this.deadline.poll(cx).is_pending() {
            return Poll::Pending;
        }
        METRICS.http_request_timeouts.inc();
        Poll::Ready(Ok(ApiError::new(
            ErrorCode::Unavailable,
            "the request did not complete within server.request_timeout_ms; its outcome is \
             unknown (retry with the same Idempotency-Key)",
        )
        .into_response()))
    }
}
