//! One Redis server: auto-reconnecting multiplexed connections; each flush is one pipeline,
//! reads are one `MGET`, leaderboards are top-K sorted sets (one script per ranking written).
//!
//! Leaderboards use a second connection, so their bulk pipelines never delay a counter flush.
//! Every call is bounded by the configured response timeout, so a dead Redis yields a fast
//! [`StoreError::Unavailable`], never a hang, and the connection manager reconnects by itself.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, RedisResult, Value};

use super::scripts::{
    GROUPS_PER_SCRIPT, ScriptBy, guarded_command, is_noscript, parse_groups, parse_kth,
    parse_reset, reset_command,
};
use super::{
    classify, leaderboard_commands, parse_scan, ranked_entries, scan_command, top_command,
};
use crate::store::keyspace::Keyspace;
use crate::store::{
    BoardWrite, CounterKey, GroupOutcome, GuardedGroup, IncrOutcome, KeyLayout, LeaderboardBucket,
    LeaderboardRemoval, RankedEntry, Store, StoreError, WriteBatch, WriteOutcome,
};

pub struct RedisStore {
    /// Counter flushes and reads: latency-critical, kept free of bulk work.
    connection: ConnectionManager,
    /// Leaderboard writes and queries: bulk pipelines that must not delay a flush queued
    /// behind them on the same connection.
    background: ConnectionManager,
    timeout: Duration,
    layout: KeyLayout,
}

