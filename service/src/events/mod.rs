//! Counter events to Kafka. This module owns the event schema ([`CounterEvent`], serialized as
//! the JSON of `docs/events.md`), the bounded hand-off queue between the flush and the producer
//! ([`EventSink`]), and the Kafka producer task ([`EventPublisher`]).
//!
//! The contract:
//! - The process that owns the flush (standalone, counter) publishes one event per acknowledged
//!   increment, after the store acknowledged it and in flush order, so each counter's events
//!   are queued in the order of their post-values. The gateway never publishes.
//! - [`EventSink::publish`] never blocks and never fails a request: when the queue is full (or
//!   the publisher has stopped) the event is dropped and counted in
//!   `highpress_events_dropped_total{reason}`.
//! - The producer keys every message `counter_type:resource_id` and keeps order per partition
//!   under retries (one request in flight per broker connection). An event the broker does not
//!   take within `kafka.message_timeout_ms` is dropped and counted (`broker_error`); the producer
//!   reconnects by itself, so publishing resumes when the broker returns.
//! - At shutdown, after the last flush, queued events get `kafka.flush_timeout_ms` to reach the
//!   broker; the rest are dropped and counted (`shutdown`).

mod producer;
mod source;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::domain::CounterKey;
use crate::metrics::METRICS;

pub use producer::{EventPublisher, EventTasks, EventsError};
pub use source::source_name;

/// What happened to the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// An acknowledged increment (positive or negative).
    Increment,
    /// The counter was cleared: `increment` is minus the value it had, `current_value` is 0.
    Reset,
}

/// One event, as queued. `event_id` and the RFC 3339 `timestamp` are rendered by the publisher,
/// off the request path.
#[derive(Debug, Clone)]
pub struct CounterEvent {
    pub kind: EventKind,
    pub key: CounterKey,
    pub user_id: Box<str>,
    /// The delta applied.
    pub increment: i64,
    /// The counter's value right after this event (the request's own post-value).
    pub current_value: i64,
    /// When the store acknowledged it.
    pub at: SystemTime,
}

/// Why an event was not delivered: the closed label set of `highpress_events_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The hand-off queue (or the producer's buffer) was full.
    QueueFull,
    /// The broker did not take it within `kafka.message_timeout_ms`, or refused it.
    BrokerError,
    /// The process stopped before it was delivered.
    Shutdown,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [Self::QueueFull, Self::BrokerError, Self::Shutdown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::BrokerError => "broker_error",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Events accepted but not yet settled (delivered or dropped), mirrored into the
/// `highpress_events_queued` gauge.
#[derive(Debug, Default)]
struct Backlog(AtomicI64);

impl Backlog {
    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
        METRICS.events_queued.inc();
    }

    /// `n` events left the backlog: delivered, or dropped for `reason`.
    fn settle(&self, n: i64, dropped: Option<DropReason>) {
        if n == 0 {
            return;
        }
        self.0.fetch_sub(n, Ordering::Relaxed);
        METRICS.events_queued.sub(n);
        match dropped {
            None => METRICS.events_sent.inc_by(n as u64),
            Some(reason) => count_dropped(reason, n as u64),
        }
    }
}

fn count_dropped(reason: DropReason, n: u64) {
    METRICS
        .events_dropped
        .with_label_values(&[reason.as_str()])
        .inc_by(n);
}

/// Where the counter engine hands events over. Cheap to clone; a disabled sink does nothing.
#[derive(Clone, Debug, Default)]
pub struct EventSink {
    inner: Option<SinkInner>,
}

#[derive(Clone, Debug)]
struct SinkInner {
    queue: mpsc::Sender<CounterEvent>,
    backlog: Arc<Backlog>,
}

impl EventSink {
    /// A sink that publishes nothing (`kafka.enabled: false`, and the gateway).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Whether events are published; when not, callers can skip building them.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `event` without waiting. Returns whether it was queued; a full or closed queue
    /// drops it and counts the drop.
    pub fn publish(&self, event: CounterEvent) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        match inner.queue.try_send(event) {
            Ok(()) => {
                inner.backlog.add();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                count_dropped(DropReason::QueueFull, 1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                count_dropped(DropReason::Shutdown, 1);
                false
            }
        }
    }

