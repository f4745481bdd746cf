//! JSON in and out. Request bodies: the `application/json` check, the body size limit and parsing
//! that names the field at fault; bad bodies get the same error envelope as every other error.
//! Answers: the success envelope, through serde, or written field by field by an
//! [`ObjectWriter`] for the answers on the hot path (increment and get).

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde::de::{self, Deserializer, Visitor};
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
        // is sent, so the client reads the answer instead of a connection reset. A body that
        // arrives in one frame (the usual case) is not joined.
        // The whole body must arrive within `server.body_read_timeout_ms`. Its timer is only
        // registered if the body is not all there at the first poll.
        let mut body = req.into_body();
        let mut whole = Bytes::new();
        let mut joined: Option<BytesMut> = None;
        let mut seen = 0usize;
        let read = async {
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
                if seen > limit || data.is_empty() {
                    continue;
                }
                if whole.is_empty() {
                    whole = data;
                } else {
                    joined
                        .get_or_insert_with(|| BytesMut::from(&whole[..]))
                        .extend_from_slice(&data);
                }
            }
            Ok::<(), ApiError>(())
        };
        tokio::time::timeout(state.limits.body_read_timeout, read)
            .await
            .map_err(|_| ApiError {
                code: ErrorCode::RequestTimeout,
                message: "the request body did not arrive within \
                              server.body_read_timeout_ms; nothing was written"
                    .into(),
                field: Some("body".into()),
            })??;
        if seen > limit {
            return Err(too_large());
        }
        match joined {
            Some(joined) => Ok(Self(joined.freeze())),
            // A body that arrived in one frame is a slice of hyper's read buffer, which it
            // keeps alive: while the handler waits (for Redis), hyper reads on and would need a
            // new buffer (8 KiB) for every request. A small body is copied out instead, so
            // the connection reuses its buffer.
            None if whole.len() <= COPIED_BODY_BYTES => Ok(Self(Bytes::copy_from_slice(&whole))),
            None => Ok(Self(whole)),
        }
    }
}

/// The largest body [`JsonBody`] copies out of hyper's read buffer.
const COPIED_BODY_BYTES: usize = 1024;

/// The most bytes of a body read and discarded: before answering 413, or after an answer
/// given before the body was read (`server::late_body`).
pub const DRAIN_LIMIT: usize = 1 << 20;

fn is_json_media_type(value: &str) -> bool {
    if value == "application/json" {
        return true;
    }
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

/// A value of a [`scan_flat_object`] field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// A string without escapes, borrowed from the body.
    Str(&'a str),
    /// An integer written plainly (`-?(0|[1-9][0-9]*)`, at most 18 digits).
    Int(i64),
}

/// Reads a body in the usual form of a flat request: one JSON object whose values are plain
/// strings (no escapes) and plain integers, calling `field` with each member's name (its bytes
/// between the quotes) and value, in order. Returns false, having read nothing the caller must
/// keep, on anything else (escapes, other value types, numbers serde reads otherwise, malformed
/// JSON, a body that is not UTF-8) or when `field` returns false: the caller then parses the
/// body with serde ([`parse`]), which decides. So for a body this accepts, the caller's result
/// must be what serde gives, and every error case goes to serde.
pub fn scan_flat_object<'a>(
    body: &'a [u8],
    mut field: impl FnMut(&'a [u8], Scalar<'a>) -> bool,
) -> bool {
    // One check for the whole body; the strings are then slices of it at quotes.
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        return false;
    }
    at = skip_ws(body, at + 1);
    if body.get(at) == Some(&b'}') {
        return skip_ws(body, at + 1) == body.len();
    }
    loop {
        // A name with an escape holds a backslash, so it matches no field the caller knows.
        if body.get(at) != Some(&b'"') {
            return false;
        }
        let Some(len) = body[at + 1..].iter().position(|&b| b == b'"') else {
            return false;
        };
        let name = &body[at + 1..at + 1 + len];
        at = skip_ws(body, at + 1 + len + 1);
        if body.get(at) != Some(&b':') {
            return false;
        }
        at = skip_ws(body, at + 1);
        let (value, next) = match body.get(at) {
            Some(b'"') => match plain_string(text, at) {
                Some((s, next)) => (Scalar::Str(s), next),
                None => return false,
            },
            Some(b'-' | b'0'..=b'9') => match plain_integer(body, at) {
                Some((n, next)) => (Scalar::Int(n), next),
                None => return false,
            },
            _ => return false,
        };
        if !field(name, value) {
            return false;
        }
        at = skip_ws(body, next);
        match body.get(at) {
            Some(b',') => at = skip_ws(body, at + 1),
            Some(b'}') => return skip_ws(body, at + 1) == body.len(),
            _ => return false,
        }
    }
}

/// The first index at or after `at` that is not JSON whitespace.
fn skip_ws(body: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = body.get(at) {
        at += 1;
    }
    at
}

