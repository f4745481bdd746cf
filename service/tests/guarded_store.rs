//! The guarded-group Lua script on a real `redis-server` against the memory store's
//! implementation of the same rules: for random flushes of unique-per-user and keyed
//! increments over several counters (so one script call carries several groups), both stores
//! give the same answers and end in the same state. Then what only Redis has: the script sent
//! by hash, calls of many groups, and a fault in one group that leaves the others alone.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use highpress::store::memory::MemoryStore;
use highpress::store::redis::RedisStore;
use highpress::store::{
    Conditions, CounterKey, GroupOutcome, GuardedGroup, GuardedItem, GuardedOutcome,
    IdempotencyRecord, KeyLayout, Store, WriteBatch,
};
use proptest::prelude::*;
use support::RedisServer;

/// One item: user, +1/-1 (or a plain delta when `unique` is false), optional key index.
type Item = (u8, bool, Option<u8>);

/// The conditions items index into: every (unique, user, up, key) combination.
struct Names {
    conditions: Vec<Conditions>,
}

impl Names {
    fn new() -> Self {
        let mut conditions = Vec::new();
        for unique in [false, true] {
            for user in 0..4usize {
                for up in [false, true] {
                    for key in [None, Some(0), Some(1), Some(2)] {
                        conditions.push(Conditions {
                            unique_user: unique.then(|| format!("user {user}").into()),
                            idempotency: key.map(|k: usize| IdempotencyRecord {
                                key: format!("key-{k}").into(),
                                fingerprint: format!("{:032x}", user * 2 + usize::from(up)).into(),
                            }),
                        });
                    }
                }
            }
        }
        Self { conditions }
    }

    fn conditions(&self, (user, up, key): Item, unique: bool) -> &Conditions {
        let key = key.map_or(0, |k| usize::from(k) + 1);
        &self.conditions
            [((usize::from(unique) * 4 + usize::from(user)) * 2 + usize::from(up)) * 4 + key]
    }

    fn group<'a>(&'a self, key: &'a CounterKey, items: &[Item], unique: bool) -> GuardedGroup<'a> {
        GuardedGroup {
            key,
            items: items
                .iter()
                .map(|&item| GuardedItem {
                    delta: if item.1 { 1 } else { -1 },
                    conditions: self.conditions(item, unique),
                })
                .collect(),
        }
    }
}

