//! The counter engine: what a counter process does with increments and reads. [`LocalCounter`]
//! owns the coalescer, the read cache, the leaderboard accumulator and store health over one
//! [`Store`]; it implements [`CounterBackend`], the interface the REST handlers call.

pub mod cache;
pub mod coalescer;
pub mod health;
pub mod leaderboard;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::policy::{self, CounterPolicies};
use crate::domain::{CounterKey, LeaderboardBucket, Period, RankedEntry};
use crate::events::Outbox;
use crate::metrics::METRICS;
use crate::store::{Conditions, IdempotencyRecord, Store, StoreError};
use cache::{Lookup, ReadCache};
use coalescer::{Coalescer, FlushEffects};
use health::StoreHealth;
use leaderboard::LeaderboardAccumulator;

/// An acknowledged increment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    /// The counter's value right after this request (its own post-value).
    pub current_value: i64,
    /// Whether the increment changed the counter. `false` for a unique-per-user counter when
    /// the user had already counted (`+1`) or had not (`-1`).
    pub counted: bool,
    /// Whether this answer is the recorded outcome of an earlier request with the same
    /// `Idempotency-Key` (nothing was applied now).
    pub replayed: bool,
}

impl Acknowledged {
    /// A plain increment that was applied now.
    pub fn counted(current_value: i64) -> Self {
        Self {
            current_value,
            counted: true,
            replayed: false,
        }
    }
}

/// An acknowledged reset: what an event about it needs besides the counter's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetOutcome {
    /// The value the counter had just before the reset (0 if it had none).
    pub previous_value: i64,
}

/// Why a counter operation did not succeed. Mapped to HTTP and to gRPC at the edges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    #[error("the counter would leave the signed 64-bit range")]
    Overflow,
    #[error("too many pending increments")]
    Overloaded,
    #[error("the store is unavailable")]
    Unavailable,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("leaderboards are disabled (leaderboard.enabled)")]
    LeaderboardsDisabled,
    #[error("the Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("resetting counters is disabled (api.allow_reset)")]
    ResetDisabled,
    #[error("internal error")]
    Internal,
}

impl CounterError {
    /// A static label value for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Overflow => "overflow",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::LeaderboardsDisabled => "leaderboards_disabled",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::ResetDisabled => "reset_disabled",
            Self::Internal => "internal",
        }
    }
}

impl From<&StoreError> for CounterError {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable,
            StoreError::Internal(_) => Self::Internal,
        }
    }
}

/// What the REST layer needs from a counter implementation: the local engine here, the gRPC
/// client to counter pods in gateway mode.
pub trait CounterBackend: Send + Sync + 'static {
    /// Applies `delta` for `user_id` (once per `idempotency_key`, when one is given) and returns
    /// this request's own post-value. Callers validate every argument first; `user_id` is `None`
    /// only for counter types that are not unique per user.
    fn increment(
        &self,
        key: CounterKey,
        delta: i64,
        user_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> impl Future<Output = Result<Acknowledged, CounterError>> + Send;
    /// Resets one counter to 0 and forgets who counted it (unique-per-user types). Idempotent.
    fn reset(
        &self,
        key: CounterKey,
    ) -> impl Future<Output = Result<ResetOutcome, CounterError>> + Send;
    /// The current value of one counter (0 if never incremented).
    fn get(&self, key: CounterKey) -> impl Future<Output = Result<i64, CounterError>> + Send;
    /// Current values, in the order of `keys` (0 for never-incremented counters).
    fn get_many(
        &self,
        keys: Vec<CounterKey>,
    ) -> impl Future<Output = Result<Vec<i64>, CounterError>> + Send;
    /// The top `limit` entries of `counter_type` for the current bucket of `period`.
    fn leaderboard(
        &self,
        counter_type: &str,
        period: Period,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RankedEntry>, CounterError>> + Send;
    /// Whether the backend can serve now (the store, or at least one counter pod, answers).
    fn is_ready(&self) -> bool;
}

/// The counter engine over one store.
pub struct LocalCounter<S: Store> {
    store: Arc<S>,
    coalescer: Coalescer,
    effects: Arc<FlushEffects>,
    policies: Arc<CounterPolicies>,
    allow_reset: bool,
}

/// Background tasks of a [`LocalCounter`], stopped in order by [`CounterTasks::finish`].
pub struct CounterTasks<S: Store> {
    store: Arc<S>,
    effects: Arc<FlushEffects>,
    stop: CancellationToken,
    flusher: JoinHandle<()>,
    leaderboard: Option<JoinHandle<()>>,
    health: JoinHandle<()>,
}

impl<S: Store> CounterTasks<S> {
    /// Stops the engine once no more requests arrive: the coalescer refuses new increments,
    /// flushes everything queued, and then the last leaderboard deltas are written.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.flusher.await;
        if let Some(task) = self.leaderboard {
            let _ = task.await;
            flush_leaderboard(&*self.store, &self.effects).await;
        }
        self.health.abort();
    }
}

