//! The guarded-group Lua script on a real `redis-server` against the memory store's
//! implementation of the same rules: for random flushes of unique-per-user and keyed
//! increments, both stores give the same answers and end in the same state.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use highpress::store::memory::MemoryStore;
use highpress::store::redis::RedisStore;
use highpress::store::{
    CounterKey, GroupOutcome, GuardedGroup, GuardedItem, RecordRef, Store, WriteBatch,
};
use proptest::prelude::*;
use support::RedisServer;

/// One item: user, +1/-1 (or a plain delta when `unique` is false), optional key index.
type Item = (u8, bool, Option<u8>);

fn batch<'a>(
    key: &'a CounterKey,
    items: &[Item],
    unique: bool,
    users: &'a [String],
    keys: &'a [String],
    fingerprints: &'a [String],
) -> WriteBatch<'a> {
    WriteBatch {
        increments: Vec::new(),
        guarded: vec![GuardedGroup {
            key,
            items: items
                .iter()
                .map(|&(user, up, k)| GuardedItem {
                    delta: if up { 1 } else { -1 },
                    unique_user: unique.then(|| users[user as usize].as_str()),
                    record: k.map(|k| RecordRef {
                        key: &keys[k as usize],
                        fingerprint: &fingerprints[(user as usize) * 2 + usize::from(up)],
                    }),
                })
                .collect(),
        }],
        record_ttl: Duration::from_secs(60),
    }
}

async fn apply<S: Store>(
    store: &S,
    key: &CounterKey,
    flushes: &[Vec<Item>],
    unique: bool,
) -> Vec<GroupOutcome> {
    let users: Vec<String> = (0..4).map(|u| format!("user {u}")).collect();
    let keys: Vec<String> = (0..3).map(|k| format!("key-{k}")).collect();
    let fingerprints: Vec<String> = (0..8).map(|i| format!("{i:032x}")).collect();
    let mut out = Vec::new();
    for items in flushes {
        let b = batch(key, items, unique, &users, &keys, &fingerprints);
        out.extend(store.write(&b).await.expect("write").guarded);
    }
    out
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn redis_script_and_memory_store_agree(
        flushes in prop::collection::vec(
            prop::collection::vec((0u8..4, any::<bool>(), prop::option::of(0u8..3)), 1..30),
            1..4,
        ),
        unique in any::<bool>(),
    ) {
        static REDIS: std::sync::OnceLock<RedisServer> = std::sync::OnceLock::new();
        let redis = REDIS.get_or_init(RedisServer::start);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (from_redis, from_memory, stored) = rt.block_on(async {
            let store = RedisStore::connect_lazy(
                &format!("redis://{}/0", redis.addr()),
                Duration::from_secs(5),
                Duration::from_secs(5),
            )
            .expect("store");
            let key = CounterKey::new("like", &format!("p{}", NEXT.fetch_add(1, Ordering::Relaxed)));
            let from_redis = apply(&store, &key, &flushes, unique).await;
            let from_memory = apply(&MemoryStore::new(), &key, &flushes, unique).await;
            let stored = store.get_many(&[&key]).await.expect("read")[0];
            (from_redis, from_memory, stored)
        });
        prop_assert_eq!(&from_redis, &from_memory);
        if let Some(GroupOutcome::Done { total, .. }) = from_memory.last() {
            prop_assert_eq!(stored, *total);
        }
    }
}

#[tokio::test]
async fn reset_returns_the_previous_value_and_empties_the_set() {
    let redis = RedisServer::start();
    let store = RedisStore::connect_lazy(
        &format!("redis://{}/0", redis.addr()),
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .unwrap();
    let key = CounterKey::new("like", "r");
    apply(
        &store,
        &key,
        &[vec![(0, true, None), (1, true, None)]],
        true,
    )
    .await;
    assert_eq!(redis.cmd(&["SCARD", &key.uniqueness_set_key()]), "2");
    assert_eq!(store.reset(&key).await.unwrap(), 2);
    assert_eq!(
        redis.cmd(&["EXISTS", key.as_str(), &key.uniqueness_set_key()]),
        "0"
    );
    assert_eq!(store.reset(&key).await.unwrap(), 0);
}

/// Calls of `command` so far, from `INFO commandstats` (0 before the first).
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.cmd(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn flushes_send_the_script_by_hash_and_resend_its_body_when_redis_lost_it() {
    let redis = RedisServer::start();
    let store = RedisStore::connect_lazy(
        &format!("redis://{}/0", redis.addr()),
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .unwrap();
    let key = CounterKey::new("like", "r");
    let like = |user| vec![vec![(user, true, Some(user))]];

    // A fresh Redis has no scripts: the EVALSHA is refused and the group is resent as EVAL.
    let first = apply(&store, &key, &like(0), true).await;
    assert!(
        matches!(&first[0], GroupOutcome::Done { total: 1, .. }),
        "{first:?}"
    );
    assert_eq!((calls(&redis, "evalsha"), calls(&redis, "eval")), (1, 1));

    // Now Redis has it: one EVALSHA, no body.
    let second = apply(&store, &key, &like(1), true).await;
    assert!(
        matches!(&second[0], GroupOutcome::Done { total: 2, .. }),
        "{second:?}"
    );
    assert_eq!((calls(&redis, "evalsha"), calls(&redis, "eval")), (2, 1));

    // A flushed script cache (as after a restart or failover) costs one resend, and no count.
    redis.cmd(&["SCRIPT", "FLUSH"]);
    let third = apply(&store, &key, &like(2), true).await;
    assert!(
        matches!(&third[0], GroupOutcome::Done { total: 3, .. }),
        "{third:?}"
    );
    assert_eq!((calls(&redis, "evalsha"), calls(&redis, "eval")), (3, 2));
    assert_eq!(redis.get_i64(key.as_str()), 3);
}
