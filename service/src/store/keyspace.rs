//! Raw keyspace access for one-shot tools that walk every key (the key migration,
//! `highpress migrate-keys`): `SCAN` per node, and batches of commands, each sent to the node
//! that owns its key. The counter engine never uses it.

use std::future::Future;

use redis::{Cmd, Value};

use super::StoreError;

/// What a tool needs from a Redis store to walk and rewrite its keys.
pub trait Keyspace: Send + Sync {
    /// The nodes whose keys together are the whole keyspace: the masters of a cluster, or the
    /// one server (named `""`).
    fn nodes(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// One `SCAN cursor MATCH pattern COUNT count` page on `node`: the next cursor (0 when the
    /// walk is done) and the keys of this page.
    fn scan(
        &self,
        node: &str,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> impl Future<Output = Result<(u64, Vec<String>), StoreError>> + Send;

    /// Runs `commands` (each with the key that routes it), pipelined per node; one outcome per
    /// command, in order, so one failing command does not hide the others' replies.
    fn run_keyed(
        &self,
        commands: Vec<(String, Cmd)>,
    ) -> impl Future<Output = Vec<Result<Value, StoreError>>> + Send;
}

/// The `SCAN` command of one page.
pub(crate) fn scan_command(cursor: u64, pattern: &str, count: usize) -> Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count);
    cmd
}

/// Reads a `SCAN` reply: `[cursor, [key, …]]`.
pub(crate) fn parse_scan(reply: Value) -> Result<(u64, Vec<String>), StoreError> {
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
