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

/// Keeps `set` in line with discovery until `stop`.
pub async fn run(set: Arc<EndpointSet>, config: Arc<Config>, stop: CancellationToken) {
    let dns = config.discovery.dns.trim().to_string();
    if dns.is_empty() {
        set.update(&config.static_endpoints(), &config);
        stop.cancelled().await;
        return;
    }
    loop {
        match tokio::net::lookup_host(dns.as_str()).await {
            Ok(addrs) => {
                let mut names: Vec<String> = addrs.map(|a| a.to_string()).collect();
                names.sort();
                names.dedup();
                set.update(&names, &config);
                METRICS.discovery_refreshes.with_label_values(&["ok"]).inc();
            }
            Err(e) => {
                // Keep the last known endpoints: a DNS hiccup must not empty the ring.
                tracing::warn!(%dns, error = %e, "counter discovery failed");
                METRICS
                    .discovery_refreshes
                    .with_label_values(&["error"])
                    .inc();
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.discovery.refresh_interval.0) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Checks every endpoint's health every `interval` until `stop`.
pub async fn watch_health(
    set: Arc<EndpointSet>,
    interval: Duration,
    deadline: Duration,
    stop: CancellationToken,
) {
    loop {
        let endpoints = set.snapshot();
        futures::future::join_all(endpoints.iter().map(|e| check(e, deadline))).await;
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
    if was != serving {
        if serving {
            tracing::info!(endpoint = %endpoint.name, "counter endpoint serving");
        } else {
            tracing::warn!(endpoint = %endpoint.name, "counter endpoint not serving");
        }
    }
}
