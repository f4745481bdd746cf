//! Raw keyspace access for one-shot tools that walk every key (the key migration,
//! `highpress migrate-keys`): `SCAN` per node, and batches of commands, each sent to the node
//! that owns its key. The counter engine uses only `run_keyed`, for the events relay's outbox
//! commands (`redis/outbox.rs`).

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
