//! Where the counts live: the store (`store`: memory or Redis, and the key layout) and the Redis
//! connection (`redis`: one server, a primary found through Sentinel, or a cluster; and how
//! many replicas must have a flush before it is acknowledged).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, forms};
use crate::domain::KeyLayout;

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
    /// `highgopress` (`counter:{resource_id}:{counter_type}`, HighGoPress's keys).
    pub key_layout: KeyLayout,
}

/// The largest `redis.min_replicas_ack`.
pub const MAX_REPLICAS_ACK: u32 = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `host:port` (as HighGoPress writes it), or a `redis://` / `rediss://` URL.
    pub addr: String,
    pub password: String,
    pub db: i64,
    /// Per-command response timeout; a flush waiting longer fails with 503.
    #[serde(rename = "timeout_ms", with = "forms::millis")]
    pub timeout: Duration,
    /// Connection establishment timeout.
    #[serde(rename = "connect_timeout_ms", with = "forms::millis")]
    pub connect_timeout: Duration,
    /// Use the Redis Cluster client; `addr` lists seed nodes, comma-separated.
    pub cluster: bool,
    /// Find the primary through Redis Sentinel (and follow its failovers) instead of `addr`.
    pub sentinel: SentinelConfig,
    /// Each flush ends with `WAIT min_replicas_ack`: its increments are acknowledged only once
    /// that many replicas have them. 0 acknowledges once the primary has them.
    pub min_replicas_ack: u32,
    /// How long a flush waits for those replicas before its increments answer 503.
    #[serde(rename = "replica_ack_timeout_ms", with = "forms::millis")]
    pub replica_ack_timeout: Duration,
    /// TLS on every Redis connection.
    pub tls: RedisTlsConfig,
}

/// TLS to Redis (`redis.tls`): every Redis connection (the server, cluster nodes, the
/// sentinels and the primaries they name) over TLS, verified against `ca_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisTlsConfig {
    /// Also on when `redis.addr` is a `rediss://` URL.
    pub enabled: bool,
    /// PEM CA certificates that sign the servers' certificates; empty: the public web roots.
    pub ca_file: String,
    /// PEM client certificate and its key, for servers that require one
    /// (`tls-auth-clients yes`); both or neither.
    pub cert_file: String,
    pub key_file: String,
}

impl RedisTlsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err(ConfigError::invalid(
                "redis.tls.cert_file",
                "set redis.tls.cert_file and redis.tls.key_file together",
            ));
        }
        let names_a_file = !self.ca_file.is_empty() || !self.cert_file.is_empty();
        if !self.enabled && names_a_file {
            return Err(ConfigError::invalid(
                "redis.tls.enabled",
                "must be true when redis.tls names a file",
            ));
        }
        Ok(())
    }
}

/// The sentinels that know the primary. Off while `master_name` is empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelConfig {
    /// The name the sentinels monitor the primary under (`sentinel monitor <name> …`).
    pub master_name: String,
    /// The sentinels, `host:port` each: a YAML list or comma-separated.
    #[serde(deserialize_with = "forms::list_or_comma_separated")]
    pub addrs: Vec<String>,
    /// The sentinels' own password, if they require one (`redis.password` is the primary's).
    pub password: String,
}

impl SentinelConfig {
    pub fn enabled(&self) -> bool {
        !self.master_name.is_empty()
    }

    /// A `redis://` URL per sentinel.
    pub fn urls(&self) -> Vec<String> {
        let auth = if self.password.is_empty() {
            String::new()
        } else {
            format!(":{}@", percent_encode(&self.password))
        };
        self.addrs
            .iter()
            .map(|a| format!("redis://{auth}{}", a.trim()))
            .collect()
    }

    fn validate(&self, cluster: bool) -> Result<(), ConfigError> {
        if !self.enabled() {
            if !self.addrs.is_empty() {
                return Err(ConfigError::invalid(
                    "redis.sentinel.master_name",
                    "name the primary the sentinels in redis.sentinel.addrs monitor",
                ));
            }
            return Ok(());
        }
        if cluster {
            return Err(ConfigError::invalid(
                "redis.sentinel",
                "Redis Cluster fails over by itself; use redis.cluster or redis.sentinel, not both",
            ));
        }
        if self.master_name.chars().any(|c| c.is_whitespace()) {
            return Err(ConfigError::invalid(
                "redis.sentinel.master_name",
                "must not contain spaces",
            ));
        }
        if self.addrs.is_empty() {
            return Err(ConfigError::invalid(
                "redis.sentinel.addrs",
                "list at least one sentinel as host:port",
            ));
        }
        if let Some(bad) = self.addrs.iter().find(|a| !forms::is_host_port(a.trim())) {
            return Err(ConfigError::invalid(
                "redis.sentinel.addrs",
                format!("{bad:?} is not host:port"),
            ));
        }
        Ok(())
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            addr: "localhost:6379".into(),
            password: String::new(),
            db: 0,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(500),
            cluster: false,
            sentinel: SentinelConfig::default(),
            min_replicas_ack: 0,
            replica_ack_timeout: Duration::from_millis(500),
            tls: RedisTlsConfig::default(),
        }
    }
}

impl RedisConfig {
    /// Checks the connection settings; the address only when `kind` is Redis, since the memory
    /// store never connects.
    pub(super) fn validate(&self, kind: StoreKind) -> Result<(), ConfigError> {
        self.tls.validate()?;
        if kind == StoreKind::Redis {
            if self.cluster {
                if self.cluster_seeds()?.is_empty() {
                    return Err(ConfigError::invalid(
                        "redis.addr",
                        "name at least one cluster seed node",
                    ));
                }
                if self.db != 0 {
                    return Err(ConfigError::invalid(
                        "redis.db",
                        "Redis Cluster has only database 0",
                    ));
                }
            } else if !self.sentinel.enabled() {
                self.url()?;
            }
            self.sentinel.validate(self.cluster)?;
        }
        if !(0..=15_000).contains(&self.db) && !self.addr.contains("://") {
            return Err(ConfigError::invalid(
                "redis.db",
                "must be a database index ≥ 0",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "redis.timeout_ms",
                "must be at least 1",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "redis.connect_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.min_replicas_ack > MAX_REPLICAS_ACK {
            return Err(ConfigError::invalid(
                "redis.min_replicas_ack",
                format!("must be at most {MAX_REPLICAS_ACK}"),
            ));
        }
        if self.min_replicas_ack > 0
            && (self.replica_ack_timeout.is_zero() || self.replica_ack_timeout >= self.timeout)
        {
            // WAIT must give up before the response timeout does, or a missing replica would
            // look like a dead Redis.
            return Err(ConfigError::invalid(
                "redis.replica_ack_timeout_ms",
                "must be at least 1 and below redis.timeout_ms",
            ));
        }
        Ok(())
    }

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
