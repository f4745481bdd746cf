//! The CounterCluster examples in `deploy/examples/` deserialize into the Rust types with the
//! expected values, and validate against the committed CRD's openAPIV3Schema.
//!
//! The schema check is a small structural validator written for this CRD (types, properties,
//! unknown fields, required, enums, minimum/maximum, string lengths, int-or-string). It does
//! not evaluate CEL rules or regex patterns: a real API server does both.

use std::path::PathBuf;

use highpress_operator::crd::{CounterCluster, CounterClusterSpec, PullPolicy, RedisMode};
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent directory")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn example(name: &str) -> CounterCluster {
    serde_norway::from_str(&read(&format!("deploy/examples/{name}")))
        .unwrap_or_else(|e| panic!("{name} does not deserialize into CounterCluster: {e}"))
}

const EXAMPLES: [&str; 3] = [
    "countercluster-minimal.yaml",
    "countercluster-production.yaml",
    "countercluster-managed-storage.yaml",
];

#[test]
fn minimal_example_takes_every_default() {
    let cc = example("countercluster-minimal.yaml");
    assert_eq!(cc.metadata.name.as_deref(), Some("likes"));
    assert_eq!(cc.spec, CounterClusterSpec::default());
    assert_eq!(cc.spec.gateway.replicas, 2);
    assert_eq!(cc.spec.counter.replicas, 3);
    assert_eq!(cc.spec.counter.coalescing.max_batch, 4096);
    assert_eq!(cc.spec.counter.cache.ttl_millis, 1000);
    assert!(cc.spec.counter.leaderboards.enabled);
    assert_eq!(cc.spec.counter.leaderboards.top_k, 1000);
    assert_eq!(cc.spec.counter.leaderboards.flush_interval_millis, 1000);
    assert_eq!(cc.spec.redis.mode, RedisMode::Managed);
    assert_eq!(cc.spec.redis.managed.storage.size.0, "1Gi");
    assert!(cc.spec.redis.managed.append_only);
    assert!(cc.spec.redis.external.is_none());
    assert!(!cc.spec.paused);
}

#[test]
fn production_example_uses_external_redis_with_secret_autoscaling_and_tracing() {
    let spec = example("countercluster-production.yaml").spec;
    assert_eq!(spec.image.tag.as_deref(), Some("0.1.0"));
    assert_eq!(spec.image.pull_policy, PullPolicy::IfNotPresent);
    assert_eq!(spec.redis.mode, RedisMode::External);
    let external = spec.redis.external.expect("external redis is set");
    assert_eq!(external.url, "rediss://redis.data.svc:6380/0");
    let secret = external
        .password_secret_ref
        .expect("password secret is set");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("redis-auth", "password")
    );
    assert!(!external.cluster);
    let autoscaling = spec.gateway.autoscaling;
    assert!(autoscaling.enabled);
    assert_eq!(
        (autoscaling.min_replicas, autoscaling.max_replicas),
        (3, 12)
    );
    assert_eq!(autoscaling.target_cpu_utilization_percentage, 65);
    assert!(spec.observability.tracing.enabled);
    assert_eq!(
        spec.observability.tracing.otlp_endpoint.as_deref(),
        Some("http://otel-collector.observability:4317")
    );
    assert!((spec.observability.tracing.sampling_ratio - 0.05).abs() < f64::EPSILON);
    assert!(spec.observability.metrics.service_monitor.enabled);
    assert_eq!(spec.counter.coalescing.max_batch, 8192);
    assert_eq!(spec.counter.leaderboards.top_k, 2000);
    assert_eq!(spec.counter.leaderboards.flush_interval_millis, 2000);
    assert_eq!(spec.pod_template.tolerations.len(), 1);
    assert_eq!(spec.idempotency.ttl, "1h");
    assert!(!spec.api.allow_reset);
}

