//! `spec.security` in the pods: the API tokens Secret and the TLS Secrets
//! `<name>-gateway-tls` / `<name>-counter-tls` mounted into the highpress pods, the files the
//! service config names, what each component's certificate must say, and either the TLS
//! Secret itself (its content issued by the reconciler with the operator's CA, as the Redis
//! password is drawn there) or the cert-manager `Certificate` that asks an issuer for it.
//!
//! Contract: the service config names the same paths in every highpress pod, and each pod
//! mounts its own component's Secret there. The gateway's certificate is a server and client
//! certificate (HTTPS, and the client side of mutual TLS); the counter's only a server
//! certificate, so a counter accepts no other counter as a client.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{KeyToPath, Secret, SecretVolumeSource, Volume, VolumeMount};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::redis_tls::managed_redis_tls;
use super::sentinel::sentinel_name;
use super::{Component, child_name, namespace, object_meta};
use crate::certificates::{IssuedCertificate, LEAF_LIFETIME, LeafRequest};
use crate::crd::{CounterCluster, ExternalRedisTlsSpec, IssuerKind, IssuerRef, RedisMode};

/// cert-manager's API group and version.
pub const CERT_MANAGER_GROUP_VERSION: &str = "cert-manager.io/v1";

/// Directory the API tokens Secret is mounted at.
pub const TOKENS_MOUNT_PATH: &str = "/var/run/secrets/highpress/tokens";
/// Directory the component's TLS Secret is mounted at.
pub const TLS_MOUNT_PATH: &str = "/var/run/secrets/highpress/tls";
/// The certificate chain, in the TLS Secret and the mount (`kubernetes.io/tls` layout, as
/// cert-manager writes it too).
pub const TLS_CERT_FILE: &str = "/var/run/secrets/highpress/tls/tls.crt";
/// The private key.
pub const TLS_KEY_FILE: &str = "/var/run/secrets/highpress/tls/tls.key";
/// The CA certificates to trust.
pub const TLS_CA_FILE: &str = "/var/run/secrets/highpress/tls/ca.crt";
/// Directory of an external Redis's CA and client certificate in the counter pods.
pub const REDIS_TLS_MOUNT_PATH: &str = "/var/run/secrets/highpress/redis-tls";
/// The external Redis's CA bundle in the counter pods.
pub const REDIS_CA_FILE: &str = "/var/run/secrets/highpress/redis-tls/ca/ca.crt";
/// The counters' client certificate for an external Redis.
pub const REDIS_CLIENT_CERT_FILE: &str = "/var/run/secrets/highpress/redis-tls/client/tls.crt";
/// Its key.
pub const REDIS_CLIENT_KEY_FILE: &str = "/var/run/secrets/highpress/redis-tls/client/tls.key";
/// Annotation on a CounterCluster whose new value makes the operator issue its certificates
/// again at once.
pub const REISSUE_ANNOTATION: &str = "highpress.dev/reissue-certificates";

/// The tokens file the service reads: the Secret key under [`TOKENS_MOUNT_PATH`].
pub fn tokens_file(cc: &CounterCluster) -> String {
    let key = cc
        .spec
        .security
        .auth
        .tokens_secret_ref
        .as_ref()
        .map_or("tokens.yaml", |r| r.key.as_str());
    format!("{TOKENS_MOUNT_PATH}/{key}")
}

/// The name a gateway checks in a counter's certificate: the counter Service's.
pub fn counter_server_name(cc: &CounterCluster) -> String {
    format!("{}.{}.svc", child_name(cc, "counter"), namespace(cc))
}

/// The name both components' certificates carry for Prometheus, whose one ServiceMonitor
/// endpoint scrapes gateway and counter pods alike.
pub fn metrics_server_name(cc: &CounterCluster) -> String {
    format!("{}.{}.svc", child_name(cc, "metrics"), namespace(cc))
}

/// `<name>-gateway-tls`, `<name>-counter-tls` or `<name>-redis-tls`.
pub fn tls_secret_name(cc: &CounterCluster, component: Component) -> String {
    child_name(cc, &format!("{}-tls", component.as_str()))
}

/// The components that get a certificate, in issue order: the gateway and the counter with
/// `security.tls.api` or `.grpc`, the managed Redis with `security.tls.redis`.
pub fn tls_components(cc: &CounterCluster) -> Vec<Component> {
    let mut components = Vec::new();
    if cc.spec.security.tls.highpress() {
        components.extend([Component::Gateway, Component::Counter]);
    }
    if managed_redis_tls(cc) {
        components.push(Component::Redis);
    }
    components
}

/// A Service's DNS names, short to fully qualified.
fn service_names(service: &str, ns: &str) -> [String; 4] {
    [
        service.to_owned(),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
    ]
}

/// What `component`'s certificate must say. The gateway's and the counter's: their Service's
/// DNS names and the shared [`metrics_server_name`]; client authentication for the gateway
/// only. The Redis one: the Redis and sentinel Services, every pod of theirs and `localhost`,
/// as a server only (a counter's gRPC port must not take it for a gateway's).
pub fn leaf_request(cc: &CounterCluster, component: Component) -> LeafRequest {
    let service = child_name(cc, component.as_str());
    let ns = namespace(cc);
    let mut dns_names = service_names(&service, &ns).to_vec();
    if component == Component::Redis {
        for service in [service.clone(), sentinel_name(cc)] {
            if service != dns_names[0] {
                dns_names.extend(service_names(&service, &ns));
            }
            dns_names.push(format!("*.{service}.{ns}.svc"));
            dns_names.push(format!("*.{service}.{ns}.svc.cluster.local"));
        }
        dns_names.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
    } else {
        dns_names.push(metrics_server_name(cc));
    }
    LeafRequest {
        common_name: service,
        dns_names,
        client_auth: component == Component::Gateway,
    }
}

