//! Per-counter-type policies (`counter_types.<name>` in config) and idempotency fingerprints:
//! what the engine and the validators need to know about a counter type and a keyed request.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CounterKey;

/// The policy of one counter type (`counter_types.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CounterTypePolicy {
    /// Each user counts at most once per counter: `+1` counts only if the user had not
    /// counted, `-1` only if they had; any other increment is rejected.
    pub unique_per_user: bool,
    /// Largest absolute increment for this type; overrides `limits.max_increment`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_increment: Option<u64>,
}

/// The configured policies, by counter type. Types without an entry have the default policy.
#[derive(Debug, Clone, Default)]
pub struct CounterPolicies {
    types: HashMap<String, CounterTypePolicy>,
}

impl CounterPolicies {
    /// The policies of `counter_types` (the config's `counter_types` section).
    pub fn new(counter_types: &BTreeMap<String, CounterTypePolicy>) -> Self {
        Self {
            types: counter_types
                .iter()
                .map(|(name, policy)| (name.clone(), *policy))
                .collect(),
        }
    }

    /// Whether each user counts at most once per counter of `counter_type`.
    pub fn unique_per_user(&self, counter_type: &str) -> bool {
        self.types
            .get(counter_type)
            .is_some_and(|p| p.unique_per_user)
    }

    /// The largest absolute increment of `counter_type`, given the global limit.
    pub fn max_increment(&self, counter_type: &str, global: i64) -> i64 {
        match self.types.get(counter_type) {
            Some(p) if p.unique_per_user => 1,
            Some(CounterTypePolicy {
                max_increment: Some(max),
                ..
            }) => i64::try_from(*max).unwrap_or(i64::MAX),
            _ => global,
        }
    }
}

/// The fingerprint of an increment request, recorded with its idempotency key: 128 bits of
/// SHA-256 over the request's meaning (counter, user, increment) as 32 lowercase hex digits.
/// `delta` and `increment` are one field, and unknown JSON fields are ignored, so neither
/// changes the fingerprint. No user hashes as the empty string, which no given `user_id` is.
pub fn fingerprint(key: &CounterKey, user_id: Option<&str>, delta: i64) -> String {
    let user_id = user_id.unwrap_or_default();
    let mut hash = Sha256::new();
    hash.update(b"highpress.increment.v1\0");
    hash.update(key.as_str().as_bytes());
    hash.update([0]);
    hash.update(user_id.as_bytes());
    hash.update([0]);
    hash.update(delta.to_be_bytes());
    let digest = hash.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_by_any_field_and_have_no_spaces() {
        let k = CounterKey::new("like", "a");
        let base = fingerprint(&k, Some("u"), 1);
        assert_eq!(base.len(), 32);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(base, fingerprint(&k, Some("u"), 1));
        assert_ne!(base, fingerprint(&k, Some("u"), 2));
        assert_ne!(base, fingerprint(&k, Some("v"), 1));
        assert_ne!(base, fingerprint(&k, None, 1));
        assert_ne!(
            base,
            fingerprint(&CounterKey::new("like", "b"), Some("u"), 1)
        );
    }

    #[test]
    fn unique_types_accept_only_one_and_others_use_their_override() {
        let mut types = BTreeMap::new();
        types.insert(
            "like".into(),
            CounterTypePolicy {
                unique_per_user: true,
                max_increment: None,
            },
        );
        types.insert(
            "view".into(),
            CounterTypePolicy {
                unique_per_user: false,
                max_increment: Some(10),
            },
        );
        let p = CounterPolicies::new(&types);
        assert!(p.unique_per_user("like"));
        assert!(!p.unique_per_user("view"));
        assert_eq!(p.max_increment("like", 1_000), 1);
        assert_eq!(p.max_increment("view", 1_000), 10);
        assert_eq!(p.max_increment("share", 1_000), 1_000);
    }
}
