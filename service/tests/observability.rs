//! Observability against real processes: `/metrics` of every mode passes `promtool check
//! metrics`; traces reach an in-test OTLP/gRPC collector (standing in for Jaeger) with
//! the gateway → counter linkage; an unreachable collector costs no request; JSON logs carry the
//! trace id; and the pprof routes serve decodable profiles only when enabled.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use pprof::protos::Message;
use serde_json::{Value, json};
use support::{Backing, Highpress, Topology, client, free_port, post_json};

/// Runs `promtool check metrics` on `text`; promtool must be installed
/// (scripts/install-test-deps.sh), so a missing one fails the test.
fn promtool_check(text: &str, what: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/install-test-deps.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics reported problems for {what}:\n{report}"
    );
}

async fn text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body")
}

fn has_line(text: &str, name: &str, labels: &[&str]) -> bool {
    text.lines()
        .any(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want)))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_of_every_mode_pass_promtool_and_name_their_mode() {
    let split = Highpress::start(Topology::Split, &[]).await;
    let standalone = Highpress::standalone(Backing::Memory, &[]).await;
    for hp in [&split, &standalone] {
        let (s, _) = hp.increment("m1", "like", 2).await;
        assert_eq!(s, 200);
        assert_eq!(hp.value("m1", "like").await, 2);
        let (s, _) = hp.increment("m1", "like", 0).await;
        assert_eq!(s, 400);
    }

    let gateway = text(&split.url("/metrics")).await;
    promtool_check(&gateway, "gateway");
    assert!(has_line(
        &gateway,
        "highpress_http_requests_total",
        &[
            r#"route="/api/v1/counter/increment""#,
            r#"status="400""#,
            r#"status_class="4xx""#,
            r#"mode="gateway""#
        ]
    ));
    assert!(has_line(
        &gateway,
        "highpress_build_info",
        &[r#"mode="gateway""#, r#"version=""#]
    ));
    let owner_calls: u64 = gateway
        .lines()
        .filter(|l| {
            l.starts_with("highpress_gateway_endpoint_calls_total{")
                && l.contains(r#"method="IncrementBatch""#)
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        owner_calls, 1,
        "one increment reached a counter:\n{gateway}"
    );
    for counter in &split.counters {
        let endpoint = format!(r#"endpoint="{}""#, counter.grpc_addr());
        assert!(has_line(
            &gateway,
            "highpress_gateway_breaker_state",
            &[&endpoint, r#"state="closed""#]
        ));
        assert!(has_line(
            &gateway,
            "highpress_gateway_endpoint_up",
            &[&endpoint]
        ));
    }
    assert!(gateway.contains("highpress_gateway_endpoints 2"));
    assert!(gateway.contains("highpress_gateway_batch_size_count 1"));

    let mut increment_batches = 0;
    for counter in &split.counters {
        let metrics = text(&counter.metrics_url()).await;
        promtool_check(&metrics, "counter");
        assert!(has_line(
            &metrics,
            "highpress_build_info",
            &[r#"mode="counter""#]
        ));
        assert!(has_line(
            &metrics,
            "highpress_grpc_server_requests_total",
            &[
                r#"method="Check""#,
                r#"code="OK""#,
                r#"code_class="ok""#,
                r#"mode="counter""#
            ]
        ));
        increment_batches += metrics
            .lines()
            .filter(|l| {
                l.starts_with("highpress_grpc_server_requests_total{")
                    && l.contains(r#"method="IncrementBatch""#)
                    && l.contains(r#"code="OK""#)
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>();
    }
    assert_eq!(increment_batches, 1);

    let standalone_text = text(&standalone.url("/metrics")).await;
    promtool_check(&standalone_text, "standalone");
    assert!(has_line(
        &standalone_text,
        "highpress_http_requests_total",
        &[r#"status_class="2xx""#, r#"mode="standalone""#]
    ));
    for name in [
        "highpress_store_commands_total",
        "highpress_increments_acknowledged_total",
        "highpress_coalescer_flush_duration_seconds_count",
        "highpress_process_resident_memory_bytes",
    ] {
        assert!(
            standalone_text.lines().any(|l| l.starts_with(name)),
            "{name} missing"
        );
    }
}

/// Every span the in-test collector received, flattened with its service name.
#[derive(Default, Clone)]
struct Received(Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Received {
    /// Starts an OTLP/gRPC trace receiver on a free loopback port; returns its endpoint URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    fn find(
        &self,
        service: &str,
        name: &str,
    ) -> Option<opentelemetry_proto::tonic::trace::v1::Span> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(s, span)| s == service && span.name == name)
            .map(|(_, span)| span.clone())
    }

    /// Waits (bounded) for a span named `name` from `service`.
    async fn wait_for(
        &self,
        service: &str,
        name: &str,
    ) -> opentelemetry_proto::tonic::trace::v1::Span {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(span) = self.find(service, name) {
                return span;
            }
            let seen: Vec<String> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|(s, span)| format!("{s}/{}", span.name))
                .collect();
            assert!(
                Instant::now() < deadline,
                "no span {service}/{name}; received {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn tracing_env(endpoint: &str) -> [(&'static str, String); 3] {
    [
        ("HIGHPRESS_TRACING__ENABLED", "true".to_string()),
        ("HIGHPRESS_TRACING__OTLP_ENDPOINT", endpoint.to_string()),
        ("HIGHPRESS_TRACING__SAMPLING_RATIO", "1".to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_request_is_one_trace_down_to_the_counters_flush() {
    let collector = Received::default();
    let endpoint = collector.start().await;
    let env = tracing_env(&endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let hp = Highpress::start(Topology::Split, &env).await;
    let (s, body) = hp.increment("traced", "like", 3).await;
    assert_eq!(s, 200, "{body}");

    let http = collector
        .wait_for("highpress-gateway", "POST /api/v1/counter/increment")
        .await;
    let client = collector
        .wait_for(
            "highpress-gateway",
            "highpress.counter.v1.CounterService/IncrementBatch",
        )
        .await;
    let server = collector
        .wait_for(
            "highpress-counter",
            "highpress.counter.v1.CounterService/IncrementBatch",
        )
        .await;
    let flush = collector
        .wait_for("highpress-counter", "coalescer.flush")
        .await;
    let pipeline = collector
        .wait_for("highpress-counter", "store.pipeline")
        .await;

    assert_eq!(http.trace_id.len(), 16);
    assert!(http.parent_span_id.is_empty(), "the HTTP span is the root");
    assert_eq!(client.trace_id, http.trace_id);
    assert_eq!(client.parent_span_id, http.span_id);
    assert_eq!(server.trace_id, http.trace_id, "one trace across processes");
    assert_eq!(server.parent_span_id, client.span_id);
    assert!(
        flush
            .links
            .iter()
            .any(|l| l.span_id == server.span_id && l.trace_id == server.trace_id),
        "the flush links the gRPC call it served"
    );
    assert_eq!(flush.trace_id, http.trace_id);
    assert_eq!(flush.parent_span_id, server.span_id);
    assert_eq!(pipeline.parent_span_id, flush.span_id);
    assert_eq!(pipeline.trace_id, flush.trace_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_collector_costs_no_request() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let env = tracing_env(&closed);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for topology in [Topology::Split, Topology::StandaloneMemory] {
        let hp = Highpress::start(topology, &env).await;
        let requests = (0..200).map(|i| {
            let url = hp.url("/api/v1/counter/increment");
            async move {
                post_json(
                    &url,
                    &json!({"resource_id": format!("r{}", i % 7), "counter_type": "like", "user_id": "u", "increment": 1}),
                )
                .await
                .0
            }
        });
        let statuses = futures::future::join_all(requests).await;
        assert!(
            statuses.iter().all(|&s| s == 200),
            "{topology:?}: {statuses:?}"
        );
        let mut total = 0;
        for r in 0..7 {
            total += hp.value(&format!("r{r}"), "like").await;
        }
        assert_eq!(total, 200, "{topology:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_lines_inside_a_traced_request_carry_its_trace_id() {
    let port = free_port();
    let log =
        std::env::temp_dir().join(format!("highpress-log-{}-{port}.jsonl", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_highpress"))
        .arg("standalone")
        .env("HIGHPRESS_SERVER__HOST", "127.0.0.1")
        .env("HIGHPRESS_SERVER__PORT", port.to_string())
        .env("HIGHPRESS_LOG__FORMAT", "json")
        .env("HIGHPRESS_LOG__LEVEL", "highpress=debug,warn")
        .env("HIGHPRESS_TRACING__ENABLED", "true")
        .env("HIGHPRESS_TRACING__SAMPLING_RATIO", "1")
        .env(
            "HIGHPRESS_TRACING__OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while client().get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "standalone did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let response = client()
        .post(format!("{base}/api/v1/counter/increment"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&json!({"resource_id": "logged", "counter_type": "like", "user_id": "u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The request's debug line is written when it completes; wait (bounded) for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let mut text = String::new();
        std::fs::File::open(&log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v["fields"]["message"] == "request"
                    && v["fields"]["route"] == "/api/v1/counter/increment"
            });
        if let Some(v) = found {
            break v;
        }
        assert!(Instant::now() < deadline, "no request log line:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    assert_eq!(line["level"], "DEBUG", "{line}");
    assert_eq!(line["span"]["trace_id"], trace_id, "{line}");
    assert_eq!(line["fields"]["status"], 200, "{line}");
}

/// A client for profile requests: building a profile symbolizes a debug binary, which can take
/// far longer than the shared client's 10 s on a loaded machine.
fn profile_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(180))
        .build()
        .expect("HTTP client")
}

async fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let r = profile_client()
        .get(url)
        .send()
        .await
        .expect("request sent");
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("body").to_vec())
}

fn string_table_has(profile: &pprof::protos::Profile, s: &str) -> bool {
    profile.string_table.iter().any(|t| t == s)
}

#[tokio::test(flavor = "multi_thread")]
async fn pprof_routes_serve_decodable_profiles_only_when_enabled() {
    let off = Highpress::standalone(Backing::Memory, &[]).await;
    for path in ["/debug/pprof/profile?seconds=1", "/debug/pprof/heap"] {
        let (s, _) = get_bytes(&off.url(path)).await;
        assert_eq!(s, 404, "{path} without pprof.enabled");
    }
    drop(off);

    let hp = Highpress::standalone(Backing::Memory, &[("HIGHPRESS_PPROF__ENABLED", "true")]).await;
    for bad in ["seconds=0", "seconds=61", "seconds=soon"] {
        let got = support::get_json(&hp.url(&format!("/debug/pprof/profile?{bad}"))).await;
        support::assert_error(&got, 400, "invalid_argument", Some("seconds"));
    }

    // Keep the process busy while it is profiled, so the profile has samples.
    let load = {
        let url = hp.url("/api/v1/counter/increment");
        tokio::spawn(async move {
            for i in 0..2_000 {
                post_json(
                    &url,
                    &json!({"resource_id": format!("p{}", i % 50), "counter_type": "like", "user_id": "u"}),
                )
                .await;
            }
        })
    };
    let (s, body) = get_bytes(&hp.url("/debug/pprof/profile?seconds=1")).await;
    load.abort();
    assert_eq!(s, 200);
    let profile = pprof::protos::Profile::decode(body.as_slice()).expect("pprof protobuf");
    assert!(!profile.sample_type.is_empty());
    assert!(string_table_has(&profile, "cpu") || string_table_has(&profile, "samples"));
    assert!(profile.duration_nanos > 0);

    let (s, gz) = get_bytes(&hp.url("/debug/pprof/heap")).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&gz));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut raw)
        .expect("gzip-compressed");
    let heap = pprof::protos::Profile::decode(raw.as_slice()).expect("pprof protobuf");
    assert!(!heap.sample_type.is_empty());
    assert!(string_table_has(&heap, "inuse_space"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_cpu_profile_while_one_runs_gets_409() {
    let hp = Highpress::standalone(Backing::Memory, &[("HIGHPRESS_PPROF__ENABLED", "true")]).await;
    let url = hp.url("/debug/pprof/profile?seconds=3");
    let (a, b) = tokio::join!(get_bytes(&url), get_bytes(&url));
    let (ok, refused) = if a.0 == 200 { (a, b) } else { (b, a) };
    assert_eq!(ok.0, 200);
    let refused_body: serde_json::Value =
        serde_json::from_slice(&refused.1).expect("a JSON error envelope");
    assert_eq!(refused.0, 409, "{refused_body}");
    assert_eq!(refused_body["error"]["code"], "profile_in_progress");
}
