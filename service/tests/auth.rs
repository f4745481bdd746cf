//! API tokens (`api.auth`) against real processes, asked with curl as a user would: every
//! guarded route refuses a missing, unknown or under-scoped token with 401/403 in the error
//! envelope and writes nothing, in standalone on Redis and through the split; probes stay open;
//! `/metrics` is open or needs the `metrics` scope as configured; tokens are added and removed
//! by editing the file, without a restart; the caller's name, never its token, reaches the
//! metrics.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{Highpress, Topology, eventually};

const WRITER: &str = "writer-token-5f1c7a9e2b";
const READER: &str = "reader-token-0d8e3b6c4a";
const RESETTER: &str = "resetter-token-7a2f9c1e8d";
const ADMIN: &str = "admin-token-3c6b0e9f1a";
const SCRAPER: &str = "scraper-token-9e4d2a7b5c";

/// The tokens file: one token per scope, `reader` given as its SHA-256 as an operator would.
fn tokens_file(dir: &Path) -> PathBuf {
    let reader_sha = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(READER.as_bytes());
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let path = dir.join("tokens.yaml");
    std::fs::write(
        &path,
        format!(
            "tokens:\n\
             - {{name: writer, token: {WRITER}, scopes: [write]}}\n\
             - {{name: reader, sha256: {reader_sha}, scopes: [read]}}\n\
             - {{name: resetter, token: {RESETTER}, scopes: [reset]}}\n\
             - {{name: admin, token: {ADMIN}, scopes: [admin]}}\n\
             - {{name: scraper, token: {SCRAPER}, scopes: [metrics]}}\n"
        ),
    )
    .expect("write the tokens file");
    path
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("highpress-auth-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch dir");
    dir
}

/// One curl answer: status, response headers (lower-cased names) and JSON body (or Null).
struct Answer {
    status: u16,
    headers: String,
    body: Value,
}

