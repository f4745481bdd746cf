//! Group commit. Increments wait in a bounded queue; one flusher drains everything queued while
//! the previous flush was in flight (smart batching: no timer, so batches are small at low load
//! and large at high load), sums the deltas per key, writes them in one pipelined round trip and
//! answers every waiter only after the store acknowledged, each with its own exact post-value.
//!
//! A flush runs in four stages:
//! 1. **plan**: [`FlushPlan`] groups the batch by key and emits the [`WriteBatch`] with a
//!    [`Slots`] map from each of its entries back to the requests it answers;
//! 2. **write**: one store round trip;
//! 3. **answer**: the pure [`answer`] turns the store's outcome into one reply per request and
//!    the [`Applied`] record of what changed;
//! 4. **effects**: [`FlushEffects::apply`] updates the read cache, the leaderboards and the
//!    metrics from that record; when events are on, the events of the acknowledged changes are
//!    appended to the outbox (a second round trip; if it fails, those increments are answered
//!    `unavailable`); then the waiters get their replies.
//!
//! A key whose sum overflows is retried once as one `INCRBY` per request in arrival order (a
//! second plan, write and answer), so exactly the requests that would overflow get
//! [`CounterError::Overflow`] and nothing is written for them; other keys are unaffected.
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
//! runs in a `coalescer.flush` span, the child of the first sampled caller span it served and
//! linked to every other one, and each store round trip gets a `store.pipeline` child span.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hashbrown::{DefaultHashBuilder, HashTable};
use opentelemetry::trace::SpanContext;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::cache::ReadCache;
use super::health::StoreHealth;
use super::leaderboard::LeaderboardAccumulator;
use super::{Acknowledged, CounterError};
use crate::domain::current_hour;
use crate::events::{CounterEvent, EventKind, Outbox};
use crate::metrics::METRICS;
use crate::store::{
    Conditions, CounterKey, GroupOutcome, GuardedGroup, GuardedItem, GuardedOutcome, IncrOutcome,
    Store, StoreError, WriteBatch, WriteOutcome,
};
use crate::telemetry;

/// One request's answer.
type Reply = Result<Acknowledged, CounterError>;

/// One increment waiting for a flush.
struct PendingIncrement {
    key: CounterKey,
    delta: i64,
    reply: oneshot::Sender<Reply>,
    /// What only some increments carry, behind one box so that the usual increment stays
    /// small: it is moved several times between the handler and the flusher.
    extra: Option<Box<PendingExtra>>,
}

struct PendingExtra {
    conditions: Conditions,
    /// The span of the request this increment belongs to, when tracing is enabled.
    trace: Option<SpanContext>,
    /// The requester, kept only when events are on (for the increment's event).
    user_id: Option<Box<str>>,
}

/// The conditions of an increment without any.
static NO_CONDITIONS: Conditions = Conditions {
    unique_user: None,
    idempotency: None,
};

impl PendingIncrement {
    fn new(
        key: CounterKey,
        delta: i64,
        reply: oneshot::Sender<Reply>,
        conditions: Conditions,
        trace: Option<SpanContext>,
        user_id: Option<Box<str>>,
    ) -> Self {
        let extra = (!conditions.is_empty() || trace.is_some() || user_id.is_some()).then(|| {
            Box::new(PendingExtra {
                conditions,
                trace,
                user_id,
            })
        });
        Self {
            key,
            delta,
            reply,
            extra,
        }
    }

    fn conditions(&self) -> &Conditions {
        self.extra
            .as_ref()
            .map_or(&NO_CONDITIONS, |e| &e.conditions)
    }

    fn trace(&self) -> Option<&SpanContext> {
        self.extra.as_ref().and_then(|e| e.trace.as_ref())
    }

