//! Faults against real processes: Redis killed and restarted under load, SIGTERM under load, and
//! a full queue. Each ends with the consistency check: the counter holds at least every
//! acknowledged increment and at most every attempted one.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use support::{Backing, Highpress, assert_error, get_json};

/// Tallies of a load run.
#[derive(Default)]
struct Tally {
    attempted: AtomicI64,
    acknowledged: AtomicI64,
    unavailable: AtomicI64,
    refused: AtomicI64,
    other: AtomicI64,
}

impl Tally {
    fn get(&self, field: &AtomicI64) -> i64 {
        field.load(Ordering::SeqCst)
    }
}

/// A load of `workers` tasks incrementing `c:like:{key}` through `base` until stopped.
struct Load {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, key: &'static str, workers: usize) -> Self {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("{base}/api/v1/counter/increment");
        let handles = (0..workers)
            .map(|_| {
                let (url, tally, stop) = (url.clone(), tally.clone(), stop.clone());
                tokio::spawn(async move {
                    let client = support::client();
                    let body = format!(r#"{{"resource_id":"{key}","counter_type":"like","user_id":"u","increment":1}}"#);
                    while !stop.load(Ordering::Relaxed) {
                        tally.attempted.fetch_add(1, Ordering::SeqCst);
                        let sent = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        match sent {
                            Ok(r) if r.status() == 200 => {
                                tally.acknowledged.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) if r.status() == 503 => {
                                let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                                assert_eq!(retry.as_deref(), Some("1"), "503 without Retry-After");
                                tally.unavailable.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Ok(_) => {
                                tally.other.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => {
                                // Connection refused or reset: the process is going away.
                                tally.refused.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            tally,
            stop,
            handles,
        }
    }

    async fn wait_for_acks(&self, at_least: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.tally.get(&self.tally.acknowledged) < at_least {
            assert!(Instant::now() < deadline, "load made no progress");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.await.expect("load task");
        }
        self.tally
    }
}

fn assert_consistent(stored: i64, tally: &Tally) {
    let (acked, attempted) = (tally.get(&tally.acknowledged), tally.get(&tally.attempted));
    assert!(
        stored >= acked,
        "lost acknowledged increments: stored {stored}, acknowledged {acked}"
    );
    assert!(
        stored <= attempted,
        "stored {stored} exceeds the {attempted} attempted"
    );
}

async fn wait_ready(hp: &Highpress, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get_json(&hp.url("/readyz")).await.0 == want {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz never answered {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_kill_and_restart_under_load_loses_no_acknowledged_increment() {
    let mut hp =
        Highpress::standalone(Backing::Redis, &[("HIGHPRESS_REDIS__TIMEOUT_MS", "300")]).await;
    let load = Load::start(&hp.base, "fault", 16);
    load.wait_for_acks(200).await;

    hp.redis().kill();
    wait_ready(&hp, 503).await;
    let outage_started = Instant::now();
    // During the outage requests fail fast with 503 unavailable and Retry-After.
    let probe_started = Instant::now();
    let got = hp.increment("probe", "like", 1).await;
    assert_error(&got, 503, "unavailable", None);
    assert!(
        probe_started.elapsed() < Duration::from_secs(5),
        "a request hung during the outage"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        load.tally.get(&load.tally.unavailable) > 0,
        "no request saw the outage"
    );
    let (_, health) = get_json(&hp.url("/health")).await;
    assert_eq!(health["checks"]["store"], "unavailable");
    // HighGoPress's health route shows the outage in its status code too.
    let (s, api_health) = get_json(&hp.url("/api/v1/health")).await;
    assert_eq!(s, 503, "{api_health}");
    assert_eq!(api_health["status"], "unavailable", "{api_health}");
    assert_eq!(api_health["checks"]["store"], "unavailable", "{api_health}");
    let acked_in_outage = load.tally.get(&load.tally.acknowledged);

    // Same port, same append-only file: highpress reconnects by itself.
    hp.redis().restart();
    wait_ready(&hp, 200).await;
    assert_eq!(get_json(&hp.url("/api/v1/health")).await.0, 200);
    assert!(outage_started.elapsed() < Duration::from_secs(15));
    load.wait_for_acks(acked_in_outage + 200).await;

    let tally = load.finish().await;
    assert_eq!(tally.get(&tally.other), 0, "answers other than 200 and 503");
    assert_eq!(
        tally.get(&tally.refused),
        0,
        "highpress itself refused connections"
    );
    assert_consistent(hp.redis().get_i64("c:like:fault"), &tally);
    assert_eq!(hp.increment("probe", "like", 1).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_flushes_every_acknowledged_increment() {
    let mut hp = Highpress::standalone(Backing::Redis, &[]).await;
    let load = Load::start(&hp.base, "drain", 32);
    load.wait_for_acks(500).await;

    let status = hp.terminate();
    assert!(status.success(), "highpress exited with {status}");
    let tally = load.finish().await;
    assert_eq!(tally.get(&tally.other), 0, "answers other than 200 and 503");
    assert_consistent(hp.redis().get_i64("c:like:drain"), &tally);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_writes_pending_leaderboard_deltas() {
    // A flush interval far longer than the test: only the shutdown flush can write the rankings.
    let mut hp = Highpress::standalone(
        Backing::Redis,
        &[("HIGHPRESS_LEADERBOARD__FLUSH_INTERVAL_MS", "600000")],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(hp.increment("ranked", "view", 2).await.0, 200);
    }
    // The first tick fires at start-up; wait past it so these deltas are still pending.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(hp.terminate().success());
    assert_eq!(hp.redis().cmd(&["ZSCORE", "lb:view:all", "ranked"]), "6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_sheds_load_with_503_overloaded_and_writes_only_what_it_acknowledged() {
    let mut hp = Highpress::standalone(
        Backing::Redis,
        &[
            ("HIGHPRESS_COALESCING__MAX_BATCH", "1"),
            ("HIGHPRESS_COALESCING__QUEUE_CAPACITY", "2"),
            ("HIGHPRESS_REDIS__TIMEOUT_MS", "2000"),
        ],
    )
    .await;
    // Stall Redis so the flusher waits while requests pile up behind it.
    let port = hp.redis().port.to_string();
    let stall = std::thread::spawn(move || {
        std::process::Command::new("redis-cli")
            .args(["-p", &port, "DEBUG", "SLEEP", "0.5"])
            .output()
            .expect("redis-cli");
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let requests: Vec<_> = (0..40).map(|_| hp.increment("shed", "like", 1)).collect();
    let answers = futures::future::join_all(requests).await;
    stall.join().unwrap();
    let acked = answers.iter().filter(|(s, _)| *s == 200).count() as i64;
    let overloaded: Vec<_> = answers
        .iter()
        .filter(|(_, b)| b["error"]["code"] == "overloaded")
        .collect();
    assert!(!overloaded.is_empty(), "no request was shed: {answers:?}");
    for got in &overloaded {
        assert_error(got, 503, "overloaded", None);
    }
    assert_eq!(acked + overloaded.len() as i64, 40, "{answers:?}");
    assert_eq!(hp.redis().get_i64("c:like:shed"), acked);
}
