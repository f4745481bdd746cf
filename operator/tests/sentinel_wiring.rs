//! The replicated managed Redis runs: the Redis and sentinel containers that the builders
//! render for `replicas: 3` are started as real processes on loopback, exactly as their
//! StatefulSets say (command, args and env with Kubernetes' `$(VAR)` expansion, the Secret's
//! password, `POD_NAME` from the downward API), in the order the StatefulSet controller starts
//! them (Redis pods one by one, the sentinels in parallel). The stand-ins, as in the
//! control-plane suite's pod wiring: each pod hostname in the env becomes 127.0.0.1 and its
//! port a free one, the Redis `--port` and `/data` and the sentinel's `--port` and config path
//! are mapped to this machine. They must form a working set: one primary with two connected
//! replicas, three sentinels that agree on it and know one another; and after the primary is
//! killed, the sentinels promote a replica, and the old primary's pod, started again by its
//! script, comes back as a replica of the new primary. Throughout, the operator's own reading
//! of the set ([`replication::observe`], as the read-only sentinel user) names the primary's
//! pod and counts the replicas in sync, as `status.redis` reports them.
//!
//! Every process runs in its own process group, killed when the test ends, pass or fail.

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use highpress_operator::certificates::CertificateAuthority;
use highpress_operator::crd::CounterCluster;
use highpress_operator::reconcile::build::Component;
use highpress_operator::reconcile::build::redis_tls::TLS_SUPERVISE_SCRIPT;
use highpress_operator::reconcile::build::security::{TLS_MOUNT_PATH, leaf_request};
use highpress_operator::reconcile::build::sentinel::{REDIS_START_SCRIPT, SENTINEL_START_SCRIPT};
use highpress_operator::reconcile::build::{BuildContext, build_all};
use highpress_operator::reconcile::replication::{
    self, OBSERVER_USER, RedisPod, Replication, Trust,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Container;
use support::control_plane::http_request;
use support::{CounterClusterFixture, cluster, highpress_binary};

const PASSWORD: &str = "0123456789abcdef0123456789abcdef";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address")
        .port()
}

/// Processes of this test, each in its own process group, killed (the whole group) on drop.
#[derive(Default)]
struct Processes(Vec<(String, Child, PathBuf)>);

impl Processes {
    fn spawn(&mut self, name: &str, mut command: Command, dir: &Path) {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("a log file");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("a log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.0.push((name.to_owned(), child, log));
    }

    fn kill(&mut self, name: &str) {
        let at = self
            .0
            .iter()
            .position(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let (_, mut child, _) = self.0.remove(at);
        kill_group(&mut child);
    }

    /// Stops `name` as the kubelet stops a container: SIGTERM, then SIGKILL after a grace
    /// period.
    fn stop(&mut self, name: &str) {
        let at = self
            .0
            .iter()
            .position(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let (_, mut child, _) = self.0.remove(at);
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_group(&mut child);
    }

    /// Sends TERM to `name`'s own process alone, as the kubelet signals a container's PID 1,
    /// and waits up to 30 s for it to end; whether it ended (the rest is killed either way).
    fn terminate_leader(&mut self, name: &str) -> bool {
        let at = self
            .0
            .iter()
            .position(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let (_, mut child, _) = self.0.remove(at);
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ended = false;
        while Instant::now() < deadline && !ended {
            ended = child.try_wait().ok().flatten().is_some();
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_group(&mut child);
        ended
    }

    fn logs(&self) -> String {
        self.0
            .iter()
            .map(|(name, _, log)| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {name}\n{}\n", tail.join("\n"))
            })
            .collect()
    }
}

fn kill_group(child: &mut Child) {
    // The group id is the child's pid (process_group(0)); the script's redis-cli children die
    // with it.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.0 {
            kill_group(child);
        }
    }
}

/// One pod's identity and where its process listens here.
#[derive(Clone)]
struct Pod {
    name: String,
    host: String,
    port: u16,
}

/// The three pods of the StatefulSet `service` (namespace `apps`), each on a free port.
fn set_pods(service: &str) -> Vec<Pod> {
    (0..3)
        .map(|i| Pod {
            name: format!("{service}-{i}"),
            host: format!("{service}-{i}.{service}.apps.svc"),
            port: free_port(),
        })
        .collect()
}

/// The Redis pods as the sentinels announce them here, for [`replication::observe`].
fn announced(redis_pods: &[Pod]) -> Vec<RedisPod> {
    redis_pods
        .iter()
        .map(|p| RedisPod {
            name: p.name.clone(),
            addr: format!("127.0.0.1:{}", p.port),
        })
        .collect()
}

/// The env of `container` in pod `pod_name` as a kubelet would set it (`$(VAR)` expanded from
/// earlier variables, the Secret's password, the downward API's pod name), then each pod
/// address mapped to loopback: `host:port` to `127.0.0.1:<its port>`, a bare host to 127.0.0.1.
fn container_env(container: &Container, pod_name: &str, pods: &[Pod]) -> BTreeMap<String, String> {
    container_env_with(container, pod_name, pods, &|_| PASSWORD.to_owned())
}

/// [`container_env`] with each Secret's password from `password_of(secret name)`.
fn container_env_with(
    container: &Container,
    pod_name: &str,
    pods: &[Pod],
    password_of: &dyn Fn(&str) -> String,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            expand(value, &env)
        } else {
            let source = var.value_from.as_ref().expect("a value or a source");
            if let Some(secret) = &source.secret_key_ref {
                password_of(&secret.name)
            } else if let Some(field) = &source.field_ref {
                assert_eq!(field.field_path, "metadata.name");
                pod_name.to_owned()
            } else {
                panic!("unsupported env source of {}", var.name)
            }
        };
        env.insert(var.name.clone(), value);
    }
    for value in env.values_mut() {
        for pod in pods {
            let in_cluster = format!("{}:", pod.host);
            let mapped: Vec<String> = value
                .split(' ')
                .map(|word| match word.strip_prefix(&in_cluster) {
                    Some(_) => format!("127.0.0.1:{}", pod.port),
                    None if word == pod.host => "127.0.0.1".to_owned(),
                    None => word.to_owned(),
                })
                .collect();
            *value = mapped.join(" ");
        }
    }
    env
}

fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut text = text.to_owned();
    for (name, value) in env {
        text = text.replace(&format!("$({name})"), value);
    }
    text
}

/// The container's command and args, `$(VAR)` expanded, the port it listens on (`--tls-port`
/// if any, else `--port`) set to `port`, `/data` to `data`, and the TLS mount to the env's
/// `TLS_DIR`.
fn command_line(
    container: &Container,
    env: &BTreeMap<String, String>,
    port: u16,
    data: &Path,
) -> Command {
    let mut words: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|word| expand(word, env))
        .collect();
    let at = words
        .iter()
        .position(|w| w == "--tls-port")
        .or_else(|| words.iter().position(|w| w == "--port"))
        .expect("a --port argument");
    words[at + 1] = port.to_string();
    if let Some(dir) = env.get("TLS_DIR") {
        for word in &mut words {
            *word = word.replace(TLS_MOUNT_PATH, dir);
        }
    }
    for word in &mut words {
        if word == "/data" {
            *word = data.to_string_lossy().into_owned();
        }
    }
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]).env_clear().envs(env).env(
        "PATH",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned()),
    );
    command
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    redis_cli_as(PASSWORD, port, args)
}

/// redis-cli with `password`; its answer (and error text), without carriage returns.
fn redis_cli_as(password: &str, port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args([
            "--no-auth-warning",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(args)
        .env("REDISCLI_AUTH", password)
        .output()
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.replace('\r', "")
        })
        .unwrap_or_default()
}

fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(str::to_owned)
}

