//! Group commit. Increments wait in a bounded queue; one flusher drains everything queued while
//! the previous flush was in flight (smart batching: no timer, so batches are small at low load
//! and large at high load), sums the deltas per key, writes them in one pipelined round trip and
//! answers every waiter only after the store acknowledged, each with its own exact post-value.
//!
//! A key whose sum overflows is retried once as one `INCRBY` per request in arrival order, so
//! exactly the requests that would overflow get [`CounterError::Overflow`] and nothing is written
//! for them; other keys in the flush are unaffected.
//!
//! Conditional increments (an `Idempotency-Key`, a unique-per-user counter type) make their
//! key's group *guarded*: the whole group goes to the store as one atomic unit (a Lua script on
//! Redis) in the same round trip, evaluated item by item in arrival order.
//!
//! Resets travel through the same queue, so they are ordered with the flushes around them: the
//! increments queued before a reset are flushed first, and a flush never writes an older value
//! into the read cache after the reset cleared it.
//!
//! Traced (when tracing is enabled): each queued increment remembers its caller's span; a flush
//! runs in a `coalescer.flush` span linked to every distinct caller span it served (a child of
//! the first sampled one), and each store round trip gets a `store.pipeline` child span.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hashbrown::HashTable;
use opentelemetry::trace::SpanContext;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::{Acknowledged, CounterError, FlushEffects};
use crate::domain::current_hour;
use crate::events::{CounterEvent, EventKind};
use crate::metrics::METRICS;
use crate::store::{
    CounterKey, GroupOutcome, GuardedGroup, GuardedItem, GuardedOutcome, IncrOutcome, RecordRef,
    Store, StoreError, WriteBatch, WriteOutcome,
};
use crate::telemetry;

/// The conditions of one increment, beyond its delta.
#[derive(Debug, Default)]
pub struct Conditions {
    /// The user, when the counter type is unique per user.
    pub unique_user: Option<Box<str>>,
    /// The request's `Idempotency-Key` and fingerprint.
    pub idempotency: Option<IdempotencyRecord>,
}

/// An idempotency key and the fingerprint of the request that carries it.
#[derive(Debug)]
pub struct IdempotencyRecord {
    pub key: Box<str>,
    pub fingerprint: String,
}

/// One increment waiting for a flush.
struct PendingIncrement {
    key: CounterKey,
    delta: i64,
    conditions: Conditions,
    reply: oneshot::Sender<Result<Acknowledged, CounterError>>,
    /// The span of the request this increment belongs to, when tracing is enabled.
    trace: Option<SpanContext>,
    /// The requester, kept only when events are published (for the increment's event).
    user_id: Option<Box<str>>,
}

impl PendingIncrement {
    fn is_guarded(&self) -> bool {
        self.conditions.unique_user.is_some() || self.conditions.idempotency.is_some()
    }
}

/// What waits in the queue: increments, and the rare reset, ordered with them.
enum Pending {
    Increment(PendingIncrement),
    Reset {
        key: CounterKey,
        reply: oneshot::Sender<Result<i64, CounterError>>,
    },
}

/// Most span links on one flush span (OpenTelemetry's default per-span limit).
const MAX_FLUSH_LINKS: usize = 128;

/// The handle requests use to enqueue increments.
#[derive(Clone)]
pub struct Coalescer {
    queue: mpsc::Sender<Pending>,
}

impl Coalescer {
    /// Starts the flusher. It stops after `shutdown` fires and the queue is drained and flushed.
    pub fn start<S: Store>(
        store: Arc<S>,
        effects: Arc<FlushEffects>,
        max_batch: usize,
        queue_capacity: usize,
        record_ttl: Duration,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue_capacity);
        let flusher = Flusher {
            store,
            effects,
            max_batch,
            record_ttl,
            plan: FlushPlan::default(),
        };
        let handle = tokio::spawn(flusher.run(rx, shutdown));
        (Self { queue: tx }, handle)
    }

    /// Queues one increment and waits for its post-value. `user_id` is kept for its event.
    pub async fn increment(
        &self,
        key: CounterKey,
        delta: i64,
        conditions: Conditions,
        user_id: Option<Box<str>>,
    ) -> Result<Acknowledged, CounterError> {
        let (reply, answer) = oneshot::channel();
        let trace = telemetry::enabled().then(|| telemetry::span_context(&Span::current()));
        match self.queue.try_send(Pending::Increment(PendingIncrement {
            key,
            delta,
            conditions,
            reply,
            trace,
            user_id,
        })) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(CounterError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(CounterError::ShuttingDown),
        }
        // A dropped reply means the increment was never flushed: not applied, not acknowledged.
        answer.await.unwrap_or(Err(CounterError::ShuttingDown))
    }

    /// Queues a reset of `key` behind the increments already queued and waits for the value
    /// the counter had.
    pub async fn reset(&self, key: CounterKey) -> Result<i64, CounterError> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Pending::Reset { key, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(CounterError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(CounterError::ShuttingDown),
        }
        answer.await.unwrap_or(Err(CounterError::ShuttingDown))
    }
}

