//! How values are written in the configuration: durations (`_ms` keys in milliseconds, the
//! other duration keys as `30s`, `500ms`, `2m`, `24h`, `7d` or milliseconds), lists (a YAML list
//! or comma-separated), and `host:port` addresses. Inside, every duration is a `Duration`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// A `Duration` written as a whole number of milliseconds (the `_ms` keys).
pub mod millis {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A `Duration` written as `30s`, `500ms`, `2m`, `24h`, `7d`, or a number of milliseconds.
pub mod human {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(t) => parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{t:?} is not a duration like 30s, 500ms, 2m or 24h"
                ))
            }),
        }
    }

    /// `30s`, `500ms`, `2m`, `24h`, `7d` or a number of milliseconds, spaces trimmed; `None`
    /// for anything else or on overflow.
    pub fn parse(s: &str) -> Option<Duration> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().ok()?;
        match unit.trim() {
            "" | "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
            "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
            "d" => Some(Duration::from_secs(n.checked_mul(86_400)?)),
            _ => None,
        }
    }
}

/// A list written as a YAML list or as one comma-separated string (as environment variables are).
pub fn list_or_comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// `host:port` with a non-empty host and a numeric port.
pub fn is_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}