impl RedisStore {
    /// Prepares a connection to `url` without waiting for Redis: highpress starts (not ready)
    /// while Redis is down, and connects when it comes up.
    pub fn connect_lazy(
        url: &str,
        layout: KeyLayout,
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
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(classify)?;
        let background =
            ConnectionManager::new_lazy_with_config(client, config).map_err(classify)?;
        Ok(Self {
            connection,
            background,
            timeout,
            layout,
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

    /// Resends script calls that Redis answered `NOSCRIPT` (so they ran nothing) with the
    /// script's body, which also caches it again; one list of outcomes per call.
    async fn resend_by_body(
        &self,
        calls: &[&[GuardedGroup<'_>]],
        ttl_ms: u64,
    ) -> Vec<Vec<GroupOutcome>> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for groups in calls {
            pipe.add_command(guarded_command(groups, self.layout, ttl_ms, ScriptBy::Body));
        }
        let mut con = self.connection.clone();
        let answers: Result<Vec<RedisResult<Value>>, StoreError> =
            self.run(pipe.query_async(&mut con)).await;
        let failure = match answers {
            Ok(answers) if answers.len() == calls.len() => {
                return answers
                    .into_iter()
                    .zip(calls)
                    .map(|(r, groups)| groups_outcome(r, groups))
                    .collect();
            }
            Ok(answers) => GroupOutcome::Failed(format!(
                "pipeline answered {} replies for {} scripts",
                answers.len(),
                calls.len()
            )),
            Err(StoreError::Unavailable(_)) => GroupOutcome::Unavailable,
            Err(StoreError::Internal(m)) => GroupOutcome::Failed(m),
        };
        calls
            .iter()
            .map(|groups| vec![failure.clone(); groups.len()])
            .collect()
    }
}

/// The outcomes of the guarded groups of one script call.
fn groups_outcome(reply: RedisResult<Value>, groups: &[GuardedGroup<'_>]) -> Vec<GroupOutcome> {
    match reply {
        Ok(v) => parse_groups(&v, groups),
        Err(e) => {
            let outcome = match classify(e) {
                StoreError::Unavailable(_) => GroupOutcome::Unavailable,
                StoreError::Internal(m) => GroupOutcome::Failed(m),
            };
            vec![outcome; groups.len()]
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
    async fn write<'a>(&'a self, batch: &'a WriteBatch<'a>) -> Result<WriteOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for &(key, delta) in &batch.increments {
            pipe.cmd("INCRBY")
                .arg(&*self.layout.counter(key))
                .arg(delta);
        }
        let ttl_ms = batch.record_ttl.as_millis() as u64;
        let calls: Vec<&[GuardedGroup<'_>]> = batch.guarded.chunks(GROUPS_PER_SCRIPT).collect();
        for groups in &calls {
            pipe.add_command(guarded_command(groups, self.layout, ttl_ms, ScriptBy::Hash));
        }
        let expected = batch.increments.len() + calls.len();
        let mut con = self.connection.clone();
        let mut results: Vec<RedisResult<Value>> = self.run(pipe.query_async(&mut con)).await?;
        if results.len() != expected {
            return Err(StoreError::Internal(format!(
                "pipeline answered {} replies for {expected} commands",
                results.len(),
            )));
        }
        let scripts = results.split_off(batch.increments.len());
        let increments = results
            .into_iter()
            .map(|r| match r {
                Ok(Value::Int(v)) => IncrOutcome::Applied(v),
                Ok(other) => IncrOutcome::Failed(format!("unexpected INCRBY reply {other:?}")),
                Err(e) => incr_outcome(Err(e)),
            })
            .collect();
        // `None`: the call's EVALSHA named a script this Redis does not have, so nothing ran.
        let mut answered: Vec<Option<Vec<GroupOutcome>>> = scripts
            .into_iter()
            .zip(&calls)
            .map(|(r, groups)| match r {
                Err(e) if is_noscript(e.code()) => None,
                r => Some(groups_outcome(r, groups)),
            })
            .collect();
        let unknown: Vec<usize> = (0..answered.len())
            .filter(|&i| answered[i].is_none())
            .collect();
        if !unknown.is_empty() {
            let resent: Vec<&[GuardedGroup<'_>]> = unknown.iter().map(|&i| calls[i]).collect();
            for (i, outcomes) in unknown
                .into_iter()
                .zip(self.resend_by_body(&resent, ttl_ms).await)
            {
                answered[i] = Some(outcomes);
            }
        }
        let guarded = answered
            .into_iter()
            .flat_map(|a| a.expect("every NOSCRIPT call was resent"))
            .collect();
        Ok(WriteOutcome {
            increments,
            guarded,
        })
    }

    async fn reset<'a>(&'a self, key: &'a CounterKey) -> Result<i64, StoreError> {
        let mut con = self.connection.clone();
        let reply: Value = self
            .run(reset_command(key, self.layout).query_async(&mut con))
            .await?;
        parse_reset(&reply)
            .ok_or_else(|| StoreError::Internal("a counter key holds a non-integer".into()))
    }

    async fn get_many<'a>(&'a self, keys: &'a [&'a CounterKey]) -> Result<Vec<i64>, StoreError> {
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(&*self.layout.counter(k));
        }
        let mut con = self.connection.clone();
        let values: Vec<Option<i64>> = self.run(cmd.query_async(&mut con)).await?;
        Ok(values.into_iter().map(|v| v.unwrap_or(0)).collect())
    }

    async fn update_leaderboards<'a>(
        &'a self,
        removals: &'a [LeaderboardRemoval],
        writes: &'a [BoardWrite],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        if removals.is_empty() && writes.is_empty() {
            return Ok(Vec::new());
        }
        let (removes, boards) = leaderboard_commands(removals, writes);
        let mut pipe = redis::pipe();
        for (_, cmd) in removes {
            pipe.add_command(cmd).ignore();
        }
        for (_, cmd) in boards {
            pipe.add_command(cmd);
        }
        let mut con = self.background.clone();
        let replies: Vec<Value> = self.run(pipe.query_async(&mut con)).await?;
        replies.iter().map(parse_kth).collect()
    }

    async fn leaderboard_top<'a>(
        &'a self,
        bucket: &'a LeaderboardBucket,
        limit: usize,
    ) -> Result<Vec<RankedEntry>, StoreError> {
        let mut con = self.background.clone();
        let pairs: Vec<(String, f64)> = self
            .run(top_command(bucket, limit).query_async(&mut con))
            .await?;
        Ok(ranked_entries(pairs))
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

impl Keyspace for RedisStore {
    async fn nodes(&self) -> Result<Vec<String>, StoreError> {
        Ok(vec![String::new()])
    }

    async fn scan(
        &self,
        _node: &str,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut con = self.background.clone();
        let reply: Value = self
            .run(scan_command(cursor, pattern, count).query_async(&mut con))
            .await?;
        parse_scan(reply)
    }

    async fn run_keyed(&self, commands: Vec<(String, Cmd)>) -> Vec<Result<Value, StoreError>> {
        if commands.is_empty() {
            return Vec::new();
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (_, cmd) in &commands {
            pipe.add_command(cmd.clone());
        }
        let mut con = self.background.clone();
        match self
            .run(pipe.query_async::<Vec<RedisResult<Value>>>(&mut con))
            .await
        {
            Ok(replies) if replies.len() == commands.len() => {
                replies.into_iter().map(|r| r.map_err(classify)).collect()
            }
            Ok(_) => commands
                .iter()
                .map(|_| Err(StoreError::Internal("pipeline reply count mismatch".into())))
                .collect(),
            Err(e) => commands.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}
