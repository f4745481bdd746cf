//! Counter discovery for the gateway, Kubernetes-native: either a headless Service name
//! (`discovery.dns`) re-resolved every `discovery.refresh_interval`, whose addresses are the
//! ready counter pods, or a static list. A health loop checks every endpoint's standard
//! `grpc.health.v1.Health` service, so routing skips counters that stopped serving.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{CounterEndpoint, EndpointSet};
use crate::config::Config;
use crate::metrics::METRICS;

/// The service name counters report in `grpc.health.v1`.
pub const COUNTER_SERVICE_NAME: &str = "highpress.counter.v1.CounterService";

/// Answers "which addresses does this name have now?". The system resolver in production; tests
/// script the answers to add and remove counters while traffic flows.
pub trait Resolver: Send + Sync + 'static {
    /// The `ip:port` addresses of `target` (`host:port`).
    fn resolve(&self, target: &str) -> impl Future<Output = std::io::Result<Vec<String>>> + Send;
}

/// The operating system's resolver (Kubernetes DNS in a pod).
pub struct SystemResolver;

impl Resolver for SystemResolver {
    async fn resolve(&self, target: &str) -> std::io::Result<Vec<String>> {
        Ok(tokio::net::lookup_host(target)
            .await?
            .map(|a| a.to_string())
            .collect())
    }
}

/// Keeps `set` in line with the configured discovery until `stop`.
pub async fn run(set: Arc<EndpointSet>, config: Arc<Config>, stop: CancellationToken) {
    if config.discovery.dns.trim().is_empty() {
        set.update(&config.static_endpoints(), &config);
        stop.cancelled().await;
        return;
    }
    let target = config.discovery.dns.trim().to_string();
    run_dns(set, config, &SystemResolver, &target, stop).await;
}

/// Resolves `target` every `discovery.refresh_interval` and makes its addresses the endpoint set.
/// A failed or empty answer keeps the last known endpoints: a DNS hiccup must not empty the ring.
pub async fn run_dns<R: Resolver>(
    set: Arc<EndpointSet>,
    config: Arc<Config>,
    resolver: &R,
    target: &str,
    stop: CancellationToken,
) {
    loop {
        match resolver.resolve(target).await {
            Ok(mut names) if !names.is_empty() => {
                names.sort();
                names.dedup();
                set.update(&names, &config);
                METRICS.discovery_refreshes.with_label_values(&["ok"]).inc();
            }
            Ok(_) => {
                tracing::warn!(%target, "counter discovery found no addresses; keeping the last ones");
                METRICS
                    .discovery_refreshes
                    .with_label_values(&["empty"])
                    .inc();
            }
            Err(e) => {
                tracing::warn!(%target, error = %e, "counter discovery failed; keeping the last endpoints");
                METRICS
                    .discovery_refreshes
                    .with_label_values(&["error"])
                    .inc();
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.discovery.refresh_interval) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Checks every endpoint's health every `interval` until `stop`. After the first round over a
/// non-empty set, the gateway may report ready.
pub async fn watch_health(
    set: Arc<EndpointSet>,
    interval: Duration,
    deadline: Duration,
    stop: CancellationToken,
) {
    loop {
        let endpoints = set.snapshot();
        futures::future::join_all(endpoints.iter().map(|e| check(e, deadline))).await;
        if !endpoints.is_empty() {
            set.mark_swept();
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn check(endpoint: &CounterEndpoint, deadline: Duration) {
    let mut client = HealthClient::new(endpoint.channel_for_health.clone());
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: COUNTER_SERVICE_NAME.to_string(),
    });
    request.set_timeout(deadline);
    let serving = matches!(
        tokio::time::timeout(deadline, client.check(request)).await,
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32
    );
    let was = endpoint.healthy.swap(serving, Ordering::Relaxed);
    endpoint.up_gauge.set(i64::from(serving));
    if was != serving {
        if serving {
            tracing::info!(endpoint = %endpoint.name, "counter endpoint serving");
        } else {
            tracing::warn!(endpoint = %endpoint.name, "counter endpoint not serving");
        }
    }
}
