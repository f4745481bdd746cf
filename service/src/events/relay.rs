//! The relay: moves events from the outbox to Kafka, in every process that flushes
//! (standalone, counter).
//!
//! Every [`TICK`] the relay reads the outbox's totals (for the bound and the metrics) and asks
//! for the lease of each partition: it keeps the ones it holds and takes free ones. One task per
//! held partition reads its entries in order, hands every event to Kafka's idempotent producer
//! (which keeps their order per Kafka partition, across retries), waits until the broker has
//! acknowledged all of them, and only then trims them from the outbox. A partition whose relay
//! died is free once its lease expires (`kafka.relay_lease_ms`), and the next relay starts from
//! the first untrimmed entry, so what the dead relay produced but had not trimmed is produced
//! again: the only duplicates, which consumers drop by `event_id`.
//!
//! A relay stops producing a partition as soon as it cannot renew the lease within its time
//! (Redis unreachable, or another relay took it), so two relays never produce the same
//! partition at once while their clocks agree within the margin.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Outbox, decode_lines};
use crate::config::{KafkaAcks, KafkaConfig};
use crate::metrics::METRICS;
use crate::store::Store;

/// How often the relay renews its leases, takes free partitions and reads the totals.
pub const TICK: Duration = Duration::from_secs(1);
/// Entries one partition task reads at a time (each holds one flush's events of the partition).
const READ_ENTRIES: usize = 64;
/// How long an idle partition task waits before looking again, unless an append wakes it.
const IDLE: Duration = Duration::from_millis(50);
/// How long a partition task waits after a failed read or delivery.
const BACKOFF: Duration = Duration::from_millis(500);
/// How long the producer's buffer is given to make room.
const FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Why relaying could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// librdkafka refused the producer configuration built from `kafka.*`.
    #[error("kafka: cannot create the producer: {0}")]
    Producer(#[from] KafkaError),
}

/// Counts the Kafka client's errors; logs one in [`ERROR_LOG_INTERVAL_S`] at warn.
struct RelayContext {
    last_warned: AtomicU64,
}

const ERROR_LOG_INTERVAL_S: u64 = 30;

impl ClientContext for RelayContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(facility, message, "librdkafka")
            }
            _ => tracing::debug!(facility, message, "librdkafka"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        METRICS.events_producer_errors.inc();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_warned.load(Ordering::Relaxed);
        if now >= last + ERROR_LOG_INTERVAL_S
            && self
                .last_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, reason, "kafka producer error (repeats counted in highpress_events_producer_errors_total); events wait in the outbox");
        } else {
            tracing::debug!(%error, reason, "kafka producer error");
        }
    }
}

/// Starts relaying from `kafka.*`.
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// Starts the relay of `outbox` over `store`. `name` identifies this process among the
    /// relays (in the leases and the logs).
    pub fn start<S: Store>(
        store: Arc<S>,
        outbox: Arc<Outbox>,
        config: &KafkaConfig,
        name: String,
    ) -> Result<RelayTask, EventsError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", config.brokers.join(","))
            .set("client.id", format!("highpress-{name}"))
            .set("acks", config.acks.as_str())
            .set("linger.ms", config.linger.as_millis().to_string())
            .set(
                "queue.buffering.max.messages",
                config.queue_capacity.to_string(),
            )
            .set(
                "message.timeout.ms",
                config.message_timeout.as_millis().to_string(),
            )
            .set("retry.backoff.ms", "100")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "2000")
            .set_log_level(RDKafkaLogLevel::Warning);
        if config.acks == KafkaAcks::All {
            // Order per partition and no duplicate from the producer's own retries.
            client.set("enable.idempotence", "true");
        } else {
            // Idempotence needs acks=all; order then needs one request in flight.
            client
                .set("enable.idempotence", "false")
                .set("max.in.flight.requests.per.connection", "1");
        }
        let producer: FutureProducer<RelayContext> = client.create_with_context(RelayContext {
            last_warned: AtomicU64::new(0),
        })?;
        let owner = format!("{name}/{}", uuid::Uuid::now_v7().simple());
        let shared = Arc::new(Shared {
            store,
            outbox,
            producer,
            topic: config.topic.clone(),
            owner,
            lease: config.relay_lease,
            flush_timeout: config.flush_timeout,
            started: Instant::now(),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(shared, stop.clone()));
        tracing::info!(brokers = %config.brokers.join(","), topic = %config.topic, "relaying counter events from the outbox");
        Ok(RelayTask { stop, task })
    }
}