/// `curl -X method url` with an optional bearer token and JSON body.
fn curl(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> Answer {
    let mut command = Command::new("curl");
    command.args(["-s", "-D", "-", "-X", method, url]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(body) = body {
        command.args(["-H", "Content-Type: application/json", "--data", body]);
    }
    let output = command.output().expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    let (headers, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let status = headers
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line from curl {method} {url}: {text:?}"));
    Answer {
        status,
        headers: headers.to_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

struct Route {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    /// A token with the route's scope.
    allowed: &'static str,
}

const INCREMENT: &str =
    r#"{"resource_id":"post_1","counter_type":"like","user_id":"u1","increment":5}"#;
const BATCH_READ: &str = r#"{"queries":[{"resource_id":"post_1","counter_type":"like"}]}"#;

/// Every guarded route, with a token that may call it.
fn guarded_routes() -> [Route; 6] {
    [
        Route {
            method: "POST",
            path: "/api/v1/counter/increment",
            body: Some(INCREMENT),
            allowed: WRITER,
        },
        Route {
            method: "POST",
            path: "/api/v1/counter/batch",
            body: Some(BATCH_READ),
            allowed: READER,
        },
        Route {
            method: "GET",
            path: "/api/v1/counter/post_1/like",
            body: None,
            allowed: READER,
        },
        Route {
            method: "GET",
            path: "/api/v1/leaderboard/like?limit=10",
            body: None,
            allowed: READER,
        },
        Route {
            method: "DELETE",
            path: "/api/v1/counter/post_1/like",
            body: None,
            allowed: RESETTER,
        },
        Route {
            method: "GET",
            path: "/debug/pprof/profile?seconds=1",
            body: None,
            allowed: ADMIN,
        },
    ]
}

fn value(hp: &Highpress) -> i64 {
    let answer = curl(
        "GET",
        &hp.url("/api/v1/counter/post_1/like"),
        Some(READER),
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["data"]["current_value"]
        .as_i64()
        .expect("current_value")
}

fn assert_refused(answer: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert_eq!(answer.body["status"], "error", "{what}");
    assert_eq!(answer.body["error"]["code"], code, "{what}");
    assert_eq!(answer.body["error"]["field"], "Authorization", "{what}");
    if status == 401 {
        assert!(
            answer
                .headers
                .contains("www-authenticate: bearer realm=\"highpress\""),
            "{what}: {}",
            answer.headers
        );
    }
}

async fn every_route_is_guarded(topology: Topology) {
    let dir = scratch(&format!("{topology:?}"));
    let tokens = tokens_file(&dir);
    let tokens = tokens.to_str().expect("a UTF-8 path");
    let hp = Highpress::start(
        topology,
        &[
            ("HIGHPRESS_API__AUTH__ENABLED", "true"),
            ("HIGHPRESS_API__AUTH__TOKENS_FILE", tokens),
            ("HIGHPRESS_API__ALLOW_RESET", "true"),
            ("HIGHPRESS_PPROF__ENABLED", "true"),
        ],
    )
    .await;

    let increment = curl(
        "POST",
        &hp.url("/api/v1/counter/increment"),
        Some(WRITER),
        Some(INCREMENT),
    );
    assert_eq!(increment.status, 200, "{}", increment.body);
    assert_eq!(value(&hp), 5);

    for route in guarded_routes() {
        let url = hp.url(route.path);
        let what = format!("{} {}", route.method, route.path);
        let missing = curl(route.method, &url, None, route.body);
        assert_refused(
            &missing,
            401,
            "unauthorized",
            &format!("{what} without a token"),
        );
        let unknown = curl(
            route.method,
            &url,
            Some("not-a-token-at-all-0000"),
            route.body,
        );
        assert_refused(
            &unknown,
            401,
            "unauthorized",
            &format!("{what} with an unknown token"),
        );
        // A prefix of a real token is not that token.
        let prefix = curl(route.method, &url, Some(&route.allowed[..10]), route.body);
        assert_refused(
            &prefix,
            401,
            "unauthorized",
            &format!("{what} with a prefix"),
        );
        for token in [WRITER, READER, RESETTER, ADMIN, SCRAPER] {
            if token == route.allowed {
                continue;
            }
            let under = curl(route.method, &url, Some(token), route.body);
            assert_refused(&under, 403, "forbidden", &format!("{what} with {token}"));
        }
        // Nothing refused was written: the count is what the one allowed increment made.
        assert_eq!(value(&hp), 5, "after the refused calls of {what}");
    }

    // Each route with its scope is served.
    for route in guarded_routes() {
        let answer = curl(
            route.method,
            &hp.url(route.path),
            Some(route.allowed),
            route.body,
        );
        assert_eq!(
            answer.status, 200,
            "{} {} with its scope: {}",
            route.method, route.path, answer.body
        );
    }
    // The routes ran in order: +5 (increment), the reads, then the reset.
    assert_eq!(value(&hp), 0);

    // Probes, health, the API description and (unprotected) metrics stay open.
    for path in [
        "/livez",
        "/readyz",
        "/health",
        "/api/v1/health",
        "/openapi.json",
        "/metrics",
    ] {
        let answer = curl("GET", &hp.url(path), None, None);
        assert_eq!(answer.status, 200, "{path} without a token");
    }

    // Names, never tokens, in the metrics.
    let text = reqwest_text(&hp.url("/metrics")).await;
    for token in [WRITER, READER, RESETTER, ADMIN, SCRAPER] {
        assert!(!text.contains(token), "a token in /metrics");
    }
    for line in [
        "highpress_auth_requests_total{result=\"forbidden\",token=\"reader\"} 3",
        "highpress_auth_requests_total{result=\"allowed\",token=\"resetter\"} 1",
        "highpress_auth_rejected_total{reason=\"missing\"} 6",
        "highpress_auth_rejected_total{reason=\"unknown\"} 12",
    ] {
        assert!(
            text.contains(line),
            "{line} in\n{}",
            grep(&text, "highpress_auth")
        );
    }
    drop(hp);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn reqwest_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("GET")
        .text()
        .await
        .expect("a body")
}

fn grep(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_guards_every_route_by_scope() {
    every_route_is_guarded(Topology::StandaloneRedis).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_split_guards_every_route_by_scope() {
    every_route_is_guarded(Topology::Split).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_added_and_removed_without_a_restart() {
    let dir = scratch("rotation");
    let file = dir.join("tokens.yaml");
    let write = |tokens: &[(&str, &str)]| {
        let lines: String = tokens
            .iter()
            .map(|(name, token)| format!("- {{name: {name}, token: {token}, scopes: [read]}}\n"))
            .collect();
        // Written aside and renamed in, as a Secret volume swaps its files.
        let staged = dir.join("tokens.yaml.new");
        std::fs::write(&staged, format!("tokens:\n{lines}")).expect("write");
        std::fs::rename(&staged, &file).expect("rename");
    };
    const OLD: &str = "old-token-4b1e8c0d7f2a";
    const NEW: &str = "new-token-8d3a6f1c9e0b";
    write(&[("old", OLD)]);
    let hp = Highpress::start(
        Topology::StandaloneMemory,
        &[
            ("HIGHPRESS_API__AUTH__ENABLED", "true"),
            (
                "HIGHPRESS_API__AUTH__TOKENS_FILE",
                file.to_str().expect("UTF-8"),
            ),
            ("HIGHPRESS_API__AUTH__RELOAD_INTERVAL_MS", "100"),
        ],
    )
    .await;
    let url = hp.url("/api/v1/counter/post_1/like");
    let status = |token: &str| curl("GET", &url, Some(token), None).status;
    assert_eq!((status(OLD), status(NEW)), (200, 401));

    // Both during the switch, then only the new one.
    write(&[("old", OLD), ("new", NEW)]);
    eventually(
        "the new token accepted",
        Duration::from_secs(10),
        || async { status(NEW) == 200 },
    )
    .await;
    assert_eq!(status(OLD), 200);
    write(&[("new", NEW)]);
    eventually("the old token refused", Duration::from_secs(10), || async {
        status(OLD) == 401
    })
    .await;
    assert_eq!(status(NEW), 200);

    // A file that does not parse keeps the tokens loaded before, and says so in a metric.
    std::fs::write(&file, "tokens: [{name: broken}]\n").expect("write");
    let metrics = hp.url("/metrics");
    eventually(
        "the failed reload counted",
        Duration::from_secs(10),
        || async {
            reqwest_text(&metrics)
                .await
                .contains("highpress_auth_reloads_total{result=\"failed\"} 1")
        },
    )
    .await;
    assert_eq!((status(OLD), status(NEW)), (401, 200));
    let text = reqwest_text(&metrics).await;
    assert!(
        text.contains("highpress_auth_reloads_total{result=\"loaded\"} 2"),
        "{}",
        grep(&text, "reloads")
    );
    drop(hp);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_metrics_need_the_metrics_scope() {
    let dir = scratch("metrics");
    let tokens = tokens_file(&dir);
    let hp = Highpress::start(
        Topology::StandaloneMemory,
        &[
            ("HIGHPRESS_API__AUTH__ENABLED", "true"),
            (
                "HIGHPRESS_API__AUTH__TOKENS_FILE",
                tokens.to_str().expect("UTF-8"),
            ),
            ("HIGHPRESS_API__AUTH__PROTECT_METRICS", "true"),
        ],
    )
    .await;
    let url = hp.url("/metrics");
    assert_refused(
        &curl("GET", &url, None, None),
        401,
        "unauthorized",
        "/metrics",
    );
    assert_refused(
        &curl("GET", &url, Some(ADMIN), None),
        403,
        "forbidden",
        "/metrics as admin",
    );
    let scraped = curl("GET", &url, Some(SCRAPER), None);
    assert_eq!(scraped.status, 200);
    assert_eq!(curl("GET", &hp.url("/readyz"), None, None).status, 200);
    drop(hp);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_on_without_a_readable_tokens_file_refuses_to_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_highpress"))
        .arg("standalone")
        .env("HIGHPRESS_API__AUTH__ENABLED", "true")
        .env(
            "HIGHPRESS_API__AUTH__TOKENS_FILE",
            "/nonexistent/tokens.yaml",
        )
        .env("HIGHPRESS_SERVER__PORT", support::free_port().to_string())
        .output()
        .expect("highpress runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("api.auth.tokens_file /nonexistent/tokens.yaml"),
        "{stderr}"
    );
}
