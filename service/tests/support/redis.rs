//! Real `redis-server` processes for tests: a private append-only server (`RedisServer`), a
//! `redis-cli` on it (`RedisCli`), and a three-master Redis Cluster (`RedisCluster`). Each is
//! killed when dropped.

use super::*;

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

    /// `host:port`, HighGoPress's address form.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
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
