//! The authoritative read cache. The counter process that writes a key updates its cached value
//! with the exact post-flush total, so reads of hot keys are served from memory. Entries live
//! for the configured TTL, which bounds staleness when key ownership moves; a TTL of 0 disables
//! the cache. Concurrent misses for one key share a single store read.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::{DefaultHashBuilder, HashMap};
use tokio::sync::OnceCell;

use super::CounterError;
use crate::store::CounterKey;

const SHARDS: usize = 64;

type Load = Arc<OnceCell<Result<i64, CounterError>>>;

enum Slot {
    Ready {
        value: i64,
        expires_at: Instant,
    },
    /// A store read is in flight; later misses wait for it instead of reading again.
    Loading(Load),
}

/// A sharded map from counter key to value, safe to share between the flusher and readers.
pub struct ReadCache {
    shards: Box<[Mutex<HashMap<CounterKey, Slot>>]>,
    hasher: DefaultHashBuilder,
    ttl: Duration,
    capacity_per_shard: usize,
}

/// What a lookup found.
pub enum Lookup {
    Hit(i64),
    /// Not cached: read the store, then offer the value back with [`ReadCache::fill`].
    Miss,
}

impl ReadCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self {
            shards,
            hasher: DefaultHashBuilder::default(),
            ttl,
            capacity_per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    fn shard(&self, key: &CounterKey) -> &Mutex<HashMap<CounterKey, Slot>> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        &self.shards[i]
    }

    /// A cached, unexpired value, if there is one.
    pub fn lookup(&self, key: &CounterKey) -> Lookup {
        if !self.enabled() {
            return Lookup::Miss;
        }
        let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        match shard.get(key) {
            Some(Slot::Ready { value, expires_at }) if *expires_at > Instant::now() => {
                Lookup::Hit(*value)
            }
            _ => Lookup::Miss,
        }
    }

    /// Records the exact value a flush left behind. Always wins over an in-flight read, which
    /// may have seen an older value.
    pub fn record_write(&self, key: &CounterKey, value: i64) {
        if !self.enabled() {
            return;
        }
        let expires_at = Instant::now() + self.ttl;
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = shard.get_mut(key) {
            *slot = Slot::Ready { value, expires_at };
            return;
        }
        self.make_room(&mut shard);
        shard.insert(key.clone(), Slot::Ready { value, expires_at });
    }

    /// Drops the entry of a key whose stored value is no longer known (a failed flush may or
    /// may not have been applied).
    pub fn invalidate(&self, key: &CounterKey) {
        if !self.enabled() {
            return;
        }
        self.shard(key)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Offers a value read from the store for a batch miss; kept only if no flush recorded a
    /// value for the key meanwhile (a flush's value is never older than a read's).
    pub fn fill(&self, key: &CounterKey, value: i64) {
        if !self.enabled() {
            return;
        }
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match shard.get(key) {
            Some(Slot::Ready { expires_at, .. }) if *expires_at > now => {}
            Some(Slot::Loading(_)) => {}
            _ => {
                self.make_room(&mut shard);
                shard.insert(
                    key.clone(),
                    Slot::Ready {
                        value,
                        expires_at: now + self.ttl,
                    },
                );
            }
        }
    }

    /// Reads one key through the cache: a hit answers from memory; concurrent misses share one
    /// call of `load`.
    pub async fn get_or_load<F, Fut>(&self, key: &CounterKey, load: F) -> Result<i64, CounterError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<i64, CounterError>>,
    {
        if !self.enabled() {
            return load().await;
        }
        let cell = {
            let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
            match shard.get(key) {
                Some(Slot::Ready { value, expires_at }) if *expires_at > Instant::now() => {
                    return Ok(*value);
                }
                Some(Slot::Loading(cell)) => cell.clone(),
                _ => {
                    let cell: Load = Arc::new(OnceCell::new());
                    self.make_room(&mut shard);
                    shard.insert(key.clone(), Slot::Loading(cell.clone()));
                    cell
                }
            }
        };
        let result = cell.get_or_init(load).await.clone();
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Slot::Loading(current)) = shard.get(key)
            && Arc::ptr_eq(current, &cell)
        {
            match &result {
                Ok(value) => {
                    shard.insert(
                        key.clone(),
                        Slot::Ready {
                            value: *value,
                            expires_at: Instant::now() + self.ttl,
                        },
                    );
                }
                Err(_) => {
                    shard.remove(key);
                }
            }
        }
        result
    }

    /// Keeps a shard within its capacity: expired entries go first, then arbitrary ones.
    fn make_room(&self, shard: &mut HashMap<CounterKey, Slot>) {
        if shard.len() < self.capacity_per_shard {
            return;
        }
        let now = Instant::now();
        shard.retain(|_, slot| match slot {
            Slot::Ready { expires_at, .. } => *expires_at > now,
            Slot::Loading(_) => true,
        });
        if shard.len() >= self.capacity_per_shard {
            let excess = shard.len() - self.capacity_per_shard * 7 / 8;
            let victims: Vec<CounterKey> = shard.keys().take(excess).cloned().collect();
            for k in victims {
                shard.remove(&k);
            }
        }
        if shard.capacity() > 4 * self.capacity_per_shard.max(16) {
            shard.shrink_to(self.capacity_per_shard);
        }
    }

    /// Number of entries, for tests and metrics.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(id: &str) -> CounterKey {
        CounterKey::new("like", id)
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(10), 100));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, loads) = (cache.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(&key("a"), || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(7)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(matches!(cache.lookup(&key("a")), Lookup::Hit(7)));
    }

    #[tokio::test]
    async fn a_write_during_a_load_is_not_overwritten_by_the_older_read() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(10), 100));
        let c2 = cache.clone();
        let reader = tokio::spawn(async move {
            c2.get_or_load(&key("a"), || async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(1)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cache.record_write(&key("a"), 2);
        assert_eq!(reader.await.unwrap().unwrap(), 1);
        assert!(matches!(cache.lookup(&key("a")), Lookup::Hit(2)));
        cache.fill(&key("a"), 1);
        assert!(matches!(cache.lookup(&key("a")), Lookup::Hit(2)));
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached() {
        let cache = ReadCache::new(Duration::from_secs(10), 100);
        let err = cache
            .get_or_load(&key("a"), || async { Err(CounterError::Unavailable) })
            .await;
        assert!(matches!(err, Err(CounterError::Unavailable)));
        assert!(matches!(cache.lookup(&key("a")), Lookup::Miss));
    }

    #[test]
    fn entries_expire_and_zero_ttl_disables() {
        let cache = ReadCache::new(Duration::from_millis(1), 100);
        cache.record_write(&key("a"), 5);
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(cache.lookup(&key("a")), Lookup::Miss));
        let off = ReadCache::new(Duration::ZERO, 100);
        off.record_write(&key("a"), 5);
        assert!(matches!(off.lookup(&key("a")), Lookup::Miss));
        assert!(off.is_empty());
    }

    #[test]
    fn size_stays_bounded() {
        let cache = ReadCache::new(Duration::from_secs(60), 1_000);
        for i in 0..20_000 {
            cache.record_write(&key(&i.to_string()), i);
        }
        assert!(cache.len() <= 1_000 + SHARDS, "{}", cache.len());
    }
}
