//! Shared fixtures for integration tests: real `redis-server` and `highpress` processes on free
//! loopback ports, an HTTP client, and the consistency-check helpers. A missing `redis-server`
//! fails the test (run `scripts/install-test-deps.sh`); nothing is skipped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768–60999), so that no
/// outgoing connection's source port can take one between the check and the server's bind (a
/// port the kernel picked with `bind(:0)` is exactly such an ephemeral port: that race failed
/// a counter with `Address already in use` under load). Redis Cluster's bus port, the node's
/// port + 10000, lands in 20000–29999, which is never handed out either.
const PORTS: std::ops::Range<u16> = 10_000..20_000;

/// A free TCP port on 127.0.0.1, never the same one twice in this process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    // Test binaries that run one after the other start at different places in the range.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = PORTS.start + u16::try_from(offset).expect("offset < span");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PORTS:?}")
}

fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "highpress-{prefix}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A private `redis-server` with append-only persistence, so a killed server keeps what it
/// acknowledged.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// A Redis Cluster node: started with cluster mode on, queried with redirects followed.
    cluster: bool,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_node(false)
    }

    /// A free port is only free until someone takes it: a server that lost its port to a
    /// concurrent test is started again on another one.
    fn start_node(cluster: bool) -> Self {
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                dir: scratch_dir("redis"),
                child: None,
                cluster,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server found no free port in 5 tries");
    }

    /// Starts `redis-server` and waits until it answers; false when the port was taken (ours
    /// exited, or another server answers there, which `CONFIG GET dir` tells apart).
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(if self.cluster {
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ][..]
            } else {
                &[][..]
            })
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-test-deps.sh)");
        self.child = Some(child);
        let dir = std::fs::canonicalize(&self.dir).expect("scratch dir");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            if self
                .try_cmd(&["CONFIG", "GET", "dir"])
                .is_some_and(|r| r.ends_with(dir.to_string_lossy().as_ref()))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// `host:port`, the original's address form.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server could not restart on port {}",
            self.port
        );
    }

    fn try_cmd(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(if self.cluster { &["-c"][..] } else { &[][..] })
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs a command through `redis-cli` and returns its raw reply.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args).expect("redis-cli answers")
    }

    /// A `redis-cli` handle on this server that other threads can use.
    pub fn cli(&self) -> RedisCli {
        RedisCli {
            port: self.port,
            cluster: self.cluster,
        }
    }

    /// The integer stored at `key` (0 when absent).
    pub fn get_i64(&self, key: &str) -> i64 {
        let v = self.cmd(&["GET", key]);
        if v.is_empty() {
            0
        } else {
            v.parse().expect("integer value")
        }
    }
}

/// `redis-cli` on one server (following cluster redirects on a cluster node).
#[derive(Debug, Clone, Copy)]
pub struct RedisCli {
    port: u16,
    cluster: bool,
}

impl RedisCli {
    /// Sends `commands`, one per line, through one `redis-cli`, as any other Redis client
    /// would; returns the replies, one per line.
    pub fn send_commands(&self, commands: &str) -> String {
        use std::io::Write;
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(if self.cluster { &["-c"][..] } else { &[][..] })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli runs");
        // Written from another thread while this one drains the replies: a long script would
        // otherwise fill both pipes and stall each process on the other.
        let mut stdin = child.stdin.take().expect("stdin");
        let commands = commands.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(commands.as_bytes()));
        let out = child.wait_with_output().expect("redis-cli finishes");
        writer
            .join()
            .expect("the writer thread")
            .expect("commands sent");
        assert!(out.status.success(), "redis-cli failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-master Redis Cluster on loopback, no replicas, append-only with fsync always.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_node(true)).collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        // Bounded: `--cluster create` waits forever for a node that is gone.
        let out = Command::new("timeout")
            .args(["60", "redis-cli", "--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_ok();
        cluster
    }

    /// Waits (bounded) until every node reports `cluster_state:ok`, all slots served and all
    /// three nodes known.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.nodes.iter().all(|n| {
            n.try_cmd(&["CLUSTER", "INFO"]).is_some_and(|i| {
                i.contains("cluster_state:ok")
                    && i.contains("cluster_slots_ok:16384")
                    && i.contains("cluster_known_nodes:3")
            })
        }) {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The seed list for `redis.addr`.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The integer at `key`, wherever it lives.
    pub fn get_i64(&self, key: &str) -> i64 {
        self.nodes[0].get_i64(key)
    }
}

/// Which store a standalone process runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    Memory,
    Redis,
}

