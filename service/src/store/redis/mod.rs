//! The Redis stores: [`single::RedisStore`] (one server) and [`cluster::RedisClusterStore`]
//! (Redis Cluster), and what they share: error classification, the leaderboard and `SCAN`
//! commands, and [`scripts`], the Lua scripts (in `*.lua` beside this file) with the commands
//! that call them and the parsers of their answers.

pub mod cluster;
pub mod scripts;
pub mod single;

use std::collections::{HashMap, HashSet};

use redis::{Cmd, RedisError, Value};

pub use cluster::{RedisClusterStore, key_slot};
pub use single::RedisStore;

use super::{
    LeaderboardBucket, LeaderboardDelta, LeaderboardRemoval, Period, RankedEntry, StoreError,
};

/// Sorts a Redis error into retryable (`Unavailable`) or not.
fn classify(e: RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        StoreError::Unavailable(e.to_string())
    } else {
        match e.code() {
            Some("LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN") => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// `ZREVRANGE bucket 0 limit-1 WITHSCORES`: the top of one ranking.
fn top_command(bucket: &LeaderboardBucket, limit: usize) -> Cmd {
    let mut cmd = redis::cmd("ZREVRANGE");
    cmd.arg(bucket.as_str())
        .arg(0)
        .arg(limit as i64 - 1)
        .arg("WITHSCORES");
    cmd
}

/// `ZREVRANGE … WITHSCORES` pairs as ranked entries (scores are whole numbers below 2^53).
fn ranked_entries(pairs: Vec<(String, f64)>) -> Vec<RankedEntry> {
    pairs
        .into_iter()
        .map(|(resource_id, score)| RankedEntry {
            resource_id,
            count: score.round() as i64,
        })
        .collect()
}

/// The commands one leaderboard flush sends, each with the key it writes: a `ZREM` per removal
/// and period, then a `ZINCRBY` per delta and period, then one `EXPIRE` per expiring bucket
/// touched.
fn leaderboard_commands(
    removals: &[LeaderboardRemoval],
    deltas: &[LeaderboardDelta],
) -> Vec<(String, Cmd)> {
    let mut commands = Vec::with_capacity((removals.len() + deltas.len()) * 4 + 8);
    for r in removals {
        for period in Period::ALL {
            let bucket = LeaderboardBucket::containing(r.key.counter_type(), period, r.hour);
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(bucket.as_str()).arg(r.key.resource_id());
            commands.push((bucket.as_str().to_string(), cmd));
        }
    }
    // Each (counter type, hour) names the same four sorted sets; build their keys once.
    let mut buckets: HashMap<(&str, i64), [LeaderboardBucket; 4]> = HashMap::new();
    for d in deltas {
        let counter_type = d.key.counter_type();
        let set = buckets.entry((counter_type, d.hour)).or_insert_with(|| {
            Period::ALL.map(|p| LeaderboardBucket::containing(counter_type, p, d.hour))
        });
        for bucket in set.iter() {
            let mut cmd = redis::cmd("ZINCRBY");
            cmd.arg(bucket.as_str())
                .arg(d.delta)
                .arg(d.key.resource_id());
            commands.push((bucket.as_str().to_string(), cmd));
        }
    }
    let mut expiring: HashSet<&str> = HashSet::new();
    for set in buckets.values() {
        for bucket in set.iter() {
            if let Some(retention) = bucket.period.retention()
                && expiring.insert(bucket.as_str())
            {
                let mut cmd = redis::cmd("EXPIRE");
                cmd.arg(bucket.as_str()).arg(retention.as_secs());
                commands.push((bucket.as_str().to_string(), cmd));
            }
        }
    }
    commands
}

/// The `SCAN` command of one page.
fn scan_command(cursor: u64, pattern: &str, count: usize) -> Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count);
    cmd
}

/// Reads a `SCAN` reply: `[cursor, [key, …]]`.
fn parse_scan(reply: Value) -> Result<(u64, Vec<String>), StoreError> {
    let unexpected = || StoreError::Internal("unexpected SCAN reply".into());
    let Value::Array(mut parts) = reply else {
        return Err(unexpected());
    };
    let (Some(Value::Array(keys)), Some(cursor)) = (parts.pop(), parts.pop()) else {
        return Err(unexpected());
    };
    let cursor = match cursor {
        Value::BulkString(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(unexpected)?,
        _ => return Err(unexpected()),
    };
    let keys = keys
        .into_iter()
        .map(|k| match k {
            Value::BulkString(b) => String::from_utf8(b).map_err(|_| unexpected()),
            _ => Err(unexpected()),
        })
        .collect::<Result<_, _>>()?;
    Ok((cursor, keys))
}
