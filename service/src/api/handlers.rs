//! The REST handlers of the API contract: increment, get, batch, leaderboard, health, metrics and
//! the OpenAPI document. They validate, call the [`CounterBackend`] and shape the envelope.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorCode};
use super::json::{
    JsonBody, ObjectWriter, Scalar, Text, parse, scan_flat_object, success, success_object,
};
use crate::counter::CounterBackend;
use crate::domain::rules as validate;
use crate::domain::{CounterKey, Period};
use crate::metrics::METRICS;
use crate::telemetry;

#[derive(Deserialize)]
struct IncrementRequest<'a> {
    #[serde(borrow)]
    resource_id: Option<Text<'a>>,
    #[serde(borrow)]
    counter_type: Option<Text<'a>>,
    #[serde(borrow)]
    user_id: Option<Text<'a>>,
    #[serde(alias = "delta")]
    increment: Option<i64>,
}

impl<'a> IncrementRequest<'a> {
    /// The body, read by [`scan_flat_object`] in its usual form and by serde otherwise (so
    /// serde decides every error, and the result is serde's either way).
    fn read(body: &'a [u8]) -> Result<Self, ApiError> {
        let mut req = Self {
            resource_id: None,
            counter_type: None,
            user_id: None,
            increment: None,
        };
        // A second value of a field (or both names of the increment) is serde's
        // duplicate-field error, and an unknown field serde's to ignore: both go to serde.
        let usual = scan_flat_object(body, |key, value| match value {
            Scalar::Str(s) => {
                let slot = match key {
                    b"resource_id" => &mut req.resource_id,
                    b"counter_type" => &mut req.counter_type,
                    b"user_id" => &mut req.user_id,
                    _ => return false,
                };
                slot.replace(Text::borrowed(s)).is_none()
            }
            Scalar::Int(n) => {
                matches!(key, b"increment" | b"delta") && req.increment.replace(n).is_none()
            }
        });
        if usual { Ok(req) } else { parse(body) }
    }
}

#[derive(Serialize)]
struct ResetResult<'a> {
    resource_id: &'a str,
    counter_type: &'a str,
    current_value: i64,
    previous_value: i64,
}

/// The response header that marks an answer replayed from an idempotency record.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

#[derive(Serialize)]
struct CounterValue<'a> {
    resource_id: &'a str,
    counter_type: &'a str,
    current_value: i64,
    /// When the value was read, in Unix seconds. As in HighGoPress, whose Redis held plain
    /// integers with no write time, this is the time of the answer, not of the last increment.
    updated_at: i64,
}

/// Now, in Unix seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn required<'a>(value: &'a Option<Text<'a>>, field: &str) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))
}

/// The request's `Idempotency-Key` header, if it sent one (at most one is allowed). Extracted on
/// its own, so the handler does not copy every header to read this one.
pub struct IdempotencyKeyHeader(Option<HeaderValue>);

impl<S: Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut values = parts
            .headers
            .get_all(validate::IDEMPOTENCY_KEY_HEADER)
            .iter();
        match (values.next(), values.next()) {
            (first, None) => Ok(Self(first.cloned())),
            _ => Err(ApiError::invalid(
                validate::IDEMPOTENCY_KEY_HEADER,
                "send the Idempotency-Key header at most once",
            )),
        }
    }
}

