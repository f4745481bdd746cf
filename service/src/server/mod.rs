//! Process lifecycle for the three modes. Each builds its parts from config, serves, and on
//! SIGTERM or ctrl-c shuts down in order: stop accepting (gRPC health turns NOT_SERVING), finish
//! in-flight requests, flush the coalescer, write the last leaderboard deltas, hand the last
//! events to Kafka (bounded by `kafka.flush_timeout_ms`), exit. No acknowledged increment is
//! lost on the way. What one connection may cost a server is bounded in [`connections`]; an
//! HTTP/2 body still arriving after its answer is read in [`late_body`].

pub mod connections;
mod late_body;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::auth::Auth;
use crate::api::gate::Gate;
use crate::api::rate_limit::RateLimiter;
use crate::api::{self, AppState, Limits};
use crate::config::{Config, StoreKind};
use crate::counter::{CounterTasks, EngineSettings, LocalCounter};
use crate::domain::KeyLayout;
use crate::domain::policy::CounterPolicies;
use crate::events::{self, Outbox, Relay, RelayTask};
use crate::gateway::{EndpointSet, GatewayBackend, discovery};
use crate::grpc::observe::GrpcObserveLayer;
use crate::grpc::pb::counter_service_server::CounterServiceServer;
use crate::grpc::server::CounterGrpcService;
use crate::metrics::METRICS;
use crate::profiling;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::redis::{RedisClusterStore, RedisStore};
use crate::tls;
use connections::{Acceptor, ServerKind};

/// The process mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// REST API and counter engine in one process.
    Standalone,
    /// REST API; counting happens on counter processes over gRPC.
    Gateway,
    /// gRPC counter engine over the store.
    Counter,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Gateway => "gateway",
            Self::Counter => "counter",
        }
    }
}

/// The sockets a mode serves on, bound before it starts: so a bind error is reported before
/// anything else starts, and a caller (a test) can bind port 0 and know the address.
pub struct Listeners {
    /// REST (standalone, gateway) or probes and `/metrics` (counter): `server.host:server.port`.
    pub http: TcpListener,
    /// gRPC (counter only): `grpc.listen`.
    pub grpc: Option<TcpListener>,
}

impl Listeners {
    /// Binds what `mode` serves on, as `config` says.
    pub async fn bind(mode: Mode, config: &Config) -> anyhow::Result<Self> {
        let addr = bind_address(config)?;
        let http = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (server.host, server.port)"))?;
        let grpc = match mode {
            Mode::Counter => {
                let addr: SocketAddr = config.grpc.listen.parse().context("grpc.listen")?;
                Some(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen on {addr} (grpc.listen)"))?,
                )
            }
            Mode::Standalone | Mode::Gateway => None,
        };
        Ok(Self { http, grpc })
    }
}

/// Runs `mode` on `listeners` until `shutdown` fires.
pub async fn run(
    mode: Mode,
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    METRICS
        .build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), mode.as_str()])
        .set(1);
    if config.pprof.enabled {
        crate::profiling::activate().await;
    }
    log_configuration_choices(mode, &config);
    let auth = Auth::from_config(&config.api.auth).map_err(anyhow::Error::msg)?;
    tokio::spawn(auth.clone().watch(shutdown.child_token()));
    let limiter = config
        .api
        .rate_limit
        .enabled
        .then(|| Arc::new(RateLimiter::new(&config.api.rate_limit)));
    let gate = Gate::new(auth, limiter);
    match mode {
        Mode::Gateway => run_gateway(config, listeners.http, shutdown, gate).await,
        Mode::Standalone | Mode::Counter => match config.store.kind {
            StoreKind::Memory => {
                if config.store.key_layout != KeyLayout::default() {
                    tracing::warn!(
                        "store.key_layout applies to Redis only; the memory store ignores it"
                    );
                }
                let store = Arc::new(MemoryStore::new());
                run_engine(mode, store, &config, listeners, shutdown, gate).await
            }
            StoreKind::Redis if config.redis.cluster => {
                let store = RedisClusterStore::open(&config.redis, config.store.key_layout)?;
                run_engine(mode, Arc::new(store), &config, listeners, shutdown, gate).await
            }
            StoreKind::Redis => {
                let store = RedisStore::open(&config.redis, config.store.key_layout)?;
                run_engine(mode, Arc::new(store), &config, listeners, shutdown, gate).await
            }
        },
    }
}

