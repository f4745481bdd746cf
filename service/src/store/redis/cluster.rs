//! The Redis Cluster store, for installs that outgrow one Redis. highpress keeps its own slot
//! table (`CLUSTER SLOTS`) and one auto-reconnecting connection per master, and sends each
//! flush as one pipeline per master that owns some of its keys: a flush costs one round trip
//! per node involved, not per key. Reads are pipelined `GET`s per master the same way.
//!
//! Redirects are handled per command, never per pipeline: a command answered `MOVED` or `ASK`
//! was not executed, so it alone is resent to the node named in the redirect, and the slot
//! table is reloaded. A pipeline that failed as a whole is never resent (it may have been
//! applied); its increments are reported unavailable, not acknowledged.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use futures::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Value};

use super::outbox;
use super::scripts::{
    ScriptBy, guarded_command, is_noscript, parse_groups, parse_kth, parse_reset, reset_command,
};
use super::{
    RedisTls, ReplicaAck, classify, is_unavailable_code, leaderboard_commands, parse_scan,
    ranked_entries, scan_command, top_command,
};
use crate::config::RedisConfig;
use crate::store::keyspace::Keyspace;
use crate::store::{
    BoardWrite, CounterKey, GroupOutcome, IncrOutcome, KeyLayout, LeaderboardBucket,
    LeaderboardRemoval, RankedEntry, Store, StoreError, WriteBatch, WriteOutcome,
};
use crate::store::{OutboxAppend, OutboxEntry, OutboxTotals};

const SLOTS: usize = 16_384;

/// The cluster slot of `key` (CRC16/XMODEM of the key or its `{hash tag}`, modulo 16384).
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS as u16
}

/// Which master owns each slot, as last read with `CLUSTER SLOTS`.
#[derive(Default)]
struct SlotTable {
    /// `owner[slot]` is the master's `host:port`; empty until loaded.
    owner: Vec<Option<std::sync::Arc<str>>>,
}

pub struct RedisClusterStore {
    /// `redis://` or `rediss://`, with the password, for connections to discovered nodes.
    scheme: String,
    auth: String,
    seeds: Vec<String>,
    slots: RwLock<SlotTable>,
    nodes: RwLock<HashMap<String, ConnectionManager>>,
    config: ConnectionManagerConfig,
    timeout: Duration,
    layout: KeyLayout,
    /// Replicas each master's part of a write waits for.
    replica_ack: ReplicaAck,
    /// How the nodes are reached.
    tls: RedisTls,
}

/// One command of a grouped round trip, with the slot that decides its node.
struct Routed {
    slot: u16,
    cmd: Cmd,
}

