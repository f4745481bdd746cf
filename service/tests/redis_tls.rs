//! Redis over TLS (`redis.tls`) against a real `redis-server` with a TLS port that requires
//! client certificates (`tls-auth-clients yes`), with a CA, server and client certificates made
//! by `openssl` for the test: highpress counts through it in standalone and through the split,
//! keeps every acknowledged increment across a Redis restart, and is not ready while its
//! certificates do not fit (an unknown CA, no client certificate). `redis-cli --tls` reads the
//! stored counts back.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Certificates, Highpress, RedisServer, client, eventually, free_port};

/// A Redis with a plain port for the test's own `redis-cli` and a TLS port, requiring client
/// certificates, for highpress.
fn tls_redis(certs: &Certificates) -> (RedisServer, u16) {
    let tls_port = free_port();
    let redis = RedisServer::start_with_args(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &certs.path("redis.crt"),
        "--tls-key-file",
        &certs.path("redis.key"),
        "--tls-ca-cert-file",
        &certs.path("ca.crt"),
        "--tls-auth-clients",
        "yes",
    ]);
    (redis, tls_port)
}

/// `redis-cli --tls` with the client certificate: `GET key` on the TLS port.
fn get_over_tls(certs: &Certificates, port: u16, key: &str) -> String {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", &certs.path("ca.crt")])
        .args(["--cert", &certs.path("highpress.crt")])
        .args(["--key", &certs.path("highpress.key")])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--raw",
            "GET",
            key,
        ])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// highpress's settings for the TLS port, its server certificates checked against `ca`.
fn tls_env(certs: &Certificates, port: u16, ca: &str) -> Vec<(String, String)> {
    vec![
        ("HIGHPRESS_STORE__KIND".into(), "redis".into()),
        ("HIGHPRESS_REDIS__ADDR".into(), format!("127.0.0.1:{port}")),
        ("HIGHPRESS_REDIS__TLS__ENABLED".into(), "true".into()),
        ("HIGHPRESS_REDIS__TLS__CA_FILE".into(), certs.path(ca)),
        (
            "HIGHPRESS_REDIS__TLS__CERT_FILE".into(),
            certs.path("highpress.crt"),
        ),
        (
            "HIGHPRESS_REDIS__TLS__KEY_FILE".into(),
            certs.path("highpress.key"),
        ),
    ]
}

async fn count_over_tls(split: bool) {
    let certs = Certificates::make(if split { "split" } else { "standalone" });
    certs.issue("redis");
    certs.issue("highpress");
    let (mut redis, tls_port) = tls_redis(&certs);
    // Plain text on the TLS port gets no answer.
    let plain = Command::new("timeout")
        .args(["5", "redis-cli", "-p", &tls_port.to_string(), "PING"])
        .output()
        .expect("redis-cli runs");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("PONG"));

    let hp = Highpress::on_store(split, &tls_env(&certs, tls_port, "ca.crt"), &[]).await;
    for i in 0..50 {
        let (status, body) = hp.increment("tls_post", "like", 1).await;
        assert_eq!(status, 200, "increment {i}: {body}");
    }
    assert_eq!(hp.value("tls_post", "like").await, 50);
    assert_eq!(get_over_tls(&certs, tls_port, "c:like:tls_post"), "50");

    // Redis restarts (same ports, same data): highpress reconnects over TLS and every
    // acknowledged increment is there.
    redis.restart();
    let mut acknowledged = 50;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acknowledged < 60 {
        assert!(
            std::time::Instant::now() < deadline,
            "ten increments over TLS after the restart: {} in 20 s",
            acknowledged - 50
        );
        if hp.increment("tls_post", "like", 1).await.0 == 200 {
            acknowledged += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        get_over_tls(&certs, tls_port, "c:like:tls_post"),
        acknowledged.to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_counts_over_tls_across_a_redis_restart() {
    count_over_tls(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_split_counts_over_tls_across_a_redis_restart() {
    count_over_tls(true).await;
}

/// A standalone process started without waiting for it to be ready, killed on drop.
struct Unready(std::process::Child, u16);

impl Drop for Unready {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Not ready, and no increment acknowledged, while the certificates do not fit.
async fn never_ready(store: &[(String, String)], what: &str) {
    let port = free_port();
    let process = Unready(
        Command::new(env!("CARGO_BIN_EXE_highpress"))
            .arg("standalone")
            .env("HIGHPRESS_SERVER__HOST", "127.0.0.1")
            .env("HIGHPRESS_SERVER__PORT", port.to_string())
            .env("HIGHPRESS_LOG__LEVEL", "error")
            .envs(store.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .spawn()
            .expect("highpress starts"),
        port,
    );
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", process.1);
    eventually(
        "the process answers /livez",
        Duration::from_secs(20),
        || async {
            client()
                .get(url("/livez"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    // The store check starts optimistic; its first ping over TLS fails within moments.
    eventually(
        "the process reports not ready",
        Duration::from_secs(10),
        || async {
            client()
                .get(url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 503)
        },
    )
    .await;
    for _ in 0..3 {
        let ready = client().get(url("/readyz")).send().await.expect("sent");
        assert_eq!(ready.status(), 503, "{what}: ready");
        let status = client()
            .post(url("/api/v1/counter/increment"))
            .json(&serde_json::json!({"resource_id": "tls_post", "counter_type": "like", "increment": 1}))
            .send()
            .await
            .expect("sent")
            .status();
        assert_eq!(status, 503, "{what}: an increment");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_that_do_not_fit_leave_highpress_unready() {
    let certs = Certificates::make("misfit");
    certs.issue("redis");
    certs.issue("highpress");
    let (redis, tls_port) = tls_redis(&certs);
    // A CA that did not sign the server's certificate.
    never_ready(&tls_env(&certs, tls_port, "other-ca.crt"), "unknown CA").await;
    // No client certificate, which the server requires.
    let without_cert: Vec<(String, String)> = tls_env(&certs, tls_port, "ca.crt")
        .into_iter()
        .filter(|(k, _)| !k.ends_with("CERT_FILE") && !k.ends_with("KEY_FILE"))
        .collect();
    never_ready(&without_cert, "no client certificate").await;
    assert_eq!(redis.get_i64("c:like:tls_post"), 0);
}
