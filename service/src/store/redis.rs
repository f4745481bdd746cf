//! The Redis store: one auto-reconnecting multiplexed connection; each flush is one pipeline,
//! reads are one `MGET`, leaderboards are sorted sets (`ZINCRBY` with `EXPIRE` per bucket).
//!
//! Every call is bounded by the configured response timeout, so a dead Redis yields a fast
//! [`StoreError::Unavailable`], never a hang, and the connection manager reconnects by itself.

use std::collections::HashSet;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RedisResult, Value};

use super::{
    CounterKey, IncrOutcome, LeaderboardBucket, LeaderboardDelta, Period, RankedEntry, Store,
    StoreError, WriteBatch,
};

pub struct RedisStore {
    connection: ConnectionManager,
    timeout: Duration,
}

impl RedisStore {
    /// Prepares a connection to `url` without waiting for Redis: highpress starts (not ready)
    /// while Redis is down, and connects when it comes up.
    pub fn connect_lazy(
        url: &str,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Internal(format!("redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(connect_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(classify)?;
        Ok(Self {
            connection,
            timeout,
        })
    }

    async fn run<T>(&self, fut: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(StoreError::Unavailable(
                "redis did not answer in time".into(),
            )),
        }
    }
}

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

fn incr_outcome(result: RedisResult<i64>) -> IncrOutcome {
    match result {
        Ok(v) => IncrOutcome::Applied(v),
        Err(e) if e.to_string().contains("would overflow") => IncrOutcome::Overflow,
        Err(e) => IncrOutcome::Failed(e.to_string()),
    }
}

impl Store for RedisStore {
    async fn write<'a>(
        &'a self,
        batch: &'a WriteBatch<'a>,
    ) -> Result<Vec<IncrOutcome>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for &(key, delta) in &batch.increments {
            pipe.cmd("INCRBY").arg(key.as_str()).arg(delta);
        }
        let mut con = self.connection.clone();
        let results: Vec<RedisResult<i64>> = self.run(pipe.query_async(&mut con)).await?;
        if results.len() != batch.increments.len() {
            return Err(StoreError::Internal(format!(
                "pipeline answered {} replies for {} commands",
                results.len(),
                batch.increments.len()
            )));
        }
        Ok(results.into_iter().map(incr_outcome).collect())
    }

    async fn get_many<'a>(&'a self, keys: &'a [&'a CounterKey]) -> Result<Vec<i64>, StoreError> {
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(k.as_str());
        }
        let mut con = self.connection.clone();
        let values: Vec<Option<i64>> = self.run(cmd.query_async(&mut con)).await?;
        Ok(values.into_iter().map(|v| v.unwrap_or(0)).collect())
    }

    async fn add_to_leaderboards<'a>(
        &'a self,
        deltas: &'a [LeaderboardDelta],
    ) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut expiring: HashSet<LeaderboardBucket> = HashSet::new();
        for d in deltas {
            for period in Period::ALL {
                let bucket = LeaderboardBucket::containing(d.key.counter_type(), period, d.hour);
                pipe.cmd("ZINCRBY")
                    .arg(bucket.as_str())
                    .arg(d.delta)
                    .arg(d.key.resource_id())
                    .ignore();
                if period.retention().is_some() {
                    expiring.insert(bucket);
                }
            }
        }
        for bucket in &expiring {
            let secs = bucket.period.retention().map_or(0, |r| r.as_secs());
            pipe.cmd("EXPIRE").arg(bucket.as_str()).arg(secs).ignore();
        }
        let mut con = self.connection.clone();
        self.run(pipe.query_async::<()>(&mut con)).await
    }

    async fn leaderboard_top<'a>(
        &'a self,
        bucket: &'a LeaderboardBucket,
        limit: usize,
    ) -> Result<Vec<RankedEntry>, StoreError> {
        let mut cmd = redis::cmd("ZREVRANGE");
        cmd.arg(bucket.as_str())
            .arg(0)
            .arg(limit as i64 - 1)
            .arg("WITHSCORES");
        let mut con = self.connection.clone();
        let pairs: Vec<(String, f64)> = self.run(cmd.query_async(&mut con)).await?;
        Ok(pairs
            .into_iter()
            .map(|(resource_id, score)| RankedEntry {
                resource_id,
                count: score.round() as i64,
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut con = self.connection.clone();
        let reply: Value = self.run(redis::cmd("PING").query_async(&mut con)).await?;
        match reply {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            other => Err(StoreError::Internal(format!(
                "unexpected PING reply {other:?}"
            ))),
        }
    }
}