fn wait_until<T>(
    processes: &Processes,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            processes.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn only_container(statefulset: &StatefulSet) -> &Container {
    &statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
        .containers[0]
}

fn tools_present() -> bool {
    ["redis-server", "redis-cli", "timeout", "sed", "sh"]
        .iter()
        .all(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

#[test]
fn three_redis_pods_and_three_sentinels_form_a_set_that_fails_over() {
    assert!(
        tools_present(),
        "redis-server, redis-cli, timeout, sed and sh must be on PATH"
    );
    let mut cc = cluster();
    cc.spec.redis.managed.replicas = 3;
    let objects = build_all(&cc.valid(), &BuildContext::default());
    let (_, redis) = objects.redis.expect("Redis");
    let (_, sentinels) = objects.redis_sentinel.expect("sentinels");
    let redis_container = only_container(&redis);
    let sentinel_container = only_container(&sentinels);
    assert_eq!(
        redis_container.command.as_ref().expect("a command")[2],
        REDIS_START_SCRIPT
    );
    assert_eq!(
        sentinel_container.command.as_ref().expect("a command")[2],
        SENTINEL_START_SCRIPT
    );

    let work =
        std::env::temp_dir().join(format!("highpress-sentinel-wiring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("a scratch dir");

    let (redis_pods, sentinel_pods) = (set_pods("likes-redis"), set_pods("likes-redis-sentinel"));
    let all_pods = [redis_pods.clone(), sentinel_pods.clone()].concat();

    let mut processes = Processes::default();
    let start_redis = |processes: &mut Processes, i: usize| {
        let pod = &redis_pods[i];
        let env = container_env(redis_container, &pod.name, &all_pods);
        assert_eq!(env["SELF_HOST"], "127.0.0.1", "{env:?}");
        let data = work.join(&pod.name);
        std::fs::create_dir_all(&data).expect("a data dir");
        let command = command_line(redis_container, &env, pod.port, &data);
        processes.spawn(&pod.name, command, &work);
        wait_until(
            processes,
            Duration::from_secs(20),
            &format!("{} to answer PONG", pod.name),
            || (redis_cli(pod.port, &["ping"]).trim() == "PONG").then_some(()),
        );
    };
    // The StatefulSet controller's order: pod 0, then 1 and 2 once the one before is ready.
    for i in 0..3 {
        start_redis(&mut processes, i);
    }
    // No password, no answer.
    let output = Command::new("redis-cli")
        .args(["-p", &redis_pods[0].port.to_string(), "ping"])
        .output()
        .expect("redis-cli");
    assert!(String::from_utf8_lossy(&output.stdout).contains("NOAUTH"));

    // The sentinels start in parallel.
    for pod in &sentinel_pods {
        let mut env = container_env(sentinel_container, &pod.name, &all_pods);
        let config = work.join(format!("{}.conf", pod.name));
        assert_eq!(env["SENTINEL_CONFIG"], "/etc/sentinel/sentinel.conf");
        env.insert(
            "SENTINEL_CONFIG".to_owned(),
            config.to_string_lossy().into_owned(),
        );
        let command = command_line(sentinel_container, &env, pod.port, &work);
        processes.spawn(&pod.name, command, &work);
    }

    let primary_port = redis_pods[0].port;
    let replicas_online = |port: u16| -> Option<Vec<String>> {
        let info = redis_cli(port, &["info", "replication"]);
        (info_field(&info, "role")? == "master").then_some(())?;
        let replicas: Vec<String> = (0..2)
            .map(|i| info_field(&info, &format!("slave{i}")))
            .collect::<Option<_>>()?;
        (info_field(&info, "connected_slaves")? == "2"
            && replicas.iter().all(|r| r.contains("state=online")))
        .then_some(replicas)
    };
    let replicas = wait_until(
        &processes,
        Duration::from_secs(30),
        "pod 0 to be the primary of two online replicas",
        || replicas_online(primary_port),
    );
    for pod in &redis_pods[1..] {
        assert!(
            replicas
                .iter()
                .any(|r| r.contains(&format!("port={}", pod.port))),
            "{} replicates from pod 0: {replicas:?}",
            pod.name
        );
        let info = redis_cli(pod.port, &["info", "replication"]);
        assert_eq!(info_field(&info, "role").as_deref(), Some("slave"));
        assert_eq!(
            info_field(&info, "master_port").as_deref(),
            Some(primary_port.to_string().as_str())
        );
    }

    let named_primary = |sentinel: &Pod| -> Option<String> {
        let reply = redis_cli(
            sentinel.port,
            &["sentinel", "get-master-addr-by-name", "likes"],
        );
        let lines: Vec<&str> = reply.lines().collect();
        (lines.len() == 2).then(|| format!("{}:{}", lines[0], lines[1]))
    };
    let agreed = |expected: &str| {
        sentinel_pods
            .iter()
            .all(|s| named_primary(s).as_deref() == Some(expected))
    };
    let expected = format!("127.0.0.1:{primary_port}");
    wait_until(
        &processes,
        Duration::from_secs(30),
        "the sentinels to agree on pod 0 and know one another",
        || {
            let know_each_other = sentinel_pods.iter().all(|s| {
                let master = redis_cli(s.port, &["sentinel", "master", "likes"]);
                let lines: Vec<&str> = master.lines().collect();
                lines
                    .windows(2)
                    .any(|w| w[0] == "num-other-sentinels" && w[1] == "2")
                    && lines
                        .windows(2)
                        .any(|w| w[0] == "num-slaves" && w[1] == "2")
            });
            (agreed(&expected) && know_each_other).then_some(())
        },
    );

    // The operator's reading: pod 0 is the primary, with both replicas in sync.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let sentinel_addrs: Vec<String> = sentinel_pods
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let announced = announced(&redis_pods);
    let observed = || {
        runtime.block_on(replication::observe(
            &sentinel_addrs,
            "likes",
            &announced,
            None,
        ))
    };
    let reported = |primary: &str, in_sync: i32| Replication::Known {
        primary: primary.to_owned(),
        in_sync,
    };
    wait_until(
        &processes,
        Duration::from_secs(30),
        "the operator to read pod 0 as the primary with 2 replicas in sync",
        || (observed() == reported("likes-redis-0", 2)).then_some(()),
    );
    // The operator's user reads the topology and can do nothing else.
    let as_observer = |args: &[&str]| {
        let output = Command::new("redis-cli")
            .args(["--no-auth-warning", "-h", "127.0.0.1", "-p"])
            .arg(sentinel_pods[0].port.to_string())
            .args(["--user", OBSERVER_USER, "--pass", "anything"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for refused in [
        &["sentinel", "failover", "likes"][..],
        &["sentinel", "set", "likes", "quorum", "1"],
        &["sentinel", "remove", "likes"],
        &["sentinel", "config", "get", "*"],
    ] {
        let answer = as_observer(refused);
        assert!(
            answer.contains("NOPERM"),
            "{refused:?} as the observer: {answer}"
        );
    }

    // A write on the primary reaches both replicas.
    assert_eq!(
        redis_cli(primary_port, &["set", "c:like:1", "7"]).trim(),
        "OK"
    );
    assert_eq!(
        redis_cli(primary_port, &["wait", "2", "5000"]).trim(),
        "2",
        "both replicas acknowledge"
    );

    // The primary dies: the sentinels promote a replica.
    processes.kill(&redis_pods[0].name);
    let new_primary = wait_until(
        &processes,
        Duration::from_secs(60),
        "the sentinels to fail over to a replica",
        || {
            let named = named_primary(&sentinel_pods[0])?;
            (named != expected && agreed(&named)).then_some(named)
        },
    );
    let new_port: u16 = new_primary
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    wait_until(
        &processes,
        Duration::from_secs(30),
        "the promoted replica to be a primary",
        || {
            let info = redis_cli(new_port, &["info", "replication"]);
            (info_field(&info, "role")?.as_str() == "master").then_some(())
        },
    );
    assert_eq!(redis_cli(new_port, &["get", "c:like:1"]).trim(), "7");
    let new_pod = redis_pods
        .iter()
        .find(|p| p.port == new_port)
        .map(|p| p.name.clone())
        .expect("the promoted pod");
    // The operator names the promoted pod; with pod 0 down, one replica is in sync.
    wait_until(
        &processes,
        Duration::from_secs(30),
        "the operator to read the promoted pod with 1 replica in sync",
        || (observed() == reported(&new_pod, 1)).then_some(()),
    );

    // Pod 0 restarts: its script asks the sentinels and it comes back as a replica.
    start_redis(&mut processes, 0);
    wait_until(
        &processes,
        Duration::from_secs(30),
        "the old primary to replicate from the new one",
        || {
            let info = redis_cli(primary_port, &["info", "replication"]);
            (info_field(&info, "role")? == "slave"
                && info_field(&info, "master_port")? == new_port.to_string()
                && info_field(&info, "master_link_status")? == "up")
                .then_some(())
        },
    );
    let log = std::fs::read_to_string(work.join("likes-redis-0.log")).unwrap_or_default();
    assert!(
        log.contains("names the primary"),
        "pod 0 asked the sentinels: {log}"
    );
    assert_eq!(redis_cli(primary_port, &["get", "c:like:1"]).trim(), "7");
    wait_until(
        &processes,
        Duration::from_secs(30),
        "the new primary to have two online replicas",
        || replicas_online(new_port),
    );
    wait_until(
        &processes,
        Duration::from_secs(30),
        "the operator to read 2 replicas in sync again",
        || (observed() == reported(&new_pod, 2)).then_some(()),
    );

    // Sentinels that are gone leave the primary unknown, with the reason, within the timeout.
    for pod in &sentinel_pods {
        processes.kill(&pod.name);
    }
    let started = Instant::now();
    let unknown = observed();
    assert!(
        matches!(&unknown, Replication::Unknown(why) if why.contains("0 of 3 sentinels")),
        "{unknown:?}"
    );
    assert!(started.elapsed() < replication::OBSERVE_TIMEOUT + Duration::from_secs(1));

    drop(processes);
    let _ = std::fs::remove_dir_all(&work);
}

/// redis-cli with `password`, the commands on its standard input (one connection for all).
fn redis_cli_script(password: &str, port: u16, script: &str) -> String {
    use std::io::Write;
    let child = Command::new("redis-cli")
        .args(["--no-auth-warning", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .env("REDISCLI_AUTH", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return String::new();
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    child
        .wait_with_output()
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.replace('\r', "")
        })
        .unwrap_or_default()
}

/// Whether a Redis or sentinel answer is a refused password.
fn refused(answer: &str) -> bool {
    answer.contains("WRONGPASS") || answer.contains("NOAUTH")
}

/// The port of the primary every sentinel names, asked with `password`.
fn agreed_primary(password: &str, sentinels: &[u16]) -> Option<u16> {
    let named: Vec<Option<u16>> = sentinels
        .iter()
        .map(|port| {
            let reply = redis_cli_as(
                password,
                *port,
                &["sentinel", "get-master-addr-by-name", "likes"],
            );
            let lines: Vec<&str> = reply.lines().collect();
            (lines.len() == 2).then(|| lines[1].parse().ok()).flatten()
        })
        .collect();
    let first = named.first().copied().flatten()?;
    named.iter().all(|n| *n == Some(first)).then_some(first)
}

/// Whether the set has settled, asked with `password`: every sentinel names the same primary
/// as up (`flags` just `master`) with two replicas and two other sentinels, and that primary
/// has both replicas online.
fn settled(password: &str, sentinels: &[u16]) -> bool {
    let Some(primary) = agreed_primary(password, sentinels) else {
        return false;
    };
    let sentinels_agree = sentinels.iter().all(|port| {
        let master = redis_cli_as(password, *port, &["sentinel", "master", "likes"]);
        let lines: Vec<&str> = master.lines().collect();
        let field = |name: &str| lines.windows(2).find(|w| w[0] == name).map(|w| w[1]);
        field("flags") == Some("master")
            && field("num-slaves") == Some("2")
            && field("num-other-sentinels") == Some("2")
    });
    let info = redis_cli_as(password, primary, &["info", "replication"]);
    sentinels_agree
        && info_field(&info, "role").as_deref() == Some("master")
        && info.matches("state=online").count() == 2
}

/// A password rotation (`passwordGeneration` 0 to 1) rolled out as the StatefulSet controller
/// rolls pods (one at a time, highest ordinal first, SIGTERM; a sentinel with a fresh config
/// dir, as a new pod gets a new emptyDir), through its three steps, the Redis and sentinel
/// containers rendered for each step as the status records it. Meanwhile a client writes
/// through whichever primary the sentinels name, each increment acknowledged once a replica
/// has it (`INCR`, then `WAIT 1`, as highpress with `minReplicasAck: 1`), and switches to the
/// new password when the step says the counters do. No answer ever refuses a password, the
/// set settles after every restart (so every replica's `masterauth` and every sentinel's
/// `auth-pass` is accepted), every acknowledged increment is in Redis at the end, and then the
/// old password is refused by every Redis and sentinel.
#[test]
fn a_password_rotation_refuses_no_client_and_loses_no_acknowledged_increment() {
    use highpress_operator::crd::{
        CounterClusterStatus, PasswordRotation, RedisStatus, RotationPhase,
    };
    use highpress_operator::reconcile::build::redis_password::password_secret_name;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    const OLD: &str = "old-password-0123456789abcdef01234";
    const NEW: &str = "new-password-0123456789abcdef01234";
    assert!(
        tools_present(),
        "redis-server, redis-cli, timeout, sed and sh must be on PATH"
    );
    let mut cc = cluster();
    cc.spec.redis.managed.replicas = 3;
    let (old_secret, new_secret) = (password_secret_name(&cc, 0), password_secret_name(&cc, 1));
    let password_of = move |secret: &str| -> String {
        if secret == old_secret {
            OLD.to_owned()
        } else if secret == new_secret {
            NEW.to_owned()
        } else {
            panic!("an unexpected Secret {secret}")
        }
    };
    let render = |cc: &highpress_operator::crd::CounterCluster| {
        let objects = build_all(&cc.clone().valid(), &BuildContext::default());
        let (_, redis) = objects.redis.expect("Redis");
        let (_, sentinels) = objects.redis_sentinel.expect("sentinels");
        (redis, sentinels)
    };

    let work = std::env::temp_dir().join(format!(
        "highpress-password-rotation-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("a scratch dir");
    let (redis_pods, sentinel_pods) = (set_pods("likes-redis"), set_pods("likes-redis-sentinel"));
    let all_pods = [redis_pods.clone(), sentinel_pods.clone()].concat();
    let sentinel_ports: Vec<u16> = sentinel_pods.iter().map(|p| p.port).collect();

    let mut processes = Processes::default();
    let start_redis = |processes: &mut Processes, statefulset: &StatefulSet, i: usize| {
        let pod = &redis_pods[i];
        let container = only_container(statefulset);
        let env = container_env_with(container, &pod.name, &all_pods, &password_of);
        let data = work.join(&pod.name);
        std::fs::create_dir_all(&data).expect("a data dir");
        processes.spawn(
            &pod.name,
            command_line(container, &env, pod.port, &data),
            &work,
        );
        wait_until(
            processes,
            Duration::from_secs(30),
            &format!("{} to answer", pod.name),
            || {
                (redis_cli_as(&env["REDIS_PASSWORD"], pod.port, &["ping"]).trim() == "PONG")
                    .then_some(())
            },
        );
    };
    let start_sentinel = |processes: &mut Processes, statefulset: &StatefulSet, i: usize| {
        let pod = &sentinel_pods[i];
        let container = only_container(statefulset);
        let mut env = container_env_with(container, &pod.name, &all_pods, &password_of);
        let config = work.join(format!("{}.conf", pod.name));
        // A new pod: a new emptyDir, so no config file from before.
        let _ = std::fs::remove_file(&config);
        env.insert(
            "SENTINEL_CONFIG".to_owned(),
            config.to_string_lossy().into_owned(),
        );
        processes.spawn(
            &pod.name,
            command_line(container, &env, pod.port, &work),
            &work,
        );
    };

    let (redis, sentinels) = render(&cc);
    for i in 0..3 {
        start_redis(&mut processes, &redis, i);
    }
    for i in 0..3 {
        start_sentinel(&mut processes, &sentinels, i);
    }
    wait_until(
        &processes,
        Duration::from_secs(60),
        "the set to settle",
        || settled(OLD, &sentinel_ports).then_some(()),
    );

    // The client: one increment at a time through the primary the sentinels name.
    let password = Arc::new(Mutex::new(OLD));
    let stop = Arc::new(AtomicBool::new(false));
    let (acknowledged, attempts, refusals) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Vec::<String>::new())),
    );
    let writer = {
        let (password, stop, acknowledged, attempts, refusals) = (
            password.clone(),
            stop.clone(),
            acknowledged.clone(),
            attempts.clone(),
            refusals.clone(),
        );
        let sentinel_ports = sentinel_ports.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let pw = *password.lock().expect("the password");
                let named = sentinel_ports.iter().find_map(|port| {
                    let reply =
                        redis_cli_as(pw, *port, &["sentinel", "get-master-addr-by-name", "likes"]);
                    if refused(&reply) {
                        refusals
                            .lock()
                            .expect("refusals")
                            .push(format!("sentinel {port}: {reply}"));
                    }
                    reply.lines().nth(1)?.parse::<u16>().ok()
                });
                let Some(primary) = named else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                attempts.fetch_add(1, Ordering::SeqCst);
                let answer = redis_cli_script(pw, primary, "INCR rotation\nWAIT 1 2000\n");
                if refused(&answer) {
                    refusals
                        .lock()
                        .expect("refusals")
                        .push(format!("redis {primary}: {answer}"));
                }
                let lines: Vec<&str> = answer.lines().collect();
                let counted = lines.first().is_some_and(|l| l.parse::<u64>().is_ok());
                let replicated = lines
                    .get(1)
                    .and_then(|l| l.parse::<u64>().ok())
                    .is_some_and(|n| n >= 1);
                if counted && replicated {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let wait_for_more_acks = |processes: &Processes, what: &str| {
        let before = acknowledged.load(Ordering::SeqCst);
        wait_until(processes, Duration::from_secs(60), what, || {
            (acknowledged.load(Ordering::SeqCst) >= before + 20).then_some(())
        });
    };
    wait_for_more_acks(&processes, "increments before the rotation");

    cc.spec.redis.managed.password_generation = 1;
    for (phase, client) in [
        (RotationPhase::AcceptBoth, OLD),
        (RotationPhase::UseNew, NEW),
        (RotationPhase::DropOld, NEW),
    ] {
        cc.status = Some(CounterClusterStatus {
            redis: Some(RedisStatus {
                state: "Ready".to_owned(),
                password_generation: Some(0),
                password_rotation: Some(PasswordRotation {
                    from: 0,
                    to: 1,
                    phase,
                }),
                ..RedisStatus::default()
            }),
            ..CounterClusterStatus::default()
        });
        let (redis, sentinels) = render(&cc);
        // The counters roll at the same time as Redis: the harshest moment for the client is
        // the step's start.
        *password.lock().expect("the password") = client;
        // As the StatefulSet controller rolls each StatefulSet: highest ordinal first, the
        // next once the set has settled again.
        type Start<'a> = &'a dyn Fn(&mut Processes, &StatefulSet, usize);
        let rolls: [(&[Pod], &StatefulSet, Start); 2] = [
            (&redis_pods, &redis, &start_redis),
            (&sentinel_pods, &sentinels, &start_sentinel),
        ];
        for (pods, statefulset, start) in rolls {
            for i in (0..3).rev() {
                processes.stop(&pods[i].name);
                start(&mut processes, statefulset, i);
                wait_until(
                    &processes,
                    Duration::from_secs(120),
                    &format!(
                        "{phase:?}: the set to settle after {} restarted",
                        pods[i].name
                    ),
                    || settled(client, &sentinel_ports).then_some(()),
                );
            }
        }
        wait_for_more_acks(&processes, &format!("increments after {phase:?}"));
        eprintln!(
            "{phase:?} rolled out: {} increments acknowledged of {} attempted",
            acknowledged.load(Ordering::SeqCst),
            attempts.load(Ordering::SeqCst)
        );
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("the writer");

    let refusals = refusals.lock().expect("refusals").clone();
    assert!(refusals.is_empty(), "a client was refused: {refusals:?}");
    let primary = agreed_primary(NEW, &sentinel_ports).expect("a primary");
    let stored: u64 = redis_cli_as(NEW, primary, &["get", "rotation"])
        .trim()
        .parse()
        .expect("a count");
    let (acked, attempted) = (
        acknowledged.load(Ordering::SeqCst),
        attempts.load(Ordering::SeqCst),
    );
    assert!(
        acked <= stored && stored <= attempted,
        "acknowledged {acked} <= stored {stored} <= attempted {attempted}"
    );
    // The old password is refused everywhere, the new one accepted.
    for port in redis_pods.iter().chain(&sentinel_pods).map(|p| p.port) {
        assert!(
            refused(&redis_cli_as(OLD, port, &["ping"])),
            "{port} still takes the old password"
        );
        assert_eq!(redis_cli_as(NEW, port, &["ping"]).trim(), "PONG");
    }
    drop(processes);
    let _ = std::fs::remove_dir_all(&work);
}

/// Writes `component`'s certificate from `ca` into `dir` as the kubelet updates a Secret
/// volume: each file replaced whole.
fn write_certificate(ca: &CertificateAuthority, cc: &CounterCluster, dir: &Path) -> String {
    let issued = ca
        .issue(
            &leaf_request(cc, Component::Redis),
            time::OffsetDateTime::now_utc(),
        )
        .expect("a certificate");
    for (name, text) in [
        ("tls.crt", &issued.cert_pem),
        ("tls.key", &issued.key_pem),
        ("ca.crt", &issued.ca_bundle_pem),
    ] {
        let staged = dir.join(format!(".{name}.new"));
        std::fs::write(&staged, text).expect("a certificate file");
        std::fs::rename(&staged, dir.join(name)).expect("a certificate file");
    }
    issued.cert_pem
}

/// redis-cli over TLS, trusting `ca`, with the password.
fn redis_cli_tls(ca: &Path, port: u16, args: &[&str]) -> String {
    let ca = ca.to_string_lossy();
    let mut all = vec!["--tls", "--cacert", ca.as_ref()];
    all.extend_from_slice(args);
    redis_cli(port, &all)
}

/// SHA-256 fingerprint of the certificate the server on `port` presents, from openssl.
fn served_fingerprint(port: u16) -> Option<String> {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256"
    );
    let output = Command::new("sh").args(["-c", &script]).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    text.contains('=').then_some(text)
}

fn fingerprint_of(pem: &str, dir: &Path) -> String {
    let file = dir.join("expected.crt");
    std::fs::write(&file, pem).expect("a certificate file");
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&file)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `security.tls.redis` as its pods run it: every Redis and sentinel port speaks TLS alone,
/// replication and the sentinels' links included; the operator reads the set over TLS, and
/// only when it trusts the CA; and a renewed certificate, written into the mount as the kubelet
/// writes it, is served by every Redis (reloaded) and every sentinel (restarted) while the set
/// keeps replicating.
#[test]
fn tls_on_the_managed_redis_covers_every_link_and_picks_up_renewed_certificates() {
    assert!(
        tools_present(),
        "redis-server, redis-cli, timeout, sed and sh must be on PATH"
    );
    let mut cc = cluster();
    cc.spec.redis.managed.replicas = 3;
    cc.spec.security.tls.redis = true;
    let objects = build_all(&cc.clone().valid(), &BuildContext::default());
    let (_, redis) = objects.redis.expect("Redis");
    let (_, sentinels) = objects.redis_sentinel.expect("sentinels");
    let redis_container = only_container(&redis);
    let sentinel_container = only_container(&sentinels);
    for container in [redis_container, sentinel_container] {
        assert_eq!(
            container.command.as_ref().expect("a command")[2],
            TLS_SUPERVISE_SCRIPT
        );
    }

    let work = std::env::temp_dir().join(format!("highpress-redis-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let tls_dir = work.join("tls");
    std::fs::create_dir_all(&tls_dir).expect("a scratch dir");
    let ca_file = tls_dir.join("ca.crt");
    let now = time::OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate(now).expect("a CA");
    let first = write_certificate(&ca, &cc, &tls_dir);

    let (redis_pods, sentinel_pods) = (set_pods("likes-redis"), set_pods("likes-redis-sentinel"));
    let all_pods = [redis_pods.clone(), sentinel_pods.clone()].concat();
    let local_env = |container: &Container, pod: &Pod| {
        let mut env = container_env(container, &pod.name, &all_pods);
        assert_eq!(env["TLS_DIR"], TLS_MOUNT_PATH);
        env.insert("TLS_DIR".into(), tls_dir.to_string_lossy().into_owned());
        env.insert("TLS_CHECK_SECONDS".into(), "1".into());
        env.insert("TLS_RESTART_STAGGER_SECONDS".into(), "2".into());
        env
    };

    let mut processes = Processes::default();
    for pod in &redis_pods {
        let env = local_env(redis_container, pod);
        let data = work.join(&pod.name);
        std::fs::create_dir_all(&data).expect("a data dir");
        processes.spawn(
            &pod.name,
            command_line(redis_container, &env, pod.port, &data),
            &work,
        );
        wait_until(
            &processes,
            Duration::from_secs(20),
            &format!("{} to answer PONG over TLS", pod.name),
            || (redis_cli_tls(&ca_file, pod.port, &["ping"]).trim() == "PONG").then_some(()),
        );
    }
    for pod in &sentinel_pods {
        let mut env = local_env(sentinel_container, pod);
        let config = work.join(format!("{}.conf", pod.name));
        env.insert(
            "SENTINEL_CONFIG".to_owned(),
            config.to_string_lossy().into_owned(),
        );
        let command = command_line(sentinel_container, &env, pod.port, &work);
        processes.spawn(&pod.name, command, &work);
    }

    // Plain text gets no answer anywhere.
    for pod in redis_pods.iter().chain(&sentinel_pods) {
        let answer = redis_cli(pod.port, &["ping"]);
        assert!(
            !answer.contains("PONG"),
            "{} answered plain text: {answer}",
            pod.name
        );
    }

    let primary_port = redis_pods[0].port;
    let settled = || {
        let info = redis_cli_tls(&ca_file, primary_port, &["info", "replication"]);
        let replicas_online = info_field(&info, "connected_slaves").as_deref() == Some("2")
            && (0..2).all(|i| {
                info_field(&info, &format!("slave{i}")).is_some_and(|r| r.contains("state=online"))
            });
        let expected = format!("127.0.0.1\n{primary_port}");
        let sentinels_agree = sentinel_pods.iter().all(|s| {
            let master = redis_cli_tls(&ca_file, s.port, &["sentinel", "master", "likes"]);
            let lines: Vec<&str> = master.lines().collect();
            let named = redis_cli_tls(
                &ca_file,
                s.port,
                &["sentinel", "get-master-addr-by-name", "likes"],
            );
            named.trim() == expected
                && lines
                    .windows(2)
                    .any(|w| w[0] == "num-other-sentinels" && w[1] == "2")
                && lines
                    .windows(2)
                    .any(|w| w[0] == "num-slaves" && w[1] == "2")
        });
        (replicas_online && sentinels_agree).then_some(())
    };
    wait_until(
        &processes,
        Duration::from_secs(40),
        "two replicas online over TLS and three sentinels that agree and know one another",
        settled,
    );

    // The operator's reading over TLS: at `localhost`, a name the certificate carries, and
    // only when it trusts the CA.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let sentinel_addrs: Vec<String> = sentinel_pods
        .iter()
        .map(|s| format!("localhost:{}", s.port))
        .collect();
    let announced = announced(&redis_pods);
    let observe = |trust: Option<&Trust>| {
        runtime.block_on(replication::observe(
            &sentinel_addrs,
            "likes",
            &announced,
            trust,
        ))
    };
    let trusted = Trust::Roots(ca.trust_bundle());
    let known = Replication::Known {
        primary: "likes-redis-0".to_owned(),
        in_sync: 2,
    };
    wait_until(
        &processes,
        Duration::from_secs(30),
        "the operator to read pod 0 as the primary with 2 replicas in sync, over TLS",
        || (observe(Some(&trusted)) == known).then_some(()),
    );
    assert_eq!(observe(Some(&Trust::Unverified)), known);
    let stranger = CertificateAuthority::generate(now).expect("a CA");
    let refused = observe(Some(&Trust::Roots(stranger.trust_bundle())));
    assert!(
        matches!(&refused, Replication::Unknown(why) if why.contains("0 of 3")),
        "a CA that did not sign the sentinels' certificate: {refused:?}"
    );
    assert!(
        matches!(observe(None), Replication::Unknown(_)),
        "plain text reaches no sentinel"
    );

    // highpress counts through it as the counters are configured (render_contract checks the
    // rendered config carries these settings): the sentinels and the primary they name over TLS,
    // trusting the Secret's ca.crt, logging in with the password.
    let http_port = free_port();
    let sentinel_list: Vec<String> = sentinel_pods
        .iter()
        .map(|s| format!("localhost:{}", s.port))
        .collect();
    let mut highpress = Command::new(highpress_binary());
    highpress.arg("standalone").envs([
        ("HIGHPRESS_SERVER__HOST", "127.0.0.1".to_owned()),
        ("HIGHPRESS_SERVER__PORT", http_port.to_string()),
        ("HIGHPRESS_STORE__KIND", "redis".to_owned()),
        ("HIGHPRESS_REDIS__ADDR", format!("localhost:{primary_port}")),
        ("HIGHPRESS_REDIS__PASSWORD", PASSWORD.to_owned()),
        ("HIGHPRESS_REDIS__SENTINEL__MASTER_NAME", "likes".to_owned()),
        ("HIGHPRESS_REDIS__SENTINEL__ADDRS", sentinel_list.join(",")),
        ("HIGHPRESS_REDIS__SENTINEL__PASSWORD", PASSWORD.to_owned()),
        ("HIGHPRESS_REDIS__TLS__ENABLED", "true".to_owned()),
        (
            "HIGHPRESS_REDIS__TLS__CA_FILE",
            ca_file.to_string_lossy().into_owned(),
        ),
        ("HIGHPRESS_LOG__LEVEL", "warn".to_owned()),
    ]);
    processes.spawn("highpress", highpress, &work);
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let increment = |resource: &str| {
        let body = format!(
            r#"{{"resource_id":"{resource}","counter_type":"like","user_id":"u1","increment":3}}"#
        );
        http_request(http, "POST", "/api/v1/counter/increment", Some(&body))
    };
    let counted_on_every_pod = |resource: &str| {
        redis_pods.iter().all(|pod| {
            let keys = redis_cli_tls(
                &ca_file,
                pod.port,
                &["--scan", "--pattern", &format!("*{resource}*")],
            );
            keys.lines()
                .any(|key| redis_cli_tls(&ca_file, pod.port, &["get", key]).trim() == "3")
        })
    };
    wait_until(
        &processes,
        Duration::from_secs(30),
        "highpress to acknowledge an increment through the TLS sentinels",
        || matches!(increment("before"), Some((200, _))).then_some(()),
    );
    wait_until(
        &processes,
        Duration::from_secs(10),
        "the increment on the primary and both replicas",
        || counted_on_every_pod("before").then_some(()),
    );

    // A renewed certificate lands in the mount: every Redis and every sentinel serves it.
    let first_fingerprint = fingerprint_of(&first, &work);
    for pod in redis_pods.iter().chain(&sentinel_pods) {
        assert_eq!(
            served_fingerprint(pod.port).as_deref(),
            Some(first_fingerprint.as_str())
        );
    }
    let renewed = fingerprint_of(&write_certificate(&ca, &cc, &tls_dir), &work);
    assert_ne!(renewed, first_fingerprint);
    for pod in redis_pods.iter().chain(&sentinel_pods) {
        wait_until(
            &processes,
            Duration::from_secs(40),
            &format!("{} to serve the renewed certificate", pod.name),
            || (served_fingerprint(pod.port).as_deref() == Some(renewed.as_str())).then_some(()),
        );
    }
    let log = std::fs::read_to_string(work.join("likes-redis-1.log")).unwrap_or_default();
    assert!(log.contains("loaded the renewed certificate"), "{log}");
    let log = std::fs::read_to_string(work.join("likes-redis-sentinel-2.log")).unwrap_or_default();
    assert!(
        log.contains("restarting for the renewed certificate"),
        "{log}"
    );
    // The set is whole again, and a write on the primary reaches both replicas.
    wait_until(
        &processes,
        Duration::from_secs(40),
        "the set to settle after the renewal",
        settled,
    );
    assert_eq!(
        redis_cli_tls(&ca_file, primary_port, &["set", "c:like:1", "7"]).trim(),
        "OK"
    );
    assert_eq!(
        redis_cli_tls(&ca_file, primary_port, &["wait", "2", "5000"]).trim(),
        "2",
        "both replicas acknowledge over TLS"
    );
    wait_until(
        &processes,
        Duration::from_secs(30),
        "the operator to read the set again",
        || (observe(Some(&trusted)) == known).then_some(()),
    );
    // highpress keeps counting across the renewal.
    let (code, body) = increment("after").expect("an answer");
    assert_eq!(code, 200, "{body}");
    wait_until(
        &processes,
        Duration::from_secs(10),
        "the increment after the renewal on every pod",
        || counted_on_every_pod("after").then_some(()),
    );

    drop(processes);
    let _ = std::fs::remove_dir_all(&work);
}

/// The single managed Redis (`replicas: 1`) with `security.tls.redis`: its container, run as
/// written, answers over TLS alone, stops on TERM as the kubelet stops it, and serves a renewed
/// certificate without a restart (the same process keeps the key it was given).
#[test]
fn a_single_tls_redis_reloads_a_renewed_certificate_in_place() {
    assert!(
        tools_present(),
        "redis-server, redis-cli, timeout, sed and sh must be on PATH"
    );
    let mut cc = cluster();
    cc.spec.security.tls.redis = true;
    let objects = build_all(&cc.clone().valid(), &BuildContext::default());
    let (_, redis) = objects.redis.expect("Redis");
    assert!(objects.redis_sentinel.is_none());
    let container = only_container(&redis);

    let work = std::env::temp_dir().join(format!("highpress-single-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let tls_dir = work.join("tls");
    std::fs::create_dir_all(&tls_dir).expect("a scratch dir");
    let ca_file = tls_dir.join("ca.crt");
    let ca = CertificateAuthority::generate(time::OffsetDateTime::now_utc()).expect("a CA");
    let first = fingerprint_of(&write_certificate(&ca, &cc, &tls_dir), &work);

    let pod = Pod {
        name: "likes-redis-0".to_owned(),
        host: "likes-redis".to_owned(),
        port: free_port(),
    };
    let mut env = container_env(container, &pod.name, &[]);
    env.insert("TLS_DIR".into(), tls_dir.to_string_lossy().into_owned());
    env.insert("TLS_CHECK_SECONDS".into(), "1".into());
    let data = work.join("data");
    std::fs::create_dir_all(&data).expect("a data dir");
    let mut processes = Processes::default();
    processes.spawn(
        &pod.name,
        command_line(container, &env, pod.port, &data),
        &work,
    );
    wait_until(
        &processes,
        Duration::from_secs(20),
        "Redis to answer PONG over TLS",
        || (redis_cli_tls(&ca_file, pod.port, &["ping"]).trim() == "PONG").then_some(()),
    );
    assert!(
        !redis_cli(pod.port, &["ping"]).contains("PONG"),
        "plain text answered"
    );
    assert_eq!(
        served_fingerprint(pod.port).as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        redis_cli_tls(&ca_file, pod.port, &["set", "c:like:1", "7"]).trim(),
        "OK"
    );
    let pid_before = redis_cli_tls(&ca_file, pod.port, &["info", "server"]);
    let pid_before = info_field(&pid_before, "process_id");

    let renewed = fingerprint_of(&write_certificate(&ca, &cc, &tls_dir), &work);
    wait_until(
        &processes,
        Duration::from_secs(30),
        "Redis to serve the renewed certificate",
        || (served_fingerprint(pod.port).as_deref() == Some(renewed.as_str())).then_some(()),
    );
    let after = redis_cli_tls(&ca_file, pod.port, &["info", "server"]);
    assert_eq!(
        info_field(&after, "process_id"),
        pid_before,
        "reloaded, not restarted"
    );
    assert_eq!(
        redis_cli_tls(&ca_file, pod.port, &["get", "c:like:1"]).trim(),
        "7"
    );

    // TERM to the container's first process (the supervisor) reaches redis-server, which shuts
    // down as it would when signalled itself, and the container ends.
    assert!(
        processes.terminate_leader(&pod.name),
        "the container ended on TERM"
    );
    let log = std::fs::read_to_string(work.join("likes-redis-0.log")).unwrap_or_default();
    assert!(log.contains("Received SIGTERM"), "{log}");
    assert!(log.contains("ready to exit"), "{log}");
    drop(processes);
    let _ = std::fs::remove_dir_all(&work);
}
