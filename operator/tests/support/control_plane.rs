//! A real Kubernetes control plane for the end-to-end suite (`tests/control_plane.rs`): started
//! by `scripts/control-plane.sh up` into a scratch dir and stopped by `down` when the handle is
//! dropped, plus the real `kubectl` and `helm` and the operator run as a host process.
//!
//! Teardown never depends on the test finishing: the script's watchdog stops every process it
//! started once this test process exits, however it exits.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::repo_root;

/// `$HIGHPRESS_TOOLS_DIR`, where scripts/install-test-deps.sh puts the binaries.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("HIGHPRESS_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/highpress-tools")
        })
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running control plane.
pub struct ControlPlane {
    dir: PathBuf,
    /// The admin kubeconfig (`system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with three
    /// Ready fake Nodes; panics with the script's output when that fails.
    pub fn up() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "highpress-control-plane-{}-{}",
            std::process::id(),
            free_port()
        ));
        let script = repo_root().join("scripts/control-plane.sh");
        let mut up = Command::new("bash");
        up.arg(&script).arg("up").arg(&dir);
        // A kept cluster (HIGHPRESS_KEEP_CLUSTER) must outlive this process: no watchdog.
        if std::env::var_os("HIGHPRESS_KEEP_CLUSTER").is_none() {
            up.env(
                "HIGHPRESS_CLUSTER_OWNER_PID",
                std::process::id().to_string(),
            );
        }
        let output = up.output().expect("running scripts/control-plane.sh");
        // From here on the handle owns the processes, so a failed start is torn down too.
        let mut cluster = Self {
            kubeconfig: dir.join("kubeconfig"),
            server: String::new(),
            dir,
        };
        assert!(
            output.status.success(),
            "scripts/control-plane.sh up failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let env = std::fs::read_to_string(cluster.dir.join("env")).expect("the cluster's env file");
        cluster.server = env
            .lines()
            .find_map(|l| l.strip_prefix("KUBE_APISERVER="))
            .expect("KUBE_APISERVER in the env file")
            .to_owned();
        cluster
    }

    /// The scratch dir (logs in `logs/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client with the admin kubeconfig.
    pub async fn admin_client(&self) -> Client {
        client_for(&self.kubeconfig).await
    }

    /// `kubectl ARGS` with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.kubeconfig, args)
    }

    /// `kubectl ARGS` with `kubeconfig`.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        tool("kubectl")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .current_dir(repo_root())
            .output()
            .expect("running kubectl")
    }

    /// `kubectl ARGS`, which must succeed; its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        succeeded("kubectl", args, self.kubectl(args))
    }

    /// `helm ARGS` with the admin kubeconfig, which must succeed; its standard output.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        let output = tool("helm")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .current_dir(repo_root())
            .output()
            .expect("running helm");
        succeeded("helm", args, output)
    }

    /// A kubeconfig at `dir/<name>.kubeconfig` holding a fresh token (TokenRequest, 2 h) of the
    /// ServiceAccount `namespace/name`: a client with exactly that account's RBAC.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(&["-n", namespace, "create", "token", name, "--duration=2h"]);
        let ca = self.dir.join("pki/ca.crt");
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: {name}, namespace: {namespace}}}\ncurrent-context: test\n",
            server = self.server,
            ca = ca.display(),
            token = token.trim(),
        );
        std::fs::write(&path, config).expect("writing the ServiceAccount kubeconfig");
        path
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let keep = std::env::var_os("HIGHPRESS_KEEP_CLUSTER").is_some();
        if keep {
            eprintln!(
                "control plane kept running (HIGHPRESS_KEEP_CLUSTER): {0}; stop it with `bash scripts/control-plane.sh down {0}`",
                self.dir.display()
            );
            return;
        }
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/control-plane.sh"))
            .arg("down")
            .arg(&self.dir)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("scripts/control-plane.sh down failed: {status:?}");
        }
    }
}

/// A client for `kubeconfig`.
pub async fn client_for(kubeconfig: &Path) -> Client {
    let config = Kubeconfig::read_from(kubeconfig).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .expect("a client config from the kubeconfig");
    Client::try_from(config).expect("a client")
}

/// A command for a tool of the tools cache (`kubectl`, `helm`, `redis-server` from PATH).
pub fn tool(name: &str) -> Command {
    let cached = tools_dir().join("bin").join(name);
    let mut command = Command::new(if cached.exists() {
        cached.into_os_string()
    } else {
        name.into()
    });
    command.stdin(Stdio::null());
    command
}

fn succeeded(tool: &str, args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "{tool} {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `highpress-operator run` as a host process, with the identity `identity` on the Lease
/// `highpress-operator` in `highpress-system`, logging (text) to `log`.
pub struct OperatorProcess {
    child: Child,
    /// Its `/livez`, `/readyz` and `/metrics` address.
    pub http: SocketAddr,
    /// Its Lease identity.
    pub identity: String,
}

impl OperatorProcess {
    /// Starts the operator with `kubeconfig` and waits until `/readyz` answers 200.
    pub fn start(kubeconfig: &Path, identity: &str, log: &Path) -> Self {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the operator's log file");
        let child = Command::new(env!("CARGO_BIN_EXE_highpress-operator"))
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("HIGHPRESS_OPERATOR_HTTP_ADDR", http.to_string())
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", "highpress-system")
            .env("HIGHPRESS_OPERATOR_LOG_FORMAT", "text")
            .env("HIGHPRESS_OPERATOR_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("starting highpress-operator");
        let process = Self {
            child,
            http,
            identity: identity.to_owned(),
        };
        wait_until(Duration::from_secs(30), "the operator's /readyz", || {
            (http_get(http, "/readyz").map(|(code, _)| code) == Some(200)).then_some(())
        });
        process
    }

    /// `/metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: the process gets no chance to release its Lease.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sum of a Prometheus counter's samples whose labels contain `label` (`""` for all).
pub fn metric_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A plain HTTP/1.0 GET on loopback: status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path, None)
}

/// A plain HTTP/1.0 request with an optional JSON body: status code and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = json.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// Polls `check` every 250 ms until it returns `Some`, for at most `timeout`; panics naming
/// `what` otherwise.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last `lines` lines of a log file, for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(file) = std::fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