struct Flusher<S> {
    store: Arc<S>,
    effects: Arc<FlushEffects>,
    max_batch: usize,
    record_ttl: Duration,
    plan: FlushPlan,
}

impl<S: Store> Flusher<S> {
    async fn run(mut self, mut queue: mpsc::Receiver<Pending>, shutdown: CancellationToken) {
        let mut received: Vec<Pending> = Vec::with_capacity(self.max_batch);
        let mut batch: Vec<PendingIncrement> = Vec::with_capacity(self.max_batch);
        let mut closing = false;
        loop {
            tokio::select! {
                biased;
                n = queue.recv_many(&mut received, self.max_batch) => {
                    if n == 0 {
                        break; // closed and drained
                    }
                    for pending in received.drain(..) {
                        match pending {
                            Pending::Increment(p) => batch.push(p),
                            Pending::Reset { key, reply } => {
                                if !batch.is_empty() {
                                    self.flush(&mut batch).await;
                                }
                                let _ = reply.send(self.reset(&key).await);
                            }
                        }
                    }
                    if !batch.is_empty() {
                        self.flush(&mut batch).await;
                    }
                }
                () = shutdown.cancelled(), if !closing => {
                    // Refuse new work, then keep looping until what is queued has been flushed.
                    queue.close();
                    closing = true;
                }
            }
        }
    }

    /// Resets `key` in the store; ordered with flushes, so the cache can take the new value.
    async fn reset(&self, key: &CounterKey) -> Result<i64, CounterError> {
        match self.store.reset(key).await {
            Ok(before) => {
                self.effects.health.mark_up();
                self.effects.cache.record_write(key, 0);
                if let Some(leaderboard) = &self.effects.leaderboard {
                    leaderboard.remove(current_hour(), key);
                }
                // Queued here, in flush order, like the increments' events around it.
                if self.effects.events.is_enabled() {
                    self.effects.events.publish(CounterEvent {
                        kind: EventKind::Reset,
                        key: key.clone(),
                        user_id: "".into(),
                        increment: before.wrapping_neg(),
                        current_value: 0,
                        at: SystemTime::now(),
                    });
                }
                Ok(before)
            }
            Err(e) => {
                self.effects.health.record_error(&e);
                // It may have been applied: forget the cached value.
                self.effects.cache.invalidate(key);
                tracing::warn!(error = %e, "reset failed");
                Err(CounterError::from(&e))
            }
        }
    }

    async fn flush(&mut self, batch: &mut Vec<PendingIncrement>) {
        let span = if telemetry::enabled() {
            flush_span(batch)
        } else {
            Span::none()
        };
        self.flush_batch(batch).instrument(span).await;
    }