/// Says at start-up which store this process counts in, and why when the configuration did not
/// say so itself; and that HighGoPress's `consul` section is read but not used.
fn log_configuration_choices(mode: Mode, config: &Config) {
    if config.consul.is_some() {
        tracing::warn!(
            "consul is ignored: gateways find counters through discovery.dns, discovery.endpoints or grpc.counter_service.host"
        );
    }
    if mode == Mode::Gateway {
        return;
    }
    let kind = match config.store.kind {
        StoreKind::Memory => "memory",
        StoreKind::Redis => "redis",
    };
    let key_layout = match config.store.key_layout {
        KeyLayout::Highpress => "highpress",
        KeyLayout::Highgopress => "highgopress",
    };
    let inferred = config.inferred;
    match config.store.kind {
        StoreKind::Memory => tracing::info!(
            store = kind,
            "counting in the embedded memory store: counts are lost when the process stops (set store.kind: redis to keep them)"
        ),
        StoreKind::Redis => tracing::info!(
            store = kind,
            key_layout,
            kind_inferred = inferred.kind_from_redis_addr,
            key_layout_inferred = inferred.layout_from_original_format,
            "counting in Redis{}{}",
            if inferred.kind_from_redis_addr {
                " (store.kind is not set; the config sets redis.addr)"
            } else {
                ""
            },
            if inferred.layout_from_original_format {
                " at HighGoPress's keys (store.key_layout is not set; the config file is HighGoPress's: redis.addr and no store section)"
            } else {
                ""
            },
        ),
    }
}

