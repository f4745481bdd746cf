//! `highpress` deployments for tests, in every `Topology`: a standalone in the test's own
//! process, or real processes (a standalone, or a gateway in front of counters: `Highpress`,
//! `CounterProcess`). Each is stopped when dropped.

use super::*;

/// Which store a standalone process runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    Memory,
    Redis,
}

/// How highpress is deployed for a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Standalone on the embedded store, served by `server::run` inside the test process on a
    /// listener the test bound to port 0: no process, no port to race for. Metrics are
    /// process-wide, so a case that counts them runs on `StandaloneMemory` instead.
    InProcessMemory,
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
    /// Stops the in-process server (`Topology::InProcessMemory`).
    in_process: Option<tokio_util::sync::DropGuard>,
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

/// The settings that point highpress at one Redis server.
fn redis_env(redis: &RedisServer) -> Vec<(String, String)> {
    vec![
        ("HIGHPRESS_STORE__KIND".to_string(), "redis".to_string()),
        ("HIGHPRESS_REDIS__ADDR".to_string(), redis.addr()),
    ]
}

impl CounterProcess {
    pub fn spawn(
        redis: &RedisServer,
        env: &[(String, String)],
        grpc_port: u16,
        http_port: u16,
    ) -> Self {
        let mut all = redis_env(redis);
        all.extend(env.iter().cloned());
        Self::spawn_on(&all, grpc_port, http_port)
    }

    /// A counter whose `env` names its store.
    pub fn spawn_on(env: &[(String, String)], grpc_port: u16, http_port: u16) -> Self {
        let mut all = vec![(
            "HIGHPRESS_GRPC__LISTEN".to_string(),
            format!("127.0.0.1:{grpc_port}"),
        )];
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
        kill_and_reap(&mut self.child);
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        terminate(self.child.take().expect("running"))
    }

    /// Starts again on the same ports and settings.
    pub fn restart(&mut self) {
        self.kill();
        let env = std::mem::take(&mut self.env);
        *self = Self::spawn_on(&env, self.grpc_port, self.http_port);
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

/// The settings every highpress a test starts gets, before the test's own.
const PROCESS_DEFAULTS: &[(&str, &str)] = &[
    ("HIGHPRESS_SERVER__HOST", "127.0.0.1"),
    ("HIGHPRESS_LOG__LEVEL", "warn"),
    ("HIGHPRESS_LEADERBOARD__FLUSH_INTERVAL_MS", "50"),
    ("HIGHPRESS_DISCOVERY__HEALTH_INTERVAL", "100ms"),
];

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
        .envs(PROCESS_DEFAULTS.iter().copied())
        .env("HIGHPRESS_SERVER__PORT", port.to_string())
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

/// Two counters with `engine_env` (their store included), ready, and a gateway in front of them
/// on `port` with `env`.
async fn split(
    port: u16,
    engine_env: &[(String, String)],
    env: &[(String, String)],
) -> (Child, Vec<CounterProcess>) {
    let counters: Vec<CounterProcess> = (0..2)
        .map(|_| CounterProcess::spawn_on(engine_env, free_port(), free_port()))
        .collect();
    for c in &counters {
        c.wait_ready().await;
    }
    let endpoints: Vec<String> = counters.iter().map(CounterProcess::grpc_addr).collect();
    let mut all = vec![(
        "HIGHPRESS_DISCOVERY__ENDPOINTS".to_string(),
        endpoints.join(","),
    )];
    all.extend(env.iter().cloned());
    (spawn_process("gateway", port, &all), counters)
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
        if topology == Topology::InProcessMemory {
            return Self::in_process(env).await;
        }
        let env = owned(env);
        let redis = matches!(topology, Topology::StandaloneRedis | Topology::Split)
            .then(RedisServer::start);
        let cluster = (topology == Topology::StandaloneCluster).then(RedisCluster::start);
        let port = free_port();
        let (child, counters) = match topology {
            Topology::InProcessMemory => unreachable!("started above"),
            Topology::StandaloneMemory => (spawn_process("standalone", port, &env), Vec::new()),
            Topology::StandaloneRedis => {
                let mut all = redis_env(redis.as_ref().expect("redis"));
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
                let mut store = redis_env(redis.as_ref().expect("redis"));
                store.extend(env.iter().cloned());
                split(port, &store, &env).await
            }
        };
        let hp = Self {
            port,
            base: format!("http://127.0.0.1:{port}"),
            topology,
            child: Some(child),
            in_process: None,
            counters,
            redis,
            cluster,
        };
        hp.wait_started().await;
        hp
    }

    /// Waits until the process serving REST is ready and, split, has seen every counter.
    async fn wait_started(&self) {
        wait_for(&self.url("/readyz")).await;
        // A gateway is ready only after it has checked every counter once, so each counter
        // owns its keys from the first request on.
        for c in &self.counters {
            let up = format!(
                "highpress_gateway_endpoint_up{{endpoint=\"{}\"}}",
                c.grpc_addr()
            );
            assert_eq!(
                metric(&self.url("/metrics"), &up).await,
                1,
                "the gateway was ready before it saw {} serving",
                c.grpc_addr()
            );
        }
    }

    /// A standalone, or a gateway in front of two counters (`split`), on the store that
    /// `store_env` names (and that the test owns); `env` applies to every process.
    pub async fn on_store(
        split_tiers: bool,
        store_env: &[(String, String)],
        env: &[(&str, &str)],
    ) -> Self {
        let env = owned(env);
        let mut engine = store_env.to_vec();
        engine.extend(env.iter().cloned());
        let port = free_port();
        let (topology, (child, counters)) = if split_tiers {
            (Topology::Split, split(port, &engine, &env).await)
        } else {
            (
                Topology::StandaloneRedis,
                (spawn_process("standalone", port, &engine), Vec::new()),
            )
        };
        let hp = Self {
            port,
            base: format!("http://127.0.0.1:{port}"),
            topology,
            child: Some(child),
            in_process: None,
            counters,
            redis: None,
            cluster: None,
        };
        hp.wait_started().await;
        hp
    }

    /// Standalone on the memory store, run by `server::run` on this test's runtime, with the
    /// settings a spawned process gets plus `env`.
    async fn in_process(env: &[(&str, &str)]) -> Self {
        use ::highpress::server::{self, Listeners, Mode};
        let mut vars = PROCESS_DEFAULTS.to_vec();
        vars.extend_from_slice(env);
        let config = ::highpress::config::Config::from_vars(&vars).expect("test configuration");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let port = http.local_addr().expect("bound address").port();
        let listeners = Listeners { http, grpc: None };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone().drop_guard();
        tokio::spawn(async move {
            if let Err(e) = server::run(Mode::Standalone, config, listeners, shutdown).await {
                panic!("in-process standalone failed: {e:#}");
            }
        });
        let hp = Self {
            port,
            base: format!("http://127.0.0.1:{port}"),
            topology: Topology::InProcessMemory,
            child: None,
            in_process: Some(stop),
            counters: Vec::new(),
            redis: None,
            cluster: None,
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
            in_process: None,
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
        kill_and_reap(&mut self.child);
    }
}