/// The `kubernetes.io/tls` Secret of `component` holding `issued`.
pub fn build_tls_secret(
    cc: &CounterCluster,
    component: Component,
    issued: &IssuedCertificate,
) -> Secret {
    let data = [
        ("tls.crt", &issued.cert_pem),
        ("tls.key", &issued.key_pem),
        ("ca.crt", &issued.ca_bundle_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
    .collect::<BTreeMap<_, _>>();
    Secret {
        metadata: object_meta(cc, tls_secret_name(cc, component), component),
        data: Some(data),
        type_: Some("kubernetes.io/tls".to_owned()),
        ..Secret::default()
    }
}

/// The cert-manager `Certificate` API resource.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// The cert-manager `Certificate` `<name>-<component>-tls` asking `issuer` for what
/// [`leaf_request`] says, into the Secret of the same name: as long-lived as the operator's own
/// (renewed a third before expiry), with a new ECDSA P-256 key each time.
pub fn build_certificate(
    cc: &CounterCluster,
    component: Component,
    issuer: &IssuerRef,
) -> DynamicObject {
    let request = leaf_request(cc, component);
    let name = tls_secret_name(cc, component);
    let mut usages = vec!["digital signature", "key encipherment", "server auth"];
    if request.client_auth {
        usages.push("client auth");
    }
    let hours = LEAF_LIFETIME.whole_hours();
    let mut certificate = DynamicObject::new(&name, &certificate_resource());
    certificate.metadata = object_meta(cc, name.clone(), component);
    certificate.data = json!({
        "spec": {
            "secretName": name,
            "commonName": request.common_name,
            "dnsNames": request.dns_names,
            "duration": format!("{hours}h"),
            "renewBefore": format!("{}h", hours / 3),
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": usages,
            "issuerRef": {
                "name": issuer.name,
                "kind": match issuer.kind {
                    IssuerKind::Issuer => "Issuer",
                    IssuerKind::ClusterIssuer => "ClusterIssuer",
                },
                "group": issuer.group,
            },
        }
    });
    certificate
}

/// `redis.external.tls`, when Redis is external and it is set.
pub fn external_redis_tls(cc: &CounterCluster) -> Option<&ExternalRedisTlsSpec> {
    let redis = &cc.spec.redis;
    (redis.mode == RedisMode::External)
        .then(|| redis.external.as_ref()?.tls.as_ref())
        .flatten()
}

/// The Secret `secret` as the volume `name` (the keys `items` names, else every key), readable
/// by the pod's group (fsGroup), not by others.
pub fn secret_volume(name: &str, secret: &str, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items,
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

/// The volume `name` mounted read-only at `path`.
pub fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The volumes and mounts `component`'s highpress container needs for `spec.security`, and
/// the counters' for the Redis CA and client certificate (`redis.external.tls`, or the managed
/// Redis's `ca.crt` with `security.tls.redis`).
pub fn security_volumes(
    cc: &CounterCluster,
    component: Component,
) -> (Vec<Volume>, Vec<VolumeMount>) {
    let security = &cc.spec.security;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut mount_secret = |name: &str, secret: &str, items: Option<Vec<KeyToPath>>, dir: &str| {
        volumes.push(secret_volume(name, secret, items));
        mounts.push(read_only_mount(name, dir));
    };
    let items = |pairs: &[(&str, &str)]| {
        let items = pairs
            .iter()
            .map(|(key, path)| KeyToPath {
                key: (*key).to_owned(),
                path: (*path).to_owned(),
                mode: None,
            })
            .collect();
        Some(items)
    };
    if let Some(tokens) = security
        .auth
        .tokens_secret_ref
        .as_ref()
        .filter(|_| security.auth.enabled)
    {
        let key = tokens.key.as_str();
        mount_secret(
            "api-tokens",
            &tokens.name,
            items(&[(key, key)]),
            TOKENS_MOUNT_PATH,
        );
    }
    if component == Component::Counter {
        let ca_dir = format!("{REDIS_TLS_MOUNT_PATH}/ca");
        if let Some(tls) = external_redis_tls(cc) {
            if let Some(ca) = &tls.ca_secret_ref {
                let ca_items = items(&[(&ca.key, "ca.crt")]);
                mount_secret("redis-ca", &ca.name, ca_items, &ca_dir);
            }
            if let Some(client) = &tls.client_certificate_secret {
                let client_items = items(&[("tls.crt", "tls.crt"), ("tls.key", "tls.key")]);
                let dir = format!("{REDIS_TLS_MOUNT_PATH}/client");
                mount_secret("redis-client-certificate", client, client_items, &dir);
            }
        }
        if managed_redis_tls(cc) {
            // The CA alone: the Redis key stays in the Redis pods.
            let secret = tls_secret_name(cc, Component::Redis);
            let ca_items = items(&[("ca.crt", "ca.crt")]);
            mount_secret("redis-ca", &secret, ca_items, &ca_dir);
        }
    }
    if security.tls.highpress() {
        mount_secret("tls", &tls_secret_name(cc, component), None, TLS_MOUNT_PATH);
    }
    (volumes, mounts)
}
