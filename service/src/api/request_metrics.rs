//! Request metrics and the request span, wrapped around each route's handlers by its
//! [`RouteMeter`], so the route template label is fixed at router construction and the hot path
//! does no label lookup: each (method, status) pair of a route resolves its Prometheus handles
//! once and reuses them. It wraps the handlers rather than layering the route: a layer would be
//! one more boxed service, cloned and boxing a future on every request.
//!
//! When tracing is enabled each request also gets an `http.request` server span (continuing a
//! caller's W3C `traceparent`), entered while the handler runs; otherwise no span is built. Each
//! completed request is logged at debug level.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use prometheus::{Histogram, IntCounter};
use tracing::Span;

use crate::metrics::METRICS;

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "other",
];
const STATUSES: [u16; 12] = [200, 400, 404, 405, 408, 413, 415, 422, 429, 500, 503, 0];

type Handles = (IntCounter, Histogram);

/// Records `highpress_http_requests_total` and `highpress_http_request_duration_seconds` for one
/// route template, around each handler it [wraps](RouteMeter::wrap).
#[derive(Clone)]
pub struct RouteMeter {
    route: &'static str,
    mode: &'static str,
    handles: Arc<[OnceLock<Handles>]>,
}

impl RouteMeter {
    pub fn new(route: &'static str, mode: &'static str) -> Self {
        let handles = (0..METHODS.len() * STATUSES.len())
            .map(|_| OnceLock::new())
            .collect();
        Self {
            route,
            mode,
            handles,
        }
    }

    /// `handler`, measured as a request to this route.
    pub fn wrap<H>(&self, handler: H) -> Metered<H> {
        Metered {
            handler,
            meter: self.clone(),
        }
    }

    fn handles(&self, method: usize, status: StatusCode) -> &Handles {
        let s = STATUSES
            .iter()
            .position(|&c| c == status.as_u16())
            .unwrap_or(STATUSES.len() - 1);
        self.handles[method * STATUSES.len() + s].get_or_init(|| {
            let code = status.as_str();
            let status_label = if STATUSES[s] == 0 { "other" } else { code };
            let class = crate::metrics::http_status_class(status.as_u16());
            let labels = [self.route, METHODS[method], status_label, class, self.mode];
            (
                METRICS.http_requests.with_label_values(&labels),
                METRICS.http_duration.with_label_values(&labels),
            )
        })
    }
}

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::HEAD => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// A handler measured by its route's [`RouteMeter`].
#[derive(Clone)]
pub struct Metered<H> {
    handler: H,
    meter: RouteMeter,
}

impl<H, T, S> Handler<T, S> for Metered<H>
where
    H: Handler<T, S>,
{
    type Future = RecordOnCompletion<H::Future>;

    fn call(self, request: Request, state: S) -> Self::Future {
        let method = method_index(request.method());
        let span = if crate::telemetry::enabled() {
            request_span(self.meter.route, self.meter.mode, &request)
        } else {
            Span::none()
        };
        let inner = {
            let _entered = span.enter();
            self.handler.call(request, state)
        };
        RecordOnCompletion {
            inner,
            meter: self.meter,
            method,
            started: Instant::now(),
            span,
        }
    }
}

/// The `http.request` server span of one request, a child of the caller's `traceparent` if any.
fn request_span(route: &'static str, mode: &'static str, request: &Request) -> Span {
    let method = request.method().as_str();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.route = route,
        http.request.method = method,
        http.response.status_code = tracing::field::Empty,
        highpress.counter_type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        mode,
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::set_parent(&span, &crate::telemetry::extract_http(request.headers()));
    crate::telemetry::record_trace_id(&span);
    span
}

pin_project_lite::pin_project! {
    pub struct RecordOnCompletion<F> {
        #[pin]
        inner: F,
        meter: RouteMeter,
        method: usize,
        started: Instant,
        span: Span,
    }
}

impl<F> Future for RecordOnCompletion<F>
where
    F: Future<Output = Response>,
{
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let _entered = this.span.enter();
        let response = std::task::ready!(this.inner.poll(cx));
        let status = response.status();
        let (count, latency) = this.meter.handles(*this.method, status);
        count.inc();
        let elapsed = this.started.elapsed();
        latency.observe(elapsed.as_secs_f64());
        this.span
            .record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            crate::telemetry::mark_error(this.span);
        }
        tracing::debug!(
            route = this.meter.route,
            method = METHODS[*this.method],
            status = status.as_u16(),
            elapsed_us = elapsed.as_micros() as u64,
            "request"
        );
        Poll::Ready(response)
    }
}
