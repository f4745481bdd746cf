//! Key encoding. A [`CounterKey`] is a counter's identity, `c:{counter_type}:{resource_id}`,
//! which routing, the read cache and idempotency fingerprints use. Where the counter lives in
//! Redis is the [`KeyLayout`]'s choice: at its identity (highpress's layout), or at
//! HighGoPress's `counter:{resource_id}:{counter_type}`. Because `counter_type` never contains
//! `:`, both encodings are unambiguous. A counter's uniqueness set and idempotency records carry
//! its Redis key as their hash tag, so on Redis Cluster they share its slot in either layout.
//! Leaderboards live at `lb:{counter_type}:{bucket}`, one sorted set per UTC calendar bucket.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// The storage key of one counter, built only from validated parts. Cloning it is cheap (a
/// reference count): a flush hands the same key to the read cache and the leaderboards.
#[derive(Clone, Eq)]
pub struct CounterKey {
    encoded: Arc<str>,
    type_len: u8,
}

impl CounterKey {
    /// Builds the key. Callers pass validated parts: `counter_type` is `[a-z0-9_-]{1,64}`.
    pub fn new(counter_type: &str, resource_id: &str) -> Self {
        debug_assert!(!counter_type.contains(':') && counter_type.len() <= 64);
        let parts = [counter_type.as_bytes(), b":", resource_id.as_bytes()];
        let len = 2 + parts.iter().map(|p| p.len()).sum::<usize>();
        // Built on the stack when it fits (validated keys always do), so the key costs one
        // allocation, the Arc's.
        let mut stack = [0u8; 256];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap
        };
        buf[..2].copy_from_slice(b"c:");
        let mut at = 2;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let encoded = std::str::from_utf8(buf).expect("joined from strs");
        Self {
            encoded: Arc::from(encoded),
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
}

/// Where counters live in Redis (`store.key_layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyLayout {
    /// `c:{counter_type}:{resource_id}`, the counter's identity.
    #[default]
    Highpress,
    /// `counter:{resource_id}:{counter_type}`, as HighGoPress kept them: highpress then takes
    /// over a HighGoPress Redis as it is, or shares it with HighGoPress during a cut-over.
    Highgopress,
}

/// The prefix of every counter key in the [`KeyLayout::Highgopress`] layout.
pub const HIGHGOPRESS_PREFIX: &str = "counter:";

impl KeyLayout {
    /// The Redis key holding `key`'s value.
    pub fn counter(self, key: &CounterKey) -> Cow<'_, str> {
        match self {
            Self::Highpress => Cow::Borrowed(key.as_str()),
            Self::Highgopress => Cow::Owned(format!(
                "{HIGHGOPRESS_PREFIX}{}:{}",
                key.resource_id(),
                key.counter_type()
            )),
        }
    }

    /// The set of users counted by a unique-per-user counter: `u:{<counter's Redis key>}`. The
    /// hash tag is the whole counter key (which holds no braces), so on Redis Cluster the set
    /// lives in the counter's slot.
    pub fn uniqueness_set(self, key: &CounterKey) -> String {
        format!("u:{{{}}}", self.counter(key))
    }

    /// The idempotency record of key `idempotency_key` on this counter:
    /// `i:{<counter's Redis key>}:KEY`, in the counter's slot. Neither prefix can collide with a
    /// counter key (`c:` or `counter:`).
    pub fn idempotency_record(self, key: &CounterKey, idempotency_key: &str) -> String {
        format!("i:{{{}}}:{idempotency_key}", self.counter(key))
    }

    /// The counter stored at `redis_key` in this layout, or `None` when `redis_key` is not a
    /// counter key of this layout with a valid `counter_type` and `resource_id`.
    pub fn parse(self, redis_key: &str) -> Option<CounterKey> {
        let (counter_type, resource_id) = match self {
            Self::Highpress => redis_key.strip_prefix("c:")?.split_once(':')?,
            Self::Highgopress => {
                let (resource_id, counter_type) = redis_key
                    .strip_prefix(HIGHGOPRESS_PREFIX)?
                    .rsplit_once(':')?;
                (counter_type, resource_id)
            }
        };
        let valid = super::rules::counter_type("counter_type", counter_type).is_ok()
            && super::rules::resource_id("resource_id", resource_id).is_ok();
        valid.then(|| CounterKey::new(counter_type, resource_id))
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
    fn layouts_parse_their_own_keys_only() {
        let k = CounterKey::new("like", "a:b");
        assert_eq!(
            KeyLayout::Highgopress.parse("counter:a:b:like"),
            Some(k.clone())
        );
        assert_eq!(KeyLayout::Highpress.parse("c:like:a:b"), Some(k));
        for not_a_counter in [
            "counter:nocolon",
            "counter::like",
            "counter:a:Like",
            "c:like",
            "x",
        ] {
            assert_eq!(
                KeyLayout::Highgopress.parse(not_a_counter),
                None,
                "{not_a_counter}"
            );
        }
        assert_eq!(KeyLayout::Highpress.parse("counter:a:like"), None);
    }

    #[test]
    fn resource_ids_with_colons_do_not_collide() {
        // The original allowed `:` in a counter type, so `counter:{id}:{type}` mapped
        // ("a", "b:like") and ("a:b", "like") to one key; a highpress counter type has no `:`.
        let a = CounterKey::new("like", "a:view");
        let b = CounterKey::new("view", "a:like");
        assert_ne!(a, b);
        assert_eq!(a.resource_id(), "a:view");
        assert_eq!(b.counter_type(), "view");
        for layout in [KeyLayout::Highpress, KeyLayout::Highgopress] {
            assert_ne!(layout.counter(&a), layout.counter(&b));
        }
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
            for layout in [KeyLayout::Highpress, KeyLayout::Highgopress] {
                prop_assert_eq!(layout.parse(&layout.counter(&k)), Some(k.clone()));
            }
        }

        #[test]
        fn distinct_parts_give_distinct_keys(
            t1 in "[a-z0-9_-]{1,8}", r1 in "[a-z:]{1,8}", t2 in "[a-z0-9_-]{1,8}", r2 in "[a-z:]{1,8}"
        ) {
            let same = t1 == t2 && r1 == r2;
            let (a, b) = (CounterKey::new(&t1, &r1), CounterKey::new(&t2, &r2));
            prop_assert_eq!(a == b, same);
            for layout in [KeyLayout::Highpress, KeyLayout::Highgopress] {
                prop_assert_eq!(layout.counter(&a) == layout.counter(&b), same);
            }
        }
    }
}
