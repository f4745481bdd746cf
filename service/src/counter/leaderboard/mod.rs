//! Top-K leaderboards. Acknowledged increments accumulate in memory; every
//! `leaderboard.flush_interval` (and at shutdown) the candidates go to the store, and each
//! ranking is trimmed to its top `leaderboard.top_k`. Rankings may lag counters by one interval;
//! counters never lag.
//!
//! What a ranking costs grows with K, not with the number of counters: a counter writes to a
//! ranking only when its score beats the ranking's K-th score, which every write reads back. So
//! the long tail costs a comparison in this process and nothing in the store.
//!
//! - **All time: exact.** The score is the counter's value, which the flush knows: the write
//!   sets it (`ZADD GT`) instead of adding to it. A counter pushed out of the top K comes back
//!   with its true value when it climbs again.
//! - **Hour, day, week: approximate, with a bound.** Each process keeps a Space-Saving summary
//!   ([`heavy_hitters`]) of `HEAVY_HITTERS_PER_K × K` counters per ranking over the increments
//!   it acknowledged in the period (rendezvous routing sends all of one counter's increments
//!   to one process, so that is all of them while ownership holds). It writes the certain part
//!   of each sum: a score is never above the counter's increments in the period, and at most
//!   `N / (HEAVY_HITTERS_PER_K × K)` below, `N` being the increments the owner acknowledged for
//!   that counter type in that period.
//! - **Decrements** lower a score only on a counter already in the ranking (`ZADD XX`).
//! - **Resets** take the counter out of its four rankings before anything counted after the
//!   reset is written; its unwritten deltas are dropped.
//!
//! Writes set scores rather than add to them, so a write that failed is retried as it was (the
//! next flush sends it again, unless newer scores replaced it): rankings do not double count
//! under faults.

pub mod heavy_hitters;

use std::collections::HashSet;

use hashbrown::HashMap;
use std::mem;
use std::sync::Mutex;

use heavy_hitters::HeavyHitters;

use crate::store::{
    BoardWrite, CounterKey, LeaderboardBucket, LeaderboardRemoval, Period, Store, StoreError,
};

/// Space-Saving slots per ranked member, for the hour, day and week rankings.
pub const HEAVY_HITTERS_PER_K: usize = 4;

/// Scores per store round trip, so that Redis serves counter flushes between them.
const CHUNK: usize = 512;

/// Deltas and removals waiting to be written, and what the rankings looked like at the last
/// write.
pub struct LeaderboardAccumulator {
    top_k: usize,
    pending: Mutex<Pending>,
    /// Touched only by the flush (one at a time).
    boards: Mutex<Boards>,
}

#[derive(Default)]
struct Pending {
    /// Increments per (UTC hour, counter), for the period rankings.
    deltas: HashMap<(i64, CounterKey), i64>,
    /// Each counter's latest value and its net change since the last write, for all time.
    latest: HashMap<CounterKey, (i64, i64)>,
    removals: HashSet<LeaderboardRemoval>,
}

struct Boards {
    /// The Space-Saving summary of each current hour, day and week ranking.
    summaries: HashMap<LeaderboardBucket, Summary>,
    /// Each ranking's K-th score at the last write (absent: fewer than K members).
    kth: HashMap<LeaderboardBucket, i64>,
    /// Scores a failed write did not deliver, per ranking.
    unsent: HashMap<LeaderboardBucket, Scores>,
    /// The latest hour increments were counted in: the periods that contain it are current.
    latest_hour: i64,
}

struct Summary {
    counter_type: Box<str>,
    heavy: HeavyHitters,
}

/// One ranking's new scores: raised (or added), or lowered on members only.
#[derive(Default)]
struct Scores(HashMap<CounterKey, Score>);

#[derive(Clone, Copy)]
enum Score {
    Raise(i64),
    Lower(i64),
}

impl LeaderboardAccumulator {
    /// Rankings of the top `top_k` counters.
    pub fn new(top_k: usize) -> Self {
        Self {
            top_k,
            pending: Mutex::default(),
            boards: Mutex::new(Boards {
                summaries: HashMap::new(),
                kth: HashMap::new(),
                unsent: HashMap::new(),
                latest_hour: i64::MIN,
            }),
        }
    }

