//! What one client connection may cost a server (the `server.*` limits), for the REST server
//! and the counter's gRPC server alike: at most `max_connections` open at once (a connection
//! beyond them is closed as soon as it is accepted), none kept without a byte either way for
//! `idle_timeout`, HTTP/1 request headers within `header_read_timeout` (a REST body within
//! `body_read_timeout` is the body extractor's, `api::json`), and HTTP/2 bounded in concurrent
//! streams, frame size and header-list size. So a client that opens connections and sends nothing, or half a header,
//! holds a bounded number of descriptors for a bounded time.
//!
//! Both timeouts are kept by one timer per connection ([`Guarded`]), which the request path
//! does not touch: hyper's own header timer would arm and disarm a timer in tokio's wheel for
//! every request (a boxed `Sleep`, a lock, an insert and a removal). Hyper still says when it
//! waits for a request's headers, through a per-connection [`HeadTimer`] that only writes the
//! wait's deadline where the connection's timer looks when it fires.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
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

use super::late_body::LateBody;
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
    /// HTTP/1 only: how long a request's headers may take ([`HeadTimer`]).
    header_timeout: Option<Duration>,
    kind: ServerKind,
}

impl Acceptor {
    pub fn new(listener: TcpListener, config: &ServerConfig, kind: ServerKind) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(config.max_connections)),
            idle_timeout: config.idle_timeout,
            header_timeout: match kind {
                ServerKind::Http => Some(config.header_read_timeout),
                ServerKind::Grpc => None,
            },
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
            return Guarded::new(
                stream,
                permit,
                self.idle_timeout,
                self.header_timeout,
                self.kind,
            );
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
/// stream) once a whole idle period passed with no byte either way (between `idle_timeout` and
/// twice that after the last one), or, on HTTP/1, once hyper waited `header_read_timeout` for a
/// request's headers ([`HeadTimer`]).
///
/// One timer keeps both. I/O only bumps a counter, and hyper's header wait only writes its
/// deadline; the timer is looked at when a read finds nothing to read, and re-armed only when
/// it fired: at the earliest of the idle deadline, the current header wait's deadline and, so
/// that a header wait begun since is seen in time, one header timeout later. So the request
/// path reads no clock for it and touches no timer; a busy connection re-arms the timer about
/// once per header timeout.
pub struct Guarded {
    stream: TcpStream,
    check: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    /// Reads and writes done, and their number when the timer last fired.
    activity: u64,
    activity_at_check: u64,
    /// When the timer last fired and found new activity (or the connection opened).
    quiet_since: Instant,
    /// Whether the timer has been polled since it was last armed, so it will wake this task.
    armed: bool,
    /// HTTP/1: the header wait hyper reports, and the header timeout.
    head: Option<(Arc<HeadWatch>, Duration)>,
    kind: ServerKind,
    _slot: Slot,
}

/// Why a [`Guarded`] connection ends itself.
enum Expired {
    Idle,
    Head,
}

impl Guarded {
    fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        idle_timeout: Duration,
        header_timeout: Option<Duration>,
        kind: ServerKind,
    ) -> Self {
        let open = METRICS.connections.with_label_values(&[kind.label()]);
        open.inc();
        let now = Instant::now();
        let first_check = header_timeout.map_or(idle_timeout, |h| h.min(idle_timeout));
        Self {
            stream,
            check: Box::pin(tokio::time::sleep_until(now + first_check)),
            idle_timeout,
            activity: 0,
            activity_at_check: 0,
            quiet_since: now,
            armed: false,
            head: header_timeout.map(|timeout| (Arc::new(HeadWatch::new(now.into_std())), timeout)),
            kind,
            _slot: Slot {
                _permit: permit,
                open,
            },
        }
    }

    /// Hyper's HTTP/1 timer for this connection, which reports its header waits here; `None`
    /// for a gRPC connection.
    pub fn head_timer(&self) -> Option<HeadTimer> {
        self.head.as_ref().map(|(watch, _)| HeadTimer {
            watch: watch.clone(),
        })
    }

    /// Whether a whole idle period passed without I/O, or the current header wait's deadline
    /// passed; otherwise the timer is armed to wake `cx`'s task when the next of them may be due.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<Expired> {
        loop {
            if self.check.is_elapsed() {
                let now = Instant::now();
                if self.activity != self.activity_at_check {
                    self.activity_at_check = self.activity;
                    self.quiet_since = now;
                } else if now >= self.quiet_since + self.idle_timeout {
                    return Some(Expired::Idle);
                }
                let mut next = self.quiet_since + self.idle_timeout;
                if let Some((watch, header_timeout)) = &self.head {
                    if let Some(deadline) = watch.deadline() {
                        let deadline = Instant::from_std(deadline);
                        if deadline <= now {
                            watch.expired.store(true, Ordering::Relaxed);
                            return Some(Expired::Head);
                        }
                        next = next.min(deadline);
                    }
                    next = next.min(now + *header_timeout);
                }
                self.check.as_mut().reset(next);
                self.armed = false;
            }
            if self.armed {
                return None;
            }
            // Registers this task's waker; a connection is polled by one task only.
            if self.check.as_mut().poll(cx).is_pending() {
                self.armed = true;
                return None;
            }
            // Already due: look again.
        }
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
        if read.is_pending()
            && let Some(expired) = this.expired(cx)
        {
            let closed = match expired {
                Expired::Idle => &METRICS.connections_idle_closed,
                Expired::Head => &METRICS.connections_header_timeout,
            };
            closed.with_label_values(&[this.kind.label()]).inc();
            // End of stream: hyper drops a partial request, and the server closes the connection.
            return Poll::Ready(Ok(()));
        }
        this.touched(read)
    }
}

