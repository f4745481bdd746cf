//! Benchmark peer "ceiling": the HTTP cost of a counter endpoint on this machine.
//!
//! A minimal axum server that parses the same JSON body as highpress's
//! `POST /api/v1/counter/increment` and answers a fixed response, with no
//! storage at all. `bench/bench.sh` measures its requests/s and latency next
//! to highpress, so the highpress figures can be quoted as ratios of the
//! practical limit for an HTTP counter (README.md, "Benchmarks": rows P1, P1u
//! and P6).
//!
//! Routes:
//! - `POST /api/v1/counter/increment`: parses
//!   `{"resource_id","counter_type","user_id","increment"}` and answers a fixed
//!   success envelope (400 if the body does not parse);
//! - `GET /api/v1/counter/{resource_id}/{counter_type}`: a fixed success envelope.
//!
//! Environment: `PORT` (default 18081). Binds 127.0.0.1 only.
//!
//! Run: `cargo run --release -p highpress-bench-peers --bin peer_ceiling`

use axum::{
    Router,
    body::Bytes,
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INCREMENT_RESPONSE: &str = r#"{"status":"success","data":{"resource_id":"x","counter_type":"like","current_value":1,"increment":1}}"#;
const GET_RESPONSE: &str =
    r#"{"status":"success","data":{"resource_id":"x","counter_type":"like","current_value":1}}"#;
const BAD_REQUEST: &str = r#"{"status":"error","error":{"code":"invalid_argument","message":"the request body is not a valid increment"}}"#;

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

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn increment(body: Bytes) -> Response {
    match serde_json::from_slice::<IncrementRequest<'_>>(&body) {
        Ok(req)
            if !req.resource_id.is_empty()
                && !req.counter_type.is_empty()
                && !req.user_id.is_empty()
                && req.increment != 0 =>
        {
            json(StatusCode::OK, INCREMENT_RESPONSE)
        }
        _ => json(StatusCode::BAD_REQUEST, BAD_REQUEST),
    }
}

/// Extracts the same path parameters highpress reads, then answers a fixed body.
async fn get_counter(Path((resource_id, counter_type)): Path<(String, String)>) -> Response {
    if resource_id.is_empty() || counter_type.is_empty() {
        return json(StatusCode::BAD_REQUEST, BAD_REQUEST);
    }
    json(StatusCode::OK, GET_RESPONSE)
}

fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|e| std::io::Error::other(format!("invalid PORT {p:?}: {e}")))?,
        Err(_) => 18081,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/api/v1/counter/increment", post(increment))
            .route(
                "/api/v1/counter/{resource_id}/{counter_type}",
                get(get_counter),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        eprintln!("peer_ceiling listening on 127.0.0.1:{port}");
        axum::serve(listener, app).await
    })
}
