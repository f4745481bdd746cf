//! The REST contract of API.md, end to end over HTTP in every topology: standalone on the
//! embedded store (in-process) and on a real `redis-server`, a gateway in front of two counters,
//! and standalone on a Redis Cluster. Every error case checks that nothing was written.

mod support;

use serde_json::{Value, json};
use support::{
    Backing, Highpress, Topology, assert_error, get_json, post_json, post_raw, without_times,
};

/// Runs one contract case in every topology, as seven tests: `memory` (standalone on the
/// embedded store, in this test's process) and `redis` (a standalone process on Redis), `split`
/// (a gateway in front of two counters on Redis) and `cluster` (standalone on a three-master
/// Redis Cluster); then `redis`, `split` and `cluster` again with HighGoPress's key layout
/// (`store.key_layout: highgopress`), which every Redis topology must serve alike.
macro_rules! on_every_topology {
    ($name:ident, $env:expr, $body:expr) => {
        on_every_topology!(@ InProcessMemory, $name, $env, $body);
    };
    (@ $memory:ident, $name:ident, $env:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                ($body)(Highpress::start(Topology::$memory, $env).await).await;
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
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_highgopress_keys() {
                let env = with_highgopress_keys($env);
                ($body)(Highpress::start(Topology::StandaloneRedis, &env).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn split_highgopress_keys() {
                let env = with_highgopress_keys($env);
                ($body)(Highpress::start(Topology::Split, &env).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster_highgopress_keys() {
                let env = with_highgopress_keys($env);
                ($body)(Highpress::start(Topology::StandaloneCluster, &env).await).await;
            }
        }
    };
}

/// [`on_every_topology!`] with `memory` as a process of its own too: for a case that counts
/// metrics, which are process-wide (in-process servers of concurrent tests would share them).
macro_rules! on_every_process_topology {
    ($name:ident, $env:expr, $body:expr) => {
        on_every_topology!(@ StandaloneMemory, $name, $env, $body);
    };
}

/// `env` plus `store.key_layout: highgopress`.
fn with_highgopress_keys<'a>(env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = env.to_vec();
    env.push(("HIGHPRESS_STORE__KEY_LAYOUT", "highgopress"));
    env
}

on_every_topology!(
    increment_returns_its_own_post_value,
    &[],
    |hp: Highpress| async move {
        let (s, body) = hp.increment("article_001", "like", 5).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(
            without_times(body),
            json!({"status":"success","data":{"resource_id":"article_001","counter_type":"like","current_value":5,"increment":5,"counted":true,"success":true}})
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
            without_times(body),
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
            let body = without_times(body);
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
            // A missing user_id is fine here (like is not unique per user): see
            // user_id_is_optional_except_for_unique_per_user_types.
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
    user_id_is_optional_except_for_unique_per_user_types,
    &[("HIGHPRESS_COUNTER_TYPES__FOLLOW__UNIQUE_PER_USER", "true")],
    |hp: Highpress| async move {
        let url = hp.url("/api/v1/counter/increment");
        // HighGoPress's load test body, as it sends it.
        let (s, body) = post_json(
            &url,
            &json!({"resource_id":"article_loadtest","counter_type":"like","delta":1}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(
            without_times(body),
            json!({"status":"success","data":{"resource_id":"article_loadtest","counter_type":"like","current_value":1,"increment":1,"counted":true,"success":true}})
        );
        // A unique-per-user type still needs to know who: 400 naming user_id, nothing written.
        let got = post_json(&url, &json!({"resource_id":"p","counter_type":"follow"})).await;
        assert_error(&got, 400, "invalid_argument", Some("user_id"));
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("follow"),
            "{}",
            got.1
        );
        assert_eq!(hp.value("p", "follow").await, 0);
        // Given, it is validated as before.
        let got = post_json(
            &url,
            &json!({"resource_id":"p","counter_type":"like","user_id":""}),
        )
        .await;
        assert_error(&got, 400, "invalid_argument", Some("user_id"));
        assert_eq!(hp.value("p", "like").await, 0);
    }
);

on_every_topology!(
    the_originals_health_route_answers_its_fields,
    &[],
    |hp: Highpress| async move {
        let (s, mut body) = get_json(&hp.url("/api/v1/health")).await;
        assert_eq!(s, 200, "{body}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let timestamp = body["timestamp"].as_i64().expect("a Unix time");
        assert!((now - 60..=now).contains(&timestamp), "{body}");
        body.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(
            body,
            json!({"status":"ok","service":"highpress","version":env!("CARGO_PKG_VERSION"),"mode":hp.mode(),"checks":{"store":"ok"}})
        );
    }
);

on_every_process_topology!(
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

/// POSTs an increment with an `Idempotency-Key` header (raw value); returns status, body and
/// whether the answer was marked replayed.
async fn increment_with_key(hp: &Highpress, body: &Value, key: &str) -> (u16, Value, bool) {
    let r = support::client()
        .post(hp.url("/api/v1/counter/increment"))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        replayed,
    )
}

on_every_topology!(
    idempotent_retry_gets_the_original_answer_and_counts_nothing,
    &[],
    |hp: Highpress| async move {
        let body = json!({"resource_id":"idem","counter_type":"view","user_id":"u1","increment":5});
        let (s, first, replayed) = increment_with_key(&hp, &body, "key-1").await;
        assert_eq!((s, replayed), (200, false), "{first}");
        let first = without_times(first);
        assert_eq!(
            first,
            json!({"status":"success","data":{"resource_id":"idem","counter_type":"view","current_value":5,"increment":5,"counted":true,"success":true}})
        );
        assert_eq!(hp.increment("idem", "view", 1).await.0, 200);
        // The retry gets the first answer (current_value 5, not 6 or 11) and counts nothing,
        // also when written with the `delta` alias or as a quoted structured-field string.
        for (body, key) in [
            (body.clone(), "key-1"),
            (
                json!({"resource_id":"idem","counter_type":"view","user_id":"u1","delta":5}),
                "\"key-1\"",
            ),
        ] {
            let (s, again, replayed) = increment_with_key(&hp, &body, key).await;
            assert_eq!((s, replayed), (200, true), "{again}");
            assert_eq!(without_times(again), first);
        }
        assert_eq!(hp.value("idem", "view").await, 6);

        // The same key with another body: 422, nothing written.
        for other in [
            json!({"resource_id":"idem","counter_type":"view","user_id":"u1","increment":7}),
            json!({"resource_id":"idem","counter_type":"view","user_id":"u2","increment":5}),
        ] {
            let (s, b, _) = increment_with_key(&hp, &other, "key-1").await;
            assert_error(&(s, b), 422, "idempotency_key_reused", None);
        }
        assert_eq!(hp.value("idem", "view").await, 6);

        // Malformed keys: 400 naming the header, nothing written.
        for bad in [
            String::new(),
            "\"\"".to_string(),
            "k".repeat(256),
            "has space".to_string(),
        ] {
            let (s, b, _) = increment_with_key(&hp, &body, &bad).await;
            assert_error(&(s, b), 400, "invalid_argument", Some("Idempotency-Key"));
        }
        assert_eq!(hp.value("idem", "view").await, 6);

        // A new key counts again.
        let (s, b, replayed) = increment_with_key(&hp, &body, "key-2").await;
        assert_eq!((s, replayed), (200, false));
        assert_eq!(b["data"]["current_value"], 11);
    }
);

on_every_topology!(
    concurrent_requests_sharing_a_key_count_once,
    &[],
    |hp: Highpress| async move {
        let body = json!({"resource_id":"herd","counter_type":"view","user_id":"u","increment":3});
        let calls: Vec<_> = (0..50)
            .map(|_| increment_with_key(&hp, &body, "one-key"))
            .collect();
        let answers = futures::future::join_all(calls).await;
        for (s, b, _) in &answers {
            assert_eq!(*s, 200, "{b}");
            assert_eq!(b["data"]["current_value"], 3, "{b}");
        }
        let originals = answers.iter().filter(|(_, _, replayed)| !replayed).count();
        assert_eq!(originals, 1, "exactly one request is the original");
        assert_eq!(hp.value("herd", "view").await, 3);
    }
);

on_every_topology!(
    unique_per_user_counts_each_user_once,
    &[
        ("HIGHPRESS_COUNTER_TYPES__LIKE__UNIQUE_PER_USER", "true"),
        ("HIGHPRESS_COUNTER_TYPES__VIEW__MAX_INCREMENT", "10"),
    ],
    |hp: Highpress| async move {
        let url = hp.url("/api/v1/counter/increment");
        let like = |user: &str, delta: i64| {
            let body = json!({"resource_id":"post","counter_type":"like","user_id":user,"increment":delta});
            let url = url.clone();
            async move { post_json(&url, &body).await }
        };
        let expect = |got: (u16, Value), value: i64, counted: bool| {
            assert_eq!(got.0, 200, "{}", got.1);
            assert_eq!(
                (
                    got.1["data"]["current_value"].as_i64(),
                    got.1["data"]["counted"].as_bool()
                ),
                (Some(value), Some(counted)),
                "{}",
                got.1
            );
        };
        expect(like("u1", 1).await, 1, true);
        expect(like("u1", 1).await, 1, false); // a second like by u1 does not count
        expect(like("u2", 1).await, 2, true);
        expect(like("u3", -1).await, 2, false); // an unlike without a like does not count
        expect(like("u1", -1).await, 1, true);
        expect(like("u1", -1).await, 1, false);
        for bad in [5, 2, -2, 0] {
            assert_error(
                &like("u4", bad).await,
                400,
                "invalid_argument",
                Some("increment"),
            );
        }
        assert_eq!(hp.value("post", "like").await, 1);

        // 100 concurrent likes by one user, through coalescing: exactly one counts.
        let likes: Vec<_> = (0..100).map(|_| like("u9", 1)).collect();
        let answers = futures::future::join_all(likes).await;
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
        let counted = answers
            .iter()
            .filter(|(_, b)| b["data"]["counted"] == true)
            .count();
        assert_eq!(counted, 1);
        assert_eq!(hp.value("post", "like").await, 2);

        // A type's own max_increment overrides limits.max_increment; other types are plain.
        let view = |delta: i64| {
            let body = json!({"resource_id":"post","counter_type":"view","user_id":"u1","increment":delta});
            let url = url.clone();
            async move { post_json(&url, &body).await }
        };
        expect(view(10).await, 10, true);
        assert_error(&view(11).await, 400, "invalid_argument", Some("increment"));
        expect(hp.increment("post", "share", 500).await, 500, true);
        expect(hp.increment("post", "share", 500).await, 1000, true);
    }
);

on_every_topology!(
    idempotency_and_uniqueness_combine,
    &[("HIGHPRESS_COUNTER_TYPES__FOLLOW__UNIQUE_PER_USER", "true")],
    |hp: Highpress| async move {
        let follow =
            json!({"resource_id":"alice","counter_type":"follow","user_id":"bob","increment":1});
        let (_, first, _) = increment_with_key(&hp, &follow, "f-1").await;
        assert_eq!(first["data"]["counted"], true, "{first}");
        // A second follow with a new key is a duplicate follow; a retry of the first replays.
        let (_, dup, replayed) = increment_with_key(&hp, &follow, "f-2").await;
        assert_eq!(
            (dup["data"]["counted"].clone(), replayed),
            (json!(false), false)
        );
        let (_, again, replayed) = increment_with_key(&hp, &follow, "f-1").await;
        // The replay's `timestamp` is its own answer time, which may be a second later.
        assert_eq!(
            (without_times(again), replayed),
            (without_times(first), true)
        );
        assert_eq!(hp.value("alice", "follow").await, 1);
    }
);

on_every_topology!(reset_is_off_by_default, &[], |hp: Highpress| async move {
    hp.increment("keep", "like", 4).await;
    let r = support::client()
        .delete(hp.url("/api/v1/counter/keep/like"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_error(&(status, body), 403, "reset_disabled", None);
    assert_eq!(hp.value("keep", "like").await, 4);
});

on_every_topology!(
    a_reset_counter_leaves_the_leaderboards,
    &[("HIGHPRESS_API__ALLOW_RESET", "true")],
    |hp: Highpress| async move {
        for (id, n) in [("gone", 7), ("kept", 3)] {
            assert_eq!(hp.increment(id, "view", n).await.0, 200);
        }
        // Rankings lag by the flush interval (50 ms in tests).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        hp.increment("gone", "view", 4).await; // likely unwritten when the reset comes
        let url = hp.url("/api/v1/counter/gone/view");
        let reset = support::client().delete(url).send().await.unwrap();
        assert_eq!(reset.status().as_u16(), 200);
        // Counted after the reset: ranked with only this.
        hp.increment("gone", "view", 2).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for period in ["hour", "day", "week", "all"] {
            let (s, body) =
                get_json(&hp.url(&format!("/api/v1/leaderboard/view?period={period}"))).await;
            assert_eq!(s, 200, "{body}");
            assert_eq!(
                body["data"]["items"],
                json!([
                    {"rank":1,"resource_id":"kept","count":3},
                    {"rank":2,"resource_id":"gone","count":2}
                ]),
                "{period}"
            );
        }
    }
);

on_every_topology!(
    reset_zeroes_the_counter_and_its_uniqueness_set_idempotently,
    &[
        ("HIGHPRESS_API__ALLOW_RESET", "true"),
        ("HIGHPRESS_COUNTER_TYPES__LIKE__UNIQUE_PER_USER", "true"),
    ],
    |hp: Highpress| async move {
        let like = |user: &str| {
            let body = json!({"resource_id":"r/1","counter_type":"like","user_id":user});
            let url = hp.url("/api/v1/counter/increment");
            async move { post_json(&url, &body).await }
        };
        let delete = |path: &str| {
            let url = hp.url(path);
            async move {
                let r = support::client().delete(url).send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            }
        };
        like("u1").await;
        like("u2").await;
        assert_eq!(hp.value("r%2F1", "like").await, 2); // read, so the value is cached
        let (s, body) = delete("/api/v1/counter/r%2F1/like").await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(
            body["data"],
            json!({"resource_id":"r/1","counter_type":"like","current_value":0,"previous_value":2})
        );
        assert_eq!(hp.value("r%2F1", "like").await, 0);
        // The uniqueness set was emptied: u1 counts again.
        let (_, b) = like("u1").await;
        assert_eq!(
            (
                b["data"]["current_value"].clone(),
                b["data"]["counted"].clone()
            ),
            (json!(1), json!(true))
        );
        // Idempotent: a second and third reset leave 0.
        assert_eq!(
            delete("/api/v1/counter/r%2F1/like").await.1["data"]["previous_value"],
            1
        );
        let (s, body) = delete("/api/v1/counter/r%2F1/like").await;
        assert_eq!((s, body["data"]["previous_value"].clone()), (200, json!(0)));
        assert_eq!(hp.value("r%2F1", "like").await, 0);
        // Bad paths name the field.
        let (s, body) = delete("/api/v1/counter/r1/Like").await;
        assert_error(&(s, body), 400, "invalid_argument", Some("counter_type"));
    }
);
