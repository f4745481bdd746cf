//! On-demand profiles in pprof format, readable by `go tool pprof`, served beside `/metrics` when
//! `pprof.enabled` (otherwise the routes do not exist and answer 404):
//!
//! - `GET /debug/pprof/profile?seconds=N`: a CPU profile over N seconds (1..=60, default 30),
//!   pprof protobuf; one at a time, a second request meanwhile gets 409;
//! - `GET /debug/pprof/heap`: jemalloc's sampled heap profile, gzip-compressed pprof protobuf.
//!   Heap sampling is compiled into the allocator but switched on only by [`activate`] when
//!   profiling is enabled; where jemalloc was started without `prof:true` the route answers 501
//!   and says why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::api::auth::Scope;
use crate::api::error::ApiError;
use crate::api::gate::Gate;
use crate::api::request_metrics::RouteMeter;

/// Longest CPU profile one request may ask for, in seconds.
pub const MAX_PROFILE_SECONDS: u64 = 60;
const DEFAULT_PROFILE_SECONDS: u64 = 30;
/// Samples per second while a CPU profile runs (Go's default is 100; 99 avoids lockstep).
const PROFILE_FREQUENCY: i32 = 99;

static CPU_PROFILE_RUNNING: AtomicBool = AtomicBool::new(false);

/// The profiling routes, each with request metrics labelled by its template; with `api.auth`
/// on, they need the `admin` scope.
pub fn router<S: Clone + Send + Sync + 'static>(mode: &'static str, gate: &Gate) -> Router<S> {
    let profile = RouteMeter::with_gate("/debug/pprof/profile", mode, gate.clone());
    let heap = RouteMeter::with_gate("/debug/pprof/heap", mode, gate.clone());
    let not_allowed = crate::api::handlers::method_not_allowed;
    Router::new()
        .route(
            "/debug/pprof/profile",
            get(profile.guard(Scope::Admin, cpu_profile)).fallback(profile.wrap(not_allowed)),
        )
        .route(
            "/debug/pprof/heap",
            get(heap.guard(Scope::Admin, heap_profile)).fallback(heap.wrap(not_allowed)),
        )
}

/// `app` plus the profiling routes when `enabled`.
pub fn with_routes(app: Router, enabled: bool, mode: &'static str, gate: &Gate) -> Router {
    if enabled {
        app.merge(router(mode, gate))
    } else {
        app
    }
}

/// Turns jemalloc heap sampling on, so `/debug/pprof/heap` has allocations to show. Logs, and
/// leaves the route answering 501, when the allocator cannot profile.
pub async fn activate() {
    match jemalloc_pprof::PROF_CTL.as_ref() {
        Some(ctl) => {
            let mut ctl = ctl.lock().await;
            if ctl.activated() {
                return;
            }
            match ctl.activate() {
                Ok(()) => tracing::info!("heap profiling active"),
                Err(e) => tracing::warn!(error = %e, "cannot activate heap profiling"),
            }
        }
        None => tracing::warn!("{HEAP_UNAVAILABLE}"),
    }
}

const HEAP_UNAVAILABLE: &str = "heap profiling is unavailable: jemalloc was started without \
     prof:true (the build sets it; check that _RJEM_MALLOC_CONF does not turn it off)";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileQuery {
    seconds: Option<String>,
}

fn profile_seconds(query: Option<&str>) -> Result<u64, ApiError> {
    let query: ProfileQuery = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ApiError::invalid("seconds", "the only query parameter is seconds"))?;
    let Some(raw) = query.seconds else {
        return Ok(DEFAULT_PROFILE_SECONDS);
    };
    match raw.parse::<u64>() {
        Ok(n) if (1..=MAX_PROFILE_SECONDS).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(
            "seconds",
            format!("seconds must be a whole number from 1 to {MAX_PROFILE_SECONDS}"),
        )),
    }
}

/// An error envelope with a status the API contract's codes do not cover (409, 501).
fn plain_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "status": "error",
        "error": {"code": code, "message": message},
    });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

fn pprof_body(bytes: Vec<u8>, gzip: bool) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if gzip {
        // The body is a .pb.gz file, as Go serves it: not a transfer encoding.
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"heap.pb.gz\""),
        );
    } else {
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"profile.pb\""),
        );
    }
    response
}

/// Releases the one-profile-at-a-time slot when dropped, also if the client goes away.
struct CpuProfileSlot;

impl CpuProfileSlot {
    fn claim() -> Option<Self> {
        CPU_PROFILE_RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Self)
    }
}

impl Drop for CpuProfileSlot {
    fn drop(&mut self) {
        CPU_PROFILE_RUNNING.store(false, Ordering::Release);
    }
}

/// `GET /debug/pprof/profile?seconds=N`
async fn cpu_profile(RawQuery(query): RawQuery) -> Response {
    let seconds = match profile_seconds(query.as_deref()) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let Some(slot) = CpuProfileSlot::claim() else {
        return plain_error(
            StatusCode::CONFLICT,
            "profile_in_progress",
            "a CPU profile is already being taken; retry when it finishes",
        );
    };
    // The profiler samples every thread via SIGPROF; the blocking thread only waits and encodes.
    let profiled = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(PROFILE_FREQUENCY)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(seconds));
        let report = guard.report().build().map_err(|e| e.to_string())?;
        let profile = report.pprof().map_err(|e| e.to_string())?;
        Ok::<_, String>(pprof::protos::Message::encode_to_vec(&profile))
    })
    .await;
    match profiled {
        Ok(Ok(bytes)) => pprof_body(bytes, false),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "CPU profile failed");
            plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the CPU profile failed; see the service log",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "CPU profile task failed");
            plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

/// `GET /debug/pprof/heap`
async fn heap_profile() -> Response {
    let Some(ctl) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return plain_error(
            StatusCode::NOT_IMPLEMENTED,
            "heap_profiling_unavailable",
            HEAP_UNAVAILABLE,
        );
    };
    let mut ctl = ctl.lock().await;
    if !ctl.activated() {
        return plain_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "heap_profiling_inactive",
            "heap sampling is not active: it is switched on at start-up when pprof.enabled is true",
        );
    }
    // Dumping writes a temporary file and symbolizes: keep it off the async workers.
    match tokio::task::block_in_place(|| ctl.dump_pprof()) {
        Ok(bytes) => pprof_body(bytes, true),
        Err(e) => {
            tracing::error!(error = %e, "heap profile failed");
            plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the heap profile failed; see the service log",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_is_bounded_and_defaults_to_thirty() {
        assert_eq!(profile_seconds(None).unwrap(), 30);
        assert_eq!(profile_seconds(Some("seconds=1")).unwrap(), 1);
        assert_eq!(profile_seconds(Some("seconds=60")).unwrap(), 60);
        for bad in [
            "seconds=0",
            "seconds=61",
            "seconds=-1",
            "seconds=abc",
            "secs=5",
        ] {
            let e = profile_seconds(Some(bad)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("seconds"), "{bad}");
        }
    }

    #[test]
    fn only_one_cpu_profile_slot_at_a_time() {
        let first = CpuProfileSlot::claim().expect("free");
        assert!(CpuProfileSlot::claim().is_none());
        drop(first);
        assert!(CpuProfileSlot::claim().is_some());
    }
}
