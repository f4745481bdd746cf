//! The events outbox on Redis: one stream per partition, `outbox:{p}`, beside the totals of
//! events appended (`outbox:{p}:appended`) and relayed (`outbox:{p}:relayed`) and the relay's
//! lease (`outbox:{p}:lease`). The hash tag `{p}` keeps a partition's keys in one slot of a
//! Redis Cluster, and spreads the partitions over the masters.
//!
//! The commands here are shared by the single-server and the cluster store. Appends are sent
//! each store's own way (with the flush's `WAIT`); the relay's operations ([`lease`], [`read`],
//! [`trim`], [`totals`]) are written once here over [`Keyspace::run_keyed`].

use std::time::Duration;

use redis::{Cmd, Value};

use super::scripts::{OUTBOX_APPEND_SCRIPT, OUTBOX_LEASE_SCRIPT, OUTBOX_TRIM_SCRIPT};
use crate::store::keyspace::Keyspace;
use crate::store::{OutboxAppend, OutboxEntry, OutboxTotals, StoreError, next_outbox_id};

/// A command and the key that routes it on a Redis Cluster.
pub type KeyedCmd = (String, Cmd);

fn stream(partition: u32) -> String {
    format!("outbox:{{{partition}}}")
}

fn eval(script: &str, keys: &[String]) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len());
    for key in keys {
        cmd.arg(key);
    }
    cmd
}

/// One `EVAL` of the append script per entry.
pub fn append_commands(appends: &[OutboxAppend]) -> Vec<KeyedCmd> {
    appends
        .iter()
        .map(|a| {
            let stream = stream(a.partition);
            let mut cmd = eval(
                &OUTBOX_APPEND_SCRIPT,
                &[stream.clone(), format!("{stream}:appended")],
            );
            cmd.arg(&a.payload).arg(a.events);
            (stream, cmd)
        })
        .collect()
}

fn lease_command(partition: u32, owner: &str, ttl: Duration) -> KeyedCmd {
    let stream = stream(partition);
    let mut cmd = eval(&OUTBOX_LEASE_SCRIPT, &[format!("{stream}:lease")]);
    cmd.arg(owner).arg(ttl.as_millis() as u64);
    (stream, cmd)
}

fn parse_lease(reply: Value) -> Result<bool, StoreError> {
    match reply {
        Value::Int(n) => Ok(n == 1),
        other => Err(unexpected("lease", &other)),
    }
}

/// `XRANGE outbox:{p} (after + COUNT count`.
fn read_command(partition: u32, after: Option<&str>, count: usize) -> KeyedCmd {
    let stream = stream(partition);
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(&stream);
    match after {
        Some(id) => cmd.arg(format!("({id}")),
        None => cmd.arg("-"),
    };
    cmd.arg("+").arg("COUNT").arg(count);
    (stream, cmd)
}

/// An `XRANGE` reply: `[[id, [field, value, ...]], ...]` with fields `c` and `e`.
fn parse_entries(reply: Value) -> Result<Vec<OutboxEntry>, StoreError> {
    let Value::Array(entries) = reply else {
        return Err(unexpected("XRANGE", &reply));
    };
    entries
        .into_iter()
        .map(|entry| {
            let Value::Array(mut parts) = entry else {
                return Err(StoreError::Internal(
                    "an outbox entry is not an array".into(),
                ));
            };
            let (Some(Value::Array(fields)), Some(id)) = (parts.pop(), parts.pop()) else {
                return Err(StoreError::Internal("an outbox entry has no fields".into()));
            };
            let id =
                text(id).ok_or_else(|| StoreError::Internal("an outbox id is not text".into()))?;
            let mut total = None;
            let mut payload = None;
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                match bytes(name).as_deref() {
                    Some(b"c") => {
                        total =
                            bytes(value).and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
                    }
                    Some(b"e") => payload = bytes(value),
                    _ => {}
                }
            }
            match (total, payload) {
                (Some(total), Some(payload)) => Ok(OutboxEntry { id, total, payload }),
                _ => Err(StoreError::Internal(format!(
                    "outbox entry {id} lacks its fields"
                ))),
            }
        })
        .collect()
}