/// An HTTP/1 connection's header wait, as hyper reports it through [`HeadTimer`] and
/// [`Guarded`] enforces it.
struct HeadWatch {
    base: std::time::Instant,
    /// The current wait's deadline in nanoseconds after `base`; 0 when hyper is not waiting.
    deadline: AtomicU64,
    /// Set by the connection once a wait's deadline passed.
    expired: AtomicBool,
}

impl HeadWatch {
    fn new(base: std::time::Instant) -> Self {
        Self {
            base,
            deadline: AtomicU64::new(0),
            expired: AtomicBool::new(false),
        }
    }

    fn start(&self, deadline: std::time::Instant) {
        let nanos = deadline.saturating_duration_since(self.base).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX).max(1);
        self.deadline.store(nanos, Ordering::Relaxed);
    }

    fn deadline(&self) -> Option<std::time::Instant> {
        match self.deadline.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.base + Duration::from_nanos(nanos)),
        }
    }
}

/// Hyper's HTTP/1 timer for one [`Guarded`] connection. Hyper's HTTP/1 server uses its timer
/// for the header read timeout only: it asks for a sleep until the deadline when it starts
/// waiting for a request's headers, polls it while they are incomplete, and drops it once they
/// are in. This timer's sleeps register no waker: they write the deadline where the
/// connection's own timer looks, which wakes the task and ends the connection once it passed.
/// So they only work on the connection they were made for.
pub struct HeadTimer {
    watch: Arc<HeadWatch>,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(std::time::Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.watch.start(deadline);
        Box::pin(HeadSleep {
            watch: self.watch.clone(),
        })
    }

    fn reset(&self, _sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        self.watch.start(new_deadline);
    }
}

/// One header wait of a [`HeadTimer`]: ready once its connection found the deadline passed.
struct HeadSleep {
    watch: Arc<HeadWatch>,
}

impl std::future::Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.watch.expired.load(Ordering::Relaxed) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl hyper::rt::Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.watch.deadline.store(0, Ordering::Relaxed);
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
        let kind = self.kind;
        tokio::spawn(async move {
            loop {
                let connection = tokio::select! {
                    connection = self.accept() => connection,
                    () = done.closed() => return,
                };
                let handshake = TlsAcceptor::from(tls.current()).accept(connection);
                let done = done.clone();
                tokio::spawn(async move {
                    if let Some(stream) =
                        handshaken_within(kind, handshake_timeout, handshake).await
                    {
                        let _ = done.send(Ok(TlsConnection(stream))).await;
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(handshaken)
    }
}

/// The connection once `handshake` completed within `timeout`; `None`, counted in
/// `highpress_tls_handshakes_failed_total`, when it failed or took longer.
async fn handshaken_within(
    kind: ServerKind,
    timeout: Duration,
    handshake: tokio_rustls::Accept<Guarded>,
) -> Option<tokio_rustls::server::TlsStream<Guarded>> {
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(stream)) => Some(stream),
        outcome => {
            if let Ok(Err(e)) = outcome {
                tracing::debug!(error = %e, server = kind.label(), "TLS handshake failed");
            }
            METRICS
                .tls_handshakes_failed
                .with_label_values(&[kind.label()])
                .inc();
            None
        }
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
/// header-read timeout. An HTTP/2 request's body is a [`LateBody`], read to its end even when
/// the route answers without reading it.
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
    // Each connection's HTTP/1 timer is its own HeadTimer (below); this one only serves a
    // connection without one.
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
        let peer = tag_peers.then(|| connection.peer_ip()).flatten();
        let body_read_timeout = config.body_read_timeout;
        let app = app
            .clone()
            .map_request(move |request: hyper::Request<Incoming>| {
                // The one boxing of the body that axum would do anyway.
                let mut request = if request.version() == hyper::Version::HTTP_2 {
                    request.map(|body| Body::new(LateBody::new(body, body_read_timeout)))
                } else {
                    request.map(Body::new)
                };
                if let Some(address) = peer {
                    request.extensions_mut().insert(PeerAddr(address));
                }
                request
            });
        let service = TowerToHyperService::new(app);
        let mut builder = builder.clone();
        if let Some(timer) = connection.head_timer() {
            builder.http1().timer(timer);
        }
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
                let kind = connection.kind;
                let handshake = TlsAcceptor::from(tls.current()).accept(connection);
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // A failed or unfinished handshake is the client's; its slot is freed.
                    let Some(stream) = handshaken_within(kind, handshake_timeout, handshake).await
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
