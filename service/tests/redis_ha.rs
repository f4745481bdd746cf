//! Redis high availability against real `redis-server` and `redis-server --sentinel` processes:
//! a primary, two replicas and three sentinels on loopback. Under load, through a standalone
//! and through the split, the primary is killed again and again, or frozen, and so is a replica.
//! With `redis.min_replicas_ack` every acknowledged increment survives (acknowledged ≤ stored
//! ≤ attempted, per key, read from the primary the sentinels name at the end); without it, the
//! test reports what asynchronous replication lost. Last, a Redis Cluster master with a replica
//! is killed under load, with one `WAIT` per master per flush.

mod support;

use std::time::{Duration, Instant};

use support::{
    Failure, Highpress, Load, RedisCluster, ReplicatedRedis, assert_consistent, key_name,
};

const KEYS: usize = 8;
const WORKERS: usize = 16;
/// Primaries killed in a row.
const KILLS: usize = 2;
/// How long a failover may take to show as acknowledged increments again: Sentinel's 1 s
/// down-after, its election, the promotion and highpress following it, on a loaded CI machine.
const RECOVERY: Duration = Duration::from_secs(60);

fn all_keys() -> Vec<usize> {
    (0..KEYS).collect()
}

/// Settings of the tests: answers within 500 ms, replicas within 200 ms.
fn settings(min_replicas_ack: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("HIGHPRESS_REDIS__TIMEOUT_MS", "500"),
        ("HIGHPRESS_REDIS__REPLICA_ACK_TIMEOUT_MS", "200"),
        ("HIGHPRESS_REDIS__MIN_REPLICAS_ACK", min_replicas_ack),
    ]
}

/// Failures outside every `[start, end]` window.
fn outside(failures: &[Failure], windows: &[(Instant, Instant)]) -> Vec<Failure> {
    failures
        .iter()
        .filter(|(at, _, _)| !windows.iter().any(|(s, e)| s <= at && at <= e))
        .cloned()
        .collect()
}

