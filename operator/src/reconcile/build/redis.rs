//! The managed Redis (`redis.mode: Managed`): StatefulSet and Service `<name>-redis`, and the
//! optional redis_exporter sidecar in the same pod.
//!
//! Contract: `redis.managed.replicas` pods (one unless replicated, see [`super::sentinel`]);
//! AOF persistence per `redis.managed.appendOnly`; data on a PVC from the `data` claim template, the only writable path (the root filesystem is read-only). The
//! password comes from the Secret `<name>-redis-auth-<uid8>` (key `password`; later generations
//! `-<generation>`, see [`super::redis_password`]), which the reconciler generates once; it is
//! passed as `--requirepass $(REDIS_PASSWORD)` (during a rotation, `--user default on` with both
//! passwords), so it never appears in the object. PVCs are retained when the CounterCluster or StatefulSet is deleted, so
//! deleting a CounterCluster never deletes counter data by itself.
//!
//! With `redis.managed.exporter.enabled`, the pod also runs the container `redis-exporter`: it
//! reads Redis at `localhost:6379` with the password from the same Secret key and serves
//! `/metrics` and `/health` on port 9121, named `metrics` on the container and the Service.
//! Disabled, neither the container nor the Service port exists.
//!
//! With `security.tls.redis`, Redis and the exporter speak TLS ([`super::redis_tls`]).

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, Probe, Secret, SecretKeySelector,
    Service, ServicePort, ServiceSpec, TCPSocketAction, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use std::collections::BTreeMap;

use super::config::REDIS_PORT;
use super::pod::{
    REDIS_UID, pod_template, restricted_container_security_context, restricted_pod_security_context,
};
use super::redis_password::{password_plan, password_secret_name, rotation};
use super::redis_tls::{
    Renewal, listen_args, managed_redis_tls, redis_cli_tls_flags, supervise, tls_mount,
};
use super::security::{TLS_CA_FILE, tls_secret_name};
use super::sentinel::{
    REDIS_START_SCRIPT, env_value, headless_service, pod_name_env, redis_pod_host, sentinel_addrs,
    sentinel_master_name, spread_over_nodes,
};
use super::{Component, child_name, labels, namespace, object_meta, selector_labels};
use crate::crd::{CounterCluster, RedisMode, RotationPhase};
use crate::reconcile::validate::ValidCounterCluster;

/// Key of the password in the managed Redis Secret.
pub const REDIS_PASSWORD_KEY: &str = "password";
/// Where the data volume is mounted in the Redis container.
pub const REDIS_DATA_PATH: &str = "/data";
/// Port of the redis_exporter sidecar (its default), named `metrics`.
pub const REDIS_EXPORTER_PORT: i32 = 9121;
/// Name of the redis_exporter sidecar's port on the container and on the Redis Service.
pub const REDIS_EXPORTER_PORT_NAME: &str = "metrics";

/// Whether `cc` runs the redis_exporter sidecar: managed Redis with the exporter enabled.
pub fn redis_exporter_enabled(cc: &CounterCluster) -> bool {
    cc.spec.redis.mode == RedisMode::Managed && cc.spec.redis.managed.exporter.enabled
}

/// Name of the managed Redis password Secret of generation 0 (the first password):
/// `<name>-redis-auth-<first 8 characters of the CounterCluster's uid>`, or `<name>-redis-auth`
/// for a CounterCluster without a uid (one read from a file by `render`). Later generations add
/// `-<generation>` ([`password_secret_name`]).
///
/// The uid makes the name unique per incarnation. A CounterCluster deleted and re-created under
/// the same name before the garbage collector is done would otherwise find the old Secret
/// (`AlreadyExists`), keep it, and lose it to the collector a moment later; the operator cannot
/// tell whose Secret it found, because it may create Secrets but not read them.
pub fn redis_base_secret_name(cc: &CounterCluster) -> String {
    match cc.meta().uid.as_deref() {
        Some(uid) => child_name(cc, &format!("redis-auth-{}", uid_prefix(uid))),
        None => child_name(cc, "redis-auth"),
    }
}

/// The first 8 characters of a uid (its first group: 32 random bits), lowercased.
fn uid_prefix(uid: &str) -> String {
    uid.chars().take(8).collect::<String>().to_ascii_lowercase()
}

/// The Secret of the password every client uses now ([`password_plan`]).
pub fn redis_secret_name(cc: &CounterCluster) -> String {
    password_secret_name(cc, password_plan(cc).client)
}

/// `name` from the password key of generation `generation`'s Secret.
pub fn generation_env(cc: &CounterCluster, name: &str, generation: i32) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: password_secret_name(cc, generation),
                key: REDIS_PASSWORD_KEY.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// `name` from the password key of the Secret every client uses now.