fn trim_command(partition: u32, keep_from: &str, total: u64) -> KeyedCmd {
    let stream = stream(partition);
    let mut cmd = eval(
        &OUTBOX_TRIM_SCRIPT,
        &[stream.clone(), format!("{stream}:relayed")],
    );
    cmd.arg(keep_from).arg(total);
    (stream, cmd)
}

/// One `GET` of each total of each partition: appended, then relayed, per partition.
fn totals_commands(partitions: u32) -> Vec<KeyedCmd> {
    (0..partitions)
        .flat_map(|p| {
            let stream = stream(p);
            ["appended", "relayed"].map(|which| {
                let mut cmd = redis::cmd("GET");
                cmd.arg(format!("{stream}:{which}"));
                (stream.clone(), cmd)
            })
        })
        .collect()
}

fn parse_totals(replies: Vec<Result<Value, StoreError>>) -> Result<Vec<OutboxTotals>, StoreError> {
    let counts = replies
        .into_iter()
        .map(|r| match r? {
            Value::Nil => Ok(0),
            v => bytes(v.clone())
                .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
                .ok_or_else(|| unexpected("GET", &v)),
        })
        .collect::<Result<Vec<u64>, _>>()?;
    Ok(counts
        .chunks(2)
        .map(|c| OutboxTotals {
            appended: c[0],
            relayed: c.get(1).copied().unwrap_or(0),
        })
        .collect())
}

/// Takes, renews (`ttl` > 0) or gives up (`ttl` 0) `owner`'s lease on `partition`: true while
/// `owner` holds it.
pub async fn lease(
    store: &impl Keyspace,
    partition: u32,
    owner: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    parse_lease(run_one(store, lease_command(partition, owner, ttl)).await?)
}

/// Up to `count` entries of `partition` after the id `after` (from the start without one).
pub async fn read(
    store: &impl Keyspace,
    partition: u32,
    after: Option<&str>,
    count: usize,
) -> Result<Vec<OutboxEntry>, StoreError> {
    parse_entries(run_one(store, read_command(partition, after, count)).await?)
}

/// Drops `partition`'s entries through the id `through` and records `total` events relayed.
pub async fn trim(
    store: &impl Keyspace,
    partition: u32,
    through: &str,
    total: u64,
) -> Result<(), StoreError> {
    let keep_from = next_outbox_id(through)
        .ok_or_else(|| StoreError::Internal(format!("outbox id {through:?}")))?;
    all_ok(vec![
        run_one(store, trim_command(partition, &keep_from, total)).await,
    ])
}

/// The appended and relayed totals of partitions `0..partitions`.
pub async fn totals(
    store: &impl Keyspace,
    partitions: u32,
) -> Result<Vec<OutboxTotals>, StoreError> {
    parse_totals(store.run_keyed(totals_commands(partitions)).await)
}

async fn run_one(store: &impl Keyspace, command: KeyedCmd) -> Result<Value, StoreError> {
    store
        .run_keyed(vec![command])
        .await
        .pop()
        .unwrap_or_else(|| Err(StoreError::Internal("no reply".into())))
}

/// The replies of commands whose answers carry nothing (appends, trims): the first error.
pub fn all_ok(replies: Vec<Result<Value, StoreError>>) -> Result<(), StoreError> {
    for reply in replies {
        if let Value::ServerError(e) = reply? {
            return Err(StoreError::Internal(format!("outbox: {e:?}")));
        }
    }
    Ok(())
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

fn text(v: Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

fn unexpected(what: &str, reply: &Value) -> StoreError {
    StoreError::Internal(format!("unexpected outbox {what} reply {reply:?}"))
}