    /// Adds one flush's counted increments, acknowledged in UTC hour `hour`: per counter, the
    /// delta counted and the counter's value after it.
    pub fn add<'a>(
        &self,
        hour: i64,
        counted: impl IntoIterator<Item = (&'a CounterKey, i64, i64)>,
    ) {
        let mut pending = lock(&self.pending);
        for (key, delta, value) in counted {
            if delta == 0 {
                continue;
            }
            let sum = pending.deltas.entry((hour, key.clone())).or_insert(0);
            *sum = sum.saturating_add(delta);
            match pending.latest.get_mut(key) {
                Some(latest) => *latest = (value, latest.1.saturating_add(delta)),
                None => {
                    pending.latest.insert(key.clone(), (value, delta));
                }
            }
        }
    }

    /// Takes a counter reset in UTC hour `hour` out of the rankings: its unwritten deltas are
    /// dropped, and the next flush removes it before writing what was counted since. Resets are
    /// rare, so a scan of the pending deltas is cheap enough.
    pub fn remove(&self, hour: i64, key: &CounterKey) {
        let mut pending = lock(&self.pending);
        pending.deltas.retain(|(_, k), _| k != key);
        pending.latest.remove(key);
        pending.removals.insert(LeaderboardRemoval {
            key: key.clone(),
            hour,
        });
    }

    /// Writes the removals and every candidate accumulated so far, and trims each ranking to
    /// the top K. Returns how many removals and scores were written. On failure, the removals
    /// go back to the accumulator and the scores wait for the next flush.
    pub async fn flush_to<S: Store>(&self, store: &S) -> Result<usize, StoreError> {
        let taken = mem::take(&mut *lock(&self.pending));
        let removals: Vec<LeaderboardRemoval> = taken.removals.iter().cloned().collect();
        let writes = lock(&self.boards).candidates(taken, self.top_k);
        if removals.is_empty() && writes.is_empty() {
            return Ok(0);
        }
        let chunks = chunked(writes, self.top_k);
        let mut removals_left = &removals[..];
        let mut written = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            match store.update_leaderboards(removals_left, chunk).await {
                Ok(kth) => {
                    let mut boards = lock(&self.boards);
                    for (write, kth) in chunk.iter().zip(kth) {
                        match kth {
                            Some(score) => boards.kth.insert(write.bucket.clone(), score),
                            None => boards.kth.remove(&write.bucket),
                        };
                    }
                    written += removals_left.len()
                        + chunk
                            .iter()
                            .map(|w| w.raised.len() + w.lowered.len())
                            .sum::<usize>();
                    removals_left = &[];
                }
                Err(e) => {
                    let mut pending = lock(&self.pending);
                    pending.removals.extend(removals_left.iter().cloned());
                    lock(&self.boards).keep_unsent(&chunks[i..], &pending.removals);
                    return Err(e);
                }
            }
        }
        Ok(written)
    }

    pub fn pending_len(&self) -> usize {
        let pending = lock(&self.pending);
        pending.deltas.len() + pending.removals.len()
    }
}

