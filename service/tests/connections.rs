//! What a client connection may cost a server, tried as an attacker would on loopback against
//! real processes: half-sent headers (slowloris), more connections than the bound, connections
//! that open and then say nothing (HTTP/1 and HTTP/2), a body that never completes, and raw
//! connections piled onto a counter's gRPC port while the gateway keeps counting. Each checks
//! that the server closes what it should, counts it, keeps its descriptors bounded, and goes on
//! answering everyone else. Waits are bounded; none asserts a speed.

mod support;

use std::time::{Duration, Instant};

use support::{Backing, Highpress, Topology, eventually, metric, metric_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Descriptors the process `pid` holds open.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's /proc fd dir")
        .count()
}

/// Whether the server closes `stream` within `within`: reads (discarding what the server says
/// first) until end of stream or a reset.
async fn closed_by_server(mut stream: TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let reading = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, reading).await.is_ok()
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the server")
}

const HALF_A_HEADER: &[u8] =
    b"POST /api/v1/counter/increment HTTP/1.1\r\nHost: highpress\r\nContent-Type: appli";

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_headers_are_closed_at_the_header_timeout_while_others_are_served() {
    const ATTACKERS: usize = 1_000;
    // The default header timeout (10 s): long enough that every attacker is connected and
    // counted before the first is closed, even on a loaded machine (3 s was not, in one CI run).
    let hp = Highpress::standalone(Backing::Memory, &[]).await;
    let baseline = fd_count(hp.pid());
    let mut attackers = Vec::with_capacity(ATTACKERS);
    for _ in 0..ATTACKERS {
        let mut stream = connect(hp.port).await;
        stream.write_all(HALF_A_HEADER).await.expect("write");
        attackers.push(stream);
    }
    let pid = hp.pid();
    eventually(
        &format!("the server holding the attacking connections (baseline {baseline} fds)"),
        Duration::from_secs(10),
        || async move { fd_count(pid) >= baseline + ATTACKERS * 9 / 10 },
    )
    .await;
    let held = fd_count(hp.pid());

    // Everyone else is answered meanwhile.
    for _ in 0..20 {
        let (status, body) = hp.increment("served", "like", 1).await;
        assert_eq!(status, 200, "{body}");
    }

    // Every attacking connection is closed by the server, not left open.
    let started = Instant::now();
    let closed = futures::future::join_all(
        attackers
            .into_iter()
            .map(|s| closed_by_server(s, Duration::from_secs(30))),
    )
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "{open} of {ATTACKERS} half-header connections still open"
    );
    eprintln!(
        "{ATTACKERS} half-header connections held {held} fds (baseline {baseline}); all closed \
         {:?} after the load",
        started.elapsed()
    );
    eventually(
        &format!("descriptors back to the baseline of {baseline}"),
        Duration::from_secs(10),
        || async move { fd_count(pid) <= baseline + 10 },
    )
    .await;
    assert_eq!(hp.value("served", "like").await, 20);
    let timed_out = metric(
        &hp.url("/metrics"),
        r#"highpress_connections_header_timeout_total{server="http"}"#,
    )
    .await;
    // Each attacker, and any idle keep-alive connection of the client above.
    assert!(
        timed_out >= ATTACKERS as u64,
        "{timed_out} header timeouts counted for {ATTACKERS} attackers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_bound_are_closed_at_once_and_counted() {
    const BOUND: usize = 50;
    const OPENED: usize = 80;
    let bound = BOUND.to_string();
    let hp = Highpress::standalone(
        Backing::Memory,
        &[("HIGHPRESS_SERVER__MAX_CONNECTIONS", bound.as_str())],
    )
    .await;
    let baseline = fd_count(hp.pid());
    let mut held = Vec::with_capacity(OPENED);
    for _ in 0..OPENED {
        held.push(connect(hp.port).await);
    }
    // Those beyond the bound are closed at once; the others stay open (they have until the
    // header timeout, 10 s by default, to send a request).
    let kept: Vec<TcpStream> =
        futures::future::join_all(held.into_iter().map(closed_by_server_or_keep))
            .await
            .into_iter()
            .flatten()
            .collect();
    let closed = OPENED - kept.len();
    assert!(
        closed >= OPENED - BOUND,
        "{closed} of {OPENED} connections were closed at once with a bound of {BOUND}"
    );
    assert!(kept.len() <= BOUND, "{} connections kept", kept.len());
    assert!(
        fd_count(hp.pid()) <= baseline + BOUND + 5,
        "{} fds with a bound of {BOUND} (baseline {baseline})",
        fd_count(hp.pid())
    );
    drop(kept);

    // Slots come back as connections close: a new client is served, and the refusals counted.
    eventually(
        "a client served once the held connections are gone",
        Duration::from_secs(20),
        || async {
            support::client()
                .get(hp.url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    let rejected = metric(
        &hp.url("/metrics"),
        r#"highpress_connections_rejected_total{server="http"}"#,
    )
    .await;
    assert!(
        rejected >= (OPENED - BOUND) as u64,
        "{rejected} connections counted as rejected"
    );
}

/// `None` when the server closes `stream` within 3 s, else the stream, still open.
async fn closed_by_server_or_keep(mut stream: TcpStream) -> Option<TcpStream> {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => None,
        Ok(Ok(_)) | Err(_) => Some(stream),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_say_nothing_are_closed_at_the_idle_timeout_over_http1_and_http2() {
    // A header timeout far beyond the idle timeout, so the idle timeout is what closes them.
    let hp = Highpress::standalone(
        Backing::Memory,
        &[
            ("HIGHPRESS_SERVER__HEADER_READ_TIMEOUT_MS", "120000"),
            ("HIGHPRESS_SERVER__IDLE_TIMEOUT_MS", "2000"),
        ],
    )
    .await;
    // HTTP/1: connected, nothing sent.
    let silent = connect(hp.port).await;
    // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame, then nothing.
    let mut h2 = connect(hp.port).await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write the HTTP/2 preface");
    let (silent, h2) = tokio::join!(
        closed_by_server(silent, Duration::from_secs(30)),
        closed_by_server(h2, Duration::from_secs(30))
    );
    assert!(silent, "a silent HTTP/1 connection is closed");
    assert!(h2, "a silent HTTP/2 connection is closed");
    // On a new connection: the shared client's pooled ones idle longer than this server allows.
    let unpooled = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let idle_closed = metric_with(
        &unpooled,
        &hp.url("/metrics"),
        r#"highpress_connections_idle_closed_total{server="http"}"#,
    )
    .await;
    assert!(idle_closed >= 2, "{idle_closed} idle closes counted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_never_completes_gets_408_at_the_body_timeout_and_nothing_is_written() {
    let hp = Highpress::standalone(
        Backing::Memory,
        &[("HIGHPRESS_SERVER__BODY_READ_TIMEOUT_MS", "1500")],
    )
    .await;
    let mut stream = connect(hp.port).await;
    let partial = br#"{"resource_id":"slow","counter_type":"like","user_id":"u1""#;
    let head = format!(
        "POST /api/v1/counter/increment HTTP/1.1\r\nHost: highpress\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        partial.len() + 20
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(partial).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a body that never completes");
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(answer.contains(r#""field":"body""#), "{answer}");
    assert_eq!(hp.value("slow", "like").await, 0, "nothing was written");
    let timed_out = "highpress_http_requests_total{method=\"POST\",mode=\"standalone\",\
                     route=\"/api/v1/counter/increment\",status=\"408\",status_class=\"4xx\"}";
    assert_eq!(metric(&hp.url("/metrics"), timed_out).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counters_grpc_port_keeps_its_bound_while_the_gateway_keeps_counting() {
    const BOUND: usize = 32;
    const PILED: usize = 96;
    let bound = BOUND.to_string();
    let hp = Highpress::start(
        Topology::Split,
        &[("HIGHPRESS_SERVER__MAX_CONNECTIONS", bound.as_str())],
    )
    .await;
    // The gateway's channels to the counters connect on first use: use them all first.
    for i in 0..40 {
        let (status, body) = hp.increment(&format!("g{}", i % 12), "like", 1).await;
        assert_eq!(status, 200, "{body}");
    }
    let counter = &hp.counters[0];
    let baseline = fd_count(counter.pid());
    // Raw connections piled onto the counter's gRPC port, saying nothing.
    let mut piled = Vec::with_capacity(PILED);
    for _ in 0..PILED {
        piled.push(connect(counter.grpc_port).await);
    }
    // The gateway's connections were there first: every increment is still counted. (A channel
    // the gateway opened only now would be refused like any other connection beyond the
    // bound, which is why the counters' port is for the gateways alone: docs/security.md.)
    for i in 0..60 {
        let (status, body) = hp.increment(&format!("g{}", i % 12), "like", 1).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut total = 0;
    for k in 0..12 {
        total += hp.value(&format!("g{k}"), "like").await;
    }
    assert_eq!(total, 100);
    assert!(
        fd_count(counter.pid()) <= baseline + BOUND + 5,
        "{} fds on the counter with a bound of {BOUND} (baseline {baseline})",
        fd_count(counter.pid())
    );
    let rejected = metric(
        &counter.metrics_url(),
        r#"highpress_connections_rejected_total{server="grpc"}"#,
    )
    .await;
    assert!(
        rejected >= (PILED - BOUND) as u64,
        "{rejected} gRPC connections counted as rejected"
    );
    drop(piled);
}
