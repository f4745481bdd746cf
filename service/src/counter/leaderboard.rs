//! Leaderboard accumulation. Acknowledged increments add to an in-memory map per
//! `(hour, counter)`; every `leaderboard.flush_interval` (and at shutdown) the map goes to the
//! store in one pipeline. Writing four sorted sets per increment would multiply the store's work,
//! so rankings may lag counters by one interval; counters never lag.

use std::collections::HashMap;
use std::mem;
use std::sync::Mutex;

use crate::store::{CounterKey, LeaderboardDelta, Store, StoreError};

/// Leaderboard entries per store round trip.
const CHUNK: usize = 512;

/// Deltas waiting to be written to the rankings.
#[derive(Default)]
pub struct LeaderboardAccumulator {
    pending: Mutex<HashMap<(i64, CounterKey), i64>>,
}

impl LeaderboardAccumulator {
    /// Adds one flush's acknowledged sums, acknowledged in UTC hour `hour`.
    pub fn add<'a>(&self, hour: i64, sums: impl IntoIterator<Item = (&'a CounterKey, i64)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (key, delta) in sums {
            if delta == 0 {
                continue;
            }
            match pending.get_mut(&(hour, key.clone())) {
                Some(total) => *total = total.saturating_add(delta),
                None => {
                    pending.insert((hour, key.clone()), delta);
                }
            }
        }
    }

    /// Writes everything accumulated so far, in pipelines of [`CHUNK`] entries so that Redis
    /// serves counter flushes between them. Entries of a failed chunk go back into the map and
    /// are retried at the next flush, so rankings catch up after an outage (a chunk that timed
    /// out after Redis applied it is counted twice: rankings are at-least-once under faults).
    pub async fn flush_to<S: Store>(&self, store: &S) -> Result<usize, StoreError> {
        let taken = mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return Ok(0);
        }
        let deltas: Vec<LeaderboardDelta> = taken
            .into_iter()
            .map(|((hour, key), delta)| LeaderboardDelta { key, hour, delta })
            .collect();
        let mut written = 0;
        for chunk in deltas.chunks(CHUNK) {
            if let Err(e) = store.add_to_leaderboards(chunk).await {
                self.restore(&deltas[written..]);
                return Err(e);
            }
            written += chunk.len();
        }
        Ok(written)
    }

    fn restore(&self, deltas: &[LeaderboardDelta]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for d in deltas {
            let total = pending.entry((d.hour, d.key.clone())).or_insert(0);
            *total = total.saturating_add(d.delta);
        }
    }

    pub fn pending_len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
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
}