/// The running relay, stopped by [`RelayTask::finish`].
#[derive(Debug)]
pub struct RelayTask {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RelayTask {
    /// Call after the last flush: in-flight deliveries get `kafka.flush_timeout_ms`, then the
    /// leases are given up, so another relay takes the partitions over at once. Events not yet
    /// delivered stay in the outbox.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Shared<S> {
    store: Arc<S>,
    outbox: Arc<Outbox>,
    producer: FutureProducer<RelayContext>,
    topic: String,
    owner: String,
    lease: Duration,
    flush_timeout: Duration,
    started: Instant,
}

impl<S> Shared<S> {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A partition this relay holds: until when its lease is certainly still ours, when its oldest
/// unrelayed entry was written (Unix ms; 0 when none is known), and its task.
struct Held {
    valid_until_ms: Arc<AtomicU64>,
    oldest_ms: Arc<AtomicU64>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn run<S: Store>(shared: Arc<Shared<S>>, stop: CancellationToken) {
    let partitions = shared.outbox.partitions();
    let mut held: HashMap<u32, Held> = HashMap::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => break,
        }
        held.retain(|_, h| !h.task.is_finished());
        let asked_ms = shared.now_ms();
        let leases = join_all(
            (0..partitions).map(|p| shared.store.outbox_lease(p, &shared.owner, shared.lease)),
        )
        .await;
        // Certainly ours until the lease, counted from before we asked, less a margin for
        // clocks that run apart.
        let valid_until_ms = asked_ms + (shared.lease.as_millis() as u64) * 3 / 4;
        for (p, lease) in (0..partitions).zip(leases) {
            match (held.get(&p), lease) {
                (Some(h), Ok(true)) => h.valid_until_ms.store(valid_until_ms, Ordering::Relaxed),
                (Some(h), Ok(false)) => {
                    tracing::warn!(
                        partition = p,
                        "another relay holds this outbox partition now"
                    );
                    h.stop.cancel();
                }
                (Some(_), Err(e)) => {
                    tracing::debug!(partition = p, error = %e, "cannot renew the outbox lease")
                }
                (None, Ok(true)) => {
                    tracing::info!(partition = p, "relaying outbox partition");
                    held.insert(p, spawn_partition(&shared, p, valid_until_ms));
                }
                (None, _) => {}
            }
        }
        if let Ok(totals) = shared.store.outbox_totals(partitions).await {
            shared
                .outbox
                .set_waiting(totals.iter().map(|t| t.waiting()).sum());
            let mine: u64 = held.keys().map(|&p| totals[p as usize].waiting()).sum();
            METRICS.events_queued.set(mine as i64);
        }
        let now = unix_ms();
        let lag = held
            .values()
            .map(|h| h.oldest_ms.load(Ordering::Relaxed))
            .filter(|&oldest| oldest > 0)
            .map(|oldest| now.saturating_sub(oldest))
            .max()
            .unwrap_or(0);
        METRICS.events_relay_lag.set(lag as f64 / 1000.0);
        METRICS.events_relay_partitions.set(held.len() as i64);
    }
    for h in held.values() {
        h.stop.cancel();
    }
    for (p, h) in held.drain() {
        let _ = h.task.await;
        let _ = shared
            .store
            .outbox_lease(p, &shared.owner, Duration::ZERO)
            .await;
    }
    METRICS.events_relay_partitions.set(0);
}

fn spawn_partition<S: Store>(shared: &Arc<Shared<S>>, partition: u32, valid_until_ms: u64) -> Held {
    let valid_until_ms = Arc::new(AtomicU64::new(valid_until_ms));
    let oldest_ms = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay_partition(
        shared.clone(),
        partition,
        valid_until_ms.clone(),
        oldest_ms.clone(),
        stop.clone(),
    ));
    Held {
        valid_until_ms,
        oldest_ms,
        stop,
        task,
    }
}