pub fn secret_env(cc: &CounterCluster, name: &str) -> EnvVar {
    generation_env(cc, name, password_plan(cc).client)
}

/// The password a Redis or sentinel pod authenticates with (`REDIS_PASSWORD`: `masterauth`,
/// `auth-pass`, its probe) and the one it accepts besides (`REDIS_OTHER_PASSWORD`), as env.
/// A single Redis authenticates to nobody, so it keeps the old generation as its own until
/// the old one is dropped: its pod then rolls at two of the three steps, not three.
pub fn server_password_env(cc: &CounterCluster, replicated: bool) -> Vec<EnvVar> {
    let plan = password_plan(cc);
    let own = match rotation(cc) {
        Some(r) if !replicated && r.phase != RotationPhase::DropOld => r.from,
        _ => plan.client,
    };
    let other = [plan.client, plan.also_accepted.unwrap_or(plan.client)]
        .into_iter()
        .find(|g| *g != own);
    let mut env = vec![
        generation_env(cc, "REDIS_PASSWORD", own),
        // REDISCLI_AUTH lets the probes' and scripts' redis-cli authenticate without an argument.
        generation_env(cc, "REDISCLI_AUTH", own),
    ];
    env.extend(other.map(|g| generation_env(cc, "REDIS_OTHER_PASSWORD", g)));
    env
}

/// redis-server's authentication arguments: `--requirepass $(REDIS_PASSWORD)`, or during a
/// rotation the default user with both passwords.
fn auth_args(cc: &CounterCluster) -> Vec<String> {
    if password_plan(cc).also_accepted.is_some() {
        [
            "--user",
            "default",
            "on",
            ">$(REDIS_PASSWORD)",
            ">$(REDIS_OTHER_PASSWORD)",
            "~*",
            "&*",
            "+@all",
        ]
        .map(str::to_owned)
        .to_vec()
    } else {
        vec!["--requirepass".to_owned(), "$(REDIS_PASSWORD)".to_owned()]
    }
}