/// Standalone (REST on the engine) or counter (gRPC on the engine, probes over HTTP).
async fn run_engine<S: Store>(
    mode: Mode,
    store: Arc<S>,
    config: &Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    gate: Gate,
) -> anyhow::Result<()> {
    let Listeners { http, grpc } = listeners;
    let (outbox, relay) = if config.kafka.enabled {
        let outbox = Arc::new(Outbox::new(&config.kafka));
        let relay = Relay::start(
            store.clone(),
            outbox.clone(),
            &config.kafka,
            events::source_name(),
        )
        .context("kafka (kafka.enabled)")?;
        (Some(outbox), Some(relay))
    } else {
        (None, None)
    };
    let policies = Arc::new(CounterPolicies::new(&config.counter_types));
    let settings = EngineSettings::new(config, policies.clone());
    let (engine, tasks) = LocalCounter::start_with_outbox(store, settings, outbox);
    let state = AppState {
        backend: engine.clone(),
        limits: limits(config),
        policies: policies.clone(),
        mode: mode.as_str(),
        gate: gate.clone(),
    };
    if mode == Mode::Standalone {
        let app = api::app(state);
        let app = profiling::with_routes(app, config.pprof.enabled, mode.as_str(), &gate);
        serve_http(app, http, config, &shutdown).await?;
        return finish(tasks, relay).await;
    }

    let grpc = grpc.context("a counter serves gRPC: Listeners::bind(Mode::Counter, ..)")?;
    let grpc_addr = grpc.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(
            discovery::COUNTER_SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let grpc_stop = CancellationToken::new();
    let server = &config.server;
    let router = tonic::transport::Server::builder()
        .timeout(config.grpc.deadline)
        .max_concurrent_streams(server.http2_max_concurrent_streams)
        .max_frame_size(server.http2_max_frame_size)
        .http2_max_header_list_size(server.http2_max_header_list_bytes)
        .layer(GrpcObserveLayer::new(mode.as_str()))
        .add_service(health_service)
        .add_service(CounterServiceServer::new(CounterGrpcService::new(
            engine,
            limits(config),
            policies,
        )));
    let acceptor = Acceptor::new(grpc, server, ServerKind::Grpc);
    let stopped = grpc_stop.clone().cancelled_owned();
    let grpc = if config.grpc.tls.enabled {
        // Mutual TLS: only clients whose certificate grpc.tls.ca_file signed (the gateways).
        let tls = tls::grpc_server_tls(&config.grpc.tls).map_err(anyhow::Error::msg)?;
        tokio::spawn(tls.clone().watch(grpc_stop.child_token()));
        let incoming = acceptor.into_tls_stream(tls, server.header_read_timeout);
        tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
    } else {
        tokio::spawn(router.serve_with_incoming_shutdown(acceptor.into_stream(), stopped))
    };
    tracing::info!(%grpc_addr, tls = config.grpc.tls.enabled, "counter serving gRPC");

    let app = api::probe_app(state);
    let app = profiling::with_routes(app, config.pprof.enabled, mode.as_str(), &gate);
    let http = serve_http(app, http, config, &shutdown);
    let http_result = http.await;
    // Tell gateways first and give them `server.drain_delay_ms` to move this counter's keys,
    // then stop taking calls; in-flight calls finish before the flush.
    health
        .set_service_status(
            discovery::COUNTER_SERVICE_NAME,
            tonic_health::ServingStatus::NotServing,
        )
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    tokio::time::sleep(config.server.drain_delay).await;
    grpc_stop.cancel();
    let drain = config.server.shutdown_timeout;
    match tokio::time::timeout(drain, grpc).await {
        Ok(joined) => joined.context("gRPC server task")?.context("gRPC server")?,
        Err(_) => tracing::warn!("gRPC calls did not finish within server.shutdown_timeout_ms"),
    }
    http_result?;
    finish(tasks, relay).await
}

async fn finish<S: Store>(tasks: CounterTasks<S>, relay: Option<RelayTask>) -> anyhow::Result<()> {
    tracing::info!("flushing pending increments and leaderboards");
    tasks.finish().await;
    // After the last flush: events in flight to the broker get kafka.flush_timeout_ms; the
    // rest wait in the outbox for another relay.
    if let Some(relay) = relay {
        relay.finish().await;
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// The REST API over counter processes found by discovery.
async fn run_gateway(
    config: Config,
    http: TcpListener,
    shutdown: CancellationToken,
    gate: Gate,
) -> anyhow::Result<()> {
    if config.discovery.dns.is_empty() && config.static_endpoints().is_empty() {
        anyhow::bail!(
            "discovery: the gateway needs discovery.dns, discovery.endpoints or grpc.counter_service.host"
        );
    }
    let config = Arc::new(config);
    let endpoints = if config.grpc.tls.enabled {
        let tls = tls::client_tls(&config.grpc.tls).map_err(anyhow::Error::msg)?;
        tokio::spawn(tls.clone().watch(shutdown.child_token()));
        EndpointSet::with_tls(tls)
    } else {
        EndpointSet::default()
    };
    let endpoints = Arc::new(endpoints);
    let stop = CancellationToken::new();
    let discovery = tokio::spawn(discovery::run(
        endpoints.clone(),
        config.clone(),
        stop.clone(),
    ));
    let health = tokio::spawn(discovery::watch_health(
        endpoints.clone(),
        config.discovery.health_interval,
        config.grpc.deadline,
        stop.clone(),
    ));
    let backend = Arc::new(GatewayBackend::new(endpoints, &config));
    let state = AppState {
        backend,
        limits: limits(&config),
        policies: Arc::new(CounterPolicies::new(&config.counter_types)),
        mode: Mode::Gateway.as_str(),
        gate: gate.clone(),
    };
    let app = profiling::with_routes(
        api::app(state),
        config.pprof.enabled,
        Mode::Gateway.as_str(),
        &gate,
    );
    let served = serve_http(app, http, &config, &shutdown).await;
    stop.cancel();
    let _ = discovery.await;
    let _ = health.await;
    tracing::info!("shutdown complete");
    served
}

/// Serves `app` on `listener` within the `server.*` connection limits until `shutdown`, then
/// lets in-flight requests finish within `server.shutdown_timeout_ms`.
async fn serve_http(
    app: Router,
    listener: TcpListener,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let tls = if config.server.tls.enabled {
        let tls = tls::server_tls(&config.server.tls, "http", &[b"h2", b"http/1.1"])
            .map_err(anyhow::Error::msg)?;
        tokio::spawn(tls.clone().watch(shutdown.child_token()));
        Some(tls)
    } else {
        None
    };
    tracing::info!(%addr, tls = tls.is_some(), "serving HTTP");
    let acceptor = Acceptor::new(listener, &config.server, ServerKind::Http);
    connections::serve_http(
        app,
        acceptor,
        &config.server,
        shutdown,
        config.server.shutdown_timeout,
        config.api.rate_limit.enabled && !config.api.auth.enabled,
        tls,
    )
    .await;
    Ok(())
}

/// Request limits from config.
pub fn limits(config: &Config) -> Limits {
    Limits {
        max_increment: config.limits.max_increment,
        max_batch_queries: config.limits.max_batch_queries,
        max_body_bytes: config.server.max_body_bytes,
        body_read_timeout: config.server.body_read_timeout,
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