/// `POST /api/v1/counter/increment`
pub async fn increment<B: CounterBackend>(
    State(state): State<AppState<B>>,
    IdempotencyKeyHeader(idempotency_header): IdempotencyKeyHeader,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let req = IncrementRequest::read(&body)?;
    let resource_id = required(&req.resource_id, "resource_id")?;
    validate::resource_id("resource_id", resource_id)?;
    let counter_type = required(&req.counter_type, "counter_type")?;
    validate::counter_type("counter_type", counter_type)?;
    telemetry::record_counter_type(counter_type);
    let user_id = req.user_id.as_deref();
    validate::user_id(counter_type, user_id, &state.policies)?;
    let delta = req.increment.unwrap_or(1);
    validate::increment(counter_type, delta, &state.limits, &state.policies)?;
    let idempotency_key = match &idempotency_header {
        Some(raw) => Some(validate::idempotency_key(raw.as_bytes())?),
        None => None,
    };

    let ack = state
        .backend
        .increment(
            CounterKey::new(counter_type, resource_id),
            delta,
            user_id,
            idempotency_key,
        )
        .await?;
    // `counted`: whether the increment changed the counter (false: a unique-per-user
    // duplicate). `success` is always true and `timestamp` is when this answer was made, in
    // Unix seconds: HighGoPress's answer carried both, and its clients check them.
    let mut response = success_object(|data| {
        counter_fields(data, resource_id, counter_type, ack.current_value)
            .int("increment", delta)
            .bool("counted", ack.counted)
            .bool("success", true)
            .int("timestamp", unix_now());
    });
    if ack.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The fields every answer about one counter starts with.
fn counter_fields<'w>(
    data: &'w mut ObjectWriter,
    resource_id: &str,
    counter_type: &str,
    current_value: i64,
) -> &'w mut ObjectWriter {
    data.str("resource_id", resource_id)
        .str("counter_type", counter_type)
        .int("current_value", current_value)
}

/// `DELETE /api/v1/counter/{resource_id}/{counter_type}`: resets the counter to 0 (only with
/// `api.allow_reset`, which the counter engine checks). Idempotent: resetting a counter at 0 answers the same.
pub async fn reset_counter<B: CounterBackend>(
    State(state): State<AppState<B>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (resource_id, counter_type) = counter_path(path)?;
    let outcome = state
        .backend
        .reset(CounterKey::new(&counter_type, &resource_id))
        .await?;
    Ok(success(ResetResult {
        resource_id: &resource_id,
        counter_type: &counter_type,
        current_value: 0,
        previous_value: outcome.previous_value,
    }))
}

/// The validated `{resource_id}/{counter_type}` of a counter route.
fn counter_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let Path((resource_id, counter_type)) = path.map_err(|e| {
        ApiError::invalid(
            "path",
            format!("invalid path parameters: {}", e.body_text()),
        )
    })?;
    validate::resource_id("resource_id", &resource_id)?;
    validate::counter_type("counter_type", &counter_type)?;
    telemetry::record_counter_type(&counter_type);
    Ok((resource_id, counter_type))
}

/// `GET /api/v1/counter/{resource_id}/{counter_type}`
pub async fn get_counter<B: CounterBackend>(
    State(state): State<AppState<B>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (resource_id, counter_type) = counter_path(path)?;
    let current_value = state
        .backend
        .get(CounterKey::new(&counter_type, &resource_id))
        .await?;
    // `updated_at`: see CounterValue.
    Ok(success_object(|data| {
        counter_fields(data, &resource_id, &counter_type, current_value)
            .int("updated_at", unix_now());
    }))
}

#[derive(Deserialize)]
struct BatchRequest<'a> {
    #[serde(borrow, alias = "items")]
    queries: Option<Vec<BatchQuery<'a>>>,
}

#[derive(Deserialize)]
struct BatchQuery<'a> {
    #[serde(borrow)]
    resource_id: Option<Text<'a>>,
    #[serde(borrow)]
    counter_type: Option<Text<'a>>,
}

#[derive(Serialize)]
struct BatchResult<'a> {
    results: Vec<CounterValue<'a>>,
    total: usize,
}

/// `POST /api/v1/counter/batch`
pub async fn batch<B: CounterBackend>(
    State(state): State<AppState<B>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let req: BatchRequest = parse(&body)?;
    let queries = req
        .queries
        .ok_or_else(|| ApiError::invalid("queries", "queries is required"))?;
    validate::batch_queries("queries", queries.len(), &state.limits)?;
    let mut parts = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let rid_field = format!("queries[{i}].resource_id");
        let ct_field = format!("queries[{i}].counter_type");
        let resource_id = required(&q.resource_id, &rid_field)?;
        validate::resource_id(&rid_field, resource_id)?;
        let counter_type = required(&q.counter_type, &ct_field)?;
        validate::counter_type(&ct_field, counter_type)?;
        parts.push((resource_id, counter_type));
    }
    let keys = parts.iter().map(|(r, t)| CounterKey::new(t, r)).collect();
    let values = state.backend.get_many(keys).await?;
    let updated_at = unix_now();
    let results: Vec<CounterValue> = parts
        .iter()
        .zip(values)
        .map(
            |(&(resource_id, counter_type), current_value)| CounterValue {
                resource_id,
                counter_type,
                current_value,
                updated_at,
            },
        )
        .collect();
    Ok(success(BatchResult {
        total: results.len(),
        results,
    }))
}

