//! `highpress migrate-keys` on a real Redis and a real Redis Cluster: 20,000 HighGoPress
//! counters are copied into highpress's layout while a HighGoPress-style writer and highpress
//! itself keep incrementing. The first run is killed halfway, then resumed, then run again
//! after the writers stopped, and once more: every total is exact at the end, and the last run
//! changes nothing.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Highpress, RedisCli, RedisServer, Topology, post_json};

const COUNTERS: usize = 20_000;
/// Counters that both writers keep incrementing during the migration.
const HOT: usize = 200;
/// Increments per hot counter, by each writer.
const ROUNDS: usize = 5;

fn resource_id(i: usize) -> String {
    format!("m{i}")
}

fn initial(i: usize) -> i64 {
    (i % 97) as i64 + 1
}

/// `highpress migrate-keys` against the store `env` names.
fn migrate_command(env: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_highpress"));
    command
        .args(["migrate-keys", "--page-size", "10"])
        .env("HIGHPRESS_LOG__LEVEL", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stderr(Stdio::inherit());
    command
}

/// Runs the migration to the end and returns its summary line.
fn migrate(env: &[(String, String)]) -> String {
    let out = migrate_command(env)
        .stdout(Stdio::piped())
        .output()
        .expect("migrate-keys runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "migrate-keys failed: {stdout}");
    stdout
}

/// The number before `label` in a summary line.
fn count(summary: &str, label: &str) -> u64 {
    let before = &summary[..summary
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {summary}"))];
    before
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("a count before {label} in {summary}"))
}

/// Integer values of `keys`, read through `cli` (0 for a missing key).
fn values(cli: RedisCli, keys: &[String]) -> Vec<i64> {
    let commands: String = keys.iter().map(|k| format!("GET {k}\n")).collect();
    cli.send_commands(&commands)
        .lines()
        .filter(|l| !l.starts_with("-> Redirected"))
        .map(|l| l.parse().unwrap_or(0))
        .collect()
}

async fn killed_resumed_and_repeated(hp: Highpress, store_env: Vec<(String, String)>) {
    let node: &RedisServer = hp.store_node();
    let cli = node.cli();
    let prefill: String = (0..COUNTERS)
        .map(|i| format!("SET counter:{}:like {}\n", resource_id(i), initial(i)))
        .chain(
            // Not valid highpress counters: left alone and counted as skipped.
            ["counter:no_type", "counter:Bad Key:like", "counter:x:Like"]
                .iter()
                .map(|k| format!("SET \"{k}\" 5\n")),
        )
        .collect();
    cli.send_commands(&prefill);

    // Both services keep writing: HighGoPress-style +1s on the hot source keys, and +1s
    // through highpress (its own layout) on the hot destination keys.
    let original_writer = std::thread::spawn(move || {
        for _ in 0..ROUNDS {
            let round: String = (0..HOT)
                .map(|i| format!("INCRBY counter:{}:like 1\n", resource_id(i)))
                .collect();
            cli.send_commands(&round);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let highpress_writer = {
        let url = hp.url("/api/v1/counter/increment");
        tokio::spawn(async move {
            for _ in 0..ROUNDS {
                for i in 0..HOT {
                    let (status, body) = post_json(
                        &url,
                        &json!({"resource_id": resource_id(i), "counter_type": "like"}),
                    )
                    .await;
                    assert_eq!(status, 200, "{body}");
                }
            }
        })
    };

    // The first run, killed once it has copied half of the counters (and so saved a cursor).
    let mut first = migrate_command(&store_env)
        .stdout(Stdio::null())
        .spawn()
        .expect("migrate-keys starts");
    let nodes: Vec<&RedisServer> = match &hp.cluster {
        Some(cluster) => cluster.nodes.iter().collect(),
        None => vec![node],
    };
    let count_keys = |pattern: &str| -> usize {
        let script = format!("return #redis.call('KEYS', '{pattern}')");
        nodes
            .iter()
            .map(|n| {
                n.cmd(&["EVAL", &script, "0"])
                    .parse::<usize>()
                    .expect("a count")
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_keys("m:*") < COUNTERS / 2 {
        assert!(
            first.try_wait().expect("wait").is_none(),
            "the first run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "the first run copied too little");
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    assert!(
        count_keys("migrate:highgopress:cursor:*") > 0,
        "the killed run left its cursor"
    );

    // Resumed from its cursors, while the writers go on.
    let resumed = migrate(&store_env);
    eprintln!("resumed: {resumed}");
    assert_eq!(count(&resumed, "failed"), 0, "{resumed}");
    assert!(
        count(&resumed, "keys scanned") < COUNTERS as u64,
        "the resumed run started from its cursor: {resumed}"
    );

    original_writer
        .join()
        .expect("the HighGoPress-style writer");
    highpress_writer.await.expect("the highpress writer");

    // After the writers stopped: a full pass picks up what changed behind the cursor.
    let full = migrate(&store_env);
    eprintln!("full pass: {full}");
    assert_eq!(count(&full, "keys scanned"), COUNTERS as u64 + 3, "{full}");
    assert_eq!(count(&full, "not valid counters"), 3, "{full}");
    assert_eq!(count(&full, "failed"), 0, "{full}");
    // And once more: nothing left to do.
    let again = migrate(&store_env);
    eprintln!("once more: {again}");
    assert_eq!(count(&again, "counters copied"), 0, "{again}");
    assert_eq!(
        count(&again, "already up to date"),
        COUNTERS as u64,
        "{again}"
    );

    let ids: Vec<String> = (0..COUNTERS).map(resource_id).collect();
    let sources: Vec<String> = ids.iter().map(|id| format!("counter:{id}:like")).collect();
    let destinations: Vec<String> = ids.iter().map(|id| format!("c:like:{id}")).collect();
    let source_values = values(node.cli(), &sources);
    let destination_values = values(node.cli(), &destinations);
    for i in 0..COUNTERS {
        let hot = if i < HOT { ROUNDS as i64 } else { 0 };
        assert_eq!(
            source_values[i],
            initial(i) + hot,
            "{} at the source",
            ids[i]
        );
        assert_eq!(
            destination_values[i],
            initial(i) + 2 * hot,
            "{}: HighGoPress's count plus highpress's own increments",
            ids[i]
        );
    }
    for i in [0, HOT - 1, HOT, COUNTERS - 1] {
        let hot = if i < HOT { ROUNDS as i64 } else { 0 };
        assert_eq!(hp.value(&ids[i], "like").await, initial(i) + 2 * hot);
    }
}

/// highpress's read cache holds what highpress wrote; the migration writes beside it.
const NO_CACHE: [(&str, &str); 1] = [("HIGHPRESS_CACHE__TTL_MS", "0")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_killed_migration_resumes_and_totals_stay_exact() {
    let hp = Highpress::start(Topology::StandaloneRedis, &NO_CACHE).await;
    let env = vec![("HIGHPRESS_REDIS__ADDR".to_string(), hp.store_node().addr())];
    killed_resumed_and_repeated(hp, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_a_killed_migration_resumes_and_totals_stay_exact() {
    let hp = Highpress::start(Topology::StandaloneCluster, &NO_CACHE).await;
    let env = vec![
        (
            "HIGHPRESS_REDIS__ADDR".to_string(),
            hp.cluster.as_ref().expect("a cluster").seeds(),
        ),
        ("HIGHPRESS_REDIS__CLUSTER".to_string(), "true".to_string()),
    ];
    killed_resumed_and_repeated(hp, env).await;
}
