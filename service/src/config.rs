//! Typed configuration: one struct, loaded once from `configs/config.yaml` (or `--config FILE`)
//! and then from `HIGHPRESS_<SECTION>__<KEY>` environment variables, validated at start-up.
//!
//! Every error names the offending key, so a bad deployment fails loudly before serving.

use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use serde::{Deserialize, Serialize};

use crate::domain::KeyLayout;
pub use crate::domain::policy::CounterTypePolicy;
use crate::domain::rules::MAX_INCREMENT_BATCH;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be parsed into the typed config.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value parsed but is out of range or inconsistent with another key.
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// Like `Invalid`, for a key whose name is data (`counter_types.<name>.max_increment`).
    #[error("invalid configuration: {key}: {message}")]
    InvalidEntry { key: String, message: String },
}

/// The whole configuration of a `highpress` process.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub coalescing: CoalescingConfig,
    pub cache: CacheConfig,
    pub leaderboard: LeaderboardConfig,
    pub limits: LimitsConfig,
    /// gRPC: the counter's listen address and the gateway's client settings.
    pub grpc: GrpcConfig,
    pub discovery: DiscoveryConfig,
    pub breaker: BreakerConfig,
    pub gateway: GatewayConfig,
    /// OpenTelemetry traces over OTLP/gRPC.
    pub tracing: TracingConfig,
    /// The `/debug/pprof/*` profiling routes.
    pub pprof: PprofConfig,
    /// REST API switches (`api.allow_reset`).
    pub api: ApiConfig,
    /// `Idempotency-Key` records (`idempotency.ttl`).
    pub idempotency: IdempotencyConfig,
    /// Per-counter-type policies, by counter type (`counter_types.like.unique_per_user`).
    pub counter_types: std::collections::BTreeMap<String, CounterTypePolicy>,
    /// The original's Consul section. Accepted for compatibility and ignored:
    /// Kubernetes DNS discovery replaces Consul.
    pub consul: Option<serde_json::Value>,
    /// Counter events to Kafka (the original's `kafka: {brokers, topic}` section, extended).
    pub kafka: KafkaConfig,
    /// Which store settings were inferred rather than configured; for the start-up log.
    #[serde(skip)]
    pub inferred: StoreInference,
}

/// The store settings that [`Config::load`] inferred, because the configuration did not set
/// them, from what it did set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreInference {
    /// `store.kind` is not set and `redis.addr` is: the store is Redis. (A configuration that
    /// names a Redis and then counts in memory would lose every count at the next restart.)
    pub kind_from_redis_addr: bool,
    /// `store.key_layout` is not set and the config file is in the original's format (it sets
    /// `redis.addr` and has no `store` section): the original's keys, so its Redis reads as is.
    pub layout_from_original_format: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a graceful shutdown may take before in-flight requests are abandoned.
    pub shutdown_timeout_ms: u64,
    /// Counter mode: how long to keep serving gRPC after turning health NOT_SERVING on
    /// SIGTERM, so gateways move its keys before it stops taking calls.
    pub drain_delay_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            max_body_bytes: 64 * 1024,
            shutdown_timeout_ms: 25_000,
            drain_delay_ms: 2_000,
        }
    }
}

/// Which store backs the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded in-memory store: no dependencies, nothing persisted.
    #[default]
    Memory,
    /// Redis (standalone server).
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Where counters live in Redis: `highpress` (`c:{counter_type}:{resource_id}`) or
    /// `highgopress` (`counter:{resource_id}:{counter_type}`, the original's keys).
    pub key_layout: KeyLayout,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `host:port` (as the original), or a `redis://` / `rediss://` URL.
    pub addr: String,
    pub password: String,
    pub db: i64,
    /// Per-command response timeout; a flush waiting longer fails with 503.
    pub timeout_ms: u64,
    /// Connection establishment timeout.
    pub connect_timeout_ms: u64,
    /// Use the Redis Cluster client; `addr` lists seed nodes, comma-separated.
    pub cluster: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            addr: "localhost:6379".into(),
            password: String::new(),
            db: 0,
            timeout_ms: 1_000,
            connect_timeout_ms: 500,
            cluster: false,
        }
    }
}

