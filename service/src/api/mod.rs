//! The REST API: one router, [`app`], over any [`CounterBackend`], so the standalone and gateway
//! modes serve the same contract from the same handlers. Every response, errors included, goes
//! through the request metrics middleware.

pub mod error;
pub mod handlers;
pub mod json;
pub mod request_metrics;

use std::sync::Arc;

use axum::Router;
use axum::handler::HandlerWithoutStateExt;
use axum::routing::{MethodRouter, get, post};

use crate::domain::policy::CounterPolicies;
use tower::ServiceBuilder;

use crate::counter::CounterBackend;
pub use crate::domain::rules::Limits;
use request_metrics::RequestMetricsLayer;

/// What the handlers share.
pub struct AppState<B> {
    pub backend: Arc<B>,
    pub limits: Limits,
    /// Per-counter-type policies (`counter_types`).
    pub policies: Arc<CounterPolicies>,
    /// The process mode, a metrics label: `standalone`, `gateway` or `counter`.
    pub mode: &'static str,
}

impl<B> Clone for AppState<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            limits: self.limits,
            policies: self.policies.clone(),
            mode: self.mode,
        }
    }
}

/// The REST router. Each route carries its own request-metrics layer, labelled with its template.
pub fn app<B: CounterBackend>(state: AppState<B>) -> Router {
    let mode = state.mode;
    let routes: [(&'static str, MethodRouter<AppState<B>>); 10] = [
        ("/api/v1/counter/increment", post(handlers::increment::<B>)),
        ("/api/v1/counter/batch", post(handlers::batch::<B>)),
        (
            "/api/v1/counter/{resource_id}/{counter_type}",
            get(handlers::get_counter::<B>).delete(handlers::reset_counter::<B>),
        ),
        (
            "/api/v1/leaderboard/{counter_type}",
            get(handlers::leaderboard::<B>),
        ),
        ("/health", get(handlers::health::<B>)),
        ("/api/v1/health", get(handlers::api_health::<B>)),
        ("/livez", get(handlers::livez)),
        ("/readyz", get(handlers::readyz::<B>)),
        ("/metrics", get(handlers::metrics)),
        ("/openapi.json", get(handlers::openapi)),
    ];
    with_routes(routes, mode).with_state(state)
}

/// A router of `routes`, each with its metrics layer and a 405 fallback, plus a 404 fallback.
fn with_routes<B: CounterBackend, const N: usize>(
    routes: [(&'static str, MethodRouter<AppState<B>>); N],
    mode: &'static str,
) -> Router<AppState<B>> {
    let not_found = ServiceBuilder::new()
        .layer(RequestMetricsLayer::new("unmatched", mode))
        .service(handlers::not_found.into_service());
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, method_router)| {
            let method_router = method_router
                .fallback(handlers::method_not_allowed)
                .layer(RequestMetricsLayer::new(path, mode));
            router.route(path, method_router)
        })
        .fallback_service(not_found)
}

/// The probe and metrics routes alone, for counter processes, whose API is gRPC.
pub fn probe_app<B: CounterBackend>(state: AppState<B>) -> Router {
    let mode = state.mode;
    let routes: [(&'static str, MethodRouter<AppState<B>>); 4] = [
        ("/health", get(handlers::health::<B>)),
        ("/livez", get(handlers::livez)),
        ("/readyz", get(handlers::readyz::<B>)),
        ("/metrics", get(handlers::metrics)),
    ];
    with_routes(routes, mode).with_state(state)
}