/// Relays one partition while the lease is ours: read, produce, wait for the broker, trim.
async fn relay_partition<S: Store>(
    shared: Arc<Shared<S>>,
    partition: u32,
    valid_until_ms: Arc<AtomicU64>,
    oldest_ms: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let store = &shared.store;
    // The last entry relayed; `None`: start from the first untrimmed one.
    let mut after: Option<String> = None;
    while !stop.is_cancelled() {
        if shared.now_ms() >= valid_until_ms.load(Ordering::Relaxed) {
            tracing::warn!(
                partition,
                "outbox lease not renewed in time; relaying stops"
            );
            break;
        }
        let entries = match store
            .outbox_read(partition, after.as_deref(), READ_ENTRIES)
            .await
        {
            Ok(entries) => entries,
            Err(e) => {
                tracing::debug!(partition, error = %e, "cannot read the outbox");
                pause(&stop, BACKOFF).await;
                continue;
            }
        };
        let Some(last) = entries.last() else {
            oldest_ms.store(0, Ordering::Relaxed);
            tokio::select! {
                () = shared.outbox.next_append() => {}
                () = tokio::time::sleep(IDLE) => {}
                () = stop.cancelled() => {}
            }
            continue;
        };
        oldest_ms.store(written_ms(&entries[0].id), Ordering::Relaxed);
        let mut deliveries = Vec::new();
        let mut refused = None;
        'produce: for entry in &entries {
            for (key, payload) in decode_lines(&entry.payload) {
                let mut record = FutureRecord::to(&shared.topic).key(key).payload(payload);
                loop {
                    match shared.producer.send_result(record) {
                        Ok(delivery) => {
                            deliveries.push(delivery);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            tokio::time::sleep(FULL_BACKOFF).await;
                        }
                        Err((error, _)) => {
                            refused = Some(error.to_string());
                            break 'produce;
                        }
                    }
                }
            }
        }
        let sent = deliveries.len() as u64;
        let all = join_all(deliveries);
        let outcomes = tokio::select! {
            outcomes = all => Some(outcomes),
            () = async {
                stop.cancelled().await;
                tokio::time::sleep(shared.flush_timeout).await;
            } => None,
        };
        let Some(outcomes) = outcomes else {
            tracing::warn!(
                partition,
                "kafka.flush_timeout_ms passed with events undelivered; they stay in the outbox"
            );
            break;
        };
        let failed = outcomes
            .iter()
            .find_map(|o| match o {
                Ok(Ok(_)) => None,
                Ok(Err((e, _))) => Some(e.to_string()),
                Err(_) => Some("delivery canceled".into()),
            })
            .or(refused);
        if let Some(error) = failed {
            // Start these entries over: what was delivered of them is produced again.
            tracing::warn!(partition, %error, "events not delivered; relaying them again from the outbox");
            pause(&stop, BACKOFF).await;
            continue;
        }
        METRICS.events_sent.inc_by(sent);
        // A failed trim is made good by the next one: a trim removes everything up to its id.
        if let Err(e) = store.outbox_trim(partition, &last.id, last.total).await {
            tracing::debug!(partition, error = %e, "cannot trim the outbox");
        }
        after = Some(last.id.clone());
    }
}

async fn pause(stop: &CancellationToken, how_long: Duration) {
    tokio::select! {
        () = tokio::time::sleep(how_long) => {}
        () = stop.cancelled() => {}
    }
}

/// When an outbox entry was written, from the milliseconds in its id (`<ms>-<seq>`; 0 if it has
/// none, as in the embedded store, whose ids count from 0).
fn written_ms(id: &str) -> u64 {
    id.split_once('-')
        .and_then(|(ms, _)| ms.parse::<u64>().ok())
        .unwrap_or(0)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