    fn user_id(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.user_id.as_deref())
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

/// What a flush updates besides the counters: the read cache, the leaderboard accumulator (when
/// leaderboards are enabled), store health and, when events are on, the outbox.
pub struct FlushEffects {
    pub cache: ReadCache,
    pub leaderboard: Option<LeaderboardAccumulator>,
    pub health: Arc<StoreHealth>,
    pub outbox: Option<Arc<Outbox>>,
}

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
    ) -> Reply {
        let (reply, answer) = oneshot::channel();
        let trace = telemetry::enabled().then(|| telemetry::span_context(&Span::current()));
        self.enqueue(Pending::Increment(PendingIncrement::new(
            key, delta, reply, conditions, trace, user_id,
        )))?;
        // A dropped reply means the increment was never flushed: not applied, not acknowledged.
        answer.await.unwrap_or(Err(CounterError::ShuttingDown))
    }

    /// Queues a reset of `key` behind the increments already queued and waits for the value
    /// the counter had.
    pub async fn reset(&self, key: CounterKey) -> Result<i64, CounterError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(Pending::Reset { key, reply })?;
        answer.await.unwrap_or(Err(CounterError::ShuttingDown))
    }

    fn enqueue(&self, pending: Pending) -> Result<(), CounterError> {
        self.queue.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CounterError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => CounterError::ShuttingDown,
        })
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
    /// With events on, the reset is answered once its event is in the outbox.
    async fn reset(&self, key: &CounterKey) -> Result<i64, CounterError> {
        let result = self.store.reset(key).await;
        self.effects.reset(key, &result);
        let before = result.map_err(|e| CounterError::from(&e))?;
        let event = CounterEvent {
            kind: EventKind::Reset,
            key: key.clone(),
            user_id: "".into(),
            increment: before.wrapping_neg(),
            current_value: 0,
            at: SystemTime::now(),
        };
        self.append_events([event]).await?;
        Ok(before)
    }

    /// Writes `events` to the outbox (nothing when events are off, or the outbox is full
    /// under the `drop` policy).
    async fn append_events(
        &self,
        events: impl IntoIterator<Item = CounterEvent>,
    ) -> Result<(), CounterError> {
        let Some(outbox) = &self.effects.outbox else {
            return Ok(());
        };
        let appends = outbox.entries(events);
        if appends.is_empty() {
            return Ok(());
        }
        METRICS.store_commands.inc_by(appends.len() as u64);
        match self.store.outbox_append(&appends).await {
            Ok(()) => {
                outbox.appended(&appends);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "events outbox write failed; the flush's changes are not acknowledged");
                self.effects.health.record_error(&e);
                Err(CounterError::from(&e))
            }
        }
    }

    /// The events of a flush's acknowledged changes (not a repeated like, not a replayed
    /// retry) go to the outbox before anyone is answered. If they cannot, those increments are
    /// answered with the error: applied, but without their events, so their outcome is unknown
    /// to the caller, as for a failure in transit.
    async fn append_flush_events(&self, batch: &[PendingIncrement], replies: &mut [Option<Reply>]) {
        if self.effects.outbox.is_none() {
            return;
        }
        let at = SystemTime::now();
        let with_event =
            |reply: &Option<Reply>| matches!(reply, Some(Ok(ack)) if ack.counted && !ack.replayed);
        let events = batch
            .iter()
            .zip(replies.iter())
            .filter(|(_, r)| with_event(r))
            .map(|(p, r)| CounterEvent {
                kind: EventKind::Increment,
                key: p.key.clone(),
                user_id: p.user_id().map(Box::from).unwrap_or_default(),
                increment: p.delta,
                current_value: r
                    .as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .map_or(0, |a| a.current_value),
                at,
            });
        if let Err(e) = self.append_events(events).await {
            for reply in replies.iter_mut().filter(|r| with_event(r)) {
                *reply = Some(Err(e.clone()));
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

    /// The four stages: plan, write, answer (twice when a sum overflowed), effects.
    async fn flush_batch(&mut self, batch: &mut Vec<PendingIncrement>) {
        let started = Instant::now();
        self.plan.group(
            batch
                .iter()
                .map(|p| (&p.key, p.delta, p.conditions().is_empty())),
        );
        METRICS.flushes.inc();
        METRICS.flush_batch_size.observe(batch.len() as f64);
        METRICS.flush_keys.inc_by(self.plan.groups.len() as u64);
        METRICS.flush_increments.inc_by(batch.len() as u64);

        let mut answers = Answers::new(batch.len());
        let (write, slots) = self.plan.write(batch, self.record_ttl, &mut answers.retry);
        let outcome = self.write(&write).await;
        answer(&self.plan, &slots, outcome, &mut answers);

        if !answers.retry.is_empty() {
            let (write, slots) = self.plan.retry_write(batch, &mut answers.retry);
            let outcome = self.write(&write).await;
            answer(&self.plan, &slots, outcome, &mut answers);
        }

        self.effects.apply(batch, &answers.applied);
        self.append_flush_events(batch, &mut answers.replies).await;
        METRICS
            .flush_duration
            .observe(started.elapsed().as_secs_f64());
        self.effects.deliver(batch.drain(..), answers.replies);
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
                db.operation.batch.size = batch.increments.len() as i64,
                error.message = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        } else {
            Span::none()
        };
        let result = self.store.write(batch).instrument(span.clone()).await;
        match &result {
            Ok(_) => self.effects.health.mark_up(),
            Err(e) => {
                span.record("error.message", tracing::field::display(e));
                telemetry::mark_error(&span);
                self.effects.health.record_error(e);
            }
        }
        result
    }
}

impl FlushEffects {
    /// Effects of a flush's writes, before its waiters are answered: values into the read
    /// cache (unknown ones out of it), deltas to the leaderboards, rejections to the log.
    fn apply(&self, batch: &[PendingIncrement], applied: &Applied) {
        for error in &applied.failures {
            tracing::warn!(%error, "flush failed; its increments are not acknowledged");
        }
        for (i, message) in &applied.rejected {
            tracing::error!(key = ?batch[*i].key, error = %message, "store rejected an increment");
            METRICS.store_errors.with_label_values(&["rejected"]).inc();
        }
        for &(i, value) in &applied.values {
            self.cache.record_write(&batch[i].key, value);
        }
        // After the values: a key with one request applied and a later one in doubt is unknown.
        for &i in &applied.unknown {
            self.cache.invalidate(&batch[i].key);
        }
        if let Some(leaderboard) = &self.leaderboard {
            leaderboard.add(
                current_hour(),
                applied
                    .ranked
                    .iter()
                    .map(|&(i, d, v)| (&batch[i].key, d, v)),
            );
        }
    }

    /// Answers every waiter of a flush.
    fn deliver(&self, batch: impl Iterator<Item = PendingIncrement>, replies: Vec<Option<Reply>>) {
        let mut acknowledged = 0;
        for (pending, reply) in batch.zip(replies) {
            let reply = reply.unwrap_or(Err(CounterError::Internal));
            match &reply {
                Ok(_) => acknowledged += 1,
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

    /// Effects of a reset, answered or failed.
    fn reset(&self, key: &CounterKey, result: &Result<i64, StoreError>) {
        match result {
            Ok(_) => {
                self.health.mark_up();
                self.cache.record_write(key, 0);
                if let Some(leaderboard) = &self.leaderboard {
                    leaderboard.remove(current_hour(), key);
                }
            }
            Err(e) => {
                self.health.record_error(e);
                // It may have been applied: forget the cached value.
                self.cache.invalidate(key);
                tracing::warn!(error = %e, "reset failed");
            }
        }
    }
}

/// The `coalescer.flush` span of `batch`: a child of the first sampled request span it serves, so
/// a sampled request's trace shows the flush that answered it, and linked to each other one.
fn flush_span(batch: &[PendingIncrement]) -> Span {
    let span = tracing::info_span!(
        "coalescer.flush",
        batch_size = batch.len() as i64,
        links = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let links = telemetry::adopt(
        &span,
        batch.iter().filter_map(|p| p.trace()),
        MAX_FLUSH_LINKS,
    );
    span.record("links", links as i64);
    telemetry::record_trace_id(&span);
    span
}

/// The batch grouped by key, with arrival order kept within each key. Reused across flushes.
#[derive(Default)]
struct FlushPlan {
    hasher: DefaultHashBuilder,
    index: HashTable<u32>,
    groups: Vec<KeyGroup>,
    /// `next[i]` is the next item with the same key as item `i`, or `u32::MAX`.
    next: Vec<u32>,
    deltas: Vec<i64>,
}

struct KeyGroup {
    head: u32,
    tail: u32,
    sum: i128,
    /// Whether any member carries conditions: the group is written as one guarded unit.
    guarded: bool,
}

/// Where the answers of one [`WriteBatch`] go, entry by entry.
#[derive(Debug, Default)]
struct Slots {
    /// Per `increments` entry: the key group whose sum it writes, or the one request it writes.
    increments: Vec<Slot>,
    /// Per `guarded` entry: its key group.
    guarded: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Group(u32),
    Request(u32),
}

/// A flush's answers so far: one reply per request, what was applied, and what to retry.
struct Answers {
    replies: Vec<Option<Reply>>,
    applied: Applied,
    /// Plain key groups to write again one request at a time (their sum left the i64 range).
    retry: Vec<u32>,
}

impl Answers {
    fn new(requests: usize) -> Self {
        Self {
            replies: (0..requests).map(|_| None).collect(),
            applied: Applied::default(),
            retry: Vec::new(),
        }
    }
}

/// What a flush's writes changed, by request index: the input of [`FlushEffects::apply`].
#[derive(Debug, Default)]
struct Applied {
    /// The value of the request's key after the flush.
    values: Vec<(usize, i64)>,
    /// Requests whose key's value is unknown now (the write may or may not have happened).
    unknown: Vec<usize>,
    /// Deltas that counted, for the leaderboards, with the key's value after them.
    ranked: Vec<(usize, i64, i64)>,
    /// The store refused the request's key: its message.
    rejected: Vec<(usize, String)>,
    /// Writes that failed as a whole.
    failures: Vec<StoreError>,
}

impl FlushPlan {
    /// Groups items `(key, delta, plain)` by key.
    fn group<'a>(&mut self, items: impl Iterator<Item = (&'a CounterKey, i64, bool)>) {
        self.index.clear();
        self.groups.clear();
        self.next.clear();
        self.deltas.clear();
        let mut keys: Vec<&CounterKey> = Vec::with_capacity(items.size_hint().0);
        for (i, (key, delta, plain)) in items.enumerate() {
            let i = i as u32;
            self.next.push(u32::MAX);
            self.deltas.push(delta);
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
                    group.guarded |= !plain;
                }
                None => {
                    let g = self.groups.len() as u32;
                    self.groups.push(KeyGroup {
                        head: i,
                        tail: i,
                        sum: i128::from(delta),
                        guarded: !plain,
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
    fn members(&self, g: u32) -> impl Iterator<Item = usize> + '_ {
        let mut at = self.groups[g as usize].head;
        std::iter::from_fn(move || {
            if at == u32::MAX {
                return None;
            }
            let i = at;
            at = self.next[i as usize];
            Some(i as usize)
        })
    }

    /// The flush's write: one `INCRBY` per plain key whose sum fits in i64, and one atomic
    /// guarded group per key with conditional increments. Plain keys whose sum does not fit go
    /// to `retry`.
    fn write<'a>(
        &self,
        batch: &'a [PendingIncrement],
        record_ttl: Duration,
        retry: &mut Vec<u32>,
    ) -> (WriteBatch<'a>, Slots) {
        let mut write = WriteBatch {
            record_ttl,
            ..WriteBatch::default()
        };
        let mut slots = Slots::default();
        for (g, group) in self.groups.iter().enumerate() {
            let g = g as u32;
            let key = &batch[group.head as usize].key;
            if group.guarded {
                write.guarded.push(GuardedGroup {
                    key,
                    items: self
                        .members(g)
                        .map(|i| GuardedItem {
                            delta: batch[i].delta,
                            conditions: batch[i].conditions(),
                        })
                        .collect(),
                });
                slots.guarded.push(g);
            } else if let Ok(sum) = i64::try_from(group.sum) {
                write.increments.push((key, sum));
                slots.increments.push(Slot::Group(g));
            } else {
                retry.push(g);
            }
        }
        (write, slots)
    }

    /// The rare second write: one `INCRBY` per request of the `retry` groups, in arrival order.
    fn retry_write<'a>(
        &self,
        batch: &'a [PendingIncrement],
        retry: &mut Vec<u32>,
    ) -> (WriteBatch<'a>, Slots) {
        retry.sort_unstable();
        let mut write = WriteBatch::default();
        let mut slots = Slots::default();
        for g in retry.drain(..) {
            for i in self.members(g) {
                write.increments.push((&batch[i].key, batch[i].delta));
                slots.increments.push(Slot::Request(i as u32));
            }
        }
        (write, slots)
    }
}

/// The answer stage: turns the store's `outcome` of the write mapped by `slots` into replies,
/// the [`Applied`] record and the groups to retry. Pure: no store, no effects.
fn answer(
    plan: &FlushPlan,
    slots: &Slots,
    outcome: Result<WriteOutcome, StoreError>,
    answers: &mut Answers,
) {
    let Answers {
        replies,
        applied,
        retry,
    } = answers;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            // The write may have been applied before the failure: every value is unknown.
            let reply = CounterError::from(&error);
            for slot in slots.increments.iter().copied() {
                match slot {
                    Slot::Group(g) => {
                        applied.unknown.push(plan.groups[g as usize].head as usize);
                        plan.members(g)
                            .for_each(|i| replies[i] = Some(Err(reply.clone())));
                    }
                    Slot::Request(i) => {
                        applied.unknown.push(i as usize);
                        replies[i as usize] = Some(Err(reply.clone()));
                    }
                }
            }
            for &g in &slots.guarded {
                applied.unknown.push(plan.groups[g as usize].head as usize);
                plan.members(g)
                    .for_each(|i| replies[i] = Some(Err(reply.clone())));
            }
            applied.failures.push(error);
            return;
        }
    };
    for (&slot, result) in slots.increments.iter().zip(outcome.increments) {
        match slot {
            Slot::Group(g) => {
                let head = plan.groups[g as usize].head as usize;
                match result {
                    IncrOutcome::Applied(total) => {
                        answer_group(plan, g, total, replies);
                        applied.values.push((head, total));
                        applied
                            .ranked
                            .push((head, plan.groups[g as usize].sum as i64, total));
                    }
                    IncrOutcome::Overflow => retry.push(g),
                    IncrOutcome::Unavailable => {
                        applied.unknown.push(head);
                        let failed = Err(CounterError::Unavailable);
                        plan.members(g)
                            .for_each(|i| replies[i] = Some(failed.clone()));
                    }
                    IncrOutcome::Failed(message) => {
                        applied.rejected.push((head, message));
                        let failed = Err(CounterError::Internal);
                        plan.members(g)
                            .for_each(|i| replies[i] = Some(failed.clone()));
                    }
                }
            }
            Slot::Request(i) => {
                let i = i as usize;
                replies[i] = Some(match result {
                    IncrOutcome::Applied(value) => {
                        applied.values.push((i, value));
                        applied.ranked.push((i, plan.deltas[i], value));
                        Ok(Acknowledged::counted(value))
                    }
                    IncrOutcome::Overflow => Err(CounterError::Overflow),
                    IncrOutcome::Unavailable => {
                        applied.unknown.push(i);
                        Err(CounterError::Unavailable)
                    }
                    IncrOutcome::Failed(message) => {
                        applied.rejected.push((i, message));
                        Err(CounterError::Internal)
                    }
                });
            }
        }
    }
    for (&g, result) in slots.guarded.iter().zip(outcome.guarded) {
        answer_guarded(plan, g, result, replies, applied);
    }
}

/// The answers of guarded group `g`, item by item.
fn answer_guarded(
    plan: &FlushPlan,
    g: u32,
    outcome: GroupOutcome,
    replies: &mut [Option<Reply>],
    applied: &mut Applied,
) {
    let head = plan.groups[g as usize].head as usize;
    let (total, items) = match outcome {
        GroupOutcome::Done { total, items } => (total, items),
        GroupOutcome::Unavailable => {
            applied.unknown.push(head);
            let failed = Err(CounterError::Unavailable);
            plan.members(g)
                .for_each(|i| replies[i] = Some(failed.clone()));
            return;
        }
        GroupOutcome::Failed(message) => {
            applied.rejected.push((head, message));
            applied.unknown.push(head);
            let failed = Err(CounterError::Internal);
            plan.members(g)
                .for_each(|i| replies[i] = Some(failed.clone()));
            return;
        }
    };
    applied.values.push((head, total));
    for (i, item) in plan.members(g).zip(items) {
        replies[i] = Some(match item {
            GuardedOutcome::Applied { value, counted } => {
                if counted {
                    applied.ranked.push((i, plan.deltas[i], value));
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
            GuardedOutcome::Failed(message) => {
                applied.rejected.push((i, message));
                Err(CounterError::Internal)
            }
        });
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

/// Answers the requests of plain group `g`, whose key is now at `total`, each with its own
/// post-value ([`post_values`]). Where the running values stay in the i64 range (always, but
/// near the range's edges), they are written in one pass without allocating.
fn answer_group(plan: &FlushPlan, g: u32, total: i64, replies: &mut [Option<Reply>]) {
    let start = i128::from(total) - plan.groups[g as usize].sum;
    let mut running = start;
    let in_range = plan.members(g).all(|i| {
        running += i128::from(plan.deltas[i]);
        i64::try_from(running).is_ok()
    });
    if in_range {
        let mut running = start;
        for i in plan.members(g) {
            running += i128::from(plan.deltas[i]);
            replies[i] = Some(Ok(Acknowledged::counted(running as i64)));
        }
        return;
    }
    let deltas: Vec<i64> = plan.members(g).map(|i| plan.deltas[i]).collect();
    for (i, post) in plan.members(g).zip(post_values(total, &deltas)) {
        replies[i] = Some(Ok(Acknowledged::counted(post)));
    }
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
        plan.group(items.iter().map(|&(k, d)| (k, d, true)));
        assert_eq!(plan.groups.len(), 2);
        assert_eq!(plan.members(0).collect::<Vec<_>>(), vec![0, 2, 3]);
        assert_eq!(plan.members(1).collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!(plan.groups[0].sum, 3);
        assert_eq!(plan.groups[1].sum, 7);
    }

    /// A plan of plain items over keys named by the letters of `keys`.
    fn plain_plan(items: &[(&str, i64)]) -> FlushPlan {
        let keys: Vec<CounterKey> = items
            .iter()
            .map(|(k, _)| CounterKey::new("like", k))
            .collect();
        let mut plan = FlushPlan::default();
        plan.group(keys.iter().zip(items).map(|(k, &(_, d))| (k, d, true)));
        plan
    }

    fn replies(answers: &Answers) -> Vec<Reply> {
        answers
            .replies
            .iter()
            .map(|r| r.clone().expect("answered"))
            .collect()
    }

    fn pending(resource: &str, delta: i64, conditions: Conditions) -> PendingIncrement {
        PendingIncrement::new(
            CounterKey::new("like", resource),
            delta,
            oneshot::channel().0,
            conditions,
            None,
            None,
        )
    }

    #[test]
    fn the_plan_sums_plain_keys_guards_conditional_ones_and_defers_overflowing_sums() {
        let keyed = || Conditions {
            unique_user: None,
            idempotency: Some(crate::store::IdempotencyRecord {
                key: "k".into(),
                fingerprint: "00".into(),
            }),
        };
        let batch = vec![
            pending("a", 2, Conditions::default()),
            pending("b", 1, Conditions::default()),
            pending("a", 3, Conditions::default()),
            pending("b", 1, keyed()),
            pending("c", i64::MAX, Conditions::default()),
            pending("c", 1, Conditions::default()),
        ];
        let mut plan = FlushPlan::default();
        plan.group(
            batch
                .iter()
                .map(|p| (&p.key, p.delta, p.conditions().is_empty())),
        );
        let mut retry = Vec::new();
        let (write, slots) = plan.write(&batch, Duration::from_secs(9), &mut retry);
        assert_eq!(write.increments, vec![(&batch[0].key, 5)]);
        assert!(matches!(slots.increments[..], [Slot::Group(0)]));
        assert_eq!(write.guarded.len(), 1);
        assert_eq!(write.guarded[0].key, &batch[1].key);
        let deltas: Vec<i64> = write.guarded[0].items.iter().map(|i| i.delta).collect();
        assert_eq!(
            deltas,
            vec![1, 1],
            "the whole key goes guarded, in arrival order"
        );
        assert_eq!(slots.guarded, vec![1]);
        assert_eq!(write.record_ttl, Duration::from_secs(9));
        assert_eq!(retry, vec![2]);

        let (again, slots) = plan.retry_write(&batch, &mut retry);
        assert_eq!(
            again.increments,
            vec![(&batch[4].key, i64::MAX), (&batch[5].key, 1)]
        );
        assert!(matches!(
            slots.increments[..],
            [Slot::Request(4), Slot::Request(5)]
        ));
        assert!(retry.is_empty());
    }

    #[test]
    fn answer_gives_each_request_its_post_value_and_records_the_effects() {
        let plan = plain_plan(&[("a", 1), ("b", 2), ("a", 3)]);
        let slots = Slots {
            increments: vec![Slot::Group(0), Slot::Group(1)],
            guarded: vec![],
        };
        let outcome = WriteOutcome {
            increments: vec![IncrOutcome::Applied(14), IncrOutcome::Unavailable],
            guarded: vec![],
        };
        let mut answers = Answers::new(3);
        answer(&plan, &slots, Ok(outcome), &mut answers);
        assert_eq!(
            replies(&answers),
            vec![
                Ok(Acknowledged::counted(11)),
                Err(CounterError::Unavailable),
                Ok(Acknowledged::counted(14)),
            ]
        );
        assert_eq!(answers.applied.values, vec![(0, 14)]);
        assert_eq!(answers.applied.ranked, vec![(0, 4, 14)]);
        assert_eq!(answers.applied.unknown, vec![1]);
        assert!(answers.retry.is_empty());
    }

    #[test]
    fn a_group_near_the_edge_of_the_range_is_answered_in_an_order_that_stays_in_it() {
        let plan = plain_plan(&[("a", 5), ("a", -5)]);
        let slots = Slots {
            increments: vec![Slot::Group(0)],
            guarded: vec![],
        };
        let outcome = WriteOutcome {
            increments: vec![IncrOutcome::Applied(i64::MAX - 3)],
            guarded: vec![],
        };
        let mut answers = Answers::new(2);
        answer(&plan, &slots, Ok(outcome), &mut answers);
        // In arrival order the +5 would see MAX + 2; the -5 goes first instead.
        assert_eq!(
            replies(&answers),
            vec![
                Ok(Acknowledged::counted(i64::MAX - 3)),
                Ok(Acknowledged::counted(i64::MAX - 8)),
            ]
        );
    }

    #[test]
    fn an_overflowing_sum_is_retried_request_by_request() {
        let plan = plain_plan(&[("a", 5), ("a", -2)]);
        let first = Slots {
            increments: vec![Slot::Group(0)],
            guarded: vec![],
        };
        let mut answers = Answers::new(2);
        let overflow = WriteOutcome {
            increments: vec![IncrOutcome::Overflow],
            guarded: vec![],
        };
        answer(&plan, &first, Ok(overflow), &mut answers);
        assert_eq!(answers.retry, vec![0]);
        assert!(
            answers.replies.iter().all(Option::is_none),
            "nothing answered yet"
        );

        let second = Slots {
            increments: vec![Slot::Request(0), Slot::Request(1)],
            guarded: vec![],
        };
        let one_by_one = WriteOutcome {
            increments: vec![IncrOutcome::Overflow, IncrOutcome::Applied(i64::MAX - 2)],
            guarded: vec![],
        };
        answer(&plan, &second, Ok(one_by_one), &mut answers);
        assert_eq!(
            replies(&answers),
            vec![
                Err(CounterError::Overflow),
                Ok(Acknowledged::counted(i64::MAX - 2))
            ]
        );
        assert_eq!(answers.applied.values, vec![(1, i64::MAX - 2)]);
        assert_eq!(answers.applied.ranked, vec![(1, -2, i64::MAX - 2)]);
    }

    #[test]
    fn a_failed_write_fails_its_requests_and_forgets_their_values() {
        let plan = plain_plan(&[("a", 1), ("b", 1), ("b", 1)]);
        let slots = Slots {
            increments: vec![Slot::Group(0)],
            guarded: vec![1],
        };
        let mut answers = Answers::new(3);
        let error = StoreError::Unavailable("connection reset".into());
        answer(&plan, &slots, Err(error), &mut answers);
        assert_eq!(replies(&answers), vec![Err(CounterError::Unavailable); 3]);
        assert_eq!(answers.applied.unknown, vec![0, 1]);
        assert!(answers.applied.values.is_empty() && answers.applied.ranked.is_empty());
        assert_eq!(answers.applied.failures.len(), 1);
    }

    #[test]
    fn guarded_items_are_answered_item_by_item() {
        let plan = plain_plan(&[("a", 1), ("a", 1), ("a", 1), ("a", -1)]);
        let slots = Slots {
            increments: vec![],
            guarded: vec![0],
        };
        let outcome = WriteOutcome {
            increments: vec![],
            guarded: vec![GroupOutcome::Done {
                total: 7,
                items: vec![
                    GuardedOutcome::Applied {
                        value: 7,
                        counted: true,
                    },
                    GuardedOutcome::Replayed {
                        value: 7,
                        counted: true,
                    },
                    GuardedOutcome::KeyReused,
                    // The store answered one item fewer than asked: that request is not
                    // acknowledged.
                ],
            }],
        };
        let mut answers = Answers::new(4);
        answer(&plan, &slots, Ok(outcome), &mut answers);
        assert_eq!(
            answers.replies,
            vec![
                Some(Ok(Acknowledged::counted(7))),
                Some(Ok(Acknowledged {
                    current_value: 7,
                    counted: true,
                    replayed: true
                })),
                Some(Err(CounterError::IdempotencyKeyReused)),
                None,
            ]
        );
        assert_eq!(answers.applied.values, vec![(0, 7)]);
        assert_eq!(
            answers.applied.ranked,
            vec![(0, 1, 7)],
            "only what counted now is ranked"
        );
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