/// What the engine is configured with: its part of [`Config`], and the counter-type policies
/// the process built once.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Most increments one flush takes from the queue (`coalescing.max_batch`).
    pub max_batch: usize,
    /// Increments that may wait; beyond, `overloaded` (`coalescing.queue_capacity`).
    pub queue_capacity: usize,
    /// How long idempotency records are kept (`idempotency.ttl`).
    pub record_ttl: Duration,
    /// Read cache entry lifetime and size (`cache.ttl_ms`, `cache.max_entries`).
    pub cache_ttl: Duration,
    pub cache_max_entries: usize,
    /// How often leaderboard deltas are written; `None` when leaderboards are off.
    pub leaderboard_flush_interval: Option<Duration>,
    /// Members each ranking keeps (`leaderboard.top_k`).
    pub leaderboard_top_k: usize,
    /// Whether resets are allowed (`api.allow_reset`): checked here, for every front end.
    pub allow_reset: bool,
    pub policies: Arc<CounterPolicies>,
}

impl EngineSettings {
    pub fn new(config: &Config, policies: Arc<CounterPolicies>) -> Self {
        Self {
            max_batch: config.coalescing.max_batch,
            queue_capacity: config.coalescing.queue_capacity,
            record_ttl: config.idempotency.ttl,
            cache_ttl: config.cache.ttl,
            cache_max_entries: config.cache.max_entries,
            leaderboard_flush_interval: config
                .leaderboard
                .enabled
                .then_some(config.leaderboard.flush_interval),
            leaderboard_top_k: config.leaderboard.top_k,
            allow_reset: config.api.allow_reset,
            policies,
        }
    }

    /// The settings of `config`, with its policies.
    pub fn from_config(config: &Config) -> Self {
        Self::new(
            config,
            Arc::new(CounterPolicies::new(&config.counter_types)),
        )
    }
}

impl<S: Store> LocalCounter<S> {
    /// Starts the engine's background tasks, publishing no events.
    pub fn start(store: Arc<S>, settings: EngineSettings) -> (Arc<Self>, CounterTasks<S>) {
        Self::start_with_outbox(store, settings, None)
    }

    /// Starts the engine's background tasks; with an `outbox`, every acknowledged change of a
    /// count has its event written there before it is answered.
    pub fn start_with_outbox(
        store: Arc<S>,
        settings: EngineSettings,
        outbox: Option<Arc<Outbox>>,
    ) -> (Arc<Self>, CounterTasks<S>) {
        let health = Arc::new(StoreHealth::new());
        let effects = Arc::new(FlushEffects {
            cache: ReadCache::new(settings.cache_ttl, settings.cache_max_entries),
            leaderboard: settings
                .leaderboard_flush_interval
                .map(|_| LeaderboardAccumulator::new(settings.leaderboard_top_k)),
            health: health.clone(),
            outbox,
        });
        let stop = CancellationToken::new();
        let (coalescer, flusher) = Coalescer::start(
            store.clone(),
            effects.clone(),
            settings.max_batch,
            settings.queue_capacity,
            settings.record_ttl,
            stop.clone(),
        );
        let health_task = tokio::spawn(health::watch(store.clone(), health.clone()));
        let leaderboard = settings.leaderboard_flush_interval.map(|interval| {
            tokio::spawn(run_leaderboard_flusher(
                store.clone(),
                effects.clone(),
                interval,
                stop.clone(),
            ))
        });
        let engine = Arc::new(Self {
            store: store.clone(),
            coalescer,
            effects: effects.clone(),
            policies: settings.policies,
            allow_reset: settings.allow_reset,
        });
        let tasks = CounterTasks {
            store,
            effects,
            stop,
            flusher,
            leaderboard,
            health: health_task,
        };
        (engine, tasks)
    }
}

