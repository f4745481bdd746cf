//! Shared fixtures of the operator's integration tests: paths, the examples in
//! `deploy/examples/`, a CounterCluster builder for edge cases, the control plane and a Jaeger.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod control_plane;
pub mod fake_api;
pub mod jaeger;

use std::path::{Path, PathBuf};

use highpress_operator::crd::{
    CounterCluster, CounterClusterSpec, CounterTypeSpec, ExternalRedisSpec, ExternalSentinelSpec,
    RedisMode, SecretKeyRef,
};
use highpress_operator::reconcile::validate::{ValidCounterCluster, validate};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent directory")
        .to_path_buf()
}

/// Names of every file in `deploy/examples/`, sorted.
pub fn example_names() -> Vec<String> {
    let dir = repo_root().join("deploy/examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 file name")
        })
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "deploy/examples/ has no examples");
    names
}

/// The text of `deploy/examples/<name>`.
pub fn example_text(name: &str) -> String {
    let path = repo_root().join("deploy/examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A CounterCluster `likes` in namespace `apps`, as the API server would hand it to the
/// reconciler (with a uid), with every spec default.
pub fn cluster() -> CounterCluster {
    let mut cc = CounterCluster::new("likes", CounterClusterSpec::default());
    // Every optional feature off, NetworkPolicies included (on by default), so each test
    // states what it turns on.
    cc.spec.network_policy.enabled = false;
    cc.metadata.namespace = Some("apps".to_owned());
    cc.metadata.uid = Some("5f0c2a4e-1111-2222-3333-444455556666".to_owned());
    cc
}

/// Fixture modifiers, so that a test states only what it changes.
pub trait CounterClusterFixture {
    fn with_gateway_replicas(self, replicas: i32) -> Self;
    fn with_counter_replicas(self, replicas: i32) -> Self;
    fn with_autoscaling(self, min: i32, max: i32) -> Self;
    fn with_external_redis(self, url: &str, secret: Option<(&str, &str)>, cluster: bool) -> Self;
    fn with_redis_exporter(self) -> Self;
    fn without_uid(self) -> Self;
    /// The fixture as the builders take it; panics with the problems if it is invalid.
    fn valid(self) -> ValidCounterCluster;
}

impl CounterClusterFixture for CounterCluster {
    fn with_gateway_replicas(mut self, replicas: i32) -> Self {
        self.spec.gateway.replicas = replicas;
        self
    }

    fn with_counter_replicas(mut self, replicas: i32) -> Self {
        self.spec.counter.replicas = replicas;
        self
    }

    fn with_autoscaling(mut self, min: i32, max: i32) -> Self {
        let autoscaling = &mut self.spec.gateway.autoscaling;
        autoscaling.enabled = true;
        autoscaling.min_replicas = min;
        autoscaling.max_replicas = max;
        self
    }

    fn with_external_redis(
        mut self,
        url: &str,
        secret: Option<(&str, &str)>,
        cluster: bool,
    ) -> Self {
        self.spec.redis.mode = RedisMode::External;
        self.spec.redis.external = Some(ExternalRedisSpec {
            url: url.to_owned(),
            password_secret_ref: secret.map(|(name, key)| SecretKeyRef {
                name: name.to_owned(),
                key: key.to_owned(),
            }),
            cluster,
            sentinel: None,
            min_replicas_ack: 0,
            tls: None,
        });
        self
    }

    fn with_redis_exporter(mut self) -> Self {
        self.spec.redis.managed.exporter.enabled = true;
        self
    }

    fn without_uid(mut self) -> Self {
        self.metadata.uid = None;
        self
    }

    fn valid(self) -> ValidCounterCluster {
        validate(&self).unwrap_or_else(|invalid| panic!("an invalid fixture: {invalid}"))
    }
}

/// One CounterCluster per CEL rule of the CRD that breaks exactly that rule, with the rule's
/// message. `cel_rules.rs` checks them with kube's client-side CEL engine, and the end-to-end
/// suite against a real kube-apiserver.
pub fn cel_counterexamples() -> Vec<(&'static str, CounterCluster)> {
    vec![
        (
            "cache.maxEntries must be at least 1 when cache.ttlMillis is above 0",
            {
                let mut cc = cluster();
                cc.spec.counter.cache.ttl_millis = 1000;
                cc.spec.counter.cache.max_entries = 0;
                cc
            },
        ),
        (
            "events.kafka.brokers must list at least one broker when events.kafka.enabled is true",
            {
                let mut cc = cluster();
                cc.spec.events.kafka.enabled = true;
                cc.spec.events.kafka.brokers.clear();
                cc
            },
        ),
        (
            "counterTypes: maxIncrement has no effect with uniquePerUser, which accepts only +1 and -1",
            {
                let mut cc = cluster();
                cc.spec.counter_types.insert(
                    "like".to_owned(),
                    CounterTypeSpec {
                        unique_per_user: true,
                        max_increment: Some(5),
                    },
                );
                cc
            },
        ),
        (
            "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
            {
                let mut cc = cluster();
                cc.spec.gateway.autoscaling.min_replicas = 5;
                cc.spec.gateway.autoscaling.max_replicas = 2;
                cc
            },
        ),
        (
            "observability.tracing.otlpEndpoint is required when tracing is enabled",
            {
                let mut cc = cluster();
                cc.spec.observability.tracing.enabled = true;
                cc.spec.observability.tracing.otlp_endpoint = None;
                cc
            },
        ),
        (
            "redis.external.url must start with redis:// or rediss://",
            {
                let mut cc = cluster();
                cc.spec.redis.mode = RedisMode::External;
                cc.spec.redis.external = Some(ExternalRedisSpec {
                    url: "http://redis.example:6379".to_owned(),
                    password_secret_ref: None,
                    cluster: false,
                    sentinel: None,
                    min_replicas_ack: 0,
                    tls: None,
                });
                cc
            },
        ),
        (
            "security.auth.tokensSecretRef is required when security.auth.enabled is true",
            {
                let mut cc = cluster();
                cc.spec.security.auth.enabled = true;
                cc
            },
        ),
        (
            "redis.managed.minReplicasAck must be below redis.managed.replicas",
            {
                let mut cc = cluster();
                cc.spec.redis.managed.replicas = 3;
                cc.spec.redis.managed.min_replicas_ack = Some(3);
                cc
            },
        ),
        (
            "redis.external.sentinel and redis.external.cluster are mutually exclusive",
            {
                let mut cc = cluster();
                cc.spec.redis.mode = RedisMode::External;
                cc.spec.redis.external = Some(ExternalRedisSpec {
                    url: "redis://redis.example:6379".to_owned(),
                    password_secret_ref: None,
                    cluster: true,
                    sentinel: Some(ExternalSentinelSpec {
                        master_name: "counts".to_owned(),
                        addrs: vec!["sentinel-0.example:26379".to_owned()],
                        password_secret_ref: None,
                    }),
                    min_replicas_ack: 0,
                    tls: None,
                });
                cc
            },
        ),
        (
            "redis.external with a url is required when redis.mode is External",
            {
                let mut cc = cluster();
                cc.spec.redis.mode = RedisMode::External;
                cc.spec.redis.external = None;
                cc
            },
        ),
    ]
}

/// The `highpress` binary cargo built for the workspace's tests (`cargo test --workspace`).
pub fn highpress_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("highpress");
    assert!(
        binary.exists(),
        "{} is missing: the pod wiring check runs the service binary that `cargo test --workspace` builds (or run `cargo build -p highpress`)",
        binary.display()
    );
    binary
}
