//! Faults in the split topology (a gateway in front of two counters on one Redis): a counter
//! killed with SIGKILL under load, and a counter frozen with SIGSTOP. Each ends with the
//! per-key consistency check: acknowledged ≤ stored ≤ attempted.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use highpress::gateway::rendezvous::{KeyHash, NodeHash, ranking};
use support::{Highpress, Topology};

const KEYS: usize = 24;

fn key_name(i: usize) -> String {
    format!("k{i}")
}

/// Which counter (index into `hp.counters`) owns `c:like:{id}` when both are up.
fn owner(hp: &Highpress, id: &str) -> usize {
    let nodes: Vec<NodeHash> = hp
        .counters
        .iter()
        .map(|c| NodeHash::of(&c.grpc_addr()))
        .collect();
    ranking(&nodes, KeyHash::of(&format!("c:like:{id}")))[0]
}

#[derive(Default)]
struct KeyTally {
    attempted: AtomicI64,
    acknowledged: AtomicI64,
    failed: AtomicI64,
}

/// Workers incrementing the `KEYS` keys round-robin; failures are timestamped.
struct Load {
    tallies: Arc<Vec<KeyTally>>,
    stop: Arc<AtomicBool>,
    /// When, which key, and the error code of the answer.
    failures: Arc<std::sync::Mutex<Vec<(Instant, usize, String)>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, workers: usize) -> Self {
        let tallies: Arc<Vec<KeyTally>> =
            Arc::new((0..KEYS).map(|_| KeyTally::default()).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let url = format!("{base}/api/v1/counter/increment");
        let handles = (0..workers)
            .map(|w| {
                let (url, tallies, stop, failures) = (url.clone(), tallies.clone(), stop.clone(), failures.clone());
                tokio::spawn(async move {
                    let client = support::client();
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        let k = i % KEYS;
                        i += 1;
                        let body = format!(
                            r#"{{"resource_id":"{}","counter_type":"like","user_id":"u","increment":1}}"#,
                            key_name(k)
                        );
                        tallies[k].attempted.fetch_add(1, Ordering::SeqCst);
                        let sent = client.post(&url).header("content-type", "application/json").body(body).send().await;
                        match sent {
                            Ok(r) if r.status() == 200 => {
                                tallies[k].acknowledged.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => {
                                assert_eq!(r.status(), 503, "only 503 is acceptable during a counter fault");
                                tallies[k].failed.fetch_add(1, Ordering::SeqCst);
                                let at = Instant::now();
                                let body: serde_json::Value = r.json().await.unwrap_or_default();
                                let code = body["error"]["code"].as_str().unwrap_or("?").to_owned();
                                failures.lock().unwrap().push((at, k, code));
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Err(e) => panic!("the gateway itself failed: {e}"),
                        }
                    }
                })
            })
            .collect();
        Self {
            tallies,
            stop,
            failures,
            handles,
        }
    }

    fn acknowledged(&self, k: usize) -> i64 {
        self.tallies[k].acknowledged.load(Ordering::SeqCst)
    }

    async fn wait_for_more_acks(&self, keys: &[usize], more: i64) {
        let start: Vec<i64> = keys.iter().map(|&k| self.acknowledged(k)).collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        while keys
            .iter()
            .zip(&start)
            .any(|(&k, &s)| self.acknowledged(k) < s + more)
        {
            assert!(Instant::now() < deadline, "keys {keys:?} made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> (Arc<Vec<KeyTally>>, Vec<(Instant, usize, String)>) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.await.expect("load task");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.tallies, failures)
    }
}

fn assert_consistent(hp: &mut Highpress, tallies: &[KeyTally]) {
    for (k, t) in tallies.iter().enumerate() {
        let stored = hp.redis().get_i64(&format!("c:like:{}", key_name(k)));
        let (acked, attempted) = (
            t.acknowledged.load(Ordering::SeqCst),
            t.attempted.load(Ordering::SeqCst),
        );
        assert!(
            stored >= acked,
            "key {k}: lost acknowledged increments ({stored} < {acked})"
        );
        assert!(
            stored <= attempted,
            "key {k}: stored {stored} > attempted {attempted}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_counter_fails_over_and_its_keys_return_after_restart() {
    let mut hp = Highpress::start(Topology::Split, &[]).await;
    let victims: Vec<usize> = (0..KEYS)
        .filter(|&k| owner(&hp, &key_name(k)) == 0)
        .collect();
    let survivors: Vec<usize> = (0..KEYS)
        .filter(|&k| owner(&hp, &key_name(k)) == 1)
        .collect();
    assert!(
        !victims.is_empty() && !survivors.is_empty(),
        "keys must spread over both counters"
    );

    let load = Load::start(&hp.base, 16);
    load.wait_for_more_acks(&victims, 20).await;
    let killed_at = Instant::now();
    hp.counters[0].kill();
    // The killed counter's keys fail over to the survivor and make progress again.
    load.wait_for_more_acks(&victims, 50).await;
    let failover = killed_at.elapsed();

    let redis = hp.redis.take().expect("redis");
    hp.counters[0].restart(&redis);
    hp.redis = Some(redis);
    hp.counters[0].wait_ready().await;
    // Its keys come back to it: it acknowledges increments again.
    let metrics = hp.counters[0].metrics_url();
    let deadline = Instant::now() + Duration::from_secs(15);
    while support::metric(&metrics, "highpress_increments_acknowledged_total").await < 50 {
        assert!(
            Instant::now() < deadline,
            "the restarted counter got no traffic back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (tallies, failures) = load.finish().await;
    let window = match (failures.first(), failures.last()) {
        (Some(first), Some(last)) => last.0 - first.0,
        _ => Duration::ZERO,
    };
    eprintln!(
        "counter SIGKILL: {} failed requests within {:?}; every killed key had 50 more acknowledgements {:?} after the kill",
        failures.len(),
        window,
        failover
    );
    assert!(
        failures.iter().all(|(_, k, _)| victims.contains(k)),
        "keys of the surviving counter failed: {:?}",
        survivor_failures(&failures, &victims)
    );
    assert!(window < Duration::from_secs(10), "errors lasted {window:?}");
    assert_consistent(&mut hp, &tallies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_counter_hits_deadlines_and_other_keys_are_unaffected() {
    // A deadline well above what a loaded 2-core CI machine takes to answer, so only the frozen
    // counter misses it.
    let mut hp =
        Highpress::start(Topology::Split, &[("HIGHPRESS_GRPC__DEADLINE_MS", "1000")]).await;
    let victims: Vec<usize> = (0..KEYS)
        .filter(|&k| owner(&hp, &key_name(k)) == 0)
        .collect();
    let survivors: Vec<usize> = (0..KEYS)
        .filter(|&k| owner(&hp, &key_name(k)) == 1)
        .collect();
    assert!(!victims.is_empty() && !survivors.is_empty());

    let load = Load::start(&hp.base, 16);
    load.wait_for_more_acks(&victims, 20).await;
    let pid = hp.counters[0].pid().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    // Calls to the frozen counter time out; its keys move on and progress again.
    load.wait_for_more_acks(&victims, 50).await;
    load.wait_for_more_acks(&survivors, 50).await;
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    load.wait_for_more_acks(&victims, 50).await;

    let (tallies, failures) = load.finish().await;
    eprintln!("counter SIGSTOP: {} failed requests", failures.len());
    assert!(
        failures.iter().all(|(_, k, _)| victims.contains(k)),
        "keys of the healthy counter failed: {:?}",
        survivor_failures(&failures, &victims)
    );
    for &k in &survivors {
        assert_eq!(tallies[k].failed.load(Ordering::SeqCst), 0);
    }
    assert_consistent(&mut hp, &tallies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_counter_stopped_with_sigterm_drains_and_its_keys_move_on() {
    let mut hp = Highpress::start(Topology::Split, &[]).await;
    let victims: Vec<usize> = (0..KEYS)
        .filter(|&k| owner(&hp, &key_name(k)) == 0)
        .collect();
    let load = Load::start(&hp.base, 16);
    load.wait_for_more_acks(&victims, 20).await;

    let status = hp.counters[0].terminate();
    assert!(status.success(), "the counter exited with {status}");
    // Its keys are served by the other counter.
    load.wait_for_more_acks(&victims, 50).await;

    let (tallies, failures) = load.finish().await;
    // Health turns NOT_SERVING, gateways move the keys within the drain delay (2 s against a
    // 100 ms health interval here), and only then does the counter stop taking calls.
    assert!(
        failures.is_empty(),
        "{} requests failed during a graceful counter stop",
        failures.len()
    );
    assert_consistent(&mut hp, &tallies);
}

/// An idempotency record lives in Redis, not in the counter that wrote it: after the owning
/// counter dies, a retry with the same key reaches the next counter and is replayed, not
/// counted again; a new key is counted there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_owner_dies_is_replayed_by_the_next_counter() {
    let mut hp = Highpress::start(Topology::Split, &[]).await;
    let url = hp.url("/api/v1/counter/increment");
    let body = serde_json::json!({"resource_id":"failover","counter_type":"like","user_id":"u","increment":7});
    let send = |key: &'static str| {
        let (url, body) = (url.clone(), body.clone());
        async move {
            let r = support::client()
                .post(url)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .expect("sent");
            let replayed = r.headers().get("idempotent-replayed").is_some();
            (
                r.status().as_u16(),
                replayed,
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (s, replayed, first) = send("before-failover").await;
    assert_eq!((s, replayed), (200, false), "{first}");
    assert_eq!(first["data"]["current_value"], 7);

    let dead = owner(&hp, "failover");
    hp.counters[dead].kill();
    // Until the gateway notices (health every 100 ms, or the breaker), the retry may fail with
    // 503; a client retries it, with the same key.
    let deadline = Instant::now() + Duration::from_secs(15);
    let again = loop {
        let (s, replayed, b) = send("before-failover").await;
        if s == 200 {
            assert!(replayed, "{b}");
            break b;
        }
        assert_eq!(s, 503, "{b}");
        assert!(Instant::now() < deadline, "no counter took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The replay's `timestamp` is its own answer time; the rest is the original response.
    assert_eq!(
        support::without_times(again),
        support::without_times(first),
        "the survivor answers with the original response"
    );
    let (s, replayed, fresh) = send("after-failover").await;
    assert_eq!((s, replayed), (200, false));
    assert_eq!(fresh["data"]["current_value"], 14);
    assert_eq!(hp.redis().get_i64("c:like:failover"), 14);
}

/// The failures of keys that are not `victims`: (key, error code).
fn survivor_failures(
    failures: &[(Instant, usize, String)],
    victims: &[usize],
) -> Vec<(usize, String)> {
    failures
        .iter()
        .filter(|(_, k, _)| !victims.contains(k))
        .map(|(_, k, code)| (*k, code.clone()))
        .collect()
}