    async fn flush_batch(&mut self, batch: &mut Vec<PendingIncrement>) {
        let started = Instant::now();
        self.plan.group(batch.iter().map(|p| (&p.key, p.delta)));
        let keys = self.plan.groups.len();
        METRICS.flushes.inc();
        METRICS.flush_batch_size.observe(batch.len() as f64);
        METRICS.flush_keys.inc_by(keys as u64);
        METRICS.flush_increments.inc_by(batch.len() as u64);

        // Pass 1: one INCRBY per distinct plain key whose sum fits in i64, and one atomic
        // guarded group per key with conditional increments.
        let mut replies: Vec<Option<Result<Acknowledged, CounterError>>> =
            (0..batch.len()).map(|_| None).collect();
        let mut fast = WriteBatch {
            record_ttl: self.record_ttl,
            ..WriteBatch::default()
        };
        let mut fast_groups = Vec::with_capacity(keys);
        let mut guarded_groups = Vec::new();
        let mut retry_groups = Vec::new();
        for (g, group) in self.plan.groups.iter().enumerate() {
            if self.plan.members(g).any(|i| batch[i].is_guarded()) {
                fast.guarded.push(GuardedGroup {
                    key: &batch[group.head as usize].key,
                    items: self
                        .plan
                        .members(g)
                        .map(|i| guarded_item(&batch[i]))
                        .collect(),
                });
                guarded_groups.push(g);
                continue;
            }
            match i64::try_from(group.sum) {
                Ok(sum) => {
                    fast.increments.push((&batch[group.head as usize].key, sum));
                    fast_groups.push(g);
                }
                Err(_) => retry_groups.push(g),
            }
        }
        let mut lb_sums: Vec<(usize, i64)> = Vec::with_capacity(keys);
        match self.write(&fast).await {
            Err(e) => {
                // The pipeline may have been applied before the failure: forget cached values.
                for &(key, _) in &fast.increments {
                    self.effects.cache.invalidate(key);
                }
                for group in &fast.guarded {
                    self.effects.cache.invalidate(group.key);
                }
                self.fail_all(&e, &mut replies);
            }
            Ok(WriteOutcome {
                increments,
                guarded,
            }) => {
                for (&g, outcome) in fast_groups.iter().zip(increments) {
                    let group = &self.plan.groups[g];
                    match outcome {
                        IncrOutcome::Applied(total) => {
                            let deltas: Vec<i64> =
                                self.plan.members(g).map(|i| batch[i].delta).collect();
                            let posts = post_values(total, &deltas);
                            for (i, post) in self.plan.members(g).zip(posts) {
                                replies[i] = Some(Ok(Acknowledged::counted(post)));
                            }
                            self.effects
                                .cache
                                .record_write(&batch[group.head as usize].key, total);
                            lb_sums.push((group.head as usize, group.sum as i64));
                        }
                        IncrOutcome::Overflow => retry_groups.push(g),
                        IncrOutcome::Unavailable => {
                            self.effects
                                .cache
                                .invalidate(&batch[group.head as usize].key);
                            for i in self.plan.members(g) {
                                replies[i] = Some(Err(CounterError::Unavailable));
                            }
                        }
                        IncrOutcome::Failed(msg) => {
                            tracing::error!(key = ?batch[group.head as usize].key, error = %msg, "store rejected an increment");
                            METRICS.store_errors.with_label_values(&["rejected"]).inc();
                            for i in self.plan.members(g) {
                                replies[i] = Some(Err(CounterError::Internal));
                            }
                        }
                    }
                }
                for (&g, outcome) in guarded_groups.iter().zip(guarded) {
                    self.answer_guarded(g, outcome, batch, &mut replies, &mut lb_sums);
                }
            }
        }

        // Pass 2 (rare): overflowing plain keys, one INCRBY per request in arrival order.
        if !retry_groups.is_empty() {
            retry_groups.sort_unstable();
            let mut slow = WriteBatch::default();
            let mut slow_items = Vec::new();
            for &g in &retry_groups {
                for i in self.plan.members(g) {
                    slow.increments.push((&batch[i].key, batch[i].delta));
                    slow_items.push(i);
                }
            }
            match self.write(&slow).await {
                Err(e) => {
                    for &(key, _) in &slow.increments {
                        self.effects.cache.invalidate(key);
                    }
                    let mut sub: Vec<Option<Result<Acknowledged, CounterError>>> =
                        vec![None; slow_items.len()];
                    self.fail_all(&e, &mut sub);
                    for (&i, r) in slow_items.iter().zip(sub) {
                        replies[i] = r;
                    }
                }
                Ok(outcome) => {
                    for (&i, outcome) in slow_items.iter().zip(outcome.increments) {
                        replies[i] = Some(match outcome {
                            IncrOutcome::Applied(v) => {
                                self.effects.cache.record_write(&batch[i].key, v);
                                lb_sums.push((i, batch[i].delta));
                                Ok(Acknowledged::counted(v))
                            }
                            IncrOutcome::Overflow => Err(CounterError::Overflow),
                            IncrOutcome::Unavailable => {
                                self.effects.cache.invalidate(&batch[i].key);
                                Err(CounterError::Unavailable)
                            }
                            IncrOutcome::Failed(_) => Err(CounterError::Internal),
                        });
                    }
                }
            }
        }

        if let Some(leaderboard) = &self.effects.leaderboard {
            leaderboard.add(
                current_hour(),
                lb_sums.iter().map(|&(i, d)| (&batch[i].key, d)),
            );
        }
        METRICS
            .flush_duration
            .observe(started.elapsed().as_secs_f64());

        let mut acknowledged = 0;
        let acknowledged_at = self.effects.events.is_enabled().then(SystemTime::now);
        for (pending, reply) in batch.drain(..).zip(replies) {
            let reply = reply.unwrap_or(Err(CounterError::Internal));
            match &reply {
                Ok(ack) => {
                    acknowledged += 1;
                    // Queued in flush order, so each counter's events follow its post-values.
                    // Only a change of the count is an event: not a duplicate like, not a
                    // replayed idempotent retry.
                    if let Some(at) = acknowledged_at
                        && ack.counted
                        && !ack.replayed
                    {
                        self.effects.events.increment_acknowledged(
                            pending.key,
                            pending.delta,
                            pending.user_id,
                            ack.current_value,
                            at,
                        );
                    }
                }
                Err(e) => METRICS
                    .rejected_increments
                    .with_label_values(&[e.reason()])
                    .inc(),
            }
            // The requester may have gone away; its increment stands regardless.
            let _ = pending.reply.send(reply);
        }
        METRICS.acknowledged_increments.inc_by(acknowledged);
    }

