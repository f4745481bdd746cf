//! Property: no input makes a handler panic or answer 5xx. Arbitrary bodies, content types and
//! paths go through the real router (`tower::ServiceExt::oneshot`) over the embedded store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use highpress::api::{self, AppState, Limits};
use highpress::config::Config;
use highpress::counter::{EngineSettings, LocalCounter};
use highpress::store::memory::MemoryStore;
use proptest::prelude::*;
use tower::ServiceExt;

fn router() -> (tokio::runtime::Runtime, axum::Router) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(async {
        let (engine, _tasks) = LocalCounter::start(
            Arc::new(MemoryStore::new()),
            EngineSettings::from_config(&Config::default()),
        );
        api::app(AppState {
            backend: engine,
            limits: Limits::default(),
            policies: Default::default(),
            mode: "standalone",
            gate: Default::default(),
        })
    });
    (rt, app)
}

fn status_of(rt: &tokio::runtime::Runtime, app: &axum::Router, req: Request<Body>) -> StatusCode {
    rt.block_on(async { app.clone().oneshot(req).await.unwrap().status() })
}

/// JSON-ish bodies: real field names with values of every type, plus raw noise.
fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[ -~]{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[{\"resource_id\":\"a\",\"counter_type\":\"like\"}]".to_string()),
    ];
    let field = prop_oneof![
        Just("resource_id"),
        Just("counter_type"),
        Just("user_id"),
        Just("increment"),
        Just("delta"),
        Just("queries"),
        Just("items"),
        Just("x"),
    ];
    let object = prop::collection::vec((field, value), 0..6).prop_map(|pairs| {
        let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", inner.join(",")).into_bytes()
    });
    prop_oneof![object, prop::collection::vec(any::<u8>(), 0..200)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn post_bodies_never_panic_or_500(body in body_strategy(), batch in any::<bool>(), json_type in any::<bool>()) {
        let (rt, app) = router();
        let path = if batch { "/api/v1/counter/batch" } else { "/api/v1/counter/increment" };
        let mut req = Request::post(path);
        if json_type {
            req = req.header("content-type", "application/json");
        }
        let status = status_of(&rt, &app, req.body(Body::from(body)).unwrap());
        prop_assert!(status.is_success() || status.is_client_error(), "{}", status);
    }

    #[test]
    fn paths_never_panic_or_500(a in "[ -~]{0,30}", b in "[ -~]{0,30}", q in "[ -~]{0,30}") {
        let (rt, app) = router();
        let enc = |s: &str| s.bytes().map(|c| format!("%{c:02X}")).collect::<String>();
        for uri in [
            format!("/api/v1/counter/{}/{}", enc(&a), enc(&b)),
            format!("/api/v1/leaderboard/{}?{}", enc(&a), enc(&q).replace("%3D", "=").replace("%26", "&")),
        ] {
            let status = status_of(&rt, &app, Request::get(uri.as_str()).body(Body::empty()).unwrap());
            prop_assert!(status.is_success() || status.is_client_error(), "{} {}", uri, status);
        }
    }
}
