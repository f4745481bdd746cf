//! Faults in the split topology (a gateway in front of two counters on one Redis): a counter
//! killed with SIGKILL under load, and a counter frozen with SIGSTOP. Each ends with the
//! per-key consistency check: acknowledged ≤ stored ≤ attempted.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use highpress::gateway::rendezvous::{KeyHash, NodeHash, ranking};
use support::{Highpress, KeyTally, Load, Topology, key_name};

const KEYS: usize = 24;

/// Which counter (index into `hp.counters`) owns `c:like:{id}` when both are up.
fn owner(hp: &Highpress, id: &str) -> usize {
    let nodes: Vec<NodeHash> = hp
        .counters
        .iter()
        .map(|c| NodeHash::of(&c.grpc_addr()))
        .collect();
    ranking(&nodes, KeyHash::of(&format!("c:like:{id}")))[0]
}

fn assert_consistent(hp: &mut Highpress, tallies: &[KeyTally]) {
    support::assert_consistent(tallies, |k| hp.redis().get_i64(&format!("c:like:{k}")));
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

    let load = Load::start(&hp.base, KEYS, 16);
    load.wait_for_more_acks(&victims, 20).await;
    let killed_at = Instant::now();
    hp.counters[0].kill();
    // The killed counter's keys fail over to the survivor and make progress again.
    load.wait_for_more_acks(&victims, 50).await;
    let failover = killed_at.elapsed();

    hp.counters[0].restart();
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

    let load = Load::start(&hp.base, KEYS, 16);
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
    let load = Load::start(&hp.base, KEYS, 16);
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
