//! The sentinels of a replicated managed Redis (`redis.managed.replicas` above 1): the
//! StatefulSet `<name>-redis-sentinel` of [`SENTINELS`] pods and its headless Service, plus the
//! names and addresses the Redis pods, the sentinels and the service config share.
//!
//! Contract: every sentinel and every Redis pod has a stable hostname under its StatefulSet's
//! headless Service (`<pod>.<service>.<ns>.svc`), which is what the sentinels monitor, announce
//! and hand to clients (`resolve-hostnames`, `announce-hostnames`), so a pod that restarts with
//! a new IP keeps its identity. Sentinel rewrites its config file, so each sentinel generates
//! it at start in an emptyDir ([`SENTINEL_START_SCRIPT`]) from the environment set here; the
//! Redis password from the Secret `<name>-redis-auth-<uid8>` is both the sentinels' own
//! (`requirepass`) and the one they use for Redis (`auth-pass`). The operator reads the
//! topology as a passwordless user with read-only rights ([`OBSERVER_USER`]). Quorum is 2 of 3.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSpec, Probe, ResourceRequirements,
    Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::REDIS_PORT;
use super::pod::{
    REDIS_UID, pod_template, restricted_container_security_context, restricted_pod_security_context,
};
use super::redis_tls::{Renewal, listen_args, redis_cli_tls_flags, supervise};
use super::security::tls_secret_name;
use super::{Component, child_name, namespace, object_meta, selector_labels};
use crate::crd::CounterCluster;
use crate::reconcile::replication::{OBSERVER_RULES, OBSERVER_USER};
use crate::reconcile::validate::ValidCounterCluster;

/// Port every sentinel listens on, named `sentinel`.
pub const SENTINEL_PORT: i32 = 26379;
/// Number of sentinels.
pub const SENTINELS: i32 = 3;
/// Sentinels that must agree the primary is down before one of them fails over.
pub const SENTINEL_QUORUM: i32 = 2;
/// How long the primary may not answer before a sentinel considers it down.
pub const SENTINEL_DOWN_AFTER_MS: i64 = 5_000;
/// Sentinel's `failover-timeout`: how long before a failed failover is retried.
pub const SENTINEL_FAILOVER_TIMEOUT_MS: i64 = 60_000;
/// Where the sentinels' emptyDir is mounted; the config file is generated in it.
pub const SENTINEL_CONFIG_DIR: &str = "/etc/sentinel";
/// The generated sentinel config file.
pub const SENTINEL_CONFIG_FILE: &str = "/etc/sentinel/sentinel.conf";
/// The script that starts each Redis pod of a replicated Redis (`sh -c`).
pub const REDIS_START_SCRIPT: &str = include_str!("scripts/redis-start.sh");
/// The script that writes the sentinel config and starts each sentinel (`sh -c`).
pub const SENTINEL_START_SCRIPT: &str = include_str!("scripts/sentinel-start.sh");

/// The name the sentinels monitor the primary under: the CounterCluster's name.
pub fn sentinel_master_name(cc: &CounterCluster) -> String {
    cc.metadata.name.clone().unwrap_or_default()
}

/// Name of the sentinel StatefulSet and of its headless Service.
pub fn sentinel_name(cc: &CounterCluster) -> String {
    child_name(cc, "redis-sentinel")
}

/// `<pod>.<service>.<ns>.svc` of pod `ordinal` of the StatefulSet governed by `service`.
fn pod_host(cc: &CounterCluster, service: &str, ordinal: i32) -> String {
    format!("{service}-{ordinal}.{service}.{}.svc", namespace(cc))
}

/// Hostname of Redis pod `ordinal` under the headless Service `<name>-redis`.
pub fn redis_pod_host(cc: &CounterCluster, ordinal: i32) -> String {
    pod_host(cc, &child_name(cc, "redis"), ordinal)
}

/// `host:port` of every sentinel, in ordinal order: the service's `redis.sentinel.addrs`.
pub fn sentinel_addrs(cc: &CounterCluster) -> Vec<String> {
    (0..SENTINELS)
        .map(|i| format!("{}:{SENTINEL_PORT}", pod_host(cc, &sentinel_name(cc), i)))
        .collect()
}

/// `host:port` of every Redis pod, in ordinal order.
pub fn redis_addrs(cc: &CounterCluster) -> Vec<String> {
    (0..cc.spec.redis.managed.replicas)
        .map(|i| format!("{}:{REDIS_PORT}", redis_pod_host(cc, i)))
        .collect()
}

/// A plain environment variable.
pub fn env_value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// `POD_NAME` from the downward API.
pub fn pod_name_env() -> EnvVar {
    EnvVar {
        name: "POD_NAME".to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Prefer spreading `component`'s pods over nodes (`kubernetes.io/hostname`), on top of the
/// CounterCluster's own `podTemplate.affinity`, unless that sets a pod anti-affinity itself.
pub fn spread_over_nodes(cc: &CounterCluster, component: Component, spec: &mut PodSpec) {
    let mut affinity = spec.affinity.clone().unwrap_or_default();
    if affinity.pod_anti_affinity.is_none() {
        affinity.pod_anti_affinity = Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(cc, component)),
                            match_expressions: None,
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        });
    }
    spec.affinity = Some(affinity);
}

