//! The gateway-to-counter gRPC API (`highpress.counter.v1`): generated types, the mappings that
//! both sides share (between [`CounterError`] and gRPC status codes, and of [`Period`]), and the
//! counter-side service.

pub mod observe;
pub mod server;

use tonic::{Code, Status};

use crate::counter::CounterError;
use crate::domain::Period;
use crate::domain::rules::InvalidField;

/// Call metadata naming the REST caller (its API token's name) on whose behalf a gateway
/// calls a counter; the counter records it on its span. Only the gateway can set it: with
/// mTLS on the hop, counters accept no other client.
pub const CALLER_METADATA: &str = "x-highpress-caller";

/// Generated protobuf and tonic code.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("highpress.counter.v1");
}

/// The status a counter answers for an engine error.
pub fn status_from_counter(e: &CounterError) -> Status {
    match e {
        CounterError::Overflow => Status::out_of_range(e.to_string()),
        CounterError::Overloaded => Status::resource_exhausted(e.to_string()),
        CounterError::Unavailable | CounterError::ShuttingDown => {
            Status::unavailable(e.to_string())
        }
        CounterError::LeaderboardsDisabled => Status::not_found(e.to_string()),
        CounterError::IdempotencyKeyReused => Status::failed_precondition(e.to_string()),
        CounterError::ResetDisabled => Status::permission_denied(e.to_string()),
        CounterError::Internal => Status::internal("internal error"),
    }
}

/// The engine error a gateway reports for a counter's status code (`code`, as on the wire).
pub fn counter_error_from_code(code: Code) -> CounterError {
    match code {
        Code::OutOfRange => CounterError::Overflow,
        Code::ResourceExhausted => CounterError::Overloaded,
        Code::NotFound => CounterError::LeaderboardsDisabled,
        Code::FailedPrecondition => CounterError::IdempotencyKeyReused,
        Code::PermissionDenied => CounterError::ResetDisabled,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
            CounterError::Unavailable
        }
        _ => CounterError::Internal,
    }
}

/// The status for a request rejected by validation; the field travels in the message.
pub fn status_from_invalid(e: &InvalidField) -> Status {
    Status::invalid_argument(format!("{}: {}", e.field, e.message))
}

/// The wire form of a leaderboard period (a gateway's request; the counter reads it back).
pub fn period_to_pb(period: Period) -> pb::Period {
    match period {
        Period::Hour => pb::Period::Hour,
        Period::Day => pb::Period::Day,
        Period::Week => pb::Period::Week,
        Period::All => pb::Period::All,
    }
}