impl RedisConfig {
    /// The Redis Cluster seed URLs: every comma-separated entry of `addr`, with `password`.
    pub fn cluster_seeds(&self) -> Result<Vec<String>, ConfigError> {
        self.addr
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|addr| {
                RedisConfig {
                    addr: addr.to_string(),
                    db: 0,
                    ..self.clone()
                }
                .url()
            })
            .collect()
    }

    /// The connection URL built from `addr`, `password` and `db`.
    pub fn url(&self) -> Result<String, ConfigError> {
        let addr = self.addr.trim();
        if addr.is_empty() {
            return Err(ConfigError::Invalid {
                key: "redis.addr",
                message: "must not be empty".into(),
            });
        }
        if addr.starts_with("redis://") || addr.starts_with("rediss://") {
            // A URL carries its own password and db; the separate keys fill in what it lacks.
            let (scheme, rest) = addr.split_once("://").unwrap_or(("redis", addr));
            let (authority, path) = match rest.split_once('/') {
                Some((a, p)) => (a, p),
                None => (rest, ""),
            };
            if authority.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "redis.addr",
                    message: format!("URL {addr:?} has no host"),
                });
            }
            let authority = if !authority.contains('@') && !self.password.is_empty() {
                format!(":{}@{authority}", percent_encode(&self.password))
            } else {
                authority.to_string()
            };
            let db = if path.is_empty() {
                self.db.to_string()
            } else {
                path.to_string()
            };
            return Ok(format!("{scheme}://{authority}/{db}"));
        }
        if addr.contains("://") {
            return Err(ConfigError::Invalid {
                key: "redis.addr",
                message: format!("{addr:?}: use host:port, redis://... or rediss://..."),
            });
        }
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(ConfigError::Invalid {
                key: "redis.addr",
                message: format!("{addr:?} is not host:port"),
            });
        };
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(ConfigError::Invalid {
                key: "redis.addr",
                message: format!("{addr:?} is not host:port"),
            });
        }
        let auth = if self.password.is_empty() {
            String::new()
        } else {
            format!(":{}@", percent_encode(&self.password))
        };
        Ok(format!("redis://{auth}{host}:{port}/{}", self.db))
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Log format, as in the original's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    /// Human-readable lines; `console` (zap's name, which the original's config may use) is
    /// accepted for it.
    #[default]
    #[serde(alias = "console")]
    Text,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoalescingConfig {
    /// Most increments one flush takes from the queue (`maxBatch`).
    pub max_batch: usize,
    /// Capacity of the pending-increment queue; when full, requests get `503 overloaded`.
    pub queue_capacity: usize,
}

impl Default for CoalescingConfig {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            queue_capacity: 65_536,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a cached value may be served; 0 disables the cache.
    pub ttl_ms: u64,
    /// Most keys held in the cache.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 1_000,
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderboardConfig {
    /// Whether increments feed the rankings. Off saves about four store commands per distinct
    /// key per flush interval; the leaderboard endpoint then answers 404.
    pub enabled: bool,
    /// How often accumulated leaderboard deltas are written to the store.
    pub flush_interval_ms: u64,
}

impl Default for LeaderboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flush_interval_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest absolute value of one increment.
    pub max_increment: i64,
    /// Most queries in one batch request.
    pub max_batch_queries: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_increment: 1_000_000,
            max_batch_queries: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Where `highpress counter` serves gRPC.
    pub listen: String,
    /// Deadline of every gateway-to-counter call.
    pub deadline_ms: u64,
    /// The original's client section: one counter endpoint plus connection settings.
    pub counter_service: CounterServiceConfig,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50051".into(),
            deadline_ms: 1_000,
            counter_service: CounterServiceConfig::default(),
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
    pub keep_alive: HumanDuration,
}

impl Default for CounterServiceConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            pool_size: 2,
            keep_alive: HumanDuration(Duration::from_secs(30)),
        }
    }
}

/// How the gateway finds counter endpoints: a Kubernetes headless Service name re-resolved
/// periodically, or a static list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Static counter endpoints (`host:port`); comma-separated in the environment.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub endpoints: Vec<String>,
    /// `host:port` of a headless Service; every address it resolves to is a counter endpoint.
    pub dns: String,
    /// How often `dns` is resolved again.
    pub refresh_interval: HumanDuration,
    /// How often each endpoint's gRPC health is checked.
    pub health_interval: HumanDuration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            dns: String::new(),
            refresh_interval: HumanDuration(Duration::from_secs(5)),
            health_interval: HumanDuration(Duration::from_secs(1)),
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
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            error_rate: 0.5,
            window: 50,
            open_ms: 1_000,
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

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            max_in_flight: 4,
            queue_capacity: 65_536,
        }
    }
}

/// OpenTelemetry tracing: spans exported over OTLP/gRPC (Jaeger ingests it natively).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Export spans. Off: no spans are built at all.
    pub enabled: bool,
    /// The OTLP/gRPC collector, `http://host:4317`.
    pub otlp_endpoint: String,
    /// Share of new traces sampled, 0..=1; a call that arrives with a sampled parent is traced.
    pub sampling_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            otlp_endpoint: "http://localhost:4317".into(),
            sampling_ratio: 0.01,
        }
    }
}

