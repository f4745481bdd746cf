//! The Kafka side: a librdkafka producer (its own polling thread delivers the results) fed by
//! one task that drains the hand-off queue, renders each event and hands it to the producer.
//!
//! When the producer's buffer is full (the broker is away and `kafka.queue_capacity` events wait
//! already), the task waits for room; the hand-off queue then fills and new events are dropped at
//! [`EventSink::publish`](super::EventSink::publish), never waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Backlog, CounterEvent, DropReason, EventSink, SinkInner, encode};
use crate::config::KafkaConfig;
use crate::metrics::METRICS;

/// Why publishing could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// librdkafka refused the producer configuration built from `kafka.*`.
    #[error("kafka: cannot create the producer: {0}")]
    Producer(#[from] KafkaError),
}

/// Most events the task takes from the hand-off queue at once.
const DRAIN_BATCH: usize = 512;
/// How long the task waits before offering an event again to a full producer buffer.
const FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Receives librdkafka's delivery reports and errors on its polling thread.
struct ProducerEvents {
    backlog: Arc<Backlog>,
    /// Seconds since the Unix epoch of the last error logged at warn (at most one per
    /// [`ERROR_LOG_INTERVAL_S`]: librdkafka reports every reconnect attempt).
    last_warned: AtomicU64,
}

const ERROR_LOG_INTERVAL_S: u64 = 30;

impl ClientContext for ProducerEvents {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // Connection noise while a broker is away is counted in highpress_events_producer_errors_total;
        // librdkafka's own lines stay at debug unless they are about the client itself.
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
            tracing::warn!(%error, reason, "kafka producer error (repeats counted in highpress_events_producer_errors_total); events queue up to kafka.queue_capacity");
        } else {
            tracing::debug!(%error, reason, "kafka producer error");
        }
    }
}

impl ProducerContext for ProducerEvents {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.backlog.settle(1, None),
            Err((error, _)) => {
                let reason = match error.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight) => {
                        DropReason::Shutdown
                    }
                    _ => DropReason::BrokerError,
                };
                if reason == DropReason::BrokerError {
                    tracing::debug!(%error, "event not delivered");
                }
                self.backlog.settle(1, Some(reason));
            }
        }
    }
}

/// Starts Kafka publishing from `kafka.*`.
#[derive(Debug)]
pub struct EventPublisher;

impl EventPublisher {
    /// The sink the counter engine publishes to, and the producer task. With `kafka.enabled`
    /// false: a disabled sink and no task.
    pub fn start(
        config: &KafkaConfig,
        source: String,
    ) -> Result<(EventSink, EventTasks), EventsError> {
        if !config.enabled {
            return Ok((EventSink::disabled(), EventTasks { task: None }));
        }
        let backlog = Arc::new(Backlog::default());
        let producer: ThreadedProducer<ProducerEvents> = ClientConfig::new()
            .set("bootstrap.servers", config.brokers.join(","))
            .set("client.id", format!("highpress-{source}"))
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
            // Per-partition order under retries: one request in flight per broker connection.
            .set("max.in.flight.requests.per.connection", "1")
            .set("enable.idempotence", "false")
            .set("retry.backoff.ms", "100")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "2000")
            .set_log_level(RDKafkaLogLevel::Warning)
            .create_with_context(ProducerEvents {
                backlog: backlog.clone(),
                last_warned: AtomicU64::new(0),
            })?;
        let (queue, rx) = mpsc::channel(config.queue_capacity);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            rx,
            producer,
            Publishing {
                topic: config.topic.clone(),
                source,
                backlog: backlog.clone(),
                flush_timeout: config.flush_timeout,
            },
            stop.clone(),
        ));
        tracing::info!(brokers = %config.brokers.join(","), topic = %config.topic, "publishing counter events");
        Ok((
            EventSink {
                inner: Some(SinkInner { queue, backlog }),
            },
            EventTasks {
                task: Some((stop, task)),
            },
        ))
    }
}

/// The producer task, stopped by [`EventTasks::finish`].
#[derive(Debug)]
pub struct EventTasks {
    task: Option<(CancellationToken, JoinHandle<()>)>,
}

impl EventTasks {
    /// Call after the last flush: takes what is queued, gives it `kafka.flush_timeout_ms` to
    /// reach the broker, drops (and counts) the rest.
    pub async fn finish(self) {
        if let Some((stop, task)) = self.task {
            stop.cancel();
            let _ = task.await;
        }
    }
}

struct Publishing {
    topic: String,
    source: String,
    backlog: Arc<Backlog>,
    flush_timeout: Duration,
}

async fn run(
    mut rx: mpsc::Receiver<CounterEvent>,
    producer: ThreadedProducer<ProducerEvents>,
    publishing: Publishing,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(DRAIN_BATCH);
    let (mut payload, mut key) = (Vec::with_capacity(512), String::with_capacity(256));
    let mut deadline: Option<Instant> = None;
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, DRAIN_BATCH) => {
                if n == 0 {
                    break; // closed and drained
                }
                for event in batch.drain(..) {
                    encode(&event, &publishing.source, &mut payload, &mut key);
                    let mut record = BaseRecord::to(&publishing.topic).key(&key).payload(&payload);
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                                if stop.is_cancelled() {
                                    let at = *deadline.get_or_insert_with(|| Instant::now() + publishing.flush_timeout);
                                    if Instant::now() >= at {
                                        publishing.backlog.settle(1, Some(DropReason::Shutdown));
                                        break;
                                    }
                                }
                                record = back;
                                tokio::time::sleep(FULL_BACKOFF).await;
                            }
                            Err((error, _)) => {
                                tracing::debug!(%error, "kafka refused an event");
                                publishing.backlog.settle(1, Some(DropReason::BrokerError));
                                break;
                            }
                        }
                    }
                }
            }
            () = stop.cancelled(), if !closing => {
                // Refuse new events, then hand over what is queued.
                rx.close();
                closing = true;
                deadline.get_or_insert_with(|| Instant::now() + publishing.flush_timeout);
            }
        }
    }
    let left = deadline
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(publishing.flush_timeout);
    // Flushing and dropping the producer block (dropping purges what is left; its delivery
    // reports count those events as dropped at shutdown).
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(error) = producer.flush(left) {
            tracing::warn!(%error, in_flight = producer.in_flight_count(), "kafka.flush_timeout_ms passed with events undelivered");
        }
        drop(producer);
    })
    .await;
}
