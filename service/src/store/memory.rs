//! The embedded store: counters and leaderboards in process memory, with Redis's semantics
//! (checked `INCRBY`, sorted-set rankings with expiry). Nothing is persisted; it exists so that
//! `highpress standalone` runs on a machine with nothing else installed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use super::{
    CounterKey, GroupOutcome, GuardedGroup, GuardedOutcome, IncrOutcome, KeyLayout,
    LeaderboardBucket, LeaderboardDelta, LeaderboardRemoval, Period, RankedEntry, Store,
    StoreError, WriteBatch, WriteOutcome,
};

#[derive(Default)]
pub struct MemoryStore {
    counters: Mutex<HashMap<CounterKey, i64>>,
    rankings: Mutex<HashMap<String, Ranking>>,
    /// Uniqueness sets and idempotency records, as on Redis.
    guards: Mutex<Guards>,
}

#[derive(Default)]
struct Guards {
    /// By counter key: the users counted by a unique-per-user counter.
    sets: HashMap<CounterKey, HashSet<Box<str>>>,
    /// By record key: `(fingerprint, counted, value)` and its expiry.
    records: HashMap<String, (Box<str>, bool, i64, Instant)>,
    /// Writes since expired records were last swept.
    since_sweep: usize,
}

/// Applies one guarded group with the semantics of `redis::scripts::GUARDED_SCRIPT`.
fn apply_group(
    counters: &mut HashMap<CounterKey, i64>,
    guards: &mut Guards,
    group: &GuardedGroup<'_>,
    ttl: std::time::Duration,
) -> GroupOutcome {
    let now = Instant::now();
    let mut value = counters.get(group.key).copied().unwrap_or(0);
    let mut items = Vec::with_capacity(group.items.len());
    for item in &group.items {
        // Records are kept by their Redis name in highpress's layout: unique per counter and key.
        let record = item.conditions.record();
        let record_key = record.map(|r| KeyLayout::Highpress.idempotency_record(group.key, &r.key));
        if let (Some(record), Some(rk)) = (record, &record_key)
            && let Some((fp, counted, v, expires)) = guards.records.get(rk)
            && *expires > now
        {
            items.push(if *fp == record.fingerprint {
                GuardedOutcome::Replayed {
                    value: *v,
                    counted: *counted,
                }
            } else {
                GuardedOutcome::KeyReused
            });
            continue;
        }
        let counted = match item.conditions.unique_user() {
            None => true,
            Some(user) => {
                let set = guards.sets.entry(group.key.clone()).or_default();
                if item.delta == 1 {
                    set.insert(user.into())
                } else {
                    set.remove(user)
                }
            }
        };
        if counted {
            match value.checked_add(item.delta) {
                Some(next) => value = next,
                None => {
                    if let Some(user) = item.conditions.unique_user() {
                        let set = guards.sets.entry(group.key.clone()).or_default();
                        if item.delta == 1 {
                            set.remove(user);
                        } else {
                            set.insert(user.into());
                        }
                    }
                    items.push(GuardedOutcome::Overflow);
                    continue;
                }
            }
        }
        if let (Some(record), Some(rk)) = (record, record_key) {
            guards
                .records
                .insert(rk, (record.fingerprint.clone(), counted, value, now + ttl));
        }
        items.push(GuardedOutcome::Applied { value, counted });
    }
    if guards.sets.get(group.key).is_some_and(HashSet::is_empty) {
        guards.sets.remove(group.key);
    }
    counters.insert(group.key.clone(), value);
    GroupOutcome::Done {
        total: value,
        items,
    }
}