/// Counter events published to Kafka by the process that owns the flush (standalone, counter).
/// `docs/events.md` describes the events and their delivery guarantees.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Publish one event per acknowledged increment. Off: nothing is queued or connected.
    pub enabled: bool,
    /// Bootstrap brokers, `host:port`; comma-separated in the environment.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub brokers: Vec<String>,
    /// The topic events are written to.
    pub topic: String,
    /// Broker acknowledgements a write waits for: `0`, `1` or `all`.
    pub acks: KafkaAcks,
    /// How long the producer waits to fill a batch (librdkafka `linger.ms`).
    pub linger_ms: u64,
    /// Most events waiting to be handed to the producer, and most the producer buffers; past
    /// either bound new events are dropped and counted, never waited for.
    pub queue_capacity: usize,
    /// How long the producer keeps retrying one event before it is dropped as undeliverable
    /// (librdkafka `message.timeout.ms`).
    pub message_timeout_ms: u64,
    /// At shutdown, how long queued events may take to reach the broker before the rest are
    /// dropped.
    pub flush_timeout_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: Vec::new(),
            topic: "counter_events".into(),
            acks: KafkaAcks::All,
            linger_ms: 5,
            queue_capacity: 100_000,
            message_timeout_ms: 30_000,
            flush_timeout_ms: 5_000,
        }
    }
}

/// `kafka.acks`: how many broker acknowledgements a produced batch waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAcks {
    /// `0`: fire and forget.
    None,
    /// `1`: the partition leader.
    Leader,
    /// `all`: every in-sync replica.
    All,
}

impl KafkaAcks {
    /// The librdkafka `acks` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "0",
            Self::Leader => "1",
            Self::All => "all",
        }
    }
}

impl Serialize for KafkaAcks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KafkaAcks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t.trim().to_ascii_lowercase(),
        };
        match text.as_str() {
            "0" => Ok(Self::None),
            "1" => Ok(Self::Leader),
            "all" | "-1" => Ok(Self::All),
            other => Err(serde::de::Error::custom(format!(
                "{other:?} is not 0, 1 or all"
            ))),
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

/// Idempotent retries with the `Idempotency-Key` request header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long the outcome of a request with an `Idempotency-Key` is kept: a retry within it
    /// gets the original answer and counts nothing (`24h`, `30m`, `90s`, or milliseconds).
    pub ttl: HumanDuration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: HumanDuration(Duration::from_secs(24 * 3600)),
        }
    }
}

/// A duration written as `30s`, `500ms`, `2m`, `24h`, `7d`, or a number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    fn parse(s: &str) -> Option<Duration> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().ok()?;
        match unit.trim() {
            "" | "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
            "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
            "d" => Some(Duration::from_secs(n.checked_mul(86_400)?)),
            _ => None,
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Self(Duration::from_millis(ms))),
            Raw::Text(t) => Self::parse(&t).map(Self).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{t:?} is not a duration like 30s, 500ms, 2m or 24h"
                ))
            }),
        }
    }
}

fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