#[test]
fn managed_storage_example_sets_volume_size_storage_class_and_the_exporter() {
    let spec = example("countercluster-managed-storage.yaml").spec;
    assert_eq!(spec.redis.mode, RedisMode::Managed);
    assert_eq!(spec.redis.managed.storage.size.0, "20Gi");
    assert_eq!(
        spec.redis.managed.storage.storage_class_name.as_deref(),
        Some("fast-ssd")
    );
    assert_eq!(spec.counter.replicas, 2);
    // The exporter, scraped by the ServiceMonitor, so that a rendered StatefulSet with the
    // sidecar goes through the Kubernetes schema checks.
    assert!(spec.redis.managed.exporter.enabled);
    assert!(spec.observability.metrics.service_monitor.enabled);
    // TLS on the managed Redis alone, so the TLS Redis, sentinel and exporter containers go
    // through the same checks.
    assert!(spec.security.tls.redis);
    assert!(!spec.security.tls.api && !spec.security.tls.grpc);
    // Fields the example leaves out keep their defaults.
    assert_eq!(spec.gateway.replicas, 2);
    assert_eq!(spec.counter.cache.max_entries, 100_000);
    assert_eq!(
        spec.redis.managed.exporter.image,
        "oliver006/redis_exporter:v1.67.0"
    );
}

fn crd_schema() -> Value {
    let crd: Value = serde_norway::from_str(&read(highpress_operator::CRD_MANIFEST_PATH))
        .expect("the committed CRD is YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Structural validation of `value` against an openAPIV3Schema node; errors name the path.
fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return;
    }
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            errors.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(format!("{path}: expected int or string, got {value}"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    match schema["type"].as_str() {
        Some("object") => {
            let Some(object) = value.as_object() else {
                errors.push(format!("{path}: expected an object, got {value}"));
                return;
            };
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap_or_default();
                if !object.contains_key(key) {
                    errors.push(format!("{path}: missing required field {key}"));
                }
            }
            for (key, child) in object {
                let child_path = format!("{path}.{key}");
                if let Some(child_schema) = schema["properties"].get(key) {
                    validate(child_schema, child, &child_path, errors);
                } else if schema["additionalProperties"].is_object() {
                    validate(&schema["additionalProperties"], child, &child_path, errors);
                } else {
                    errors.push(format!("{child_path}: unknown field"));
                }
            }
        }
        Some("array") => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    validate(&schema["items"], item, &format!("{path}[{i}]"), errors);
                }
            }
            None => errors.push(format!("{path}: expected an array, got {value}")),
        },
        Some("string") => match value.as_str() {
            Some(s) => {
                let len = s.chars().count() as u64;
                if schema["minLength"].as_u64().is_some_and(|min| len < min) {
                    errors.push(format!("{path}: shorter than minLength"));
                }
                if schema["maxLength"].as_u64().is_some_and(|max| len > max) {
                    errors.push(format!("{path}: longer than maxLength"));
                }
            }
            None => errors.push(format!("{path}: expected a string, got {value}")),
        },
        Some(kind @ ("integer" | "number")) => {
            let ok = if kind == "integer" {
                value.is_i64() || value.is_u64()
            } else {
                value.is_number()
            };
            if !ok {
                errors.push(format!("{path}: expected {kind}, got {value}"));
                return;
            }
            let n = value.as_f64().unwrap_or_default();
            if schema["minimum"].as_f64().is_some_and(|min| n < min) {
                errors.push(format!("{path}: {n} is below the minimum"));
            }
            if schema["maximum"].as_f64().is_some_and(|max| n > max) {
                errors.push(format!("{path}: {n} is above the maximum"));
            }
        }
        Some("boolean") => {
            if !value.is_boolean() {
                errors.push(format!("{path}: expected a boolean, got {value}"));
            }
        }
        other => errors.push(format!(
            "{path}: schema node has no usable type ({other:?})"
        )),
    }
}

fn schema_errors(document: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let schema = crd_schema();
    // The API server validates metadata itself; check what the CRD schema owns.
    for key in ["spec", "status"] {
        if let Some(part) = document.get(key) {
            validate(&schema["properties"][key], part, key, &mut errors);
        }
    }
    errors
}

