//! Counter events against a real Apache Kafka broker (one KRaft node on free loopback ports,
//! started per test), consumed with a real Kafka consumer. Each flush writes its events to the
//! outbox in Redis before it answers, and a relay moves them to Kafka:
//!
//! - N acknowledged increments give exactly N events, each counter's in order of its
//!   post-values, with every documented field; standalone on Redis and on Redis Cluster (where
//!   the outbox partitions spread over the masters), and a gateway in front of two counters
//!   (where the counters relay); the outbox is empty afterwards;
//! - **broker outage**: the broker stopped for 30 s under load, then started again: no request
//!   fails, and afterwards the distinct `event_id`s in the topic are exactly the acknowledged
//!   increments, per counter, in order, each with the `current_value` its request was answered;
//! - **counter killed**: the counter that relays the outbox is SIGKILLed while events wait in
//!   it; the other counter takes its partitions over and every acknowledged increment's event
//!   arrives, in order (duplicates are counted and must be copies of one event);
//! - **Redis restarted** (AOF) with events still in the outbox: they are delivered afterwards;
//! - **bound reached**: with `outbox_full_policy: reject` increments past the bound get 503 and
//!   write nothing, and are taken again once the outbox drains; with `drop` they are counted
//!   and their events dropped and counted;
//! - only changes of a count are events (a repeated like, a replayed retry publish nothing), and
//!   a reset publishes its event in order.
//!
//! The tests run one at a time (each starts a JVM). A missing Apache Kafka, `java` or
//! `redis-server` fails the test (scripts/install-test-deps.sh); nothing is skipped. No timing
//! assertions: every wait is bounded polling.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{ConsumedEvent, EventCollector, Highpress, Kafka, Topology, metric, post_json};

const TOPIC: &str = "counter_events";
const PARTITIONS: i32 = 3;

/// One broker (a JVM) at a time: the tests take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

async fn dropped(hp: &Highpress) -> u64 {
    engine_metric(
        hp,
        r#"highpress_events_dropped_total{reason="outbox_full"}"#,
    )
    .await
}

/// Waits (bounded by 90 s) until `done` returns true.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, done: impl FnMut() -> F) {
    support::eventually(what, Duration::from_secs(90), done).await;
}

