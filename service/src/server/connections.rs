//! What one client connection may cost a server (the `server.*` limits), for the REST server
//! and the counter's gRPC server alike: at most `max_connections` open at once (a connection
//! beyond them is closed as soon as it is accepted), none kept without a byte either way for
//! `idle_timeout`, HTTP/1 request headers within `header_read_timeout` (a REST body within
//! `body_read_timeout` is the body extractor's, `api::json`), and HTTP/2 bounded in concurrent
//! streams, frame size and header-list size. So a client that opens connections and sends nothing, or half a header,
//! holds a bounded number of descriptors for a bounded time.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
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
use tower::ServiceExt;
use tower::util::Either;

use crate::api::rate_limit::PeerAddr;
use crate::config::ServerConfig;
use crate::metrics::METRICS;
use crate::tls::ServerTls;
use tokio_rustls::TlsAcceptor;

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
/// stream) once a whole idle period passed with no byte either way: between `idle_timeout` and
/// twice that after the last one. I/O only bumps a counter; the timer is looked at when a read
/// finds nothing to read, and re-armed only when it fired after activity, so the request path
/// reads no clock and touches no timer.
pub struct Guarded {
    stream: TcpStream,
    idle_check: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    /// Reads and writes done, and their number when the timer was last armed.
    activity: u64,
    activity_at_arm: u64,
    /// Whether the timer has been polled since it was last armed, so it will wake this task.
    armed: bool,
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
        Self {
            stream,
            idle_check: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            activity: 0,
            activity_at_arm: 0,
            armed: false,
            kind,
            _slot: Slot {
                _permit: permit,
                open,
            },
        }
    }

    /// Whether a whole idle period passed without I/O; otherwise the timer is armed to wake
    /// `cx`'s task when the current period ends.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.idle_check.is_elapsed() {
            if self.activity == self.activity_at_arm {
                return true;
            }
            self.activity_at_arm = self.activity;
            let next = Instant::now() + self.idle_timeout;
            self.idle_check.as_mut().reset(next);
            self.armed = false;
        }
        if !self.armed {
            // Registers this task's waker; a connection is polled by one task only.
            if self.idle_check.as_mut().poll(cx).is_ready() {
                return self.activity == self.activity_at_arm;
            }
            self.armed = true;
        }
        false
    }

    fn touched<T>(&mut self, io: Poll<T>) -> Poll<T> {
        if io.is_ready() {
            self.activity = self.activity.wrapping_add(1);
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

/// A gRPC server's connection after its TLS handshake.
pub struct TlsConnection(tokio_rustls::server::TlsStream<Guarded>);

impl AsyncRead for TlsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl Acceptor {
    /// The accepted connections once their TLS handshakes are done, for tonic's
    /// `serve_with_incoming`. Each handshake runs on its own task within `handshake_timeout`;
    /// one that fails or does not finish is dropped with its connection. Accepting stops when
    /// the server drops the stream.
    pub fn into_tls_stream(
        self,
        tls: Arc<ServerTls>,
        handshake_timeout: Duration,
    ) -> impl futures::Stream<Item = io::Result<TlsConnection>> {
        let (done, handshaken) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let connection = tokio::select! {
                    connection = self.accept() => connection,
                    () = done.closed() => return,
                };
                let handshake = TlsAcceptor::from(tls.current()).accept(connection);
                let done = done.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(stream)) = tokio::time::timeout(handshake_timeout, handshake).await
                    {
                        let _ = done.send(Ok(TlsConnection(stream))).await;
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(handshaken)
    }
}

impl Guarded {
    /// The client's address, as this connection's peer.
    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.stream.peer_addr().ok().map(|a| a.ip())
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Serves `app` on the connections of `acceptor` until `shutdown` fires, then stops accepting
/// and lets in-flight requests finish for at most `drain`. With `tag_peers`, each request
/// carries its connection's client address ([`PeerAddr`]), for rate limits by address. With
/// `tls`, each connection first completes a TLS handshake, on its own task and within the
/// header-read timeout.
pub async fn serve_http(
    app: Router,
    acceptor: Acceptor,
    config: &ServerConfig,
    shutdown: &CancellationToken,
    drain: Duration,
    tag_peers: bool,
    tls: Option<Arc<ServerTls>>,
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
    let graceful = GracefulShutdown::new();
    let handshake_timeout = config.header_read_timeout;
    loop {
        let connection = tokio::select! {
            connection = acceptor.accept() => connection,
            () = shutdown.cancelled() => break,
        };
        // Only rate limits by address need the peer on each request.
        let app = match tag_peers.then(|| connection.peer_ip()).flatten() {
            Some(address) => Either::Left(app.clone().map_request(
                move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(PeerAddr(address));
                    request
                },
            )),
            None => Either::Right(app.clone()),
        };
        let service = TowerToHyperService::new(app);
        match &tls {
            None => {
                let serving = builder
                    .serve_connection_with_upgrades(TokioIo::new(connection), service)
                    .into_owned();
                let serving = graceful.watch(serving);
                tokio::spawn(async move {
                    // A connection's errors (reset, malformed request, header timeout) are
                    // the client's.
                    let _ = serving.await;
                });
            }
            Some(tls) => {
                let handshake = TlsAcceptor::from(tls.current()).accept(connection);
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // A failed or unfinished handshake is the client's; its slot is freed.
                    let Ok(Ok(stream)) = tokio::time::timeout(handshake_timeout, handshake).await
                    else {
                        return;
                    };
                    let serving = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(serving).await;
                });
            }
        }
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