struct Ranking {
    scores: HashMap<String, i64>,
    expires_at: Option<Instant>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    async fn write<'a>(&'a self, batch: &'a WriteBatch<'a>) -> Result<WriteOutcome, StoreError> {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let increments = batch
            .increments
            .iter()
            .map(|&(key, delta)| {
                let current = counters.get(key).copied().unwrap_or(0);
                match current.checked_add(delta) {
                    Some(next) => {
                        if let Some(v) = counters.get_mut(key) {
                            *v = next;
                        } else {
                            counters.insert(key.clone(), next);
                        }
                        IncrOutcome::Applied(next)
                    }
                    None => IncrOutcome::Overflow,
                }
            })
            .collect();
        let mut guards = self.guards.lock().unwrap_or_else(|e| e.into_inner());
        let guarded = batch
            .guarded
            .iter()
            .map(|group| apply_group(&mut counters, &mut guards, group, batch.record_ttl))
            .collect();
        guards.since_sweep += batch.guarded.len();
        if guards.since_sweep > 4096 {
            let now = Instant::now();
            guards.records.retain(|_, r| r.3 > now);
            guards.since_sweep = 0;
        }
        Ok(WriteOutcome {
            increments,
            guarded,
        })
    }

    async fn reset<'a>(&'a self, key: &'a CounterKey) -> Result<i64, StoreError> {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let before = counters.remove(key).unwrap_or(0);
        let mut guards = self.guards.lock().unwrap_or_else(|e| e.into_inner());
        guards.sets.remove(key);
        Ok(before)
    }

    async fn get_many<'a>(&'a self, keys: &'a [&'a CounterKey]) -> Result<Vec<i64>, StoreError> {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Ok(keys
            .iter()
            .map(|k| counters.get(*k).copied().unwrap_or(0))
            .collect())
    }

    async fn update_leaderboards<'a>(
        &'a self,
        removals: &'a [LeaderboardRemoval],
        deltas: &'a [LeaderboardDelta],
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut rankings = self.rankings.lock().unwrap_or_else(|e| e.into_inner());
        rankings.retain(|_, r| r.expires_at.is_none_or(|t| t > now));
        for r in removals {
            for period in Period::ALL {
                let bucket = LeaderboardBucket::containing(r.key.counter_type(), period, r.hour);
                if let Some(ranking) = rankings.get_mut(bucket.as_str()) {
                    ranking.scores.remove(r.key.resource_id());
                }
            }
        }
        for d in deltas {
            for period in Period::ALL {
                let bucket = LeaderboardBucket::containing(d.key.counter_type(), period, d.hour);
                let ranking = rankings
                    .entry(bucket.as_str().to_string())
                    .or_insert_with(|| Ranking {
                        scores: HashMap::new(),
                        expires_at: None,
                    });
                ranking.expires_at = period.retention().map(|r| now + r);
                let score = ranking
                    .scores
                    .entry(d.key.resource_id().to_string())
                    .or_insert(0);
                *score = score.saturating_add(d.delta);
            }
        }
        Ok(())
    }

    async fn leaderboard_top<'a>(
        &'a self,
        bucket: &'a LeaderboardBucket,
        limit: usize,
    ) -> Result<Vec<RankedEntry>, StoreError> {
        let rankings = self.rankings.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ranking) = rankings
            .get(bucket.as_str())
            .filter(|r| r.expires_at.is_none_or(|t| t > Instant::now()))
        else {
            return Ok(Vec::new());
        };
        let mut entries: Vec<RankedEntry> = ranking
            .scores
            .iter()
            .map(|(id, &count)| RankedEntry {
                resource_id: id.clone(),
                count,
            })
            .collect();
        // Highest first; ties in reverse lexicographic order, as Redis's ZREVRANGE orders them.
        entries.sort_unstable_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| b.resource_id.cmp(&a.resource_id))
        });
        entries.truncate(limit);
        Ok(entries)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn increments_apply_in_order_and_overflow_writes_nothing() {
        let store = MemoryStore::new();
        let k = CounterKey::new("like", "a");
        let batch = WriteBatch {
            increments: vec![(&k, i64::MAX - 1), (&k, 5), (&k, 1)],
            ..WriteBatch::default()
        };
        let out = store.write(&batch).await.unwrap().increments;
        assert_eq!(
            out,
            vec![
                IncrOutcome::Applied(i64::MAX - 1),
                IncrOutcome::Overflow,
                IncrOutcome::Applied(i64::MAX)
            ]
        );
        assert_eq!(store.get_many(&[&k]).await.unwrap(), vec![i64::MAX]);
    }

    #[tokio::test]
    async fn leaderboard_ranks_by_count() {
        let store = MemoryStore::new();
        let hour = crate::domain::current_hour();
        let deltas: Vec<_> = [("a", 3), ("b", 7), ("c", 5)]
            .into_iter()
            .map(|(id, n)| LeaderboardDelta {
                key: CounterKey::new("view", id),
                hour,
                delta: n,
            })
            .collect();
        store.update_leaderboards(&[], &deltas).await.unwrap();
        let top = store
            .leaderboard_top(&LeaderboardBucket::containing("view", Period::Day, hour), 2)
            .await
            .unwrap();
        let ids: Vec<_> = top
            .iter()
            .map(|e| (e.resource_id.as_str(), e.count))
            .collect();
        assert_eq!(ids, vec![("b", 7), ("c", 5)]);
    }
}
