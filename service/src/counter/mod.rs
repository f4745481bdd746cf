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
use crate::events::EventSink;
use crate::metrics::METRICS;
use crate::store::{CounterKey, LeaderboardBucket, Period, RankedEntry, Store, StoreError};
use cache::{Lookup, ReadCache};
use coalescer::Coalescer;
use health::StoreHealth;
use leaderboard::LeaderboardAccumulator;

/// Why a counter operation did not succeed. Mapped to HTTP (and later gRPC) at the edges.
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
    /// Applies `delta` for `user_id` and returns this request's own post-value.
    fn increment(
        &self,
        key: CounterKey,
        delta: i64,
        user_id: &str,
    ) -> impl Future<Output = Result<i64, CounterError>> + Send;
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

/// What a flush updates besides the counters: the read cache, the leaderboard accumulator (when
/// leaderboards are enabled), store health and the Kafka events of acknowledged increments.
/// Later additions (policies) join here.
pub struct FlushEffects {
    pub cache: ReadCache,
    pub leaderboard: Option<LeaderboardAccumulator>,
    pub health: Arc<StoreHealth>,
    pub events: EventSink,
}

/// The counter engine over one store.
pub struct LocalCounter<S: Store> {
    store: Arc<S>,
    coalescer: Coalescer,
    effects: Arc<FlushEffects>,
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

impl<S: Store> LocalCounter<S> {
    /// Starts the engine's background tasks, publishing no events.
    pub fn start(store: Arc<S>, config: &Config) -> (Arc<Self>, CounterTasks<S>) {
        Self::start_with_events(store, config, EventSink::disabled())
    }

    /// Starts the engine's background tasks; every acknowledged increment goes to `events`.
    pub fn start_with_events(
        store: Arc<S>,
        config: &Config,
        events: EventSink,
    ) -> (Arc<Self>, CounterTasks<S>) {
        let health = Arc::new(StoreHealth::new());
        let effects = Arc::new(FlushEffects {
            cache: ReadCache::new(
                Duration::from_millis(config.cache.ttl_ms),
                config.cache.max_entries,
            ),
            leaderboard: config
                .leaderboard
                .enabled
                .then(LeaderboardAccumulator::default),
            health: health.clone(),
            events,
        });
        let stop = CancellationToken::new();
        let (coalescer, flusher) = Coalescer::start(
            store.clone(),
            effects.clone(),
            config.coalescing.max_batch,
            config.coalescing.queue_capacity,
            stop.clone(),
        );
        let health_task = tokio::spawn(health::watch(store.clone(), health.clone()));
        let leaderboard = config.leaderboard.enabled.then(|| {
            tokio::spawn(run_leaderboard_flusher(
                store.clone(),
                effects.clone(),
                Duration::from_millis(config.leaderboard.flush_interval_ms),
                stop.clone(),
            ))
        });
        let engine = Arc::new(Self {
            store: store.clone(),
            coalescer,
            effects: effects.clone(),
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
        user_id: &str,
    ) -> Result<i64, CounterError> {
        if !self.effects.health.is_up() {
            return Err(CounterError::Unavailable);
        }
        let user_id = self.effects.events.is_enabled().then(|| user_id.into());
        self.coalescer.increment(key, delta, user_id).await
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
