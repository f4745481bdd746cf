//! The Lua scripts highpress runs on Redis (`*.lua` beside this file), the commands that call
//! them and the parsers of their answers: guarded groups, resets, leaderboard writes and the key
//! migration's copy.
//!
//! Guarded groups: the conditional increments of one counter in one flush run inside one Lua
//! script, so the idempotency records, the uniqueness set and the count change together
//! or not at all, in the same pipeline (and round trip) as the flush's plain `INCRBY`s.
//!
//! One script call carries many groups, so on a single Redis the fixed cost of a call (the Lua
//! call, its `KEYS` and `ARGV`) is paid once per [`GROUPS_PER_SCRIPT`] groups, not per
//! counter. Every command inside runs under `redis.pcall`, so a fault in one item (a key of the
//! wrong type, say) answers that item and leaves the rest of the call alone. On Redis Cluster a
//! script may touch one slot only, so each group has a call of its own: its keys all carry the counter key as hash tag (the counter
//! itself is the tag), so they share the counter's slot.
//!
//! Values never pass through Lua numbers beyond their exact range (doubles, exact only to
//! 2^53): deltas go in as strings and `INCRBY` does the arithmetic and its overflow check. A
//! value `INCRBY` answers within ±2^53 is formatted as an integer; a larger one is read back
//! with `GET`, as a string. So a unique like costs two commands in the script, `SADD` and
//! `INCRBY`.
//!
//! Flushes send the guarded script by its SHA1 (`EVALSHA`), not its 2.5 kB body. A Redis that
//! does not know it yet (a restart, a failover, `SCRIPT FLUSH`) answers `NOSCRIPT` without
//! running anything, and the store resends just those calls as `EVAL`, which also caches the
//! script for the next flush. Resets are rare and send their short script as `EVAL`; so do
//! leaderboard writes, one per ranking per flush interval.

use std::sync::LazyLock;

use redis::{Cmd, Value};

use crate::store::{
    BoardWrite, CounterKey, GroupOutcome, GuardedGroup, GuardedOutcome, KeyLayout, StoreError,
};

/// Groups per script call on a single Redis: bounds how long one call holds Redis (a few
/// hundred microseconds) while amortizing the call's own cost.
pub const GROUPS_PER_SCRIPT: usize = 128;

/// KEYS: per group, its counter, its uniqueness set, then its idempotency records.
/// ARGV[1] record TTL in ms; then per group: its item count, its record count, and four per
/// item: delta, user ('' unless unique per user), index of its record among the group's
/// records (0: none), fingerprint.
/// Returns one array per group: the counter's value after the group ('' if the counter key
/// holds no integer), then one answer per item: `a|r <counted 0/1> <value>` (applied,
/// replayed), `x` (key reused), `o` (overflow), `e <message>`. A record holds
/// `<fingerprint> <counted> <value>`.
pub const GUARDED_SCRIPT: &str = include_str!("guarded.lua");

/// KEYS[1] counter, KEYS[2] uniqueness set. Returns the counter's value before the reset.
pub const RESET_SCRIPT: &str = include_str!("reset.lua");

/// The script that adds one counter's change since the last run (`highpress migrate-keys`; its contract is in `migrate.rs`).
///
/// KEYS[1] the destination counter, KEYS[2] its watermark. ARGV[1] the watermark as read (`''`
/// when there was none), ARGV[2] the source value now, ARGV[3] their difference. Answers 1 when
/// applied, 0 when the watermark moved since it was read (another run got there first). An
/// overflowing `INCRBY` fails the script before anything is written.
pub const MIGRATE_COPY_SCRIPT: &str = include_str!("migrate_copy.lua");

/// The events outbox (`outbox.rs`): append one flush's events to a partition, trim what was
/// relayed, take or keep a partition's lease. They go as `EVAL` (a few partitions per flush),
/// without their comment lines, so each call carries about 200 bytes of script.
pub static OUTBOX_APPEND_SCRIPT: LazyLock<String> =
    LazyLock::new(|| without_comments(include_str!("outbox_append.lua")));
