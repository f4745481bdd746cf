//! Process lifecycle: build the store and engine from config, serve HTTP, and on SIGTERM or
//! ctrl-c shut down in order: stop accepting, finish in-flight requests, flush the coalescer,
//! write the last leaderboard deltas, exit. No acknowledged increment is lost on the way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Limits};
use crate::config::{Config, StoreKind};
use crate::counter::LocalCounter;
use crate::metrics::METRICS;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;

/// Runs `highpress standalone` until `shutdown` fires.
pub async fn run_standalone(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    METRICS
        .build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), "standalone"])
        .set(1);
    match config.store.kind {
        StoreKind::Memory => {
            serve_standalone(Arc::new(MemoryStore::new()), &config, shutdown).await
        }
        StoreKind::Redis => {
            let store = RedisStore::connect_lazy(
                &config.redis.url()?,
                config.redis_timeout(),
                Duration::from_millis(config.redis.connect_timeout_ms),
            )?;
            serve_standalone(Arc::new(store), &config, shutdown).await
        }
    }
}

async fn serve_standalone<S: Store>(
    store: Arc<S>,
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (engine, tasks) = LocalCounter::start(store, config);
    let state = AppState {
        backend: engine,
        limits: limits(config),
        mode: "standalone",
    };
    let addr = bind_address(config)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.host, server.port)"))?;
    tracing::info!(%addr, store = ?config.store.kind, "highpress standalone serving");

    let drain_deadline = Duration::from_millis(config.server.shutdown_timeout_ms);
    let signal = shutdown.clone();
    let server = axum::serve(listener, api::app(state))
        .with_graceful_shutdown(async move { signal.cancelled().await });
    let serving = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    tracing::info!("shutting down: finishing in-flight requests");
    match tokio::time::timeout(drain_deadline, serving).await {
        Ok(result) => result.context("HTTP server task")?.context("HTTP server")?,
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within server.shutdown_timeout_ms")
        }
    }
    tracing::info!("flushing pending increments and leaderboards");
    tasks.finish().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Request limits from config.
pub fn limits(config: &Config) -> Limits {
    Limits {
        max_increment: config.limits.max_increment,
        max_batch_queries: config.limits.max_batch_queries,
        max_body_bytes: config.server.max_body_bytes,
    }
}

fn bind_address(config: &Config) -> anyhow::Result<SocketAddr> {
    let host = config.server.host.trim();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host == "localhost" {
        "127.0.0.1".parse()?
    } else {
        host.parse()
            .with_context(|| format!("server.host: {host:?} is not an IP address"))?
    };
    Ok(SocketAddr::new(ip, config.server.port))
}

/// Fires `token` on SIGTERM or ctrl-c.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}
