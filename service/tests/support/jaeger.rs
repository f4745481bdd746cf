//! A real Jaeger v2 for the trace tests: `cmd/jaeger` all-in-one on in-memory storage, its
//! OTLP/gRPC receiver and query API on free loopback ports, with the config that
//! `scripts/jaeger.sh config` writes (the binary is built by scripts/install-test-deps.sh; a
//! missing one fails the test). The helpers read traces back the way the Jaeger UI does, through
//! the query API (`/api/services`, `/api/operations`, `/api/traces`, `/api/traces/{id}`), in
//! Jaeger's own model: spans with an operation name, a service, tags and references (`CHILD_OF`
//! for the parent, `FOLLOWS_FROM` for an OpenTelemetry span link).

use super::*;

/// How long Jaeger may take to answer on both ports after it is started.
const JAEGER_READY: Duration = Duration::from_secs(60);

/// How long spans may take to show up in Jaeger: the exporters send every second, and the
/// machine may be loaded.
pub const TRACES_ARRIVE: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/jaeger.sh")
}

/// A running Jaeger; killed (and its scratch dir removed) when dropped.
pub struct Jaeger {
    /// The OTLP/gRPC receiver.
    pub otlp_port: u16,
    /// The query API (HTTP).
    pub query_port: u16,
    query_grpc_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Jaeger {
    /// Starts Jaeger on free loopback ports and waits until it accepts spans and answers
    /// queries. A free port is only free until someone takes it: a Jaeger that could not bind
    /// is started again on other ports.
    pub async fn start() -> Self {
        let bin = Command::new("bash")
            .arg(script())
            .arg("bin")
            .output()
            .expect("run bash scripts/jaeger.sh bin");
        assert!(
            bin.status.success(),
            "the trace tests need Jaeger v2: {}",
            String::from_utf8_lossy(&bin.stderr).trim()
        );
        let mut last_log = String::new();
        for _ in 0..5 {
            let mut jaeger = Self {
                otlp_port: free_port(),
                query_port: free_port(),
                query_grpc_port: free_port(),
                dir: scratch_dir("jaeger"),
                child: None,
            };
            if jaeger.spawn().await {
                return jaeger;
            }
            last_log = jaeger.log();
        }
        panic!("Jaeger did not start in 5 tries; its last log:\n{last_log}");
    }

    /// Writes the config and starts Jaeger; true once it serves both ports, false when it
    /// exited (a port was taken).
    async fn spawn(&mut self) -> bool {
        let config = Command::new("bash")
            .arg(script())
            .arg("config")
            .arg(&self.dir)
            .args([
                self.otlp_port.to_string(),
                self.query_port.to_string(),
                self.query_grpc_port.to_string(),
            ])
            .status()
            .expect("run bash scripts/jaeger.sh config");
        assert!(config.success(), "scripts/jaeger.sh config failed");
        let log = std::fs::File::create(self.dir.join("jaeger.log")).expect("Jaeger's log file");
        // jaeger.sh execs the binary: the child is Jaeger itself.
        let child = Command::new("bash")
            .arg(script())
            .arg("run")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run bash scripts/jaeger.sh run");
        self.child = Some(child);
        let deadline = Instant::now() + JAEGER_READY;
        loop {
            if let Some(child) = &mut self.child
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            if self.is_ready().await {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "Jaeger was not ready within {JAEGER_READY:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn is_ready(&self) -> bool {
        let query = client()
            .get(self.url("/api/services"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        query
            && tokio::net::TcpStream::connect(("127.0.0.1", self.otlp_port))
                .await
                .is_ok()
    }

    /// What Jaeger wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("jaeger.log")).unwrap_or_default()
    }

    /// The endpoint highpress exports to (`tracing.otlp_endpoint`).
    pub fn otlp_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_port)
    }

    /// The `HIGHPRESS_TRACING__*` settings that export every span (`sampling_ratio` 1) to this
    /// Jaeger; `ratio` overrides the ratio, `None` keeps the default.
    pub fn tracing_env(&self, ratio: Option<&str>) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("HIGHPRESS_TRACING__ENABLED", "true".to_string()),
            ("HIGHPRESS_TRACING__OTLP_ENDPOINT", self.otlp_endpoint()),
        ];
        if let Some(ratio) = ratio {
            env.push(("HIGHPRESS_TRACING__SAMPLING_RATIO", ratio.to_string()));
        }
        env
    }

