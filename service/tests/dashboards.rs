//! The Grafana dashboards (`charts/highpress/dashboards/*.json`) and Prometheus alert rules
//! (`charts/highpress/rules/*.yaml`) that ship in the chart, checked against real tools, since
//! Grafana itself does not run in the tests:
//!
//! - every dashboard is well-formed (uid, title, `datasource`/`namespace`/`pod` variables, panels
//!   whose targets carry PromQL filtered by `$namespace` and `$pod`; uids unique);
//! - `promtool check rules` and `promtool test rules` pass, every alert has a severity, a summary,
//!   a description, a unit test and a runbook link to a real section of `docs/observability.md`;
//! - a real Prometheus scrapes a real run (redis-server, a gateway with two counters and a
//!   standalone, under load, publishing events to an Apache Kafka broker) with the chart's rule files loaded; every panel query, after Grafana's
//!   variables are substituted, returns data, except the listed panels for components this test
//!   cannot run; every alert expression evaluates, every rule group loads healthy, and the
//!   healthy run raises no alert (the latency alert aside: it depends on this machine's load).
//!
//! A missing `prometheus`, `promtool` or Apache Kafka fails the test (scripts/install-test-deps.sh installs
//! them); nothing is skipped.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Backing, Highpress, Kafka, Topology, client, free_port, get_json, post_json};

/// Panels (by dashboard uid and panel title, or `variable <name>`) whose queries may return no
/// series here. Their queries must still parse and evaluate.
const NO_DATA_EXPECTED: &[(&str, &str, &str)] = &[
    ("highpress-operator", "variable namespace", OPERATOR_NOT_RUN),
    ("highpress-operator", "variable pod", OPERATOR_NOT_RUN),
    (
        "highpress-operator",
        "Reconciles by result",
        OPERATOR_NOT_RUN,
    ),
    (
        "highpress-operator",
        "Reconcile errors by reason",
        OPERATOR_NOT_RUN,
    ),
    ("highpress-operator", "Reconcile duration", OPERATOR_NOT_RUN),
    ("highpress-operator", "Leader", OPERATOR_NOT_RUN),
    ("highpress-operator", "Operator versions", OPERATOR_NOT_RUN),
];

const OPERATOR_NOT_RUN: &str = "this test does not start the operator (the operator crate's tests run it \
     on a real control plane and cover its metrics)";

/// The alerts the chart must ship.
const REQUIRED_ALERTS: [&str; 11] = [
    "HighpressHighErrorRate",
    "HighpressHighLatencyP99",
    "HighpressStoreUnavailable",
    "HighpressCircuitOpen",
    "HighpressNoReadyCounterEndpoints",
    "HighpressOperatorReconcileErrors",
    "HighpressEventsDropping",
    "HighpressEventsOutboxFilling",
    "HighpressEventsRelayLagging",
    "HighpressRateLimiting",
    "HighpressCounterTlsHandshakesFailing",
];

/// The overview's panels that docs/observability.md names (rows Events (Kafka) and
/// Connections and access), each with a metric one of its queries must read.
const NAMED_PANELS: [(&str, &str); 8] = [
    ("Events waiting in the outbox", "highpress_events_queued"),
    (
        "Oldest undelivered event",
        "highpress_events_relay_lag_seconds",
    ),
    ("Events sent per second", "highpress_events_sent_total"),
    (
        "Events dropped per second by reason",
        "highpress_events_dropped_total",
    ),
    (
        "Kafka producer errors per second",
        "highpress_events_producer_errors_total",
    ),
    ("Open connections", "highpress_connections{"),
    (
        "Connections closed by the server",
        "highpress_tls_handshakes_failed_total",
    ),
    ("Requests refused by auth", "highpress_auth_rejected_total"),
];

const RUNBOOK_PREFIX: &str =
    "https://github.com/highpress/highpress/blob/main/docs/observability.md#";

/// The label filter every metric selector in a dashboard query starts with.
const POD_FILTER: &str = r#"{namespace=~"$namespace", pod=~"$pod""#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/highpress")
}

/// The files in `dir` ending in `.ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no *.{ext} in {}", dir.display());
    out
}

/// Every dashboard, by file name.
fn dashboards() -> Vec<(String, Value)> {
    files(&chart_dir().join("dashboards"), "json")
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read dashboard");
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), value)
        })
        .collect()
}