impl Config {
    /// Loads defaults, then `file` (if any), then `HIGHPRESS_*` environment variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed("HIGHPRESS_").split("__"))
    }

    /// Loads defaults, then `vars` read as `load` reads `HIGHPRESS_*` environment variables
    /// (`HIGHPRESS_REDIS__ADDR` sets `redis.addr`), without touching the process environment: so
    /// several servers can run in one process (the integration tests run some in-process).
    pub fn from_vars(vars: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let mut set = Figment::new();
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("HIGHPRESS_") else {
                return Err(ConfigError::Parse(format!(
                    "{name} is not a HIGHPRESS_ variable"
                )));
            };
            let key = key.to_ascii_lowercase().replace("__", ".");
            let value: figment::value::Value =
                value.parse().expect("parsing a Value is infallible");
            set = set.merge(Serialized::global(&key, value));
        }
        Self::load_from(None, set)
    }

    fn load_from(
        file: Option<&std::path::Path>,
        env: impl figment::Provider,
    ) -> Result<Self, ConfigError> {
        // What the file and the environment set, without the defaults: the inferences below
        // need to know what was left unset.
        let mut from_file = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            from_file = from_file.merge(Yaml::file(path));
        }
        let configured = from_file.clone().merge(env);
        let mut config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(configured.clone())
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment_error(e)))?;
        if !configured.contains("store.kind") && configured.contains("redis.addr") {
            config.store.kind = StoreKind::Redis;
            config.inferred.kind_from_redis_addr = true;
        }
        if !configured.contains("store.key_layout")
            && !from_file.contains("store")
            && from_file.contains("redis.addr")
        {
            config.store.key_layout = KeyLayout::Highgopress;
            config.inferred.layout_from_original_format = true;
        }
        config.validate()?;
        Ok(config)
    }

    /// Cross-field and range checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                message: message.into(),
            }
        }
        if self.server.host.trim().is_empty() {
            return Err(invalid("server.host", "must not be empty"));
        }
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be at least 1"));
        }
        if self.store.kind == StoreKind::Redis {
            if self.redis.cluster {
                if self.redis.cluster_seeds()?.is_empty() {
                    return Err(invalid("redis.addr", "name at least one cluster seed node"));
                }
                if self.redis.db != 0 {
                    return Err(invalid("redis.db", "Redis Cluster has only database 0"));
                }
            } else {
                self.redis.url()?;
            }
        }
        if !(0..=15_000).contains(&self.redis.db) && !self.redis.addr.contains("://") {
            return Err(invalid("redis.db", "must be a database index ≥ 0"));
        }
        if self.redis.timeout_ms == 0 {
            return Err(invalid("redis.timeout_ms", "must be at least 1"));
        }
        if self.redis.connect_timeout_ms == 0 {
            return Err(invalid("redis.connect_timeout_ms", "must be at least 1"));
        }
        if !self.log_level_is_valid() {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a level (trace, debug, info, warn, error)",
                    self.log.level
                ),
            ));
        }
        if !(1..=65_536).contains(&self.coalescing.max_batch) {
            return Err(invalid("coalescing.max_batch", "must be within 1..=65536"));
        }
        if self.coalescing.queue_capacity < self.coalescing.max_batch {
            return Err(invalid(
                "coalescing.queue_capacity",
                "must be at least coalescing.max_batch",
            ));
        }
        if self.cache.ttl_ms > 0 && self.cache.max_entries == 0 {
            return Err(invalid(
                "cache.max_entries",
                "must be at least 1 when cache.ttl_ms > 0",
            ));
        }
        if self.leaderboard.flush_interval_ms == 0 {
            return Err(invalid(
                "leaderboard.flush_interval_ms",
                "must be at least 1",
            ));
        }
        if self.grpc.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "grpc.listen",
                format!("{:?} is not an ip:port address", self.grpc.listen),
            ));
        }
        if self.grpc.deadline_ms == 0 {
            return Err(invalid("grpc.deadline_ms", "must be at least 1"));
        }
        if !(1..=64).contains(&self.grpc.counter_service.pool_size) {
            return Err(invalid(
                "grpc.counter_service.pool_size",
                "must be within 1..=64",
            ));
        }
        for endpoint in self.discovery.endpoints.iter().chain(
            [&self.discovery.dns, &self.grpc.counter_service.host]
                .into_iter()
                .filter(|s| !s.is_empty()),
        ) {
            if endpoint
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(invalid(
                    "discovery",
                    format!("{endpoint:?} is not host:port"),
                ));
            }
        }
        if self.discovery.refresh_interval.0.is_zero() || self.discovery.health_interval.0.is_zero()
        {
            return Err(invalid(
                "discovery.refresh_interval",
                "intervals must be positive",
            ));
        }
        if !(0.0..=1.0).contains(&self.breaker.error_rate) || self.breaker.error_rate == 0.0 {
            return Err(invalid("breaker.error_rate", "must be within (0, 1]"));
        }
        if self.breaker.failure_threshold == 0 || self.breaker.window == 0 {
            return Err(invalid(
                "breaker.failure_threshold",
                "thresholds must be at least 1",
            ));
        }
        if self.gateway.max_batch == 0 || self.gateway.max_batch > MAX_INCREMENT_BATCH {
            return Err(invalid(
                "gateway.max_batch",
                format!("must be within 1..={MAX_INCREMENT_BATCH}"),
            ));
        }
        if self.gateway.max_in_flight == 0 || self.gateway.queue_capacity < self.gateway.max_batch {
            return Err(invalid(
                "gateway.queue_capacity",
                "must be at least gateway.max_batch, with max_in_flight ≥ 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.tracing.sampling_ratio) {
            return Err(invalid("tracing.sampling_ratio", "must be within 0..=1"));
        }
        let endpoint = self.tracing.otlp_endpoint.trim();
        if self.tracing.enabled
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(invalid(
                "tracing.otlp_endpoint",
                format!("{endpoint:?} is not an http:// or https:// URL"),
            ));
        }
        // Bounded so that a flush's per-key sum and any serialization of it stay far from i64's edges.
        if !(1..=(1_i64 << 53)).contains(&self.limits.max_increment) {
            return Err(invalid("limits.max_increment", "must be within 1..=2^53"));
        }
        if !(1..=100_000).contains(&self.limits.max_batch_queries) {
            return Err(invalid(
                "limits.max_batch_queries",
                "must be within 1..=100000",
            ));
        }
        let ttl = self.idempotency.ttl.0;
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(30 * 86_400) {
            return Err(invalid("idempotency.ttl", "must be within 1s..=30d"));
        }
        for (name, policy) in &self.counter_types {
            let entry = |key: &str, message: &str| ConfigError::InvalidEntry {
                key: format!("counter_types.{name}{key}"),
                message: message.into(),
            };
            if crate::domain::rules::counter_type("counter_type", name).is_err() {
                return Err(entry(
                    "",
                    "a counter type is 1-64 characters of a-z, 0-9, '_' or '-'",
                ));
            }
            match policy.max_increment {
                Some(_) if policy.unique_per_user => {
                    return Err(entry(
                        ".max_increment",
                        "has no effect with unique_per_user, which accepts only +1 and -1",
                    ));
                }
                Some(max) if !(1..=(1_u64 << 53)).contains(&max) => {
                    return Err(entry(".max_increment", "must be within 1..=2^53"));
                }
                _ => {}
            }
        }
        self.validate_kafka()
    }

    fn validate_kafka(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                message: message.into(),
            }
        }
        let kafka = &self.kafka;
        if !kafka.enabled {
            return Ok(());
        }
        if kafka.brokers.is_empty() {
            return Err(invalid(
                "kafka.brokers",
                "name at least one broker when kafka.enabled is true",
            ));
        }
        for broker in &kafka.brokers {
            if broker
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(invalid(
                    "kafka.brokers",
                    format!("{broker:?} is not host:port"),
                ));
            }
        }
        // Kafka's own rule for topic names.
        if kafka.topic.is_empty()
            || kafka.topic.len() > 249
            || kafka.topic == "."
            || kafka.topic == ".."
            || !kafka
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(invalid(
                "kafka.topic",
                format!(
                    "{:?} is not a topic name ([A-Za-z0-9._-]{{1,249}})",
                    kafka.topic
                ),
            ));
        }
        if kafka.linger_ms > 900_000 {
            return Err(invalid("kafka.linger_ms", "must be within 0..=900000"));
        }
        if !(1..=10_000_000).contains(&kafka.queue_capacity) {
            return Err(invalid(
                "kafka.queue_capacity",
                "must be within 1..=10000000",
            ));
        }
        if kafka.message_timeout_ms == 0 {
            return Err(invalid("kafka.message_timeout_ms", "must be at least 1"));
        }
        Ok(())
    }

    /// A plain level, or `tracing` directives such as `highpress=debug,info`.
    fn log_level_is_valid(&self) -> bool {
        let level = self.log.level.trim();
        const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
        LEVELS.contains(&level.to_ascii_lowercase().as_str())
            || (level.contains('=') && level.parse::<tracing_subscriber::EnvFilter>().is_ok())
    }

    /// The gateway's counter endpoints when they are static: `discovery.endpoints`, else the
    /// original's `grpc.counter_service.host`.
    pub fn static_endpoints(&self) -> Vec<String> {
        if !self.discovery.endpoints.is_empty() {
            self.discovery.endpoints.clone()
        } else if !self.grpc.counter_service.host.is_empty() {
            vec![self.grpc.counter_service.host.clone()]
        } else {
            Vec::new()
        }
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis.timeout_ms)
    }
}