    /// A URL of the query API.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.query_port)
    }

    /// SIGKILL, as a crash would; what it stored is gone.
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }

    /// Starts again on the same ports, with empty storage.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn().await,
            "Jaeger could not restart on its ports:\n{}",
            self.log()
        );
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let r = client()
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .expect("Jaeger's query API answers");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("Jaeger answered {path} with non-JSON ({e}): {text}"));
        (status, body)
    }

    /// The services Jaeger has spans of (`GET /api/services`).
    pub async fn services(&self) -> Vec<String> {
        let (status, body) = self.get("/api/services", &[]).await;
        assert_eq!(status, 200, "{body}");
        strings(&body["data"])
    }

    /// The operations of `service`, with their span kinds (`GET /api/operations`).
    pub async fn operations(&self, service: &str) -> Vec<(String, String)> {
        let (status, body) = self.get("/api/operations", &[("service", service)]).await;
        assert_eq!(status, 200, "{body}");
        body["data"]
            .as_array()
            .map(|ops| {
                ops.iter()
                    .map(|op| {
                        (
                            op["name"].as_str().unwrap_or_default().to_string(),
                            op["spanKind"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The traces a search in the UI finds (`GET /api/traces`): those with a span of
    /// `search.service` (and of `search.operation`, and with every tag of `search.tags`).
    pub async fn find(&self, search: &Search<'_>) -> Vec<Trace> {
        let tags = search.tags_json();
        let limit = search.limit.to_string();
        let mut query = vec![("service", search.service), ("limit", limit.as_str())];
        if let Some(op) = search.operation {
            query.push(("operation", op));
        }
        if let Some(tags) = &tags {
            query.push(("tags", tags.as_str()));
        }
        let (status, body) = self.get("/api/traces", &query).await;
        assert_eq!(status, 200, "{body}");
        traces(&body)
    }

    /// One trace by id (`GET /api/traces/{id}`), or `None` while Jaeger has none of its spans.
    pub async fn trace(&self, trace_id: &str) -> Option<Trace> {
        let (status, body) = self.get(&format!("/api/traces/{trace_id}"), &[]).await;
        match status {
            404 => None,
            200 => traces(&body).into_iter().next(),
            _ => panic!("GET /api/traces/{trace_id}: {status} {body}"),
        }
    }

    /// Polls (bounded by [`TRACES_ARRIVE`]) until `done` holds for the trace `trace_id`.
    pub async fn wait_trace(&self, trace_id: &str, done: impl Fn(&Trace) -> bool) -> Trace {
        let deadline = Instant::now() + TRACES_ARRIVE;
        loop {
            let trace = self.trace(trace_id).await;
            if let Some(t) = &trace
                && done(t)
            {
                return trace.expect("checked");
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} incomplete in Jaeger after {TRACES_ARRIVE:?}: {}",
                trace.map_or("no span of it".to_string(), |t| t.outline())
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls (bounded by [`TRACES_ARRIVE`]) until `done` holds for what `search` finds.
    pub async fn wait_find(
        &self,
        search: &Search<'_>,
        done: impl Fn(&[Trace]) -> bool,
    ) -> Vec<Trace> {
        let deadline = Instant::now() + TRACES_ARRIVE;
        loop {
            let found = self.find(search).await;
            if done(&found) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "after {TRACES_ARRIVE:?}, Jaeger's search {search:?} found {} trace(s): {}",
                found.len(),
                found
                    .iter()
                    .take(5)
                    .map(Trace::outline)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A trace search, as in the UI's search form.
#[derive(Debug, Clone)]
pub struct Search<'a> {
    pub service: &'a str,
    pub operation: Option<&'a str>,
    pub tags: Vec<(&'a str, &'a str)>,
    pub limit: usize,
}

impl<'a> Search<'a> {
    /// Every trace with a span of `service` (up to 100000).
    pub fn service(service: &'a str) -> Self {
        Self {
            service,
            operation: None,
            tags: Vec::new(),
            limit: 100_000,
        }
    }

    pub fn operation(mut self, operation: &'a str) -> Self {
        self.operation = Some(operation);
        self
    }

    pub fn tag(mut self, key: &'a str, value: &'a str) -> Self {
        self.tags.push((key, value));
        self
    }

    fn tags_json(&self) -> Option<String> {
        (!self.tags.is_empty()).then(|| {
            let map: serde_json::Map<String, Value> = self
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect();
            Value::Object(map).to_string()
        })
    }
}

/// A reference between spans: `CHILD_OF` (the parent) or `FOLLOWS_FROM` (a span link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub ref_type: String,
    pub trace_id: String,
    pub span_id: String,
}

/// One span as Jaeger shows it.
#[derive(Debug, Clone)]
pub struct JaegerSpan {
    pub trace_id: String,
    pub span_id: String,
    pub operation: String,
    /// The process's `serviceName`.
    pub service: String,
    pub references: Vec<Reference>,
    /// `{"key", "type", "value"}` objects, as the API gives them.
    pub tags: Vec<Value>,
    /// The process's tags (the OpenTelemetry resource, `service.name` aside).
    pub process_tags: Vec<Value>,
    pub warnings: Vec<String>,
}

impl JaegerSpan {
    /// The tag `key`: its Jaeger type (`string`, `int64`, `bool`, ...) and value.
    pub fn tag(&self, key: &str) -> Option<(&str, &Value)> {
        self.tags
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| (t["type"].as_str().unwrap_or_default(), &t["value"]))
    }

    /// The value of tag `key` as text, whatever its type.
    pub fn tag_text(&self, key: &str) -> Option<String> {
        self.tag(key).map(|(_, v)| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The `CHILD_OF` reference, if any.
    pub fn parent(&self) -> Option<&Reference> {
        self.references.iter().find(|r| r.ref_type == "CHILD_OF")
    }

    /// The `FOLLOWS_FROM` references: the span's links.
    pub fn links(&self) -> Vec<&Reference> {
        self.references
            .iter()
            .filter(|r| r.ref_type == "FOLLOWS_FROM")
            .collect()
    }

    /// Whether the Jaeger UI shows the span as failed: a tag `error` that is true.
    pub fn is_error(&self) -> bool {
        matches!(self.tag("error"), Some((_, Value::Bool(true))))
            || self.tag("error").is_some_and(|(_, v)| v == "true")
    }

    fn outline(&self) -> String {
        format!("{}/{}", self.service, self.operation)
    }
}

/// One trace as `/api/traces` gives it.
#[derive(Debug, Clone)]
pub struct Trace {
    pub trace_id: String,
    pub spans: Vec<JaegerSpan>,
    /// The whole trace as JSON, for searching it for values that must not be there.
    pub json: Value,
}

impl Trace {
    /// The spans of `service` named `operation`.
    pub fn spans_named(&self, service: &str, operation: &str) -> Vec<&JaegerSpan> {
        self.spans
            .iter()
            .filter(|s| s.service == service && s.operation == operation)
            .collect()
    }

    /// The one span of `service` named `operation`; fails the test if there is not exactly one.
    pub fn span(&self, service: &str, operation: &str) -> &JaegerSpan {
        let found = self.spans_named(service, operation);
        assert_eq!(
            found.len(),
            1,
            "one {service}/{operation} span in trace {}: {}",
            self.trace_id,
            self.outline()
        );
        found[0]
    }

    /// The span with id `span_id`.
    pub fn by_id(&self, span_id: &str) -> Option<&JaegerSpan> {
        self.spans.iter().find(|s| s.span_id == span_id)
    }

    /// The spans whose parent is not in the trace: the root, or a span whose parent is a
    /// remote caller's.
    pub fn roots(&self) -> Vec<&JaegerSpan> {
        self.spans
            .iter()
            .filter(|s| s.parent().is_none_or(|p| self.by_id(&p.span_id).is_none()))
            .collect()
    }

    /// `service/operation` of every span, for failure messages.
    pub fn outline(&self) -> String {
        let spans: Vec<String> = self.spans.iter().map(JaegerSpan::outline).collect();
        format!("{} [{}]", self.trace_id, spans.join(", "))
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The traces of an `/api/traces` answer.
fn traces(body: &Value) -> Vec<Trace> {
    let Some(data) = body["data"].as_array() else {
        return Vec::new();
    };
    data.iter()
        .map(|t| {
            let processes = &t["processes"];
            let spans = t["spans"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    let process = &processes[s["processID"].as_str().unwrap_or_default()];
                    JaegerSpan {
                        trace_id: text(&s["traceID"]),
                        span_id: text(&s["spanID"]),
                        operation: text(&s["operationName"]),
                        service: text(&process["serviceName"]),
                        references: s["references"]
                            .as_array()
                            .map(Vec::as_slice)
                            .unwrap_or_default()
                            .iter()
                            .map(|r| Reference {
                                ref_type: text(&r["refType"]),
                                trace_id: text(&r["traceID"]),
                                span_id: text(&r["spanID"]),
                            })
                            .collect(),
                        tags: s["tags"].as_array().cloned().unwrap_or_default(),
                        process_tags: process["tags"].as_array().cloned().unwrap_or_default(),
                        warnings: strings(&s["warnings"]),
                    }
                })
                .collect();
            Trace {
                trace_id: text(&t["traceID"]),
                spans,
                json: t.clone(),
            }
        })
        .collect()
}
