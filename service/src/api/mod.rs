//! The REST API: one router, [`app`], over any [`CounterBackend`], so the standalone and gateway
//! modes serve the same contract from the same handlers. Every response, errors included, goes
//! through the request metrics middleware.

pub mod error;
pub mod handlers;
pub mod json;
pub mod validate;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::counter::CounterBackend;
use crate::metrics::METRICS;
pub use validate::Limits;

/// What the handlers share.
pub struct AppState<B> {
    pub backend: Arc<B>,
    pub limits: Limits,
    /// The process mode, a metrics label: `standalone`, `gateway` or `counter`.
    pub mode: &'static str,
}

impl<B> Clone for AppState<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            limits: self.limits,
            mode: self.mode,
        }
    }
}

/// The REST router.
pub fn app<B: CounterBackend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/api/v1/counter/increment", post(handlers::increment::<B>))
        .route("/api/v1/counter/batch", post(handlers::batch::<B>))
        .route(
            "/api/v1/counter/{resource_id}/{counter_type}",
            get(handlers::get_counter::<B>),
        )
        .route(
            "/api/v1/leaderboard/{counter_type}",
            get(handlers::leaderboard::<B>),
        )
        .route("/health", get(handlers::health::<B>))
        .route("/livez", get(handlers::livez))
        .route("/readyz", get(handlers::readyz::<B>))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.mode, record_request))
        .with_state(state)
}

/// Counts every request and its latency by route template, method, status and mode.
async fn record_request(
    State(mode): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status();
    let labels = [route, method, status.as_str(), mode];
    METRICS.http_requests.with_label_values(&labels).inc();
    METRICS
        .http_duration
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
