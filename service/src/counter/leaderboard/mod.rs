//! Leaderboard accumulation. Acknowledged increments add to an in-memory map per
//! `(hour, counter)`; every `leaderboard.flush_interval` (and at shutdown) the map goes to the
//! store in one pipeline. Writing four sorted sets per increment would multiply the store's work,
//! so rankings may lag counters by one interval; counters never lag.
//!
//! A reset counter leaves the rankings the same way: its deltas not yet written are dropped,
//! and the next flush takes it out of the rankings of the reset's hour before it adds anything
//! counted after the reset.

use std::collections::{HashMap, HashSet};
use std::mem;
use std::sync::Mutex;

use crate::store::{CounterKey, LeaderboardDelta, LeaderboardRemoval, Store, StoreError};

/// Leaderboard entries per store round trip.
const CHUNK: usize = 512;

/// Deltas and removals waiting to be written to the rankings.
#[derive(Default)]
pub struct LeaderboardAccumulator {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    deltas: HashMap<(i64, CounterKey), i64>,
    removals: HashSet<LeaderboardRemoval>,
}

impl Pending {
    fn add(&mut self, hour: i64, key: &CounterKey, delta: i64) {
        let total = self.deltas.entry((hour, key.clone())).or_insert(0);
        *total = total.saturating_add(delta);
    }
}

impl LeaderboardAccumulator {
    /// Adds one flush's acknowledged sums, acknowledged in UTC hour `hour`.
    pub fn add<'a>(&self, hour: i64, sums: impl IntoIterator<Item = (&'a CounterKey, i64)>) {
        let mut pending = self.lock();
        for (key, delta) in sums {
            if delta != 0 {
                pending.add(hour, key, delta);
            }
        }
    }

    /// Takes a counter reset in UTC hour `hour` out of the rankings: its unwritten deltas are
    /// dropped, and the next flush removes it before adding what was counted since. Resets are
    /// rare, so a scan of the pending deltas is cheap enough.
    pub fn remove(&self, hour: i64, key: &CounterKey) {
        let mut pending = self.lock();
        pending.deltas.retain(|(_, k), _| k != key);
        pending.removals.insert(LeaderboardRemoval {
            key: key.clone(),
            hour,
        });
    }

    /// Writes everything accumulated so far, in pipelines of [`CHUNK`] deltas (the removals go
    /// first, with the first chunk) so that Redis serves counter flushes between them. What a
    /// failed pipeline held goes back into the accumulator and is retried at the next flush, so
    /// rankings catch up after an outage (a chunk that timed out after Redis applied it is
    /// counted twice: rankings are at-least-once under faults).
    pub async fn flush_to<S: Store>(&self, store: &S) -> Result<usize, StoreError> {
        let taken = mem::take(&mut *self.lock());
        if taken.deltas.is_empty() && taken.removals.is_empty() {
            return Ok(0);
        }
        let removals: Vec<LeaderboardRemoval> = taken.removals.into_iter().collect();
        let deltas: Vec<LeaderboardDelta> = taken
            .deltas
            .into_iter()
            .map(|((hour, key), delta)| LeaderboardDelta { key, hour, delta })
            .collect();
        let (mut removals, mut rest) = (&removals[..], &deltas[..]);
        let mut written = 0;
        loop {
            let (chunk, after) = rest.split_at(rest.len().min(CHUNK));
            if let Err(e) = store.update_leaderboards(removals, chunk).await {
                self.restore(removals, rest);
                return Err(e);
            }
            written += removals.len() + chunk.len();
            (removals, rest) = (&[], after);
            if rest.is_empty() {
                return Ok(written);
            }
        }
    }

    /// Puts back what a failed flush took. A counter reset since then keeps its new removal
    /// and loses the old deltas, which were counted before that reset.
    fn restore(&self, removals: &[LeaderboardRemoval], deltas: &[LeaderboardDelta]) {
        let mut pending = self.lock();
        let reset_since: HashSet<CounterKey> =
            pending.removals.iter().map(|r| r.key.clone()).collect();
        for d in deltas {
            if !reset_since.contains(&d.key) {
                pending.add(d.hour, &d.key, d.delta);
            }
        }
        pending.removals.extend(removals.iter().cloned());
    }

    pub fn pending_len(&self) -> usize {
        let pending = self.lock();
        pending.deltas.len() + pending.removals.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{LeaderboardBucket, Period};

    #[tokio::test]
    async fn sums_accumulate_until_flushed() {
        let acc = LeaderboardAccumulator::default();
        let (a, b) = (CounterKey::new("like", "a"), CounterKey::new("like", "b"));
        acc.add(100, [(&a, 2), (&b, 1)]);
        acc.add(100, [(&a, 3)]);
        assert_eq!(acc.pending_len(), 2);
        let store = MemoryStore::new();
        assert_eq!(acc.flush_to(&store).await.unwrap(), 2);
        assert_eq!(acc.pending_len(), 0);
        let top = store
            .leaderboard_top(
                &LeaderboardBucket::containing("like", Period::Hour, 100),
                10,
            )
            .await
            .unwrap();
        assert_eq!(top[0].resource_id, "a");
        assert_eq!(top[0].count, 5);
        assert_eq!(top[1].count, 1);
    }

    async fn ranked(store: &MemoryStore, hour: i64) -> Vec<(String, i64)> {
        let bucket = LeaderboardBucket::containing("like", Period::All, hour);
        let top = store.leaderboard_top(&bucket, 10).await.unwrap();
        top.into_iter().map(|e| (e.resource_id, e.count)).collect()
    }

    #[tokio::test]
    async fn a_reset_drops_unwritten_deltas_and_takes_the_counter_out() {
        let acc = LeaderboardAccumulator::default();
        let store = MemoryStore::new();
        let (a, b) = (CounterKey::new("like", "a"), CounterKey::new("like", "b"));
        acc.add(100, [(&a, 5), (&b, 3)]);
        acc.flush_to(&store).await.unwrap();
        acc.add(100, [(&a, 2), (&b, 1)]); // unwritten when `a` is reset
        acc.remove(100, &a);
        acc.add(101, [(&a, 1)]); // counted after the reset, in the next hour
        acc.flush_to(&store).await.unwrap();
        let expected = vec![("b".to_string(), 4), ("a".to_string(), 1)];
        assert_eq!(ranked(&store, 101).await, expected);
    }

    #[tokio::test]
    async fn a_failed_flush_gives_back_only_what_no_reset_has_superseded() {
        let acc = LeaderboardAccumulator::default();
        let (a, b) = (CounterKey::new("like", "a"), CounterKey::new("like", "b"));
        let old = |key: &CounterKey, delta| LeaderboardDelta {
            key: key.clone(),
            hour: 100,
            delta,
        };
        let earlier_reset = LeaderboardRemoval {
            key: b.clone(),
            hour: 99,
        };
        // A flush took these and failed; meanwhile `a` was reset and counted 1 more.
        acc.remove(100, &a);
        acc.add(100, [(&a, 1)]);
        acc.restore(
            std::slice::from_ref(&earlier_reset),
            &[old(&a, 9), old(&b, 2)],
        );
        let store = MemoryStore::new();
        acc.flush_to(&store).await.unwrap();
        // `a`'s 9 predate its reset and are gone; `b`'s 2 came after its own reset and stay.
        let expected = vec![("b".to_string(), 2), ("a".to_string(), 1)];
        assert_eq!(ranked(&store, 100).await, expected);
    }
}
