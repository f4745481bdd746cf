//! One Redis server, or the primary that Sentinel names: auto-reconnecting multiplexed
//! connections; each flush is one pipeline, reads are one `MGET`, leaderboards are top-K sorted
//! sets (one script per ranking written).
//!
//! Leaderboards use a second connection, so their bulk pipelines never delay a counter flush.
//! Every call is bounded by the configured response timeout, so a dead Redis yields a fast
//! [`StoreError::Unavailable`], never a hang, and the connection manager reconnects by itself.
//!
//! Behind Sentinel, a task follows the primary: it asks the sentinels again when a call fails
//! (an unreachable server, or `READONLY` from a demoted one), when a sentinel announces
//! `+switch-master`, and every few seconds, and moves both connections to the server they
//! name. Until then calls fail fast, as for any outage.
//!
//! With [`ReplicaAck`], every write (a flush, a reset) ends with `WAIT`, so nothing is
//! acknowledged that the replicas do not have.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ConnectionInfo, RedisResult, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::outbox;
use super::scripts::{
    GROUPS_PER_SCRIPT, ScriptBy, guarded_command, is_noscript, parse_groups, parse_kth,
    parse_reset, reset_command,
};
use super::sentinel::{Sentinel, Switches};
use super::{
    RedisTls, ReplicaAck, classify, is_unavailable_code, leaderboard_commands, parse_scan,
    ranked_entries, scan_command, top_command,
};
use crate::config::RedisConfig;
use crate::metrics::METRICS;
use crate::store::keyspace::Keyspace;
use crate::store::{
    BoardWrite, CounterKey, GroupOutcome, GuardedGroup, IncrOutcome, KeyLayout, LeaderboardBucket,
    LeaderboardRemoval, RankedEntry, Store, StoreError, WriteBatch, WriteOutcome,
};
use crate::store::{OutboxAppend, OutboxEntry, OutboxTotals};

/// How often the sentinels are asked while nothing suggests a failover.
const RECHECK: Duration = Duration::from_secs(5);
/// The least time between two questions to the sentinels, however many calls fail.
const MIN_RECHECK: Duration = Duration::from_millis(100);

pub struct RedisStore {
    primary: Arc<Primary>,
    timeout: Duration,
    layout: KeyLayout,
    replica_ack: ReplicaAck,
}

/// The connections to the server being written to, replaced when Sentinel names another.
struct Primary {
    current: RwLock<Option<Arc<Connections>>>,
    /// Wakes the task that follows Sentinel (absent for a fixed server).
    suspect: Option<Arc<Notify>>,
}

struct Connections {
    /// `host:port`, for logs.
    address: String,
    /// Counter flushes and reads: latency-critical, kept free of bulk work.
    counters: ConnectionManager,
    /// Leaderboard writes and queries: bulk pipelines that must not delay a flush queued
    /// behind them on the same connection.
    background: ConnectionManager,
}

impl Connections {
    fn open(
        client: redis::Client,
        config: &ConnectionManagerConfig,
    ) -> Result<Arc<Self>, StoreError> {
        let address = client.get_connection_info().addr().to_string();
        let counters = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(classify)?;
        let background =
            ConnectionManager::new_lazy_with_config(client, config.clone()).map_err(classify)?;
        Ok(Arc::new(Self {
            address,
            counters,
            background,
        }))
    }
}