/// Writes leaderboard deltas every `interval` until `stop`.
async fn run_leaderboard_flusher<S: Store>(
    store: Arc<S>,
    effects: Arc<FlushEffects>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => flush_leaderboard(&*store, &effects).await,
            () = stop.cancelled() => break,
        }
    }
}

async fn flush_leaderboard<S: Store>(store: &S, effects: &FlushEffects) {
    let Some(leaderboard) = &effects.leaderboard else {
        return;
    };
    match leaderboard.flush_to(store).await {
        Ok(_) => METRICS.leaderboard_flushes.with_label_values(&["ok"]).inc(),
        Err(e) => {
            METRICS
                .leaderboard_flushes
                .with_label_values(&["error"])
                .inc();
            tracing::warn!(error = %e, "leaderboard flush failed; deltas kept for the next one");
        }
    }
}

impl<S: Store> CounterBackend for LocalCounter<S> {
    async fn increment(
        &self,
        key: CounterKey,
        delta: i64,
        user_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Acknowledged, CounterError> {
        if !self.effects.health.is_up() {
            return Err(CounterError::Unavailable);
        }
        if let Some(outbox) = &self.effects.outbox
            && !outbox.accepts_increments()
        {
            return Err(CounterError::Overloaded);
        }
        let unique = self.policies.unique_per_user(key.counter_type());
        if unique && (delta.abs() != 1 || user_id.is_none()) {
            // Validation rejects this before it gets here; never let it reach the store.
            tracing::error!(key = ?key, delta, "unvalidated increment of a unique-per-user counter");
            return Err(CounterError::Internal);
        }
        let conditions = Conditions {
            unique_user: user_id.filter(|_| unique).map(Into::into),
            idempotency: idempotency_key.map(|k| IdempotencyRecord {
                key: k.into(),
                fingerprint: policy::fingerprint(&key, user_id, delta).into(),
            }),
        };
        // The event names no user (an empty `user_id`, as a reset's) when the request named none.
        let event_user = self
            .effects
            .outbox
            .is_some()
            .then(|| user_id.unwrap_or_default().into());
        self.coalescer
            .increment(key, delta, conditions, event_user)
            .await
    }

    /// Resets through the coalescer's queue, after the increments queued before it. The flusher
    /// writes the reset's event, in order with the increments' events.
    async fn reset(&self, key: CounterKey) -> Result<ResetOutcome, CounterError> {
        if !self.allow_reset {
            return Err(CounterError::ResetDisabled);
        }
        if !self.effects.health.is_up() {
            return Err(CounterError::Unavailable);
        }
        let previous_value = self.coalescer.reset(key).await?;
        Ok(ResetOutcome { previous_value })
    }

    async fn get(&self, key: CounterKey) -> Result<i64, CounterError> {
        let cache = &self.effects.cache;
        if let Lookup::Hit(v) = cache.lookup(&key) {
            METRICS.cache_hits.inc();
            return Ok(v);
        }
        METRICS.cache_misses.inc();
        cache
            .get_or_load(&key, || async {
                let v = self
                    .store
                    .get_many(&[&key])
                    .await
                    .map_err(|e| self.store_failed(&e))?;
                Ok(v[0])
            })
            .await
    }

    async fn get_many(&self, keys: Vec<CounterKey>) -> Result<Vec<i64>, CounterError> {
        let cache = &self.effects.cache;
        let mut values = vec![0i64; keys.len()];
        let mut missing: Vec<usize> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match cache.lookup(key) {
                Lookup::Hit(v) => values[i] = v,
                Lookup::Miss => missing.push(i),
            }
        }
        METRICS
            .cache_requests
            .with_label_values(&["hit"])
            .inc_by((keys.len() - missing.len()) as u64);
        METRICS
            .cache_requests
            .with_label_values(&["miss"])
            .inc_by(missing.len() as u64);
        if !missing.is_empty() {
            let wanted: Vec<&CounterKey> = missing.iter().map(|&i| &keys[i]).collect();
            let read = self
                .store
                .get_many(&wanted)
                .await
                .map_err(|e| self.store_failed(&e))?;
            for (&i, v) in missing.iter().zip(read) {
                values[i] = v;
                cache.fill(&keys[i], v);
            }
        }
        Ok(values)
    }

