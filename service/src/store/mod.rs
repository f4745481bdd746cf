//! Storage: the one [`Store`] trait the counter engine writes through, and the implementations: [`memory::MemoryStore`] (embedded), [`redis::RedisStore`] and
//! [`redis::RedisClusterStore`]; and [`keyspace`], the raw key walk of one-shot tools.
//!
//! A store applies a whole flush in one round trip and reports an outcome per increment, so
//! that one overflowing key never fails its neighbours.
//!
//! A store also keeps the events outbox (`outbox_*`): partitioned logs of the events of
//! acknowledged increments, written before their waiters are answered and relayed to Kafka by
//! `events::relay`.

pub mod keyspace;
pub mod memory;
pub mod redis;

use std::future::Future;
use std::time::Duration;

pub use crate::domain::{CounterKey, KeyLayout, LeaderboardBucket, Period, RankedEntry};

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
#[derive(Debug, Default)]
pub struct WriteBatch<'a> {
    /// `INCRBY key delta`, applied in this order; outcomes come back in the same order.
    pub increments: Vec<(&'a CounterKey, i64)>,
    /// Keys whose increments carry conditions (an idempotency record, a uniqueness set). Each
    /// group is applied atomically (one Lua script on Redis), item by item in order.
    pub guarded: Vec<GuardedGroup<'a>>,
    /// How long idempotency records written by this batch are kept.
    pub record_ttl: Duration,
}

impl WriteBatch<'_> {
    /// Whether the batch writes nothing (Redis rejects an empty pipeline, so stores answer an
    /// empty batch without a round trip).
    pub fn is_empty(&self) -> bool {
        self.increments.is_empty() && self.guarded.is_empty()
    }
}

/// The conditional increments of one counter in one flush, in arrival order.
#[derive(Debug)]
pub struct GuardedGroup<'a> {
    pub key: &'a CounterKey,
    pub items: Vec<GuardedItem<'a>>,
}

/// One conditional increment: its delta and the conditions it carries.
#[derive(Debug, Clone, Copy)]
pub struct GuardedItem<'a> {
    pub delta: i64,
    pub conditions: &'a Conditions,
}

/// The conditions of one increment, beyond its delta. An increment with none is a plain one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Conditions {
    /// For a unique-per-user counter type: the user, added to (`+1`) or removed from (`-1`) the
    /// counter's uniqueness set; the delta applies only if that changed the set.
    pub unique_user: Option<Box<str>>,
    /// The request's idempotency record: if one exists, the item is answered from it (or
    /// refused, if its fingerprint differs) and nothing is applied; else it is written with the
    /// item's outcome.
    pub idempotency: Option<IdempotencyRecord>,
}

impl Conditions {
    /// Whether the increment carries no condition (it can be summed with its neighbours).
    pub fn is_empty(&self) -> bool {
        self.unique_user.is_none() && self.idempotency.is_none()
    }

    pub fn unique_user(&self) -> Option<&str> {
        self.unique_user.as_deref()
    }

    pub fn record(&self) -> Option<&IdempotencyRecord> {
        self.idempotency.as_ref()
    }
}

/// An `Idempotency-Key` and the fingerprint of the request that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: Box<str>,
    /// Lowercase hex, no spaces.
    pub fingerprint: Box<str>,
}

/// The outcome of one [`GuardedItem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardedOutcome {
    /// Executed now: the counter's value right after the item, and whether the delta applied.
    Applied { value: i64, counted: bool },
    /// An earlier request with the same key and fingerprint: its recorded outcome.
    Replayed { value: i64, counted: bool },
    /// The key's record belongs to a request with a different fingerprint; nothing applied.
    KeyReused,
    /// Not applied: the counter would have left the i64 range.
    Overflow,
    /// Not applied for another reason specific to this item.
    Failed(String),
}

/// The outcome of one [`GuardedGroup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// The group ran: the counter's value after it, and one outcome per item.
    Done {
        total: i64,
        items: Vec<GuardedOutcome>,
    },
    /// The part of the store holding this key could not be reached; it may have run.
    Unavailable,
    /// The group did not run, or its answer could not be read.
    Failed(String),
}

/// The answers to one [`WriteBatch`], in the order of its fields.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub increments: Vec<IncrOutcome>,
    pub guarded: Vec<GroupOutcome>,
}

/// One write to one ranking: new scores, then a trim to the top `keep` members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardWrite {
    pub bucket: LeaderboardBucket,
    /// The ranking's K: members beyond it (the lowest scores) are removed.
    pub keep: usize,
    /// Scores that only go up (`ZADD GT`); a counter not in the ranking is added.
    pub raised: Vec<(CounterKey, i64)>,
    /// Scores set on counters already in the ranking (`ZADD XX`); others are not added.
    pub lowered: Vec<(CounterKey, i64)>,
}