    /// Answers the members of guarded group `g` from the store's outcome.
    fn answer_guarded(
        &self,
        g: usize,
        outcome: GroupOutcome,
        batch: &[PendingIncrement],
        replies: &mut [Option<Result<Acknowledged, CounterError>>],
        lb_sums: &mut Vec<(usize, i64)>,
    ) {
        let key = &batch[self.plan.groups[g].head as usize].key;
        match outcome {
            GroupOutcome::Done { total, items } => {
                self.effects.cache.record_write(key, total);
                let mut members = self.plan.members(g);
                for item in items {
                    let Some(i) = members.next() else { break };
                    replies[i] = Some(match item {
                        GuardedOutcome::Applied { value, counted } => {
                            if counted {
                                lb_sums.push((i, batch[i].delta));
                            }
                            Ok(Acknowledged {
                                current_value: value,
                                counted,
                                replayed: false,
                            })
                        }
                        GuardedOutcome::Replayed { value, counted } => Ok(Acknowledged {
                            current_value: value,
                            counted,
                            replayed: true,
                        }),
                        GuardedOutcome::KeyReused => Err(CounterError::IdempotencyKeyReused),
                        GuardedOutcome::Overflow => Err(CounterError::Overflow),
                        GuardedOutcome::Failed(msg) => {
                            tracing::error!(key = ?key, error = %msg, "store rejected an increment");
                            METRICS.store_errors.with_label_values(&["rejected"]).inc();
                            Err(CounterError::Internal)
                        }
                    });
                }
            }
            GroupOutcome::Unavailable => {
                self.effects.cache.invalidate(key);
                for i in self.plan.members(g) {
                    replies[i] = Some(Err(CounterError::Unavailable));
                }
            }
            GroupOutcome::Failed(msg) => {
                tracing::error!(key = ?key, error = %msg, "store rejected a guarded group");
                METRICS.store_errors.with_label_values(&["rejected"]).inc();
                self.effects.cache.invalidate(key);
                for i in self.plan.members(g) {
                    replies[i] = Some(Err(CounterError::Internal));
                }
            }
        }
    }