    async fn leaderboard(
        &self,
        counter_type: &str,
        period: Period,
        limit: usize,
    ) -> Result<Vec<RankedEntry>, CounterError> {
        if self.effects.leaderboard.is_none() {
            return Err(CounterError::LeaderboardsDisabled);
        }
        let bucket = LeaderboardBucket::current(counter_type, period);
        self.store
            .leaderboard_top(&bucket, limit)
            .await
            .map_err(|e| self.store_failed(&e))
    }

    fn is_ready(&self) -> bool {
        self.effects.health.is_up()
    }
}

impl<S: Store> LocalCounter<S> {
    fn store_failed(&self, e: &StoreError) -> CounterError {
        self.effects.health.record_error(e);
        CounterError::from(e)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;
    use crate::config::CounterTypePolicy;
    use crate::store::memory::MemoryStore;

    /// One request of a run: a user likes (`+1`) or unlikes (`-1`), maybe with a key.
    #[derive(Debug, Clone, Copy)]
    struct Op {
        user: u8,
        like: bool,
        key: Option<u8>,
    }

    /// The answers of applying `ops` one at a time: the sequential specification.
    fn sequential(ops: &[Op]) -> (Vec<Result<Acknowledged, CounterError>>, i64) {
        let mut users: HashSet<u8> = HashSet::new();
        let mut value = 0i64;
        let mut records: HashMap<u8, ((u8, bool), Acknowledged)> = HashMap::new();
        let answers = ops
            .iter()
            .map(|op| {
                if let Some(k) = op.key
                    && let Some((fp, ack)) = records.get(&k)
                {
                    return if *fp == (op.user, op.like) {
                        Ok(Acknowledged {
                            replayed: true,
                            ..*ack
                        })
                    } else {
                        Err(CounterError::IdempotencyKeyReused)
                    };
                }
                let counted = if op.like {
                    users.insert(op.user)
                } else {
                    users.remove(&op.user)
                };
                if counted {
                    value += if op.like { 1 } else { -1 };
                }
                let ack = Acknowledged {
                    current_value: value,
                    counted,
                    replayed: false,
                };
                if let Some(k) = op.key {
                    records.insert(k, ((op.user, op.like), ack));
                }
                Ok(ack)
            })
            .collect();
        (answers, value)
    }

    fn run_coalesced(ops: &[Op]) -> (Vec<Result<Acknowledged, CounterError>>, i64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut config = Config::default();
            config.counter_types.insert(
                "like".into(),
                CounterTypePolicy {
                    unique_per_user: true,
                    max_increment: None,
                },
            );
            let (engine, tasks) = LocalCounter::start(
                Arc::new(MemoryStore::new()),
                EngineSettings::from_config(&config),
            );
            let key = || CounterKey::new("like", "post");
            // join_all polls in order, and each call queues before its first await, so the
            // queue (and so the serialization) order is the order of `ops`; the flusher takes
            // them in batches of whatever size it finds.
            let calls = ops.iter().map(|op| {
                let user = format!("u{}", op.user);
                let idem = op.key.map(|k| format!("k{k}"));
                let engine = engine.clone();
                async move {
                    engine
                        .increment(
                            key(),
                            if op.like { 1 } else { -1 },
                            Some(&user),
                            idem.as_deref(),
                        )
                        .await
                }
            });
            let answers = futures::future::join_all(calls).await;
            let total = engine.get(key()).await.unwrap();
            tasks.finish().await;
            (answers, total)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn coalesced_unique_and_keyed_increments_equal_one_at_a_time(
            ops in prop::collection::vec(
                (0u8..4, any::<bool>(), prop::option::of(0u8..3))
                    .prop_map(|(user, like, key)| Op { user, like, key }),
                1..80,
            )
        ) {
            let (expected, expected_total) = sequential(&ops);
            let (answers, total) = run_coalesced(&ops);
            prop_assert_eq!(&answers, &expected);
            prop_assert_eq!(total, expected_total);
        }
    }

    /// The memory store, with an outbox that cannot be written.
    struct OutboxDown(MemoryStore);

    impl Store for OutboxDown {
        async fn write<'a>(
            &'a self,
            batch: &'a crate::store::WriteBatch<'a>,
        ) -> Result<crate::store::WriteOutcome, StoreError> {
            self.0.write(batch).await
        }
        async fn reset<'a>(&'a self, key: &'a CounterKey) -> Result<i64, StoreError> {
            self.0.reset(key).await
        }
        async fn get_many<'a>(
            &'a self,
            keys: &'a [&'a CounterKey],
        ) -> Result<Vec<i64>, StoreError> {
            self.0.get_many(keys).await
        }
        async fn update_leaderboards<'a>(
            &'a self,
            removals: &'a [crate::store::LeaderboardRemoval],
            writes: &'a [crate::store::BoardWrite],
        ) -> Result<Vec<Option<i64>>, StoreError> {
            self.0.update_leaderboards(removals, writes).await
        }
        async fn leaderboard_top<'a>(
            &'a self,
            bucket: &'a LeaderboardBucket,
            limit: usize,
        ) -> Result<Vec<RankedEntry>, StoreError> {
            self.0.leaderboard_top(bucket, limit).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.0.ping().await
        }
        async fn outbox_append<'a>(
            &'a self,
            _: &'a [crate::store::OutboxAppend],
        ) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("outbox down".into()))
        }
    }

    fn outbox(max_len: u64) -> Arc<Outbox> {
        let config = crate::config::KafkaConfig {
            outbox_max_len: max_len,
            ..Default::default()
        };
        Arc::new(Outbox::with_source(&config, "test".into()))
    }

    #[tokio::test]
    async fn an_increment_is_answered_only_once_its_event_is_in_the_outbox() {
        let store = Arc::new(MemoryStore::new());
        let (engine, tasks) = LocalCounter::start_with_outbox(
            store.clone(),
            EngineSettings::from_config(&Config::default()),
            Some(outbox(1_000)),
        );
        let key = CounterKey::new("like", "a");
        for expected in 1..=3 {
            let ack = engine
                .increment(key.clone(), 1, Some("u"), None)
                .await
                .unwrap();
            assert_eq!(ack.current_value, expected);
        }
        let totals = store.outbox_totals(8).await.unwrap();
        assert_eq!(totals.iter().map(|t| t.appended).sum::<u64>(), 3);
        tasks.finish().await;
    }

    #[tokio::test]
    async fn a_failed_outbox_write_answers_unavailable_though_the_count_applied() {
        let store = Arc::new(OutboxDown(MemoryStore::new()));
        let (engine, tasks) = LocalCounter::start_with_outbox(
            store.clone(),
            EngineSettings::from_config(&Config::default()),
            Some(outbox(1_000)),
        );
        let key = CounterKey::new("like", "a");
        let answer = engine.increment(key.clone(), 1, Some("u"), None).await;
        assert_eq!(answer, Err(CounterError::Unavailable));
        // Applied without its event: the caller was told the outcome is unknown.
        assert_eq!(store.0.get_many(&[&key]).await.unwrap(), vec![1]);
        tasks.finish().await;
    }

    #[tokio::test]
    async fn a_full_outbox_refuses_increments_before_anything_is_written() {
        let store = Arc::new(MemoryStore::new());
        let (engine, tasks) = LocalCounter::start_with_outbox(
            store.clone(),
            EngineSettings::from_config(&Config::default()),
            Some(outbox(2)),
        );
        let key = CounterKey::new("like", "a");
        let answers = [
            engine
                .increment(key.clone(), 1, Some("u"), None)
                .await
                .is_ok(),
            engine
                .increment(key.clone(), 1, Some("u"), None)
                .await
                .is_ok(),
        ];
        assert_eq!(answers, [true, true]);
        assert_eq!(
            engine.increment(key.clone(), 1, Some("u"), None).await,
            Err(CounterError::Overloaded)
        );
        assert_eq!(store.get_many(&[&key]).await.unwrap(), vec![2]);
        tasks.finish().await;
    }
}
