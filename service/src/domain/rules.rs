//! Request validation and limits, shared by every front end (REST, and gRPC on the counters).
//! Each check names the field at fault in an [`InvalidField`]; nothing reaches the engine before
//! it passes.

use super::policy::CounterPolicies;

/// A request field that breaks a rule: the field (JSON field, path or query parameter, header)
/// and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: String,
    pub message: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for InvalidField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Most items in one gRPC `IncrementBatch` (and so in one gateway micro-batch).
pub const MAX_INCREMENT_BATCH: usize = 8192;

/// Most entries one leaderboard read returns (`limit`).
pub const MAX_LEADERBOARD_LIMIT: u64 = 100;

/// A leaderboard read's `limit`: 1 to [`MAX_LEADERBOARD_LIMIT`].
pub fn leaderboard_limit(field: &str, limit: u64) -> Result<usize, InvalidField> {
    if (1..=MAX_LEADERBOARD_LIMIT).contains(&limit) {
        Ok(limit as usize)
    } else {
        Err(InvalidField::new(
            field,
            format!("{field} must be an integer from 1 to {MAX_LEADERBOARD_LIMIT}"),
        ))
    }
}

/// The number of counters one batch read asks for: 1 to `limits.max_batch_queries`.
pub fn batch_queries(field: &str, len: usize, limits: &Limits) -> Result<(), InvalidField> {
    let max = limits.max_batch_queries;
    if len == 0 || len > max {
        return Err(InvalidField::new(
            field,
            format!("{field} must hold 1 to {max} items"),
        ));
    }
    Ok(())
}

/// The number of increments in one gRPC `IncrementBatch`: at most [`MAX_INCREMENT_BATCH`].
pub fn increment_batch(field: &str, len: usize) -> Result<(), InvalidField> {
    if len > MAX_INCREMENT_BATCH {
        return Err(InvalidField::new(
            field,
            format!("{field} must hold at most {MAX_INCREMENT_BATCH} items"),
        ));
    }
    Ok(())
}

/// The request header of idempotent retries (IETF httpapi idempotency-key draft).
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Limits that configuration can change.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_increment: i64,
    pub max_batch_queries: usize,
    pub max_body_bytes: usize,
    /// How long a client has to send a request's body once its headers are in.
    pub body_read_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_increment: 1_000_000,
            max_batch_queries: 1_000,
            max_body_bytes: 64 * 1024,
            body_read_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// The bytes a `resource_id` may hold, as a table: one load per byte on the request path.
const RESOURCE_ID_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'@' | b'/' | b'-');
        b += 1;
    }
    table
};

/// `resource_id`: 1–128 bytes of `[A-Za-z0-9_.:@/-]`.
pub fn resource_id(field: &str, value: &str) -> Result<(), InvalidField> {
    if value.is_empty() || value.len() > 128 {
        return Err(InvalidField::new(
            field,
            format!("{field} must be 1 to 128 bytes long"),
        ));
    }
    if !value.bytes().all(|b| RESOURCE_ID_BYTES[usize::from(b)]) {
        return Err(InvalidField::new(
            field,
            format!("{field} may contain only letters, digits and _ . : @ / -"),
        ));
    }
    Ok(())
}