fn manager_config(timeout: Duration, connect_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(connect_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200))
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
        let client = RedisTls::plain().client(url)?;
        Self::lazy(client, layout, timeout, connect_timeout)
    }

    /// [`RedisStore::connect_lazy`] with a client already made.
    fn lazy(
        client: redis::Client,
        layout: KeyLayout,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let connections = Connections::open(client, &manager_config(timeout, connect_timeout))?;
        Ok(Self {
            primary: Arc::new(Primary {
                current: RwLock::new(Some(connections)),
                suspect: None,
            }),
            timeout,
            layout,
            replica_ack: ReplicaAck::default(),
        })
    }

    /// The store `config` names: the primary behind `redis.sentinel` if set, else the server
    /// at `redis.addr`; with `redis.min_replicas_ack`.
    pub fn open(config: &RedisConfig, layout: KeyLayout) -> Result<Self, StoreError> {
        let tls = RedisTls::from_config(config)?;
        let store = if config.sentinel.enabled() {
            let sentinel = Sentinel::new(
                &config.sentinel.master_name,
                &config.sentinel.urls(),
                &config.password,
                config.db,
                config.connect_timeout.max(config.timeout),
                tls,
            )?;
            Self::follow_sentinel(sentinel, layout, config.timeout, config.connect_timeout)
        } else {
            let url = config
                .url()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            Self::lazy(
                tls.client(url.as_str())?,
                layout,
                config.timeout,
                config.connect_timeout,
            )?
        };
        Ok(store.with_replica_ack(ReplicaAck::from(config)))
    }

    /// Writes to whichever server `sentinel` names as the primary, and follows it through
    /// failovers. Returns at once; calls fail fast until the first primary is found. Must be
    /// called within a Tokio runtime (it starts the task that follows Sentinel).
    pub fn follow_sentinel(
        sentinel: Sentinel,
        layout: KeyLayout,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Self {
        let suspect = Arc::new(Notify::new());
        let primary = Arc::new(Primary {
            current: RwLock::new(None),
            suspect: Some(suspect.clone()),
        });
        let config = manager_config(timeout, connect_timeout);
        tokio::spawn(follow(sentinel, Arc::downgrade(&primary), suspect, config));
        Self {
            primary,
            timeout,
            layout,
            replica_ack: ReplicaAck::default(),
        }
    }

    /// Acknowledges writes only once `ack.replicas` replicas have them.
    pub fn with_replica_ack(mut self, ack: ReplicaAck) -> Self {
        self.replica_ack = ack;
        self
    }

    /// Waits up to `within` for Sentinel to name a first primary (no wait for a fixed server),
    /// for a one-shot command that cannot wait for readiness as the service does.
    pub async fn wait_for_primary(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.connections().is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn connections(&self) -> Result<Arc<Connections>, StoreError> {
        let current = self
            .primary
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        current.ok_or_else(|| {
            self.primary.suspected();
            StoreError::Unavailable("no primary yet: the sentinels have not named one".into())
        })
    }

    fn counters(&self) -> Result<ConnectionManager, StoreError> {
        Ok(self.connections()?.counters.clone())
    }

    fn background(&self) -> Result<ConnectionManager, StoreError> {
        Ok(self.connections()?.background.clone())
    }

    async fn run<T>(&self, fut: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(StoreError::Unavailable(
                "redis did not answer in time".into(),
            )),
        };
        if let Err(StoreError::Unavailable(_)) = &result {
            self.primary.suspected();
        }
        result
    }

    /// Runs a write's pipeline, ended by the replicas' `WAIT` when one is asked for, and
    /// returns the replies of its own commands. A command the server could not take now
    /// (`READONLY`, `LOADING`, …) fails the whole write as unavailable: whatever else it
    /// applied is unknown, like a write that failed in transit.
    async fn run_write(
        &self,
        mut pipe: redis::Pipeline,
        commands: usize,
    ) -> Result<Vec<RedisResult<Value>>, StoreError> {
        let wait = self.replica_ack.command();
        if let Some(wait) = &wait {
            pipe.add_command(wait.clone());
        }
        let expected = commands + usize::from(wait.is_some());
        let mut con = self.counters()?;
        let mut replies: Vec<RedisResult<Value>> = self.run(pipe.query_async(&mut con)).await?;
        if replies.len() != expected {
            return Err(StoreError::Internal(format!(
                "pipeline answered {} replies for {expected} commands",
                replies.len(),
            )));
        }
        if let Some(e) = replies.iter().find_map(|r| {
            r.as_ref()
                .err()
                .filter(|e| e.code().is_some_and(is_unavailable_code))
        }) {
            self.primary.suspected();
            return Err(StoreError::Unavailable(e.to_string()));
        }
        if wait.is_some() {
            let acked = replies.pop().expect("counted").map_err(classify)?;
            self.replica_ack.check(&acked)?;
        }
        Ok(replies)
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
        let answers = self.run_write(pipe, calls.len()).await;
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

impl Primary {
    /// A call failed in a way a failover would explain: ask the sentinels again.
    fn suspected(&self) {
        if let Some(suspect) = &self.suspect {
            suspect.notify_one();
        }
    }

    /// Moves to the server at `found`, unless that is where the connections already go.
    fn follow_to(&self, found: ConnectionInfo, config: &ConnectionManagerConfig) {
        let address = found.addr().to_string();
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|c| c.address == address) {
            return;
        }
        let connections = redis::Client::open(found)
            .map_err(classify)
            .and_then(|client| Connections::open(client, config));
        match connections {
            Ok(connections) => {
                match current.as_ref() {
                    Some(old) => tracing::warn!(
                        from = %old.address,
                        to = %address,
                        "Sentinel named a new primary; following it"
                    ),
                    None => tracing::info!(primary = %address, "Sentinel named the primary"),
                }
                METRICS.store_primary_changes.inc();
                *current = Some(connections);
            }
            Err(e) => {
                tracing::error!(error = %e, primary = %address, "cannot connect to the primary")
            }
        }
    }
}

/// Follows the primary that `sentinel` names for as long as the store lives: asks at once, then
/// whenever a call fails, a sentinel announces a switch, or [`RECHECK`] has passed.
async fn follow(
    sentinel: Sentinel,
    primary: Weak<Primary>,
    suspect: Arc<Notify>,
    config: ConnectionManagerConfig,
) {
    let mut switches: Option<Switches> = None;
    loop {
        let asked = Instant::now();
        let Some(target) = primary.upgrade() else {
            return;
        };
        match sentinel.resolve().await {
            Ok(found) => target.follow_to(found, &config),
            Err(e) => {
                tracing::debug!(error = %e, master = sentinel.master_name(), "no primary from Sentinel")
            }
        }
        drop(target);
        if switches.is_none() {
            switches = sentinel.switches().await.ok();
        }
        tokio::time::sleep_until(asked + MIN_RECHECK).await;
        tokio::select! {
            () = suspect.notified() => {}
            switched = next_switch(&mut switches) => {
                if switched.is_none() {
                    switches = None; // that sentinel went away; subscribe again
                }
            }
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

async fn next_switch(switches: &mut Option<Switches>) -> Option<()> {
    use futures::StreamExt;
    match switches {
        Some(s) => s.next().await,
        None => std::future::pending().await,
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
        let mut results = self
            .run_write(pipe, batch.increments.len() + calls.len())
            .await?;
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
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .add_command(reset_command(key, self.layout));
        let reply = self
            .run_write(pipe, 1)
            .await?
            .pop()
            .expect("one reply")
            .map_err(classify)?;
        parse_reset(&reply)
            .ok_or_else(|| StoreError::Internal("a counter key holds a non-integer".into()))
    }

    async fn get_many<'a>(&'a self, keys: &'a [&'a CounterKey]) -> Result<Vec<i64>, StoreError> {
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(&*self.layout.counter(k));
        }
        let mut con = self.counters()?;
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
        let mut con = self.background()?;
        let replies: Vec<Value> = self.run(pipe.query_async(&mut con)).await?;
        replies.iter().map(parse_kth).collect()
    }

    async fn leaderboard_top<'a>(
        &'a self,
        bucket: &'a LeaderboardBucket,
        limit: usize,
    ) -> Result<Vec<RankedEntry>, StoreError> {
        let mut con = self.background()?;
        let pairs: Vec<(String, f64)> = self
            .run(top_command(bucket, limit).query_async(&mut con))
            .await?;
        Ok(ranked_entries(pairs))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut con = self.counters()?;
        let reply: Value = self.run(redis::cmd("PING").query_async(&mut con)).await?;
        match reply {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            other => Err(StoreError::Internal(format!(
                "unexpected PING reply {other:?}"
            ))),
        }
    }

    async fn outbox_append<'a>(&'a self, appends: &'a [OutboxAppend]) -> Result<(), StoreError> {
        if appends.is_empty() {
            return Ok(());
        }
        let commands = outbox::append_commands(appends);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (_, cmd) in &commands {
            pipe.add_command(cmd.clone());
        }
        let replies = self.run_write(pipe, commands.len()).await?;
        outbox::all_ok(replies.into_iter().map(|r| r.map_err(classify)).collect())
    }

    async fn outbox_lease<'a>(
        &'a self,
        partition: u32,
        owner: &'a str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        outbox::lease(self, partition, owner, ttl).await
    }

    async fn outbox_read<'a>(
        &'a self,
        partition: u32,
        after: Option<&'a str>,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        outbox::read(self, partition, after, count).await
    }

    async fn outbox_trim<'a>(
        &'a self,
        partition: u32,
        through: &'a str,
        total: u64,
    ) -> Result<(), StoreError> {
        outbox::trim(self, partition, through, total).await
    }

    async fn outbox_totals(&self, partitions: u32) -> Result<Vec<OutboxTotals>, StoreError> {
        outbox::totals(self, partitions).await
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
        let mut con = self.background()?;
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
        let mut con = match self.background() {
            Ok(con) => con,
            Err(e) => return commands.iter().map(|_| Err(e.clone())).collect(),
        };
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