impl RedisClusterStore {
    /// Prepares the store from seed URLs without connecting: highpress starts while the cluster
    /// is down and connects on first use.
    pub fn new(
        seeds: &[String],
        layout: KeyLayout,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let first = seeds
            .first()
            .ok_or_else(|| StoreError::Internal("no Redis Cluster seed".into()))?;
        let (scheme, rest) = first
            .split_once("://")
            .ok_or_else(|| StoreError::Internal(format!("seed {first:?} is not a URL")))?;
        let authority = rest.split('/').next().unwrap_or("");
        let auth = authority
            .rsplit_once('@')
            .map(|(a, _)| format!("{a}@"))
            .unwrap_or_default();
        let seeds = seeds
            .iter()
            .map(|s| {
                let rest = s.split_once("://").map_or(s.as_str(), |(_, r)| r);
                let authority = rest.split('/').next().unwrap_or("");
                authority
                    .rsplit_once('@')
                    .map_or(authority, |(_, hp)| hp)
                    .to_string()
            })
            .collect();
        Ok(Self {
            scheme: scheme.to_string(),
            auth,
            seeds,
            slots: RwLock::new(SlotTable::default()),
            nodes: RwLock::new(HashMap::new()),
            config: ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(connect_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200)),
            timeout,
            layout,
            replica_ack: ReplicaAck::default(),
            tls: RedisTls::plain(),
        })
    }

    /// The cluster `config` names (`redis.addr`'s seeds), with `redis.min_replicas_ack`.
    pub fn open(config: &RedisConfig, layout: KeyLayout) -> Result<Self, StoreError> {
        let seeds = config
            .cluster_seeds()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut store = Self::new(&seeds, layout, config.timeout, config.connect_timeout)?
            .with_replica_ack(ReplicaAck::from(config));
        store.tls = RedisTls::from_config(config)?;
        Ok(store)
    }

    /// Acknowledges writes only once `ack.replicas` replicas of each master involved have
    /// them: one `WAIT` per master per write.
    pub fn with_replica_ack(mut self, ack: ReplicaAck) -> Self {
        self.replica_ack = ack;
        self
    }

    /// What a write waits for; reads and leaderboards wait for nothing.
    fn write_ack(&self) -> Option<ReplicaAck> {
        (self.replica_ack.replicas > 0).then_some(self.replica_ack)
    }

    /// The connection to node `addr` (`host:port`), created on first use.
    fn node(&self, addr: &str) -> Result<ConnectionManager, StoreError> {
        if let Some(c) = self
            .nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
        {
            return Ok(c.clone());
        }
        let url = format!("{}://{}{addr}/0", self.scheme, self.auth);
        let client = self.tls.client(url)?;
        let connection = ConnectionManager::new_lazy_with_config(client, self.config.clone())
            .map_err(classify)?;
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        Ok(nodes.entry(addr.to_string()).or_insert(connection).clone())
    }

    async fn run<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(StoreError::Unavailable(
                "redis cluster node did not answer in time".into(),
            )),
        }
    }

    /// Sends `cmd` to node `addr`.
    async fn query_node(&self, addr: &str, cmd: &Cmd) -> Result<Value, StoreError> {
        let mut con = self.node(addr)?;
        self.run(cmd.query_async::<Value>(&mut con)).await
    }

    /// Reloads the slot table from the first node that answers (known masters, then seeds).
    async fn reload_slots(&self) -> Result<(), StoreError> {
        let mut candidates: Vec<String> = self
            .nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        candidates.extend(self.seeds.iter().cloned());
        let mut last = StoreError::Unavailable("no Redis Cluster node answered".into());
        for addr in candidates {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SLOTS");
            match self.query_node(&addr, &cmd).await {
                Ok(reply) => {
                    let table = parse_slots(reply)?;
                    *self.slots.write().unwrap_or_else(|e| e.into_inner()) = table;
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn owner(&self, slot: u16) -> Option<std::sync::Arc<str>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .owner
            .get(slot as usize)
            .cloned()
            .flatten()
    }

    /// Sends `commands` as one pipeline per owning master, concurrently, and returns one reply
    /// per command, in order. With `ack`, each pipeline ends with its `WAIT`, and a master whose
    /// replicas fall short fails all of its commands as unavailable.
    async fn run_grouped(
        &self,
        commands: &[Routed],
        ack: Option<ReplicaAck>,
    ) -> Vec<Result<Value, StoreError>> {
        if self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .owner
            .is_empty()
            && let Err(e) = self.reload_slots().await
        {
            return commands.iter().map(|_| Err(e.clone())).collect();
        }
        let mut replies: Vec<Option<Result<Value, StoreError>>> =
            (0..commands.len()).map(|_| None).collect();
        let mut groups: HashMap<std::sync::Arc<str>, Vec<usize>> = HashMap::new();
        for (i, c) in commands.iter().enumerate() {
            match self.owner(c.slot) {
                Some(node) => groups.entry(node).or_default().push(i),
                None => {
                    replies[i] = Some(Err(StoreError::Unavailable(format!(
                        "slot {} has no master",
                        c.slot
                    ))))
                }
            }
        }
        let groups: Vec<(std::sync::Arc<str>, Vec<usize>)> = groups.into_iter().collect();
        let sends = groups.iter().map(|(node, members)| {
            let mut pipe = redis::pipe();
            // Per-command replies, errors included: a redirect for one key must not hide
            // whether the others were applied.
            pipe.ignore_errors();
            for &i in members {
                pipe.add_command(commands[i].cmd.clone());
            }
            async move {
                let mut con = self.node(node)?;
                let replies = self
                    .run(pipe_with_ack(pipe, ack).query_async(&mut con))
                    .await?;
                acknowledged(replies, ack)
            }
        });
        let mut redirects: Vec<(usize, String)> = Vec::new();
        for ((_, members), answer) in groups.iter().zip(join_all(sends).await) {
            match answer {
                Ok(values) if values.len() == members.len() => {
                    for (&i, v) in members.iter().zip(values) {
                        match &v {
                            Value::ServerError(e) if matches!(e.code(), "MOVED" | "ASK") => {
                                redirects.push((
                                    i,
                                    format!("{} {}", e.code(), e.details().unwrap_or("")),
                                ));
                            }
                            _ => replies[i] = Some(Ok(v)),
                        }
                    }
                }
                Ok(_) => {
                    for &i in members {
                        replies[i] = Some(Err(StoreError::Internal(
                            "pipeline reply count mismatch".into(),
                        )));
                    }
                }
                // A pipeline that failed as a whole may have been applied: never resend it.
                Err(e) => {
                    for &i in members {
                        replies[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        if !redirects.is_empty() {
            crate::metrics::METRICS
                .store_redirects
                .inc_by(redirects.len() as u64);
            let resends = redirects
                .iter()
                .map(|(i, redirect)| self.follow(&commands[*i].cmd, redirect, ack));
            let answers = join_all(resends).await;
            for ((i, _), answer) in redirects.iter().zip(answers) {
                replies[*i] = Some(answer);
            }
            if let Err(e) = self.reload_slots().await {
                tracing::warn!(error = %e, "reloading the cluster slot table failed");
            }
        }
        replies
            .into_iter()
            .map(|r| r.expect("every command has a reply"))
            .collect()
    }

    /// Resends one redirected (and so unexecuted) command to the node the redirect names.
    async fn follow(
        &self,
        cmd: &Cmd,
        redirect: &str,
        ack: Option<ReplicaAck>,
    ) -> Result<Value, StoreError> {
        // "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381"
        let mut parts = redirect.split_whitespace();
        let (Some(kind), Some(_slot), Some(addr)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(StoreError::Internal(format!(
                "unparsable redirect {redirect:?}"
            )));
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if kind == "ASK" {
            pipe.cmd("ASKING").ignore();
        }
        pipe.add_command(cmd.clone());
        let mut con = self.node(addr)?;
        let replies = self
            .run(pipe_with_ack(pipe, ack).query_async(&mut con))
            .await?;
        acknowledged(replies, ack)?
            .pop()
            .ok_or_else(|| StoreError::Internal("empty redirect reply".into()))
    }
}

/// `pipe`, ended by the replicas' `WAIT` when `ack` asks for one.
fn pipe_with_ack(mut pipe: redis::Pipeline, ack: Option<ReplicaAck>) -> redis::Pipeline {
    if let Some(wait) = ack.and_then(ReplicaAck::command) {
        pipe.add_command(wait);
    }
    pipe
}

/// The replies of a pipeline's own commands, once its `WAIT` (if any) says enough replicas
/// have them.
fn acknowledged(
    mut replies: Vec<Value>,
    ack: Option<ReplicaAck>,
) -> Result<Vec<Value>, StoreError> {
    if let Some(ack) = ack.filter(|a| a.replicas > 0) {
        let wait = replies
            .pop()
            .ok_or_else(|| StoreError::Internal("pipeline answered no WAIT".into()))?;
        ack.check(&wait)?;
    }
    Ok(replies)
}

fn parse_slots(reply: Value) -> Result<SlotTable, StoreError> {
    let Value::Array(ranges) = reply else {
        return Err(StoreError::Internal(
            "unexpected CLUSTER SLOTS reply".into(),
        ));
    };
    let mut owner: Vec<Option<std::sync::Arc<str>>> = vec![None; SLOTS];
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = master.get(1) else {
            continue;
        };
        let node: std::sync::Arc<str> = format!("{host}:{port}").into();
        for slot in (*start).max(0)..=(*end).min(SLOTS as i64 - 1) {
            owner[slot as usize] = Some(node.clone());
        }
    }
    Ok(SlotTable { owner })
}

fn incr_outcome(reply: Result<Value, StoreError>) -> IncrOutcome {
    match reply {
        Ok(Value::Int(v)) => IncrOutcome::Applied(v),
        Ok(Value::ServerError(e)) if e.details().is_some_and(|d| d.contains("would overflow")) => {
            IncrOutcome::Overflow
        }
        Ok(Value::ServerError(e)) if is_unavailable_code(e.code()) => IncrOutcome::Unavailable,
        Ok(other) => IncrOutcome::Failed(format!("unexpected reply {other:?}")),
        Err(StoreError::Unavailable(_)) => IncrOutcome::Unavailable,
        Err(StoreError::Internal(e)) => IncrOutcome::Failed(e),
    }
}

impl Store for RedisClusterStore {
    async fn write<'a>(&'a self, batch: &'a WriteBatch<'a>) -> Result<WriteOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let ttl_ms = batch.record_ttl.as_millis() as u64;
        let commands: Vec<Routed> = batch
            .increments
            .iter()
            .map(|&(key, delta)| {
                let redis_key = self.layout.counter(key);
                let mut cmd = redis::cmd("INCRBY");
                cmd.arg(&*redis_key).arg(delta);
                Routed {
                    slot: key_slot(&redis_key),
                    cmd,
                }
            })
            // A script may touch one slot only: one call per group (see `guarded`).
            .chain(batch.guarded.iter().map(|group| Routed {
                slot: key_slot(&self.layout.counter(group.key)),
                cmd: guarded_command(
                    std::slice::from_ref(group),
                    self.layout,
                    ttl_ms,
                    ScriptBy::Hash,
                ),
            }))
            .collect();
        let mut replies = self.run_grouped(&commands, self.write_ack()).await;
        let mut scripts = replies.split_off(batch.increments.len());
        // A NOSCRIPT group ran nothing (a node restarted, failed over, or never ran the
        // script): resend exactly those, with the script's body.
        let unknown: Vec<usize> = (0..scripts.len())
            .filter(|&i| {
                matches!(&scripts[i], Ok(Value::ServerError(e)) if is_noscript(Some(e.code())))
            })
            .collect();
        if !unknown.is_empty() {
            let resend: Vec<Routed> = unknown
                .iter()
                .map(|&i| Routed {
                    slot: key_slot(&self.layout.counter(batch.guarded[i].key)),
                    cmd: guarded_command(
                        std::slice::from_ref(&batch.guarded[i]),
                        self.layout,
                        ttl_ms,
                        ScriptBy::Body,
                    ),
                })
                .collect();
            for (&i, answer) in unknown
                .iter()
                .zip(self.run_grouped(&resend, self.write_ack()).await)
            {
                scripts[i] = answer;
            }
        }
        let guarded = scripts
            .into_iter()
            .zip(&batch.guarded)
            .map(|(reply, group)| match reply {
                Ok(Value::ServerError(e)) if is_unavailable_code(e.code()) => {
                    GroupOutcome::Unavailable
                }
                Ok(Value::ServerError(e)) => GroupOutcome::Failed(format!("{e:?}")),
                Ok(v) => parse_groups(&v, std::slice::from_ref(group))
                    .pop()
                    .expect("one outcome per group"),
                Err(StoreError::Unavailable(_)) => GroupOutcome::Unavailable,
                Err(StoreError::Internal(e)) => GroupOutcome::Failed(e),
            })
            .collect();
        Ok(WriteOutcome {
            increments: replies.into_iter().map(incr_outcome).collect(),
            guarded,
        })
    }

    async fn reset<'a>(&'a self, key: &'a CounterKey) -> Result<i64, StoreError> {
        let reply = self
            .run_grouped(
                &[Routed {
                    slot: key_slot(&self.layout.counter(key)),
                    cmd: reset_command(key, self.layout),
                }],
                self.write_ack(),
            )
            .await
            .pop()
            .expect("one reply")?;
        match reply {
            Value::ServerError(e) if is_unavailable_code(e.code()) => {
                Err(StoreError::Unavailable(format!("{e:?}")))
            }
            other => parse_reset(&other)
                .ok_or_else(|| StoreError::Internal(format!("unexpected reset reply {other:?}"))),
        }
    }

    async fn get_many<'a>(&'a self, keys: &'a [&'a CounterKey]) -> Result<Vec<i64>, StoreError> {
        let commands: Vec<Routed> = keys
            .iter()
            .map(|k| {
                let redis_key = self.layout.counter(k);
                let mut cmd = redis::cmd("GET");
                cmd.arg(&*redis_key);
                Routed {
                    slot: key_slot(&redis_key),
                    cmd,
                }
            })
            .collect();
        self.run_grouped(&commands, None)
            .await
            .into_iter()
            .map(|reply| match reply? {
                Value::Nil => Ok(0),
                Value::BulkString(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        StoreError::Internal("a counter key holds a non-integer".into())
                    }),
                Value::ServerError(e) if is_unavailable_code(e.code()) => {
                    Err(StoreError::Unavailable(format!("{e:?}")))
                }
                other => Err(StoreError::Internal(format!(
                    "unexpected GET reply {other:?}"
                ))),
            })
            .collect()
    }

    async fn update_leaderboards<'a>(
        &'a self,
        removals: &'a [LeaderboardRemoval],
        writes: &'a [BoardWrite],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let (removes, boards) = leaderboard_commands(removals, writes);
        let answered = removes.len();
        let commands: Vec<Routed> = removes
            .into_iter()
            .chain(boards)
            .map(|(key, cmd)| Routed {
                slot: key_slot(&key),
                cmd,
            })
            .collect();
        let mut kth = Vec::with_capacity(writes.len());
        for (i, reply) in self
            .run_grouped(&commands, None)
            .await
            .into_iter()
            .enumerate()
        {
            let reply = reply?;
            if let Value::ServerError(e) = &reply
                && is_unavailable_code(e.code())
            {
                return Err(StoreError::Unavailable(format!("{e:?}")));
            }
            if i < answered {
                if let Value::ServerError(e) = reply {
                    return Err(StoreError::Internal(format!("{e:?}")));
                }
            } else {
                kth.push(parse_kth(&reply)?);
            }
        }
        Ok(kth)
    }

    async fn leaderboard_top<'a>(
        &'a self,
        bucket: &'a LeaderboardBucket,
        limit: usize,
    ) -> Result<Vec<RankedEntry>, StoreError> {
        let reply = self
            .run_grouped(
                &[Routed {
                    slot: key_slot(bucket.as_str()),
                    cmd: top_command(bucket, limit),
                }],
                None,
            )
            .await
            .pop()
            .expect("one reply")?;
        let pairs: Vec<(String, f64)> =
            redis::from_redis_value(reply).map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(ranked_entries(pairs))
    }

    /// Healthy while the cluster reports `cluster_state:ok`; each ping also refreshes the slot
    /// table, so topology changes are picked up within a second.
    async fn ping(&self) -> Result<(), StoreError> {
        self.reload_slots().await?;
        let addr = self
            .owner(0)
            .ok_or_else(|| StoreError::Unavailable("slot 0 has no master".into()))?;
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("INFO");
        let info: String = redis::from_redis_value(self.query_node(&addr, &cmd).await?)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        if info.lines().any(|l| l.trim() == "cluster_state:ok") {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "redis cluster state is not ok".into(),
            ))
        }
    }

    async fn outbox_append<'a>(&'a self, appends: &'a [OutboxAppend]) -> Result<(), StoreError> {
        if appends.is_empty() {
            return Ok(());
        }
        let routed: Vec<Routed> = outbox::append_commands(appends)
            .into_iter()
            .map(|(key, cmd)| Routed {
                slot: key_slot(&key),
                cmd,
            })
            .collect();
        outbox::all_ok(self.run_grouped(&routed, self.write_ack()).await)
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