/// A reset counter, to be taken out of the hour, day, ISO-week and all-time rankings that
/// contain the hour of its reset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaderboardRemoval {
    pub key: CounterKey,
    /// Start of the UTC hour of the reset, in hours since the epoch.
    pub hour: i64,
}

/// One flush's events for one outbox partition, appended as one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxAppend {
    pub partition: u32,
    /// How many events `payload` holds.
    pub events: u64,
    /// The events, one per line (`events::outbox` owns the format).
    pub payload: Vec<u8>,
}

/// One outbox entry, read back for relaying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its id in the partition's log, increasing (`<ms>-<seq>`, a Redis Stream id).
    pub id: String,
    /// Events appended to the partition up to and including this entry.
    pub total: u64,
    pub payload: Vec<u8>,
}

/// What a partition of the outbox holds: events appended and relayed since it began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxTotals {
    pub appended: u64,
    pub relayed: u64,
}

impl OutboxTotals {
    /// Events appended and not yet relayed.
    pub fn waiting(self) -> u64 {
        self.appended.saturating_sub(self.relayed)
    }
}

/// A counter store. Implementations are cheap to share (`Arc`) and safe to call concurrently.
pub trait Store: Send + Sync + 'static {
    /// Applies `batch` in one round trip and returns one outcome per increment and per
    /// guarded group, in order.
    fn write<'a>(
        &'a self,
        batch: &'a WriteBatch<'a>,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send + 'a;

    /// Resets one counter to 0 and empties its uniqueness set, atomically; returns the value
    /// it had (0 if none). Idempotency records are kept: a retry still gets its first answer.
    fn reset<'a>(
        &'a self,
        key: &'a CounterKey,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send + 'a;

    /// Reads the current values of `keys` (0 for a key never written) in one round trip.
    fn get_many<'a>(
        &'a self,
        keys: &'a [&'a CounterKey],
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send + 'a;

    /// Takes the counters of `removals` out of their hour, day, ISO-week and all-time rankings,
    /// then applies `writes` in order, in one round trip. Answers each write's score at rank
    /// `keep` after it (`None` while the ranking holds fewer members).
    fn update_leaderboards<'a>(
        &'a self,
        removals: &'a [LeaderboardRemoval],
        writes: &'a [BoardWrite],
    ) -> impl Future<Output = Result<Vec<Option<i64>>, StoreError>> + Send + 'a;

    /// The top `limit` entries of one ranking, highest count first.
    fn leaderboard_top<'a>(
        &'a self,
        bucket: &'a LeaderboardBucket,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RankedEntry>, StoreError>> + Send + 'a;

    /// Checks that the store answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send + '_;

    /// Appends each entry to its outbox partition, in one round trip, acknowledged like a
    /// write (with the replicas' `WAIT` when one is asked for).
    fn outbox_append<'a>(
        &'a self,
        appends: &'a [OutboxAppend],
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
        let _ = appends;
        std::future::ready(Err(no_outbox()))
    }

    /// Takes or keeps (`ttl` > 0) or gives up (`ttl` = 0) the lease of one partition for the
    /// relay `owner`; answers whether `owner` holds it now.
    fn outbox_lease<'a>(
        &'a self,
        partition: u32,
        owner: &'a str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a {
        let _ = (partition, owner, ttl);
        std::future::ready(Err(no_outbox()))
    }

    /// Up to `count` entries of a partition, oldest first, after the entry `after` (from the
    /// start when `None`).
    fn outbox_read<'a>(
        &'a self,
        partition: u32,
        after: Option<&'a str>,
        count: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send + 'a {
        let _ = (partition, after, count);
        std::future::ready(Err(no_outbox()))
    }

    /// Removes every entry of a partition up to and including `through` (relayed), whose
    /// `total` was `total`. Idempotent.
    fn outbox_trim<'a>(
        &'a self,
        partition: u32,
        through: &'a str,
        total: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
        let _ = (partition, through, total);
        std::future::ready(Err(no_outbox()))
    }

    /// The totals of partitions `0..partitions`, in one round trip.
    fn outbox_totals(
        &self,
        partitions: u32,
    ) -> impl Future<Output = Result<Vec<OutboxTotals>, StoreError>> + Send + '_ {
        let _ = partitions;
        std::future::ready(Err(no_outbox()))
    }
}

fn no_outbox() -> StoreError {
    StoreError::Internal("this store keeps no events outbox".into())
}

/// The id that follows `id` (`<ms>-<seq>`) in a partition's log: the least id an entry after it
/// can have.
pub fn next_outbox_id(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    Some(match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms.checked_add(1)?),
    })
}
