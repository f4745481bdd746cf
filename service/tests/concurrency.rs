//! Group commit under concurrency: totals are exact, and every waiter gets its own post-value,
//! so N increments by 1 of one key return exactly 1..=N between them.

mod support;

use std::collections::HashMap;

use support::{Backing, Highpress};

async fn many_tasks_on_few_keys(backing: Backing) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 50;
    const KEYS: [&str; 3] = ["hot_a", "hot_b", "hot_c"];
    let hp = std::sync::Arc::new(Highpress::standalone(backing, &[]).await);
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let hp = hp.clone();
        handles.push(tokio::spawn(async move {
            let mut seen: Vec<(usize, i64)> = Vec::new();
            for i in 0..PER_TASK {
                let k = (t + i) % KEYS.len();
                let (s, body) = hp.increment(KEYS[k], "like", 1).await;
                assert_eq!(s, 200, "{body}");
                seen.push((k, body["data"]["current_value"].as_i64().unwrap()));
            }
            seen
        }));
    }
    let mut per_key: HashMap<usize, Vec<i64>> = HashMap::new();
    for h in handles {
        for (k, v) in h.await.unwrap() {
            per_key.entry(k).or_default().push(v);
        }
    }
    for (k, mut values) in per_key {
        let n = values.len() as i64;
        values.sort_unstable();
        assert_eq!(
            values,
            (1..=n).collect::<Vec<_>>(),
            "post-values of {}",
            KEYS[k]
        );
        assert_eq!(hp.value(KEYS[k], "like").await, n);
    }
    let total: i64 = futures::future::join_all(KEYS.iter().map(|k| hp.value(k, "like")))
        .await
        .into_iter()
        .sum();
    assert_eq!(total, (TASKS * PER_TASK) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_get_distinct_exact_post_values_memory() {
    many_tasks_on_few_keys(Backing::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_get_distinct_exact_post_values_redis() {
    many_tasks_on_few_keys(Backing::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coalescing_sends_fewer_commands_than_increments_to_redis() {
    let mut hp = Highpress::standalone(Backing::Redis, &[]).await;
    let before: u64 = incrby_calls(hp.redis());
    let hp = std::sync::Arc::new(hp);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let hp = hp.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    assert_eq!(hp.increment("viral", "like", 1).await.0, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut hp = std::sync::Arc::into_inner(hp).expect("tasks done");
    let calls = incrby_calls(hp.redis()) - before;
    assert_eq!(hp.redis().get_i64("c:like:viral"), 2000);
    assert!(
        calls < 2000,
        "{calls} INCRBY commands for 2000 increments: no coalescing happened"
    );
}

fn incrby_calls(redis: &mut support::RedisServer) -> u64 {
    let stats = redis.cmd(&["INFO", "commandstats"]);
    stats
        .lines()
        .find(|l| l.starts_with("cmdstat_incrby:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|s| s.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}
