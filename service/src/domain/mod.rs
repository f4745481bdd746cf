//! The domain: what a counter is and the rules a request must pass, shared by every layer and
//! depending on none of them. [`keys`] (a counter's identity, its Redis layouts, leaderboard
//! periods and buckets), [`rules`] (field validation and limits, failing with
//! [`rules::InvalidField`], which each edge maps to its own error: a REST 400, a gRPC
//! `INVALID_ARGUMENT`), and [`policy`] (per-counter-type policies and idempotency fingerprints).

pub mod keys;
pub mod policy;
pub mod rules;

pub use keys::{CounterKey, KeyLayout, LeaderboardBucket, Period, current_hour};

/// One ranked entry of a leaderboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedEntry {
    pub resource_id: String,
    pub count: i64,
}