    async fn write(&self, batch: &WriteBatch<'_>) -> Result<WriteOutcome, StoreError> {
        METRICS
            .store_commands
            .inc_by((batch.increments.len() + batch.guarded.len()) as u64);
        let span = if telemetry::enabled() {
            tracing::info_span!(
                "store.pipeline",
                otel.kind = "client",
                db.operation.name = "INCRBY",
                db.operation.batch.size = batch.increments.len(),
                error = tracing::field::Empty,
            )
        } else {
            Span::none()
        };
        let result = self.store.write(batch).instrument(span.clone()).await;
        if let Err(e) = &result {
            span.record("error", tracing::field::display(e));
        }
        match &result {
            Ok(_) => self.effects.health.mark_up(),
            Err(e) => self.effects.health.record_error(e),
        }
        result
    }

    fn fail_all(
        &self,
        error: &StoreError,
        replies: &mut [Option<Result<Acknowledged, CounterError>>],
    ) {
        tracing::warn!(%error, "flush failed; its increments are not acknowledged");
        for r in replies.iter_mut().filter(|r| r.is_none()) {
            *r = Some(Err(CounterError::from(error)));
        }
    }
}

/// The store's view of one conditional increment.
fn guarded_item(p: &PendingIncrement) -> GuardedItem<'_> {
    GuardedItem {
        delta: p.delta,
        unique_user: p.conditions.unique_user.as_deref(),
        record: p.conditions.idempotency.as_ref().map(|r| RecordRef {
            key: &r.key,
            fingerprint: &r.fingerprint,
        }),
    }
}

/// The `coalescer.flush` span of `batch`: linked to each distinct request span it serves, and a
/// child of the first sampled one, so a sampled request's trace shows the flush that answered it.
fn flush_span(batch: &[PendingIncrement]) -> Span {
    let span = tracing::info_span!(
        "coalescer.flush",
        batch_size = batch.len(),
        links = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let links = telemetry::adopt(
        &span,
        batch.iter().filter_map(|p| p.trace.as_ref()),
        MAX_FLUSH_LINKS,
    );
    span.record("links", links);
    telemetry::record_trace_id(&span);
    span
}

/// The batch grouped by key, with arrival order kept within each key. Reused across flushes.
#[derive(Default)]
struct FlushPlan {
    hasher: RandomState,
    index: HashTable<u32>,
    groups: Vec<KeyGroup>,
    /// `next[i]` is the next item with the same key as item `i`, or `u32::MAX`.
    next: Vec<u32>,
}

struct KeyGroup {
    head: u32,
    tail: u32,
    sum: i128,
}

impl FlushPlan {
    fn group<'a>(&mut self, items: impl Iterator<Item = (&'a CounterKey, i64)>) {
        self.index.clear();
        self.groups.clear();
        self.next.clear();
        let mut keys: Vec<&CounterKey> = Vec::new();
        for (i, (key, delta)) in items.enumerate() {
            let i = i as u32;
            self.next.push(u32::MAX);
            let hash = self.hasher.hash_one(key);
            let groups = &self.groups;
            let found = self
                .index
                .find(hash, |&g| keys[groups[g as usize].head as usize] == key)
                .copied();
            keys.push(key);
            match found {
                Some(g) => {
                    let group = &mut self.groups[g as usize];
                    self.next[group.tail as usize] = i;
                    group.tail = i;
                    group.sum += i128::from(delta);
                }
                None => {
                    let g = self.groups.len() as u32;
                    self.groups.push(KeyGroup {
                        head: i,
                        tail: i,
                        sum: i128::from(delta),
                    });
                    let (groups, hasher) = (&self.groups, &self.hasher);
                    self.index.insert_unique(hash, g, |&g| {
                        hasher.hash_one(keys[groups[g as usize].head as usize])
                    });
                }
            }
        }
    }

    /// Item indices of group `g`, in arrival order.
    fn members(&self, g: usize) -> impl Iterator<Item = usize> + '_ {
        let mut at = self.groups[g].head;
        std::iter::from_fn(move || {
            if at == u32::MAX {
                return None;
            }
            let i = at;
            at = self.next[i as usize];
            Some(i as usize)
        })
    }
}

/// Each request's own post-value, given the key's total after the whole group was applied.
///
/// In arrival order, request `i` sees `total − (deltas after i)`. If that sequence would pass
/// through a value outside i64 (possible only near the range's edges with mixed signs), the
/// requests, all concurrent, are serialized in an order that stays in range instead: a positive
/// delta whenever it fits, otherwise a negative one. With |delta| ≤ 2^53 such an order exists.
pub(crate) fn post_values(total: i64, deltas: &[i64]) -> Vec<i64> {
    serialize(total, deltas).0
}