/// Every panel of a dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// A query to run against Prometheus: where it comes from and its PromQL.
struct Query {
    uid: String,
    /// The panel title, or `variable <name>`.
    name: String,
    promql: String,
}

/// Grafana's variables as this test's Prometheus sees them: every series carries
/// `namespace="test"` and the process name as `pod`.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__interval", "5s")
        .replace("$__range", "1m")
        .replace("$namespace", "test")
        .replace("$pod", ".*")
}

/// `label_values(metric{...}, label)` as PromQL: `count by (label) (metric{...})`.
fn label_values_as_promql(query: &str) -> String {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {query}"));
    let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
    format!("count by ({}) ({})", label.trim(), metric.trim())
}

/// Every panel target and variable query of every dashboard, variables substituted.
fn dashboard_queries() -> Vec<Query> {
    let mut out = Vec::new();
    for (_, d) in dashboards() {
        let uid = d["uid"].as_str().expect("uid").to_string();
        for v in d["templating"]["list"].as_array().expect("templating") {
            if v["type"] == "query" {
                out.push(Query {
                    uid: uid.clone(),
                    name: format!("variable {}", v["name"].as_str().expect("name")),
                    promql: substitute(&label_values_as_promql(
                        v["query"]["query"].as_str().expect("variable query"),
                    )),
                });
            }
        }
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(Query {
                    uid: uid.clone(),
                    name: p["title"].as_str().expect("title").to_string(),
                    promql: substitute(t["expr"].as_str().expect("expr")),
                });
            }
        }
    }
    out
}

/// Every metric selector (`highpress_...`) in `expr` that does not start with [`POD_FILTER`].
fn unfiltered_selectors(expr: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("highpress_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !tail[end..].starts_with(POD_FILTER) {
            bad.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    bad
}

#[test]
fn dashboards_are_well_formed_grafana_json() {
    let all = dashboards();
    let names: BTreeSet<&str> = all.iter().map(|(f, _)| f.as_str()).collect();
    for want in [
        "overview.json",
        "counter-storage.json",
        "gateway-routing.json",
        "operator.json",
    ] {
        assert!(names.contains(want), "{want} missing: {names:?}");
    }
    let mut uids = BTreeSet::new();
    let mut named_panels = BTreeSet::new();
    for (file, d) in &all {
        let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{file}: uid"));
        assert!(
            uid.starts_with("highpress-") && uid.len() <= 40,
            "{file}: uid {uid}"
        );
        assert!(uids.insert(uid), "{file}: uid {uid} is not unique");
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{file}: title"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{file}: schemaVersion"
        );
        let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: templating.list"))
            .iter()
            .map(|v| (v["name"].as_str().expect("variable name"), v))
            .collect();
        assert_eq!(vars["datasource"]["type"], "datasource", "{file}");
        assert_eq!(vars["datasource"]["query"], "prometheus", "{file}");
        for name in ["namespace", "pod"] {
            let v = vars
                .get(name)
                .unwrap_or_else(|| panic!("{file}: variable {name}"));
            assert_eq!(v["type"], "query", "{file}: {name}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{file}: {name}");
            let q = v["query"]["query"].as_str().expect("variable query");
            assert!(
                q.starts_with("label_values(") && q.ends_with(&format!(", {name})")),
                "{file}: {name} is {q}"
            );
            assert_eq!(v["definition"], q, "{file}: {name}");
        }
        let mut titles = BTreeSet::new();
        let mut ids = BTreeSet::new();
        let mut queries = 0;
        for p in panels(d) {
            let title = p["title"].as_str().expect("panel title");
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{file}: id"
            );
            for key in ["h", "w", "x", "y"] {
                assert!(p["gridPos"][key].is_u64(), "{file}: {title} gridPos");
            }
            match p["type"].as_str().expect("panel type") {
                "row" => continue,
                "text" => {
                    assert!(p.get("targets").is_none(), "{file}: {title}");
                    continue;
                }
                _ => {}
            }
            assert!(titles.insert(title), "{file}: panel title {title} repeats");
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {title} has no targets");
            let mut ref_ids = BTreeSet::new();
            for t in targets {
                assert!(
                    ref_ids.insert(t["refId"].as_str().expect("refId")),
                    "{file}: {title}"
                );
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}: {title}");
                let expr = t["expr"].as_str().expect("expr");
                if NAMED_PANELS
                    .iter()
                    .any(|&(t, metric)| t == title && expr.contains(metric))
                {
                    named_panels.insert(title);
                }
                let bad = unfiltered_selectors(expr);
                assert!(
                    bad.is_empty() && expr.contains("highpress_"),
                    "{file}: {title}: selectors without {POD_FILTER}: {bad:?} in {expr}"
                );
                if expr.contains("rate(") {
                    assert!(expr.contains("[$__rate_interval]"), "{file}: {title}");
                }
                queries += 1;
            }
        }
        assert!(queries > 0, "{file} has no queries");
    }
    let want: BTreeSet<&str> = NAMED_PANELS.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        named_panels, want,
        "the overview's panels the docs name, each reading its metric"
    );
}