/// A headless Service (`clusterIP: None`) that publishes not-ready pods too, so every pod of
/// its StatefulSet has a hostname from its first start: replicas and sentinels must reach one
/// another before they are ready.
pub fn headless_service(
    cc: &CounterCluster,
    name: String,
    component: Component,
    ports: Vec<ServicePort>,
) -> Service {
    Service {
        metadata: object_meta(cc, name, component),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cc, component)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Requests cpu 10m, memory 32Mi; limit memory 64Mi: a sentinel holds a few connections and
/// the set's topology.
fn sentinel_resources() -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity("10m")),
            ("memory".to_owned(), quantity("32Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), quantity("64Mi"))])),
        claims: None,
    }
}

/// The sentinels' headless Service `<name>-redis-sentinel`, port 26379 `sentinel`.
pub fn build_sentinel_service(cc: &ValidCounterCluster) -> Service {
    headless_service(
        cc,
        sentinel_name(cc),
        Component::RedisSentinel,
        vec![ServicePort {
            name: Some("sentinel".to_owned()),
            port: SENTINEL_PORT,
            target_port: Some(IntOrString::String("sentinel".to_owned())),
            protocol: Some("TCP".to_owned()),
            ..ServicePort::default()
        }],
    )
}

/// The sentinel StatefulSet: [`SENTINELS`] pods of the Redis image running
/// [`SENTINEL_START_SCRIPT`], spread over nodes, with an emptyDir for the config file.
pub fn build_sentinel_statefulset(cc: &ValidCounterCluster) -> StatefulSet {
    let managed = &cc.spec.redis.managed;
    let name = sentinel_name(cc);
    let ns = namespace(cc);
    let mut env = super::redis::server_password_env(cc, true);
    env.extend([
        pod_name_env(),
        env_value("SELF_HOST", format!("$(POD_NAME).{name}.{ns}.svc")),
        env_value("SENTINEL_CONFIG", SENTINEL_CONFIG_FILE),
        env_value("MASTER_NAME", sentinel_master_name(cc)),
        env_value(
            "PRIMARY_ADDR",
            format!("{}:{REDIS_PORT}", redis_pod_host(cc, 0)),
        ),
        env_value("SENTINEL_ADDRS", sentinel_addrs(cc).join(" ")),
        env_value("REDIS_ADDRS", redis_addrs(cc).join(" ")),
        env_value("OBSERVER_USER", OBSERVER_USER),
        env_value("OBSERVER_RULES", OBSERVER_RULES),
        env_value("QUORUM", SENTINEL_QUORUM.to_string()),
        env_value("DOWN_AFTER_MS", SENTINEL_DOWN_AFTER_MS.to_string()),
        env_value(
            "FAILOVER_TIMEOUT_MS",
            SENTINEL_FAILOVER_TIMEOUT_MS.to_string(),
        ),
    ]);
    let mut container = Container {
        name: "sentinel".to_owned(),
        image: Some(managed.image.clone()),
        command: Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            SENTINEL_START_SCRIPT.to_owned(),
            "sentinel-start".to_owned(),
        ]),
        args: Some(listen_args(cc, SENTINEL_PORT)),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("sentinel".to_owned()),
            container_port: SENTINEL_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: Some(sentinel_resources()),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("sentinel".to_owned()),
                host: None,
            }),
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(
                    [
                        "sh",
                        "-c",
                        &format!(
                            "redis-cli {}-p {SENTINEL_PORT} ping | grep -q PONG",
                            redis_cli_tls_flags(cc)
                        ),
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                ),
            }),
            period_seconds: Some(5),
            failure_threshold: Some(2),
            timeout_seconds: Some(2),
            ..Probe::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".to_owned(),
            mount_path: SENTINEL_CONFIG_DIR.to_owned(),
            ..VolumeMount::default()
        }]),
        security_context: Some(restricted_container_security_context()),
        ..Container::default()
    };
    // The certificate is the Redis pods': one names both Services.
    let tls_secret = tls_secret_name(cc, Component::Redis);
    let tls_volume = supervise(cc, &mut container, Renewal::Restart, &tls_secret);
    let mut volumes = vec![Volume {
        name: "config".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    volumes.extend(tls_volume);
    let pod_spec = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        security_context: Some(restricted_pod_security_context(REDIS_UID)),
        automount_service_account_token: Some(false),
        ..PodSpec::default()
    };
    let mut template = pod_template(
        cc,
        Component::RedisSentinel,
        cc.spec.pod_template.annotations.clone(),
        pod_spec,
    );
    if let Some(spec) = template.spec.as_mut() {
        spread_over_nodes(cc, Component::RedisSentinel, spec);
    }
    StatefulSet {
        metadata: object_meta(cc, name.clone(), Component::RedisSentinel),
        spec: Some(StatefulSetSpec {
            replicas: Some(SENTINELS),
            service_name: Some(name),
            // The sentinels find one another through the primary; none waits for another.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cc, Component::RedisSentinel)),
                match_expressions: None,
            },
            template,
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}
