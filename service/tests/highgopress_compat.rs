//! HighGoPress's clients against highpress, unchanged: the requests of HighGoPress's own load
//! test, replayed with `hey` (the tool it used), against a standalone process on Redis and a
//! gateway in front of two counters. Every request must succeed and the count must come out
//! exact.

mod support;

use std::process::Command;

use serde_json::json;
use support::{Backing, Highpress, Topology, get_json, post_json, tool};

/// What HighGoPress's load test polls, and how often.
const HEALTH_REQUESTS: u32 = 10_000;
/// HighGoPress's load-test increment: no `user_id`, and `delta` rather than `increment`.
const INCREMENT_BODY: &str =
    r#"{"resource_id":"article_loadtest","counter_type":"like","delta":1}"#;
const INCREMENTS: u32 = 3_000;

/// Runs `hey` with `args` and returns its status code distribution: (code, responses).
fn hey(args: &[&str]) -> Vec<(u16, u32)> {
    let output = Command::new(tool("hey"))
        .args(args)
        .output()
        .expect("hey runs (scripts/install-test-deps.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "hey failed:\n{text}");
    assert!(
        !text.contains("Error distribution"),
        "requests failed in transit:\n{text}"
    );
    text.lines()
        .filter_map(|line| {
            let (code, rest) = line.trim().strip_prefix('[')?.split_once(']')?;
            let count = rest.split_whitespace().next()?.parse().ok()?;
            Some((code.parse().ok()?, count))
        })
        .collect()
}

async fn replay_the_originals_load_test(hp: Highpress) {
    let health = hey(&[
        "-n",
        &HEALTH_REQUESTS.to_string(),
        "-c",
        "100",
        &hp.url("/api/v1/health"),
    ]);
    assert_eq!(health, [(200, HEALTH_REQUESTS)], "GET /api/v1/health");

    let increments = hey(&[
        "-n",
        &INCREMENTS.to_string(),
        "-c",
        "50",
        "-m",
        "POST",
        "-T",
        "application/json",
        "-d",
        INCREMENT_BODY,
        &hp.url("/api/v1/counter/increment"),
    ]);
    assert_eq!(
        increments,
        [(200, INCREMENTS)],
        "POST /api/v1/counter/increment"
    );

    // The count reads back exactly, through each read route, with HighGoPress's fields.
    let (status, body) = get_json(&hp.url("/api/v1/counter/article_loadtest/like")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["current_value"], INCREMENTS, "{body}");
    assert!(body["data"]["updated_at"].is_i64(), "{body}");
    let (status, body) = post_json(
        &hp.url("/api/v1/counter/batch"),
        &json!({"queries":[{"resource_id":"article_loadtest","counter_type":"like"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["results"][0]["current_value"], INCREMENTS);
    // One more, as a client that checks `data.success` sees it.
    let (status, body) = post_json(
        &hp.url("/api/v1/counter/increment"),
        &serde_json::from_str(INCREMENT_BODY).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["success"], true, "{body}");
    assert_eq!(body["data"]["current_value"], INCREMENTS + 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_load_test_passes_on_a_standalone_process() {
    replay_the_originals_load_test(Highpress::standalone(Backing::Redis, &[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_load_test_passes_through_a_gateway() {
    replay_the_originals_load_test(Highpress::start(Topology::Split, &[]).await).await;
}

// --- HighGoPress's Redis data, under `store.key_layout: highgopress` --------------------------

const COMPAT_KEYS: usize = 20;

/// HighGoPress's Redis key of `resource_id`'s `like` counter.
fn original_key(resource_id: &str) -> String {
    format!("counter:{resource_id}:like")
}

/// Every key matching `pattern` on every node of `hp`'s store.
fn keys_matching(hp: &Highpress, pattern: &str) -> Vec<String> {
    let nodes: Vec<&support::RedisServer> = match (&hp.redis, &hp.cluster) {
        (Some(redis), _) => vec![redis],
        (None, Some(cluster)) => cluster.nodes.iter().collect(),
        (None, None) => panic!("a Redis-backed deployment"),
    };
    nodes
        .iter()
        .flat_map(|n| {
            n.cmd(&["KEYS", pattern])
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|k| !k.is_empty())
        .collect()
}

/// A Redis that HighGoPress filled (plain `INCRBY` at `counter:{resource_id}:{counter_type}`)
/// reads back exactly; then HighGoPress-style writers and highpress increment the same keys at
/// once, and every total is exact, in Redis and through highpress. The read cache is off: it
/// holds what highpress wrote, so it would lag another writer by up to `cache.ttl_ms`.
async fn shares_a_highgopress_redis(hp: Highpress) {
    let node = hp.store_node();
    let prefill: String = (0..COMPAT_KEYS)
        .map(|k| format!("INCRBY {} {}\n", original_key(&format!("a{k}")), 10 * k))
        .collect();
    node.cli().send_commands(&prefill);
    for k in 0..COMPAT_KEYS {
        assert_eq!(hp.value(&format!("a{k}"), "like").await, 10 * k as i64);
    }
    let queries: Vec<_> = (0..COMPAT_KEYS)
        .map(|k| json!({"resource_id": format!("a{k}"), "counter_type": "like"}))
        .collect();
    let (status, body) = post_json(
        &hp.url("/api/v1/counter/batch"),
        &json!({ "queries": queries }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        support::batch_values(&body),
        (0..COMPAT_KEYS).map(|k| 10 * k as i64).collect::<Vec<_>>()
    );

    // Both kinds of writer at once: 100 rounds of +1 on every key by a HighGoPress-style
    // client, and 100 increments of +2 per key through highpress, 16 at a time.
    const ROUNDS: usize = 100;
    let original_writes: String = (0..ROUNDS)
        .flat_map(|_| {
            (0..COMPAT_KEYS).map(|k| format!("INCRBY {} 1\n", original_key(&format!("a{k}"))))
        })
        .collect();
    let writer = {
        let cli = node.cli();
        std::thread::spawn(move || cli.send_commands(&original_writes))
    };
    let url = hp.url("/api/v1/counter/increment");
    let requests: Vec<String> = (0..ROUNDS * COMPAT_KEYS)
        .map(|i| format!("a{}", i % COMPAT_KEYS))
        .collect();
    let statuses =
        futures::future::join_all(requests.chunks(ROUNDS * COMPAT_KEYS / 16).map(|chunk| {
            let url = url.clone();
            let chunk = chunk.to_vec();
            async move {
                let mut statuses = Vec::new();
                for resource_id in chunk {
                    let (status, body) = post_json(
                        &url,
                        &json!({"resource_id": resource_id, "counter_type": "like", "delta": 2}),
                    )
                    .await;
                    assert_eq!(status, 200, "{body}");
                    statuses.push(status);
                }
                statuses
            }
        }))
        .await;
    assert_eq!(statuses.concat().len(), ROUNDS * COMPAT_KEYS);
    let replies = writer.join().expect("the HighGoPress-style writer");
    // One integer reply per INCRBY (redis-cli also prints the cluster redirects it followed).
    let integers = replies.lines().filter(|l| l.parse::<i64>().is_ok()).count();
    assert_eq!(integers, ROUNDS * COMPAT_KEYS, "{replies}");

    for k in 0..COMPAT_KEYS {
        let expected = 10 * k as i64 + ROUNDS as i64 * (1 + 2);
        let id = format!("a{k}");
        assert_eq!(node.get_i64(&original_key(&id)), expected, "{id} in Redis");
        assert_eq!(
            hp.value(&id, "like").await,
            expected,
            "{id} through highpress"
        );
    }
    assert_eq!(
        keys_matching(&hp, "c:*"),
        Vec::<String>::new(),
        "highpress wrote counters in its own layout"
    );
}

const HIGHGOPRESS_KEYS: [(&str, &str); 2] = [
    ("HIGHPRESS_STORE__KEY_LAYOUT", "highgopress"),
    ("HIGHPRESS_CACHE__TTL_MS", "0"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_highgopress_redis_is_shared_exactly_by_a_standalone_process() {
    shares_a_highgopress_redis(Highpress::standalone(Backing::Redis, &HIGHGOPRESS_KEYS).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_highgopress_redis_is_shared_exactly_through_a_gateway() {
    shares_a_highgopress_redis(Highpress::start(Topology::Split, &HIGHGOPRESS_KEYS).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_highgopress_redis_cluster_is_shared_exactly() {
    shares_a_highgopress_redis(
        Highpress::start(Topology::StandaloneCluster, &HIGHGOPRESS_KEYS).await,
    )
    .await;
}

// --- HighGoPress's config file ----------------------------------------------------------------

/// HighGoPress's own `configs/config.yaml`, pointed at the test's Redis.
const ORIGINAL_CONFIG: &str = r#"
server: {host: "0.0.0.0", port: 8080}
redis:  {addr: "{redis}", password: "", db: 0}
log:    {level: "info", format: "json"}
grpc:
  counter_service: {host: "localhost:50051", pool_size: 20, keep_alive: 30s}
consul: {address: "localhost:8500", health_interval: "10s"}
kafka:  {brokers: ["localhost:9092"], topic: "counter_events"}
"#;

/// HighGoPress's config file, unchanged but for the Redis address, runs highpress on that
/// Redis with HighGoPress's keys: what HighGoPress counted reads back, and what highpress
/// counts lands where HighGoPress would read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_config_file_counts_in_its_redis_at_its_keys() {
    let hp = Highpress::standalone_with_config_file(ORIGINAL_CONFIG).await;
    hp.store_node()
        .cli()
        .send_commands("INCRBY counter:article_001:like 41\n");
    assert_eq!(hp.value("article_001", "like").await, 41);
    let (status, body) = post_json(
        &hp.url("/api/v1/counter/increment"),
        &serde_json::from_str(INCREMENT_BODY).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(hp.store_node().get_i64("counter:article_loadtest:like"), 1);
    assert_eq!(keys_matching(&hp, "c:*"), Vec::<String>::new());
}
