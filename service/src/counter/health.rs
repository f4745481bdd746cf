//! Store health: one flag, set down by any failed store call and up again by a successful one.
//! While it is down, increments fail fast with `unavailable` instead of queueing behind timeouts,
//! and a watcher pings the store often, so recovery needs no restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::metrics::METRICS;
use crate::store::{Store, StoreError};

const PING_WHILE_UP: Duration = Duration::from_secs(1);
const PING_WHILE_DOWN: Duration = Duration::from_millis(100);

pub struct StoreHealth {
    up: AtomicBool,
}

impl StoreHealth {
    /// Starts optimistic: the first failed call or ping turns it down.
    pub fn new() -> Self {
        METRICS.store_up.set(1);
        Self {
            up: AtomicBool::new(true),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            METRICS.store_up.set(1);
            tracing::info!("store reachable again");
        }
    }

    /// Counts a failed store call; an unreachable store turns health down.
    pub fn record_error(&self, e: &StoreError) {
        match e {
            StoreError::Unavailable(_) => {
                METRICS
                    .store_errors
                    .with_label_values(&["unavailable"])
                    .inc();
                if self.up.swap(false, Ordering::Relaxed) {
                    METRICS.store_up.set(0);
                    tracing::warn!(error = %e, "store unreachable; failing fast until it answers");
                }
            }
            StoreError::Internal(_) => METRICS.store_errors.with_label_values(&["internal"]).inc(),
        }
    }
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self::new()
    }
}

/// Pings the store forever: every second while up, every 100 ms while down.
pub async fn watch<S: Store>(store: Arc<S>, health: Arc<StoreHealth>) {
    loop {
        match store.ping().await {
            Ok(()) => health.mark_up(),
            Err(e) => health.record_error(&e),
        }
        let pause = if health.is_up() {
            PING_WHILE_UP
        } else {
            PING_WHILE_DOWN
        };
        tokio::time::sleep(pause).await;
    }
}
