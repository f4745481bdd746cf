//! What every pod the operator creates shares: the restricted Pod Security Standard, probes,
//! the highpress container and pod template, and scheduling (topology spread plus the
//! CounterCluster's `podTemplate` overrides).
//!
//! Contract: every pod is non-root with a fixed UID, has a read-only root filesystem (writable
//! paths are explicit volumes), no privilege escalation, all capabilities dropped and the
//! RuntimeDefault seccomp profile.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{CONFIG_MOUNT_PATH, HTTP_PORT, build_config_map, config_hash};
use super::security::security_volumes;
use super::{BuildContext, CONFIG_HASH_ANNOTATION, Component, child_name, labels, selector_labels};
use crate::crd::{CounterCluster, PullPolicy};
use crate::reconcile::validate::ValidCounterCluster;

/// UID and GID the highpress containers run as.
pub const HIGHPRESS_UID: i64 = 10001;
/// UID and GID the managed Redis runs as (the `redis` user of the official image).
pub const REDIS_UID: i64 = 999;

/// Pod-level security: non-root with a fixed UID/GID, RuntimeDefault seccomp.
pub fn restricted_pod_security_context(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    }
}

/// Container-level security: read-only root filesystem, no privilege escalation, no
/// capabilities, non-root, RuntimeDefault seccomp.
pub fn restricted_container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

/// An HTTP GET probe of `path` on the highpress HTTP port, over HTTPS when
/// `security.tls.api` is on (the kubelet does not check the certificate).
pub fn http_probe(
    cc: &CounterCluster,
    path: &str,
    period_seconds: i32,
    failure_threshold: i32,
) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            scheme: Some(
                if cc.spec.security.tls.api {
                    "HTTPS"
                } else {
                    "HTTP"
                }
                .to_owned(),
            ),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// Spreads one component's pods across nodes (`kubernetes.io/hostname`), best effort.
pub fn topology_spread(cc: &CounterCluster, component: Component) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "kubernetes.io/hostname".to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(cc, component)),
            match_expressions: None,
        }),
        ..TopologySpreadConstraint::default()
    }]
}

/// `repository:tag`, the tag defaulting to the operator's version.
pub fn highpress_image(cc: &CounterCluster, ctx: &BuildContext) -> String {
    let tag = cc
        .spec
        .image
        .tag
        .as_deref()
        .unwrap_or(&ctx.default_image_tag);
    format!("{}:{tag}", cc.spec.image.repository)
}

/// The Kubernetes spelling of a pull policy.
pub fn pull_policy(policy: PullPolicy) -> String {
    match policy {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
    .to_owned()
}

/// Pod template for a highpress container (gateway or counter): the config volume, a `/tmp`
/// emptyDir, the `spec.security` Secrets, the config-hash annotation, restricted security, the topology spread and the
/// CounterCluster's `podTemplate` overrides.
pub fn highpress_pod_template(
    cc: &ValidCounterCluster,
    component: Component,
    mut container: Container,
) -> PodTemplateSpec {
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .extend([
            VolumeMount {
                name: "config".to_owned(),
                mount_path: CONFIG_MOUNT_PATH.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            },
        ]);
    let (security_volumes, security_mounts) = security_volumes(cc, component);
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .extend(security_mounts);
    container.security_context = Some(restricted_container_security_context());
    let mut volumes = vec![
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: child_name(cc, "config"),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    volumes.extend(security_volumes);
    let mut annotations = cc.spec.pod_template.annotations.clone();
    annotations.insert(
        CONFIG_HASH_ANNOTATION.to_owned(),
        config_hash(&build_config_map(cc)),
    );
    pod_template(
        cc,
        component,
        annotations,
        PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            security_context: Some(restricted_pod_security_context(HIGHPRESS_UID)),
            automount_service_account_token: Some(false),
            ..PodSpec::default()
        },
    )
}

/// Adds the labels, annotations, topology spread and `podTemplate` overrides to `spec`.
pub fn pod_template(
    cc: &CounterCluster,
    component: Component,
    annotations: BTreeMap<String, String>,
    mut spec: PodSpec,
) -> PodTemplateSpec {
    let overrides = &cc.spec.pod_template;
    spec.topology_spread_constraints = Some(topology_spread(cc, component));
    if !overrides.node_selector.is_empty() {
        spec.node_selector = Some(overrides.node_selector.clone());
    }
    if !overrides.tolerations.is_empty() {
        spec.tolerations = Some(overrides.tolerations.clone());
    }
    spec.affinity = overrides.affinity.clone();
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(cc, component)),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

/// The named HTTP container port every highpress pod serves on.
pub fn http_container_port() -> ContainerPort {
    ContainerPort {
        name: Some("http".to_owned()),
        container_port: HTTP_PORT,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}