pub static OUTBOX_TRIM_SCRIPT: LazyLock<String> =
    LazyLock::new(|| without_comments(include_str!("outbox_trim.lua")));
pub static OUTBOX_LEASE_SCRIPT: LazyLock<String> =
    LazyLock::new(|| without_comments(include_str!("outbox_lease.lua")));

fn without_comments(script: &str) -> String {
    script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One ranking's write ([`BoardWrite`]): `ZADD GT` the raised scores, `ZADD XX` the lowered
/// ones, trim to K (at most [`TRIM_STEP`] members per call), set the TTL, answer the K-th score.
pub const BOARD_SCRIPT: &str = include_str!("board.lua");

/// Most members one board write trims: a ranking left larger by a version without top-K
/// shrinks over a few flushes instead of blocking Redis for one long `ZREMRANGEBYRANK`.
const TRIM_STEP: usize = 10_000;

/// The SHA1 by which `EVALSHA` names [`GUARDED_SCRIPT`].
static GUARDED_SCRIPT_SHA: LazyLock<String> =
    LazyLock::new(|| redis::Script::new(GUARDED_SCRIPT).get_hash().to_owned());

/// How a guarded group's command carries the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptBy {
    /// `EVALSHA <sha1>`: the usual way, a few bytes per group.
    Hash,
    /// `EVAL <body>`: the resend after a `NOSCRIPT` answer.
    Body,
}

/// Whether a Redis error code says that `EVALSHA` named a script the server does not have (and
/// so ran nothing).
pub fn is_noscript(code: Option<&str>) -> bool {
    code == Some("NOSCRIPT")
}

/// The `EVALSHA` (or `EVAL`) of some guarded groups, their keys in `layout`, answered by
/// [`parse_groups`].
pub fn guarded_command(
    groups: &[GuardedGroup<'_>],
    layout: KeyLayout,
    ttl_ms: u64,
    by: ScriptBy,
) -> Cmd {
    let mut cmd = match by {
        ScriptBy::Hash => redis::cmd("EVALSHA"),
        ScriptBy::Body => redis::cmd("EVAL"),
    };
    match by {
        ScriptBy::Hash => cmd.arg(GUARDED_SCRIPT_SHA.as_str()),
        ScriptBy::Body => cmd.arg(GUARDED_SCRIPT),
    };
    let records = |group: &GuardedGroup<'_>| {
        group
            .items
            .iter()
            .filter(|i| i.conditions.record().is_some())
            .count()
    };
    cmd.arg(groups.iter().map(|g| 2 + records(g)).sum::<usize>());
    for group in groups {
        cmd.arg(&*layout.counter(group.key))
            .arg(layout.uniqueness_set(group.key));
        for item in &group.items {
            if let Some(record) = item.conditions.record() {
                cmd.arg(layout.idempotency_record(group.key, &record.key));
            }
        }
    }
    cmd.arg(ttl_ms.max(1));
    for group in groups {
        cmd.arg(group.items.len()).arg(records(group));
        let mut next_record = 1;
        for item in &group.items {
            cmd.arg(item.delta)
                .arg(item.conditions.unique_user().unwrap_or(""));
            match item.conditions.record() {
                Some(record) => {
                    cmd.arg(next_record).arg(&*record.fingerprint);
                    next_record += 1;
                }
                None => {
                    cmd.arg(0).arg("");
                }
            }
        }
    }
    cmd
}

/// The `EVAL` of one reset, its keys in `layout`.
pub fn reset_command(key: &CounterKey, layout: KeyLayout) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(RESET_SCRIPT)
        .arg(2)
        .arg(&*layout.counter(key))
        .arg(layout.uniqueness_set(key));
    cmd
}

/// The `EVAL` of one ranking's write, answered by [`parse_kth`]. Leaderboard writes run once
/// per ranking per flush interval, so the body travels each time (no `NOSCRIPT` to handle).
pub fn board_command(write: &BoardWrite) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(BOARD_SCRIPT)
        .arg(1)
        .arg(write.bucket.as_str())
        .arg(write.keep.max(1))
        .arg(TRIM_STEP)
        .arg(write.bucket.period.retention().map_or(0, |r| r.as_secs()))
        .arg(write.raised.len());
    for (key, score) in write.raised.iter().chain(&write.lowered) {
        cmd.arg(*score).arg(key.resource_id());
    }
    cmd
}