    /// The event of an acknowledged increment; `user_id` is `None` when the sink was disabled
    /// as the increment was queued (nothing to publish then).
    pub fn increment_acknowledged(
        &self,
        key: CounterKey,
        delta: i64,
        user_id: Option<Box<str>>,
        current_value: i64,
        at: SystemTime,
    ) {
        if let Some(user_id) = user_id {
            self.publish(CounterEvent {
                kind: EventKind::Increment,
                key,
                user_id,
                increment: delta,
                current_value,
                at,
            });
        }
    }
}

/// The JSON of one event on the wire (`docs/events.md`).
#[derive(Serialize)]
struct WireEvent<'a> {
    event_id: &'a str,
    #[serde(rename = "type")]
    kind: EventKind,
    resource_id: &'a str,
    counter_type: &'a str,
    user_id: &'a str,
    increment: i64,
    current_value: i64,
    timestamp: &'a str,
    source: &'a str,
}

/// Renders `event` into `payload` (cleared first) and its message key into `key`.
fn encode(event: &CounterEvent, source: &str, payload: &mut Vec<u8>, key: &mut String) {
    let since_epoch = event
        .at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
    ));
    let mut id_buf = uuid::Uuid::encode_buffer();
    let event_id = id.hyphenated().encode_lower(&mut id_buf);
    let timestamp = time::OffsetDateTime::from(event.at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    payload.clear();
    serde_json::to_writer(
        &mut *payload,
        &WireEvent {
            event_id,
            kind: event.kind,
            resource_id: event.key.resource_id(),
            counter_type: event.key.counter_type(),
            user_id: &event.user_id,
            increment: event.increment,
            current_value: event.current_value,
            timestamp: &timestamp,
            source,
        },
    )
    .expect("an event serializes into a Vec");
    key.clear();
    key.push_str(event.key.counter_type());
    key.push(':');
    key.push_str(event.key.resource_id());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_are_the_labels_metrics_registers() {
        let names = DropReason::ALL.map(DropReason::as_str);
        assert_eq!(names, crate::metrics::EVENT_DROP_REASONS);
    }
    use serde_json::Value;

    fn event(kind: EventKind) -> CounterEvent {
        CounterEvent {
            kind,
            key: CounterKey::new("like", "article:7"),
            user_id: "u-1".into(),
            increment: 3,
            current_value: 42,
            at: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
        }
    }

    #[test]
    fn an_event_encodes_every_documented_field_and_its_key() {
        let (mut payload, mut key) = (Vec::new(), String::new());
        encode(
            &event(EventKind::Increment),
            "pod-0",
            &mut payload,
            &mut key,
        );
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(key, "like:article:7");
        assert_eq!(v["type"], "increment");
        assert_eq!(v["resource_id"], "article:7");
        assert_eq!(v["counter_type"], "like");
        assert_eq!(v["user_id"], "u-1");
        assert_eq!(v["increment"], 3);
        assert_eq!(v["current_value"], 42);
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["source"], "pod-0");
        let id = uuid::Uuid::parse_str(v["event_id"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(v.as_object().unwrap().len(), 9);
    }

    #[test]
    fn event_ids_are_unique_and_reset_events_say_so() {
        let (mut payload, mut key) = (Vec::new(), String::new());
        let mut ids = std::collections::HashSet::new();
        for _ in 0..1000 {
            encode(&event(EventKind::Reset), "p", &mut payload, &mut key);
            let v: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(v["type"], "reset");
            assert!(ids.insert(v["event_id"].as_str().unwrap().to_string()));
        }
    }

    #[test]
    fn a_disabled_sink_queues_nothing() {
        let sink = EventSink::disabled();
        assert!(!sink.is_enabled());
        assert!(!sink.publish(event(EventKind::Increment)));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tx, _rx) = mpsc::channel(2);
        let sink = EventSink {
            inner: Some(SinkInner {
                queue: tx,
                backlog: Arc::default(),
            }),
        };
        let full = METRICS.events_dropped.with_label_values(&["queue_full"]);
        let before = full.get();
        assert!(sink.publish(event(EventKind::Increment)));
        assert!(sink.publish(event(EventKind::Increment)));
        assert!(!sink.publish(event(EventKind::Increment)));
        assert!(full.get() > before);
    }
}