/// [`post_values`] plus the order of requests those values correspond to.
fn serialize(total: i64, deltas: &[i64]) -> (Vec<i64>, Vec<usize>) {
    let sum: i128 = deltas.iter().map(|&d| i128::from(d)).sum();
    let start = i128::from(total) - sum;
    let mut running = start;
    let mut posts = Vec::with_capacity(deltas.len());
    for &d in deltas {
        running += i128::from(d);
        match i64::try_from(running) {
            Ok(v) => posts.push(v),
            Err(_) => break,
        }
    }
    if posts.len() == deltas.len() {
        return (posts, (0..deltas.len()).collect());
    }
    let (mut pos, mut neg): (Vec<usize>, Vec<usize>) =
        (0..deltas.len()).partition(|&i| deltas[i] >= 0);
    pos.reverse();
    neg.reverse();
    let mut out = vec![0i64; deltas.len()];
    let mut order = Vec::with_capacity(deltas.len());
    let mut running = start;
    while !pos.is_empty() || !neg.is_empty() {
        let take_pos = match (pos.last(), neg.last()) {
            (Some(&p), Some(_)) => running + i128::from(deltas[p]) <= i128::from(i64::MAX),
            (Some(_), None) => true,
            _ => false,
        };
        let i = if take_pos { pos.pop() } else { neg.pop() }.expect("one side is non-empty");
        running += i128::from(deltas[i]);
        out[i] = running.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        order.push(i);
    }
    (out, order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sequential(start: i64, deltas: &[i64]) -> Option<Vec<i64>> {
        let mut v = start;
        deltas
            .iter()
            .map(|&d| {
                v = v.checked_add(d)?;
                Some(v)
            })
            .collect()
    }

    #[test]
    fn post_values_are_each_requests_own_value() {
        assert_eq!(post_values(10, &[1, 1, 1]), vec![8, 9, 10]);
        assert_eq!(post_values(0, &[5, -5]), vec![5, 0]);
    }

    #[test]
    fn near_the_edge_an_in_range_serialization_is_chosen() {
        // Starting at MAX-3: +5 first would overflow, so -5 goes first.
        let posts = post_values(i64::MAX - 3, &[5, -5]);
        assert_eq!(posts, vec![i64::MAX - 3, i64::MAX - 8]);
    }

    #[test]
    fn plan_groups_keys_in_arrival_order() {
        let (a, b) = (CounterKey::new("like", "a"), CounterKey::new("like", "b"));
        let items = [(&a, 1), (&b, 2), (&a, 3), (&a, -1), (&b, 5)];
        let mut plan = FlushPlan::default();
        plan.group(items.iter().copied());
        assert_eq!(plan.groups.len(), 2);
        assert_eq!(plan.members(0).collect::<Vec<_>>(), vec![0, 2, 3]);
        assert_eq!(plan.members(1).collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!(plan.groups[0].sum, 3);
        assert_eq!(plan.groups[1].sum, 7);
    }

    proptest! {
        #[test]
        fn coalesced_post_values_equal_sequential_application(
            start in -1_000_000i64..1_000_000, deltas in prop::collection::vec(-1_000i64..1_000, 1..64)
        ) {
            let total = start + deltas.iter().sum::<i64>();
            prop_assert_eq!(Some(post_values(total, &deltas)), sequential(start, &deltas));
        }

        #[test]
        fn edge_serializations_stay_in_range_and_reach_the_total(
            offset in 0i64..2_000, deltas in prop::collection::vec(-1_000i64..1_000, 1..64), high in any::<bool>()
        ) {
            let start = if high { i64::MAX - offset } else { i64::MIN + offset };
            let sum: i64 = deltas.iter().sum();
            prop_assume!(start.checked_add(sum).is_some());
            let total = start + sum;
            let (posts, order) = serialize(total, &deltas);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..deltas.len()).collect::<Vec<_>>());
            let mut v = start;
            for &i in &order {
                let next = v.checked_add(deltas[i]);
                prop_assert_eq!(next, Some(posts[i]), "request {} leaves the range", i);
                v = posts[i];
            }
            prop_assert_eq!(v, total);
        }
    }
}
