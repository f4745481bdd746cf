//! The ConfigMap `<name>-config`: the service's own config file (`config.yaml`), which the
//! gateway and counter pods mount at [`CONFIG_MOUNT_PATH`].
//!
//! Contract: the rendered YAML uses exactly the keys of `highpress::config::Config` (which
//! rejects unknown keys); a test loads it with the service's own loader for every example.
//! It never holds a password: pods get the Redis password from a Secret as the environment
//! variable [`REDIS_PASSWORD_ENV`], which the service layers over the file.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;

use super::redis_tls::managed_redis_tls;
use super::security::{
    REDIS_CA_FILE, REDIS_CLIENT_CERT_FILE, REDIS_CLIENT_KEY_FILE, TLS_CA_FILE, TLS_CERT_FILE,
    TLS_KEY_FILE, counter_server_name, external_redis_tls, tokens_file,
};
use super::sentinel::{sentinel_addrs, sentinel_master_name};
use super::{Component, child_name, namespace, object_meta};
use crate::crd::{CounterCluster, KeyLayout, LogLevel, RedisMode};
use crate::reconcile::validate::ValidCounterCluster;

/// Key of the config file in the ConfigMap.
pub const CONFIG_KEY: &str = "config.yaml";
/// Directory the ConfigMap is mounted at in the gateway and counter pods.
pub const CONFIG_MOUNT_PATH: &str = "/etc/highpress";
/// Path of the config file inside the pods.
pub const CONFIG_FILE_PATH: &str = "/etc/highpress/config.yaml";
/// Environment variable through which the service reads the Redis password.
pub const REDIS_PASSWORD_ENV: &str = "HIGHPRESS_REDIS__PASSWORD";
/// HTTP port of every highpress pod (`server.port`).
pub const HTTP_PORT: i32 = 8080;
/// gRPC port of the counter pods (`grpc.listen`).
pub const GRPC_PORT: i32 = 50051;
/// Port of the managed Redis.
pub const REDIS_PORT: i32 = 6379;
/// Environment variable through which the service reads the sentinels' password.
pub const SENTINEL_PASSWORD_ENV: &str = "HIGHPRESS_REDIS__SENTINEL__PASSWORD";
/// `redis.replica_ack_timeout_ms` whenever `redis.min_replicas_ack` is rendered (the service's
/// default, below its 1 s `redis.timeout_ms`).
pub const REPLICA_ACK_TIMEOUT_MS: i64 = 500;

/// The service config file, with the service's key names (snake_case, as `Config` expects).
#[derive(Serialize)]
struct ServiceConfig {
    server: Server,
    store: Store,
    redis: Redis,
    log: Log,
    coalescing: Coalescing,
    cache: Cache,
    leaderboard: Leaderboard,
    grpc: Grpc,
    discovery: Discovery,
    api: Api,
    idempotency: Idempotency,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    counter_types: BTreeMap<String, CounterType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kafka: Option<Kafka>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracing: Option<Tracing>,
}

#[derive(Serialize)]
struct Server {
    host: &'static str,
    port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<ServerTls>,
}

/// HTTPS on the HTTP port, with this pod's certificate from its TLS Secret.
#[derive(Serialize)]
struct ServerTls {
    enabled: bool,
    cert_file: &'static str,
    key_file: &'static str,
}

/// Mutual TLS between gateways and counters.
#[derive(Serialize)]
struct GrpcTls {
    enabled: bool,
    cert_file: &'static str,
    key_file: &'static str,
    ca_file: &'static str,
    server_name: String,
}

#[derive(Serialize)]
struct Store {
    kind: &'static str,
    key_layout: &'static str,
}

#[derive(Serialize)]
struct Redis {
    addr: String,
    cluster: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sentinel: Option<Sentinel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_replicas_ack: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica_ack_timeout_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<RedisTls>,
}

/// TLS to Redis, with the files `redis.external.tls` or `security.tls.redis` mounts.
#[derive(Serialize)]
struct RedisTls {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_file: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<&'static str>,
}

/// The service's `redis.sentinel`; its `password` comes from the environment
/// ([`SENTINEL_PASSWORD_ENV`]), never from this file.
#[derive(Serialize)]
struct Sentinel {
    master_name: String,
    addrs: Vec<String>,
}

#[derive(Serialize)]
struct Log {
    level: &'static str,
    format: &'static str,
}

#[derive(Serialize)]
struct Coalescing {
    max_batch: i32,
}

