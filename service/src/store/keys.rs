//! Key encoding. A counter lives at `c:{counter_type}:{resource_id}`; because `counter_type`
//! never contains `:`, the encoding is unambiguous (the original's `counter:{id}:{type}` was not).
//! Leaderboards live at `lb:{counter_type}:{bucket}`, one sorted set per UTC calendar bucket.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use time::OffsetDateTime;

/// The storage key of one counter, built only from validated parts.
#[derive(Clone, Eq)]
pub struct CounterKey {
    encoded: Box<str>,
    type_len: u8,
}

impl CounterKey {
    /// Builds the key. Callers pass validated parts: `counter_type` is `[a-z0-9_-]{1,64}`.
    pub fn new(counter_type: &str, resource_id: &str) -> Self {
        debug_assert!(!counter_type.contains(':') && counter_type.len() <= 64);
        let mut s = String::with_capacity(3 + counter_type.len() + resource_id.len());
        s.push_str("c:");
        s.push_str(counter_type);
        s.push(':');
        s.push_str(resource_id);
        Self {
            encoded: s.into_boxed_str(),
            type_len: counter_type.len() as u8,
        }
    }

    /// The Redis key.
    pub fn as_str(&self) -> &str {
        &self.encoded
    }

    pub fn counter_type(&self) -> &str {
        &self.encoded[2..2 + self.type_len as usize]
    }

    pub fn resource_id(&self) -> &str {
        &self.encoded[3 + self.type_len as usize..]
    }

    /// The set of users counted by a unique-per-user counter: `u:{c:type:id}`. The hash tag
    /// is the whole counter key, so on Redis Cluster it lives in the counter's slot.
    pub fn uniqueness_set_key(&self) -> String {
        format!("u:{{{}}}", self.encoded)
    }

    /// The idempotency record of key `idempotency_key` on this counter: `i:{c:type:id}:KEY`,
    /// in the counter's slot. Neither prefix can collide with a counter key (`c:`).
    pub fn idempotency_record_key(&self, idempotency_key: &str) -> String {
        format!("i:{{{}}}:{idempotency_key}", self.encoded)
    }
}

impl PartialEq for CounterKey {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl Hash for CounterKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.encoded.hash(state);
    }
}

impl fmt::Debug for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encoded)
    }
}

/// A leaderboard period, as in `?period=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Hour,
    Day,
    Week,
    All,
}

impl Period {
    pub const ALL: [Period; 4] = [Period::Hour, Period::Day, Period::Week, Period::All];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::All => "all",
        }
    }

    /// How long a bucket's sorted set is kept after its last write. Only the current bucket
    /// is ever read, so this just has to outlive the bucket.
    pub fn retention(self) -> Option<Duration> {
        match self {
            Self::Hour => Some(Duration::from_secs(2 * 3600)),
            Self::Day => Some(Duration::from_secs(2 * 86_400)),
            Self::Week => Some(Duration::from_secs(8 * 86_400)),
            Self::All => None,
        }
    }
}

/// One ranking's sorted set: a counter type and a calendar bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaderboardBucket {
    pub period: Period,
    key: String,
}

impl LeaderboardBucket {
    /// The bucket of `period` that contains the UTC hour `hour` (hours since the epoch).
    pub fn containing(counter_type: &str, period: Period, hour: i64) -> Self {
        let t =
            OffsetDateTime::from_unix_timestamp(hour * 3600).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let (y, m, d, h) = (t.year(), t.month() as u8, t.day(), t.hour());
        let suffix = match period {
            Period::Hour => format!("hour:{y:04}{m:02}{d:02}{h:02}"),
            Period::Day => format!("day:{y:04}{m:02}{d:02}"),
            Period::Week => {
                let (wy, w, _) = t.to_iso_week_date();
                format!("week:{wy:04}W{w:02}")
            }
            Period::All => "all".to_string(),
        };
        Self {
            period,
            key: format!("lb:{counter_type}:{suffix}"),
        }
    }

    /// The current bucket of `period`.
    pub fn current(counter_type: &str, period: Period) -> Self {
        Self::containing(counter_type, period, current_hour())
    }

    /// The sorted set's key.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

/// The current UTC hour, in hours since the epoch.
pub fn current_hour() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp().div_euclid(3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counter_key_layout_is_type_then_resource() {
        let k = CounterKey::new("like", "article_001");
        assert_eq!(k.as_str(), "c:like:article_001");
        assert_eq!(k.counter_type(), "like");
        assert_eq!(k.resource_id(), "article_001");
    }

    #[test]
    fn side_keys_share_the_counters_cluster_slot() {
        use crate::store::redis_cluster::key_slot;
        let k = CounterKey::new("like", "post:7/a@b");
        assert_eq!(k.uniqueness_set_key(), "u:{c:like:post:7/a@b}");
        assert_eq!(
            k.idempotency_record_key("k{1}"),
            "i:{c:like:post:7/a@b}:k{1}"
        );
        let slot = key_slot(k.as_str());
        assert_eq!(key_slot(&k.uniqueness_set_key()), slot);
        assert_eq!(key_slot(&k.idempotency_record_key("k{1}")), slot);
    }

    #[test]
    fn resource_ids_with_colons_do_not_collide() {
        // The original's `counter:{id}:{type}` mapped both of these to one key.
        let a = CounterKey::new("like", "a:view");
        let b = CounterKey::new("view", "a:like");
        assert_ne!(a, b);
        assert_eq!(a.resource_id(), "a:view");
        assert_eq!(b.counter_type(), "view");
    }

    #[test]
    fn buckets_follow_utc_calendar_and_iso_weeks() {
        // 2027-01-01 is a Friday in ISO week 2026-W53.
        let hour = OffsetDateTime::parse(
            "2027-01-01T05:30:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp()
            / 3600;
        let b = |p| {
            LeaderboardBucket::containing("like", p, hour)
                .as_str()
                .to_string()
        };
        assert_eq!(b(Period::Hour), "lb:like:hour:2027010105");
        assert_eq!(b(Period::Day), "lb:like:day:20270101");
        assert_eq!(b(Period::Week), "lb:like:week:2026W53");
        assert_eq!(b(Period::All), "lb:like:all");
    }

    proptest! {
        #[test]
        fn key_encoding_round_trips(t in "[a-z0-9_-]{1,64}", r in "[A-Za-z0-9_.:@/-]{1,128}") {
            let k = CounterKey::new(&t, &r);
            prop_assert_eq!(k.counter_type(), t.as_str());
            prop_assert_eq!(k.resource_id(), r.as_str());
            prop_assert_eq!(k.as_str(), format!("c:{t}:{r}"));
        }

        #[test]
        fn distinct_parts_give_distinct_keys(
            t1 in "[a-z0-9_-]{1,8}", r1 in "[a-z:]{1,8}", t2 in "[a-z0-9_-]{1,8}", r2 in "[a-z:]{1,8}"
        ) {
            let same = t1 == t2 && r1 == r2;
            prop_assert_eq!(CounterKey::new(&t1, &r1) == CounterKey::new(&t2, &r2), same);
        }
    }
}