impl Boards {
    /// What to write for `taken`: per ranking, the scores that beat its K-th score (or lower a
    /// member), merged over what earlier failed writes left unsent.
    fn candidates(&mut self, taken: Pending, top_k: usize) -> Vec<BoardWrite> {
        let mut scores = mem::take(&mut self.unsent);
        for removal in &taken.removals {
            for summary in self.summaries.values_mut() {
                summary.heavy.remove(&removal.key);
            }
            for board in scores.values_mut() {
                board.0.remove(&removal.key);
            }
        }
        // Summaries of periods that ended will not be written again.
        let latest = taken.deltas.keys().map(|(hour, _)| *hour).max();
        self.latest_hour = self.latest_hour.max(latest.unwrap_or(i64::MIN));
        let now = self.latest_hour;
        self.summaries.retain(|bucket, s| {
            *bucket == LeaderboardBucket::containing(&s.counter_type, bucket.period, now)
        });
        let capacity = HEAVY_HITTERS_PER_K * top_k;
        // Each (counter type, hour) names the same three period rankings; build them once.
        let mut periods: HashMap<(Box<str>, i64), [LeaderboardBucket; 3]> = HashMap::new();
        for ((hour, key), delta) in taken.deltas {
            let buckets = periods
                .entry((key.counter_type().into(), hour))
                .or_insert_with(|| {
                    [Period::Hour, Period::Day, Period::Week]
                        .map(|p| LeaderboardBucket::containing(key.counter_type(), p, hour))
                });
            for bucket in buckets.iter() {
                if !self.summaries.contains_key(bucket) {
                    self.summaries.insert(
                        bucket.clone(),
                        Summary {
                            counter_type: key.counter_type().into(),
                            heavy: HeavyHitters::new(capacity),
                        },
                    );
                }
                let summary = self.summaries.get_mut(bucket).expect("inserted above");
                let (certain, exact) = summary.heavy.add(&key, delta);
                // A fall is written only when the whole sum is known.
                if delta > 0 || exact {
                    offer(&self.kth, &mut scores, bucket, &key, certain, delta);
                }
            }
        }
        let mut all_time: HashMap<Box<str>, LeaderboardBucket> = HashMap::new();
        for (key, (value, net)) in taken.latest {
            let bucket = all_time
                .entry(key.counter_type().into())
                .or_insert_with(|| {
                    LeaderboardBucket::containing(key.counter_type(), Period::All, 0)
                });
            offer(&self.kth, &mut scores, bucket, &key, value, net);
        }
        self.kth.retain(|bucket, _| {
            bucket.period == Period::All
                || scores.contains_key(bucket)
                || self.summaries.contains_key(bucket)
        });
        scores
            .into_iter()
            .filter(|(_, s)| !s.0.is_empty())
            .map(|(bucket, s)| {
                let (mut raised, mut lowered) = (Vec::new(), Vec::new());
                for (key, score) in s.0 {
                    match score {
                        Score::Raise(v) => raised.push((key, v)),
                        Score::Lower(v) => lowered.push((key, v)),
                    }
                }
                BoardWrite {
                    bucket,
                    keep: top_k,
                    raised,
                    lowered,
                }
            })
            .collect()
    }

    /// Keeps the scores of writes that did not happen for the next flush, but none of a
    /// counter reset since (its removal is pending again).
    fn keep_unsent(&mut self, writes: &[Vec<BoardWrite>], removals: &HashSet<LeaderboardRemoval>) {
        let reset: HashSet<&CounterKey> = removals.iter().map(|r| &r.key).collect();
        for write in writes.iter().flatten() {
            let board = self.unsent.entry(write.bucket.clone()).or_default();
            let raised = write.raised.iter().map(|(k, v)| (k, Score::Raise(*v)));
            let lowered = write.lowered.iter().map(|(k, v)| (k, Score::Lower(*v)));
            for (key, score) in raised.chain(lowered) {
                if !reset.contains(key) {
                    board.0.entry(key.clone()).or_insert(score);
                }
            }
        }
    }
}

/// Records `key`'s new `score` in `bucket` if it can matter: a rise that beats the K-th score
/// (`kth`), or any fall (only members are lowered).
fn offer(
    kth: &HashMap<LeaderboardBucket, i64>,
    scores: &mut HashMap<LeaderboardBucket, Scores>,
    bucket: &LeaderboardBucket,
    key: &CounterKey,
    score: i64,
    change: i64,
) {
    let entry = if change > 0 {
        if kth.get(bucket).is_some_and(|&kth| score <= kth) {
            return;
        }
        Score::Raise(score)
    } else if change < 0 {
        Score::Lower(score)
    } else {
        return;
    };
    match scores.get_mut(bucket) {
        Some(board) => board.0.insert(key.clone(), entry),
        None => scores
            .entry(bucket.clone())
            .or_default()
            .0
            .insert(key.clone(), entry),
    };
}