#[derive(Serialize)]
struct LeaderboardResult<'a> {
    counter_type: &'a str,
    period: &'static str,
    items: Vec<RankedItem>,
}

#[derive(Serialize)]
struct RankedItem {
    rank: usize,
    resource_id: String,
    count: i64,
}

/// `GET /api/v1/leaderboard/{counter_type}?period=hour|day|week|all&limit=N`
pub async fn leaderboard<B: CounterBackend>(
    State(state): State<AppState<B>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let Path(counter_type) = path.map_err(|e| {
        ApiError::invalid(
            "path",
            format!("invalid path parameters: {}", e.body_text()),
        )
    })?;
    validate::counter_type("counter_type", &counter_type)?;
    telemetry::record_counter_type(&counter_type);
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::invalid("query", "the query string is malformed"))?;
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let period = match param("period") {
        None => Period::Day,
        Some(p) => Period::parse(p).ok_or_else(|| {
            ApiError::invalid("period", "period must be one of hour, day, week, all")
        })?,
    };
    let limit = match param("limit") {
        None => 10,
        Some(l) => validate::leaderboard_limit("limit", l.parse().unwrap_or(0))?,
    };
    let entries = state
        .backend
        .leaderboard(&counter_type, period, limit)
        .await?;
    let items = entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| RankedItem {
            rank: i + 1,
            resource_id: e.resource_id,
            count: e.count,
        })
        .collect();
    Ok(success(LeaderboardResult {
        counter_type: &counter_type,
        period: period.as_str(),
        items,
    }))
}

