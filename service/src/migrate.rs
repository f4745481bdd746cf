//! `highpress migrate-keys`: copies counters from HighGoPress's key layout
//! (`counter:{resource_id}:{counter_type}`) into highpress's (`c:{counter_type}:{resource_id}`),
//! for a team that moves to highpress's own layout.
//!
//! Contract:
//! - **Copies, never moves.** The source keys are only read, so HighGoPress (or highpress with
//!   `store.key_layout: highgopress`) keeps reading and writing them while this runs.
//! - **Adds what is new.** Next to each copied counter, a watermark `m:{c:…}` holds the source
//!   value copied so far; each run adds the source's change since (`source - watermark`) to
//!   the destination and moves the watermark, in one script in the destination's slot, which
//!   checks that the watermark is still the one read. So a run is idempotent, increments that
//!   highpress made to the destination meanwhile are kept, and a last run after HighGoPress has
//!   stopped makes every total exact. Works on Redis Cluster: the source key and the
//!   destination's pair are each read or written in their own slot.
//! - **Resumable.** Each node's `SCAN` cursor is saved in `migrate:highgopress:cursor:<node>`
//!   after every page it finished, and a run starts from there; a run that completes a node
//!   deletes its cursor, so the next run walks it again from the start. A page redone after a
//!   crash changes nothing (the watermarks).
//! - Keys that are not valid counters (a `resource_id` or `counter_type` highpress rejects) are
//!   skipped and counted.

use std::fmt;

use redis::Value;

use crate::config::{Config, StoreKind};
use crate::domain::{CounterKey, KeyLayout};
use crate::store::StoreError;
use crate::store::keyspace::Keyspace;
use crate::store::redis::scripts::MIGRATE_COPY_SCRIPT;
use crate::store::redis::{RedisClusterStore, RedisStore};

/// Runs the migration on the Redis (or Redis Cluster) that `config` names.
pub async fn run(config: &Config, options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(
        config.store.kind == StoreKind::Redis,
        "migrate-keys needs a Redis: set redis.addr (and redis.cluster for Redis Cluster)"
    );
    // The layout is the engine's; the migration names its keys itself.
    let report = if config.redis.cluster {
        let store = RedisClusterStore::open(&config.redis, KeyLayout::Highpress)?;
        migrate(&store, options).await?
    } else {
        let store = RedisStore::open(&config.redis, KeyLayout::Highpress)?;
        store
            .wait_for_primary(config.redis.connect_timeout * 10)
            .await;
        migrate(&store, options).await?
    };
    Ok(report)
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Source keys seen (every `counter:*` key).
    pub scanned: u64,
    /// Counters whose destination changed in this run.
    pub copied: u64,
    /// Counters already up to date.
    pub unchanged: u64,
    /// `counter:*` keys that are not valid highpress counters, left alone.
    pub skipped: u64,
    /// The sum of the changes written to destinations.
    pub added: i128,
    /// Counters that could not be copied (an overflow, a non-integer value); named in the log.
    pub failed: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys scanned: {} counters copied (+{} in all), {} already up to date, {} not valid counters (skipped), {} failed",
            self.scanned, self.copied, self.added, self.unchanged, self.skipped, self.failed
        )
    }
}

/// Options of one run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `SCAN … COUNT` per page.
    pub page_size: usize,
    /// Report what would change without writing anything (no cursor is saved either).
    pub dry_run: bool,
}

fn checkpoint_key(node: &str) -> String {
    format!("migrate:highgopress:cursor:{node}")
}

/// The watermark beside `key`'s destination: `m:{c:type:id}`, in the destination's slot.
fn watermark_key(key: &CounterKey) -> String {
    format!("m:{{{}}}", KeyLayout::Highpress.counter(key))
}

