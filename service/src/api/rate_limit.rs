//! Rate limits (`api.rate_limit`): a token bucket per API token, or per client address when
//! auth is off, on increments and reads.
//!
//! Contract:
//! - Each bucket is the generic cell rate algorithm (GCRA): one "theoretical arrival time" per
//!   client, `requests_per_second` sustained and `burst` at once from a full bucket. A request
//!   over the limit is answered 429 `rate_limited` with `Retry-After` (whole seconds until the
//!   next request would pass) before its handler runs, so nothing is written.
//! - A token's bucket lives with the token and survives reloads of the tokens file; a token may
//!   set its own `rate_limit` there. Addresses are kept in [`SHARDS`] maps bounded by
//!   `max_clients` in all: a client whose bucket has refilled is forgotten first (which loses
//!   nothing: a new bucket starts full), and if every tracked client is still mid-bucket, a new
//!   address is let through untracked and counted.
//! - The limit is per process: behind N gateway pods, a client that spreads its requests over
//!   them gets up to N times the limit (docs/security.md).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};
use crate::config::RateLimitConfig;
use crate::metrics::METRICS;

/// Address maps; one lock each, so concurrent clients rarely wait on one another.
pub const SHARDS: usize = 16;

/// A sustained rate and a burst, as GCRA's emission interval and tolerance in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval: u64,
    tolerance: u64,
}

impl Rate {
    /// `per_second` requests per second on average, `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let interval = (1e9 / per_second).max(1.0) as u64;
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// Admits one request at `now` (nanoseconds) against the arrival time `tat`: the new arrival
    /// time, or how long until the request would pass.
    fn admit(self, tat: u64, now: u64) -> Result<u64, Duration> {
        let next = tat.max(now) + self.interval;
        if next > now + self.tolerance {
            Err(Duration::from_nanos(next - self.tolerance - now))
        } else {
            Ok(next)
        }
    }
}

/// One client's bucket, updated without a lock.
#[derive(Debug, Default)]
pub struct Bucket(AtomicU64);

impl Bucket {
    fn admit(&self, rate: Rate, now: u64) -> Result<(), Duration> {
        let mut tat = self.0.load(Ordering::Relaxed);
        loop {
            let next = rate.admit(tat, now)?;
            match self
                .0
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

/// The process's limiter: the default rate, and the buckets of client addresses.
pub struct RateLimiter {
    rate: Rate,
    epoch: Instant,
    addresses: [Mutex<HashMap<IpAddr, u64>>; SHARDS],
    per_shard: usize,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            rate: Rate::new(config.requests_per_second, config.burst),
            epoch: Instant::now(),
            addresses: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            per_shard: config.max_clients.div_ceil(SHARDS).max(1),
        }
    }

    /// The default rate, for tokens without their own.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    fn now(&self) -> u64 {
        // Offset by a day, so a bucket's zero arrival time is always in the past.
        self.epoch.elapsed().as_nanos() as u64 + 86_400_000_000_000
    }

    /// One request of the token whose bucket and rate these are; over the limit, how long
    /// until it would pass.
    pub fn admit_token(&self, name: &str, bucket: &Bucket, rate: Rate) -> Result<(), Duration> {
        bucket.admit(rate, self.now()).inspect_err(|_| count(name))
    }

    /// One request from `address`; over the limit, how long until it would pass.
    pub fn admit_address(&self, address: IpAddr) -> Result<(), Duration> {
        let now = self.now();
        let shard = &self.addresses[shard_of(address)];
        let mut tats = shard.lock().unwrap_or_else(|e| e.into_inner());
        if !tats.contains_key(&address) && tats.len() >= self.per_shard {
            // A refilled bucket is the same as no bucket: forget those first.
            tats.retain(|_, tat| *tat > now);
            if tats.len() >= self.per_shard {
                METRICS.rate_limit_untracked.inc();
                return Ok(());
            }
        }
        let tat = tats.entry(address).or_insert(0);
        match self.rate.admit(*tat, now) {
            Ok(next) => {
                *tat = next;
                Ok(())
            }
            Err(wait) => {
                count(ADDRESS_CLIENT);
                Err(wait)
            }
        }
    }
}

/// The `client` label of requests limited by address.
pub const ADDRESS_CLIENT: &str = "address";

fn shard_of(address: IpAddr) -> usize {
    let last = match address {
        IpAddr::V4(v4) => u64::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits() as u64,
    };
    (last.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS
}

fn count(client: &str) {
    METRICS.rate_limited.with_label_values(&[client]).inc();
}

/// The 429 answer to a request that would pass after `wait`, with `Retry-After` in whole
/// seconds (at least 1).
pub fn too_many_requests(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = ApiError::new(
        ErrorCode::RateLimited,
        format!("over the rate limit; retry in {seconds} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The client address of a request, as the server saw the connection's peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub IpAddr);

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_admits_the_burst_then_the_rate() {
        let rate = Rate::new(10.0, 5);
        let bucket = Bucket::default();
        let t0 = 100 * SECOND;
        for i in 0..5 {
            assert_eq!(bucket.admit(rate, t0), Ok(()), "request {i} of the burst");
        }
        let wait = bucket
            .admit(rate, t0)
            .expect_err("the sixth at once is over");
        assert_eq!(wait, Duration::from_millis(100));
        // One interval later, exactly one more.
        assert_eq!(bucket.admit(rate, t0 + SECOND / 10), Ok(()));
        assert!(bucket.admit(rate, t0 + SECOND / 10).is_err());
        // Idle long enough, the whole burst again (and no more).
        let later = t0 + 10 * SECOND;
        assert_eq!(
            (0..7).filter(|_| bucket.admit(rate, later).is_ok()).count(),
            5
        );
    }

    #[test]
    fn refused_requests_do_not_use_up_the_bucket() {
        let rate = Rate::new(1.0, 1);
        let bucket = Bucket::default();
        let t0 = 100 * SECOND;
        assert!(bucket.admit(rate, t0).is_ok());
        for _ in 0..100 {
            assert!(bucket.admit(rate, t0 + SECOND / 2).is_err());
        }
        assert!(bucket.admit(rate, t0 + SECOND).is_ok());
    }

    #[test]
    fn addresses_are_forgotten_once_refilled_and_let_through_beyond_the_bound() {
        let limiter = RateLimiter::new(&RateLimitConfig {
            enabled: true,
            requests_per_second: 1.0,
            burst: 1,
            max_clients: SHARDS,
        });
        let a: IpAddr = "10.0.0.1".parse().expect("an address");
        assert!(limiter.admit_address(a).is_ok());
        assert!(limiter.admit_address(a).is_err());
        let shard = shard_of(a);
        // Another address in the same full shard is let through (untracked) while a is
        // mid-bucket.
        let b = (2..u32::MAX)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from_bits(0x0a00_0000 + i)))
            .find(|b| shard_of(*b) == shard)
            .expect("an address in the same shard");
        assert!(limiter.admit_address(b).is_ok());
        assert!(limiter.admit_address(b).is_ok());
        assert!(limiter.admit_address(a).is_err(), "a is still tracked");
    }
}
