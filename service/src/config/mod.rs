//! Typed configuration: one struct, loaded once from `configs/config.yaml` (or `--config FILE`)
//! and then from `HIGHPRESS_<SECTION>__<KEY>` environment variables, validated at start-up.
//!
//! Each section is a struct in the file of the part it configures, with its defaults and its own
//! checks beside it; `Config::validate` adds the checks that span sections. Every duration is a
//! `Duration` inside, written as milliseconds under its `_ms` key (or as `30s`-style text where
//! the key has no unit), so configurations written for HighGoPress keep working. Every error
//! names the offending key, so a bad deployment fails loudly before serving.

mod engine;
mod forms;
mod gateway;
mod kafka;
mod server;
mod store;
mod telemetry;

use std::collections::BTreeMap;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use serde::{Deserialize, Serialize};

use crate::domain::KeyLayout;
pub use crate::domain::policy::CounterTypePolicy;
pub use engine::{
    CacheConfig, CoalescingConfig, IdempotencyConfig, LeaderboardConfig, LimitsConfig,
};
/// How a duration key without a unit (`idempotency.ttl`, `discovery.refresh_interval`) is read.
pub use forms::human::parse as parse_duration;
pub use gateway::{
    BreakerConfig, CounterServiceConfig, DiscoveryConfig, GatewayConfig, GrpcConfig, GrpcTlsConfig,
};
pub use kafka::{KafkaAcks, KafkaConfig, OutboxFullPolicy};
pub use server::{
    ApiConfig, AuthConfig, PprofConfig, RateLimitConfig, ServerConfig, TlsFilesConfig,
};
pub use store::{RedisConfig, RedisTlsConfig, SentinelConfig, StoreConfig, StoreKind};
pub use telemetry::{LogConfig, LogFormat, TracingConfig};

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

impl ConfigError {
    /// `key` holds a value out of range or inconsistent with another key.
    pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            key,
            message: message.into(),
        }
    }
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
    pub counter_types: BTreeMap<String, CounterTypePolicy>,
    /// HighGoPress's Consul section. Accepted for compatibility and ignored:
    /// Kubernetes DNS discovery replaces Consul.
    pub consul: Option<serde_json::Value>,
    /// Counter events to Kafka (HighGoPress's `kafka: {brokers, topic}` section, extended).
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
    /// `store.key_layout` is not set and the config file is in HighGoPress's format (it
    /// sets `redis.addr` and has no `store` section): HighGoPress's keys, so its Redis reads as is.
    pub layout_from_original_format: bool,
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
        if !configured.contains("store.kind")
            && (configured.contains("redis.addr") || configured.contains("redis.sentinel"))
        {
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

    /// Every section's own checks, then those that span sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.api.validate()?;
        self.redis.validate(self.store.kind)?;
        self.log.validate()?;
        self.coalescing.validate()?;
        self.cache.validate()?;
        self.leaderboard.validate()?;
        self.grpc.validate()?;
        self.discovery.validate()?;
        self.breaker.validate()?;
        self.gateway.validate()?;
        self.tracing.validate()?;
        self.limits.validate()?;
        self.idempotency.validate()?;
        engine::validate_counter_types(&self.counter_types)?;
        self.kafka.validate()
    }

    /// The gateway's counter endpoints when they are static: `discovery.endpoints`, else
    /// HighGoPress's `grpc.counter_service.host`.
    pub fn static_endpoints(&self) -> Vec<String> {
        if !self.discovery.endpoints.is_empty() {
            self.discovery.endpoints.clone()
        } else if !self.grpc.counter_service.host.is_empty() {
            vec![self.grpc.counter_service.host.clone()]
        } else {
            Vec::new()
        }
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
    use std::time::Duration;

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
        assert_eq!(c.discovery.health_interval, Duration::from_millis(100));
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
            ("leaderboard: {top_k: 99}", "leaderboard.top_k"),
            ("leaderboard: {top_k: 100001}", "leaderboard.top_k"),
            (
                "store: {kind: redis}\nredis: {addr: 'nohostport'}",
                "redis.addr",
            ),
            (
                "redis: {cluster: true, addr: 'a:1', sentinel: {master_name: m, addrs: ['s:1']}}",
                "redis.sentinel",
            ),
            (
                "redis: {sentinel: {master_name: m}}",
                "redis.sentinel.addrs",
            ),
            (
                "redis: {sentinel: {master_name: m, addrs: 'nohostport'}}",
                "redis.sentinel.addrs",
            ),
            (
                "redis: {sentinel: {addrs: ['s:1']}}",
                "redis.sentinel.master_name",
            ),
            ("redis: {min_replicas_ack: 17}", "redis.min_replicas_ack"),
            (
                "redis: {min_replicas_ack: 1, replica_ack_timeout_ms: 1000}",
                "redis.replica_ack_timeout_ms",
            ),
        ] {
            let err = load_yaml_env(yaml, &[]).unwrap_err();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn sentinel_settings_come_from_the_environment_and_mean_redis() {
        let c = load_yaml_env(
            "",
            &[
                ("HIGHPRESS_REDIS__SENTINEL__MASTER_NAME", "highpress"),
                ("HIGHPRESS_REDIS__SENTINEL__ADDRS", "s0:26379, s1:26379"),
                ("HIGHPRESS_REDIS__SENTINEL__PASSWORD", "p@ss"),
                ("HIGHPRESS_REDIS__MIN_REPLICAS_ACK", "1"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.store.kind,
            StoreKind::Redis,
            "inferred from redis.sentinel"
        );
        assert_eq!(
            c.redis.sentinel.urls(),
            ["redis://:p%40ss@s0:26379", "redis://:p%40ss@s1:26379"]
        );
        assert_eq!(c.redis.min_replicas_ack, 1);
        assert_eq!(c.redis.replica_ack_timeout, Duration::from_millis(500));
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
        assert_eq!(c.discovery.refresh_interval, Duration::from_secs(2));
    }

    #[test]
    fn originals_counter_service_host_is_a_single_endpoint() {
        let c = load_yaml_env(
            "grpc: {counter_service: {host: 'counter:50051', pool_size: 20, keep_alive: 30s}}",
            &[],
        )
        .unwrap();
        assert_eq!(c.static_endpoints(), vec!["counter:50051"]);
        assert_eq!(c.grpc.counter_service.keep_alive, Duration::from_secs(30));
        let err = load_yaml_env("grpc: {counter_service: {keep_alive: soon}}", &[]).unwrap_err();
        assert!(err.contains("keep_alive"), "{err}");
    }

    #[test]
    fn kafka_is_off_by_default_and_the_originals_shape_stays_valid() {
        let c = Config::default();
        assert!(!c.kafka.enabled);
        assert_eq!(c.kafka.topic, "counter_events");
        assert_eq!(c.kafka.acks, KafkaAcks::All);
        assert_eq!(c.kafka.linger, Duration::from_millis(5));
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
        assert_eq!(c.kafka.linger, Duration::from_millis(20));
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
        assert_eq!(c.idempotency.ttl, Duration::from_secs(86_400));
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
        assert_eq!(c.idempotency.ttl, Duration::from_secs(7_200));
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
