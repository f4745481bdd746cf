//! The counter engine's sections: group commit (`coalescing`), the read cache (`cache`), the
//! rankings (`leaderboard`), request limits (`limits`), `Idempotency-Key` records
//! (`idempotency`) and the per-type policies (`counter_types`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, CounterTypePolicy, forms};
use crate::domain::rules::MAX_LEADERBOARD_LIMIT;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoalescingConfig {
    /// Most increments one flush takes from the queue (`maxBatch`).
    pub max_batch: usize,
    /// Capacity of the pending-increment queue; when full, requests get `503 overloaded`.
    pub queue_capacity: usize,
}

impl CoalescingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=65_536).contains(&self.max_batch) {
            return Err(ConfigError::invalid(
                "coalescing.max_batch",
                "must be within 1..=65536",
            ));
        }
        if self.queue_capacity < self.max_batch {
            return Err(ConfigError::invalid(
                "coalescing.queue_capacity",
                "must be at least coalescing.max_batch",
            ));
        }
        Ok(())
    }
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
    #[serde(rename = "ttl_ms", with = "forms::millis")]
    pub ttl: Duration,
    /// Most keys held in the cache.
    pub max_entries: usize,
}

impl CacheConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.ttl.is_zero() && self.max_entries == 0 {
            return Err(ConfigError::invalid(
                "cache.max_entries",
                "must be at least 1 when cache.ttl_ms > 0",
            ));
        }
        Ok(())
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(1),
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
    #[serde(rename = "flush_interval_ms", with = "forms::millis")]
    pub flush_interval: Duration,
    /// Counters each ranking keeps: its memory and commands grow with this, not with the
    /// number of counters. At least the largest `limit` a read may ask for.
    pub top_k: usize,
}

impl LeaderboardConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.flush_interval.is_zero() {
            return Err(ConfigError::invalid(
                "leaderboard.flush_interval_ms",
                "must be at least 1",
            ));
        }
        if self.top_k < MAX_LEADERBOARD_LIMIT as usize || self.top_k > MAX_TOP_K {
            return Err(ConfigError::invalid(
                "leaderboard.top_k",
                format!(
                    "must be from {MAX_LEADERBOARD_LIMIT} (the largest leaderboard limit) to {MAX_TOP_K}"
                ),
            ));
        }
        Ok(())
    }
}

/// The largest `leaderboard.top_k`: each process keeps
/// four times `top_k` counters per current hour, day and week ranking in memory.
const MAX_TOP_K: usize = 100_000;

impl Default for LeaderboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flush_interval: Duration::from_secs(1),
            top_k: 1_000,
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

impl LimitsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // Bounded so that a flush's per-key sum and any serialization of it stay far from i64's edges.
        if !(1..=(1_i64 << 53)).contains(&self.max_increment) {
            return Err(ConfigError::invalid(
                "limits.max_increment",
                "must be within 1..=2^53",
            ));
        }
        if !(1..=100_000).contains(&self.max_batch_queries) {
            return Err(ConfigError::invalid(
                "limits.max_batch_queries",
                "must be within 1..=100000",
            ));
        }
        Ok(())
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_increment: 1_000_000,
            max_batch_queries: 1_000,
        }
    }
}

/// Idempotent retries with the `Idempotency-Key` request header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long the outcome of a request with an `Idempotency-Key` is kept: a retry within it
    /// gets the first answer and counts nothing (`24h`, `30m`, `90s`, or milliseconds).
    #[serde(with = "forms::human")]
    pub ttl: Duration,
}

impl IdempotencyConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(30 * 86_400) {
            return Err(ConfigError::invalid(
                "idempotency.ttl",
                "must be within 1s..=30d",
            ));
        }
        Ok(())
    }
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Checks every `counter_types.<name>` entry: the name is a counter type, and its policy holds
/// together.
pub(super) fn validate_counter_types(
    counter_types: &BTreeMap<String, CounterTypePolicy>,
) -> Result<(), ConfigError> {
    for (name, policy) in counter_types {
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
    Ok(())
}