#[test]
fn exceptions_name_panels_that_exist() {
    let queries = dashboard_queries();
    for (uid, name, reason) in NO_DATA_EXPECTED {
        assert!(!reason.is_empty());
        assert!(
            queries.iter().any(|q| q.uid == *uid && q.name == *name),
            "NO_DATA_EXPECTED names {uid} / {name}, which no dashboard has"
        );
    }
}

/// Runs promtool; promtool must be installed, so a missing one fails the test.
fn promtool(args: &[&str], files: &[PathBuf]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .args(files)
        .current_dir(repo_root())
        .output()
        .expect("promtool must be installed (scripts/install-test-deps.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn rule_files() -> Vec<PathBuf> {
    files(&chart_dir().join("rules"), "yaml")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read YAML");
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every rule group of the chart: (file, group).
fn rule_groups() -> Vec<(PathBuf, Value)> {
    rule_files()
        .into_iter()
        .flat_map(|p| {
            let groups = yaml(&p)["groups"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: top-level groups", p.display()))
                .clone();
            groups.into_iter().map(move |g| (p.clone(), g))
        })
        .collect()
}

/// GitHub's anchor for a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_link_to_runbooks() {
    let rules = rule_files();
    promtool(&["check", "rules"], &rules);
    let tests = files(&chart_dir().join("rules/tests"), "yaml");
    let out = promtool(&["test", "rules"], &tests);
    assert!(!out.contains("FAILED"), "{out}");

    let docs = std::fs::read_to_string(repo_root().join("docs/observability.md")).expect("docs");
    let runbooks = docs
        .split_once("\n## Runbooks\n")
        .expect("a Runbooks section")
        .1;
    let runbooks = runbooks.split("\n## ").next().unwrap_or_default();
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(anchor)
        .collect();
    let alerts_table = docs
        .split_once("\n## Alerts\n")
        .expect("an Alerts section")
        .1
        .split("\n## ")
        .next()
        .unwrap_or_default();

    // Every alert the unit tests exercise, with the firing cases apart.
    let mut tested = BTreeSet::new();
    let mut fired = BTreeSet::new();
    for t in &tests {
        for case in yaml(t)["tests"].as_array().expect("tests").iter() {
            for a in case["alert_rule_test"].as_array().into_iter().flatten() {
                let name = a["alertname"].as_str().expect("alertname").to_string();
                if a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()) {
                    fired.insert(name.clone());
                } else {
                    tested.insert(name);
                }
            }
        }
    }

    let mut alerts = BTreeSet::new();
    for (file, group) in rule_groups() {
        for rule in group["rules"].as_array().expect("rules") {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            let at = format!("{}: {name}", file.display());
            assert!(alerts.insert(name.to_string()), "{at}: repeated");
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["critical", "warning", "info"].contains(&severity),
                "{at}: severity {severity}"
            );
            for key in ["summary", "description"] {
                assert!(
                    rule["annotations"][key]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{at}: {key}"
                );
            }
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_default();
            let section = url
                .strip_prefix(RUNBOOK_PREFIX)
                .unwrap_or_else(|| panic!("{at}: runbook_url {url}"));
            assert!(
                anchors.contains(section),
                "{at}: no runbook ### heading for #{section} under ## Runbooks (have {anchors:?})"
            );
            assert!(
                alerts_table.contains(&format!("`{name}`")),
                "{at}: not in the ## Alerts table"
            );
            assert!(fired.contains(name), "{at}: no unit test where it fires");
            assert!(
                tested.contains(name),
                "{at}: no unit test where it stays silent"
            );
        }
    }
    for want in REQUIRED_ALERTS {
        assert!(alerts.contains(want), "{want} missing");
    }
}

