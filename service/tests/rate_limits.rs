//! Rate limits (`api.rate_limit`) against real processes: a client over its bucket gets 429
//! `rate_limited` with `Retry-After`, and nothing it sent beyond the limit is written; per API
//! token (each token its own bucket, a token's own `rate_limit` from the tokens file) in
//! standalone and through the split, and per client address when auth is off.

mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use support::{Highpress, Topology, client, metric};

/// A scratch directory with a tokens file: `slow` may send 5 at once and then one per 5 s,
/// `other` has the process's default.
fn tokens_file(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("highpress-rate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch dir");
    let file = dir.join("tokens.yaml");
    std::fs::write(
        &file,
        "tokens:\n\
         - {name: slow, token: slow-token-1e9b7c3a5d, scopes: [read, write], rate_limit: {requests_per_second: 0.2, burst: 5}}\n\
         - {name: other, token: other-token-6f0a2d8c4b, scopes: [read, write]}\n",
    )
    .expect("write the tokens file");
    (dir, file)
}

/// Sends `n` increments of 1 to `post_1/like` as `token` (or anonymously), back to back:
/// the answers' statuses, and the `Retry-After` of the first 429.
async fn increments(hp: &Highpress, token: Option<&str>, n: usize) -> (Vec<u16>, Option<String>) {
    let mut statuses = Vec::with_capacity(n);
    let mut retry_after = None;
    for _ in 0..n {
        let mut request = client()
            .post(hp.url("/api/v1/counter/increment"))
            .json(&json!({"resource_id": "post_1", "counter_type": "like", "user_id": "u", "increment": 1}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        if status == 429 && retry_after.is_none() {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = response.json().await.expect("a JSON body");
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
        statuses.push(status);
    }
    (statuses, retry_after)
}

async fn value(hp: &Highpress, token: &str) -> i64 {
    let response = client()
        .get(hp.url("/api/v1/counter/post_1/like"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["data"]["current_value"]
        .as_i64()
        .expect("current_value")
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn each_token_has_its_own_bucket(topology: Topology) {
    let (dir, file) = tokens_file(&format!("{topology:?}"));
    let hp = Highpress::start(
        topology,
        &[
            ("HIGHPRESS_API__AUTH__ENABLED", "true"),
            (
                "HIGHPRESS_API__AUTH__TOKENS_FILE",
                file.to_str().expect("UTF-8"),
            ),
            ("HIGHPRESS_API__RATE_LIMIT__ENABLED", "true"),
            ("HIGHPRESS_API__RATE_LIMIT__REQUESTS_PER_SECOND", "1000"),
            ("HIGHPRESS_API__RATE_LIMIT__BURST", "1000"),
        ],
    )
    .await;
    // `slow`: the burst of 5 passes; the rest, sent within well under 5 s, are refused.
    let (slow, retry_after) = increments(&hp, Some("slow-token-1e9b7c3a5d"), 30).await;
    assert_eq!(count(&slow, 200), 5, "{slow:?}");
    assert_eq!(count(&slow, 429), 25, "{slow:?}");
    let retry_after: u64 = retry_after
        .expect("a Retry-After on the 429")
        .parse()
        .expect("whole seconds");
    assert!((1..=5).contains(&retry_after), "Retry-After {retry_after}");
    // `other` is not held back by `slow`'s empty bucket, and its reads pass too.
    let (other, _) = increments(&hp, Some("other-token-6f0a2d8c4b"), 30).await;
    assert_eq!(count(&other, 200), 30, "{other:?}");
    // Nothing refused was written: 5 + 30.
    assert_eq!(value(&hp, "other-token-6f0a2d8c4b").await, 35);
    // `slow`'s reads share its bucket, which is empty.
    let read = client()
        .get(hp.url("/api/v1/counter/post_1/like"))
        .bearer_auth("slow-token-1e9b7c3a5d")
        .send()
        .await
        .expect("request sent");
    assert_eq!(read.status(), 429);
    assert_eq!(
        metric(
            &hp.url("/metrics"),
            "highpress_rate_limited_total{client=\"slow\"}"
        )
        .await,
        26
    );
    drop(hp);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_limits_each_token_and_writes_nothing_beyond() {
    each_token_has_its_own_bucket(Topology::StandaloneRedis).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_limits_each_token_and_writes_nothing_beyond() {
    each_token_has_its_own_bucket(Topology::Split).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_auth_the_limit_is_per_client_address() {
    let hp = Highpress::start(
        Topology::StandaloneMemory,
        &[
            ("HIGHPRESS_API__RATE_LIMIT__ENABLED", "true"),
            ("HIGHPRESS_API__RATE_LIMIT__REQUESTS_PER_SECOND", "0.2"),
            ("HIGHPRESS_API__RATE_LIMIT__BURST", "4"),
        ],
    )
    .await;
    let (statuses, retry_after) = increments(&hp, None, 20).await;
    assert_eq!(count(&statuses, 200), 4, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 16, "{statuses:?}");
    assert!(retry_after.is_some());
    // The store has the 4 acknowledged increments and nothing else; probes are never limited.
    for _ in 0..10 {
        let ready = client().get(hp.url("/readyz")).send().await.expect("sent");
        assert_eq!(ready.status(), 200);
    }
    assert_eq!(
        metric(
            &hp.url("/metrics"),
            "highpress_increments_acknowledged_total"
        )
        .await,
        4
    );
    assert_eq!(
        metric(
            &hp.url("/metrics"),
            "highpress_rate_limited_total{client=\"address\"}"
        )
        .await,
        16
    );
}