#[test]
fn every_example_validates_against_the_crd_schema() {
    for name in EXAMPLES {
        let document: Value = serde_norway::from_str(&read(&format!("deploy/examples/{name}")))
            .expect("example is YAML");
        assert_eq!(document["apiVersion"], "highpress.dev/v1alpha1", "{name}");
        assert_eq!(document["kind"], "CounterCluster", "{name}");
        let errors = schema_errors(&document);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn schema_check_rejects_unknown_fields_and_out_of_range_values() {
    let document = serde_json::json!({
        "spec": {
            "gateway": {"replica": 2, "replicas": 0},
            "redis": {"mode": "Sentinel"},
            "observability": {"tracing": {"samplingRatio": 1.5}}
        }
    });
    let errors = schema_errors(&document);
    for expected in [
        "spec.gateway.replica: unknown field",
        "spec.gateway.replicas: 0 is below the minimum",
        "spec.redis.mode: \"Sentinel\" is not one of",
        "spec.observability.tracing.samplingRatio: 1.5 is above the maximum",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "no error starting with {expected:?} in {errors:#?}"
        );
    }
}

/// Walks every schema node; a real API server rejects a CRD whose defaults do not validate
/// against their own node, or whose nodes have no type (a non-structural schema).
fn check_node(schema: &Value, path: &str, errors: &mut Vec<String>) {
    let untyped_ok = schema["x-kubernetes-int-or-string"] == Value::Bool(true)
        || schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
    if schema["type"].as_str().is_none() && !untyped_ok {
        errors.push(format!("{path}: no type"));
    }
    for forbidden in ["$ref", "anyOf", "oneOf", "allOf", "not"] {
        if schema.get(forbidden).is_some() {
            errors.push(format!(
                "{path}: uses {forbidden}, left in by schema generation"
            ));
        }
    }
    if let Some(default) = schema.get("default") {
        validate(schema, default, &format!("{path}(default)"), errors);
    }
    for (key, child) in schema["properties"].as_object().into_iter().flatten() {
        check_node(child, &format!("{path}.{key}"), errors);
    }
    if schema["items"].is_object() {
        check_node(&schema["items"], &format!("{path}[]"), errors);
    }
    if schema["additionalProperties"].is_object() {
        check_node(
            &schema["additionalProperties"],
            &format!("{path}{{}}"),
            errors,
        );
    }
}

#[test]
fn crd_schema_is_typed_everywhere_and_every_default_validates() {
    let mut errors = Vec::new();
    check_node(&crd_schema(), "", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn crd_declares_short_name_status_subresource_and_printer_columns() {
    let crd: Value = serde_norway::from_str(&read(highpress_operator::CRD_MANIFEST_PATH))
        .expect("the committed CRD is YAML");
    assert_eq!(crd["metadata"]["name"], "counterclusters.highpress.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["cc"])
    );
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<String> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_uppercase())
        .collect();
    assert_eq!(
        columns,
        [
            "READY", "GATEWAY", "COUNTER", "REDIS", "PRIMARY", "ENDPOINT", "AGE"
        ]
    );
    // PRIMARY only with `-o wide`.
    let primary = &version["additionalPrinterColumns"][4];
    assert_eq!(
        (primary["jsonPath"].as_str(), primary["priority"].as_i64()),
        (Some(".status.redis.primary"), Some(1))
    );
}

#[test]
fn crd_carries_the_cross_field_cel_rules() {
    let schema = crd_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    let rules = |node: &Value| -> Vec<String> {
        node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        rules(&spec["redis"]),
        ["self.mode != 'External' || has(self.external)"]
    );
    assert_eq!(
        rules(&spec["gateway"]["properties"]["autoscaling"]),
        ["self.minReplicas <= self.maxReplicas"]
    );
    assert!(rules(&spec["redis"]["properties"]["external"])[0].contains("startsWith('redis://')"));
    assert_eq!(spec["gateway"]["properties"]["replicas"]["minimum"], 1.0);
    assert_eq!(spec["counter"]["properties"]["replicas"]["minimum"], 1.0);
    assert_eq!(
        schema["properties"]["spec"]["properties"]["redis"]["properties"]["external"]["required"],
        serde_json::json!(["url"])
    );
}
