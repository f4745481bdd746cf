//! Benchmark peer "naive": what a straightforward Rust port of the original is.
//!
//! One HTTP request is one Redis `INCRBY`: an axum handler that parses the same
//! JSON body as highpress and sends `INCRBY c:{counter_type}:{resource_id}
//! {increment}` over a shared `redis::aio::MultiplexedConnection` (cloned per
//! request), with no coalescing. `bench/bench.sh` measures its requests/s and
//! latency next to highpress: it shows what highpress's coalescing buys over
//! the obvious design (README.md, "Benchmarks": the naive row of the peers
//! table, about 1.0 Redis command per increment, against highpress's P5a).
//!
//! Routes:
//! - `POST /api/v1/counter/increment`: `{"resource_id","counter_type","user_id","increment"}`
//!   → `{"status":"success","data":{"resource_id","counter_type","current_value","increment"}}`;
//! - `GET /api/v1/counter/{resource_id}/{counter_type}`: `GET` of the same key.
//!
//! Environment: `REDIS_URL` (default `redis://127.0.0.1:6379`), `PORT` (default 18082).
//! Binds 127.0.0.1 only.
//!
//! Run: `cargo run --release -p highpress-bench-peers --bin peer_naive`

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BAD_REQUEST: &str = r#"{"status":"error","error":{"code":"invalid_argument","message":"the request body is not a valid increment"}}"#;
const UNAVAILABLE: &str =
    r#"{"status":"error","error":{"code":"unavailable","message":"the store is unreachable"}}"#;

/// The increment request body: the fields highpress reads, borrowed from the body.
#[derive(Deserialize)]
struct IncrementRequest<'a> {
    #[serde(borrow)]
    resource_id: &'a str,
    #[serde(borrow)]
    counter_type: &'a str,
    #[serde(borrow)]
    user_id: &'a str,
    #[serde(default = "one")]
    increment: i64,
}

fn one() -> i64 {
    1
}

#[derive(Serialize)]
struct Envelope<T> {
    status: &'static str,
    data: T,
}

#[derive(Serialize)]
struct CounterData<'a> {
    resource_id: &'a str,
    counter_type: &'a str,
    current_value: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    increment: Option<i64>,
}

fn json_static(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn success(data: CounterData<'_>) -> Response {
    match serde_json::to_vec(&Envelope {
        status: "success",
        data,
    }) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn key(counter_type: &str, resource_id: &str) -> String {
    format!("c:{counter_type}:{resource_id}")
}

async fn increment(State(conn): State<MultiplexedConnection>, body: Bytes) -> Response {
    let req = match serde_json::from_slice::<IncrementRequest<'_>>(&body) {
        Ok(req)
            if !req.resource_id.is_empty()
                && !req.counter_type.is_empty()
                && !req.user_id.is_empty()
                && req.increment != 0 =>
        {
            req
        }
        _ => return json_static(StatusCode::BAD_REQUEST, BAD_REQUEST),
    };
    let mut conn = conn.clone();
    let result: redis::RedisResult<i64> = redis::cmd("INCRBY")
        .arg(key(req.counter_type, req.resource_id))
        .arg(req.increment)
        .query_async(&mut conn)
        .await;
    match result {
        Ok(value) => success(CounterData {
            resource_id: req.resource_id,
            counter_type: req.counter_type,
            current_value: value,
            increment: Some(req.increment),
        }),
        Err(_) => json_static(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE),
    }
}

async fn get_counter(
    State(conn): State<MultiplexedConnection>,
    Path((resource_id, counter_type)): Path<(String, String)>,
) -> Response {
    let mut conn = conn.clone();
    let result: redis::RedisResult<Option<i64>> = redis::cmd("GET")
        .arg(key(&counter_type, &resource_id))
        .query_async(&mut conn)
        .await;
    match result {
        Ok(value) => success(CounterData {
            resource_id: &resource_id,
            counter_type: &counter_type,
            current_value: value.unwrap_or(0),
            increment: None,
        }),
        Err(_) => json_static(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|e| format!("invalid PORT {p:?}: {e}"))?,
        Err(_) => 18082,
    };
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = redis::Client::open(redis_url.as_str())?;
        // Redis may still be starting: retry for up to 5 s.
        let mut attempt = 0;
        let conn = loop {
            match client.get_multiplexed_async_connection().await {
                Ok(conn) => break conn,
                Err(e) if attempt >= 50 => return Err(e.into()),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        };
        let app = Router::new()
            .route("/api/v1/counter/increment", post(increment))
            .route(
                "/api/v1/counter/{resource_id}/{counter_type}",
                get(get_counter),
            )
            .with_state(conn);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        eprintln!("peer_naive listening on 127.0.0.1:{port}, redis {redis_url}");
        axum::serve(listener, app).await?;
        Ok(())
    })
}
