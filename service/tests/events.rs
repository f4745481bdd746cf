//! Counter events against a real Kafka-protocol broker (tansu, in-memory storage, on a free
//! loopback port), consumed with a real Kafka consumer:
//!
//! - N acknowledged increments give exactly N events, each counter's in order of its
//!   post-values, with every documented field; in both topologies (standalone, and a gateway in
//!   front of two counters, where the counters publish);
//! - a broker killed under load: counting goes on with no request error and exact totals, the
//!   lost events are counted, and publishing resumes by itself when the broker is back.
//!
//! A missing `tansu` or `redis-server` fails the test (scripts/install-test-deps.sh); nothing is
//! skipped. No timing assertions: every wait is bounded polling.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use highpress::gateway::rendezvous::{KeyHash, NodeHash, ranking};
use serde_json::{Value, json};
use support::{ConsumedEvent, EventCollector, Highpress, Tansu, Topology, metric, post_json};

const TOPIC: &str = "counter_events";
const PARTITIONS: i32 = 3;

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn increment_as(
    hp: &Highpress,
    resource_id: &str,
    user_id: &str,
    delta: i64,
) -> (u16, Value) {
    post_json(
        &hp.url("/api/v1/counter/increment"),
        &json!({"resource_id": resource_id, "counter_type": "like", "user_id": user_id, "increment": delta}),
    )
    .await
}

/// The sum of `name` over every process that runs the engine.
async fn engine_metric(hp: &Highpress, name: &str) -> u64 {
    let mut total = 0;
    for url in hp.engine_metrics_urls() {
        total += metric(&url, name).await;
    }
    total
}

async fn dropped(hp: &Highpress, reason: &str) -> u64 {
    engine_metric(
        hp,
        &format!(r#"highpress_events_dropped_total{{reason="{reason}"}}"#),
    )
    .await
}

/// Waits (bounded) until `done` returns true.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not reached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_event_fields(c: &ConsumedEvent, source: &str) {
    let e = &c.event;
    let obj = e
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {e}"));
    for field in [
        "event_id",
        "type",
        "resource_id",
        "counter_type",
        "user_id",
        "increment",
        "current_value",
        "timestamp",
        "source",
    ] {
        assert!(obj.contains_key(field), "{field} missing: {e}");
    }
    let id = e["event_id"].as_str().expect("event_id");
    assert_eq!(id.len(), 36, "{e}");
    assert_eq!(&id[14..15], "7", "event_id is not a UUID v7: {e}");
    assert_eq!(e["type"], "increment", "{e}");
    assert_eq!(e["counter_type"], "like", "{e}");
    assert_eq!(
        c.key,
        format!("like:{}", e["resource_id"].as_str().expect("resource_id")),
        "message key"
    );
    assert!(
        e["increment"].is_i64() && e["current_value"].is_i64(),
        "{e}"
    );
    let ts = e["timestamp"].as_str().expect("timestamp");
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|err| panic!("timestamp {ts} is not RFC 3339: {err}"));
    assert_eq!(e["source"], source, "{e}");
}