fn connect(redis: &RedisServer, layout: KeyLayout) -> RedisStore {
    RedisStore::connect_lazy(
        &format!("redis://{}/0", redis.addr()),
        layout,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .expect("store")
}

/// Writes `flushes` (per flush, the items of each counter of `keys`) and returns every
/// group's outcome.
async fn apply<S: Store>(
    store: &S,
    keys: &[CounterKey],
    flushes: &[Vec<Vec<Item>>],
    unique: bool,
) -> Vec<GroupOutcome> {
    let names = Names::new();
    let mut out = Vec::new();
    for flush in flushes {
        let batch = WriteBatch {
            increments: Vec::new(),
            guarded: keys
                .iter()
                .zip(flush)
                .filter(|(_, items)| !items.is_empty())
                .map(|(key, items)| names.group(key, items, unique))
                .collect(),
            record_ttl: Duration::from_secs(60),
        };
        out.extend(store.write(&batch).await.expect("write").guarded);
    }
    out
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn fresh_keys(n: usize) -> Vec<CounterKey> {
    (0..n)
        .map(|_| {
            CounterKey::new(
                "like",
                &format!("p{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn redis_script_and_memory_store_agree(
        flushes in prop::collection::vec(
            prop::collection::vec(
                prop::collection::vec((0u8..4, any::<bool>(), prop::option::of(0u8..3)), 0..12),
                3,
            ),
            1..4,
        ),
        unique in any::<bool>(),
        original_layout in any::<bool>(),
    ) {
        let layout = if original_layout { KeyLayout::Highgopress } else { KeyLayout::Highpress };
        // One server per case: a server in a static is never dropped, so it outlived the test
        // process (`make test` left one redis-server running per run).
        let redis = &RedisServer::start();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let keys = fresh_keys(3);
        let (from_redis, from_memory, stored, expected) = rt.block_on(async {
            let store = connect(redis, layout);
            let from_redis = apply(&store, &keys, &flushes, unique).await;
            let memory = MemoryStore::new();
            let from_memory = apply(&memory, &keys, &flushes, unique).await;
            let refs: Vec<&CounterKey> = keys.iter().collect();
            let stored = store.get_many(&refs).await.expect("read");
            let expected = memory.get_many(&refs).await.expect("read");
            (from_redis, from_memory, stored, expected)
        });
        prop_assert_eq!(&from_redis, &from_memory);
        prop_assert_eq!(&stored, &expected);
        // Where the layout says, and nowhere else.
        for (key, value) in keys.iter().zip(&stored) {
            prop_assert_eq!(redis.get_i64(&layout.counter(key)), *value);
        }
        prop_assert_eq!(redis.cmd(&["KEYS", other_layout_pattern(layout)]), "");
    }
}

/// The pattern of the counter keys of the layout that is not `layout`.
fn other_layout_pattern(layout: KeyLayout) -> &'static str {
    match layout {
        KeyLayout::Highpress => "counter:*",
        KeyLayout::Highgopress => "c:*",
    }
}

/// The proptest's minimal failure: a flush whose groups are all empty made an empty pipeline,
/// which Redis rejects ("empty command").
#[tokio::test]
async fn an_empty_batch_writes_nothing_and_succeeds() {
    let redis = RedisServer::start();
    let store = connect(&redis, KeyLayout::Highpress);
    let keys = fresh_keys(3);
    let outcome = apply(&store, &keys, &[vec![vec![], vec![], vec![]]], false).await;
    assert!(outcome.is_empty());
    assert_eq!(redis.cmd(&["DBSIZE"]), "0");
}

#[tokio::test]
async fn reset_returns_the_previous_value_and_empties_the_set() {
    let redis = RedisServer::start();
    let store = connect(&redis, KeyLayout::Highpress);
    let key = CounterKey::new("like", "r");
    let likes = vec![vec![vec![(0, true, None), (1, true, None)]]];
    apply(&store, std::slice::from_ref(&key), &likes, true).await;
    let set = KeyLayout::Highpress.uniqueness_set(&key);
    assert_eq!(redis.cmd(&["SCARD", &set]), "2");
    assert_eq!(store.reset(&key).await.unwrap(), 2);
    assert_eq!(redis.cmd(&["EXISTS", key.as_str(), &set]), "0");
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
    let store = connect(&redis, KeyLayout::Highpress);
    let key = CounterKey::new("like", "r");
    let key = std::slice::from_ref(&key);
    let like = |user| vec![vec![vec![(user, true, Some(user))]]];

    // A fresh Redis has no scripts: the EVALSHA is refused and the group is resent as EVAL.
    let first = apply(&store, key, &like(0), true).await;
    assert!(
        matches!(&first[0], GroupOutcome::Done { total: 1, .. }),
        "{first:?}"
    );
    assert_eq!((calls(&redis, "evalsha"), calls(&redis, "eval")), (1, 1));

    // Now Redis has it: one EVALSHA, no body.
    let second = apply(&store, key, &like(1), true).await;
    assert!(
        matches!(&second[0], GroupOutcome::Done { total: 2, .. }),
        "{second:?}"
    );
    assert_eq!((calls(&redis, "evalsha"), calls(&redis, "eval")), (2, 1));

    // A flushed script cache (as after a restart or failover) costs one resend, and no count.
    redis.cmd(&["SCRIPT", "FLUSH"]);
    let third = apply(&store, key, &like(2), true).await;
    assert!(
        matches!(&third[0], GroupOutcome::Done { total: 3, .. }),
        "{third:?}"
    );
    assert_eq!((calls(&redis, "evalsha"), calls(&redis, "eval")), (3, 2));
    assert_eq!(redis.get_i64(key[0].as_str()), 3);
}

#[tokio::test]
async fn a_flush_of_many_counters_goes_in_few_calls_and_agrees_with_the_memory_store() {
    let redis = RedisServer::start();
    let store = connect(&redis, KeyLayout::Highpress);
    // 300 counters, one unique like each, then a flush where each user likes again (counts
    // nothing) and another user likes (counts).
    let keys = fresh_keys(300);
    let flushes = vec![
        vec![vec![(0, true, None)]; 300],
        vec![vec![(0, true, Some(0)), (1, true, Some(1))]; 300],
    ];
    let from_redis = apply(&store, &keys, &flushes, true).await;
    let from_memory = apply(&MemoryStore::new(), &keys, &flushes, true).await;
    assert_eq!(from_redis, from_memory);
    assert!(
        from_redis[300..]
            .iter()
            .all(|g| matches!(g, GroupOutcome::Done { total: 2, .. }))
    );
    // 128 groups per call: 3 calls per flush (the first also resent once, by body).
    assert_eq!(calls(&redis, "evalsha"), 6);
}

#[tokio::test]
async fn a_fault_in_one_group_answers_that_group_and_leaves_the_rest_of_the_call_alone() {
    let redis = RedisServer::start();
    let store = connect(&redis, KeyLayout::Highpress);
    let keys = fresh_keys(3);
    // The middle counter's uniqueness set is not a set.
    redis.cmd(&[
        "SET",
        &KeyLayout::Highpress.uniqueness_set(&keys[1]),
        "not a set",
    ]);
    let like = vec![(0, true, None)];
    let out = apply(
        &store,
        &keys,
        &[vec![like.clone(), like.clone(), like]],
        true,
    )
    .await;
    let applied = GuardedOutcome::Applied {
        value: 1,
        counted: true,
    };
    assert_eq!(
        out[0],
        GroupOutcome::Done {
            total: 1,
            items: vec![applied.clone()]
        }
    );
    assert!(
        matches!(&out[1], GroupOutcome::Done { total: 0, items }
            if matches!(&items[..], [GuardedOutcome::Failed(m)] if m.contains("WRONGTYPE"))),
        "{:?}",
        out[1]
    );
    assert_eq!(
        out[2],
        GroupOutcome::Done {
            total: 1,
            items: vec![applied]
        }
    );
    assert_eq!(redis.get_i64(keys[1].as_str()), 0, "nothing counted");
}

#[tokio::test]
async fn values_beyond_two_to_the_53_stay_exact() {
    let redis = RedisServer::start();
    let store = connect(&redis, KeyLayout::Highpress);
    let names = Names::new();
    let (up, down) = (
        CounterKey::new("like", "up"),
        CounterKey::new("like", "down"),
    );
    let edge = 1_i64 << 53;
    redis.cmd(&["SET", up.as_str(), &(edge - 2).to_string()]);
    redis.cmd(&["SET", down.as_str(), &(2 - edge).to_string()]);
    // Keyed items make the groups guarded: +1 three times across 2^53, and -1 across -2^53.
    let steps = [(0, true, Some(0)), (1, true, Some(1)), (2, true, Some(2))];
    let falls = [
        (0, false, Some(0)),
        (1, false, Some(1)),
        (2, false, Some(2)),
    ];
    let batch = WriteBatch {
        increments: Vec::new(),
        guarded: vec![
            names.group(&up, &steps, false),
            names.group(&down, &falls, false),
        ],
        record_ttl: Duration::from_secs(60),
    };
    let out = store.write(&batch).await.expect("write").guarded;
    let applied = |values: [i64; 3]| GroupOutcome::Done {
        total: values[2],
        items: values
            .iter()
            .map(|&value| GuardedOutcome::Applied {
                value,
                counted: true,
            })
            .collect(),
    };
    assert_eq!(
        out,
        vec![
            applied([edge - 1, edge, edge + 1]),
            applied([1 - edge, -edge, -edge - 1]),
        ]
    );
    assert_eq!(redis.get_i64(up.as_str()), edge + 1);
}
