//! The operator process (`highpress-operator run`): health and metrics over HTTP, leader
//! election, one controller per watched namespace (or one for all), and graceful shutdown.
//!
//! Contract:
//! - `/livez` answers 200 while the process runs; `/readyz` answers 200 once the API server
//!   answered and the replica is either leading or standing by, so standbys count as ready
//!   (they are healthy and take over on failover); `/metrics` is the Prometheus text format.
//! - Only the Lease holder runs the controllers ([`crate::controller`]). Losing the Lease stops
//!   them at once and makes [`run`] return an error, so the process exits non-zero and
//!   restarts as a standby.
//! - SIGTERM or Ctrl-C stops the controllers (in-flight reconciles finish), releases the Lease
//!   and returns `Ok`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::controller::run_controllers;
use crate::leader::{LeaderElector, LeaseTiming};
use crate::metrics::Metrics;
use crate::reconcile::Context;
use crate::reconcile::build::BuildContext;

/// Settings of `highpress-operator run`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address of the health and metrics server.
    pub http_addr: SocketAddr,
    /// Namespaces to watch; empty means all namespaces.
    pub watch_namespaces: Vec<String>,
    /// Whether to elect a leader through a Lease (off only for a single local replica).
    pub leader_election: bool,
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease; the client's default namespace when `None`.
    pub lease_namespace: Option<String>,
    /// This replica's identity on the Lease and on Events.
    pub identity: String,
}

#[derive(Clone)]
struct Health {
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

/// Runs the operator with the in-cluster (or KUBECONFIG) client until SIGTERM or Ctrl-C (Ok)
/// or a lost Lease (Err).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("configuring the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    serve(client, settings, shutdown).await
}

/// Runs the operator on `client` until `shutdown` is cancelled (Ok) or the Lease is lost (Err).
pub async fn serve(
    client: Client,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());

    let health = Health {
        ready: Arc::new(AtomicBool::new(false)),
        metrics: metrics.clone(),
    };
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| {
            format!(
                "binding the health and metrics server to {}",
                settings.http_addr
            )
        })?;
    tracing::info!(addr = %settings.http_addr, "serving /livez, /readyz and /metrics");
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        let app = health_router(health.clone());
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    });

    client
        .apiserver_version()
        .await
        .context("reaching the Kubernetes API server")?;
    health.ready.store(true, Ordering::Relaxed);

    // The Lease and the CA Secret live in the operator's own namespace.
    let namespace = settings
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let ctx = Arc::new(Context::new(
        client.clone(),
        BuildContext::default(),
        metrics.clone(),
        settings.identity.clone(),
        namespace.clone(),
    ));
    let result = if settings.leader_election {
        let elector = LeaderElector::new(
            Api::<Lease>::namespaced(client.clone(), &namespace),
            settings.lease_name.clone(),
            settings.identity.clone(),
            LeaseTiming::default(),
        );
        lead(&elector, &metrics, &shutdown, || {
            run_controllers(
                client.clone(),
                &settings.watch_namespaces,
                ctx.clone(),
                shutdown.clone(),
            )
        })
        .await
    } else {
        metrics.set_leader(true);
        run_controllers(
            client.clone(),
            &settings.watch_namespaces,
            ctx,
            shutdown.clone(),
        )
        .await;
        Ok(())
    };
    shutdown.cancel();
    server.await.context("the health server task")??;
    result
}

/// Waits for the Lease, then runs `controllers` while renewing it.
async fn lead<F, Fut>(
    elector: &LeaderElector,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    controllers: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let timing = elector.timing();
    tracing::info!(
        identity = elector.identity(),
        "waiting for the leader Lease"
    );
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "could not read or write the leader Lease"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(timing.retry_period) => {}
        }
    }
    tracing::info!(
        identity = elector.identity(),
        "acquired the leader Lease; reconciling"
    );
    metrics.set_leader(true);

    let renew = async {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(timing.renew_period).await;
            match elector.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => return "another replica holds the Lease".to_owned(),
                Err(error) => {
                    tracing::warn!(%error, "could not renew the leader Lease");
                    if last_renewed.elapsed() > timing.renew_deadline {
                        return format!("no renewal for {:?}: {error}", timing.renew_deadline);
                    }
                }
            }
        }
    };
    let lost = tokio::select! {
        () = controllers() => None,
        reason = renew => Some(reason),
    };
    metrics.set_leader(false);
    match lost {
        Some(reason) => {
            anyhow::bail!("lost the leader Lease ({reason}); exiting to restart as a standby")
        }
        None => {
            if let Err(error) = elector.release().await {
                tracing::warn!(%error, "could not release the leader Lease; it expires by itself");
            }
            Ok(())
        }
    }
}

fn health_router(health: Health) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the API server yet",
        )
    }
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        health.metrics.render(),
    )
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight reconciles");
    shutdown.cancel();
}
