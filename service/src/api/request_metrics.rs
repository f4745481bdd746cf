//! Request metrics and the request span, wrapped around each route's handlers by its
//! [`RouteMeter`], so the route template label is fixed at router construction and the hot path
//! does no label lookup: each (method, status) pair of a route resolves its Prometheus handles
//! once and reuses them. It wraps the handlers rather than layering the route: a layer would be
//! one more boxed service, cloned and boxing a future on every request.
//!
//! A handler wrapped with [`RouteMeter::guard`] runs only for a caller whose API token has the
//! handler's scope and who is within the rate limit ([`super::gate`]); a refused request is
//! measured and answered 401, 403 or 429 without calling it. The caller's name is the handler's
//! [`CALLER`] while it runs.
//!
//! When tracing is enabled each request also gets an `http.request` server span (continuing a
//! caller's W3C `traceparent`), entered while the handler runs; otherwise no span is built. Each
//! completed request is logged at debug level, with the caller's name when auth named one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::task::futures::TaskLocalFuture;

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{Histogram, IntCounter};
use tracing::Span;

use super::auth::{CALLER, Scope};
use super::gate::Gate;
use crate::metrics::METRICS;

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "other",
];
const STATUSES: [u16; 14] = [
    200, 400, 401, 403, 404, 405, 408, 413, 415, 422, 429, 500, 503, 0,
];

type Handles = (IntCounter, Histogram);

/// Records `highpress_http_requests_total` and `highpress_http_request_duration_seconds` for one
/// route template, around each handler it [wraps](RouteMeter::wrap) or
/// [guards](RouteMeter::guard).
#[derive(Clone)]
pub struct RouteMeter {
    route: &'static str,
    mode: &'static str,
    handles: Arc<[OnceLock<Handles>]>,
    gate: Gate,
}

impl RouteMeter {
    /// A meter of an open route.
    pub fn new(route: &'static str, mode: &'static str) -> Self {
        Self::with_gate(route, mode, Gate::default())
    }

    /// A meter whose [guarded](RouteMeter::guard) handlers pass `gate`.
    pub fn with_gate(route: &'static str, mode: &'static str, gate: Gate) -> Self {
        let handles = (0..METHODS.len() * STATUSES.len())
            .map(|_| OnceLock::new())
            .collect();
        Self {
            route,
            mode,
            handles,
            gate,
        }
    }

    /// `handler`, measured as a request to this route, open to anyone.
    pub fn wrap<H>(&self, handler: H) -> Metered<H> {
        Metered {
            handler,
            meter: self.clone(),
            scope: None,
        }
    }

    /// `handler`, measured, for callers whose token has `scope` (when auth is on) and who are
    /// within the rate limit (when it is on).
    pub fn guard<H>(&self, scope: Scope, handler: H) -> Metered<H> {
        Metered {
            handler,
            meter: self.clone(),
            scope: self.gate.is_on().then_some(scope),
        }
    }

    /// The scope `/metrics` needs here, if any (`api.auth.protect_metrics`).
    pub fn metrics_scope(&self) -> Option<Scope> {
        self.gate.metrics_scope()
    }

    /// `handler` guarded by `scope` when there is one, else open.
    pub fn guard_if<H>(&self, scope: Option<Scope>, handler: H) -> Metered<H> {
        match scope {
            Some(scope) => self.guard(scope, handler),
            None => self.wrap(handler),
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

/// A handler measured by its route's [`RouteMeter`], and guarded when it has a scope.
#[derive(Clone)]
pub struct Metered<H> {
    handler: H,
    meter: RouteMeter,
    /// The scope a caller's token needs; `None` when the route is open or the gate is off.
    scope: Option<Scope>,
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
        let caller = match self.scope {
            None => Ok(None),
            Some(scope) => self
                .meter
                .gate
                .admit(&request, scope)
                .map(|token| token.map(|t| t.name().clone())),
        };
        let (inner, caller) = match caller {
            Err(refused) => (
                Call::Refused {
                    response: Some(refused.into_response()),
                },
                None,
            ),
            Ok(None) => {
                let _entered = span.enter();
                let future = self.handler.call(request, state);
                (Call::Open { future }, None)
            }
            Ok(Some(name)) => {
                span.record("enduser.id", &*name);
                let future = {
                    let _entered = span.enter();
                    self.handler.call(request, state)
                };
                let future = CALLER.scope(name.clone(), future);
                (Call::AsCaller { future }, Some(name))
            }
        };
        RecordOnCompletion {
            inner,
            meter: self.meter,
            method,
            started: Instant::now(),
            span,
            caller,
        }
    }
}

pin_project_lite::pin_project! {
    /// A handler's future: open, run as an authenticated caller, or refused without running.
    #[project = CallProjection]
    pub enum Call<F> {
        Open { #[pin] future: F },
        AsCaller { #[pin] future: TaskLocalFuture<Arc<str>, F> },
        Refused { response: Option<Response> },
    }
}

impl<F: Future<Output = Response>> Future for Call<F> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match self.project() {
            CallProjection::Open { future } => future.poll(cx),
            CallProjection::AsCaller { future } => future.poll(cx),
            CallProjection::Refused { response } => {
                Poll::Ready(response.take().expect("a refused call is polled once"))
            }
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
        enduser.id = tracing::field::Empty,
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
        inner: Call<F>,
        meter: RouteMeter,
        method: usize,
        started: Instant,
        span: Span,
        caller: Option<Arc<str>>,
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
            caller = this.caller.as_deref(),
            "request"
        );
        Poll::Ready(response)
    }
}
