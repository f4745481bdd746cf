//! Real `redis-server` processes for tests: a private append-only server (`RedisServer`), a
//! `redis-cli` on it (`RedisCli`), a three-master Redis Cluster (`RedisCluster`), and a primary
//! with two replicas watched by three sentinels (`ReplicatedRedis`). Each is killed when
//! dropped.

use super::*;

/// A private `redis-server` with append-only persistence, so a killed server keeps what it
/// acknowledged.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// A Redis Cluster node: started with cluster mode on, queried with redirects followed.
    cluster: bool,
    /// Arguments of its own (`--replicaof …`), kept for restarts.
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_node(false)
    }

    /// A free port is only free until someone takes it: a server that lost its port to a
    /// concurrent test is started again on another one.
    fn start_node(cluster: bool) -> Self {
        Self::start_with(cluster, &[])
    }

    /// A server with arguments of its own (kept for restarts).
    pub fn start_with_args(extra: &[&str]) -> Self {
        Self::start_with(false, extra)
    }

    /// A replica of the server on `primary_port`.
    pub fn start_replica_of(primary_port: u16) -> Self {
        Self::start_with(
            false,
            &["--replicaof", "127.0.0.1", &primary_port.to_string()],
        )
    }

    fn start_with(cluster: bool, extra: &[&str]) -> Self {
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                dir: scratch_dir("redis"),
                child: None,
                cluster,
                extra: extra.iter().map(|a| a.to_string()).collect(),
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
            .args(&self.extra)
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

    /// `host:port`, HighGoPress's address form.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }

    /// SIGSTOP: frozen, as a node that stopped being scheduled (its connections stay open).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid}");
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
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
        // A frozen process takes SIGKILL too, but thaw it first so nothing is left stopped.
        if self.child.is_some() {
            let _ = Command::new("kill")
                .args([
                    "-CONT",
                    &self.child.as_ref().map_or(0, Child::id).to_string(),
                ])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-master Redis Cluster on loopback, append-only with fsync always; without replicas,
/// or with one per master.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// Replicas per master.
    replicas: usize,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with_replicas(0)
    }

    /// Three masters with `replicas` replicas each (`nodes[0..3]` start as the masters).
    pub fn start_with_replicas(replicas: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| RedisServer::start_node(true))
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        // Bounded: `--cluster create` waits forever for a node that is gone.
        let out = Command::new("timeout")
            .args(["60", "redis-cli", "--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes, replicas };
        cluster.wait_ok();
        cluster
    }

    /// Waits (bounded) until every node reports `cluster_state:ok`, all slots served and all
    /// nodes known, and every master has its replicas online.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        while !self.nodes.iter().all(|n| {
            n.try_cmd(&["CLUSTER", "INFO"]).is_some_and(|i| {
                i.contains("cluster_state:ok")
                    && i.contains("cluster_slots_ok:16384")
                    && i.contains(&known)
            }) && n.try_cmd(&["INFO", "replication"]).is_some_and(|r| {
                !r.contains("role:master") || r.matches("state=online").count() == self.replicas
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

    /// The integer at `key`, wherever it lives (asked through the first running node).
    pub fn get_i64(&self, key: &str) -> i64 {
        self.nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a running node")
            .get_i64(key)
    }

    /// The node that serves `key`'s slot as master now, as the running nodes see it.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let asked = self.nodes.iter().find(|n| n.is_running())?;
        let slot: u16 = asked.cmd(&["CLUSTER", "KEYSLOT", key]).parse().ok()?;
        // `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot ranges…>`
        let table = asked.try_cmd(&["CLUSTER", "NODES"])?;
        let line = table.lines().find(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 8
                && fields[2].contains("master")
                && !fields[2].contains("fail")
                && fields[8..].iter().any(|range| {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                })
        })?;
        let port: u16 = line
            .split_whitespace()
            .nth(1)?
            .split(['@', ':'])
            .nth(1)?
            .parse()
            .ok()?;
        self.nodes.iter().position(|n| n.port == port)
    }

    /// Waits (bounded) until `old` is no longer the master of `key`'s slot.
    pub fn wait_failover(&self, key: &str, old: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(now) = self.master_of(key).filter(|&m| m != old) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "no replica took over from node {old}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The name the sentinels of a [`ReplicatedRedis`] monitor its primary under.
pub const MASTER_NAME: &str = "highpress";

/// A `redis-server --sentinel` process.
pub struct SentinelProcess {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl SentinelProcess {
    /// A sentinel watching the primary on `primary_port`: down after 1 s without an answer,
    /// quorum 2.
    fn start(primary_port: u16) -> Self {
        let port = free_port();
        let dir = scratch_dir("sentinel");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 4000\n\
                 sentinel parallel-syncs {MASTER_NAME} 2\n",
                dir = dir.display()
            ),
        )
        .expect("sentinel.conf written");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-test-deps.sh)");
        Self {
            port,
            dir,
            child: Some(child),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn cmd(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The primary's port as this sentinel knows it.
    pub fn primary_port(&self) -> Option<u16> {
        let reply = self.cmd(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME])?;
        reply.lines().nth(1)?.trim().parse().ok()
    }

    /// A field of `SENTINEL master`, which answers field and value on alternate lines.
    fn master_field(&self, field: &str) -> Option<String> {
        let reply = self.cmd(&["SENTINEL", "master", MASTER_NAME])?;
        let lines: Vec<&str> = reply.lines().collect();
        lines
            .chunks(2)
            .find(|pair| pair[0] == field)
            .and_then(|pair| pair.get(1))
            .map(|v| v.to_string())
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary and two replicas (append-only, fsync always), watched by three sentinels.
pub struct ReplicatedRedis {
    /// Index 0 starts as the primary; after a failover any of them may be.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProcess>,
}

impl ReplicatedRedis {
    pub fn start() -> Self {
        let mut nodes = vec![RedisServer::start()];
        let primary_port = nodes[0].port;
        nodes.extend((0..2).map(|_| RedisServer::start_replica_of(primary_port)));
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(nodes[0].port))
            .collect();
        let set = Self { nodes, sentinels };
        set.wait_settled(set.nodes[0].port);
        set
    }

    /// The settings that point highpress at this set's sentinels.
    pub fn env(&self) -> Vec<(String, String)> {
        let addrs: Vec<String> = self.sentinels.iter().map(SentinelProcess::addr).collect();
        vec![
            ("HIGHPRESS_STORE__KIND".into(), "redis".into()),
            (
                "HIGHPRESS_REDIS__SENTINEL__MASTER_NAME".into(),
                MASTER_NAME.into(),
            ),
            ("HIGHPRESS_REDIS__SENTINEL__ADDRS".into(), addrs.join(",")),
        ]
    }

    /// Which node every sentinel names as the primary, once they agree.
    pub fn primary(&self) -> Option<usize> {
        let ports: Vec<Option<u16>> = self.sentinels.iter().map(|s| s.primary_port()).collect();
        let first = ports[0]?;
        if ports.iter().any(|p| *p != Some(first)) {
            return None;
        }
        self.nodes.iter().position(|n| n.port == first)
    }

    /// How many failovers the sentinels have made since the set started: the highest
    /// `config-epoch` any of them reports (each promotion takes a new epoch).
    pub fn failovers(&self) -> u64 {
        self.sentinels
            .iter()
            .filter_map(|s| s.master_field("config-epoch")?.parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// Waits (bounded) until every sentinel names the node on `primary_port`, sees the other
    /// two nodes as its replicas and the other two sentinels, and the primary has both replicas
    /// online with their link up.
    pub fn wait_settled(&self, primary_port: u16) {
        self.wait_settled_on(Some(primary_port));
    }

    /// [`Self::wait_settled`] on whichever primary the sentinels agree on; returns that node.
    /// After a failover the sentinels may fail over once more before the set settles (a
    /// primary that answered too slowly on a loaded machine looks down to them); acknowledged
    /// increments survive that too, which is what the tests check.
    pub fn wait_settled_any(&self) -> usize {
        self.wait_settled_on(None)
    }

    /// Bounded at 120 s: on a loaded two-core machine a sentinel can enter TILT mode (its
    /// timer saw a jump) and then acts on nothing for 30 s, and a restarted node that replicates
    /// from the wrong server waits for a sentinel to reconfigure it.
    fn wait_settled_on(&self, expected: Option<u16>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let agreed = self.primary().map(|i| self.nodes[i].port);
            if let Some(port) = agreed.filter(|p| expected.is_none_or(|e| e == *p))
                && self.settled_on(port)
            {
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port == port)
                    .expect("a node");
            }
            if Instant::now() >= deadline {
                panic!(
                    "the replicated set did not settle (expected primary {expected:?})\n{}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether every sentinel names the node on `primary_port` and sees two replicas and two
    /// other sentinels, and that node has both replicas online.
    fn settled_on(&self, primary_port: u16) -> bool {
        let sentinels_agree = self.sentinels.iter().all(|s| {
            s.primary_port() == Some(primary_port)
                && s.master_field("num-slaves").as_deref() == Some("2")
                && s.master_field("num-other-sentinels").as_deref() == Some("2")
                && s.master_field("flags").as_deref() == Some("master")
        });
        let primary = self.nodes.iter().find(|n| n.port == primary_port);
        let replicas_online = primary
            .and_then(|p| p.try_cmd(&["INFO", "replication"]))
            .is_some_and(|info| {
                info.contains("role:master") && info.matches("state=online").count() == 2
            });
        sentinels_agree && replicas_online
    }

    /// What each sentinel and node says, for a failure message.
    fn describe(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| {
                format!(
                    "primary {:?}, num-slaves {:?}, num-other-sentinels {:?}, flags {:?}",
                    s.primary_port(),
                    s.master_field("num-slaves"),
                    s.master_field("num-other-sentinels"),
                    s.master_field("flags")
                )
            })
            .collect();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let info = n.try_cmd(&["INFO", "replication"]).unwrap_or_default();
                let brief: Vec<&str> = info
                    .lines()
                    .filter(|l| {
                        l.starts_with("role:")
                            || l.starts_with("master_port:")
                            || l.starts_with("master_link_status:")
                            || l.starts_with("slave")
                    })
                    .collect();
                format!("{}: {}", n.port, brief.join(" "))
            })
            .collect();
        format!("sentinels: {sentinels:#?}\nnodes: {nodes:#?}")
    }

    /// Waits (bounded) until the sentinels agree on a primary other than node `old`.
    pub fn wait_failover(&self, old: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(now) = self.primary().filter(|&p| p != old) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "no failover away from node {old}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The integer at `key` on the current primary.
    pub fn get_i64(&self, key: &str) -> i64 {
        let primary = self.primary().expect("the sentinels agree on a primary");
        self.nodes[primary].get_i64(key)
    }
}
