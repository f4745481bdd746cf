//! Request metrics as a tower layer applied per route, so the route template label is fixed at
//! router construction and the hot path does no label lookup: each (method, status) pair of a
//! route resolves its Prometheus handles once and reuses them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use prometheus::{Histogram, IntCounter};
use tower::{Layer, Service};

use crate::metrics::METRICS;

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "other",
];
const STATUSES: [u16; 11] = [200, 400, 404, 405, 413, 415, 422, 429, 500, 503, 0];

type Handles = (IntCounter, Histogram);

/// Records `highpress_http_requests_total` and `highpress_http_request_duration_seconds` for one
/// route template.
#[derive(Clone)]
pub struct RequestMetricsLayer {
    route: &'static str,
    mode: &'static str,
    handles: Arc<[OnceLock<Handles>]>,
}

impl RequestMetricsLayer {
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

    fn handles(&self, method: usize, status: StatusCode) -> &Handles {
        let s = STATUSES
            .iter()
            .position(|&c| c == status.as_u16())
            .unwrap_or(STATUSES.len() - 1);
        self.handles[method * STATUSES.len() + s].get_or_init(|| {
            let code = status.as_str();
            let status_label = if STATUSES[s] == 0 { "other" } else { code };
            let labels = [self.route, METHODS[method], status_label, self.mode];
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

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    layer: RequestMetricsLayer,
}

impl<S> Service<Request> for RequestMetrics<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RecordOnCompletion<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = method_index(request.method());
        RecordOnCompletion {
            inner: self.inner.call(request),
            layer: self.layer.clone(),
            method,
            started: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct RecordOnCompletion<F> {
        #[pin]
        inner: F,
        layer: RequestMetricsLayer,
        method: usize,
        started: Instant,
    }
}

impl<F, E> Future for RecordOnCompletion<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let (count, latency) = this.layer.handles(*this.method, response.status());
            count.inc();
            latency.observe(this.started.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}
