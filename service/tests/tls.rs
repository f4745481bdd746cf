//! TLS on the REST port (`server.tls`) against the real binary, asked with curl and
//! `openssl s_client` as users would: HTTPS with HTTP/1.1 and HTTP/2 (ALPN), plaintext refused,
//! mutual TLS when a client CA is set, and a certificate rotated on disk served to new
//! connections with no failed request meanwhile, and HTTP/2 answers given before the request's
//! body arrived.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{Certificates, free_port};

/// A standalone on the memory store serving HTTPS, killed on drop.
struct HttpsStandalone {
    child: Child,
    port: u16,
}

impl Drop for HttpsStandalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HttpsStandalone {
    fn start(certs: &Certificates, client_ca: bool) -> Self {
        Self::start_with(certs, client_ca, &[])
    }

    /// With `env` on top of the HTTPS settings.
    fn start_with(certs: &Certificates, client_ca: bool, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_highpress"));
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("standalone")
            .env("HIGHPRESS_SERVER__HOST", "127.0.0.1")
            .env("HIGHPRESS_SERVER__PORT", port.to_string())
            .env("HIGHPRESS_LOG__LEVEL", "warn")
            .env("HIGHPRESS_SERVER__TLS__ENABLED", "true")
            .env("HIGHPRESS_SERVER__TLS__CERT_FILE", certs.path("server.crt"))
            .env("HIGHPRESS_SERVER__TLS__KEY_FILE", certs.path("server.key"))
            .env("HIGHPRESS_SERVER__TLS__RELOAD_INTERVAL_MS", "100")
            .stdout(Stdio::null());
        if client_ca {
            command.env(
                "HIGHPRESS_SERVER__TLS__CLIENT_CA_FILE",
                certs.path("ca.crt"),
            );
        }
        let server = Self {
            child: command.spawn().expect("highpress starts"),
            port,
        };
        let client_cert = client_ca.then_some("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        while curl(certs, port, "/readyz", &[], client_cert).0 != 200 {
            assert!(Instant::now() < deadline, "no HTTPS answer on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

/// `curl` over HTTPS, trusting `ca.crt`: the status (0 when no HTTP answer came) and the body.
fn curl(
    certs: &Certificates,
    port: u16,
    path: &str,
    extra: &[&str],
    client_cert: Option<&str>,
) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args(["-s", "--max-time", "5", "--cacert", &certs.path("ca.crt")])
        .args(["-w", "\n%{http_code}"])
        .args(extra);
    if let Some(leaf) = client_cert {
        command.args([
            "--cert",
            &certs.path(&format!("{leaf}.crt")),
            "--key",
            &certs.path(&format!("{leaf}.key")),
        ]);
    }
    let out = command
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

const INCREMENT: &[&str] = &[
    "-X",
    "POST",
    "-H",
    "Content-Type: application/json",
    "--data",
    r#"{"resource_id":"tls_post","counter_type":"like","increment":1}"#,
];

/// What `openssl s_client` says of a handshake with the server on `port`.
fn s_client(certs: &Certificates, port: u16, extra: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-CAfile", &certs.path("ca.crt"), "-servername", "localhost"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The serial number of the certificate the server on `port` presents.
fn served_serial(certs: &Certificates, port: u16) -> String {
    let handshake = s_client(certs, port, &[]);
    let pem_start = handshake
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate in the handshake");
    let pem_end = handshake
        .find("-----END CERTIFICATE-----")
        .expect("its end")
        + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    use std::io::Write;
    x509.stdin
        .take()
        .expect("stdin")
        .write_all(&handshake.as_bytes()[pem_start..pem_end])
        .expect("write the certificate");
    let out = x509.wait_with_output().expect("openssl x509");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn https_serves_http1_and_http2_and_refuses_plaintext() {
    let certs = Certificates::make("rest");
    certs.issue("server");
    let hp = HttpsStandalone::start(&certs, false);

    let (status, body) = curl(
        &certs,
        hp.port,
        "/api/v1/counter/increment",
        INCREMENT,
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = curl(
        &certs,
        hp.port,
        "/api/v1/counter/tls_post/like",
        &["--http2"],
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"current_value\":1"), "{body}");

    let handshake = s_client(&certs, hp.port, &["-alpn", "h2"]);
    assert!(handshake.contains("ALPN protocol: h2"), "{handshake}");
    assert!(
        handshake.contains("Verify return code: 0 (ok)"),
        "{handshake}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{}/livez", hp.port))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000");
    // A client that does not trust the server's CA refuses it.
    let (status, _) = curl(
        &certs,
        hp.port,
        "/livez",
        &["--cacert", &certs.path("other-ca.crt")],
        None,
    );
    assert_eq!(status, 0);
}

#[test]
fn a_client_ca_requires_a_client_certificate_it_signed() {
    let certs = Certificates::make("rest-mtls");
    certs.issue("server");
    certs.issue("client");
    let hp = HttpsStandalone::start(&certs, true);
    assert_eq!(curl(&certs, hp.port, "/livez", &[], Some("client")).0, 200);
    assert_eq!(
        curl(&certs, hp.port, "/livez", &[], None).0,
        0,
        "no client certificate"
    );
    certs.issue_by("stranger", "other-ca");
    assert_eq!(
        curl(&certs, hp.port, "/livez", &[], Some("stranger")).0,
        0,
        "a client certificate another CA signed"
    );
    let (_, metrics) = curl(&certs, hp.port, "/metrics", &[], Some("client"));
    assert_metric_line(
        &metrics,
        "highpress_tls_handshakes_failed_total{server=\"http\"} 2",
        "both refusals counted",
    );
}

#[test]
fn a_rotated_certificate_is_served_with_no_failed_request() {
    let certs = Arc::new(Certificates::make("rest-rotation"));
    certs.issue("server");
    let hp = HttpsStandalone::start(&certs, false);
    let before = served_serial(&certs, hp.port);
    assert!(before.starts_with("serial="), "{before}");

    // Clients keep asking, each request on a new connection (a new handshake), while the
    // certificate is replaced on disk.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (certs, stop, ok, failed) =
                (certs.clone(), stop.clone(), ok.clone(), failed.clone());
            let port = hp.port;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) =
                        curl(&certs, port, "/api/v1/counter/increment", INCREMENT, None);
                    if status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        eprintln!("failed during rotation: {status} {body}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // The new pair is written aside and renamed in, key first, as a careful operator would;
    // in between the pair does not match, which the server must ride out on the old one.
    certs.issue("next");
    std::fs::rename(certs.path("next.key"), certs.path("server.key")).expect("rename the key");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::rename(certs.path("next.crt"), certs.path("server.crt")).expect("rename the cert");
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let serial = served_serial(&certs, hp.port);
        if serial != before {
            break serial;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a client thread");
    }
    assert_ne!(after, before);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the rotation"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 10,
        "too few requests to show anything"
    );
    let (_, metrics) = curl(&certs, hp.port, "/metrics", &[], None);
    assert_metric_line(
        &metrics,
        "highpress_tls_reloads_total{result=\"loaded\",server=\"http\"} 1",
        "one reload",
    );
}

/// That `/metrics` text has the sample `line`, showing the metric's samples if not.
fn assert_metric_line(metrics: &str, line: &str, what: &str) {
    let name = line.split('{').next().unwrap_or(line);
    let samples: Vec<&str> = metrics.lines().filter(|l| l.starts_with(name)).collect();
    assert!(
        samples.contains(&line),
        "{what}: want {line}, got {samples:?}"
    );
}

/// `curl --http2` POSTing a body that it only starts to send 300 ms after the request's
/// headers, as a client on a busy link may: the status (0 when no HTTP answer came, with
/// curl's error) and the body.
fn curl_http2_late_body(
    certs: &Certificates,
    port: u16,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    use std::io::Write;
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--http2",
            "--max-time",
            "5",
            "--cacert",
            &certs.path("ca.crt"),
        ])
        .args(["-w", "\n%{http_code}", "-X", "POST", "-T", "-"]);
    for header in headers {
        command.args(["-H", header]);
    }
    let mut child = command
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl runs");
    std::thread::sleep(Duration::from_millis(300));
    let mut stdin = child.stdin.take().expect("curl's stdin");
    // curl may have given up on the request already; what it printed says why.
    let _ = stdin.write_all(body.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().expect("curl ends");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (answer, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    match code.trim().parse() {
        Ok(status) if status > 0 => (status, answer.to_owned()),
        _ => (0, String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// Over HTTP/2 a route may answer before the request's body has arrived: the gate's 401, a
/// 415, a 404. The answer must reach a client that is still sending the body, not a reset
/// stream right behind it (which curl reports as error 92 or 52, with no status); and the
/// accepted request with the same late body still counts.
#[test]
fn http2_answers_given_before_the_body_arrives_reach_the_client() {
    const TOKEN: &str = "late-body-token-0123456789";
    let certs = Certificates::make("rest-late-body");
    certs.issue("server");
    let tokens = certs.path("tokens.yaml");
    std::fs::write(
        &tokens,
        format!("tokens:\n  - name: late\n    token: {TOKEN}\n    scopes: [read, write]\n"),
    )
    .expect("write the tokens file");
    let hp = HttpsStandalone::start_with(
        &certs,
        false,
        &[
            ("HIGHPRESS_API__AUTH__ENABLED", "true".to_owned()),
            ("HIGHPRESS_API__AUTH__TOKENS_FILE", tokens),
        ],
    );
    let json = "Content-Type: application/json";
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let body = r#"{"resource_id":"late_body","counter_type":"like","increment":1}"#;
    let increment = "/api/v1/counter/increment";
    for (what, path, headers, status, code) in [
        ("no token", increment, vec![json], 401, "unauthorized"),
        (
            "an unknown token",
            increment,
            vec![json, "Authorization: Bearer unknown-token-0123456789"],
            401,
            "unauthorized",
        ),
        (
            "not JSON",
            increment,
            vec!["Content-Type: text/plain", &bearer],
            415,
            "unsupported_media_type",
        ),
        (
            "no such route",
            "/api/v1/nothing",
            vec![json, &bearer],
            404,
            "not_found",
        ),
    ] {
        let (got, answer) = curl_http2_late_body(&certs, hp.port, path, &headers, body);
        assert_eq!(got, status, "{what}: {answer}");
        assert!(
            answer.contains(&format!("\"code\":\"{code}\"")),
            "{what}: {answer}"
        );
    }
    let (got, answer) = curl_http2_late_body(&certs, hp.port, increment, &[json, &bearer], body);
    assert_eq!(got, 200, "{answer}");
    assert!(
        answer.contains("\"current_value\":1"),
        "only the accepted request counted: {answer}"
    );
}

/// The gateway and the counters over mutual TLS (`grpc.tls`): the gateway finds the counters
/// healthy and counts through them; a counter refuses a client with no certificate, one its CA
/// did not sign, and plain HTTP/2.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_and_counters_talk_mutual_tls_and_counters_refuse_anyone_else() {
    let certs = Certificates::make("grpc-mtls");
    certs.issue("node");
    certs.issue_by("intruder", "other-ca");
    let redis = support::RedisServer::start();
    let store = vec![
        ("HIGHPRESS_STORE__KIND".to_string(), "redis".to_string()),
        ("HIGHPRESS_REDIS__ADDR".to_string(), redis.addr()),
    ];
    let (cert, key, ca) = (
        certs.path("node.crt"),
        certs.path("node.key"),
        certs.path("ca.crt"),
    );
    // Both tiers read the same keys; here they share one certificate (server and client use).
    let hp = support::Highpress::on_store(
        true,
        &store,
        &[
            ("HIGHPRESS_GRPC__TLS__ENABLED", "true"),
            ("HIGHPRESS_GRPC__TLS__CERT_FILE", &cert),
            ("HIGHPRESS_GRPC__TLS__KEY_FILE", &key),
            ("HIGHPRESS_GRPC__TLS__CA_FILE", &ca),
            ("HIGHPRESS_GRPC__TLS__SERVER_NAME", "localhost"),
        ],
    )
    .await;
    for i in 0..20 {
        let (status, body) = hp.increment(&format!("mtls_{}", i % 4), "like", 1).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = support::get_json(&hp.url("/api/v1/counter/mtls_0/like")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["current_value"], 5);

    let counter = hp.counters[0].grpc_addr();
    let port = counter.rsplit(':').next().expect("a port");
    let port: u16 = port.parse().expect("a port number");
    let handshake = |extra: &[&str]| {
        let mut args = vec!["-alpn", "h2"];
        args.extend_from_slice(extra);
        s_client(&certs, port, &args)
    };
    // With the node's certificate the handshake completes.
    let trusted = handshake(&["-cert", &cert, "-key", &key]);
    assert!(trusted.contains("ALPN protocol: h2"), "{trusted}");
    assert!(!trusted.to_lowercase().contains("alert"), "{trusted}");
    // Without one, or with one another CA signed, the counter refuses. (TLS 1.2, where the
    // refusal ends the handshake itself; in TLS 1.3 it comes after the client's last flight,
    // which s_client, with nothing to send, does not wait for.)
    for (what, extra) in [
        ("no client certificate", vec![]),
        (
            "a certificate of another CA",
            vec![
                "-cert".to_string(),
                certs.path("intruder.crt"),
                "-key".to_string(),
                certs.path("intruder.key"),
            ],
        ),
    ] {
        let mut extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        extra.push("-tls1_2");
        let refused = handshake(&extra).to_lowercase();
        assert!(
            refused.contains("alert certificate required")
                || refused.contains("alert unknown ca")
                || refused.contains("alert bad certificate"),
            "{what}: {refused}"
        );
    }
    // Plain HTTP/2 gets no answer.
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code}", &format!("http://{counter}/")])
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000");
    // Each refusal counted on the counter's gRPC port: the two certificates and plain HTTP/2.
    let failed = support::metric(
        &hp.counters[0].metrics_url(),
        r#"highpress_tls_handshakes_failed_total{server="grpc"}"#,
    )
    .await;
    assert_eq!(failed, 3, "refused handshakes counted on the counter");
}