#[derive(Serialize)]
struct Cache {
    ttl_ms: i64,
    max_entries: i64,
}

#[derive(Serialize)]
struct Leaderboard {
    enabled: bool,
    flush_interval_ms: i64,
    top_k: i32,
}

#[derive(Serialize)]
struct Grpc {
    listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<GrpcTls>,
}

#[derive(Serialize)]
struct Discovery {
    dns: String,
}

#[derive(Serialize)]
struct Api {
    allow_reset: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Auth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RateLimit>,
}

#[derive(Serialize)]
struct Auth {
    enabled: bool,
    tokens_file: String,
    protect_metrics: bool,
}

#[derive(Serialize)]
struct RateLimit {
    enabled: bool,
    requests_per_second: u32,
    burst: u32,
}

#[derive(Serialize)]
struct Idempotency {
    /// A duration as the service's `HumanDuration` reads it (`24h`, `30s`).
    ttl: String,
}

#[derive(Serialize)]
struct CounterType {
    unique_per_user: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_increment: Option<i64>,
}

#[derive(Serialize)]
struct Kafka {
    enabled: bool,
    brokers: Vec<String>,
    topic: String,
    outbox_max_len: u64,
    outbox_full_policy: &'static str,
}

#[derive(Serialize)]
struct Tracing {
    enabled: bool,
    otlp_endpoint: String,
    sampling_ratio: f64,
}