/// How highpress is deployed for a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// `highpress standalone` on the embedded store.
    StandaloneMemory,
    /// `highpress standalone` on Redis.
    StandaloneRedis,
    /// `highpress gateway` in front of two `highpress counter` processes on one Redis.
    Split,
    /// `highpress standalone` on a three-master Redis Cluster.
    StandaloneCluster,
}

/// A running `highpress` deployment: the process serving REST, plus counters when split.
pub struct Highpress {
    pub port: u16,
    pub base: String,
    pub topology: Topology,
    child: Option<Child>,
    pub counters: Vec<CounterProcess>,
    pub redis: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
}

/// A `highpress counter` process.
pub struct CounterProcess {
    pub grpc_port: u16,
    pub http_port: u16,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl CounterProcess {
    pub fn spawn(
        redis: &RedisServer,
        env: &[(String, String)],
        grpc_port: u16,
        http_port: u16,
    ) -> Self {
        let mut all = vec![
            ("HIGHPRESS_STORE__KIND".to_string(), "redis".to_string()),
            ("HIGHPRESS_REDIS__ADDR".to_string(), redis.addr()),
            (
                "HIGHPRESS_GRPC__LISTEN".to_string(),
                format!("127.0.0.1:{grpc_port}"),
            ),
        ];
        all.extend(env.iter().cloned());
        let child = spawn_process("counter", http_port, &all);
        Self {
            grpc_port,
            http_port,
            child: Some(child),
            env: env.to_vec(),
        }
    }

    pub fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.http_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        terminate(self.child.take().expect("running"))
    }

    /// Starts again on the same ports.
    pub fn restart(&mut self, redis: &RedisServer) {
        self.kill();
        let env = std::mem::take(&mut self.env);
        *self = Self::spawn(redis, &env, self.grpc_port, self.http_port);
    }

    pub async fn wait_ready(&self) {
        wait_for(&format!("http://127.0.0.1:{}/readyz", self.http_port)).await;
    }
}

impl Drop for CounterProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_process(mode: &str, port: u16, env: &[(String, String)]) -> Child {
    spawn_process_with_args(mode, &[], port, env)
}

