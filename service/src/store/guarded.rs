//! Guarded groups on Redis: the conditional increments of one counter in one flush run as one
//! Lua script, so the idempotency records, the uniqueness set and the count change together or
//! not at all, in the same pipeline (and round trip) as the flush's plain `INCRBY`s.
//!
//! The script touches only keys with the counter key as hash tag (the counter itself is the
//! tag), so on Redis Cluster every key of a group is in the counter's slot and the script is
//! legal there too.
//!
//! Values never pass through Lua numbers (doubles, exact only to 2^53): deltas go in as strings,
//! `INCRBY` does the arithmetic and its overflow check, and values come back from `GET` as
//! strings.
//!
//! Flushes send the guarded script by its SHA1 (`EVALSHA`), not its 1.5 kB body. A Redis that
//! does not know it yet (a restart, a failover, `SCRIPT FLUSH`) answers `NOSCRIPT` without
//! running anything, and the store resends just those groups as `EVAL`, which also caches
//! the script for the next flush. Resets are rare and send their short script as `EVAL`.

use std::sync::LazyLock;

use redis::{Cmd, Value};

use super::{CounterKey, GroupOutcome, GuardedGroup, GuardedOutcome};

/// KEYS[1] counter, KEYS[2] uniqueness set, KEYS[3..] idempotency records.
/// ARGV[1] record TTL in ms, then four per item: delta, user ('' unless unique per user),
/// index into KEYS of its record (0: none), fingerprint.
/// Returns the counter's value after the group, then one answer per item:
/// `a|r <counted 0/1> <value>` (applied, replayed), `x` (key reused), `o` (overflow),
/// `e <message>`. A record holds `<fingerprint> <counted> <value>`.
pub const GUARDED_SCRIPT: &str = r#"
local ck, uk, ttl = KEYS[1], KEYS[2], ARGV[1]
local out = {false}
local n = (#ARGV - 1) / 4
for i = 0, n - 1 do
  local delta, user = ARGV[2 + i * 4], ARGV[3 + i * 4]
  local rec, fp = tonumber(ARGV[4 + i * 4]), ARGV[5 + i * 4]
  local answer = nil
  local seen = false
  if rec > 0 then seen = redis.call('GET', KEYS[rec]) end
  if seen then
    local sfp, counted, value = string.match(seen, '^(%S+) ([01]) (%-?%d+)$')
    if sfp == fp then answer = 'r ' .. counted .. ' ' .. value else answer = 'x' end
  else
    local counted = 1
    if user ~= '' then
      if delta == '1' then counted = redis.call('SADD', uk, user)
      else counted = redis.call('SREM', uk, user) end
    end
    if counted == 1 then
      local r = redis.pcall('INCRBY', ck, delta)
      if type(r) == 'table' and r.err then
        if user ~= '' then
          if delta == '1' then redis.call('SREM', uk, user) else redis.call('SADD', uk, user) end
        end
        if string.find(r.err, 'overflow', 1, true) then answer = 'o' else answer = 'e ' .. r.err end
      end
    end
    if not answer then
      local value = redis.call('GET', ck) or '0'
      answer = 'a ' .. counted .. ' ' .. value
      if rec > 0 then
        redis.call('SET', KEYS[rec], fp .. ' ' .. counted .. ' ' .. value, 'PX', ttl)
      end
    end
  end
  out[#out + 1] = answer
end
out[1] = redis.call('GET', ck) or '0'
return out
"#;

/// KEYS[1] counter, KEYS[2] uniqueness set. Returns the counter's value before the reset.
pub const RESET_SCRIPT: &str = r#"
local before = redis.call('GET', KEYS[1]) or '0'
redis.call('DEL', KEYS[1], KEYS[2])
return before
"#;

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

/// The `EVALSHA` (or `EVAL`) of one guarded group.
pub fn guarded_command(group: &GuardedGroup<'_>, ttl_ms: u64, by: ScriptBy) -> Cmd {
    let records = group.items.iter().filter(|i| i.record.is_some()).count();
    let mut cmd = match by {
        ScriptBy::Hash => redis::cmd("EVALSHA"),
        ScriptBy::Body => redis::cmd("EVAL"),
    };
    match by {
        ScriptBy::Hash => cmd.arg(GUARDED_SCRIPT_SHA.as_str()),
        ScriptBy::Body => cmd.arg(GUARDED_SCRIPT),
    };
    cmd.arg(2 + records)
        .arg(group.key.as_str())
        .arg(group.key.uniqueness_set_key());
    for item in &group.items {
        if let Some(record) = item.record {
            cmd.arg(group.key.idempotency_record_key(record.key));
        }
    }
    cmd.arg(ttl_ms.max(1));
    let mut next_record = 3;
    for item in &group.items {
        cmd.arg(item.delta).arg(item.unique_user.unwrap_or(""));
        match item.record {
            Some(record) => {
                cmd.arg(next_record).arg(record.fingerprint);
                next_record += 1;
            }
            None => {
                cmd.arg(0).arg("");
            }
        }
    }
    cmd
}

/// The `EVAL` of one reset.
pub fn reset_command(key: &CounterKey) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(RESET_SCRIPT)
        .arg(2)
        .arg(key.as_str())
        .arg(key.uniqueness_set_key());
    cmd
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// Reads the script's answer for a group of `items` items.
pub fn parse_group(reply: &Value, items: usize) -> GroupOutcome {
    let Value::Array(parts) = reply else {
        return GroupOutcome::Failed(format!("unexpected script reply {reply:?}"));
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
