//! The process's own sections: where it listens, what a connection may cost it and how it shuts
//! down (`server`), the REST switches (`api`) and the profiling routes (`pprof`).

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
    /// HTTP/1: how long a client has to send a request's headers, counted from when the server
    /// waits for them (so it also closes an idle keep-alive connection).
    #[serde(rename = "header_read_timeout_ms", with = "forms::millis")]
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for a whole period of this length is closed
    /// (HTTP/1 and HTTP/2, REST and gRPC): between this and twice this after its last byte.
    #[serde(rename = "idle_timeout_ms", with = "forms::millis")]
    pub idle_timeout: Duration,
    /// REST: how long a client has to send a request's body once its headers are in; past it
    /// the answer is 408 `request_timeout` and nothing is written.
    #[serde(rename = "body_read_timeout_ms", with = "forms::millis")]
    pub body_read_timeout: Duration,
    /// Open connections per server (REST, and the counter's gRPC); beyond it, a new connection
    /// is closed at once.
    pub max_connections: usize,
    /// HTTP/2: concurrent streams (requests) per connection.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: largest frame a client may send, in bytes (16,384 to 16,777,215).
    pub http2_max_frame_size: u32,
    /// HTTP/2: largest header list a client may send, in bytes (decoded).
    pub http2_max_header_list_bytes: u32,
    /// TLS on the HTTP port (REST, probes and metrics).
    pub tls: TlsFilesConfig,
}

/// A server's certificate (`server.tls`): PEM files, read again every `reload_interval_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFilesConfig {
    pub enabled: bool,
    /// PEM certificate chain, the server's own first.
    pub cert_file: String,
    /// PEM private key of that certificate.
    pub key_file: String,
    /// PEM CA certificates: when set, every client must present a certificate one of them
    /// signed (mutual TLS).
    pub client_ca_file: String,
    /// How often the files are read again; a changed, valid set is used for new connections.
    #[serde(rename = "reload_interval_ms", with = "forms::millis")]
    pub reload_interval: Duration,
}

impl TlsFilesConfig {
    /// Checks the files are named when TLS is on.
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        for (key, value) in [
            ("server.tls.cert_file", &self.cert_file),
            ("server.tls.key_file", &self.key_file),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    "must name a PEM file when server.tls.enabled is true",
                ));
            }
        }
        if self.reload_interval.is_zero() {
            return Err(ConfigError::invalid(
                "server.tls.reload_interval_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for TlsFilesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            reload_interval: Duration::from_secs(2),
        }
    }
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
        for (field, value) in [
            ("server.header_read_timeout_ms", self.header_read_timeout),
            ("server.idle_timeout_ms", self.idle_timeout),
            ("server.body_read_timeout_ms", self.body_read_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "server.max_connections",
                "must be at least 1",
            ));
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err(ConfigError::invalid(
                "server.http2_max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if !(16_384..=16_777_215).contains(&self.http2_max_frame_size) {
            return Err(ConfigError::invalid(
                "server.http2_max_frame_size",
                "must be within 16384..=16777215 (RFC 9113)",
            ));
        }
        if self.http2_max_header_list_bytes < 1024 {
            return Err(ConfigError::invalid(
                "server.http2_max_header_list_bytes",
                "must be at least 1024",
            ));
        }
        self.tls.validate()
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
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            http2_max_concurrent_streams: 256,
            http2_max_frame_size: 16_384,
            http2_max_header_list_bytes: 16 * 1024,
            tls: TlsFilesConfig::default(),
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
    /// API tokens with scopes.
    pub auth: AuthConfig,
    /// Token buckets on increments and reads, per token (or per client address).
    pub rate_limit: RateLimitConfig,
}

impl ApiConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.auth.validate()?;
        self.rate_limit.validate()
    }
}

/// Rate limits (`api.rate_limit`): per API token when `api.auth` is on (a token may set its
/// own in the tokens file), else per client address, on increments and reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Sustained requests per second per client.
    pub requests_per_second: f64,
    /// Requests a client may send at once after a quiet while.
    pub burst: u32,
    /// Client addresses tracked at once (auth off); beyond, new ones pass untracked.
    pub max_clients: usize,
}

impl RateLimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return Err(ConfigError::invalid(
                "api.rate_limit.requests_per_second",
                "must be above 0",
            ));
        }
        if self.burst == 0 {
            return Err(ConfigError::invalid(
                "api.rate_limit.burst",
                "must be at least 1",
            ));
        }
        if self.max_clients == 0 {
            return Err(ConfigError::invalid(
                "api.rate_limit.max_clients",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            requests_per_second: 1_000.0,
            burst: 2_000,
            max_clients: 100_000,
        }
    }
}

/// API tokens (`api.auth`): every API route needs `Authorization: Bearer <token>` with the
/// route's scope; probes, `/health`, `/openapi.json` (and `/metrics` unless protected) stay open.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub enabled: bool,
    /// YAML file of `tokens: [{name, scopes, token | sha256}]`, e.g. a mounted Secret.
    pub tokens_file: String,
    /// How often the tokens file is read again; a changed file that parses replaces the tokens.
    #[serde(rename = "reload_interval_ms", with = "forms::millis")]
    pub reload_interval: Duration,
    /// `/metrics` needs a token with the `metrics` scope.
    pub protect_metrics: bool,
}

impl AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.tokens_file.trim().is_empty() {
            return Err(ConfigError::invalid(
                "api.auth.tokens_file",
                "must name the tokens file when api.auth.enabled is true",
            ));
        }
        if self.reload_interval.is_zero() {
            return Err(ConfigError::invalid(
                "api.auth.reload_interval_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            tokens_file: String::new(),
            reload_interval: Duration::from_secs(2),
            protect_metrics: false,
        }
    }
}