/// Copies every HighGoPress counter of `store` into highpress's layout (see the module docs).
/// Fails only when the store cannot be reached; per-key problems are counted in the report.
pub async fn migrate<K: Keyspace>(store: &K, options: Options) -> Result<Report, StoreError> {
    let mut report = Report::default();
    for node in store.nodes().await? {
        let checkpoint = checkpoint_key(&node);
        let mut cursor = read_checkpoint(store, &checkpoint).await?;
        if cursor != 0 {
            tracing::info!(node, cursor, "resuming from the saved cursor");
        }
        loop {
            let (next, keys) = store
                .scan(
                    &node,
                    cursor,
                    &format!("{}*", crate::domain::keys::HIGHGOPRESS_PREFIX),
                    options.page_size,
                )
                .await?;
            copy_page(store, &keys, options, &mut report).await?;
            cursor = next;
            if options.dry_run {
                if cursor == 0 {
                    break;
                }
                continue;
            }
            let mut save = redis::cmd(if cursor == 0 { "DEL" } else { "SET" });
            save.arg(&checkpoint);
            if cursor != 0 {
                save.arg(cursor);
            }
            expect_ok(store.run_keyed(vec![(checkpoint.clone(), save)]).await)?;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(report)
}

async fn read_checkpoint<K: Keyspace>(store: &K, key: &str) -> Result<u64, StoreError> {
    let mut get = redis::cmd("GET");
    get.arg(key);
    match expect_ok(store.run_keyed(vec![(key.to_owned(), get)]).await)?
        .pop()
        .unwrap_or(Value::Nil)
    {
        Value::Nil => Ok(0),
        value => integer(&value)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| StoreError::Internal(format!("{key} holds no cursor"))),
    }
}

/// Every reply, or the first error that means the store is unreachable or broken as a whole.
fn expect_ok(replies: Vec<Result<Value, StoreError>>) -> Result<Vec<Value>, StoreError> {
    replies.into_iter().collect()
}

/// Copies the counters of one page of source keys; a watermark that moved under us (a
/// concurrent run) is read again, a few times.
async fn copy_page<K: Keyspace>(
    store: &K,
    source_keys: &[String],
    options: Options,
    report: &mut Report,
) -> Result<(), StoreError> {
    report.scanned += source_keys.len() as u64;
    let mut pending: Vec<(&str, CounterKey)> = Vec::with_capacity(source_keys.len());
    for source in source_keys {
        match KeyLayout::Highgopress.parse(source) {
            Some(key) => pending.push((source.as_str(), key)),
            None => report.skipped += 1,
        }
    }
    for _attempt in 0..5 {
        if pending.is_empty() {
            return Ok(());
        }
        // Source values and watermarks, each read in its own slot.
        let mut reads = Vec::with_capacity(pending.len() * 2);
        for (source, key) in &pending {
            let mut get = redis::cmd("GET");
            get.arg(*source);
            reads.push(((*source).to_owned(), get));
            let watermark = watermark_key(key);
            let mut get = redis::cmd("GET");
            get.arg(&watermark);
            reads.push((watermark, get));
        }
        let replies = store.run_keyed(reads).await;
        let mut copies = Vec::new();
        let mut copied_keys = Vec::new();
        for ((source, key), pair) in pending.iter().zip(replies.chunks(2)) {
            let (source_value, watermark) = match (&pair[0], &pair[1]) {
                (Ok(s), Ok(w)) => (s, w),
                (Err(e), _) | (_, Err(e)) if is_unavailable(e) => return Err(e.clone()),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(key = source, error = %e, "not copied");
                    report.failed += 1;
                    continue;
                }
            };
            // Gone since the scan (deleted by hand): nothing to copy, and never a negative.
            let Value::BulkString(_) = source_value else {
                report.unchanged += 1;
                continue;
            };
            let (Some(now), Some(copied)) = (
                integer(source_value),
                match watermark {
                    Value::Nil => Some(0),
                    w => integer(w),
                },
            ) else {
                tracing::warn!(key = source, "not copied: not an integer");
                report.failed += 1;
                continue;
            };
            let difference = i128::from(now) - i128::from(copied);
            let Ok(difference) = i64::try_from(difference) else {
                tracing::warn!(key = source, "not copied: the change does not fit 64 bits");
                report.failed += 1;
                continue;
            };
            if difference == 0 && !matches!(watermark, Value::Nil) {
                report.unchanged += 1;
                continue;
            }
            if options.dry_run {
                report.copied += 1;
                report.added += i128::from(difference);
                continue;
            }
            let destination = KeyLayout::Highpress.counter(key).into_owned();
            let watermark_text = match watermark {
                Value::Nil => String::new(),
                _ => copied.to_string(),
            };
            let mut eval = redis::cmd("EVAL");
            eval.arg(MIGRATE_COPY_SCRIPT)
                .arg(2)
                .arg(&destination)
                .arg(watermark_key(key))
                .arg(watermark_text)
                .arg(now)
                .arg(difference);
            copies.push((destination, eval));
            copied_keys.push((*source, key.clone(), difference));
        }
        let answers = store.run_keyed(copies).await;
        let mut retry = Vec::new();
        for ((source, key, difference), answer) in copied_keys.into_iter().zip(answers) {
            match answer {
                Ok(Value::Int(1)) => {
                    report.copied += 1;
                    report.added += i128::from(difference);
                }
                Ok(Value::Int(0)) => retry.push((source, key)),
                Err(e) if is_unavailable(&e) => return Err(e),
                other => {
                    tracing::warn!(key = source, answer = ?other, "not copied");
                    report.failed += 1;
                }
            }
        }
        pending = retry;
    }
    for (source, _) in &pending {
        tracing::warn!(
            key = source,
            "not copied: another run kept moving its watermark"
        );
        report.failed += 1;
    }
    Ok(())
}

fn is_unavailable(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_))
}

/// An integer reply, or an integer in a string reply.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(v) => Some(*v),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}
