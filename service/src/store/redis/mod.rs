//! The Redis stores: [`single::RedisStore`] (one server, or the primary that [`sentinel`]
//! names) and [`cluster::RedisClusterStore`] (Redis Cluster), and what they share: error
//! classification, the replica acknowledgement that ends each write ([`ReplicaAck`]), the
//! leaderboard and `SCAN` commands, and [`scripts`], the Lua scripts (in `*.lua` beside this
//! file) with the commands that call them and the parsers of their answers.

pub mod cluster;
pub mod outbox;
pub mod scripts;
pub mod sentinel;
pub mod single;
pub mod tls;

use std::time::Duration;

use redis::{Cmd, RedisError, Value};

pub use cluster::{RedisClusterStore, key_slot};
pub use sentinel::Sentinel;
pub use single::RedisStore;
pub use tls::RedisTls;

use scripts::board_command;

use super::{BoardWrite, LeaderboardBucket, LeaderboardRemoval, Period, RankedEntry, StoreError};

/// Sorts a Redis error into retryable (`Unavailable`) or not.
fn classify(e: RedisError) -> StoreError {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.code().is_some_and(is_unavailable_code)
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

/// Error codes of a command that was not executed because the server cannot take it now: it is
/// loading, busy, cut off from its primary or its cluster, a replica (`READONLY`: a failover
/// demoted it), or short of the replicas its `min-replicas-to-write` asks for.
fn is_unavailable_code(code: &str) -> bool {
    matches!(
        code,
        "LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "READONLY" | "NOREPLICAS"
    )
}

/// How many replicas must have a write before it is acknowledged: a write's pipeline ends with
/// `WAIT replicas timeout`, one command per flush (per master on Redis Cluster), which Redis
/// answers once that many replicas have everything the connection wrote before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaAck {
    pub replicas: u32,
    pub timeout: Duration,
}

impl From<&crate::config::RedisConfig> for ReplicaAck {
    fn from(config: &crate::config::RedisConfig) -> Self {
        Self {
            replicas: config.min_replicas_ack,
            timeout: config.replica_ack_timeout,
        }
    }
}

impl ReplicaAck {
    /// The `WAIT` that ends a write, if replicas are asked for.
    fn command(self) -> Option<Cmd> {
        (self.replicas > 0).then(|| {
            let mut cmd = redis::cmd("WAIT");
            cmd.arg(self.replicas)
                .arg(self.timeout.as_millis().max(1) as u64);
            cmd
        })
    }

    /// Reads `WAIT`'s answer (how many replicas have the writes): fewer than asked means the
    /// writes are on the primary only, so their outcome is unknown to a failover.
    fn check(self, reply: &Value) -> Result<(), StoreError> {
        match reply {
            Value::Int(n) if *n >= i64::from(self.replicas) => Ok(()),
            Value::Int(n) => Err(StoreError::Unavailable(format!(
                "{n} of {} replicas acknowledged the flush within {} ms",
                self.replicas,
                self.timeout.as_millis()
            ))),
            Value::ServerError(e) => Err(StoreError::Unavailable(format!("WAIT failed: {e:?}"))),
            other => Err(StoreError::Internal(format!(
                "unexpected WAIT reply {other:?}"
            ))),
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
