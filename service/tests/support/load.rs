//! A load of increments over a few keys, for fault tests: workers send `c:like:k{i}`
//! increments round-robin, tally per key what was attempted and acknowledged, and timestamp
//! every failure; [`assert_consistent`] then checks acknowledged ≤ stored ≤ attempted per key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// The resource id of key `i`.
pub fn key_name(i: usize) -> String {
    format!("k{i}")
}

#[derive(Default)]
pub struct KeyTally {
    pub attempted: AtomicI64,
    pub acknowledged: AtomicI64,
    pub failed: AtomicI64,
}

/// One failed answer: when, which key, and its error code.
pub type Failure = (Instant, usize, String);

/// Workers incrementing `keys` keys round-robin. Any answer but 200 or 503, or a failed
/// connection, panics the worker, and so fails [`finish`](Self::finish).
pub struct Load {
    tallies: Arc<Vec<KeyTally>>,
    stop: Arc<AtomicBool>,
    failures: Arc<std::sync::Mutex<Vec<Failure>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(base: &str, keys: usize, workers: usize) -> Self {
        let tallies: Arc<Vec<KeyTally>> =
            Arc::new((0..keys).map(|_| KeyTally::default()).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let url = format!("{base}/api/v1/counter/increment");
        let handles = (0..workers)
            .map(|w| {
                let (url, tallies, stop, failures) = (url.clone(), tallies.clone(), stop.clone(), failures.clone());
                tokio::spawn(async move {
                    let client = super::client();
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        let k = i % keys;
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
                                assert_eq!(r.status(), 503, "only 503 is acceptable during a fault");
                                let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                                assert!(retry.is_some(), "503 without Retry-After");
                                tallies[k].failed.fetch_add(1, Ordering::SeqCst);
                                let at = Instant::now();
                                let body: serde_json::Value = r.json().await.unwrap_or_default();
                                let code = body["error"]["code"].as_str().unwrap_or("?").to_owned();
                                failures.lock().unwrap().push((at, k, code));
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Err(e) => panic!("the REST server itself failed: {e}"),
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

    pub fn acknowledged(&self, k: usize) -> i64 {
        self.tallies[k].acknowledged.load(Ordering::SeqCst)
    }

    /// Every acknowledgement so far, over all keys.
    pub fn total_acknowledged(&self) -> i64 {
        (0..self.tallies.len()).map(|k| self.acknowledged(k)).sum()
    }

    /// The failures so far.
    pub fn failures(&self) -> Vec<Failure> {
        self.failures.lock().unwrap().clone()
    }

    /// Waits (bounded by `within`) until each of `keys` has `more` acknowledgements than now.
    pub async fn wait_for_more_acks_within(&self, keys: &[usize], more: i64, within: Duration) {
        let start: Vec<i64> = keys.iter().map(|&k| self.acknowledged(k)).collect();
        let deadline = Instant::now() + within;
        while keys
            .iter()
            .zip(&start)
            .any(|(&k, &s)| self.acknowledged(k) < s + more)
        {
            assert!(
                Instant::now() < deadline,
                "keys {keys:?} made no progress in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_for_more_acks(&self, keys: &[usize], more: i64) {
        self.wait_for_more_acks_within(keys, more, Duration::from_secs(15))
            .await;
    }

    pub async fn finish(self) -> (Arc<Vec<KeyTally>>, Vec<Failure>) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.await.expect("load task");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.tallies, failures)
    }
}

/// Per key: the store holds every acknowledged increment and no more than were attempted.
/// `stored` reads a key's value by resource id.
pub fn assert_consistent(tallies: &[KeyTally], mut stored: impl FnMut(&str) -> i64) {
    for (k, t) in tallies.iter().enumerate() {
        let stored = stored(&key_name(k));
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