/// A board write's answer: the K-th score, or nil while the ranking holds fewer.
pub fn parse_kth(reply: &Value) -> Result<Option<i64>, StoreError> {
    match reply {
        Value::Nil => Ok(None),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|score| Some(score.round() as i64))
            .ok_or_else(|| StoreError::Internal("unexpected leaderboard score".into())),
        Value::ServerError(e) => Err(StoreError::Internal(format!("{e:?}"))),
        other => Err(StoreError::Internal(format!(
            "unexpected leaderboard reply {other:?}"
        ))),
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// Reads the script's answer for `groups`, one outcome per group. A reply that is not one
/// array per group fails them all.
pub fn parse_groups(reply: &Value, groups: &[GuardedGroup<'_>]) -> Vec<GroupOutcome> {
    match reply {
        Value::Array(parts) if parts.len() == groups.len() => parts
            .iter()
            .zip(groups)
            .map(|(part, group)| parse_group(part, group.items.len()))
            .collect(),
        other => {
            let failure = format!("unexpected script reply {other:?}");
            groups
                .iter()
                .map(|_| GroupOutcome::Failed(failure.clone()))
                .collect()
        }
    }
}

/// Reads one group's array: its counter's value, then one answer per item.
fn parse_group(reply: &Value, items: usize) -> GroupOutcome {
    let Value::Array(parts) = reply else {
        return GroupOutcome::Failed(format!("unexpected group reply {reply:?}"));
    };
    if parts.len() != items + 1 {
        return GroupOutcome::Failed(format!(
            "script answered {} parts for {items} items",
            parts.len()
        ));
    }
    let Some(total) = text(&parts[0]).and_then(|t| t.parse().ok()) else {
        return GroupOutcome::Failed("a counter key holds a non-integer".into());
    };
    let items = parts[1..]
        .iter()
        .map(|p| parse_item(text(p).unwrap_or("")))
        .collect();
    GroupOutcome::Done { total, items }
}

fn parse_item(answer: &str) -> GuardedOutcome {
    let mut parts = answer.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(kind @ ("a" | "r")), Some(counted), Some(value)) => {
            let (Ok(value), counted) = (value.parse::<i64>(), counted == "1") else {
                return GuardedOutcome::Failed(format!("unparsable answer {answer:?}"));
            };
            if kind == "a" {
                GuardedOutcome::Applied { value, counted }
            } else {
                GuardedOutcome::Replayed { value, counted }
            }
        }
        (Some("x"), None, None) => GuardedOutcome::KeyReused,
        (Some("o"), None, None) => GuardedOutcome::Overflow,
        (Some("e"), ..) => GuardedOutcome::Failed(answer[1..].trim().to_string()),
        _ => GuardedOutcome::Failed(format!("unparsable answer {answer:?}")),
    }
}

/// Reads the reset script's answer.
pub fn parse_reset(reply: &Value) -> Option<i64> {
    text(reply).and_then(|t| t.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_exactly_beyond_two_to_the_53() {
        let reply = Value::Array(vec![
            Value::BulkString(b"9223372036854775807".to_vec()),
            Value::BulkString(b"a 1 9223372036854775807".to_vec()),
            Value::BulkString(b"r 0 -9007199254740993".to_vec()),
            Value::BulkString(b"x".to_vec()),
            Value::BulkString(b"o".to_vec()),
        ]);
        assert_eq!(
            parse_group(&reply, 4),
            GroupOutcome::Done {
                total: i64::MAX,
                items: vec![
                    GuardedOutcome::Applied {
                        value: i64::MAX,
                        counted: true
                    },
                    GuardedOutcome::Replayed {
                        value: -9_007_199_254_740_993,
                        counted: false
                    },
                    GuardedOutcome::KeyReused,
                    GuardedOutcome::Overflow,
                ]
            }
        );
        assert!(matches!(parse_group(&reply, 3), GroupOutcome::Failed(_)));
    }
}
