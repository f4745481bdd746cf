//! The REST contract of API.md, end to end against real processes in every topology: standalone
//! on the embedded store and on a real `redis-server`, and a gateway in front of two counters. Every error case checks that nothing was written.

mod support;

use serde_json::{Value, json};
use support::{Backing, Highpress, Topology, assert_error, get_json, post_json, post_raw};

/// Runs one contract case in every topology, as four tests: `memory` and `redis` (standalone on
/// each store), `split` (a gateway in front of two counters on Redis) and `cluster` (standalone
/// on a three-master Redis Cluster).
macro_rules! on_every_topology {
    ($name:ident, $env:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                ($body)(Highpress::start(Topology::StandaloneMemory, $env).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                ($body)(Highpress::start(Topology::StandaloneRedis, $env).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn split() {
                ($body)(Highpress::start(Topology::Split, $env).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                ($body)(Highpress::start(Topology::StandaloneCluster, $env).await).await;
            }
        }
    };
}

on_every_topology!(
    increment_returns_its_own_post_value,
    &[],
    |hp: Highpress| async move {
        let (s, body) = hp.increment("article_001", "like", 5).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(
            body,
            json!({"status":"success","data":{"resource_id":"article_001","counter_type":"like","current_value":5,"increment":5}})
        );
        let (_, body) = hp.increment("article_001", "like", -2).await;
        assert_eq!(body["data"]["current_value"], 3);
        assert_eq!(hp.value("article_001", "like").await, 3);
    }
);

on_every_topology!(
    increment_defaults_to_one_and_accepts_delta_alias,
    &[],
    |hp: Highpress| async move {
        let url = hp.url("/api/v1/counter/increment");
        let (s, body) = post_json(
            &url,
            &json!({"resource_id":"a","counter_type":"view","user_id":"u"}),
        )
        .await;
        assert_eq!((s, body["data"]["increment"].clone()), (200, json!(1)));
        let (s, body) = post_json(
            &url,
            &json!({"resource_id":"a","counter_type":"view","user_id":"u","delta":4}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["data"]["current_value"], 5);
        let (s, _) = post_json(
            &url,
            &json!({"resource_id":"a","counter_type":"view","user_id":"u","unknown":[1,2]}),
        )
        .await;
        assert_eq!(s, 200, "unknown fields are ignored");
        assert_eq!(hp.value("a", "view").await, 6);
    }
);

on_every_topology!(
    never_incremented_counter_reads_zero,
    &[],
    |hp: Highpress| async move {
        let (s, body) = get_json(&hp.url("/api/v1/counter/nothing_here/like")).await;
        assert_eq!(s, 200);
        assert_eq!(
            body,
            json!({"status":"success","data":{"resource_id":"nothing_here","counter_type":"like","current_value":0}})
        );
    }
);

on_every_topology!(
    path_parameters_are_percent_decoded,
    &[],
    |hp: Highpress| async move {
        hp.increment("user@x.com/post:1", "like", 2).await;
        let (s, body) = get_json(&hp.url("/api/v1/counter/user%40x.com%2Fpost%3A1/like")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["data"]["resource_id"], "user@x.com/post:1");
        assert_eq!(body["data"]["current_value"], 2);
    }
);

on_every_topology!(
    batch_answers_in_request_order_with_duplicates,
    &[],
    |hp: Highpress| async move {
        hp.increment("a1", "like", 1).await;
        hp.increment("a2", "like", 2).await;
        let url = hp.url("/api/v1/counter/batch");
        let queries = json!([
            {"resource_id":"a2","counter_type":"like"},
            {"resource_id":"missing","counter_type":"like"},
            {"resource_id":"a1","counter_type":"like"},
            {"resource_id":"a2","counter_type":"like"}
        ]);
        for field in ["queries", "items"] {
            let (s, body) = post_json(&url, &json!({ field: queries })).await;
            assert_eq!(s, 200, "{body}");
            let values = support::batch_values(&body);
            assert_eq!(values, vec![2, 0, 1, 2]);
            assert_eq!(body["data"]["total"], 4);
            assert_eq!(
                body["data"]["results"][1],
                json!({"resource_id":"missing","counter_type":"like","current_value":0})
            );
        }
    }
);

on_every_topology!(
    leaderboard_ranks_every_period,
    &[],
    |hp: Highpress| async move {
        for (id, n) in [("p1", 3), ("p2", 9), ("p3", 5)] {
            let (s, _) = hp.increment(id, "view", n).await;
            assert_eq!(s, 200);
        }
        hp.increment("p1", "view", 1).await;
        // Rankings lag by the flush interval (50 ms in tests).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for period in ["hour", "day", "week", "all"] {
            let (s, body) =
                get_json(&hp.url(&format!("/api/v1/leaderboard/view?period={period}&limit=2")))
                    .await;
            assert_eq!(s, 200, "{body}");
            assert_eq!(
                body["data"],
                json!({"counter_type":"view","period":period,"items":[
                    {"rank":1,"resource_id":"p2","count":9},
                    {"rank":2,"resource_id":"p3","count":5}
                ]})
            );
        }
        let (_, body) = get_json(&hp.url("/api/v1/leaderboard/view")).await;
        assert_eq!(body["data"]["period"], "day");
        assert_eq!(body["data"]["items"].as_array().unwrap().len(), 3);
        assert_eq!(
            body["data"]["items"][2],
            json!({"rank":3,"resource_id":"p1","count":4})
        );
        let (_, body) = get_json(&hp.url("/api/v1/leaderboard/never_counted")).await;
        assert_eq!(body["data"]["items"], json!([]));
    }
);

on_every_topology!(
    invalid_increments_are_rejected_naming_the_field_and_write_nothing,
    &[],
    |hp: Highpress| async move {
        let url = hp.url("/api/v1/counter/increment");
        let ok = json!({"resource_id":"r","counter_type":"like","user_id":"u","increment":1});
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            b
        };
        let without = |k: &str| {
            let mut b = ok.clone();
            b.as_object_mut().unwrap().remove(k);
            b
        };
        let cases: Vec<(Value, &str)> = vec![
            (without("resource_id"), "resource_id"),
            (with("resource_id", json!("")), "resource_id"),
            (with("resource_id", json!("has space")), "resource_id"),
            (with("resource_id", json!("x".repeat(129))), "resource_id"),
            (with("resource_id", json!(42)), "resource_id"),
            (without("counter_type"), "counter_type"),
            (with("counter_type", json!("Like")), "counter_type"),
            (with("counter_type", json!("a:b")), "counter_type"),
            (with("counter_type", json!("z".repeat(65))), "counter_type"),
            (without("user_id"), "user_id"),
            (with("user_id", json!("")), "user_id"),
            (with("user_id", json!("bad\u{7}id")), "user_id"),
            (with("user_id", json!("u".repeat(129))), "user_id"),
            (with("increment", json!(0)), "increment"),
            (with("increment", json!(1_000_001)), "increment"),
            (with("increment", json!(-1_000_001)), "increment"),
            (with("increment", json!("1")), "increment"),
            (with("increment", json!(1.5)), "increment"),
            (
                with("increment", json!(9_223_372_036_854_775_808u64)),
                "increment",
            ),
        ];
        for (body, field) in cases {
            let got = post_json(&url, &body).await;
            assert_error(&got, 400, "invalid_argument", Some(field));
        }
        for raw in [
            "",
            "{",
            "[1,2]",
            "\"text\"",
            "{\"resource_id\":\"r\"} trailing",
        ] {
            let got = post_raw(&url, Some("application/json"), raw.to_string()).await;
            assert_error(&got, 400, "invalid_argument", Some("body"));
        }
        assert_eq!(
            hp.value("r", "like").await,
            0,
            "rejected input wrote something"
        );
    }
);

on_every_topology!(
    media_type_size_route_and_method_errors,
    &[],
    |hp: Highpress| async move {
        let url = hp.url("/api/v1/counter/increment");
        let body = r#"{"resource_id":"r","counter_type":"like","user_id":"u"}"#;
        assert_error(
            &post_raw(&url, None, body).await,
            415,
            "unsupported_media_type",
            None,
        );
        assert_error(
            &post_raw(&url, Some("text/plain"), body).await,
            415,
            "unsupported_media_type",
            None,
        );
        let padding = " ".repeat(64 * 1024);
        let big = format!(r#"{{"resource_id":"r","counter_type":"like","user_id":"u"{padding}}}"#);
        assert_error(
            &post_raw(&url, Some("application/json"), big).await,
            413,
            "payload_too_large",
            None,
        );
        let (s, _) = post_raw(&url, Some("application/json; charset=utf-8"), body).await;
        assert_eq!(s, 200);
        assert_error(
            &get_json(&hp.url("/api/v1/nope")).await,
            404,
            "not_found",
            None,
        );
        assert_error(&get_json(&url).await, 405, "method_not_allowed", None);
        let r = support::client()
            .delete(hp.url("/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405);
        assert_eq!(hp.value("r", "like").await, 1);
    }
);

on_every_topology!(
    invalid_reads_name_the_field,
    &[],
    |hp: Highpress| async move {
        assert_error(
            &get_json(&hp.url("/api/v1/counter/ok/Bad")).await,
            400,
            "invalid_argument",
            Some("counter_type"),
        );
        assert_error(
            &get_json(&hp.url("/api/v1/counter/bad%20id/like")).await,
            400,
            "invalid_argument",
            Some("resource_id"),
        );
        let batch = hp.url("/api/v1/counter/batch");
        assert_error(
            &post_json(&batch, &json!({})).await,
            400,
            "invalid_argument",
            Some("queries"),
        );
        assert_error(
            &post_json(&batch, &json!({"queries": []})).await,
            400,
            "invalid_argument",
            Some("queries"),
        );
        let many: Vec<Value> = (0..1001)
            .map(|_| json!({"resource_id":"a","counter_type":"like"}))
            .collect();
        assert_error(
            &post_json(&batch, &json!({"queries": many})).await,
            400,
            "invalid_argument",
            Some("queries"),
        );
        assert_error(
        &post_json(&batch, &json!({"queries":[{"resource_id":"a","counter_type":"like"},{"resource_id":"b!","counter_type":"like"}]})).await,
        400,
        "invalid_argument",
        Some("queries[1].resource_id"),
    );
        assert_error(
            &post_json(&batch, &json!({"queries":[{"resource_id":"a"}]})).await,
            400,
            "invalid_argument",
            Some("queries[0].counter_type"),
        );
        assert_error(
            &post_json(&batch, &json!({"queries":"a"})).await,
            400,
            "invalid_argument",
            Some("queries"),
        );
        let lb = |q: &str| hp.url(&format!("/api/v1/leaderboard/like?{q}"));
        assert_error(
            &get_json(&lb("period=month")).await,
            400,
            "invalid_argument",
            Some("period"),
        );
        assert_error(
            &get_json(&lb("limit=0")).await,
            400,
            "invalid_argument",
            Some("limit"),
        );
        assert_error(
            &get_json(&lb("limit=101")).await,
            400,
            "invalid_argument",
            Some("limit"),
        );
        assert_error(
            &get_json(&lb("limit=ten")).await,
            400,
            "invalid_argument",
            Some("limit"),
        );
        assert_error(
            &get_json(&hp.url("/api/v1/leaderboard/LIKE")).await,
            400,
            "invalid_argument",
            Some("counter_type"),
        );
    }
);

/// 2^53, the largest increment the configuration allows.
const BIG: i64 = 1 << 53;

on_every_topology!(
    overflow_answers_422_to_exactly_the_requests_that_overflow,
    &[("HIGHPRESS_LIMITS__MAX_INCREMENT", "9007199254740992")],
    |hp: Highpress| async move {
        // Fill the counter to 1023·2^53, leaving 2^53 − 1 of headroom below i64::MAX.
        let fills: Vec<_> = (0..1023)
            .map(|_| hp.increment("edge", "like", BIG))
            .collect();
        for (s, body) in futures::future::join_all(fills).await {
            assert_eq!(s, 200, "{body}");
        }
        assert_eq!(hp.value("edge", "like").await, 1023 * BIG);
        // Three concurrent +2^52: exactly one fits. Another key in the same flushes is unaffected.
        let edge: Vec<_> = (0..3)
            .map(|_| hp.increment("edge", "like", BIG / 2))
            .collect();
        let other: Vec<_> = (0..20)
            .map(|_| hp.increment("bystander", "like", 1))
            .collect();
        let (edge, other) = futures::future::join(
            futures::future::join_all(edge),
            futures::future::join_all(other),
        )
        .await;
        let ok = edge.iter().filter(|(s, _)| *s == 200).count();
        let overflowed: Vec<_> = edge.iter().filter(|(s, _)| *s == 422).collect();
        assert_eq!((ok, overflowed.len()), (1, 2), "{edge:?}");
        for got in overflowed {
            assert_error(got, 422, "overflow", None);
        }
        assert!(other.iter().all(|(s, _)| *s == 200));
        assert_eq!(hp.value("edge", "like").await, 1023 * BIG + BIG / 2);
        assert_eq!(hp.value("bystander", "like").await, 20);
        // Decrements still work at the edge.
        let (s, body) = hp.increment("edge", "like", -BIG).await;
        assert_eq!(
            (s, body["data"]["current_value"].as_i64()),
            (200, Some(1022 * BIG + BIG / 2))
        );
    }
);

on_every_topology!(
    health_readiness_metrics_and_openapi,
    &[],
    |hp: Highpress| async move {
        let (s, body) = get_json(&hp.url("/health")).await;
        assert_eq!(
            (s, body),
            (200, json!({"status":"ok","checks":{"store":"ok"}}))
        );
        let (s, body) = get_json(&hp.url("/livez")).await;
        assert_eq!((s, body), (200, json!({"status":"alive"})));
        let (s, body) = get_json(&hp.url("/readyz")).await;
        assert_eq!((s, body), (200, json!({"status":"ready"})));

        hp.increment("m", "like", 1).await;
        let text = support::client()
            .get(hp.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("highpress_http_requests_total{")
                    && l.contains(r#"route="/api/v1/counter/increment""#)
                    && l.contains(r#"status="200""#)
                    && l.contains(&format!(r#"mode="{}""#, hp.mode()))),
            "{text}"
        );
        assert!(
            text.contains("highpress_http_request_duration_seconds_bucket{"),
            "{text}"
        );
        // Exactly one flush happened, on whichever process runs the engine.
        let mut flushes = 0;
        for url in hp.engine_metrics_urls() {
            flushes += support::metric(&url, "highpress_coalescer_batch_size_count").await;
        }
        assert_eq!(flushes, 1);

        let (s, doc) = get_json(&hp.url("/openapi.json")).await;
        assert_eq!(s, 200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/api/v1/counter/increment",
            "/api/v1/counter/{resource_id}/{counter_type}",
            "/api/v1/counter/batch",
            "/api/v1/leaderboard/{counter_type}",
            "/health",
            "/readyz",
            "/metrics",
        ] {
            assert!(
                doc["paths"].get(path).is_some(),
                "openapi.json lacks {path}"
            );
        }
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_leaderboards_write_no_rankings_and_answer_404() {
    let mut hp = Highpress::standalone(
        Backing::Redis,
        &[("HIGHPRESS_LEADERBOARD__ENABLED", "false")],
    )
    .await;
    assert_eq!(hp.increment("quiet", "like", 3).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_error(
        &get_json(&hp.url("/api/v1/leaderboard/like")).await,
        404,
        "not_found",
        None,
    );
    assert!(hp.terminate().success());
    assert_eq!(hp.redis().cmd(&["KEYS", "lb:*"]), "");
    assert_eq!(hp.redis().get_i64("c:like:quiet"), 3);
}