impl Keyspace for RedisClusterStore {
    async fn nodes(&self) -> Result<Vec<String>, StoreError> {
        self.reload_slots().await?;
        let mut masters: Vec<String> = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .owner
            .iter()
            .flatten()
            .map(|node| node.to_string())
            .collect();
        masters.sort();
        masters.dedup();
        Ok(masters)
    }

    async fn scan(
        &self,
        node: &str,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let reply = self
            .query_node(node, &scan_command(cursor, pattern, count))
            .await?;
        parse_scan(reply)
    }

    async fn run_keyed(&self, commands: Vec<(String, Cmd)>) -> Vec<Result<Value, StoreError>> {
        let routed: Vec<Routed> = commands
            .into_iter()
            .map(|(key, cmd)| Routed {
                slot: key_slot(&key),
                cmd,
            })
            .collect();
        self.run_grouped(&routed, None)
            .await
            .into_iter()
            .map(|reply| match reply {
                Ok(Value::ServerError(e)) if is_unavailable_code(e.code()) => {
                    Err(StoreError::Unavailable(e.to_string()))
                }
                Ok(Value::ServerError(e)) => Err(StoreError::Internal(e.to_string())),
                other => other,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter's side keys hash-tag its Redis key, so they share its slot in either layout.
    #[test]
    fn side_keys_share_the_counters_cluster_slot_in_both_layouts() {
        let k = CounterKey::new("like", "post:7/a@b");
        for (layout, counter) in [
            (KeyLayout::Highpress, "c:like:post:7/a@b"),
            (KeyLayout::Highgopress, "counter:post:7/a@b:like"),
        ] {
            assert_eq!(layout.counter(&k), counter);
            assert_eq!(layout.uniqueness_set(&k), format!("u:{{{counter}}}"));
            assert_eq!(
                layout.idempotency_record(&k, "k{1}"),
                format!("i:{{{counter}}}:k{{1}}")
            );
            let slot = key_slot(counter);
            assert_eq!(key_slot(&layout.uniqueness_set(&k)), slot);
            assert_eq!(key_slot(&layout.idempotency_record(&k, "k{1}")), slot);
        }
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("hello"), 866);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
    }
}
