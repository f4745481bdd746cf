//! A real Jaeger v2 for the end-to-end suite's pod wiring check: the binary
//! `scripts/install-test-deps.sh` builds, configured and run by `scripts/jaeger.sh` (in-memory
//! storage, OTLP/gRPC in and the query API out, on free loopback ports). Killed when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::control_plane::{free_port, http_get, log_tail, wait_until};
use super::repo_root;

pub struct Jaeger {
    /// The OTLP/gRPC receiver's port.
    pub otlp_port: u16,
    query: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl Jaeger {
    /// Starts Jaeger in `dir` and waits (bounded) until its query API answers.
    pub fn start(dir: PathBuf) -> Self {
        let script = repo_root().join("scripts/jaeger.sh");
        let (otlp_port, query_port, query_grpc_port) = (free_port(), free_port(), free_port());
        let config = Command::new("bash")
            .arg(&script)
            .arg("config")
            .arg(&dir)
            .args([
                otlp_port.to_string(),
                query_port.to_string(),
                query_grpc_port.to_string(),
            ])
            .status()
            .expect("bash scripts/jaeger.sh config");
        assert!(config.success(), "scripts/jaeger.sh config failed");
        let log = std::fs::File::create(dir.join("jaeger.log")).expect("Jaeger's log");
        let child = Command::new("bash")
            .arg(&script)
            .arg("run")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("bash scripts/jaeger.sh run (scripts/install-test-deps.sh builds Jaeger)");
        let mut jaeger = Self {
            otlp_port,
            query: SocketAddr::from(([127, 0, 0, 1], query_port)),
            dir,
            child,
        };
        wait_until(Duration::from_secs(60), "Jaeger's query API", || {
            if let Ok(Some(status)) = jaeger.child.try_wait() {
                panic!(
                    "Jaeger exited ({status}):\n{}",
                    log_tail(&jaeger.dir.join("jaeger.log"), 30)
                );
            }
            http_get(jaeger.query, "/api/services").filter(|(code, _)| *code == 200)
        });
        jaeger
    }

    /// The traces Jaeger holds with a span of `service` named `operation`.
    pub fn traces(&self, service: &str, operation: &str) -> Vec<Value> {
        let path = format!(
            "/api/traces?service={service}&operation={}&limit=100",
            operation.replace(' ', "%20").replace('/', "%2F")
        );
        let Some((200, body)) = http_get(self.query, &path) else {
            return Vec::new();
        };
        let body: Value = serde_json::from_str(&body).expect("Jaeger answers JSON");
        body["data"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(service, operation)` of every span of a trace from Jaeger's query API.
pub fn span_names(trace: &Value) -> Vec<(String, String)> {
    let processes = &trace["processes"];
    trace["spans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|span| {
            let process = span["processID"].as_str().unwrap_or_default();
            (
                processes[process]["serviceName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                span["operationName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}
