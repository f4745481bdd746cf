//! The Redis stores: [`single::RedisStore`] (one server) and [`cluster::RedisClusterStore`]
//! (Redis Cluster), and what they share: error classification, the leaderboard and `SCAN`
//! commands, and [`scripts`], the Lua scripts (in `*.lua` beside this file) with the commands
//! that call them and the parsers of their answers.

pub mod cluster;
pub mod scripts;
pub mod single;

use redis::{Cmd, RedisError, Value};

pub use cluster::{RedisClusterStore, key_slot};
pub use single::RedisStore;

use scripts::board_command;

use super::{BoardWrite, LeaderboardBucket, LeaderboardRemoval, Period, RankedEntry, StoreError};

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

/// A command and the key it writes (Redis Cluster routes by it).
type KeyedCmd = (String, Cmd);

/// The commands one leaderboard flush sends, each with the key it writes: a `ZREM` per removal
/// and period, then one [`board_command`] per write. Only the latter answer (see
/// [`parse_kth`](scripts::parse_kth)); the `ZREM`s come first.
fn leaderboard_commands(
    removals: &[LeaderboardRemoval],
    writes: &[BoardWrite],
) -> (Vec<KeyedCmd>, Vec<KeyedCmd>) {
    let mut removes = Vec::with_capacity(removals.len() * 4);
    for r in removals {
        for period in Period::ALL {
            let bucket = LeaderboardBucket::containing(r.key.counter_type(), period, r.hour);
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(bucket.as_str()).arg(r.key.resource_id());
            removes.push((bucket.as_str().to_string(), cmd));
        }
    }
    let boards = writes
        .iter()
        .map(|w| (w.bucket.as_str().to_string(), board_command(w)))
        .collect();
    (removes, boards)
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