fn spawn_process_with_args(
    mode: &str,
    args: &[&str],
    port: u16,
    env: &[(String, String)],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_highpress"))
        .arg(mode)
        .args(args)
        .env("HIGHPRESS_SERVER__HOST", "127.0.0.1")
        .env("HIGHPRESS_SERVER__PORT", port.to_string())
        .env("HIGHPRESS_LOG__LEVEL", "warn")
        .env("HIGHPRESS_LEADERBOARD__FLUSH_INTERVAL_MS", "50")
        .env("HIGHPRESS_DISCOVERY__HEALTH_INTERVAL", "100ms")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn highpress {mode}: {e}"))
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "highpress did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until `url` answers 2xx.
async fn wait_for(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(r) = client().get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} did not become ready");
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Highpress {
    /// `highpress standalone` on `backing`, with extra `HIGHPRESS_*` settings.
    pub async fn standalone(backing: Backing, env: &[(&str, &str)]) -> Self {
        let topology = match backing {
            Backing::Memory => Topology::StandaloneMemory,
            Backing::Redis => Topology::StandaloneRedis,
        };
        Self::start(topology, env).await
    }

    /// Starts `topology`; `env` applies to every highpress process.
    pub async fn start(topology: Topology, env: &[(&str, &str)]) -> Self {
        let env = owned(env);
        let redis = matches!(topology, Topology::StandaloneRedis | Topology::Split)
            .then(RedisServer::start);
        let cluster = (topology == Topology::StandaloneCluster).then(RedisCluster::start);
        let port = free_port();
        let (child, counters) = match topology {
            Topology::StandaloneMemory => (spawn_process("standalone", port, &env), Vec::new()),
            Topology::StandaloneRedis => {
                let r = redis.as_ref().expect("redis");
                let mut all = vec![
                    ("HIGHPRESS_STORE__KIND".to_string(), "redis".to_string()),
                    ("HIGHPRESS_REDIS__ADDR".to_string(), r.addr()),
                ];
                all.extend(env.iter().cloned());
                (spawn_process("standalone", port, &all), Vec::new())
            }
            Topology::StandaloneCluster => {
                let c = cluster.as_ref().expect("cluster");
                let mut all = vec![
                    ("HIGHPRESS_STORE__KIND".to_string(), "redis".to_string()),
                    ("HIGHPRESS_REDIS__CLUSTER".to_string(), "true".to_string()),
                    ("HIGHPRESS_REDIS__ADDR".to_string(), c.seeds()),
                ];
                all.extend(env.iter().cloned());
                (spawn_process("standalone", port, &all), Vec::new())
            }
            Topology::Split => {
                let r = redis.as_ref().expect("redis");
                let counters: Vec<CounterProcess> = (0..2)
                    .map(|_| CounterProcess::spawn(r, &env, free_port(), free_port()))
                    .collect();
                for c in &counters {
                    c.wait_ready().await;
                }
                let endpoints: Vec<String> =
                    counters.iter().map(CounterProcess::grpc_addr).collect();
                let mut all = vec![(
                    "HIGHPRESS_DISCOVERY__ENDPOINTS".to_string(),
                    endpoints.join(","),
                )];
                all.extend(env.iter().cloned());
                (spawn_process("gateway", port, &all), counters)
            }
        };
        let hp = Self {
            port,
            base: format!("http://127.0.0.1:{port}"),
            topology,
            child: Some(child),
            counters,
            redis,
            cluster,
        };
        wait_for(&hp.url("/readyz")).await;
        hp
    }

    /// `highpress standalone --config FILE` on a fresh Redis, FILE holding `config` with
    /// `{redis}` replaced by that Redis's `host:port`. Only the listen address comes from the
    /// environment.
    pub async fn standalone_with_config_file(config: &str) -> Self {
        let redis = RedisServer::start();
        let path = scratch_dir("config").join("config.yaml");
        std::fs::write(&path, config.replace("{redis}", &redis.addr())).expect("config written");
        let port = free_port();
        let child = spawn_process_with_args(
            "standalone",
            &["--config", &path.to_string_lossy()],
            port,
            &[],
        );
        let hp = Self {
            port,
            base: format!("http://127.0.0.1:{port}"),
            topology: Topology::StandaloneRedis,
            child: Some(child),
            counters: Vec::new(),
            redis: Some(redis),
            cluster: None,
        };
        wait_for(&hp.url("/readyz")).await;
        // Read once, at start-up.
        let _ = std::fs::remove_dir_all(path.parent().expect("the scratch dir"));
        hp
    }

    /// The `mode` label of the process serving REST.
    pub fn mode(&self) -> &'static str {
        match self.topology {
            Topology::Split => "gateway",
            _ => "standalone",
        }
    }

    /// `/metrics` URLs of the processes that run the counter engine.
    pub fn engine_metrics_urls(&self) -> Vec<String> {
        match self.topology {
            Topology::Split => self
                .counters
                .iter()
                .map(CounterProcess::metrics_url)
                .collect(),
            _ => vec![self.url("/metrics")],
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        terminate(self.child.take().expect("running"))
    }

    pub fn redis(&mut self) -> &mut RedisServer {
        self.redis.as_mut().expect("a Redis-backed process")
    }

    /// A node of the store: the Redis server, or the first node of the cluster (its commands
    /// follow redirects).
    pub fn store_node(&self) -> &RedisServer {
        match (&self.redis, &self.cluster) {
            (Some(redis), _) => redis,
            (None, Some(cluster)) => &cluster.nodes[0],
            (None, None) => panic!("a Redis-backed deployment"),
        }
    }

    pub async fn increment(
        &self,
        resource_id: &str,
        counter_type: &str,
        delta: i64,
    ) -> (u16, Value) {
        post_json(
            &self.url("/api/v1/counter/increment"),
            &json!({"resource_id": resource_id, "counter_type": counter_type, "user_id": "tester", "increment": delta}),
        )
        .await
    }

    /// The counter's value through the API.
    pub async fn value(&self, resource_id: &str, counter_type: &str) -> i64 {
        let (status, body) =
            get_json(&self.url(&format!("/api/v1/counter/{resource_id}/{counter_type}"))).await;
        assert_eq!(status, 200, "{body}");
        body["data"]["current_value"]
            .as_i64()
            .expect("current_value")
    }
}

impl Drop for Highpress {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client with bounded timeouts; nothing in a test may hang.
pub fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                .build()
                .expect("HTTP client")
        })
        .clone()
}

pub async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request sent");
    read(r).await
}

pub async fn post_raw(
    url: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = client().post(url).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    read(req.send().await.expect("request sent")).await
}

/// `body` without its answer times (`data.timestamp`, `data.updated_at` and each batch
/// result's `updated_at`), after checking that each is the current Unix time in seconds (within
/// a minute, for a loaded machine), so the rest can be compared exactly.
pub fn without_times(mut body: Value) -> Value {
    fn take_time(object: &mut Value, field: &str) {
        let Some(map) = object.as_object_mut() else {
            return;
        };
        if let Some(t) = map.remove(field) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs() as i64;
            let t = t
                .as_i64()
                .unwrap_or_else(|| panic!("{field} {t} is an integer"));
            assert!(
                (now - 60..=now + 60).contains(&t),
                "{field} {t} is now ({now})"
            );
        }
    }
    let data = &mut body["data"];
    take_time(data, "timestamp");
    take_time(data, "updated_at");
    if let Some(results) = data.get_mut("results").and_then(Value::as_array_mut) {
        for result in results {
            take_time(result, "updated_at");
        }
    }
    body
}

