//! The embedded store: counters and leaderboards in process memory, with Redis's semantics
//! (checked `INCRBY`, sorted-set rankings with expiry). Nothing is persisted; it exists so that
//! `highpress standalone` runs on a machine with nothing else installed. Its events outbox is in
//! memory too: events survive a broker outage, not a restart of the process.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use super::{
    BoardWrite, CounterKey, GroupOutcome, GuardedGroup, GuardedOutcome, IncrOutcome, KeyLayout,
    LeaderboardBucket, LeaderboardRemoval, OutboxAppend, OutboxEntry, OutboxTotals, Period,
    RankedEntry, Store, StoreError, WriteBatch, WriteOutcome,
};

#[derive(Default)]
pub struct MemoryStore {
    counters: Mutex<HashMap<CounterKey, i64>>,
    rankings: Mutex<HashMap<String, Ranking>>,
    /// Uniqueness sets and idempotency records, as on Redis.
    guards: Mutex<Guards>,
    outbox: Mutex<HashMap<u32, OutboxPartition>>,
}

/// One partition of the events outbox, as the Redis stream and its totals would hold it.
#[derive(Default)]
struct OutboxPartition {
    /// `(sequence, total after it, payload)`; ids are `0-<sequence>`.
    entries: VecDeque<(u64, u64, Vec<u8>)>,
    next_seq: u64,
    totals: OutboxTotals,
    lease: Option<(String, Instant)>,
}

fn outbox_seq(id: &str) -> Result<u64, StoreError> {
    id.strip_prefix("0-")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Internal(format!("outbox id {id:?}")))
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

impl Ranking {
    /// Members highest first; ties in reverse lexicographic order, as Redis's ZREVRANGE orders
    /// them.
    fn ordered(&self) -> Vec<RankedEntry> {
        let mut entries: Vec<RankedEntry> = self
            .scores
            .iter()
            .map(|(id, &count)| RankedEntry {
                resource_id: id.clone(),
                count,
            })
            .collect();
        entries.sort_unstable_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| b.resource_id.cmp(&a.resource_id))
        });
        entries
    }

    /// Keeps the top `keep` members; returns the score at rank `keep`, if there is one.
    fn trim(&mut self, keep: usize) -> Option<i64> {
        if self.scores.len() > keep {
            for gone in &self.ordered()[keep..] {
                self.scores.remove(&gone.resource_id);
            }
        }
        if self.scores.len() < keep || keep == 0 {
            return None;
        }
        self.scores.values().copied().min()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    async fn outbox_append<'a>(&'a self, appends: &'a [OutboxAppend]) -> Result<(), StoreError> {
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        for append in appends {
            let partition = outbox.entry(append.partition).or_default();
            partition.totals.appended += append.events;
            let seq = partition.next_seq;
            partition.next_seq += 1;
            partition
                .entries
                .push_back((seq, partition.totals.appended, append.payload.clone()));
        }
        Ok(())
    }

    async fn outbox_lease<'a>(
        &'a self,
        partition: u32,
        owner: &'a str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        let lease = &mut outbox.entry(partition).or_default().lease;
        let now = Instant::now();
        let held_by_other = lease
            .as_ref()
            .is_some_and(|(holder, until)| holder != owner && *until > now);
        if held_by_other {
            return Ok(false);
        }
        *lease = (!ttl.is_zero()).then(|| (owner.to_string(), now + ttl));
        Ok(lease.is_some())
    }

    async fn outbox_read<'a>(
        &'a self,
        partition: u32,
        after: Option<&'a str>,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let after = after.map(outbox_seq).transpose()?;
        let outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        let Some(partition) = outbox.get(&partition) else {
            return Ok(Vec::new());
        };
        Ok(partition
            .entries
            .iter()
            .filter(|(seq, ..)| after.is_none_or(|a| *seq > a))
            .take(count)
            .map(|(seq, total, payload)| OutboxEntry {
                id: format!("0-{seq}"),
                total: *total,
                payload: payload.clone(),
            })
            .collect())
    }

    async fn outbox_trim<'a>(
        &'a self,
        partition: u32,
        through: &'a str,
        total: u64,
    ) -> Result<(), StoreError> {
        let through = outbox_seq(through)?;
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        let partition = outbox.entry(partition).or_default();
        while partition
            .entries
            .front()
            .is_some_and(|(seq, ..)| *seq <= through)
        {
            partition.entries.pop_front();
        }
        partition.totals.relayed = partition.totals.relayed.max(total);
        Ok(())
    }

    async fn outbox_totals(&self, partitions: u32) -> Result<Vec<OutboxTotals>, StoreError> {
        let outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        Ok((0..partitions)
            .map(|p| outbox.get(&p).map(|p| p.totals).unwrap_or_default())
            .collect())
    }

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
        writes: &'a [BoardWrite],
    ) -> Result<Vec<Option<i64>>, StoreError> {
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
        let mut kth = Vec::with_capacity(writes.len());
        for w in writes {
            let ranking = rankings
                .entry(w.bucket.as_str().to_string())
                .or_insert_with(|| Ranking {
                    scores: HashMap::new(),
                    expires_at: None,
                });
            for (key, score) in &w.raised {
                let s = ranking
                    .scores
                    .entry(key.resource_id().to_string())
                    .or_insert(*score);
                *s = (*s).max(*score);
            }
            for (key, score) in &w.lowered {
                if let Some(s) = ranking.scores.get_mut(key.resource_id()) {
                    *s = *score;
                }
            }
            ranking.expires_at = w.bucket.period.retention().map(|r| now + r);
            kth.push(ranking.trim(w.keep));
        }
        Ok(kth)
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
        let mut entries = ranking.ordered();
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
        let bucket = LeaderboardBucket::containing("view", Period::Day, hour);
        let scores = |s: &[(&str, i64)]| -> Vec<(CounterKey, i64)> {
            s.iter()
                .map(|&(id, n)| (CounterKey::new("view", id), n))
                .collect()
        };
        let write = |raised, lowered| BoardWrite {
            bucket: bucket.clone(),
            keep: 2,
            raised: scores(raised),
            lowered: scores(lowered),
        };
        let top = async || -> Vec<(String, i64)> {
            let top = store.leaderboard_top(&bucket, 10).await.unwrap();
            top.into_iter().map(|e| (e.resource_id, e.count)).collect()
        };
        // Raised scores only go up; the lowest beyond K go; the K-th score comes back.
        let kth = store
            .update_leaderboards(&[], &[write(&[("a", 3), ("b", 7)], &[])])
            .await
            .unwrap();
        assert_eq!(kth, vec![Some(3)]);
        let kth = store
            .update_leaderboards(&[], &[write(&[("c", 5), ("b", 6)], &[("z", 9)])])
            .await
            .unwrap();
        assert_eq!(kth, vec![Some(5)]);
        assert_eq!(top().await, vec![("b".into(), 7), ("c".into(), 5)]);
        // Lowered scores apply to members only.
        store
            .update_leaderboards(&[], &[write(&[], &[("b", 1), ("a", 8)])])
            .await
            .unwrap();
        assert_eq!(top().await, vec![("c".into(), 5), ("b".into(), 1)]);
    }
}
