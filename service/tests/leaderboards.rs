//! Top-K leaderboards on a real `redis-server`: a million counters leave every ranking at K
//! members, the all-time ranking is the exact top K by value, the long tail writes nothing,
//! and a ranking left larger by an older version shrinks to K over a few flushes.

mod support;

use std::time::Duration;

use highpress::counter::leaderboard::LeaderboardAccumulator;
use highpress::domain::{CounterKey, KeyLayout, LeaderboardBucket, Period};
use highpress::store::redis::RedisStore;
use support::*;

const K: usize = 1_000;
const HOUR: i64 = 490_000;

fn connect(redis: &RedisServer) -> RedisStore {
    RedisStore::connect_lazy(
        &format!("redis://{}/0", redis.addr()),
        KeyLayout::Highpress,
        Duration::from_secs(10),
        Duration::from_secs(5),
    )
    .expect("store")
}

fn bucket(period: Period) -> String {
    LeaderboardBucket::containing("view", period, HOUR)
        .as_str()
        .to_string()
}

fn zcard(redis: &RedisServer, key: &str) -> usize {
    redis.cmd(&["ZCARD", key]).trim().parse().expect("ZCARD")
}

/// Calls of `ZADD` Redis has served so far (`INFO commandstats`; the script's calls count).
fn zadd_calls(redis: &RedisServer) -> u64 {
    let info = redis.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_zadd:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("calls"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_counters_leave_every_ranking_at_k_members_and_the_tail_writes_nothing() {
    let redis = RedisServer::start();
    let store = connect(&redis);
    let acc = LeaderboardAccumulator::new(K);
    // Counter i has the value (i * 7919) % 1_000_003 (distinct, spread) after one increment of
    // that size, in flushes of 100,000 counters as if each were one flush interval.
    const COUNTERS: u64 = 1_000_000;
    let value = |i: u64| ((i * 7_919) % 1_000_003) as i64 + 1;
    let keys: Vec<CounterKey> = (0..COUNTERS)
        .map(|i| CounterKey::new("view", &format!("post:{i}")))
        .collect();
    for part in keys.chunks(100_000) {
        acc.add(
            HOUR,
            part.iter().map(|k| {
                let i: u64 = k.resource_id()[5..].parse().unwrap();
                (k, value(i), value(i))
            }),
        );
        acc.flush_to(&store).await.expect("flush");
    }
    for period in Period::ALL {
        assert_eq!(zcard(&redis, &bucket(period)), K, "{period:?}");
    }
    // All time: exactly the K highest values.
    let mut expected: Vec<i64> = (0..COUNTERS).map(value).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    expected.truncate(K);
    let top = redis.cmd(&["ZREVRANGE", &bucket(Period::All), "0", "-1", "WITHSCORES"]);
    let scores: Vec<i64> = top
        .lines()
        .skip(1)
        .step_by(2)
        .map(|s| s.trim().parse().expect("score"))
        .collect();
    assert_eq!(scores, expected);
    // Here every increment is one counter's whole count, so the day ranking is exact too.
    let day = redis.cmd(&["ZREVRANGE", &bucket(Period::Day), "0", "0", "WITHSCORES"]);
    assert_eq!(
        day.lines().nth(1).map(str::trim),
        Some(expected[0].to_string().as_str())
    );

    // 200,000 more counters below every K-th score: no ranking write at all.
    let before = zadd_calls(&redis);
    let tail: Vec<CounterKey> = (0..200_000)
        .map(|i| CounterKey::new("view", &format!("tail:{i}")))
        .collect();
    acc.add(HOUR, tail.iter().map(|k| (k, 1, 1)));
    assert_eq!(acc.flush_to(&store).await.expect("flush"), 0);
    assert_eq!(zadd_calls(&redis), before, "the tail reached Redis");
    for period in Period::ALL {
        assert_eq!(zcard(&redis, &bucket(period)), K, "{period:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ranking_an_older_version_left_full_shrinks_to_k_over_a_few_flushes() {
    let redis = RedisServer::start();
    let all = bucket(Period::All);
    // 25,000 members, as a version without top-K leaves them.
    let mut commands = String::new();
    for i in 0..25_000 {
        commands.push_str(&format!("ZADD {all} {} old:{i}\n", i + 1));
    }
    redis.cli().send_commands(&commands);
    assert_eq!(zcard(&redis, &all), 25_000);

    let store = connect(&redis);
    let acc = LeaderboardAccumulator::new(K);
    let mut sizes = Vec::new();
    for round in 0..4 {
        let key = CounterKey::new("view", &format!("new:{round}"));
        acc.add(HOUR, [(&key, 1, 1_000_000 + round)]);
        acc.flush_to(&store).await.expect("flush");
        sizes.push(zcard(&redis, &all));
    }
    // Each write trims at most 10,000 members; then the ranking holds K.
    assert_eq!(sizes, vec![15_001, 5_002, K, K]);
    let top = redis.cmd(&["ZREVRANGE", &all, "0", "0"]);
    assert_eq!(top.trim(), "new:3");
}