/// N +1 increments from concurrent clients (several per counter) give exactly N events, each
/// counter's with strictly increasing post-values 1..=n in partition order.
async fn exactly_one_event_per_acknowledged_increment_in_order(topology: Topology) {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, PARTITIONS).await;
    let mut env = broker.env(TOPIC);
    env.push(("POD_NAME".into(), "events-under-test".into()));
    let hp = Arc::new(Highpress::start(topology, &env_refs(&env)).await);
    let collector = EventCollector::start(&broker, TOPIC, PARTITIONS);

    const COUNTERS: usize = 6;
    const CLIENTS_PER_COUNTER: usize = 3;
    const PER_CLIENT: usize = 40;
    let mut tasks = Vec::new();
    for counter in 0..COUNTERS {
        for client in 0..CLIENTS_PER_COUNTER {
            let hp = hp.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("ev-{counter}");
                let mut sent = Vec::new();
                for i in 0..PER_CLIENT {
                    let user = format!("user-{client}-{i}");
                    let (s, body) = increment_as(&hp, &id, &user, 1).await;
                    assert_eq!(s, 200, "{body}");
                    sent.push((
                        id.clone(),
                        user,
                        body["data"]["current_value"].as_i64().unwrap(),
                    ));
                }
                sent
            }));
        }
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.expect("client task"));
    }
    let n = COUNTERS * CLIENTS_PER_COUNTER * PER_CLIENT;
    assert_eq!(acknowledged.len(), n);

    // The producer reports exactly N delivered, none dropped; the consumer then sees N.
    let hpr: &Highpress = &hp;
    eventually(
        "every event acknowledged by the broker",
        move || async move { engine_metric(hpr, "highpress_events_sent_total").await >= n as u64 },
    )
    .await;
    assert_eq!(
        engine_metric(&hp, "highpress_events_sent_total").await,
        n as u64
    );
    for reason in ["queue_full", "broker_error", "shutdown"] {
        assert_eq!(dropped(&hp, reason).await, 0, "{reason}");
    }
    collector
        .wait_until("N events consumed", |e| e.len() >= n)
        .await;
    let events = collector.events();
    assert_eq!(
        events.len(),
        n,
        "exactly one event per acknowledged increment"
    );

    // Every field, and the same (counter, user, post-value) triples the API answered.
    let mut ids = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut per_key: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for c in &events {
        assert_event_fields(c, "events-under-test");
        assert_eq!(c.event["increment"], 1);
        assert!(
            ids.insert(c.event["event_id"].as_str().unwrap().to_string()),
            "duplicate event_id"
        );
        let resource = c.event["resource_id"].as_str().unwrap().to_string();
        let value = c.event["current_value"].as_i64().unwrap();
        seen.insert((
            resource.clone(),
            c.event["user_id"].as_str().unwrap().to_string(),
            value,
        ));
        per_key
            .entry(resource)
            .or_default()
            .push((c.partition, value));
    }
    let answered: BTreeSet<(String, String, i64)> = acknowledged.into_iter().collect();
    assert_eq!(
        seen, answered,
        "events carry each request's own user and post-value"
    );

    // Per counter: one partition, post-values strictly increasing, exactly 1..=n.
    assert_eq!(per_key.len(), COUNTERS);
    for (key, values) in &per_key {
        let partitions: BTreeSet<i32> = values.iter().map(|(p, _)| *p).collect();
        assert_eq!(partitions.len(), 1, "{key}: one partition per counter");
        let values: Vec<i64> = values.iter().map(|(_, v)| *v).collect();
        let expected: Vec<i64> = (1..=(CLIENTS_PER_COUNTER * PER_CLIENT) as i64).collect();
        assert_eq!(values, expected, "{key}: events out of order or missing");
    }
    if topology == Topology::Split {
        // The counters publish, each the events of the keys it owns; the gateway never does.
        let gateway_sent = metric(&hp.url("/metrics"), "highpress_events_sent_total").await;
        assert_eq!(gateway_sent, 0);
        let nodes: Vec<NodeHash> = hp
            .counters
            .iter()
            .map(|c| NodeHash::of(&c.grpc_addr()))
            .collect();
        let mut owned = vec![0usize; nodes.len()];
        for counter in 0..COUNTERS {
            owned[ranking(&nodes, KeyHash::of(&format!("c:like:ev-{counter}")))[0]] += 1;
        }
        for (c, keys) in hp.counters.iter().zip(owned) {
            let sent = metric(&c.metrics_url(), "highpress_events_sent_total").await;
            assert_eq!(
                sent > 0,
                keys > 0,
                "{}: owns {keys} of the keys and published {sent} events",
                c.metrics_url()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_publishes_one_event_per_acknowledged_increment_in_order() {
    exactly_one_event_per_acknowledged_increment_in_order(Topology::StandaloneRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_counters_publish_one_event_per_acknowledged_increment_in_order() {
    exactly_one_event_per_acknowledged_increment_in_order(Topology::Split).await;
}

/// Load until `stop`: +1 increments round-robin over `keys`; every answer must be 200.
async fn load(
    hp: Arc<Highpress>,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<Vec<AtomicU64>>,
) -> u64 {
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let k = i % keys.len();
        let (s, body) = increment_as(&hp, &keys[k], "loader", 1).await;
        assert_eq!(s, 200, "a request failed while Kafka was away: {body}");
        acked[k].fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
    i as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_broker_costs_events_not_counts_and_publishing_resumes_when_it_returns() {
    let mut broker = Tansu::start();
    broker.create_topic(TOPIC, PARTITIONS).await;
    let mut env = broker.env(TOPIC);
    // A small queue and a short delivery timeout, so the outage drops (and counts) events soon.
    env.push(("HIGHPRESS_KAFKA__QUEUE_CAPACITY".into(), "200".into()));
    env.push(("HIGHPRESS_KAFKA__MESSAGE_TIMEOUT_MS".into(), "2000".into()));
    let hp_shared = Arc::new(Highpress::start(Topology::StandaloneRedis, &env_refs(&env)).await);
    let keys: Vec<String> = (0..4).map(|i| format!("outage-{i}")).collect();
    let acked: Arc<Vec<AtomicU64>> = Arc::new(keys.iter().map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(load(
                hp_shared.clone(),
                keys.clone(),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();

    // Publishing works before the outage.
    let hpr: &Highpress = &hp_shared;
    eventually("events delivered before the outage", move || async move {
        engine_metric(hpr, "highpress_events_sent_total").await > 0
    })
    .await;

    broker.kill();
    eventually(
        "events dropped and counted while the broker is away",
        move || async move {
            dropped(hpr, "queue_full").await + dropped(hpr, "broker_error").await > 0
                && engine_metric(hpr, "highpress_events_producer_errors_total").await > 0
        },
    )
    .await;

    // Back on the same port (empty: in-memory storage), with the topic created again.
    broker.restart();
    broker.create_topic(TOPIC, PARTITIONS).await;
    let high_water: Vec<i64> = acked
        .iter()
        .map(|a| a.load(Ordering::Relaxed) as i64)
        .collect();
    let sent_at_restart = engine_metric(&hp_shared, "highpress_events_sent_total").await;
    let collector = EventCollector::start(&broker, TOPIC, PARTITIONS);
    collector
        .wait_until(
            "an event of an increment made after the restart",
            |events| {
                events.iter().any(|c| {
                    let k = keys
                        .iter()
                        .position(|k| c.event["resource_id"] == k.as_str());
                    k.is_some_and(|k| {
                        c.event["current_value"].as_i64().unwrap_or(0) > high_water[k]
                    })
                })
            },
        )
        .await;
    eventually("the sent count grows again", move || async move {
        engine_metric(hpr, "highpress_events_sent_total").await > sent_at_restart
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let mut requests = 0;
    for l in loaders {
        requests += l.await.expect("load task");
    }
    // Consistency: no request failed, and Redis holds exactly what was acknowledged.
    let total_acked: u64 = acked.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    assert_eq!(requests, total_acked);
    let mut hp = Arc::try_unwrap(hp_shared).unwrap_or_else(|_| panic!("loaders finished"));
    for (k, key) in keys.iter().enumerate() {
        let stored = hp.redis().get_i64(&format!("c:like:{key}"));
        assert_eq!(stored, acked[k].load(Ordering::Relaxed) as i64, "{key}");
        assert_eq!(hp.value(key, "like").await, stored, "{key}");
    }
}

/// Only changes of a count are events: a repeated like of a unique-per-user type and a replayed
/// `Idempotency-Key` retry publish nothing, and a reset publishes a `reset` event, in order
/// after the increments before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_and_replays_publish_nothing_and_a_reset_publishes_its_event() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, PARTITIONS).await;
    let mut env = broker.env(TOPIC);
    env.push(("POD_NAME".into(), "events-policies".into()));
    env.push((
        "HIGHPRESS_COUNTER_TYPES__LIKE__UNIQUE_PER_USER".into(),
        "true".into(),
    ));
    env.push(("HIGHPRESS_API__ALLOW_RESET".into(), "true".into()));
    let hp = Highpress::start(Topology::StandaloneRedis, &env_refs(&env)).await;
    let collector = EventCollector::start(&broker, TOPIC, PARTITIONS);

    // u1 likes twice (the second counts nothing), u2 likes once.
    for user in ["u1", "u1", "u2"] {
        let (s, body) = increment_as(&hp, "article-p", user, 1).await;
        assert_eq!(s, 200, "{body}");
    }
    // u3 likes with an Idempotency-Key, then retries it: one event.
    let url = hp.url("/api/v1/counter/increment");
    let body = json!({"resource_id": "article-p", "counter_type": "like", "user_id": "u3", "increment": 1});
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = support::client()
            .post(&url)
            .header("Idempotency-Key", "like-u3-article-p")
            .json(&body)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 200);
        let value: Value = response.json().await.expect("JSON");
        answers.push(value["data"]["current_value"].as_i64().expect("a value"));
    }
    assert_eq!(answers, [3, 3], "the retry replays the first answer");
    let reset = support::client()
        .delete(hp.url("/api/v1/counter/article-p/like"))
        .send()
        .await
        .expect("request sent");
    assert_eq!(reset.status().as_u16(), 200);

    collector
        .wait_until("the three likes and the reset", |e| e.len() >= 4)
        .await;
    let hpr: &Highpress = &hp;
    eventually("every event delivered", move || async move {
        engine_metric(hpr, "highpress_events_sent_total").await >= 4
    })
    .await;
    let events = collector.events();
    let summary: Vec<(String, String, i64, i64)> = events
        .iter()
        .map(|c| {
            (
                c.event["type"].as_str().unwrap_or_default().to_owned(),
                c.event["user_id"].as_str().unwrap_or_default().to_owned(),
                c.event["increment"].as_i64().unwrap_or_default(),
                c.event["current_value"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("increment".to_owned(), "u1".to_owned(), 1, 1),
            ("increment".to_owned(), "u2".to_owned(), 1, 2),
            ("increment".to_owned(), "u3".to_owned(), 1, 3),
            ("reset".to_owned(), String::new(), -3, 0),
        ],
        "one event per change of the count, in order"
    );
    assert_eq!(engine_metric(&hp, "highpress_events_sent_total").await, 4);
}