/// Kills the primary `KILLS` times under load. Each time: Sentinel promotes a replica, highpress
/// follows it (every key acknowledged again), and the killed node is started again and rejoins
/// as a replica. Returns the load's tallies, its failures, and each kill's windows: from the
/// kill to the first acknowledgements again (the switch), and to the set settled again.
async fn kill_primaries(
    split: bool,
    min_replicas_ack: &'static str,
) -> (ReplicatedRedis, Highpress, Vec<Duration>) {
    let mut set = ReplicatedRedis::start();
    let hp = Highpress::on_store(split, &set.env(), &settings(min_replicas_ack)).await;
    let load = Load::start(&hp.base, KEYS, WORKERS);
    load.wait_for_more_acks(&all_keys(), 20).await;
    assert!(
        load.failures().is_empty(),
        "increments failed before any fault: {:?}",
        load.failures()
    );
    let mut windows = Vec::new();
    let mut switches = Vec::new();
    for _ in 0..KILLS {
        let old = set.primary().expect("the sentinels agree on a primary");
        let killed_at = Instant::now();
        set.nodes[old].kill();
        set.wait_failover(old);
        load.wait_for_more_acks_within(&all_keys(), 20, RECOVERY)
            .await;
        switches.push(killed_at.elapsed());
        set.nodes[old].restart();
        // Usually on the node just promoted; the sentinels may fail over once more meanwhile.
        set.wait_settled_any();
        load.wait_for_more_acks(&all_keys(), 20).await;
        windows.push((killed_at, Instant::now()));
    }
    let (tallies, failures) = load.finish().await;
    eprintln!(
        "{} primaries killed ({}, min_replicas_ack {min_replicas_ack}): acknowledged again after {switches:?}; {} failed answers, all 503",
        KILLS,
        if split { "split" } else { "standalone" },
        failures.len()
    );
    let stray = outside(&failures, &windows);
    assert!(
        stray.is_empty(),
        "503s outside the failovers: {} of them, first {:?}",
        stray.len(),
        stray.first()
    );
    if min_replicas_ack == "0" {
        let lost: i64 = tallies
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let stored = set.get_i64(&format!("c:like:{}", key_name(k)));
                let acked = t.acknowledged.load(std::sync::atomic::Ordering::SeqCst);
                let attempted = t.attempted.load(std::sync::atomic::Ordering::SeqCst);
                assert!(
                    stored <= attempted,
                    "key {k}: stored {stored} > attempted {attempted}"
                );
                (acked - stored).max(0)
            })
            .sum();
        eprintln!(
            "min_replicas_ack 0: asynchronous replication lost {lost} acknowledged increments over {KILLS} failovers"
        );
    } else {
        assert_consistent(&tallies, |k| set.get_i64(&format!("c:like:{k}")));
    }
    (set, hp, switches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primaries_killed_in_a_row_lose_no_acknowledged_increment_standalone() {
    let (set, hp, _) = kill_primaries(false, "1").await;
    let changes =
        support::metric(&hp.url("/metrics"), "highpress_store_primary_changes_total").await;
    // Each kill is one failover; a loaded machine may see the sentinels fail over once more
    // (a primary slow to answer looks down), and highpress follows that too.
    let failovers = set.failovers();
    assert!(
        (1 + KILLS as u64..=1 + failovers).contains(&changes),
        "{changes} primary changes: expected the first primary, one per kill ({KILLS}) and at \
         most one per failover the sentinels made ({failovers})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primaries_killed_in_a_row_lose_no_acknowledged_increment_split() {
    kill_primaries(true, "1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_replica_acks_failovers_are_followed_and_losses_reported() {
    kill_primaries(false, "0").await;
}

/// With `min_replicas_ack: 2`, both replicas must have each flush. A frozen primary is failed
/// over (the new one has one live replica until the old one thaws and rejoins: 503s meanwhile);
/// then a frozen replica makes `WAIT` time out: 503s, nothing acknowledged, until it thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_primary_then_frozen_replica_answer_503_and_lose_nothing() {
    let set = ReplicatedRedis::start();
    let hp = Highpress::on_store(false, &set.env(), &settings("2")).await;
    let load = Load::start(&hp.base, KEYS, WORKERS);
    load.wait_for_more_acks(&all_keys(), 20).await;

    let old = set.primary().expect("a primary");
    set.nodes[old].freeze();
    set.wait_failover(old);
    set.nodes[old].thaw();
    let new = set.wait_settled_any();
    load.wait_for_more_acks_within(&all_keys(), 20, RECOVERY)
        .await;

    let replica = (0..set.nodes.len()).find(|&i| i != new).expect("a replica");
    let (acked_before, failed_before) = (load.total_acknowledged(), load.failures().len());
    set.nodes[replica].freeze();
    let frozen_at = Instant::now();
    // Flushes already past their WAIT may still be answered; after that, only 503s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked_settled = load.total_acknowledged();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (acked_frozen, failed_frozen) = (load.total_acknowledged(), load.failures().len());
    set.nodes[replica].thaw();
    load.wait_for_more_acks_within(&all_keys(), 20, RECOVERY)
        .await;

    let (tallies, failures) = load.finish().await;
    eprintln!(
        "frozen replica: {} acknowledged in its first second, {} in the next two, {} failed answers while frozen ({:?})",
        acked_settled - acked_before,
        acked_frozen - acked_settled,
        failed_frozen - failed_before,
        frozen_at.elapsed()
    );
    assert_eq!(
        acked_frozen, acked_settled,
        "increments were acknowledged while a required replica was frozen"
    );
    assert!(
        failed_frozen > failed_before,
        "no increment failed while a required replica was frozen"
    );
    assert!(
        failures.iter().all(|(_, _, code)| code == "unavailable"),
        "every failure is 503 unavailable"
    );
    assert_consistent(&tallies, |k| set.get_i64(&format!("c:like:{k}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_master_killed_fails_over_to_its_replica_and_loses_nothing() {
    let mut cluster = RedisCluster::start_with_replicas(1);
    let store = vec![
        ("HIGHPRESS_STORE__KIND".to_string(), "redis".to_string()),
        ("HIGHPRESS_REDIS__CLUSTER".to_string(), "true".to_string()),
        ("HIGHPRESS_REDIS__ADDR".to_string(), cluster.seeds()),
    ];
    let hp = Highpress::on_store(false, &store, &settings("1")).await;
    let load = Load::start(&hp.base, KEYS, WORKERS);
    load.wait_for_more_acks(&all_keys(), 20).await;
    assert!(
        load.failures().is_empty(),
        "increments failed before any fault"
    );

    let watched = format!("c:like:{}", key_name(0));
    let victim = cluster.master_of(&watched).expect("a master");
    let killed_at = Instant::now();
    cluster.nodes[victim].kill();
    cluster.wait_failover(&watched, victim);
    // The promoted replica has no replica of its own until the killed node rejoins as one:
    // its keys answer 503 until then.
    cluster.nodes[victim].restart();
    cluster.wait_ok();
    load.wait_for_more_acks_within(&all_keys(), 20, RECOVERY)
        .await;
    let window = (killed_at, Instant::now());

    let (tallies, failures) = load.finish().await;
    eprintln!(
        "cluster master killed: every key acknowledged again {:?} after the kill; {} failed answers, all 503",
        window.1 - window.0,
        failures.len()
    );
    let stray = outside(&failures, &[window]);
    assert!(stray.is_empty(), "503s outside the failover: {stray:?}");
    assert_consistent(&tallies, |k| cluster.get_i64(&format!("c:like:{k}")));
}
