//! DNS-style discovery while traffic flows: a scripted resolver adds a third counter and then
//! removes the first, against real counter processes on a real Redis, driving the gateway's
//! backend in-process. Traffic moves to the new counter and off the removed one, no request
//! fails, and every acknowledged increment is stored.

mod support;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use highpress::config::Config;
use highpress::counter::CounterBackend;
use highpress::gateway::discovery::{self, Resolver};
use highpress::gateway::{EndpointSet, GatewayBackend};
use highpress::store::CounterKey;
use support::{CounterProcess, RedisServer, free_port};
use tokio_util::sync::CancellationToken;

/// A resolver whose answer the test sets.
#[derive(Clone, Default)]
struct ScriptedResolver(Arc<Mutex<Vec<String>>>);

impl ScriptedResolver {
    fn answer(&self, names: &[&CounterProcess]) {
        *self.0.lock().unwrap() = names.iter().map(|c| c.grpc_addr()).collect();
    }
}

impl Resolver for ScriptedResolver {
    async fn resolve(&self, _target: &str) -> std::io::Result<Vec<String>> {
        Ok(self.0.lock().unwrap().clone())
    }
}

async fn acknowledged(counter: &CounterProcess) -> u64 {
    support::metric(
        &counter.metrics_url(),
        "highpress_increments_acknowledged_total",
    )
    .await
}

async fn wait_until<F: AsyncFn() -> bool>(what: &str, condition: F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_added_and_removed_by_dns_take_and_release_traffic() {
    let redis = RedisServer::start();
    let counters: Vec<CounterProcess> = (0..3)
        .map(|_| CounterProcess::spawn(&redis, &[], free_port(), free_port()))
        .collect();
    for c in &counters {
        c.wait_ready().await;
    }

    let mut config = Config::default();
    config.discovery.dns = "counters.test:50051".into();
    config.discovery.refresh_interval = Duration::from_millis(100);
    let config = Arc::new(config);
    let resolver = ScriptedResolver::default();
    resolver.answer(&[&counters[0], &counters[1]]);

    let set = Arc::new(EndpointSet::default());
    let stop = CancellationToken::new();
    let dns = {
        let (set, config, resolver, stop) =
            (set.clone(), config.clone(), resolver.clone(), stop.clone());
        tokio::spawn(async move {
            discovery::run_dns(set, config, &resolver, "counters.test:50051", stop).await
        })
    };
    let health = tokio::spawn(discovery::watch_health(
        set.clone(),
        Duration::from_millis(100),
        Duration::from_millis(500),
        stop.clone(),
    ));
    let backend = Arc::new(GatewayBackend::new(set.clone(), &config));
    wait_until("the gateway is ready", async || backend.is_ready()).await;

    // Traffic over 64 keys, tallied per key.
    const KEYS: usize = 64;
    let attempted: Arc<Vec<AtomicI64>> = Arc::new((0..KEYS).map(|_| AtomicI64::new(0)).collect());
    let acked: Arc<Vec<AtomicI64>> = Arc::new((0..KEYS).map(|_| AtomicI64::new(0)).collect());
    let failed = Arc::new(AtomicI64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (backend, attempted, acked, failed, running) = (
                backend.clone(),
                attempted.clone(),
                acked.clone(),
                failed.clone(),
                running.clone(),
            );
            tokio::spawn(async move {
                let mut i = w;
                while running.load(Ordering::Relaxed) {
                    let k = i % KEYS;
                    i += 1;
                    attempted[k].fetch_add(1, Ordering::SeqCst);
                    match backend
                        .increment(
                            CounterKey::new("view", &format!("d{k}")),
                            1,
                            Some("u"),
                            None,
                        )
                        .await
                    {
                        Ok(_) => acked[k].fetch_add(1, Ordering::SeqCst),
                        Err(_) => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();

    wait_until("both first counters take traffic", async || {
        acknowledged(&counters[0]).await > 100 && acknowledged(&counters[1]).await > 100
    })
    .await;
    assert_eq!(
        acknowledged(&counters[2]).await,
        0,
        "an undiscovered counter got traffic"
    );

    // DNS now also answers the third counter: it takes its share of keys.
    resolver.answer(&[&counters[0], &counters[1], &counters[2]]);
    wait_until("the added counter takes traffic", async || {
        acknowledged(&counters[2]).await > 100
    })
    .await;

    // DNS drops the first counter: its traffic stops although the process still runs.
    resolver.answer(&[&counters[1], &counters[2]]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = acknowledged(&counters[0]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        acknowledged(&counters[0]).await,
        before,
        "a removed counter still gets traffic"
    );
    let (c1, c2) = (
        acknowledged(&counters[1]).await,
        acknowledged(&counters[2]).await,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(acknowledged(&counters[1]).await > c1 && acknowledged(&counters[2]).await > c2);

    running.store(false, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    stop.cancel();
    dns.await.unwrap();
    health.await.unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed while endpoints changed"
    );
    for k in 0..KEYS {
        let stored = redis.get_i64(&format!("c:view:d{k}"));
        let (a, t) = (
            acked[k].load(Ordering::SeqCst),
            attempted[k].load(Ordering::SeqCst),
        );
        assert!(
            a <= stored && stored <= t,
            "key d{k}: acked {a}, stored {stored}, attempted {t}"
        );
        assert_eq!(stored, a, "no failures, so every attempt was acknowledged");
    }
}