/// Renders a figment error as one line per problem, each naming the key and its source.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::from("(top level)")
            } else {
                e.path.join(".")
            };
            let source = e
                .metadata
                .as_ref()
                .map(
                    |m| match &e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                        Some(src) => format!(" (from {} {src})", m.name),
                        None => format!(" (from {})", m.name),
                    },
                )
                .unwrap_or_default();
            format!("{key}: {}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::result_large_err)] // figment::Jail dictates the closure type.
    fn load_yaml_env(yaml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let mut outcome = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("config.yaml", yaml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            outcome = Some(
                Config::load(Some(std::path::Path::new("config.yaml"))).map_err(|e| e.to_string()),
            );
            Ok(())
        });
        outcome.expect("the jail ran")
    }

    #[test]
    fn from_vars_reads_variables_as_the_environment_would_be_read() {
        let c = Config::from_vars(&[
            ("HIGHPRESS_REDIS__ADDR", "10.0.0.1:6379"),
            ("HIGHPRESS_SERVER__PORT", "9000"),
            ("HIGHPRESS_DISCOVERY__HEALTH_INTERVAL", "100ms"),
        ])
        .unwrap();
        assert_eq!(c.redis.addr, "10.0.0.1:6379");
        assert_eq!(c.store.kind, StoreKind::Redis, "inferred from redis.addr");
        assert_eq!(c.server.port, 9000);
        assert_eq!(c.discovery.health_interval.0, Duration::from_millis(100));
        let e = Config::from_vars(&[("HIGHPRESS_SERVER__PORT", "high")]).unwrap_err();
        assert!(e.to_string().contains("server.port"), "{e}");
        let e = Config::from_vars(&[("REDIS_ADDR", "x:1")]).unwrap_err();
        assert!(e.to_string().contains("REDIS_ADDR"), "{e}");
    }

    #[test]
    fn defaults_run_standalone_on_memory_store_at_8080() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.store.kind, StoreKind::Memory);
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.server.max_body_bytes, 65_536);
    }

    #[test]
    fn environment_overrides_file_with_double_underscore_sections() {
        let c = load_yaml_env(
            "server: {host: 0.0.0.0, port: 9000}\nredis: {addr: 'localhost:6379'}\n",
            &[
                ("HIGHPRESS_SERVER__PORT", "9100"),
                ("HIGHPRESS_SERVER__HOST", "127.0.0.1"),
                ("HIGHPRESS_STORE__KIND", "redis"),
                ("HIGHPRESS_REDIS__ADDR", "10.1.2.3:6380"),
                ("HIGHPRESS_LOG__LEVEL", "debug"),
                ("HIGHPRESS_COALESCING__MAX_BATCH", "128"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.port, 9100);
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(c.store.kind, StoreKind::Redis);
        assert_eq!(c.redis.addr, "10.1.2.3:6380");
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.coalescing.max_batch, 128);
    }

    #[test]
    fn originals_config_file_is_accepted() {
        let original = r#"
server: {host: "0.0.0.0", port: 8080}
redis:  {addr: "localhost:6379", password: "", db: 0}
log:    {level: "info", format: "json"}
grpc:
  counter_service: {host: "localhost:50051", pool_size: 20, keep_alive: 30s}
consul: {address: "localhost:8500", health_interval: "10s"}
kafka:  {brokers: ["localhost:9092"], topic: "counter_events"}
"#;
        let c = load_yaml_env(original, &[]).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.redis.url().unwrap(), "redis://localhost:6379/0");
        // It means what it meant: its Redis, with its keys.
        assert_eq!(c.store.kind, StoreKind::Redis);
        assert_eq!(c.store.key_layout, KeyLayout::Highgopress);
        assert_eq!(
            c.inferred,
            StoreInference {
                kind_from_redis_addr: true,
                layout_from_original_format: true
            }
        );
        assert_eq!(c.grpc.counter_service.host, "localhost:50051");
        assert_eq!(c.grpc.counter_service.pool_size, 20);
        assert_eq!(c.kafka.topic, "counter_events");
        let zap = load_yaml_env("log: {format: console}\n", &[]).unwrap();
        assert_eq!(zap.log.format, LogFormat::Text);
    }

    #[test]
    fn store_settings_are_inferred_only_where_unset() {
        let memory = load_yaml_env("server: {port: 8081}\n", &[]).unwrap();
        assert_eq!(
            (memory.store.kind, memory.inferred),
            (StoreKind::Memory, StoreInference::default())
        );
        // A Redis named in the environment: Redis, with highpress's keys.
        let env = load_yaml_env("", &[("HIGHPRESS_REDIS__ADDR", "10.0.0.1:6379")]).unwrap();
        assert_eq!(
            (env.store.kind, env.store.key_layout),
            (StoreKind::Redis, KeyLayout::Highpress)
        );
        assert!(env.inferred.kind_from_redis_addr && !env.inferred.layout_from_original_format);
        // A file with a store section is highpress's own: nothing about keys is inferred.
        let own = load_yaml_env("store: {kind: redis}\nredis: {addr: 'r:6379'}\n", &[]).unwrap();
        assert_eq!(own.store.key_layout, KeyLayout::Highpress);
        assert_eq!(own.inferred, StoreInference::default());
        // What is set wins.
        let set = load_yaml_env(
            "redis: {addr: 'r:6379'}\n",
            &[
                ("HIGHPRESS_STORE__KIND", "memory"),
                ("HIGHPRESS_STORE__KEY_LAYOUT", "highpress"),
            ],
        )
        .unwrap();
        assert_eq!(
            (set.store.kind, set.store.key_layout, set.inferred),
            (
                StoreKind::Memory,
                KeyLayout::Highpress,
                StoreInference::default()
            )
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load_yaml_env("server: {port: nine}\n", &[]).unwrap_err();
        assert!(err.contains("server.port"), "{err}");
        let err = load_yaml_env("", &[("HIGHPRESS_SERVER__PORT", "99999")]).unwrap_err();
        assert!(err.contains("server.port"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = load_yaml_env("redis: {adress: 'x:1'}\n", &[]).unwrap_err();
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn unknown_store_kind_names_the_key() {
        let err = load_yaml_env("", &[("HIGHPRESS_STORE__KIND", "postgres")]).unwrap_err();
        assert!(err.contains("store.kind"), "{err}");
    }

    #[test]
    fn invalid_ranges_name_the_key() {
        for (yaml, key) in [
            ("coalescing: {max_batch: 0}", "coalescing.max_batch"),
            ("log: {level: loud}", "log.level"),
            ("limits: {max_increment: 0}", "limits.max_increment"),
            (
                "store: {kind: redis}\nredis: {addr: 'nohostport'}",
                "redis.addr",
            ),
        ] {
            let err = load_yaml_env(yaml, &[]).unwrap_err();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn tracing_and_pprof_are_off_by_default_and_set_from_the_environment() {
        let c = Config::default();
        assert!(!c.tracing.enabled);
        assert_eq!(c.tracing.otlp_endpoint, "http://localhost:4317");
        assert_eq!(c.tracing.sampling_ratio, 0.01);
        assert!(!c.pprof.enabled);
        let c = load_yaml_env(
            "tracing: {sampling_ratio: 0.5}",
            &[
                ("HIGHPRESS_TRACING__ENABLED", "true"),
                ("HIGHPRESS_TRACING__OTLP_ENDPOINT", "http://jaeger:4317"),
                ("HIGHPRESS_PPROF__ENABLED", "true"),
            ],
        )
        .unwrap();
        assert!(c.tracing.enabled);
        assert_eq!(c.tracing.otlp_endpoint, "http://jaeger:4317");
        assert_eq!(c.tracing.sampling_ratio, 0.5);
        assert!(c.pprof.enabled);
    }

    #[test]
    fn bad_tracing_and_pprof_settings_name_the_key() {
        for (yaml, env, key) in [
            (
                "tracing: {sampling_ratio: 1.5}",
                None,
                "tracing.sampling_ratio",
            ),
            (
                "tracing: {enabled: true, otlp_endpoint: 'jaeger:4317'}",
                None,
                "tracing.otlp_endpoint",
            ),
            ("tracing: {sample: 1}", None, "sample"),
            (
                "",
                Some(("HIGHPRESS_PPROF__ENABLED", "maybe")),
                "pprof.enabled",
            ),
            (
                "",
                Some(("HIGHPRESS_TRACING__ENABLED", "yes please")),
                "tracing.enabled",
            ),
        ] {
            let err = load_yaml_env(yaml, env.as_slice()).unwrap_err();
            assert!(err.contains(key), "{yaml} {env:?}: {err}");
        }
    }

    #[test]
    fn discovery_endpoints_accept_a_comma_separated_environment_value() {
        let c = load_yaml_env(
            "",
            &[(
                "HIGHPRESS_DISCOVERY__ENDPOINTS",
                "127.0.0.1:5001, 127.0.0.1:5002",
            )],
        )
        .unwrap();
        assert_eq!(
            c.static_endpoints(),
            vec!["127.0.0.1:5001", "127.0.0.1:5002"]
        );
        let c = load_yaml_env(
            "discovery: {endpoints: ['a:1', 'b:2'], refresh_interval: 2s}",
            &[],
        )
        .unwrap();
        assert_eq!(c.discovery.endpoints, vec!["a:1", "b:2"]);
        assert_eq!(c.discovery.refresh_interval.0, Duration::from_secs(2));
    }

    #[test]
    fn originals_counter_service_host_is_a_single_endpoint() {
        let c = load_yaml_env(
            "grpc: {counter_service: {host: 'counter:50051', pool_size: 20, keep_alive: 30s}}",
            &[],
        )
        .unwrap();
        assert_eq!(c.static_endpoints(), vec!["counter:50051"]);
        assert_eq!(c.grpc.counter_service.keep_alive.0, Duration::from_secs(30));
        let err = load_yaml_env("grpc: {counter_service: {keep_alive: soon}}", &[]).unwrap_err();
        assert!(err.contains("keep_alive"), "{err}");
    }

    #[test]
    fn kafka_is_off_by_default_and_the_originals_shape_stays_valid() {
        let c = Config::default();
        assert!(!c.kafka.enabled);
        assert_eq!(c.kafka.topic, "counter_events");
        assert_eq!(c.kafka.acks, KafkaAcks::All);
        assert_eq!(c.kafka.linger_ms, 5);
        let c = load_yaml_env(
            "kafka: {brokers: ['localhost:9092'], topic: 'counter_events'}",
            &[],
        )
        .unwrap();
        assert!(!c.kafka.enabled);
        assert_eq!(c.kafka.brokers, vec!["localhost:9092"]);
    }

    #[test]
    fn kafka_is_set_from_the_environment_with_comma_separated_brokers() {
        let c = load_yaml_env(
            "kafka: {acks: 1, linger_ms: 20}",
            &[
                ("HIGHPRESS_KAFKA__ENABLED", "true"),
                ("HIGHPRESS_KAFKA__BROKERS", "k1:9092, k2:9093"),
                ("HIGHPRESS_KAFKA__TOPIC", "likes.events"),
                ("HIGHPRESS_KAFKA__QUEUE_CAPACITY", "500"),
            ],
        )
        .unwrap();
        assert!(c.kafka.enabled);
        assert_eq!(c.kafka.brokers, vec!["k1:9092", "k2:9093"]);
        assert_eq!(c.kafka.topic, "likes.events");
        assert_eq!(c.kafka.acks, KafkaAcks::Leader);
        assert_eq!(c.kafka.linger_ms, 20);
        assert_eq!(c.kafka.queue_capacity, 500);
        let c = load_yaml_env("", &[("HIGHPRESS_KAFKA__ACKS", "0")]).unwrap();
        assert_eq!(c.kafka.acks, KafkaAcks::None);
        let c = load_yaml_env("kafka: {acks: all}", &[]).unwrap();
        assert_eq!(c.kafka.acks.as_str(), "all");
    }

    #[test]
    fn bad_kafka_settings_name_the_key() {
        for (yaml, key) in [
            ("kafka: {enabled: true}", "kafka.brokers"),
            (
                "kafka: {enabled: true, brokers: ['nohost']}",
                "kafka.brokers",
            ),
            (
                "kafka: {enabled: true, brokers: ['k:9092'], topic: 'bad topic'}",
                "kafka.topic",
            ),
            (
                "kafka: {enabled: true, brokers: ['k:9092'], queue_capacity: 0}",
                "kafka.queue_capacity",
            ),
            ("kafka: {acks: 2}", "kafka.acks"),
            ("kafka: {partitions: 3}", "partitions"),
        ] {
            let err = load_yaml_env(yaml, &[]).unwrap_err();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn counter_type_policies_idempotency_and_reset_load_from_file_and_environment() {
        let c = Config::default();
        assert!(!c.api.allow_reset);
        assert_eq!(c.idempotency.ttl.0, Duration::from_secs(86_400));
        assert!(c.counter_types.is_empty());
        let c = load_yaml_env(
            "counter_types:\n  like: {unique_per_user: true}\n  view: {max_increment: 10}\nidempotency: {ttl: 2h}\n",
            &[
                ("HIGHPRESS_API__ALLOW_RESET", "true"),
                ("HIGHPRESS_COUNTER_TYPES__FOLLOW__UNIQUE_PER_USER", "true"),
            ],
        )
        .unwrap();
        assert!(c.api.allow_reset);
        assert_eq!(c.idempotency.ttl.0, Duration::from_secs(7_200));
        assert!(c.counter_types["like"].unique_per_user);
        assert!(c.counter_types["follow"].unique_per_user);
        assert_eq!(c.counter_types["view"].max_increment, Some(10));
        assert!(!c.counter_types["view"].unique_per_user);
    }

    #[test]
    fn bad_policies_and_ttls_name_the_key() {
        for (yaml, key) in [
            (
                "counter_types: {Like: {unique_per_user: true}}",
                "counter_types.Like",
            ),
            (
                "counter_types: {like: {unique_per_user: true, max_increment: 5}}",
                "counter_types.like.max_increment",
            ),
            (
                "counter_types: {view: {max_increment: 0}}",
                "counter_types.view.max_increment",
            ),
            ("counter_types: {view: {unique: true}}", "unique"),
            ("idempotency: {ttl: 0s}", "idempotency.ttl"),
            ("idempotency: {ttl: forever}", "idempotency.ttl"),
        ] {
            let err = load_yaml_env(yaml, &[]).unwrap_err();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn redis_addr_forms_become_urls() {
        let mut r = RedisConfig {
            addr: "redis.example:6380".into(),
            password: "p@ss".into(),
            db: 2,
            ..RedisConfig::default()
        };
        assert_eq!(r.url().unwrap(), "redis://:p%40ss@redis.example:6380/2");
        r.addr = "rediss://cache.example:6390".into();
        assert_eq!(r.url().unwrap(), "rediss://:p%40ss@cache.example:6390/2");
        r.addr = "redis://:own@h:1/5".into();
        assert_eq!(r.url().unwrap(), "redis://:own@h:1/5");
        r.addr = "http://h:1".into();
        assert!(r.url().is_err());
    }
}
