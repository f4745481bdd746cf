//! HighGoPress's clients against highpress, unchanged: the requests of the original's own load
//! test, replayed with `hey` (the tool it used), against a standalone process on Redis and a
//! gateway in front of two counters. Every request must succeed and the count must come out
//! exact.

mod support;

use std::process::Command;

use serde_json::json;
use support::{Backing, Highpress, Topology, get_json, post_json, tool};

/// What the original's load test polls, and how often.
const HEALTH_REQUESTS: u32 = 10_000;
/// The original's load-test increment: no `user_id`, and `delta` rather than `increment`.
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

    // The count reads back exactly, through each read route, with the original's fields.
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