/// Splits `writes` into round trips of about [`CHUNK`] scores each (a ranking's scores may span
/// several; each part trims and answers its K-th score).
fn chunked(writes: Vec<BoardWrite>, top_k: usize) -> Vec<Vec<BoardWrite>> {
    let mut chunks: Vec<Vec<BoardWrite>> = Vec::new();
    let mut current: Vec<BoardWrite> = Vec::new();
    let mut size = 0;
    for write in writes {
        let BoardWrite {
            bucket,
            mut raised,
            mut lowered,
            ..
        } = write;
        while !raised.is_empty() || !lowered.is_empty() {
            let room = CHUNK.saturating_sub(size).max(1);
            let r: Vec<_> = raised.drain(..raised.len().min(room)).collect();
            let l: Vec<_> = lowered.drain(..lowered.len().min(room - r.len())).collect();
            size += r.len() + l.len();
            current.push(BoardWrite {
                bucket: bucket.clone(),
                keep: top_k,
                raised: r,
                lowered: l,
            });
            if size >= CHUNK {
                chunks.push(mem::take(&mut current));
                size = 0;
            }
        }
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    const HOUR: i64 = 100;

    async fn ranked(store: &MemoryStore, period: Period) -> Vec<(String, i64)> {
        let bucket = LeaderboardBucket::containing("like", period, HOUR);
        let top = store.leaderboard_top(&bucket, 100).await.unwrap();
        top.into_iter().map(|e| (e.resource_id, e.count)).collect()
    }

    fn like(id: &str) -> CounterKey {
        CounterKey::new("like", id)
    }

    #[tokio::test]
    async fn sums_accumulate_until_flushed() {
        let acc = LeaderboardAccumulator::new(100);
        let (a, b) = (like("a"), like("b"));
        acc.add(HOUR, [(&a, 2, 2), (&b, 1, 1)]);
        acc.add(HOUR, [(&a, 3, 5)]);
        assert_eq!(acc.pending_len(), 2);
        let store = MemoryStore::new();
        // Two counters in each of the four rankings.
        assert_eq!(acc.flush_to(&store).await.unwrap(), 8);
        assert_eq!(acc.pending_len(), 0);
        for period in Period::ALL {
            let expected = vec![("a".to_string(), 5), ("b".to_string(), 1)];
            assert_eq!(ranked(&store, period).await, expected, "{period:?}");
        }
    }

    #[tokio::test]
    async fn all_time_scores_are_values_and_the_rankings_keep_the_top_k() {
        let acc = LeaderboardAccumulator::new(3);
        let store = MemoryStore::new();
        let keys: Vec<CounterKey> = (0..10).map(|i| like(&format!("k{i}"))).collect();
        // The all-time values start above the increments: counted before this process ran.
        acc.add(HOUR, keys.iter().zip(1..).map(|(k, i)| (k, i, 100 + i)));
        acc.flush_to(&store).await.unwrap();
        let top = |v: &[(usize, i64)]| -> Vec<(String, i64)> {
            v.iter().map(|&(i, s)| (format!("k{i}"), s)).collect()
        };
        assert_eq!(
            ranked(&store, Period::All).await,
            top(&[(9, 110), (8, 109), (7, 108)])
        );
        assert_eq!(
            ranked(&store, Period::Hour).await,
            top(&[(9, 10), (8, 9), (7, 8)])
        );
        // k0 climbs back with its true value.
        acc.add(HOUR, [(&keys[0], 50, 160)]);
        acc.flush_to(&store).await.unwrap();
        assert_eq!(
            ranked(&store, Period::All).await,
            top(&[(0, 160), (9, 110), (8, 109)])
        );
        assert_eq!(
            ranked(&store, Period::Hour).await,
            top(&[(0, 51), (9, 10), (8, 9)])
        );
    }

    #[tokio::test]
    async fn the_tail_below_the_kth_score_writes_nothing() {
        let acc = LeaderboardAccumulator::new(2);
        let store = MemoryStore::new();
        let (a, b, c) = (like("a"), like("b"), like("c"));
        acc.add(HOUR, [(&a, 10, 10), (&b, 9, 9)]);
        acc.flush_to(&store).await.unwrap();
        acc.add(HOUR, [(&c, 1, 1)]);
        assert_eq!(
            acc.flush_to(&store).await.unwrap(),
            0,
            "c cannot enter any ranking"
        );
        acc.add(HOUR, [(&c, 9, 10)]);
        // c now beats the K-th score (9) of all four rankings.
        assert_eq!(acc.flush_to(&store).await.unwrap(), 4);
        let expected = vec![("c".to_string(), 10), ("a".to_string(), 10)];
        assert_eq!(ranked(&store, Period::Week).await, expected);
    }

    #[tokio::test]
    async fn decrements_lower_members_and_add_no_one() {
        let acc = LeaderboardAccumulator::new(10);
        let store = MemoryStore::new();
        let (a, b) = (like("a"), like("b"));
        acc.add(HOUR, [(&a, 5, 5)]);
        acc.flush_to(&store).await.unwrap();
        acc.add(HOUR, [(&a, -2, 3), (&b, -1, -1)]);
        acc.flush_to(&store).await.unwrap();
        let expected = vec![("a".to_string(), 3)];
        assert_eq!(ranked(&store, Period::All).await, expected);
        assert_eq!(ranked(&store, Period::Day).await, expected);
    }

    #[tokio::test]
    async fn a_reset_drops_unwritten_deltas_and_takes_the_counter_out() {
        let acc = LeaderboardAccumulator::new(100);
        let store = MemoryStore::new();
        let (a, b) = (like("a"), like("b"));
        acc.add(HOUR, [(&a, 5, 5), (&b, 3, 3)]);
        acc.flush_to(&store).await.unwrap();
        acc.add(HOUR, [(&a, 2, 7), (&b, 1, 4)]); // unwritten when `a` is reset
        acc.remove(HOUR, &a);
        acc.add(HOUR, [(&a, 1, 1)]); // counted after the reset
        acc.flush_to(&store).await.unwrap();
        let expected = vec![("b".to_string(), 4), ("a".to_string(), 1)];
        assert_eq!(ranked(&store, Period::All).await, expected);
        assert_eq!(ranked(&store, Period::Hour).await, expected);
    }

    /// A store whose leaderboard writes fail while `down` is set.
    struct Flaky {
        inner: MemoryStore,
        down: std::sync::atomic::AtomicBool,
    }

    #[tokio::test]
    async fn a_failed_flush_is_written_once_by_the_next_and_a_reset_since_wins() {
        use std::sync::atomic::Ordering;
        let store = Flaky {
            inner: MemoryStore::new(),
            down: true.into(),
        };
        let acc = LeaderboardAccumulator::new(100);
        let (a, b) = (like("a"), like("b"));
        acc.add(HOUR, [(&a, 9, 9), (&b, 2, 2)]);
        assert!(acc.flush_to(&store).await.is_err());
        acc.remove(HOUR, &a);
        acc.add(HOUR, [(&a, 1, 1)]);
        store.down.store(false, Ordering::Relaxed);
        acc.flush_to(&store).await.unwrap();
        acc.flush_to(&store).await.unwrap();
        // `a`'s 9 predate its reset and are gone; `b`'s 2 are written once, not twice.
        let expected = vec![("b".to_string(), 2), ("a".to_string(), 1)];
        assert_eq!(ranked(&store.inner, Period::All).await, expected);
        assert_eq!(ranked(&store.inner, Period::Hour).await, expected);
    }

    impl Store for Flaky {
        async fn write<'a>(
            &'a self,
            batch: &'a crate::store::WriteBatch<'a>,
        ) -> Result<crate::store::WriteOutcome, StoreError> {
            self.inner.write(batch).await
        }
        async fn reset<'a>(&'a self, key: &'a CounterKey) -> Result<i64, StoreError> {
            self.inner.reset(key).await
        }
        async fn get_many<'a>(
            &'a self,
            keys: &'a [&'a CounterKey],
        ) -> Result<Vec<i64>, StoreError> {
            self.inner.get_many(keys).await
        }
        async fn update_leaderboards<'a>(
            &'a self,
            removals: &'a [LeaderboardRemoval],
            writes: &'a [BoardWrite],
        ) -> Result<Vec<Option<i64>>, StoreError> {
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(StoreError::Unavailable("down".into()));
            }
            self.inner.update_leaderboards(removals, writes).await
        }
        async fn leaderboard_top<'a>(
            &'a self,
            bucket: &'a LeaderboardBucket,
            limit: usize,
        ) -> Result<Vec<crate::store::RankedEntry>, StoreError> {
            self.inner.leaderboard_top(bucket, limit).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }
    }

    #[test]
    fn writes_are_chunked_by_scores_and_every_part_trims() {
        let bucket = LeaderboardBucket::containing("like", Period::All, 0);
        let raised: Vec<(CounterKey, i64)> =
            (0..1200).map(|i| (like(&format!("k{i}")), i)).collect();
        let chunks = chunked(
            vec![BoardWrite {
                bucket: bucket.clone(),
                keep: 7,
                raised,
                lowered: vec![(like("x"), 1)],
            }],
            7,
        );
        let sizes: Vec<usize> = chunks
            .iter()
            .map(|c| c.iter().map(|w| w.raised.len() + w.lowered.len()).sum())
            .collect();
        assert_eq!(sizes, vec![CHUNK, CHUNK, 1201 - 2 * CHUNK]);
        assert!(
            chunks
                .iter()
                .flatten()
                .all(|w| w.keep == 7 && w.bucket == bucket)
        );
    }
}
