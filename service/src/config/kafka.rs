//! Counter events to Kafka (`kafka`): the brokers, the topic, the producer, and the outbox
//! the events wait in (its partitions, its bound and what happens at the bound).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, forms};

/// Counter events published to Kafka by the process that owns the flush (standalone, counter).
/// `docs/events.md` describes the events and their delivery guarantees.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Publish one event per acknowledged increment. Off: nothing is written or connected.
    pub enabled: bool,
    /// Bootstrap brokers, `host:port`; comma-separated in the environment.
    #[serde(deserialize_with = "forms::list_or_comma_separated")]
    pub brokers: Vec<String>,
    /// The topic events are written to.
    pub topic: String,
    /// Broker acknowledgements a write waits for: `0`, `1` or `all`.
    pub acks: KafkaAcks,
    /// How long the producer waits to fill a batch (librdkafka `linger.ms`).
    #[serde(rename = "linger_ms", with = "forms::millis")]
    pub linger: Duration,
    /// Most events the producer buffers on their way to the broker (librdkafka
    /// `queue.buffering.max.messages`); the relay waits for room.
    pub queue_capacity: usize,
    /// How long the producer retries one event (librdkafka `message.timeout.ms`); 0, the
    /// default, retries until the broker takes it, so an outage of any length delivers each event
    /// once. After a finite timeout the relay produces the entry again from the outbox, which can
    /// repeat events the broker had taken without acknowledging.
    #[serde(rename = "message_timeout_ms", with = "forms::millis")]
    pub message_timeout: Duration,
    /// At shutdown, how long the relay waits for events in flight to the broker; the rest stay
    /// in the outbox for another relay.
    #[serde(rename = "flush_timeout_ms", with = "forms::millis")]
    pub flush_timeout: Duration,
    /// Partitions of the outbox. A counter's events all go to one (a hash of its key), and one
    /// relay at a time moves each partition to Kafka.
    pub outbox_partitions: u32,
    /// Most events waiting in the outbox (all partitions); at the bound,
    /// `outbox_full_policy` applies.
    pub outbox_max_len: u64,
    /// What happens to new increments while the outbox is full.
    pub outbox_full_policy: OutboxFullPolicy,
    /// How long a relay's hold on a partition lasts without renewal (it renews every second):
    /// how long a dead relay's partitions wait before another relay takes them over.
    #[serde(rename = "relay_lease_ms", with = "forms::millis")]
    pub relay_lease: Duration,
}

/// `kafka.outbox_full_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxFullPolicy {
    /// Refuse new increments with 503 `overloaded`: no acknowledged increment lacks its event.
    Reject,
    /// Take new increments and drop their events, counted in `highpress_events_dropped_total`.
    Drop,
}

impl KafkaConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.brokers.is_empty() {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                "name at least one broker when kafka.enabled is true",
            ));
        }
        if let Some(broker) = self.brokers.iter().find(|b| !forms::is_host_port(b)) {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                format!("{broker:?} is not host:port"),
            ));
        }
        // Kafka's own rule for topic names.
        let topic = &self.topic;
        if topic.is_empty()
            || topic.len() > 249
            || topic == "."
            || topic == ".."
            || !topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(ConfigError::invalid(
                "kafka.topic",
                format!("{topic:?} is not a topic name ([A-Za-z0-9._-]{{1,249}})"),
            ));
        }
        if self.linger > Duration::from_secs(900) {
            return Err(ConfigError::invalid(
                "kafka.linger_ms",
                "must be within 0..=900000",
            ));
        }
        if !(1..=10_000_000).contains(&self.queue_capacity) {
            return Err(ConfigError::invalid(
                "kafka.queue_capacity",
                "must be within 1..=10000000",
            ));
        }
        if !(1..=1024).contains(&self.outbox_partitions) {
            return Err(ConfigError::invalid(
                "kafka.outbox_partitions",
                "must be within 1..=1024",
            ));
        }
        if self.outbox_max_len == 0 {
            return Err(ConfigError::invalid(
                "kafka.outbox_max_len",
                "must be at least 1",
            ));
        }
        if self.relay_lease < Duration::from_secs(3) {
            return Err(ConfigError::invalid(
                "kafka.relay_lease_ms",
                "must be at least 3000 (the relay renews every second)",
            ));
        }
        Ok(())
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: Vec::new(),
            topic: "counter_events".into(),
            acks: KafkaAcks::All,
            linger: Duration::from_millis(5),
            queue_capacity: 100_000,
            message_timeout: Duration::ZERO,
            flush_timeout: Duration::from_secs(5),
            outbox_partitions: 8,
            outbox_max_len: 1_000_000,
            outbox_full_policy: OutboxFullPolicy::Reject,
            relay_lease: Duration::from_secs(10),
        }
    }
}

/// `kafka.acks`: how many broker acknowledgements a produced batch waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAcks {
    /// `0`: fire and forget.
    None,
    /// `1`: the partition leader.
    Leader,
    /// `all`: every in-sync replica.
    All,
}

impl KafkaAcks {
    /// The librdkafka `acks` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "0",
            Self::Leader => "1",
            Self::All => "all",
        }
    }
}

impl Serialize for KafkaAcks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KafkaAcks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t.trim().to_ascii_lowercase(),
        };
        match text.as_str() {
            "0" => Ok(Self::None),
            "1" => Ok(Self::Leader),
            "all" | "-1" => Ok(Self::All),
            other => Err(serde::de::Error::custom(format!(
                "{other:?} is not 0, 1 or all"
            ))),
        }
    }
}
