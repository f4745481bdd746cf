//! The contract with the service, and the `render` subcommand.
//!
//! For every CounterCluster in `deploy/examples/`, the rendered ConfigMap's `config.yaml` must
//! load with the service's own loader (`highpress::config::Config::load`, which rejects unknown
//! keys and validates values). `render` must print exactly the expected kinds for each example.
//!
//! `Config::load` also layers `HIGHPRESS_*` environment variables; these tests set none.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use highpress::config::{Config, LogFormat, StoreKind};
use highpress_operator::crd::{CounterCluster, LogLevel, OutboxFullPolicy, RedisMode};
use highpress_operator::reconcile::build::config::CONFIG_KEY;
use highpress_operator::reconcile::build::{BuildContext, build_config_map};
use highpress_operator::render::{parse_counter_clusters, render};
use kube::CustomResourceExt;
use serde_json::Value;
use support::{CounterClusterFixture, cluster, example_names, example_text};

/// Writes `cc`'s rendered config.yaml to a temporary file and loads it as the service does;
/// the text is returned with the outcome.
fn try_load_rendered_config(cc: &CounterCluster, label: &str) -> (Result<Config, String>, String) {
    let config_map = build_config_map(&cc.clone().valid());
    let text = config_map
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIG_KEY))
        .expect("config.yaml in the ConfigMap")
        .clone();
    let path: PathBuf = std::env::temp_dir().join(format!(
        "highpress-operator-contract-{}-{label}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, &text).expect("writing the temporary config file");
    let loaded = Config::load(Some(&path));
    let _ = std::fs::remove_file(&path);
    (loaded.map_err(|e| e.to_string()), text)
}

/// Writes `cc`'s rendered config.yaml to a temporary file and loads it as the service does.
fn load_rendered_config(cc: &CounterCluster, label: &str) -> Config {
    let (loaded, text) = try_load_rendered_config(cc, label);
    loaded
        .unwrap_or_else(|e| panic!("{label}: the service rejects the rendered config: {e}\n{text}"))
}

#[test]
fn every_example_renders_a_config_the_service_loads() {
    for name in example_names() {
        let clusters =
            parse_counter_clusters(&example_text(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!clusters.is_empty(), "{name}");
        for cc in clusters {
            let config = load_rendered_config(&cc, &name);
            let spec = &cc.spec;
            let ns = cc
                .metadata
                .namespace
                .clone()
                .expect("examples name a namespace");
            let cc_name = cc.metadata.name.clone().expect("a name");
            assert_eq!(config.store.kind, StoreKind::Redis, "{name}");
            assert_eq!(config.log.format, LogFormat::Json, "{name}");
            assert_eq!(config.server.port, 8080, "{name}");
            assert_eq!(config.grpc.listen, "0.0.0.0:50051", "{name}");
            assert!(
                config.redis.password.is_empty(),
                "{name}: password in the ConfigMap"
            );
            assert_eq!(
                config.coalescing.max_batch,
                usize::try_from(spec.counter.coalescing.max_batch).expect("positive"),
                "{name}"
            );
            assert_eq!(
                config.cache.ttl,
                Duration::from_millis(
                    u64::try_from(spec.counter.cache.ttl_millis).expect("non-negative")
                ),
                "{name}"
            );
            assert_eq!(
                config.cache.max_entries,
                usize::try_from(spec.counter.cache.max_entries).expect("non-negative"),
                "{name}"
            );
            let leaderboards = &spec.counter.leaderboards;
            assert_eq!(config.leaderboard.enabled, leaderboards.enabled, "{name}");
            assert_eq!(
                config.leaderboard.top_k,
                usize::try_from(leaderboards.top_k).expect("positive"),
                "{name}"
            );
            assert_eq!(
                config.leaderboard.flush_interval,
                Duration::from_millis(
                    u64::try_from(leaderboards.flush_interval_millis).expect("positive")
                ),
                "{name}"
            );
            assert_eq!(
                config.discovery.dns,
                format!("{cc_name}-counter.{ns}.svc.cluster.local:50051"),
                "{name}"
            );
            match spec.redis.mode {
                RedisMode::Managed => {
                    assert_eq!(config.redis.addr, format!("{cc_name}-redis.{ns}.svc:6379"));
                    assert!(!config.redis.cluster, "{name}");
                }
                RedisMode::External => {
                    let external = spec.redis.external.as_ref().expect("external");
                    assert_eq!(config.redis.addr, external.url, "{name}");
                    assert_eq!(config.redis.cluster, external.cluster, "{name}");
                }
            }
            let tracing = &spec.observability.tracing;
            assert_eq!(config.tracing.enabled, tracing.enabled, "{name}");
            if tracing.enabled {
                assert_eq!(
                    Some(&config.tracing.otlp_endpoint),
                    tracing.otlp_endpoint.as_ref(),
                    "{name}"
                );
                assert!(
                    (config.tracing.sampling_ratio - tracing.sampling_ratio).abs() < 1e-9,
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn counter_types_render_into_policies_the_service_loads() {
    let name = "countercluster-production.yaml";
    let cc = parse_counter_clusters(&example_text(name))
        .unwrap()
        .pop()
        .expect("one CounterCluster");
    assert!(!cc.spec.counter_types.is_empty(), "{name} has counterTypes");
    let config = load_rendered_config(&cc, "counter-types");
    let like = config.counter_types.get("like").expect("like is rendered");
    assert!(like.unique_per_user);
    assert_eq!(like.max_increment, None);
    assert!(config.counter_types["follow"].unique_per_user);
    let view = &config.counter_types["view"];
    assert!(!view.unique_per_user);
    assert_eq!(view.max_increment, Some(100));
    assert_eq!(config.counter_types.len(), cc.spec.counter_types.len());
    // A spec without counterTypes renders no section, and the service then has no policies.
    let plain = load_rendered_config(&cluster(), "no-counter-types");
    assert!(plain.counter_types.is_empty());
}

#[test]
fn api_and_idempotency_render_into_settings_the_service_loads() {
    let mut cc = cluster();
    cc.spec.api.allow_reset = true;
    cc.spec.idempotency.ttl = "1h".to_owned();
    let config = load_rendered_config(&cc, "reset-and-ttl");
    assert!(config.api.allow_reset);
    assert_eq!(config.idempotency.ttl, Duration::from_secs(3600));
    // The defaults render explicitly, and equal the service's own defaults.
    let plain = load_rendered_config(&cluster(), "default-reset-and-ttl");
    assert!(!plain.api.allow_reset);
    assert_eq!(plain.idempotency.ttl, Duration::from_secs(24 * 3600));
    let service_defaults = Config::default();
    assert_eq!(plain.api.allow_reset, service_defaults.api.allow_reset);
    assert_eq!(plain.idempotency.ttl, service_defaults.idempotency.ttl);
}

#[test]
fn security_renders_into_settings_the_service_loads() {
    use highpress_operator::crd::TokensSecretRef;
    use highpress_operator::reconcile::build::security::{
        TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, TOKENS_MOUNT_PATH,
    };
    let mut cc = cluster();
    let security = &mut cc.spec.security;
    security.auth.enabled = true;
    security.auth.tokens_secret_ref = Some(TokensSecretRef {
        name: "likes-tokens".to_owned(),
        key: "api.yaml".to_owned(),
    });
    security.rate_limit.enabled = true;
    security.rate_limit.requests_per_second = 50;
    security.rate_limit.burst = 70;
    security.tls.api = true;
    security.tls.grpc = true;
    let config = load_rendered_config(&cc, "security");
    assert!(config.api.auth.enabled);
    assert_eq!(
        config.api.auth.tokens_file,
        format!("{TOKENS_MOUNT_PATH}/api.yaml")
    );
    assert!(!config.api.auth.protect_metrics);
    assert!(config.api.rate_limit.enabled);
    assert_eq!(config.api.rate_limit.requests_per_second, 50.0);
    assert_eq!(config.api.rate_limit.burst, 70);
    assert!(config.server.tls.enabled);
    assert_eq!(
        (
            config.server.tls.cert_file.as_str(),
            config.server.tls.key_file.as_str()
        ),
        (TLS_CERT_FILE, TLS_KEY_FILE)
    );
    assert!(config.grpc.tls.enabled);
    assert_eq!(config.grpc.tls.ca_file, TLS_CA_FILE);
    assert_eq!(config.grpc.tls.server_name, "likes-counter.apps.svc");
    // Off, nothing renders, and the service's defaults (all off) hold.
    let plain = load_rendered_config(&cluster(), "no-security");
    assert!(!plain.api.auth.enabled && !plain.api.rate_limit.enabled);
    assert!(!plain.server.tls.enabled && !plain.grpc.tls.enabled);
}

#[test]
fn an_external_redis_tls_renders_the_files_the_counters_mount() {
    use highpress_operator::crd::{CaSecretRef, ExternalRedisTlsSpec};
    use highpress_operator::reconcile::build::security::{
        REDIS_CA_FILE, REDIS_CLIENT_CERT_FILE, REDIS_CLIENT_KEY_FILE,
    };
    let mut cc = cluster().with_external_redis("rediss://redis.data.svc:6380", None, false);
    cc.spec.redis.external.as_mut().unwrap().tls = Some(ExternalRedisTlsSpec {
        ca_secret_ref: Some(CaSecretRef {
            name: "redis-ca".to_owned(),
            key: "ca.crt".to_owned(),
        }),
        client_certificate_secret: Some("redis-client".to_owned()),
    });
    let config = load_rendered_config(&cc, "external-redis-tls");
    assert!(config.redis.tls.enabled);
    assert_eq!(config.redis.tls.ca_file, REDIS_CA_FILE);
    assert_eq!(
        (
            config.redis.tls.cert_file.as_str(),
            config.redis.tls.key_file.as_str()
        ),
        (REDIS_CLIENT_CERT_FILE, REDIS_CLIENT_KEY_FILE)
    );
    // The CA alone: no client certificate.
    cc.spec.redis.external.as_mut().unwrap().tls = Some(ExternalRedisTlsSpec {
        ca_secret_ref: Some(CaSecretRef {
            name: "redis-ca".to_owned(),
            key: "ca.crt".to_owned(),
        }),
        client_certificate_secret: None,
    });
    let config = load_rendered_config(&cc, "external-redis-ca");
    assert!(config.redis.tls.enabled && config.redis.tls.cert_file.is_empty());
}

#[test]
fn tls_on_the_managed_redis_renders_its_ca_for_every_redis_connection() {
    use highpress_operator::reconcile::build::security::REDIS_CA_FILE;
    let mut cc = cluster();
    cc.spec.redis.managed.replicas = 3;
    cc.spec.security.tls.redis = true;
    let config = load_rendered_config(&cc, "managed-redis-tls");
    // The service reaches the sentinels and the primaries they name over TLS with it too.
    assert!(config.redis.tls.enabled);
    assert_eq!(config.redis.tls.ca_file, REDIS_CA_FILE);
    assert!(
        config.redis.tls.cert_file.is_empty(),
        "clients log in with the password"
    );
    assert!(config.redis.sentinel.enabled());
}

#[test]
fn the_key_layout_renders_into_the_services_store_key_layout() {
    let mut cc = cluster();
    cc.spec.redis.key_layout = highpress_operator::crd::KeyLayout::HighGoPress;
    let config = load_rendered_config(&cc, "highgopress-keys");
    assert_eq!(
        config.store.key_layout,
        highpress::store::KeyLayout::Highgopress
    );
    let plain = load_rendered_config(&cluster(), "default-keys");
    assert_eq!(
        plain.store.key_layout,
        highpress::store::KeyLayout::Highpress
    );
    assert_eq!(plain.store.key_layout, Config::default().store.key_layout);
}

#[test]
fn the_service_loader_rejects_an_unknown_key_so_the_contract_test_has_teeth() {
    let cc = cluster().valid();
    let text = build_config_map(&cc).data.expect("data")[CONFIG_KEY].replace(
        "coalescing:\n  max_batch:",
        "coalescing:\n  maxBatch: 1\n  max_batch:",
    );
    assert!(text.contains("maxBatch: 1"), "{text}");
    let path = std::env::temp_dir().join(format!(
        "highpress-operator-contract-{}-unknown-key.yaml",
        std::process::id()
    ));
    std::fs::write(&path, &text).expect("writing the temporary config file");
    let loaded = Config::load(Some(&path));
    let _ = std::fs::remove_file(&path);
    let error = loaded.expect_err("an unknown key must be rejected");
    assert!(error.to_string().contains("maxBatch"), "{error}");
}

#[test]
fn edge_case_specs_render_configs_the_service_loads() {
    let mut kafka_trace_no_cache = cluster();
    kafka_trace_no_cache.spec.events.kafka.enabled = true;
    kafka_trace_no_cache.spec.events.kafka.brokers = vec!["kafka:9092".to_owned()];
    kafka_trace_no_cache.spec.events.kafka.topic = "likes_events".to_owned();
    kafka_trace_no_cache.spec.events.kafka.outbox_max_len = 5000;
    kafka_trace_no_cache.spec.events.kafka.outbox_full_policy = OutboxFullPolicy::Drop;
    kafka_trace_no_cache.spec.observability.log_level = LogLevel::Trace;
    kafka_trace_no_cache.spec.counter.cache.ttl_millis = 0;
    kafka_trace_no_cache.spec.counter.cache.max_entries = 0;
    kafka_trace_no_cache.spec.counter.coalescing.max_batch = 65536;
    let config = load_rendered_config(&kafka_trace_no_cache, "kafka-trace-no-cache");
    assert_eq!(config.log.level, "trace");
    assert_eq!(config.cache.ttl, Duration::ZERO);
    assert_eq!(config.coalescing.max_batch, 65536);
    assert!(
        config.kafka.enabled,
        "a Kafka-enabled CounterCluster publishes events"
    );
    assert_eq!(config.kafka.brokers, vec!["kafka:9092"]);
    assert_eq!(config.kafka.topic, "likes_events");
    assert_eq!(config.kafka.outbox_max_len, 5000);
    assert_eq!(
        config.kafka.outbox_full_policy,
        highpress::config::OutboxFullPolicy::Drop
    );

    // Leaderboards off, and the bounds of topK and flushIntervalMillis the CRD allows.
    for (label, enabled, top_k, flush_interval_millis) in [
        ("leaderboards-off-widest", false, 100_000, 1),
        ("leaderboards-narrowest", true, 100, 60_000),
    ] {
        let mut cc = cluster();
        cc.spec.counter.leaderboards.enabled = enabled;
        cc.spec.counter.leaderboards.top_k = top_k;
        cc.spec.counter.leaderboards.flush_interval_millis = flush_interval_millis;
        let config = load_rendered_config(&cc, label);
        assert_eq!(config.leaderboard.enabled, enabled, "{label}");
        assert_eq!(
            config.leaderboard.top_k,
            usize::try_from(top_k).expect("positive"),
            "{label}"
        );
        assert_eq!(
            config.leaderboard.flush_interval,
            Duration::from_millis(u64::try_from(flush_interval_millis).expect("positive")),
            "{label}"
        );
    }
    // The defaults render explicitly, and equal the service's own defaults.
    let plain = load_rendered_config(&cluster(), "default-leaderboards");
    let service_defaults = Config::default().leaderboard;
    assert_eq!(plain.leaderboard.enabled, service_defaults.enabled);
    assert_eq!(plain.leaderboard.top_k, service_defaults.top_k);
    assert_eq!(
        plain.leaderboard.flush_interval,
        service_defaults.flush_interval
    );

    let redis_cluster = cluster().with_external_redis(
        // One seed URL: the spec checks reject a comma-separated seed list (see validate.rs).
        "redis://seed-a:6379",
        Some(("redis-auth", "password")),
        true,
    );
    let config = load_rendered_config(&redis_cluster, "redis-cluster");
    assert!(config.redis.cluster);
    assert_eq!(config.redis.addr, "redis://seed-a:6379");

    let plain_external = cluster().with_external_redis("redis://redis.example:6379/2", None, false);
    let config = load_rendered_config(&plain_external, "plain-external");
    assert_eq!(
        config.redis.url().expect("a URL"),
        "redis://redis.example:6379/2"
    );
}

/// The CRD's `minimum` and `maximum` of `spec.counter.leaderboards.<field>`.
fn leaderboard_bounds(field: &str) -> (i64, Option<i64>) {
    let crd = serde_json::to_value(CounterCluster::crd()).expect("the CRD serializes");
    let schema = &crd
        .pointer(
            "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/counter/properties/\
             leaderboards/properties",
        )
        .expect("spec.counter.leaderboards in the CRD")[field];
    let bound = |key: &str| schema[key].as_f64().map(|b| b as i64);
    (
        bound("minimum").unwrap_or_else(|| panic!("{field} has a minimum: {schema}")),
        bound("maximum"),
    )
}

/// The CRD admits exactly the `leaderboard.top_k` and `leaderboard.flush_interval_ms` values
/// the service accepts: each bound loads, and one past it is rejected naming the key.
#[test]
fn the_crds_leaderboard_bounds_are_the_services() {
    let (top_k_min, top_k_max) = leaderboard_bounds("topK");
    let top_k_max = top_k_max.expect("topK has a maximum");
    let (flush_min, flush_max) = leaderboard_bounds("flushIntervalMillis");
    assert_eq!(flush_max, None, "the service has no largest flush interval");
    let with = |top_k: i64, flush_interval_millis: i64| {
        let mut cc = cluster();
        cc.spec.counter.leaderboards.top_k = i32::try_from(top_k).expect("an i32");
        cc.spec.counter.leaderboards.flush_interval_millis = flush_interval_millis;
        cc
    };
    for (top_k, flush) in [(top_k_min, flush_min), (top_k_max, flush_min)] {
        let config = load_rendered_config(&with(top_k, flush), &format!("bounds-{top_k}-{flush}"));
        assert_eq!(i64::try_from(config.leaderboard.top_k), Ok(top_k));
    }
    for (top_k, flush, key) in [
        (top_k_min - 1, flush_min, "leaderboard.top_k"),
        (top_k_max + 1, flush_min, "leaderboard.top_k"),
        (top_k_min, flush_min - 1, "leaderboard.flush_interval_ms"),
    ] {
        let label = format!("out-of-bounds-{top_k}-{flush}");
        let (loaded, text) = try_load_rendered_config(&with(top_k, flush), &label);
        let error = loaded.expect_err(&format!("{label}: the service must reject it\n{text}"));
        assert!(error.contains(key), "{label}: {error}");
    }
}

fn kinds(yaml: &str) -> Vec<String> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|document| {
            let value: Value = serde::Deserialize::deserialize(document).expect("YAML document");
            format!(
                "{} {}",
                value["apiVersion"].as_str().expect("apiVersion"),
                value["kind"].as_str().expect("kind")
            )
        })
        .collect()
}

const HIGHPRESS_KINDS: [&str; 6] = [
    "v1 Service",
    "apps/v1 Deployment",
    "v1 Service",
    "apps/v1 Deployment",
    "policy/v1 PodDisruptionBudget",
    "policy/v1 PodDisruptionBudget",
];

fn expected_kinds(cc: &CounterCluster) -> Vec<String> {
    let mut kinds = vec!["v1 ConfigMap"];
    let managed = cc.spec.redis.mode == RedisMode::Managed;
    // Replicated managed Redis: the sentinels' Service and StatefulSet, two more PDBs and one
    // more NetworkPolicy.
    let replicated = managed && cc.spec.redis.managed.replicas > 1;
    if managed {
        kinds.extend(["v1 Service", "apps/v1 StatefulSet"]);
    }
    if replicated {
        kinds.extend(["v1 Service", "apps/v1 StatefulSet"]);
    }
    kinds.extend(&HIGHPRESS_KINDS[..4]);
    if cc.spec.gateway.autoscaling.enabled {
        kinds.push("autoscaling/v2 HorizontalPodAutoscaler");
    }
    kinds.extend(&HIGHPRESS_KINDS[4..]);
    if replicated {
        kinds.extend(&HIGHPRESS_KINDS[4..]);
    }
    if cc.spec.network_policy.enabled {
        kinds.push("networking.k8s.io/v1 NetworkPolicy");
        if managed {
            kinds.push("networking.k8s.io/v1 NetworkPolicy");
        }
        if replicated {
            kinds.push("networking.k8s.io/v1 NetworkPolicy");
        }
    }
    if cc.spec.observability.metrics.service_monitor.enabled {
        kinds.push("monitoring.coreos.com/v1 ServiceMonitor");
    }
    kinds.into_iter().map(str::to_owned).collect()
}

#[test]
fn render_subcommand_prints_the_expected_kinds_for_every_example() {
    for name in example_names() {
        let path = support::repo_root().join("deploy/examples").join(&name);
        let output = Command::new(env!("CARGO_BIN_EXE_highpress-operator"))
            .arg("render")
            .arg(&path)
            .output()
            .expect("running highpress-operator render");
        assert!(output.status.success(), "{name}: {output:?}");
        let yaml = String::from_utf8(output.stdout).expect("UTF-8 output");
        let clusters = parse_counter_clusters(&example_text(&name)).expect("parses");
        let expected: Vec<String> = clusters.iter().flat_map(expected_kinds).collect();
        assert_eq!(kinds(&yaml), expected, "{name}");
        assert!(
            !yaml.contains("ownerReferences"),
            "{name}: a file has no uid"
        );
    }
}

#[test]
fn the_examples_cover_managed_and_external_redis_and_autoscaling() {
    let rendered: Vec<Vec<String>> = [
        "countercluster-minimal.yaml",
        "countercluster-production.yaml",
    ]
    .into_iter()
    .map(|name| kinds(&render(&example_text(name), &BuildContext::default()).expect("renders")))
    .collect();
    assert!(rendered[0].contains(&"apps/v1 StatefulSet".to_owned()));
    assert!(!rendered[0].contains(&"autoscaling/v2 HorizontalPodAutoscaler".to_owned()));
    assert!(!rendered[1].contains(&"apps/v1 StatefulSet".to_owned()));
    assert!(rendered[1].contains(&"autoscaling/v2 HorizontalPodAutoscaler".to_owned()));
}

#[test]
fn render_takes_every_document_of_a_multi_document_file() {
    let names = example_names();
    let joined = names
        .iter()
        .map(|name| example_text(name))
        .collect::<Vec<_>>()
        .join("\n---\n");
    let yaml = render(&joined, &BuildContext::default()).expect("renders");
    let config_maps = kinds(&yaml)
        .iter()
        .filter(|k| k.as_str() == "v1 ConfigMap")
        .count();
    assert_eq!(config_maps, names.len());
}

#[test]
fn render_defaults_the_image_tag_to_the_operator_version() {
    let yaml = render(
        &example_text("countercluster-minimal.yaml"),
        &BuildContext::default(),
    )
    .expect("renders");
    assert!(
        yaml.contains(&format!("image: highpress:{}\n", env!("CARGO_PKG_VERSION"))),
        "{yaml}"
    );
}

#[test]
fn render_rejects_a_document_that_is_not_a_counter_cluster() {
    let input = "apiVersion: highpress.dev/v1alpha1\nkind: CounterCluster\nmetadata: {name: a}\nspec: {}\n\
                 ---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
    let error = render(input, &BuildContext::default()).expect_err("a ConfigMap is rejected");
    let message = error.to_string();
    assert!(message.starts_with("document 2:"), "{message}");
    assert!(message.contains("v1 ConfigMap"), "{message}");

    let nameless = "apiVersion: highpress.dev/v1alpha1\nkind: CounterCluster\nspec: {}\n";
    let error = render(nameless, &BuildContext::default()).expect_err("no name is rejected");
    assert!(error.to_string().contains("metadata.name"), "{error}");

    let output = Command::new(env!("CARGO_BIN_EXE_highpress-operator"))
        .args(["render", "/nonexistent/countercluster.yaml"])
        .output()
        .expect("running highpress-operator render");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
}

/// `render` prints what the reconciler would apply, so a spec the reconciler reports
/// `Degraded/InvalidSpec` renders nothing, with the condition's message (the reconcile
/// scenarios compare the two for the same CounterCluster).
#[test]
fn render_rejects_a_spec_the_reconciler_rejects() {
    let valid = "apiVersion: highpress.dev/v1alpha1\nkind: CounterCluster\nmetadata: {name: likes}\nspec: {}\n";
    let invalid = "apiVersion: highpress.dev/v1alpha1\nkind: CounterCluster\nmetadata: {name: 1likes}\n\
                   spec: {idempotency: {ttl: 1w}}\n";
    let both = format!("{valid}---\n{invalid}");
    let error = render(&both, &BuildContext::default()).expect_err("an invalid spec is rejected");
    assert_eq!(
        error.to_string(),
        "document 2: CounterCluster 1likes: invalid spec: metadata.name: must start with a \
         lowercase letter (Service names are DNS-1035 labels); spec.idempotency.ttl: \"1w\" is \
         not a duration like 500ms, 30s, 2m, 24h or 7d"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_highpress-operator"))
        .args(["render", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running highpress-operator render -");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), both.as_bytes())
        .expect("writing the CounterClusters");
    let output = child.wait_with_output().expect("render exits");
    assert!(!output.status.success());
    assert!(
        output.stdout.is_empty(),
        "nothing is printed, not even the valid one"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid spec: metadata.name"), "{stderr}");
}

#[test]
fn every_example_passes_the_spec_checks_beyond_cel() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for cc in highpress_operator::render::parse_counter_clusters(&text).unwrap() {
            let problems = highpress_operator::reconcile::validate::validate(&cc).err();
            assert!(problems.is_none(), "{}: {problems:?}", path.display());
        }
    }
}