fn plain_json(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /health`: 200 while the process serves, with the state of each dependency.
pub async fn health<B: CounterBackend>(State(state): State<AppState<B>>) -> Response {
    if state.backend.is_ready() {
        plain_json(StatusCode::OK, r#"{"status":"ok","checks":{"store":"ok"}}"#)
    } else {
        plain_json(
            StatusCode::OK,
            r#"{"status":"ok","checks":{"store":"unavailable"}}"#,
        )
    }
}

/// `GET /api/v1/health`: HighGoPress's health answer (`status`, `timestamp`, `service`,
/// `version`; its load test polls it), with the store check of [`health`]. Unlike `/health`, it
/// answers 503 while the store (or, for a gateway, every counter) is unreachable.
pub async fn api_health<B: CounterBackend>(State(state): State<AppState<B>>) -> Response {
    let (status, check) = if state.backend.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = serde_json::json!({
        "status": check,
        "timestamp": unix_now(),
        "service": "highpress",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": state.mode,
        "checks": {"store": check},
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /livez`: the process is alive.
pub async fn livez() -> Response {
    plain_json(StatusCode::OK, r#"{"status":"alive"}"#)
}

/// `GET /readyz`: 200 only while the store answers.
pub async fn readyz<B: CounterBackend>(State(state): State<AppState<B>>) -> Response {
    if state.backend.is_ready() {
        plain_json(StatusCode::OK, r#"{"status":"ready"}"#)
    } else {
        plain_json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not_ready"}"#)
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        METRICS.render(),
    )
        .into_response()
}

/// The OpenAPI document of this contract, `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// `GET /openapi.json`
pub async fn openapi() -> Response {
    plain_json(StatusCode::OK, OPENAPI_JSON)
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// Known routes called with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<i64>,
    );

    fn fields<'a>(req: &'a IncrementRequest<'a>) -> Fields<'a> {
        (
            req.resource_id.as_deref(),
            req.counter_type.as_deref(),
            req.user_id.as_deref(),
            req.increment,
        )
    }

    /// Whether `scan_flat_object` read `body` itself (rather than leaving it to serde).
    fn scanned(body: &[u8]) -> bool {
        scan_flat_object(body, |_, _| true)
    }

    #[test]
    fn the_usual_increment_body_is_read_as_serde_reads_it() {
        let usual: &[&[u8]] = &[
            br#"{"resource_id":"post-1","counter_type":"like","user_id":"u1","increment":1}"#,
            br#" { "resource_id" : "p" ,"counter_type":"view" , "delta" : -3 } "#,
            b"{\"resource_id\":\"p\"\n,\t\"counter_type\":\"like\"\r}",
            r#"{"resource_id":"é ü 日本","counter_type":"like"}"#.as_bytes(),
            br#"{"increment":0}"#,
            br#"{"increment":-123456789012345678}"#,
            br#"{"increment":123456789012345678}"#,
            br#"{"resource_id":""}"#,
            br#"{}"#,
            b" {} \n",
        ];
        for body in usual {
            assert!(scanned(body), "{}", String::from_utf8_lossy(body));
            let fast = IncrementRequest::read(body).expect("reads");
            let serde: IncrementRequest = parse(body).expect("serde reads");
            assert_eq!(
                fields(&fast),
                fields(&serde),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn anything_else_is_left_to_serde_with_serdes_answer() {
        let unusual: &[&[u8]] = &[
            // Accepted by serde, in forms the scanner leaves to it.
            br#"{"resource_id":"a\"b","counter_type":"like"}"#,
            br#"{"resource_id":"a\u0041","counter_type":"like"}"#,
            br#"{"resource_id":"p","unknown":"x"}"#,
            br#"{"resource_id":"p","unknown":{"a":[1,2]}}"#,
            br#"{"resource_id":null,"increment":null}"#,
            br#"{"increment":1234567890123456789}"#,
            br#"{"increment":-9223372036854775808}"#,
            br#"{"re\u0073ource_id":"p"}"#,
            // Refused by serde.
            br#"{"increment":1,"delta":2}"#,
            br#"{"increment":1,"increment":1}"#,
            br#"{"resource_id":"a","resource_id":"b"}"#,
            br#"{"increment":01}"#,
            br#"{"increment":-0}"#,
            br#"{"increment":1.0}"#,
            br#"{"increment":1e3}"#,
            br#"{"increment":-}"#,
            br#"{"increment":9223372036854775808}"#,
            br#"{"increment":"1"}"#,
            br#"{"resource_id":1}"#,
            br#"{"resource_id":true}"#,
            br#"{"resource_id":"p",}"#,
            br#"{"resource_id":"p""counter_type":"like"}"#,
            br#"{"resource_id":"p"} x"#,
            br#"{"resource_id":"p"}}"#,
            br#"{"resource_id":"p""#,
            br#"{"resource_id":"p"#,
            br#"{"resource_id":"#,
            br#"{"resource_id""#,
            br#"{"resource_id"#,
            br#"{,}"#,
            b"{\"resource_id\":\"a\tb\"}",
            b"{\"resource_id\":\"a\x01b\"}",
            b"{\"resource_id\":\"\xff\"}",
            b"\xef\xbb\xbf{}",
            br#"["resource_id"]"#,
            br#""resource_id""#,
            b"",
            b"   ",
            b"{",
        ];
        for body in unusual {
            let shown = String::from_utf8_lossy(body);
            let fast = IncrementRequest::read(body);
            let serde = parse::<IncrementRequest>(body);
            match (&fast, &serde) {
                (Ok(fast), Ok(serde)) => assert_eq!(fields(fast), fields(serde), "{shown}"),
                (Err(fast), Err(serde)) => assert_eq!(fast, serde, "{shown}"),
                _ => panic!(
                    "{shown}: read {:?}, serde {:?}",
                    fast.is_ok(),
                    serde.is_ok()
                ),
            }
        }
    }
}