/// Events waiting in the outbox, read from Redis: appended minus relayed, every partition.
fn outbox_waiting(hp: &mut Highpress) -> i64 {
    (0..8)
        .map(|p| {
            let appended = hp.redis().get_i64(&format!("outbox:{{{p}}}:appended"));
            appended - hp.redis().get_i64(&format!("outbox:{{{p}}}:relayed"))
        })
        .sum()
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
    let _turn = ONE_AT_A_TIME.lock().await;
    let broker = Kafka::start();
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

    // The relay reports exactly N delivered, none dropped; the consumer then sees N.
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
    assert_eq!(dropped(&hp).await, 0);
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
    let mut hp = Arc::try_unwrap(hp).unwrap_or_else(|_| panic!("clients finished"));
    if topology == Topology::Split {
        // The counters relay; the gateway never publishes.
        let gateway_sent = metric(&hp.url("/metrics"), "highpress_events_sent_total").await;
        assert_eq!(gateway_sent, 0);
    }
    // Delivered events leave the outbox.
    let hpr: &Highpress = &hp;
    eventually("the outbox drained", move || async move {
        engine_metric(hpr, "highpress_events_queued").await == 0
    })
    .await;
    if let Some(cluster) = &hp.cluster {
        // The partitions spread over the masters, and every one is empty.
        let masters: BTreeSet<usize> = (0..8)
            .filter_map(|p| cluster.master_of(&format!("outbox:{{{p}}}")))
            .collect();
        assert!(masters.len() > 1, "every outbox partition on one master");
        for p in 0..8 {
            let appended = cluster.get_i64(&format!("outbox:{{{p}}}:appended"));
            assert_eq!(
                appended,
                cluster.get_i64(&format!("outbox:{{{p}}}:relayed")),
                "partition {p}"
            );
        }
    } else {
        assert_eq!(outbox_waiting(&mut hp), 0);
        for p in 0..8 {
            let len = hp.redis().cmd(&["XLEN", &format!("outbox:{{{p}}}")]);
            assert_eq!(len.trim(), "0", "outbox partition {p} still holds entries");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_publishes_one_event_per_acknowledged_increment_in_order() {
    exactly_one_event_per_acknowledged_increment_in_order(Topology::StandaloneRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_on_redis_cluster_publishes_one_event_per_acknowledged_increment_in_order() {
    exactly_one_event_per_acknowledged_increment_in_order(Topology::StandaloneCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_counters_publish_one_event_per_acknowledged_increment_in_order() {
    exactly_one_event_per_acknowledged_increment_in_order(Topology::Split).await;
}

/// What a load saw: per key, the post-values of its acknowledged increments and how many
/// increments were sent; and the statuses other than 200.
#[derive(Default)]
struct Answers {
    acknowledged: HashMap<String, Vec<i64>>,
    attempted: HashMap<String, u64>,
    failures: BTreeMap<u16, u64>,
}

/// +1 increments round-robin over `keys` from `workers` clients until `stop`, each answer
/// recorded.
fn start_load(
    hp: &Highpress,
    keys: &[String],
    workers: usize,
    stop: &Arc<AtomicBool>,
    answers: &Arc<Mutex<Answers>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let url = hp.url("/api/v1/counter/increment");
    (0..workers)
        .map(|w| {
            let (url, keys, stop, answers) =
                (url.clone(), keys.to_vec(), stop.clone(), answers.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[i % keys.len()];
                    i += 1;
                    let body = json!({"resource_id": key, "counter_type": "like", "user_id": "loader", "increment": 1});
                    *answers
                        .lock()
                        .unwrap()
                        .attempted
                        .entry(key.clone())
                        .or_default() += 1;
                    let (status, answer) = post_json(&url, &body).await;
                    let failed = {
                        let mut answers = answers.lock().unwrap();
                        if status == 200 {
                            let value = answer["data"]["current_value"].as_i64().expect("a value");
                            answers
                                .acknowledged
                                .entry(key.clone())
                                .or_default()
                                .push(value);
                        } else {
                            *answers.failures.entry(status).or_default() += 1;
                        }
                        status != 200
                    };
                    if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect()
}

/// Every acknowledged increment has its event: per key, the distinct events (by `event_id`, in
/// topic order) carry strictly increasing post-values that include every acknowledged one and
/// number at most the increments attempted; with `exact`, they are exactly the acknowledged
/// ones. Copies of one `event_id` must be identical. Returns how many copies there were.
fn check_events(events: &[ConsumedEvent], answers: &Answers, exact: bool) -> usize {
    let mut first: HashMap<String, &Value> = HashMap::new();
    let mut per_key: HashMap<String, Vec<i64>> = HashMap::new();
    let mut copies = 0;
    for c in events {
        let id = c.event["event_id"].as_str().expect("event_id").to_string();
        if let Some(earlier) = first.get(&id) {
            assert_eq!(*earlier, &c.event, "two different events share an event_id");
            copies += 1;
            continue;
        }
        first.insert(id, &c.event);
        let resource = c.event["resource_id"].as_str().expect("resource_id");
        per_key
            .entry(resource.to_string())
            .or_default()
            .push(c.event["current_value"].as_i64().expect("current_value"));
    }
    for (key, acknowledged) in &answers.acknowledged {
        let values = per_key.get(key).cloned().unwrap_or_default();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "{key}: events out of order: {values:?}"
        );
        let delivered: BTreeSet<i64> = values.iter().copied().collect();
        let missing: Vec<i64> = acknowledged
            .iter()
            .filter(|v| !delivered.contains(v))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "{key}: {} acknowledged increments have no event, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert!(
            values.len() as u64 <= answers.attempted[key],
            "{key}: more events than increments"
        );
        if exact {
            let mut acknowledged = acknowledged.clone();
            acknowledged.sort_unstable();
            assert_eq!(
                values, acknowledged,
                "{key}: events are not exactly the acknowledged increments"
            );
        }
    }
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_of_30_s_delays_events_and_loses_none() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut broker = Kafka::start();
    broker.create_topic(TOPIC, PARTITIONS).await;
    let hp = Highpress::start(Topology::StandaloneRedis, &env_refs(&broker.env(TOPIC))).await;
    let collector = EventCollector::start(&broker, TOPIC, PARTITIONS);
    let keys: Vec<String> = (0..8).map(|i| format!("outage-{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Answers::default()));
    let load = start_load(&hp, &keys, 4, &stop, &answers);

    let hpr = &hp;
    eventually("events delivered before the outage", move || async move {
        engine_metric(hpr, "highpress_events_sent_total").await > 0
    })
    .await;
    broker.stop();
    let stopped = Instant::now();
    eventually("events waiting in the outbox", move || async move {
        engine_metric(hpr, "highpress_events_queued").await > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed())).await;
    let waiting = engine_metric(&hp, "highpress_events_queued").await;
    let acked_in_outage: usize = answers
        .lock()
        .unwrap()
        .acknowledged
        .values()
        .map(Vec::len)
        .sum();
    broker.start_again();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("load task");
    }

    let answers = Arc::try_unwrap(answers).ok().unwrap().into_inner().unwrap();
    assert!(
        answers.failures.is_empty(),
        "requests failed while Kafka was away: {:?}",
        answers.failures
    );
    let total: usize = answers.acknowledged.values().map(Vec::len).sum();
    println!(
        "outage: {total} increments acknowledged, {acked_in_outage} by the end of the outage, {waiting} events waiting in the outbox as the broker came back"
    );
    collector
        .wait_until("every acknowledged increment's event", |e| {
            e.iter()
                .map(|c| c.event["event_id"].as_str().unwrap_or_default())
                .collect::<BTreeSet<_>>()
                .len()
                >= total
        })
        .await;
    let copies = check_events(&collector.events(), &answers, true);
    println!("outage: {copies} copies of an event (allowed only after a relay died)");
    assert_eq!(copies, 0, "no relay died, yet events were delivered twice");
    // The stored counts are the acknowledged ones: no request failed.
    let mut hp = hp;
    for (key, values) in &answers.acknowledged {
        assert_eq!(
            hp.redis().get_i64(&format!("c:like:{key}")),
            values.len() as i64,
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_counters_outbox_partitions_are_relayed_by_the_other() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut broker = Kafka::start();
    broker.create_topic(TOPIC, PARTITIONS).await;
    let mut env = broker.env(TOPIC);
    env.push(("HIGHPRESS_KAFKA__RELAY_LEASE_MS".into(), "3000".into()));
    let mut hp = Highpress::start(Topology::Split, &env_refs(&env)).await;
    let collector = EventCollector::start(&broker, TOPIC, PARTITIONS);
    let keys: Vec<String> = (0..8).map(|i| format!("killed-{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Answers::default()));
    let load = start_load(&hp, &keys, 4, &stop, &answers);

    // Events flow; then the broker goes away, so they pile up in the outbox.
    let hpr = &hp;
    eventually("events delivered", move || async move {
        engine_metric(hpr, "highpress_events_sent_total").await > 0
    })
    .await;
    broker.stop();
    eventually("events waiting in the outbox", move || async move {
        engine_metric(hpr, "highpress_events_queued").await > 100
    })
    .await;
    // The counter that relays (holds outbox leases) dies with its partitions full.
    let mut relaying = Vec::new();
    for c in &hp.counters {
        relaying.push(metric(&c.metrics_url(), "highpress_events_relay_partitions").await);
    }
    let victim = relaying
        .iter()
        .position(|&n| n > 0)
        .expect("a counter relays the outbox");
    println!(
        "counter {victim} relays {} partitions; killing it",
        relaying[victim]
    );
    hp.counters[victim].kill();
    let survivor = 1 - victim;
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.start_again();
    let survivor_metrics = hp.counters[survivor].metrics_url();
    let url = survivor_metrics.clone();
    eventually("the surviving counter relays every partition", move || {
        let url = url.clone();
        async move { metric(&url, "highpress_events_relay_partitions").await == 8 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("load task");
    }
    let answers = Arc::try_unwrap(answers).ok().unwrap().into_inner().unwrap();
    let total: usize = answers.acknowledged.values().map(Vec::len).sum();
    assert!(
        answers.failures.keys().all(|&s| s == 503),
        "only 503 while a counter dies: {:?}",
        answers.failures
    );
    eventually("the outbox drained", || {
        let url = survivor_metrics.clone();
        async move { metric(&url, "highpress_events_queued").await == 0 }
    })
    .await;
    collector
        .wait_until("every acknowledged increment's event", |e| {
            e.iter()
                .map(|c| c.event["event_id"].as_str().unwrap_or_default())
                .collect::<BTreeSet<_>>()
                .len()
                >= total
        })
        .await;
    // Let any late copies arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let copies = check_events(&collector.events(), &answers, false);
    println!(
        "counter killed: {total} increments acknowledged, {:?} failed, {copies} copies of an event",
        answers.failures
    );
    for (key, values) in &answers.acknowledged {
        let stored = hp.redis().get_i64(&format!("c:like:{key}"));
        assert!(
            stored >= values.len() as i64 && stored as u64 <= answers.attempted[key],
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_in_the_outbox_survive_a_redis_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut broker = Kafka::start();
    broker.create_topic(TOPIC, PARTITIONS).await;
    let mut hp = Highpress::start(Topology::StandaloneRedis, &env_refs(&broker.env(TOPIC))).await;
    let collector = EventCollector::start(&broker, TOPIC, PARTITIONS);
    broker.stop();

    let mut answers = Answers::default();
    for i in 0..60 {
        let key = format!("restart-{}", i % 3);
        let (s, body) = increment_as(&hp, &key, "u", 1).await;
        assert_eq!(s, 200, "{body}");
        *answers.attempted.entry(key.clone()).or_default() += 1;
        answers
            .acknowledged
            .entry(key)
            .or_default()
            .push(body["data"]["current_value"].as_i64().unwrap());
    }
    assert_eq!(outbox_waiting(&mut hp), 60, "the events wait in the outbox");
    // Redis (appendfsync always) restarts with them; then Kafka returns.
    hp.redis().restart();
    assert_eq!(
        outbox_waiting(&mut hp),
        60,
        "the outbox survived the restart"
    );
    broker.start_again();
    collector
        .wait_until("the 60 events", |e| e.len() >= 60)
        .await;
    assert_eq!(check_events(&collector.events(), &answers, true), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while outbox_waiting(&mut hp) != 0 {
        assert!(Instant::now() < deadline, "the outbox was not trimmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Increments of `key` one at a time: the post-values of the 200s, and how many got 503
/// `overloaded` (any other answer fails the test).
async fn increments_until(hp: &Highpress, key: &str, n: usize) -> (Vec<i64>, usize) {
    let (mut acked, mut refused) = (Vec::new(), 0);
    for _ in 0..n {
        let (s, body) = increment_as(hp, key, "u", 1).await;
        match s {
            200 => acked.push(body["data"]["current_value"].as_i64().unwrap()),
            503 => {
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                refused += 1;
            }
            _ => panic!("unexpected answer {s}: {body}"),
        }
    }
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_outbox_refuses_increments_or_drops_their_events_as_configured() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut broker = Kafka::start();
    broker.create_topic(TOPIC, PARTITIONS).await;
    let mut env = broker.env(TOPIC);
    env.push(("HIGHPRESS_KAFKA__OUTBOX_MAX_LEN".into(), "20".into()));
    let reject = Highpress::start(Topology::StandaloneRedis, &env_refs(&env)).await;
    env.push(("HIGHPRESS_KAFKA__OUTBOX_FULL_POLICY".into(), "drop".into()));
    let mut dropping = Highpress::start(Topology::StandaloneRedis, &env_refs(&env)).await;
    let collector = EventCollector::start(&broker, TOPIC, PARTITIONS);
    broker.stop();

    // reject: 20 events fill the outbox; the next increments are refused and write nothing.
    let (acked, refused) = increments_until(&reject, "bound-reject", 50).await;
    assert_eq!((acked.len(), refused), (20, 30));
    let mut reject = reject;
    assert_eq!(reject.redis().get_i64("c:like:bound-reject"), 20);
    assert_eq!(dropped(&reject).await, 0);

    // drop: every increment counts; the events past the bound are dropped and counted.
    let (acked_drop, refused_drop) = increments_until(&dropping, "bound-drop", 50).await;
    assert_eq!((acked_drop.len(), refused_drop), (50, 0));
    assert_eq!(dropping.redis().get_i64("c:like:bound-drop"), 50);
    assert_eq!(dropped(&dropping).await, 30);

    // Kafka back: the outbox drains, and the reject side takes increments again.
    broker.start_again();
    let rejecting = &reject;
    eventually("the outbox drained", move || async move {
        engine_metric(rejecting, "highpress_events_sent_total").await == 20
    })
    .await;
    let mut taken = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while taken == 0 {
        assert!(
            Instant::now() < deadline,
            "increments still refused after the outbox drained"
        );
        taken = increments_until(&reject, "bound-reject", 1).await.0.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    collector
        .wait_until("the events of both", |e| e.len() >= 41)
        .await;
    let values = |key: &str| -> Vec<i64> {
        collector
            .events()
            .iter()
            .filter(|c| c.event["resource_id"] == key)
            .map(|c| c.event["current_value"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(values("bound-reject"), (1..=21).collect::<Vec<_>>());
    assert_eq!(values("bound-drop"), (1..=20).collect::<Vec<_>>());
}

/// Only changes of a count are events: a repeated like of a unique-per-user type and a replayed
/// `Idempotency-Key` retry publish nothing, and a reset publishes a `reset` event, in order
/// after the increments before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_and_replays_publish_nothing_and_a_reset_publishes_its_event() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let broker = Kafka::start();
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
