//! Counter events to Kafka, through an outbox. This module owns the event schema
//! ([`CounterEvent`], serialized as the JSON of `docs/events.md`), the outbox the flush writes
//! them to ([`Outbox`]) and the relay that moves them from the outbox to Kafka ([`Relay`]).
//!
//! The contract:
//! - The process that owns the flush (standalone, counter) appends the events of a flush's
//!   acknowledged increments to the outbox in the store (a Redis Stream per partition, one
//!   entry per partition the flush touched) *before* it answers any of them. A failed append
//!   answers the flush's increments 503 `unavailable` (outcome unknown), so every acknowledged
//!   increment has its event in the store. The gateway never publishes.
//! - A counter's events go to one partition (a hash of its key), in the order of its
//!   post-values; one relay at a time holds a partition (a lease in the store) and produces
//!   its entries in order with Kafka's idempotent producer, then trims them. A relay that dies
//!   leaves its lease to expire, and another takes the partition over from where it was
//!   trimmed: events produced but not yet trimmed are produced again (the only duplicates).
//! - The outbox is bounded (`kafka.outbox_max_len` events): when it is full, new increments
//!   are refused (`overloaded`) or, by choice, their events are dropped and counted.

mod outbox;
mod relay;
mod source;

use std::time::SystemTime;

use serde::Serialize;

use crate::domain::CounterKey;

pub use outbox::Outbox;
pub use relay::{EventsError, Relay, RelayTask};
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

/// One event, before it is written to the outbox (where it gets its `event_id`).
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
    /// The outbox was full and `kafka.outbox_full_policy` is `drop`.
    OutboxFull,
}

impl DropReason {
    pub const ALL: [DropReason; 1] = [Self::OutboxFull];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutboxFull => "outbox_full",
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

/// Appends `event` to `out` as one outbox line: its message key (`counter_type:resource_id`,
/// which holds no space), a space, its JSON (which holds no newline), a newline. The
/// `event_id` is drawn here, once, so a relay that produces the line again repeats it.
fn encode_line(event: &CounterEvent, source: &str, out: &mut Vec<u8>) {
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
    out.extend_from_slice(event.key.counter_type().as_bytes());
    out.push(b':');
    out.extend_from_slice(event.key.resource_id().as_bytes());
    out.push(b' ');
    serde_json::to_writer(
        &mut *out,
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
    out.push(b'\n');
}

/// The message key and JSON payload of each line of an outbox entry.
fn decode_lines(payload: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    payload
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.iter().position(|&b| b == b' ') {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (&[][..], line),
        })
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

    fn one(event: &CounterEvent) -> (String, Value) {
        let mut out = Vec::new();
        encode_line(event, "pod-0", &mut out);
        let lines: Vec<_> = decode_lines(&out).collect();
        assert_eq!(lines.len(), 1);
        let (key, json) = lines[0];
        (
            String::from_utf8(key.to_vec()).unwrap(),
            serde_json::from_slice(json).unwrap(),
        )
    }

    #[test]
    fn an_event_encodes_every_documented_field_and_its_key() {
        let (key, v) = one(&event(EventKind::Increment));
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
        let mut ids = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (_, v) = one(&event(EventKind::Reset));
            assert_eq!(v["type"], "reset");
            assert!(ids.insert(v["event_id"].as_str().unwrap().to_string()));
        }
    }

    #[test]
    fn lines_survive_user_ids_with_spaces_and_newlines() {
        let mut e = event(EventKind::Increment);
        e.user_id = "a b\nc".into();
        let mut out = Vec::new();
        encode_line(&e, "p", &mut out);
        encode_line(&event(EventKind::Reset), "p", &mut out);
        let lines: Vec<_> = decode_lines(&out).collect();
        assert_eq!(lines.len(), 2);
        let v: Value = serde_json::from_slice(lines[0].1).unwrap();
        assert_eq!(v["user_id"], "a b\nc");
        assert_eq!(lines[1].0, b"like:article:7");
    }
}
