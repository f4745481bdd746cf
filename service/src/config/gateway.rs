//! The split topology's sections: the counter's gRPC listener and the gateway's client
//! (`grpc`), how the gateway finds counters (`discovery`), its circuit breaker (`breaker`) and
//! its micro-batching (`gateway`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, forms};
use crate::domain::rules::MAX_INCREMENT_BATCH;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Where `highpress counter` serves gRPC.
    pub listen: String,
    /// Deadline of every gateway-to-counter call.
    #[serde(rename = "deadline_ms", with = "forms::millis")]
    pub deadline: Duration,
    /// HighGoPress's client section: one counter endpoint plus connection settings.
    pub counter_service: CounterServiceConfig,
    /// Mutual TLS between gateways and counters.
    pub tls: GrpcTlsConfig,
}

/// Mutual TLS between gateways and counters (`grpc.tls`); both sides read the same keys, each
/// with its own files mounted at those paths.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcTlsConfig {
    pub enabled: bool,
    /// This process's PEM certificate chain: a counter's server certificate, a gateway's
    /// client certificate.
    pub cert_file: String,
    /// Its PEM private key.
    pub key_file: String,
    /// PEM CA certificates that sign the other side: a counter accepts only clients whose
    /// certificate they signed, a gateway only counters whose certificate they signed.
    pub ca_file: String,
    /// The name a gateway expects in the counters' certificates; empty: each endpoint's host.
    pub server_name: String,
    /// How often the files are read again; a changed, valid set is used for new connections.
    #[serde(rename = "reload_interval_ms", with = "forms::millis")]
    pub reload_interval: Duration,
}

impl Default for GrpcTlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cert_file: String::new(),
            key_file: String::new(),
            ca_file: String::new(),
            server_name: String::new(),
            reload_interval: Duration::from_secs(2),
        }
    }
}

impl GrpcTlsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        for (key, value) in [
            ("grpc.tls.cert_file", &self.cert_file),
            ("grpc.tls.key_file", &self.key_file),
            ("grpc.tls.ca_file", &self.ca_file),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    "must name a PEM file when grpc.tls.enabled is true (both sides authenticate)",
                ));
            }
        }
        if !self.server_name.is_empty()
            && rustls::pki_types::ServerName::try_from(self.server_name.as_str()).is_err()
        {
            return Err(ConfigError::invalid(
                "grpc.tls.server_name",
                format!("{:?} is not a DNS name or IP address", self.server_name),
            ));
        }
        if self.reload_interval.is_zero() {
            return Err(ConfigError::invalid(
                "grpc.tls.reload_interval_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl GrpcConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "grpc.listen",
                format!("{:?} is not an ip:port address", self.listen),
            ));
        }
        if self.deadline.is_zero() {
            return Err(ConfigError::invalid(
                "grpc.deadline_ms",
                "must be at least 1",
            ));
        }
        let service = &self.counter_service;
        if !(1..=64).contains(&service.pool_size) {
            return Err(ConfigError::invalid(
                "grpc.counter_service.pool_size",
                "must be within 1..=64",
            ));
        }
        if !service.host.is_empty() && !forms::is_host_port(&service.host) {
            return Err(ConfigError::invalid(
                "grpc.counter_service.host",
                format!("{:?} is not host:port", service.host),
            ));
        }
        self.tls.validate()
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50051".into(),
            deadline: Duration::from_secs(1),
            counter_service: CounterServiceConfig::default(),
            tls: GrpcTlsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CounterServiceConfig {
    /// A single counter endpoint `host:port`, used when `discovery` names none.
    pub host: String,
    /// HTTP/2 connections per counter endpoint.
    pub pool_size: usize,
    /// HTTP/2 keep-alive ping interval (`30s`, `500ms`, or milliseconds).
    #[serde(with = "forms::human")]
    pub keep_alive: Duration,
}

impl Default for CounterServiceConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            pool_size: 2,
            keep_alive: Duration::from_secs(30),
        }
    }
}

/// How the gateway finds counter endpoints: a Kubernetes headless Service name re-resolved
/// periodically, or a static list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Static counter endpoints (`host:port`); comma-separated in the environment.
    #[serde(deserialize_with = "forms::list_or_comma_separated")]
    pub endpoints: Vec<String>,
    /// `host:port` of a headless Service; every address it resolves to is a counter endpoint.
    pub dns: String,
    /// How often `dns` is resolved again.
    #[serde(with = "forms::human")]
    pub refresh_interval: Duration,
    /// How often each endpoint's gRPC health is checked.
    #[serde(with = "forms::human")]
    pub health_interval: Duration,
}

impl DiscoveryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let dns = Some(&self.dns).filter(|d| !d.is_empty());
        if let Some(endpoint) = self
            .endpoints
            .iter()
            .chain(dns)
            .find(|e| !forms::is_host_port(e))
        {
            return Err(ConfigError::invalid(
                "discovery",
                format!("{endpoint:?} is not host:port"),
            ));
        }
        if self.refresh_interval.is_zero() || self.health_interval.is_zero() {
            return Err(ConfigError::invalid(
                "discovery.refresh_interval",
                "intervals must be positive",
            ));
        }
        Ok(())
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            dns: String::new(),
            refresh_interval: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
        }
    }
}

/// Per-endpoint circuit breaking in the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed calls that open the circuit.
    pub failure_threshold: u32,
    /// Share of failed calls in a window that opens the circuit.
    pub error_rate: f64,
    /// Calls per error-rate window.
    pub window: u32,
    /// How long an open circuit waits before letting one probe call through.
    #[serde(rename = "open_ms", with = "forms::millis")]
    pub open_for: Duration,
}

impl BreakerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.error_rate) || self.error_rate == 0.0 {
            return Err(ConfigError::invalid(
                "breaker.error_rate",
                "must be within (0, 1]",
            ));
        }
        if self.failure_threshold == 0 || self.window == 0 {
            return Err(ConfigError::invalid(
                "breaker.failure_threshold",
                "thresholds must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            error_rate: 0.5,
            window: 50,
            open_for: Duration::from_secs(1),
        }
    }
}

/// Gateway-side micro-batching of increments per counter endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Most increments in one `IncrementBatch` call.
    pub max_batch: usize,
    /// `IncrementBatch` calls in flight per endpoint; more requests wait and batch up.
    pub max_in_flight: usize,
    /// Pending increments per endpoint before `503 overloaded`.
    pub queue_capacity: usize,
}

impl GatewayConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_batch == 0 || self.max_batch > MAX_INCREMENT_BATCH {
            return Err(ConfigError::invalid(
                "gateway.max_batch",
                format!("must be within 1..={MAX_INCREMENT_BATCH}"),
            ));
        }
        if self.max_in_flight == 0 || self.queue_capacity < self.max_batch {
            return Err(ConfigError::invalid(
                "gateway.queue_capacity",
                "must be at least gateway.max_batch, with max_in_flight ≥ 1",
            ));
        }
        Ok(())
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            max_in_flight: 4,
            queue_capacity: 65_536,
        }
    }
}