/// A private Prometheus with its own data directory, killed on drop.
struct Prometheus {
    base: String,
    dir: PathBuf,
    child: Child,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (pod name, `host:port`) every second with the labels
    /// `namespace="test", pod=<name>`, and evaluating the chart's rule files every second.
    fn start(targets: &[(&str, String)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "highpress-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("scratch dir");
        let static_configs: Vec<Value> = targets
            .iter()
            .map(|(pod, addr)| json!({"targets": [addr], "labels": {"namespace": "test", "pod": pod}}))
            .collect();
        // JSON is YAML: the config needs no YAML writer.
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [chart_dir().join("rules/*.yaml")],
            "scrape_configs": [{"job_name": "highpress", "static_configs": static_configs}],
        });
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus must be installed (scripts/install-test-deps.sh)");
        Self {
            base: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client().get(format!("{}/-/ready", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query: the API's answer (`status`, `data`, `error`).
    async fn query(&self, promql: &str) -> Value {
        let r = client()
            .post(format!("{}/api/v1/query", self.base))
            .form(&[("query", promql)])
            .send()
            .await
            .expect("query sent");
        r.json().await.expect("JSON answer")
    }

    /// The single value of an instant query, if it returned one sample.
    async fn scalar(&self, promql: &str) -> Option<f64> {
        let answer = self.query(promql).await;
        let result = answer["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    async fn rules(&self) -> Value {
        let (status, body) = get_json(&format!("{}/api/v1/rules", self.base)).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Traffic for one deployment until `stop`: increments (200), reads of the same counters (cache
/// hits), batch reads, leaderboards, invalid increments (400) and unknown routes (404).
async fn load(hp: Arc<Highpress>, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (mut ok, mut client_errors) = (0, 0);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("dash{}", i % 8);
        let (s, body) = hp.increment(&id, "like", 1).await;
        assert_eq!(s, 200, "{body}");
        ok += 1;
        let (s, body) = get_json(&hp.url(&format!("/api/v1/counter/{id}/like"))).await;
        assert_eq!(s, 200, "{body}");
        if i.is_multiple_of(4) {
            let (s, body) = post_json(
                &hp.url("/api/v1/counter/batch"),
                &json!({"queries": [{"resource_id": id, "counter_type": "like"}]}),
            )
            .await;
            assert_eq!(s, 200, "{body}");
            let _ = get_json(&hp.url("/api/v1/leaderboard/like")).await;
            let (s, _) = hp.increment(&id, "like", 0).await;
            assert_eq!(s, 400);
            let (s, _) = get_json(&hp.url("/api/v1/nothing-here")).await;
            assert_eq!(s, 404);
            client_errors += 2;
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (ok, client_errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_query_and_alert_expression_evaluates_against_a_live_run() {
    // Events go to a real Kafka-protocol broker, so the events panels show real traffic.
    let broker = Kafka::start();
    broker.create_topic("counter_events", 1).await;
    let events = broker.env("counter_events");
    let mut events: Vec<(&str, &str)> = events
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // This run checks the dashboards, not the deadlines: on a loaded 2-core CI machine a Redis
    // reply, or a gateway-to-counter call, slower than its default deadline (1 s each) turned an
    // increment of the load into a 503.
    events.push(("HIGHPRESS_REDIS__TIMEOUT_MS", "5000"));
    events.push(("HIGHPRESS_GRPC__DEADLINE_MS", "5000"));
    let split = Arc::new(Highpress::start(Topology::Split, &events).await);
    let standalone = Arc::new(Highpress::standalone(Backing::Redis, &events).await);
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = [&split, &standalone]
        .into_iter()
        .map(|hp| tokio::spawn(load(Arc::clone(hp), Arc::clone(&stop))))
        .collect();

    let addr = |port: u16| format!("127.0.0.1:{port}");
    let targets = [
        ("gateway", addr(split.port)),
        ("counter-0", addr(split.counters[0].http_port)),
        ("counter-1", addr(split.counters[1].http_port)),
        ("standalone", addr(standalone.port)),
    ];
    let mut prometheus = Prometheus::start(&targets);
    prometheus.wait_ready().await;

    // Wait (bounded) until every target has been scraped about ten times and every rule group
    // has been evaluated, so rates over 30s have samples.
    let groups_in_files: BTreeSet<String> = rule_groups()
        .iter()
        .map(|(_, g)| g["name"].as_str().expect("group name").to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let scraped = prometheus
            .scalar(r#"count(count_over_time(up{namespace="test"}[1m]) >= 10)"#)
            .await;
        let up = prometheus
            .scalar(r#"count(highpress_build_info{namespace="test"})"#)
            .await;
        let rules = prometheus.rules().await;
        let evaluated = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| {
                g["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
            .count();
        if scraped == Some(targets.len() as f64)
            && up == Some(targets.len() as f64)
            && evaluated == groups_in_files.len()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not enough samples yet (targets scraped 10 times: {scraped:?}, highpress targets: \
             {up:?}, groups evaluated: {evaluated}):\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every dashboard query, under load.
    let mut failures = Vec::new();
    let queries = dashboard_queries();
    for q in &queries {
        let answer = prometheus.query(&q.promql).await;
        let excepted = NO_DATA_EXPECTED
            .iter()
            .any(|(uid, name, _)| *uid == q.uid && *name == q.name);
        if answer["status"] != "success" {
            failures.push(format!(
                "{} / {}: {}\n  {}",
                q.uid, q.name, answer, q.promql
            ));
        } else if !excepted
            && answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
        {
            failures.push(format!("{} / {}: no series\n  {}", q.uid, q.name, q.promql));
        }
    }

    // Every alert expression evaluates; every rule group loaded, with healthy rules.
    let mut alert_count = 0;
    for (file, group) in rule_groups() {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr");
            let answer = prometheus.query(expr).await;
            if answer["status"] != "success" {
                failures.push(format!("{}: {answer}\n  {expr}", file.display()));
            }
            alert_count += 1;
        }
    }
    let rules = prometheus.rules().await;
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .collect();
    let loaded_names: BTreeSet<String> = loaded
        .iter()
        .map(|g| g["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(
        loaded_names, groups_in_files,
        "rule groups Prometheus loaded"
    );
    let loaded_rules: Vec<&Value> = loaded
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    assert_eq!(loaded_rules.len(), alert_count);
    for r in loaded_rules {
        if r["health"] != "ok" {
            failures.push(format!("rule {} is not healthy: {r}", r["name"]));
        }
    }

    // A healthy run raises no alert, not even a pending one: this exercises the joins that keep
    // gateways out of HighpressStoreUnavailable and counters out of
    // HighpressNoReadyCounterEndpoints (every mode exports both gauges). Latency depends on this
    // machine's load, so HighpressHighLatencyP99 is left out.
    let (status, alerts) = get_json(&format!("{}/api/v1/alerts", prometheus.base)).await;
    assert_eq!(status, 200, "{alerts}");
    for alert in alerts["data"]["alerts"].as_array().expect("alerts") {
        if alert["labels"]["alertname"] != "HighpressHighLatencyP99" {
            failures.push(format!("alert active in a healthy run: {alert}"));
        }
    }

    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = 0;
    for l in loads {
        let (ok, client_errors) = l.await.expect("load task");
        assert!(ok > 0 && client_errors > 0);
        acknowledged += ok;
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries and alert expressions failed:\n{}",
        failures.len(),
        queries.len() + alert_count,
        failures.join("\n")
    );

    // The run's own totals agree with what Prometheus scraped last (no timing involved: a scrape
    // may lag, so only an upper bound).
    let scraped_acks = prometheus
        .scalar(r#"sum(highpress_increments_acknowledged_total{namespace="test"})"#)
        .await
        .expect("acknowledged increments scraped");
    assert!(
        scraped_acks > 0.0 && scraped_acks <= acknowledged as f64,
        "scraped {scraped_acks}, acknowledged {acknowledged}"
    );
    let scraped_events = prometheus
        .scalar(r#"sum(highpress_events_sent_total{namespace="test"})"#)
        .await
        .expect("events sent scraped");
    assert!(
        scraped_events > 0.0 && scraped_events <= acknowledged as f64,
        "scraped {scraped_events} events sent, acknowledged {acknowledged}"
    );
}
