//! A circuit breaker per counter endpoint. It opens after `failure_threshold` consecutive
//! failures, or when at least `error_rate` of the last `window` calls failed; after `open_for`
//! it lets one probe through (half-open); the probe's success closes it, its failure reopens it.

use std::sync::Mutex;
use std::time::Instant;

use prometheus::IntGauge;

use crate::config::BreakerConfig;
use crate::metrics::METRICS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    /// `highpress_gateway_breaker_state{endpoint, state}` for closed, open and half-open.
    gauges: Option<[IntGauge; 3]>,
}

struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    window_calls: u32,
    window_failures: u32,
    opened_at: Instant,
    probe_in_flight: bool,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            gauges: None,
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                window_calls: 0,
                window_failures: 0,
                opened_at: Instant::now(),
                probe_in_flight: false,
            }),
        }
    }

    /// A breaker that reports its state as `highpress_gateway_breaker_state{endpoint}`.
    pub fn for_endpoint(config: BreakerConfig, endpoint: &str) -> Self {
        let gauges = [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ]
        .map(|s| {
            METRICS
                .breaker_state
                .with_label_values(&[endpoint, s.as_str()])
        });
        let breaker = Self {
            gauges: Some(gauges),
            ..Self::new(config)
        };
        breaker.show(BreakerState::Closed);
        breaker
    }

    fn show(&self, state: BreakerState) {
        if let Some(gauges) = &self.gauges {
            for (gauge, s) in gauges.iter().zip([
                BreakerState::Closed,
                BreakerState::Open,
                BreakerState::HalfOpen,
            ]) {
                gauge.set(i64::from(s == state));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether a call may go to this endpoint now. In half-open state one probe at a time.
    pub fn allow(&self) -> bool {
        let mut s = self.lock();
        match s.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                if s.opened_at.elapsed() >= self.config.open_for {
                    s.state = BreakerState::HalfOpen;
                    s.probe_in_flight = true;
                    self.show(BreakerState::HalfOpen);
                    true
                } else {
                    false
                }
            }
            BreakerState::HalfOpen => {
                if s.probe_in_flight {
                    false
                } else {
                    s.probe_in_flight = true;
                    true
                }
            }
        }
    }

    /// Whether calls would be allowed, without claiming the half-open probe.
    pub fn is_available(&self) -> bool {
        let s = self.lock();
        match s.state {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => !s.probe_in_flight,
            BreakerState::Open => s.opened_at.elapsed() >= self.config.open_for,
        }
    }

    pub fn record_success(&self) {
        let mut s = self.lock();
        s.consecutive_failures = 0;
        s.probe_in_flight = false;
        if s.state != BreakerState::Closed {
            s.state = BreakerState::Closed;
            s.window_calls = 0;
            s.window_failures = 0;
            self.show(BreakerState::Closed);
            tracing::info!("circuit closed");
        }
        if self.count(&mut s, false) {
            self.open(&mut s);
        }
    }

    fn open(&self, s: &mut Inner) {
        s.state = BreakerState::Open;
        s.opened_at = Instant::now();
        self.show(BreakerState::Open);
        tracing::warn!(failures = s.consecutive_failures, "circuit opened");
    }

    pub fn record_failure(&self) {
        let mut s = self.lock();
        s.probe_in_flight = false;
        s.consecutive_failures += 1;
        let trip_rate = self.count(&mut s, true);
        let trip = match s.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => {
                s.consecutive_failures >= self.config.failure_threshold || trip_rate
            }
            BreakerState::Open => false,
        };
        if trip {
            self.open(&mut s);
        }
    }

    /// Counts a call in the rolling window; true when the window's error rate says open.
    fn count(&self, s: &mut Inner, failed: bool) -> bool {
        s.window_calls += 1;
        s.window_failures += u32::from(failed);
        if s.window_calls < self.config.window {
            return false;
        }
        let rate = f64::from(s.window_failures) / f64::from(s.window_calls);
        s.window_calls = 0;
        s.window_failures = 0;
        rate >= self.config.error_rate
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn breaker(open_ms: u64) -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            error_rate: 0.5,
            window: 10,
            open_for: Duration::from_millis(open_ms),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_after_the_pause() {
        let b = breaker(20);
        for _ in 0..2 {
            b.record_failure();
        }
        assert!(b.allow());
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow(), "one probe after the pause");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(), "only one probe at a time");
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker(10);
        for _ in 0..3 {
            b.record_failure();
        }
        std::thread::sleep(Duration::from_millis(15));
        assert!(b.allow());
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
    }

    #[test]
    fn opens_on_error_rate_without_consecutive_failures() {
        let b = breaker(1_000);
        for i in 0..10 {
            if i % 2 == 0 {
                b.record_failure();
            } else {
                b.record_success();
            }
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn state_gauge_follows_the_breaker() {
        let config = BreakerConfig {
            failure_threshold: 1,
            error_rate: 0.5,
            window: 10,
            open_for: Duration::ZERO,
        };
        let b = Breaker::for_endpoint(config, "breaker-test:1");
        let gauge = |state: &str| {
            METRICS
                .breaker_state
                .with_label_values(&["breaker-test:1", state])
                .get()
        };
        assert_eq!((gauge("closed"), gauge("open")), (1, 0));
        b.record_failure();
        assert_eq!((gauge("closed"), gauge("open")), (0, 1));
        assert!(b.allow());
        assert_eq!((gauge("open"), gauge("half_open")), (0, 1));
        b.record_success();
        assert_eq!((gauge("closed"), gauge("half_open")), (1, 0));
    }

    #[test]
    fn successes_keep_it_closed() {
        let b = breaker(1_000);
        for _ in 0..100 {
            b.record_success();
        }
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
