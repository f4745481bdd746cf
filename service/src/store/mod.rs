//! Storage: the one [`Store`] trait the counter engine writes through, its key encoding, and the
//! implementations: [`memory::MemoryStore`] (embedded), [`redis::RedisStore`] and
//! [`redis_cluster::RedisClusterStore`].
//!
//! A store applies a whole flush in one round trip and reports an outcome per increment, so
//! that one overflowing key never fails its neighbours.

pub mod keys;
pub mod memory;
pub mod redis;
pub mod redis_cluster;

use std::future::Future;

pub use keys::{CounterKey, LeaderboardBucket, Period};

/// Why a store operation failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time. Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something highpress cannot use (a wrong type under a counter key, say).
    #[error("store error: {0}")]
    Internal(String),
}

/// The result of one `INCRBY` inside a flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncrOutcome {
    /// Applied; the key's value right after this increment.
    Applied(i64),
    /// Not applied: the key would have left the i64 range.
    Overflow,
    /// Not applied for another reason specific to this key.
    Failed(String),
    /// The part of the store holding this key could not be reached (a Redis Cluster node);
    /// it may or may not have been applied.
    Unavailable,
}

/// Everything one flush writes, sent to the store as a single round trip.
///
/// New kinds of write (idempotency records, uniqueness sets) become new fields here, so the
/// flush path grows without changing shape.
#[derive(Debug, Default)]
pub struct WriteBatch<'a> {
    /// `INCRBY key delta`, applied in this order; outcomes come back in the same order.
    pub increments: Vec<(&'a CounterKey, i64)>,
}

/// One leaderboard delta: `delta` more for `resource_id` in the hour starting at `hour`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderboardDelta {
    pub key: CounterKey,
    /// Start of the UTC hour in which the increments were acknowledged, in hours since the epoch.
    pub hour: i64,
    pub delta: i64,
}

/// One ranked entry of a leaderboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedEntry {
    pub resource_id: String,
    pub count: i64,
}

/// A counter store. Implementations are cheap to share (`Arc`) and safe to call concurrently.
pub trait Store: Send + Sync + 'static {
    /// Applies `batch` in one round trip and returns one outcome per increment, in order.
    fn write<'a>(
        &'a self,
        batch: &'a WriteBatch<'a>,
    ) -> impl Future<Output = Result<Vec<IncrOutcome>, StoreError>> + Send + 'a;

    /// Reads the current values of `keys` (0 for a key never written) in one round trip.
    fn get_many<'a>(
        &'a self,
        keys: &'a [&'a CounterKey],
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send + 'a;

    /// Adds leaderboard deltas to the hour, day, ISO-week and all-time rankings, in one round trip.
    fn add_to_leaderboards<'a>(
        &'a self,
        deltas: &'a [LeaderboardDelta],
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// The top `limit` entries of one ranking, highest count first.
    fn leaderboard_top<'a>(
        &'a self,
        bucket: &'a LeaderboardBucket,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RankedEntry>, StoreError>> + Send + 'a;

    /// Checks that the store answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send + '_;
}
