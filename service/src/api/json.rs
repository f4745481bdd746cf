//! Request bodies: the `application/json` check, the body size limit and parsing that names the
//! field at fault. Bad bodies get the same error envelope as every other error.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorCode};
use crate::counter::CounterBackend;

/// A JSON request body, checked for media type and size, not yet parsed.
pub struct JsonBody(pub Bytes);

impl<B: CounterBackend> FromRequest<AppState<B>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState<B>) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the request body must be JSON with Content-Type: application/json",
            ));
        }
        let limit = state.limits.max_body_bytes;
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than {limit} bytes"),
            )
        };
        // Read up to the limit. An oversized body is drained (up to DRAIN_LIMIT) before the 413
        // is sent, so the client reads the answer instead of a connection reset.
        let mut body = req.into_body();
        let mut buf = BytesMut::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|_| ApiError::invalid("body", "the request body could not be read"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len();
            if seen > DRAIN_LIMIT {
                break;
            }
            if seen <= limit {
                buf.extend_from_slice(&data);
            }
        }
        if seen > limit {
            return Err(too_large());
        }
        Ok(Self(buf.freeze()))
    }
}

/// The most bytes of an oversized body read (and discarded) before answering 413.
const DRAIN_LIMIT: usize = 1 << 20;

fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.split_once('/').is_some_and(|(t, sub)| {
            t.eq_ignore_ascii_case("application") && sub.to_ascii_lowercase().ends_with("+json")
        })
}

/// Parses a body, naming the field whose value has the wrong type.
pub fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    // serde would also accept a struct written as an array; the contract takes objects only.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ApiError::invalid(
                "body",
                "the request body is empty; send a JSON object",
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "body",
                "the request body must be a JSON object",
            ));
        }
    }
    // The fast path parses plainly; only a failed parse is repeated with path tracking, to name
    // the field at fault.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => {
                ApiError::invalid(path.clone(), format!("{path}: {}", strip_position(&inner)))
            }
            serde_json::error::Category::Data => ApiError::invalid(
                "body",
                format!(
                    "the request body must be a JSON object: {}",
                    strip_position(&inner)
                ),
            ),
            _ => ApiError::invalid(
                "body",
                format!("the request body is not valid JSON: {inner}"),
            ),
        }
    })?;
    de.end().map_err(|e| {
        ApiError::invalid("body", format!("the request body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[derive(Serialize)]
struct Success<T> {
    status: &'static str,
    data: T,
}

/// `200 {"status":"success","data":...}`.
pub fn success<T: Serialize>(data: T) -> Response {
    let mut buf = Vec::with_capacity(160);
    match serde_json::to_writer(
        &mut buf,
        &Success {
            status: "success",
            data,
        },
    ) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], buf).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            ApiError::new(ErrorCode::Internal, "internal error").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Probe {
        n: Option<i64>,
        items: Option<Vec<Inner>>,
    }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        id: Option<String>,
    }

    #[test]
    fn wrong_types_name_the_field_path() {
        let e = parse::<Probe>(br#"{"n":"1"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("n"));
        let e = parse::<Probe>(br#"{"items":[{"id":"a"},{"id":5}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[1].id"));
    }

    #[test]
    fn malformed_json_and_non_objects_are_body_errors() {
        for body in [&b"{"[..], b"[]", b"42", b"{} trailing", b""] {
            let e = parse::<Probe>(body).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument);
            assert_eq!(
                e.field.as_deref(),
                Some("body"),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/merge-patch+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/x-www-form-urlencoded"));
    }
}
