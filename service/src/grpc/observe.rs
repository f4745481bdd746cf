//! The counter's gRPC server observation, as a tower layer around every gRPC service: per call
//! `highpress_grpc_server_requests_total` and `highpress_grpc_server_request_duration_seconds`
//! (method from a closed set, code and code class), and, when tracing is enabled, a `grpc.server`
//! span that continues the gateway's W3C trace context from the call's metadata (an error when
//! the code is a server error), with the REST caller the gateway names (`enduser.id`).
//!
//! The code is read from the response headers: a failed unary call answers trailers-only with
//! `grpc-status` there; a unary success carries no `grpc-status` header and counts as OK.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{Request, Response};
use tonic::Code;
use tower::{Layer, Service};
use tracing::Span;

use crate::metrics::{GRPC_METHODS, METRICS, grpc_code_class, grpc_code_name};

/// Observes every call of the wrapped gRPC server; `mode` is the metrics label.
#[derive(Clone)]
pub struct GrpcObserveLayer {
    mode: &'static str,
}

impl GrpcObserveLayer {
    pub fn new(mode: &'static str) -> Self {
        Self { mode }
    }
}

impl<S> Layer<S> for GrpcObserveLayer {
    type Service = GrpcObserve<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcObserve {
            inner,
            mode: self.mode,
        }
    }
}

#[derive(Clone)]
pub struct GrpcObserve<S> {
    inner: S,
    mode: &'static str,
}

/// The method name of a gRPC path `/package.Service/Method`, from [`GRPC_METHODS`].
pub fn method_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or("");
    GRPC_METHODS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("other")
}

impl<S, B, RB> Service<Request<B>> for GrpcObserve<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ObserveCall<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = method_of(request.uri().path());
        let span = if crate::telemetry::enabled() && !matches!(method, "Check" | "Watch") {
            let span = tracing::info_span!(
                "grpc.server",
                otel.name = %request.uri().path().trim_start_matches('/'),
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.method = method,
                rpc.grpc.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                enduser.id = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            );
            if let Some(caller) = request
                .headers()
                .get(super::CALLER_METADATA)
                .and_then(|v| v.to_str().ok())
            {
                span.record("enduser.id", caller);
            }
            crate::telemetry::set_parent(&span, &crate::telemetry::extract_http(request.headers()));
            crate::telemetry::record_trace_id(&span);
            span
        } else {
            Span::none()
        };
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ObserveCall {
            inner,
            method,
            mode: self.mode,
            started: Instant::now(),
            span,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct ObserveCall<F> {
        #[pin]
        inner: F,
        method: &'static str,
        mode: &'static str,
        started: Instant,
        span: Span,
    }
}

impl<F, RB, E> Future for ObserveCall<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = std::task::ready!(this.inner.poll(cx));
        let code = match &result {
            Ok(response) => response
                .headers()
                .get("grpc-status")
                .map_or(Code::Ok, |v| Code::from_bytes(v.as_bytes())),
            Err(_) => Code::Internal,
        };
        let class = grpc_code_class(code);
        METRICS
            .grpc_requests
            .with_label_values(&[*this.method, grpc_code_name(code), class, *this.mode])
            .inc();
        METRICS
            .grpc_duration
            .with_label_values(&[*this.method, class, *this.mode])
            .observe(this.started.elapsed().as_secs_f64());
        this.span.record("rpc.grpc.status_code", code as i32);
        if class == "server_error" {
            crate::telemetry::mark_error(this.span);
        }
        tracing::debug!(
            method = *this.method,
            code = grpc_code_name(code),
            "gRPC call"
        );
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_a_closed_set() {
        assert_eq!(
            method_of("/highpress.counter.v1.CounterService/IncrementBatch"),
            "IncrementBatch"
        );
        assert_eq!(method_of("/grpc.health.v1.Health/Check"), "Check");
        assert_eq!(method_of("/evil.Service/DropTables"), "other");
        assert_eq!(method_of(""), "other");
    }
}
