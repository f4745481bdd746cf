//! The one REST error type. Every failure, from a bad field to an unreachable store, becomes the
//! error envelope `{"status":"error","error":{"code","message","field"}}` with its status code.
//! 5xx responses never carry internal details: those are logged, not returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::counter::CounterError;
use crate::domain::rules::InvalidField;

/// The machine-readable error codes of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    PayloadTooLarge,
    UnsupportedMediaType,
    NotFound,
    MethodNotAllowed,
    Overflow,
    IdempotencyKeyReused,
    ResetDisabled,
    Unauthorized,
    Forbidden,
    RateLimited,
    RequestTimeout,
    Overloaded,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Overflow | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ResetDisabled | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer of the REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A 400 naming the JSON field, path or query parameter at fault.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidArgument,
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

impl From<InvalidField> for ApiError {
    fn from(e: InvalidField) -> Self {
        Self::invalid(e.field, e.message)
    }
}

impl From<CounterError> for ApiError {
    fn from(e: CounterError) -> Self {
        match e {
            CounterError::Overflow => Self::new(
                ErrorCode::Overflow,
                "the increment would take the counter outside the signed 64-bit range; nothing was written",
            ),
            CounterError::Overloaded => Self::new(
                ErrorCode::Overloaded,
                "too many pending increments; retry shortly",
            ),
            CounterError::Unavailable => Self::new(
                ErrorCode::Unavailable,
                "the counter store is unavailable; retry shortly",
            ),
            CounterError::ShuttingDown => Self::new(
                ErrorCode::Unavailable,
                "the service is shutting down; retry shortly",
            ),
            CounterError::LeaderboardsDisabled => Self::new(
                ErrorCode::NotFound,
                "leaderboards are disabled on this deployment (leaderboard.enabled)",
            ),
            CounterError::IdempotencyKeyReused => Self::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key header was already used with a different request body; nothing was written",
            ),
            CounterError::ResetDisabled => Self::new(
                ErrorCode::ResetDisabled,
                "resetting counters is disabled on this deployment (api.allow_reset)",
            ),
            CounterError::Internal => Self::new(ErrorCode::Internal, "internal error"),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    status: &'static str,
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = serde_json::to_vec(&Envelope {
            status: "error",
            error: Body {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        })
        .unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"highpress\""),
            );
        }
        response
    }
}