/// The Redis StatefulSet.
///
/// With `replicas` above 1 the pods run [`REDIS_START_SCRIPT`], which asks the sentinels for
/// the primary before starting redis-server as it or as its replica (pod 0 is the primary
/// when none knows one), add `--masterauth` so replicas authenticate to the primary, and
/// prefer distinct nodes. With 1 the pod runs redis-server alone, as it always has.
pub fn build_redis_statefulset(cc: &ValidCounterCluster) -> StatefulSet {
    let managed = &cc.spec.redis.managed;
    let replicated = managed.replicated();
    let append_only = if managed.append_only { "yes" } else { "no" };
    let mut args = listen_args(cc, REDIS_PORT);
    args.extend(["--dir", REDIS_DATA_PATH, "--appendonly", append_only].map(str::to_owned));
    args.extend(auth_args(cc));
    let mut env = server_password_env(cc, replicated);
    let command = if replicated {
        args.extend(["--masterauth".to_owned(), "$(REDIS_PASSWORD)".to_owned()]);
        let service = child_name(cc, "redis");
        env.extend([
            pod_name_env(),
            env_value(
                "SELF_HOST",
                format!("$(POD_NAME).{service}.{}.svc", namespace(cc)),
            ),
            env_value(
                "PRIMARY_ADDR",
                format!("{}:{REDIS_PORT}", redis_pod_host(cc, 0)),
            ),
            env_value("SENTINEL_ADDRS", sentinel_addrs(cc).join(" ")),
            env_value("MASTER_NAME", sentinel_master_name(cc)),
        ]);
        ["sh", "-c", REDIS_START_SCRIPT, "redis-start"]
            .map(str::to_owned)
            .to_vec()
    } else {
        vec!["redis-server".to_owned()]
    };
    let mut container = Container {
        name: "redis".to_owned(),
        image: Some(managed.image.clone()),
        command: Some(command),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("redis".to_owned()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: Some(managed.resources.clone()),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("redis".to_owned()),
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
                        &format!("redis-cli {}ping | grep -q PONG", redis_cli_tls_flags(cc)),
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
            name: "data".to_owned(),
            mount_path: REDIS_DATA_PATH.to_owned(),
            ..VolumeMount::default()
        }]),
        security_context: Some(restricted_container_security_context()),
        ..Container::default()
    };
    let tls_secret = tls_secret_name(cc, Component::Redis);
    let volumes = supervise(cc, &mut container, Renewal::Reload, &tls_secret).map(|v| vec![v]);
    let mut containers = vec![container];
    if redis_exporter_enabled(cc) {
        containers.push(redis_exporter_container(cc));
    }
    let pod_spec = PodSpec {
        containers,
        volumes,
        security_context: Some(restricted_pod_security_context(REDIS_UID)),
        automount_service_account_token: Some(false),
        ..PodSpec::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            labels: Some(labels(cc, Component::Redis)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: managed.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    managed.storage.size.clone(),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    let mut template = pod_template(
        cc,
        Component::Redis,
        cc.spec.pod_template.annotations.clone(),
        pod_spec,
    );
    if replicated && let Some(spec) = template.spec.as_mut() {
        spread_over_nodes(cc, Component::Redis, spec);
    }
    StatefulSet {
        metadata: object_meta(cc, child_name(cc, "redis"), Component::Redis),
        spec: Some(StatefulSetSpec {
            replicas: Some(managed.replicas),
            service_name: Some(child_name(cc, "redis")),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cc, Component::Redis)),
                match_expressions: None,
            },
            template,
            volume_claim_templates: Some(vec![claim]),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// The redis_exporter sidecar: scrapes the Redis next to it over localhost, authenticating
/// with the password from the Redis Secret, and serves the metrics on [`REDIS_EXPORTER_PORT`].
fn redis_exporter_container(cc: &CounterCluster) -> Container {
    let exporter = &cc.spec.redis.managed.exporter;
    // Liveness only: the pod is ready when all its containers are, and the Redis Service routes
    // only to a ready pod, so a readiness probe here would let the exporter take Redis off the
    // network. `/health` answers without asking Redis; `redis_up` is the signal about Redis.
    let liveness = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/health".to_owned()),
            port: IntOrString::String(REDIS_EXPORTER_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    let tls = managed_redis_tls(cc);
    let scheme = if tls { "rediss" } else { "redis" };
    let mut env = vec![
        env_value("REDIS_ADDR", format!("{scheme}://localhost:{REDIS_PORT}")),
        secret_env(cc, "REDIS_PASSWORD"),
    ];
    if tls {
        env.push(env_value("REDIS_EXPORTER_TLS_CA_CERT_FILE", TLS_CA_FILE));
    }
    Container {
        name: "redis-exporter".to_owned(),
        image: Some(exporter.image.clone()),
        env: Some(env),
        volume_mounts: tls.then(|| vec![tls_mount()]),
        ports: Some(vec![ContainerPort {
            name: Some(REDIS_EXPORTER_PORT_NAME.to_owned()),
            container_port: REDIS_EXPORTER_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: Some(exporter.resources.clone()),
        liveness_probe: Some(liveness),
        security_context: Some(restricted_container_security_context()),
        ..Container::default()
    }
}

/// The Redis Service (ClusterIP, port 6379) that `redis.addr` names, plus the exporter's
/// `metrics` port 9121 when the sidecar runs. With `replicas` above 1 it is headless and
/// publishes not-ready pods, so each pod has a hostname,
/// `<name>-redis-<i>.<name>-redis.<ns>.svc`.
pub fn build_redis_service(cc: &ValidCounterCluster) -> Service {
    let mut ports = vec![ServicePort {
        name: Some("redis".to_owned()),
        port: REDIS_PORT,
        target_port: Some(IntOrString::String("redis".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }];
    if redis_exporter_enabled(cc) {
        ports.push(ServicePort {
            name: Some(REDIS_EXPORTER_PORT_NAME.to_owned()),
            port: REDIS_EXPORTER_PORT,
            target_port: Some(IntOrString::String(REDIS_EXPORTER_PORT_NAME.to_owned())),
            protocol: Some("TCP".to_owned()),
            ..ServicePort::default()
        });
    }
    if cc.spec.redis.managed.replicated() {
        // The StatefulSet's governing Service must be headless for its pods to have
        // hostnames, which the sentinels monitor and announce.
        return headless_service(cc, child_name(cc, "redis"), Component::Redis, ports);
    }
    Service {
        metadata: object_meta(cc, child_name(cc, "redis"), Component::Redis),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(cc, Component::Redis)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The managed Redis password Secret of generation `generation` ([`password_secret_name`]),
/// holding `password`. The caller draws the password; the reconciler creates this Secret once
/// and never updates it.
pub fn build_redis_secret(cc: &ValidCounterCluster, generation: i32, password: &str) -> Secret {
    Secret {
        metadata: object_meta(cc, password_secret_name(cc, generation), Component::Redis),
        string_data: Some(BTreeMap::from([(
            REDIS_PASSWORD_KEY.to_owned(),
            password.to_owned(),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}