fn log_level(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// The Redis address the service connects to: the managed Redis Service's DNS name, or the
/// external URL as written.
pub fn redis_addr(cc: &CounterCluster) -> String {
    match (&cc.spec.redis.mode, &cc.spec.redis.external) {
        (RedisMode::External, Some(external)) => external.url.clone(),
        _ => format!(
            "{}.{}.svc:{REDIS_PORT}",
            child_name(cc, "redis"),
            namespace(cc)
        ),
    }
}

/// The service's `redis` section: the address, and with Sentinel (managed replicas above 1, or
/// `redis.external.sentinel`) the sentinels and the replica acknowledgements.
fn redis_section(cc: &CounterCluster, cluster: bool) -> Redis {
    let redis = &cc.spec.redis;
    let (sentinel, min_replicas_ack) = match (&redis.mode, &redis.external) {
        (RedisMode::External, Some(external)) => (
            external.sentinel.as_ref().map(|s| Sentinel {
                master_name: s.master_name.clone(),
                addrs: s.addrs.clone(),
            }),
            external.min_replicas_ack,
        ),
        _ if redis.managed.replicated() => (
            Some(Sentinel {
                master_name: sentinel_master_name(cc),
                addrs: sentinel_addrs(cc),
            }),
            redis.managed.min_replicas_ack(),
        ),
        _ => (None, 0),
    };
    // With Sentinel the acknowledgement settings are always written, so the file says what
    // the counters wait for; without it only when they ask for a replica.
    let acks = sentinel.is_some() || min_replicas_ack > 0;
    Redis {
        addr: redis_addr(cc),
        cluster,
        sentinel,
        min_replicas_ack: acks.then_some(min_replicas_ack),
        replica_ack_timeout_ms: acks.then_some(REPLICA_ACK_TIMEOUT_MS),
        tls: redis_tls(cc),
    }
}

/// The service's `redis.tls`: an external Redis's `redis.external.tls`, or the managed Redis's
/// CA with `security.tls.redis`.
fn redis_tls(cc: &CounterCluster) -> Option<RedisTls> {
    if managed_redis_tls(cc) {
        return Some(RedisTls {
            enabled: true,
            ca_file: Some(REDIS_CA_FILE),
            cert_file: None,
            key_file: None,
        });
    }
    external_redis_tls(cc).map(|tls| {
        let client = tls.client_certificate_secret.is_some();
        RedisTls {
            enabled: true,
            ca_file: tls.ca_secret_ref.as_ref().map(|_| REDIS_CA_FILE),
            cert_file: client.then_some(REDIS_CLIENT_CERT_FILE),
            key_file: client.then_some(REDIS_CLIENT_KEY_FILE),
        }
    })
}

/// `host:port` of the counter headless Service, which the gateway resolves to every counter pod.
pub fn discovery_dns(cc: &CounterCluster) -> String {
    format!(
        "{}.{}.svc.cluster.local:{GRPC_PORT}",
        child_name(cc, "counter"),
        namespace(cc)
    )
}

/// The `config.yaml` text.
pub fn render_service_config(cc: &ValidCounterCluster) -> String {
    let spec = &cc.spec;
    let cluster = spec.redis.mode == RedisMode::External
        && spec.redis.external.as_ref().is_some_and(|e| e.cluster);
    let config = ServiceConfig {
        server: Server {
            host: "0.0.0.0",
            port: HTTP_PORT,
            tls: spec.security.tls.api.then_some(ServerTls {
                enabled: true,
                cert_file: TLS_CERT_FILE,
                key_file: TLS_KEY_FILE,
            }),
        },
        store: Store {
            kind: "redis",
            key_layout: match spec.redis.key_layout {
                KeyLayout::Highpress => "highpress",
                KeyLayout::HighGoPress => "highgopress",
            },
        },
        redis: redis_section(cc, cluster),
        log: Log {
            level: log_level(spec.observability.log_level),
            format: "json",
        },
        coalescing: Coalescing {
            max_batch: spec.counter.coalescing.max_batch,
        },
        cache: Cache {
            ttl_ms: spec.counter.cache.ttl_millis,
            max_entries: spec.counter.cache.max_entries,
        },
        leaderboard: Leaderboard {
            enabled: spec.counter.leaderboards.enabled,
            flush_interval_ms: spec.counter.leaderboards.flush_interval_millis,
            top_k: spec.counter.leaderboards.top_k,
        },
        grpc: Grpc {
            listen: format!("0.0.0.0:{GRPC_PORT}"),
            tls: spec.security.tls.grpc.then(|| GrpcTls {
                enabled: true,
                cert_file: TLS_CERT_FILE,
                key_file: TLS_KEY_FILE,
                ca_file: TLS_CA_FILE,
                server_name: counter_server_name(cc),
            }),
        },
        discovery: Discovery {
            dns: discovery_dns(cc),
        },
        api: Api {
            allow_reset: spec.api.allow_reset,
            auth: spec.security.auth.enabled.then(|| Auth {
                enabled: true,
                tokens_file: tokens_file(cc),
                protect_metrics: spec.security.auth.protect_metrics,
            }),
            rate_limit: spec.security.rate_limit.enabled.then_some(RateLimit {
                enabled: true,
                requests_per_second: spec.security.rate_limit.requests_per_second,
                burst: spec.security.rate_limit.burst,
            }),
        },
        idempotency: Idempotency {
            ttl: spec.idempotency.ttl.clone(),
        },
        counter_types: spec
            .counter_types
            .iter()
            .map(|(name, policy)| {
                (
                    name.clone(),
                    CounterType {
                        unique_per_user: policy.unique_per_user,
                        max_increment: policy.max_increment,
                    },
                )
            })
            .collect(),
        kafka: spec.events.kafka.enabled.then(|| Kafka {
            enabled: true,
            brokers: spec.events.kafka.brokers.clone(),
            topic: spec.events.kafka.topic.clone(),
            outbox_max_len: spec.events.kafka.outbox_max_len,
            outbox_full_policy: spec.events.kafka.outbox_full_policy.as_config(),
        }),
        tracing: spec
            .observability
            .tracing
            .otlp_endpoint
            .clone()
            .filter(|_| spec.observability.tracing.enabled)
            .map(|otlp_endpoint| Tracing {
                enabled: true,
                otlp_endpoint,
                sampling_ratio: spec.observability.tracing.sampling_ratio,
            }),
    };
    let body = serde_norway::to_string(&config)
        .expect("a struct of strings, integers and booleans always serializes to YAML");
    format!(
        "# Rendered by highpress-operator from CounterCluster {}/{}. Do not edit: edit the \
         CounterCluster.\n{body}",
        namespace(cc),
        cc.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The ConfigMap `<name>-config` holding `config.yaml`.
pub fn build_config_map(cc: &ValidCounterCluster) -> ConfigMap {
    ConfigMap {
        metadata: object_meta(cc, child_name(cc, "config"), Component::Config),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            render_service_config(cc),
        )])),
        ..ConfigMap::default()
    }
}

/// A stable hash of the ConfigMap's data (64-bit FNV-1a over each key and value, in key
/// order), as 16 hex digits. Stable across builds and platforms, unlike `DefaultHasher`.
pub fn config_hash(config_map: &ConfigMap) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (key, value) in config_map.data.iter().flatten() {
        feed(key.as_bytes());
        feed(&[0]);
        feed(value.as_bytes());
        feed(&[0]);
    }
    format!("{hash:016x}")
}
