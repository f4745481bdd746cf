//! The counter tier: Deployment `<name>-counter` and the headless Service `<name>-counter`
//! that the gateway's DNS discovery (`discovery.dns`) resolves to every ready counter pod.
//!
//! Contract: only the counter pods receive the Redis password, as the environment variable
//! `HIGHPRESS_REDIS__PASSWORD` from a Secret reference: the managed Redis's
//! `<name>-redis-auth-<uid8>`, or the external Redis's `passwordSecretRef`; and, with
//! Sentinel, the sentinels' password as `HIGHPRESS_REDIS__SENTINEL__PASSWORD` (the managed
//! Redis's Secret again, or the external Sentinel's `passwordSecretRef`).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, GRPCAction, Probe, SecretKeySelector, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{
    CONFIG_FILE_PATH, GRPC_PORT, HTTP_PORT, REDIS_PASSWORD_ENV, SENTINEL_PASSWORD_ENV,
};
use super::pod::{
    highpress_image, highpress_pod_template, http_container_port, http_probe, pull_policy,
};
use super::redis::{REDIS_PASSWORD_KEY, redis_secret_name};
use super::{BuildContext, Component, child_name, object_meta, selector_labels};
use crate::crd::{CounterCluster, RedisMode};
use crate::reconcile::validate::ValidCounterCluster;

/// The Secret key holding the Redis password the counter pods use, if any: always for managed
/// Redis, and for external Redis when `passwordSecretRef` is set.
pub fn redis_password_secret(cc: &CounterCluster) -> Option<SecretKeySelector> {
    match cc.spec.redis.mode {
        RedisMode::Managed => Some(SecretKeySelector {
            name: redis_secret_name(cc),
            key: REDIS_PASSWORD_KEY.to_owned(),
            optional: Some(false),
        }),
        RedisMode::External => cc
            .spec
            .redis
            .external
            .as_ref()
            .and_then(|e| e.password_secret_ref.as_ref())
            .map(|r| SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
    }
}

/// The Secret key holding the sentinels' password the counter pods use, if any: the managed
/// Redis's own Secret when it is replicated (the managed sentinels require the Redis
/// password), and an external Sentinel's `passwordSecretRef` when it is set.
pub fn sentinel_password_secret(cc: &CounterCluster) -> Option<SecretKeySelector> {
    match cc.spec.redis.mode {
        RedisMode::Managed => cc
            .spec
            .redis
            .managed
            .replicated()
            .then(|| redis_password_secret(cc))
            .flatten(),
        RedisMode::External => cc
            .spec
            .redis
            .external
            .as_ref()
            .and_then(|e| e.sentinel.as_ref()?.password_secret_ref.as_ref())
            .map(|r| SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
    }
}

fn secret_env(name: &str, secret: SecretKeySelector) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(secret),
            ..EnvVarSource::default()
        }),
    }
}

/// The counter's readiness: its gRPC health service on 50051, or, with mutual TLS there (which
/// the kubelet's gRPC probe cannot speak), `/readyz` on the HTTP port, which reports the same
/// store health.
fn counter_readiness_probe(cc: &ValidCounterCluster) -> Probe {
    if cc.spec.security.tls.grpc {
        return http_probe(cc, "/readyz", 5, 2);
    }
    Probe {
        grpc: Some(GRPCAction {
            port: GRPC_PORT,
            service: None,
        }),
        period_seconds: Some(5),
        failure_threshold: Some(2),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// The counter Deployment: `highpress counter --config /etc/highpress/config.yaml`, with a
/// gRPC readiness probe on 50051 ([`counter_readiness_probe`]) and an HTTP liveness probe on
/// `/livez`.
pub fn build_counter_deployment(cc: &ValidCounterCluster, ctx: &BuildContext) -> Deployment {
    let counter = &cc.spec.counter;
    let env: Vec<EnvVar> = [
        redis_password_secret(cc).map(|s| secret_env(REDIS_PASSWORD_ENV, s)),
        sentinel_password_secret(cc).map(|s| secret_env(SENTINEL_PASSWORD_ENV, s)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let env = (!env.is_empty()).then_some(env);
    let container = Container {
        name: "counter".to_owned(),
        image: Some(highpress_image(cc, ctx)),
        image_pull_policy: Some(pull_policy(cc.spec.image.pull_policy)),
        command: Some(vec!["highpress".to_owned()]),
        args: Some(vec![
            "counter".to_owned(),
            "--config".to_owned(),
            CONFIG_FILE_PATH.to_owned(),
        ]),
        env,
        ports: Some(vec![
            http_container_port(),
            ContainerPort {
                name: Some("grpc".to_owned()),
                container_port: GRPC_PORT,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]),
        resources: Some(counter.resources.clone()),
        liveness_probe: Some(http_probe(cc, "/livez", 10, 3)),
        readiness_probe: Some(counter_readiness_probe(cc)),
        ..Container::default()
    };
    Deployment {
        metadata: object_meta(cc, child_name(cc, "counter"), Component::Counter),
        spec: Some(DeploymentSpec {
            replicas: Some(counter.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cc, Component::Counter)),
                match_expressions: None,
            },
            template: highpress_pod_template(cc, Component::Counter, container),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The headless Service (`clusterIP: None`) on gRPC port 50051 and HTTP port 8080; only ready
/// pods are published.
pub fn build_counter_headless_service(cc: &ValidCounterCluster) -> Service {
    Service {
        metadata: object_meta(cc, child_name(cc, "counter"), Component::Counter),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(false),
            selector: Some(selector_labels(cc, Component::Counter)),
            ports: Some(vec![
                ServicePort {
                    name: Some("grpc".to_owned()),
                    port: GRPC_PORT,
                    target_port: Some(IntOrString::String("grpc".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    app_protocol: Some("kubernetes.io/h2c".to_owned()),
                    ..ServicePort::default()
                },
                // Metrics and probes; the ServiceMonitor scrapes it. Discovery reads only the
                // A records, so a second port changes nothing for the gateway.
                ServicePort {
                    name: Some("http".to_owned()),
                    port: HTTP_PORT,
                    target_port: Some(IntOrString::String("http".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