/// `counter_type`: 1–64 bytes of `[a-z0-9_-]`.
pub fn counter_type(field: &str, value: &str) -> Result<(), InvalidField> {
    if value.is_empty() || value.len() > 64 {
        return Err(InvalidField::new(
            field,
            format!("{field} must be 1 to 64 bytes long"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(InvalidField::new(
            field,
            format!("{field} may contain only lowercase letters, digits, _ and -"),
        ));
    }
    Ok(())
}

/// `user_id`: optional, except for a unique-per-user counter type, which counts each user
/// once; when given, 1–128 bytes with no control characters.
pub fn user_id(
    counter_type: &str,
    value: Option<&str>,
    policies: &CounterPolicies,
) -> Result<(), InvalidField> {
    let Some(value) = value else {
        if policies.unique_per_user(counter_type) {
            return Err(InvalidField::new(
                "user_id",
                format!(
                    "user_id is required for counter type {counter_type}, which counts each user once"
                ),
            ));
        }
        return Ok(());
    };
    if value.is_empty() || value.len() > 128 {
        return Err(InvalidField::new(
            "user_id",
            "user_id must be 1 to 128 bytes long",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidField::new(
            "user_id",
            "user_id must not contain control characters",
        ));
    }
    Ok(())
}

/// `increment`: non-zero, within ±`max_increment` of its counter type (the type's own
/// `max_increment`, else `limits.max_increment`); exactly +1 or -1 for a unique-per-user type.
pub fn increment(
    counter_type: &str,
    value: i64,
    limits: &Limits,
    policies: &CounterPolicies,
) -> Result<(), InvalidField> {
    if value == 0 {
        return Err(InvalidField::new("increment", "increment must not be 0"));
    }
    if policies.unique_per_user(counter_type) {
        if value.abs() != 1 {
            return Err(InvalidField::new(
                "increment",
                format!(
                    "increment must be 1 or -1 for counter type {counter_type}, which counts each user once"
                ),
            ));
        }
        return Ok(());
    }
    let max = policies.max_increment(counter_type, limits.max_increment);
    if value.unsigned_abs() > max.unsigned_abs() {
        return Err(InvalidField::new(
            "increment",
            format!("increment must be within ±{max} for counter type {counter_type}"),
        ));
    }
    Ok(())
}

/// The `Idempotency-Key` header value: 1–255 visible ASCII characters, bare or as a quoted
/// structured-field string (`"…"`, as in the draft). Returns the key without quotes.
pub fn idempotency_key(raw: &[u8]) -> Result<&str, InvalidField> {
    let key = match raw {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    };
    let invalid = |why: &str| {
        InvalidField::new(
            IDEMPOTENCY_KEY_HEADER,
            format!("the {IDEMPOTENCY_KEY_HEADER} header {why}"),
        )
    };
    if key.is_empty() || key.len() > 255 {
        return Err(invalid("must be 1 to 255 characters long"));
    }
    if !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(invalid(
            "may contain only visible ASCII characters (no spaces or control characters)",
        ));
    }
    std::str::from_utf8(key).map_err(|_| invalid("is not ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids() {
        for ok in [
            "article_001",
            "a",
            "user@example.com/post:1.v2-x",
            &"x".repeat(128),
        ] {
            assert!(resource_id("resource_id", ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "ünï", "a?b", &"x".repeat(129)] {
            let e = resource_id("resource_id", bad).unwrap_err();
            assert_eq!(e.field, "resource_id", "{bad}");
        }
    }

    #[test]
    fn the_resource_id_table_is_the_documented_set() {
        for b in 0..=255u8 {
            let allowed =
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'/' | b'-');
            assert_eq!(RESOURCE_ID_BYTES[usize::from(b)], allowed, "byte {b}");
        }
    }

    #[test]
    fn counter_types() {
        for ok in ["like", "view_count", "a-1", &"z".repeat(64)] {
            assert!(counter_type("counter_type", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Like", "a:b", "a.b", &"z".repeat(65)] {
            assert!(counter_type("counter_type", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_ids_and_increments() {
        let p = CounterPolicies::default();
        let user = |v| user_id("like", v, &p);
        assert!(user(Some("user_123")).is_ok());
        assert!(user(Some("名前 with spaces")).is_ok());
        assert!(user(None).is_ok(), "optional, as in HighGoPress");
        assert!(user(Some("")).is_err());
        assert!(user(Some("a\nb")).is_err());
        assert!(user(Some(&"u".repeat(129))).is_err());
        let limits = Limits::default();
        assert!(increment("like", 1, &limits, &p).is_ok());
        assert!(increment("like", -1_000_000, &limits, &p).is_ok());
        assert!(increment("like", 0, &limits, &p).is_err());
        assert!(increment("like", 1_000_001, &limits, &p).is_err());
        assert!(increment("like", i64::MIN, &limits, &p).is_err());
    }

    #[test]
    fn a_unique_per_user_type_requires_a_user_id() {
        let mut types = std::collections::BTreeMap::new();
        types.insert(
            "follow".into(),
            crate::domain::policy::CounterTypePolicy {
                unique_per_user: true,
                max_increment: None,
            },
        );
        let p = CounterPolicies::new(&types);
        let e = user_id("follow", None, &p).unwrap_err();
        assert_eq!(e.field, "user_id");
        assert!(e.message.contains("follow"), "{}", e.message);
        assert!(user_id("follow", Some("u"), &p).is_ok());
        assert!(user_id("like", None, &p).is_ok());
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(idempotency_key(b"abc-123").unwrap(), "abc-123");
        assert_eq!(idempotency_key(b"\"8e03978e\"").unwrap(), "8e03978e");
        assert_eq!(idempotency_key(&[b'k'; 255]).unwrap().len(), 255);
        for bad in [
            &b""[..],
            b"\"\"",
            b"has space",
            b"tab\t",
            "ünï".as_bytes(),
            &[b'k'; 256],
        ] {
            let e = idempotency_key(bad).unwrap_err();
            assert_eq!(e.field, IDEMPOTENCY_KEY_HEADER, "{bad:?}");
        }
    }
}
