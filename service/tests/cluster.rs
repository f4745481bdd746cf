//! highpress on a real three-master Redis Cluster: keys spread over every master and come back
//! through one batch read, and a master killed and restarted under load loses no acknowledged
//! increment.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Highpress, Topology, post_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_every_master_and_one_batch_reads_them_back() {
    let hp = Highpress::start(Topology::StandaloneCluster, &[]).await;
    let ids: Vec<String> = (0..300).map(|i| format!("spread{i}")).collect();
    let increments = ids
        .iter()
        .zip(1..)
        .map(|(id, n)| hp.increment(id, "like", n));
    for (s, body) in futures::future::join_all(increments).await {
        assert_eq!(s, 200, "{body}");
    }
    let queries: Vec<Value> = (0..300)
        .map(|i| json!({"resource_id": format!("spread{i}"), "counter_type": "like"}))
        .collect();
    let (s, body) = post_json(
        &hp.url("/api/v1/counter/batch"),
        &json!({ "queries": queries }),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let values = support::batch_values(&body);
    assert_eq!(values, (1..=300).collect::<Vec<i64>>());
    let cluster = hp.cluster.as_ref().unwrap();
    for node in &cluster.nodes {
        let keys: i64 = node.cmd(&["DBSIZE"]).parse().unwrap();
        assert!(keys > 0, "master {} holds no counters", node.addr());
    }
    assert_eq!(cluster.get_i64("c:like:spread299"), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_restarted_under_load_loses_no_acknowledged_increment() {
    const KEYS: usize = 30;
    let mut hp = Highpress::start(
        Topology::StandaloneCluster,
        &[("HIGHPRESS_REDIS__TIMEOUT_MS", "300")],
    )
    .await;
    let attempted: Arc<Vec<AtomicI64>> = Arc::new((0..KEYS).map(|_| AtomicI64::new(0)).collect());
    let acked: Arc<Vec<AtomicI64>> = Arc::new((0..KEYS).map(|_| AtomicI64::new(0)).collect());
    let unavailable = Arc::new(AtomicI64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let url = hp.url("/api/v1/counter/increment");
    let workers: Vec<_> = (0..12)
        .map(|w| {
            let (url, attempted, acked, unavailable, running) =
                (url.clone(), attempted.clone(), acked.clone(), unavailable.clone(), running.clone());
            tokio::spawn(async move {
                let mut i = w;
                while running.load(Ordering::Relaxed) {
                    let k = i % KEYS;
                    i += 1;
                    attempted[k].fetch_add(1, Ordering::SeqCst);
                    let body = json!({"resource_id": format!("m{k}"), "counter_type": "like", "user_id": "u"});
                    let (s, body) = post_json(&url, &body).await;
                    match s {
                        200 => {
                            acked[k].fetch_add(1, Ordering::SeqCst);
                        }
                        503 => {
                            assert_eq!(body["error"]["code"], "unavailable", "{body}");
                            unavailable.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        other => panic!("unexpected {other}: {body}"),
                    }
                }
            })
        })
        .collect();
    let total = |v: &Vec<AtomicI64>| v.iter().map(|a| a.load(Ordering::SeqCst)).sum::<i64>();
    let wait_acks = async |more: i64| {
        let target = total(&acked) + more;
        let deadline = Instant::now() + Duration::from_secs(20);
        while total(&acked) < target {
            assert!(Instant::now() < deadline, "no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_acks(200).await;

    let cluster = hp.cluster.as_mut().unwrap();
    cluster.nodes[1].kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while unavailable.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no request saw the dead master");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.nodes[1].restart();
    cluster.wait_ok();
    wait_acks(300).await;

    running.store(false, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let cluster = hp.cluster.as_ref().unwrap();
    for k in 0..KEYS {
        let stored = cluster.get_i64(&format!("c:like:m{k}"));
        let (a, t) = (
            acked[k].load(Ordering::SeqCst),
            attempted[k].load(Ordering::SeqCst),
        );
        assert!(
            a <= stored,
            "key m{k}: lost acknowledged increments ({stored} < {a})"
        );
        assert!(stored <= t, "key m{k}: stored {stored} > attempted {t}");
    }
    eprintln!(
        "cluster master restart: {} acknowledged, {} answered 503",
        total(&acked),
        unavailable.load(Ordering::SeqCst)
    );
}

/// Moves the slot of `key` from its master to another one, the way a resharding does:
/// IMPORTING/MIGRATING, MIGRATE of the key, then the new owner announced to every node.
fn move_slot_of(cluster: &support::RedisCluster, key: &str) {
    let slot = highpress::store::redis::key_slot(key).to_string();
    let from = cluster
        .nodes
        .iter()
        .position(|n| n.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot]) != "0")
        .expect("the key exists on some master");
    let to = (from + 1) % cluster.nodes.len();
    let (a, b) = (&cluster.nodes[from], &cluster.nodes[to]);
    let (id_a, id_b) = (a.cmd(&["CLUSTER", "MYID"]), b.cmd(&["CLUSTER", "MYID"]));
    assert_eq!(
        b.cmd(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &id_a]),
        "OK"
    );
    assert_eq!(
        a.cmd(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &id_b]),
        "OK"
    );
    let port = b.port.to_string();
    assert_eq!(
        a.cmd(&["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", key]),
        "OK"
    );
    for node in &cluster.nodes {
        assert_eq!(
            node.cmd(&["CLUSTER", "SETSLOT", &slot, "NODE", &id_b]),
            "OK"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_follow_a_slot_moved_by_resharding() {
    let hp = Highpress::start(Topology::StandaloneCluster, &[]).await;
    let cluster = hp.cluster.as_ref().unwrap();
    // highpress reloads its slot table every second, so one move may land just before a reload
    // and need no redirect; a few moves in a row make sure the redirect path runs.
    for round in 0..5 {
        let id = format!("moved{round}");
        assert_eq!(hp.increment(&id, "like", 1).await.0, 200);
        move_slot_of(cluster, &format!("c:like:{id}"));
        let answers =
            futures::future::join_all((0..20).map(|_| hp.increment(&id, "like", 1))).await;
        for (s, body) in answers {
            assert_eq!(s, 200, "{body}");
        }
        assert_eq!(hp.value(&id, "like").await, 21);
        assert_eq!(cluster.get_i64(&format!("c:like:{id}")), 21);
    }
    let redirects = support::metric(&hp.url("/metrics"), "highpress_store_redirects_total").await;
    assert!(redirects > 0, "no increment was ever redirected");
}
