//! The REST API: one router, [`app`], over any [`CounterBackend`], so the standalone and gateway
//! modes serve the same contract from the same handlers. Every response, errors included, goes
//! through the request metrics middleware; with `api.auth` on, the API routes are guarded by
//! scope ([`auth`]): increments need `write`, reads (batch reads too) `read`, resets `reset`,
//! and `/metrics`
//! `metrics` when protected; with `api.rate_limit` on, increments and reads are rate limited
//! ([`gate`]). Probes, `/health` and `/openapi.json` stay open.

pub mod auth;
pub mod error;
pub mod gate;
pub mod handlers;
pub mod json;
pub mod rate_limit;
pub mod request_metrics;

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, get, post};

use self::auth::Scope;
use self::gate::Gate;
use crate::counter::CounterBackend;
use crate::domain::policy::CounterPolicies;
pub use crate::domain::rules::Limits;
use request_metrics::RouteMeter;

/// What the handlers share.
pub struct AppState<B> {
    pub backend: Arc<B>,
    pub limits: Limits,
    /// Per-counter-type policies (`counter_types`).
    pub policies: Arc<CounterPolicies>,
    /// The process mode, a metrics label: `standalone`, `gateway` or `counter`.
    pub mode: &'static str,
    /// Who may call which route, and how often (`api.auth`, `api.rate_limit`).
    pub gate: Gate,
}

impl<B> Clone for AppState<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            limits: self.limits,
            policies: self.policies.clone(),
            mode: self.mode,
            gate: self.gate.clone(),
        }
    }
}

/// One route: its template, and its method router built from the route's meter (which wraps
/// every handler of the route).
type RouteSpec<B> = (&'static str, fn(&RouteMeter) -> MethodRouter<AppState<B>>);

/// The REST router. Each route's handlers are measured, labelled with its template.
pub fn app<B: CounterBackend>(state: AppState<B>) -> Router {
    let routes: [RouteSpec<B>; 10] = [
        ("/api/v1/counter/increment", |m| {
            post(m.guard(Scope::Write, handlers::increment::<B>))
        }),
        ("/api/v1/counter/batch", |m| {
            post(m.guard(Scope::Read, handlers::batch::<B>))
        }),
        ("/api/v1/counter/{resource_id}/{counter_type}", |m| {
            get(m.guard(Scope::Read, handlers::get_counter::<B>))
                .delete(m.guard(Scope::Reset, handlers::reset_counter::<B>))
        }),
        ("/api/v1/leaderboard/{counter_type}", |m| {
            get(m.guard(Scope::Read, handlers::leaderboard::<B>))
        }),
        ("/health", |m| get(m.wrap(handlers::health::<B>))),
        ("/api/v1/health", |m| get(m.wrap(handlers::api_health::<B>))),
        ("/livez", |m| get(m.wrap(handlers::livez))),
        ("/readyz", |m| get(m.wrap(handlers::readyz::<B>))),
        ("/metrics", |m| {
            get(m.guard_if(m.metrics_scope(), handlers::metrics))
        }),
        ("/openapi.json", |m| get(m.wrap(handlers::openapi))),
    ];
    let router = with_routes(routes, state.mode, &state.gate);
    router.with_state(state)
}

/// A router of `routes`, each with a measured 405 fallback, plus a measured 404 fallback.
fn with_routes<B: CounterBackend, const N: usize>(
    routes: [RouteSpec<B>; N],
    mode: &'static str,
    gate: &Gate,
) -> Router<AppState<B>> {
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, build)| {
            let meter = RouteMeter::with_gate(path, mode, gate.clone());
            router.route(
                path,
                build(&meter).fallback(meter.wrap(handlers::method_not_allowed)),
            )
        })
        .fallback(RouteMeter::new("unmatched", mode).wrap(handlers::not_found))
}

/// The probe and metrics routes alone, for counter processes, whose API is gRPC.
pub fn probe_app<B: CounterBackend>(state: AppState<B>) -> Router {
    let routes: [RouteSpec<B>; 4] = [
        ("/health", |m| get(m.wrap(handlers::health::<B>))),
        ("/livez", |m| get(m.wrap(handlers::livez))),
        ("/readyz", |m| get(m.wrap(handlers::readyz::<B>))),
        ("/metrics", |m| {
            get(m.guard_if(m.metrics_scope(), handlers::metrics))
        }),
    ];
    let router = with_routes(routes, state.mode, &state.gate);
    router.with_state(state)
}
