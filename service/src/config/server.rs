//! The process's own sections: where it listens and how it shuts down (`server`), the REST
//! switches (`api`) and the profiling routes (`pprof`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, forms};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a graceful shutdown may take before in-flight requests are abandoned.
    #[serde(rename = "shutdown_timeout_ms", with = "forms::millis")]
    pub shutdown_timeout: Duration,
    /// Counter mode: how long to keep serving gRPC after turning health NOT_SERVING on
    /// SIGTERM, so gateways move its keys before it stops taking calls.
    #[serde(rename = "drain_delay_ms", with = "forms::millis")]
    pub drain_delay: Duration,
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(ConfigError::invalid("server.host", "must not be empty"));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "server.max_body_bytes",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            max_body_bytes: 64 * 1024,
            shutdown_timeout: Duration::from_secs(25),
            drain_delay: Duration::from_secs(2),
        }
    }
}

/// CPU and heap profiles in pprof format on the HTTP port, beside `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PprofConfig {
    /// Serve `/debug/pprof/profile` and `/debug/pprof/heap`; off, they answer 404.
    pub enabled: bool,
}

/// REST API switches.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve `DELETE /api/v1/counter/{resource_id}/{counter_type}` (reset a counter to 0).
    /// Off: the route answers `403 reset_disabled`.
    pub allow_reset: bool,
}