pub async fn get_json(url: &str) -> (u16, Value) {
    read(client().get(url).send().await.expect("request sent")).await
}

async fn read(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// The value of an unlabelled metric (`name value` line) at a `/metrics` URL, 0 if absent.
pub async fn metric(url: &str, name: &str) -> u64 {
    let text = client()
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse::<f64>().expect("a number") as u64)
}

/// The `current_value`s of a batch answer, in order.
pub fn batch_values(body: &Value) -> Vec<i64> {
    body["data"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["current_value"].as_i64().expect("current_value"))
        .collect()
}

/// Asserts the error envelope: status, code and (optionally) the field named.
pub fn assert_error(got: &(u16, Value), status: u16, code: &str, field: Option<&str>) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(f) => assert_eq!(body["error"]["field"], f, "{body}"),
        None => assert!(body["error"].get("field").is_none(), "{body}"),
    }
}

/// `name` from `PATH`, else from the tools dir scripts/install-test-deps.sh installs into
/// (`$HIGHPRESS_TOOLS_DIR/bin`, default `~/.cache/highpress-tools/bin`), so a plain `cargo test`
/// finds what `make test` puts on `PATH`.
pub fn tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        let dir = std::env::var_os("HIGHPRESS_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                    .join(".cache/highpress-tools")
            });
        dir.join("bin").join(name)
    })
}

/// A private tansu broker (Apache-2.0, Kafka wire protocol) on a free loopback port with in-memory
/// storage: a restart starts empty. A missing `tansu` fails the test (scripts/install-test-deps.sh
/// installs it); nothing is skipped.
pub struct Tansu {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Tansu {
    pub fn start() -> Self {
        let mut broker = Self {
            port: free_port(),
            dir: scratch_dir("tansu"),
            child: None,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("tansu.log")).expect("tansu log file");
        let bin = tool("tansu");
        let child = Command::new(&bin)
            .arg("broker")
            .args(["--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--kafka-cluster-id", "highpress-test"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "tansu must be installed (scripts/install-test-deps.sh): {}: {e}",
                    bin.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tansu exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu on port {} did not start:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    /// `host:port` for `kafka.brokers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (empty: the storage is in memory).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Creates `topic` with `partitions` partitions (bounded retries while the broker settles).
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .create()
            .expect("admin client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let outcome = admin
                .create_topics(
                    &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))),
                )
                .await;
            match outcome.as_deref() {
                Ok([Ok(_)]) => return,
                Ok([Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))]) => return,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "creating topic {topic}: {other:?}\n{}",
                        self.log()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The `HIGHPRESS_KAFKA__*` settings that publish to this broker's `topic`.
    pub fn env(&self, topic: &str) -> Vec<(String, String)> {
        vec![
            ("HIGHPRESS_KAFKA__ENABLED".into(), "true".into()),
            ("HIGHPRESS_KAFKA__BROKERS".into(), self.addr()),
            ("HIGHPRESS_KAFKA__TOPIC".into(), topic.into()),
        ]
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One consumed event: its partition, message key and JSON payload.
#[derive(Debug, Clone)]
pub struct ConsumedEvent {
    pub partition: i32,
    pub key: String,
    pub event: Value,
}

/// Reads a topic from the beginning of every partition (plain assignment, no consumer group) on
/// its own thread, collecting every event in arrival order until dropped.
pub struct EventCollector {
    events: std::sync::Arc<std::sync::Mutex<Vec<ConsumedEvent>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EventCollector {
    pub fn start(broker: &Tansu, topic: &str, partitions: i32) -> Self {
        use rdkafka::Message;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.addr())
            .set("group.id", format!("highpress-test-{}", free_port()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let mut assignment = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            assignment
                .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (events, stop) = (events.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Errors are transient while the broker is away; the consumer reconnects.
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                        let consumed = ConsumedEvent {
                            partition: m.partition(),
                            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                            event: serde_json::from_slice(m.payload().unwrap_or_default())
                                .unwrap_or(Value::Null),
                        };
                        events.lock().unwrap().push(consumed);
                    }
                }
            })
        };
        Self {
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// Events consumed so far.
    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// A copy of every event consumed so far, in arrival order.
    pub fn events(&self) -> Vec<ConsumedEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (bounded) until `done` holds for the events consumed so far.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[ConsumedEvent]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if done(&self.events.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached; {} events consumed",
                self.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EventCollector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
