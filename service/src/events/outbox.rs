//! The flush's side of the outbox: which partition a counter's events go to, the entries one
//! flush appends (one per partition it touched), and the bound.
//!
//! The bound counts events waiting in the whole outbox: the totals the relay reads from the
//! store every [`super::relay::TICK`], plus what this process appended since. So it holds
//! across processes to within what the others appended in one tick.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use super::{CounterEvent, DropReason, encode_line, source_name};
use crate::config::{KafkaConfig, OutboxFullPolicy};
use crate::domain::CounterKey;
use crate::metrics::METRICS;
use crate::store::OutboxAppend;

/// The outbox as the flush sees it. Shared by the flusher and the relay.
#[derive(Debug)]
pub struct Outbox {
    partitions: u32,
    max_len: u64,
    policy: OutboxFullPolicy,
    source: String,
    /// Events waiting in the whole outbox, as last known.
    waiting: AtomicU64,
    /// Wakes the relay's idle partitions after an append.
    appended: Notify,
}

impl Outbox {
    pub fn new(config: &KafkaConfig) -> Self {
        Self::with_source(config, source_name())
    }

    pub fn with_source(config: &KafkaConfig, source: String) -> Self {
        METRICS
            .events_outbox_max_len
            .set(config.outbox_max_len as i64);
        Self {
            partitions: config.outbox_partitions,
            max_len: config.outbox_max_len,
            policy: config.outbox_full_policy,
            source,
            waiting: AtomicU64::new(0),
            appended: Notify::new(),
        }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition of `key`'s events: FNV-1a of the key, the same in every process and
    /// version, so a counter's events stay in one partition whoever flushes it.
    pub fn partition_of(&self, key: &CounterKey) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in key.as_str().as_bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % u64::from(self.partitions)) as u32
    }

    fn full(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) >= self.max_len
    }

    /// Whether a new increment may be taken: not while the outbox is full under the `reject`
    /// policy (it is then refused before anything is written).
    pub fn accepts_increments(&self) -> bool {
        self.policy != OutboxFullPolicy::Reject || !self.full()
    }

    /// One entry per partition that `events` touch, each holding its events in order. While
    /// the outbox is full under the `drop` policy: none, and the events are counted as dropped.
    pub fn entries(&self, events: impl IntoIterator<Item = CounterEvent>) -> Vec<OutboxAppend> {
        let mut appends: Vec<OutboxAppend> = Vec::new();
        let drop_all = self.policy == OutboxFullPolicy::Drop && self.full();
        let mut dropped = 0u64;
        for event in events {
            if drop_all {
                dropped += 1;
                continue;
            }
            let partition = self.partition_of(&event.key);
            let at = match appends.iter().position(|a| a.partition == partition) {
                Some(at) => at,
                None => {
                    appends.push(OutboxAppend {
                        partition,
                        events: 0,
                        payload: Vec::with_capacity(256),
                    });
                    appends.len() - 1
                }
            };
            let append = &mut appends[at];
            append.events += 1;
            encode_line(&event, &self.source, &mut append.payload);
        }
        if dropped > 0 {
            METRICS
                .events_dropped
                .with_label_values(&[DropReason::OutboxFull.as_str()])
                .inc_by(dropped);
        }
        appends
    }

    /// `appends` are in the store: count them as waiting and wake the relay.
    pub fn appended(&self, appends: &[OutboxAppend]) {
        let events: u64 = appends.iter().map(|a| a.events).sum();
        self.waiting.fetch_add(events, Ordering::Relaxed);
        self.appended.notify_waiters();
    }

    /// The relay read the store's totals: `waiting` events are in the outbox.
    pub(super) fn set_waiting(&self, waiting: u64) {
        self.waiting.store(waiting, Ordering::Relaxed);
    }

    /// Resolves after the next append.
    pub(super) async fn next_append(&self) {
        self.appended.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::events::EventKind;

    fn config(policy: OutboxFullPolicy) -> KafkaConfig {
        KafkaConfig {
            outbox_partitions: 4,
            outbox_max_len: 3,
            outbox_full_policy: policy,
            ..KafkaConfig::default()
        }
    }

    fn event(resource: &str, value: i64) -> CounterEvent {
        CounterEvent {
            kind: EventKind::Increment,
            key: CounterKey::new("like", resource),
            user_id: "".into(),
            increment: 1,
            current_value: value,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn a_counters_events_share_one_entry_in_order() {
        let outbox = Outbox::with_source(&config(OutboxFullPolicy::Reject), "p".into());
        let events = (1..=3).map(|v| event("a", v)).chain([event("b", 1)]);
        let appends = outbox.entries(events);
        let a = outbox.partition_of(&CounterKey::new("like", "a"));
        let entry = appends.iter().find(|e| e.partition == a).unwrap();
        let values: Vec<i64> = super::super::decode_lines(&entry.payload)
            .filter(|(k, _)| *k == b"like:a")
            .map(|(_, json)| serde_json::from_slice::<serde_json::Value>(json).unwrap())
            .map(|v| v["current_value"].as_i64().unwrap())
            .collect();
        assert_eq!(values, [1, 2, 3]);
        assert_eq!(appends.iter().map(|e| e.events).sum::<u64>(), 4);
        assert!(appends.len() <= 2);
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        let outbox = Outbox::with_source(&config(OutboxFullPolicy::Reject), "p".into());
        let used: std::collections::HashSet<u32> = (0..100)
            .map(|i| outbox.partition_of(&CounterKey::new("view", &format!("post:{i}"))))
            .collect();
        assert_eq!(used.len(), 4);
        // FNV-1a of "c:like:a" is fixed: a change here moves every counter's partition.
        assert_eq!(outbox.partition_of(&CounterKey::new("like", "a")), 2);
    }

    #[test]
    fn a_full_outbox_rejects_or_drops_by_policy() {
        let reject = Outbox::with_source(&config(OutboxFullPolicy::Reject), "p".into());
        assert!(reject.accepts_increments());
        let appends = reject.entries((1..=3).map(|v| event("a", v)));
        reject.appended(&appends);
        assert!(!reject.accepts_increments());
        reject.set_waiting(2);
        assert!(reject.accepts_increments());

        let drop = Outbox::with_source(&config(OutboxFullPolicy::Drop), "p".into());
        drop.set_waiting(3);
        assert!(drop.accepts_increments());
        let dropped = METRICS.events_dropped.with_label_values(&["outbox_full"]);
        let before = dropped.get();
        assert!(drop.entries([event("a", 1), event("b", 1)]).is_empty());
        assert!(dropped.get() >= before + 2);
    }
}