/// The string whose opening quote is at `at`, if it has no escape and no control character,
/// and the index after its closing quote.
fn plain_string(text: &str, at: usize) -> Option<(&str, usize)> {
    let rest = &text.as_bytes()[at + 1..];
    let len = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if rest[len] != b'"' {
        return None;
    }
    // Both ends are at ASCII bytes, so at character boundaries.
    Some((text.get(at + 1..at + 1 + len)?, at + 1 + len + 1))
}

/// The integer starting at `at`, if serde would read it as that i64 (no leading zero, no
/// fraction or exponent, not `-0`), with at most 18 digits; and the index after it.
fn plain_integer(body: &[u8], at: usize) -> Option<(i64, usize)> {
    let negative = body[at] == b'-';
    let start = at + usize::from(negative);
    let digits = body[start..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(body.len() - start);
    if digits == 0 || digits > 18 || (digits > 1 && body[start] == b'0') {
        return None;
    }
    let end = start + digits;
    if matches!(body.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let magnitude = body[start..end]
        .iter()
        .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
    if negative && magnitude == 0 {
        return None;
    }
    Some((if negative { -magnitude } else { magnitude }, end))
}

/// A string field of a request body, borrowed from the body unless it holds escapes. (serde's
/// own `Option<Cow<str>>` copies every string into a new allocation, even with `borrow`.)
pub struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    /// A string borrowed from the body.
    pub fn borrowed(s: &'a str) -> Self {
        Self(Cow::Borrowed(s))
    }
}

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
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
        Ok(()) => json_response(buf),
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            ApiError::new(ErrorCode::Internal, "internal error").into_response()
        }
    }
}

/// `200 {"status":"success","data":{...}}`, the `data` object written by `fields`: the same bytes
/// serde would write for a struct of those fields, in a fraction of the instructions.
pub fn success_object(fields: impl FnOnce(&mut ObjectWriter)) -> Response {
    const OPEN: &[u8] = br#"{"status":"success","data":{"#;
    let mut writer = ObjectWriter {
        buf: Vec::with_capacity(192),
        empty: true,
    };
    writer.buf.extend_from_slice(OPEN);
    fields(&mut writer);
    writer.buf.extend_from_slice(b"}}");
    json_response(writer.buf)
}

/// Writes the fields of one JSON object (see [`success_object`]). Field names are plain
/// identifiers, written as they are; string values are escaped where they need it.
pub struct ObjectWriter {
    buf: Vec<u8>,
    empty: bool,
}

impl ObjectWriter {
    fn key(&mut self, name: &'static str) {
        debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !std::mem::take(&mut self.empty) {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.key(name);
        if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.buf.push(b'"');
            self.buf.extend_from_slice(value.as_bytes());
            self.buf.push(b'"');
        } else {
            serde_json::to_writer(&mut self.buf, value).expect("a str always serializes");
        }
        self
    }

    pub fn int(&mut self, name: &'static str, value: i64) -> &mut Self {
        self.key(name);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    pub fn bool(&mut self, name: &'static str, value: bool) -> &mut Self {
        self.key(name);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }
}

/// A `200 application/json` response with `body`.
fn json_response(body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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
    fn written_objects_are_what_serde_writes() {
        #[derive(Serialize)]
        struct Fields<'a> {
            id: &'a str,
            n: i64,
            neg: i64,
            ok: bool,
            no: bool,
        }
        for id in ["post-1", "", "quote\" back\\ slash", "tab\t nul\u{0} é"] {
            let response = success_object(|w| {
                w.str("id", id)
                    .int("n", i64::MAX)
                    .int("neg", i64::MIN)
                    .bool("ok", true)
                    .bool("no", false);
            });
            let expected = serde_json::to_vec(&Success {
                status: "success",
                data: Fields {
                    id,
                    n: i64::MAX,
                    neg: i64::MIN,
                    ok: true,
                    no: false,
                },
            })
            .unwrap();
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = futures::executor::block_on(response.into_body().collect())
                .unwrap()
                .to_bytes();
            assert_eq!(
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&expected),
                "{id:?}"
            );
        }
    }

    #[test]
    fn text_borrows_from_the_body_unless_it_holds_escapes() {
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            plain: Option<Text<'a>>,
            #[serde(borrow)]
            escaped: Option<Text<'a>>,
        }
        let body: Body = parse(br#"{"plain":"post-1","escaped":"a\"b"}"#).unwrap();
        assert!(matches!(
            body.plain.as_ref().unwrap().0,
            Cow::Borrowed("post-1")
        ));
        assert_eq!(&*body.escaped.unwrap(), "a\"b");
        let Err(e) = parse::<Body>(br#"{"plain":5}"#) else {
            panic!("a number is not a string");
        };
        assert_eq!(e.field.as_deref(), Some("plain"));
        assert!(e.message.contains("expected a string"), "{}", e.message);
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
