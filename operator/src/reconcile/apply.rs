//! Apply: the child objects of one valid CounterCluster on the API server. Ensures the Redis
//! password Secret, applies everything [`build_all`] returns (through [`super::ssa`]), deletes
//! what disabled features left behind, and reads the replica counts back from the apply
//! responses (and, for a replicated Redis, asks the sentinels through [`replication`]) as the
//! [`Observed`] that [`super::status`] computes the status from.
//!
//! Order (the first failure stops the rest, so a half-configured tier never starts talking to
//! a Redis that does not exist yet):
//! 1. ConfigMap `<name>-config` (every pod mounts it), and with `security.tls` the Secrets
//!    `<name>-gateway-tls` and `<name>-counter-tls`, issued again when due
//!    ([`crate::certificates`]), or with `security.tls.issuerRef` the cert-manager
//!    `Certificate`s of the same names (deleted when no longer asked for);
//! 2. Redis: Secret `<name>-redis-auth-<uid8>` (created once, never updated; during a password
//!    rotation the new generation's too), Service and
//!    StatefulSet `<name>-redis` (the Service replaced when it must become headless), then,
//!    with `replicas` above 1, the sentinels' Service and StatefulSet `<name>-redis-sentinel`;
//!    or, for an external Redis, deletion of the Redis Service and StatefulSet. Sentinels
//!    that the last status reported and the spec no longer has are deleted;
//! 3. counter: headless Service, Deployment;
//! 4. gateway: Service, Deployment, then the HPA or its deletion;
//! 5. PodDisruptionBudgets;
//! 6. NetworkPolicies, or their deletion;
//! 7. the ServiceMonitor, or its deletion; skipped with a note when the API server does not
//!    serve `monitoring.coreos.com/v1`.
//!
//! On switching to an external Redis the Secret and the PVC are kept, so switching back finds
//! the data and its password again.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, PostParams};
use kube::{Client, ResourceExt};

use super::build::network_policy::network_policy_names;
use super::build::redis_password::{password_plan, password_secret_name};
use super::build::redis_tls::managed_redis_tls;
use super::build::security::{
    CERT_MANAGER_GROUP_VERSION, REISSUE_ANNOTATION, build_certificate, build_tls_secret,
    certificate_resource, leaf_request, tls_components, tls_secret_name,
};
use super::build::sentinel::sentinel_name;
use super::build::service_monitor::{
    SERVICE_MONITOR_GROUP, SERVICE_MONITOR_VERSION, service_monitor_resource,
};
use super::build::{
    Child, ChildObjects, Component, build_all, build_redis_secret, child_name, namespace,
};
use super::replication;
use super::ssa::{WriteError, apply, delete_owned};
use super::status::{ComponentReadiness, Observed, RedisObserved};
use super::validate::ValidCounterCluster;
use super::{Context, ReconcileError};
use crate::certificates::{CertificateAuthority, rfc3339};
use crate::crd::{CertificatesStatus, IssuerRef, RedisMode};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Applies every child object of `cc` in order and returns what was observed.
pub async fn apply_children(
    cc: &ValidCounterCluster,
    ctx: &Context,
) -> Result<Observed, ReconcileError> {
    let client = &ctx.client;
    let ns = namespace(cc);
    // Every field by name, no `..`: a new child does not compile until it is applied here.
    let ChildObjects {
        config_map,
        redis,
        redis_sentinel,
        counter_service,
        counter_deployment,
        gateway_service,
        gateway_deployment,
        gateway_hpa,
        pdbs,
        network_policies,
        service_monitor,
    } = build_all(cc, &ctx.build);

    apply(&api::<ConfigMap>(client, &ns), &config_map).await?;
    let tls = &cc.spec.security.tls;
    let components = tls_components(cc);
    let cert_manager_issuer = tls.issuer_ref.clone().filter(|_| !components.is_empty());
    if had_cert_manager_certificates(cc) {
        // First, so cert-manager stops writing the Secrets before the operator issues them.
        let keep = if cert_manager_issuer.is_some() {
            &components[..]
        } else {
            &[]
        };
        delete_certificate_requests(cc, ctx, keep).await?;
    }
    let (certificates, redis_trust) = match &cert_manager_issuer {
        Some(issuer) => {
            apply_certificate_requests(cc, ctx, issuer, &components).await?;
            (None, replication::Trust::Unverified)
        }
        None if !components.is_empty() => {
            let (certificates, bundle) = ensure_certificates(cc, ctx, &components).await?;
            (Some(certificates), replication::Trust::Roots(bundle))
        }
        None => (None, replication::Trust::Unverified),
    };
    // How the operator reaches the sentinels: plain, or TLS trusting what signed their
    // certificate.
    let sentinel_tls = managed_redis_tls(cc).then_some(redis_trust);

    let services = api::<Service>(client, &ns);
    let statefulsets = api::<StatefulSet>(client, &ns);
    // Whether every Redis pod, sentinel and counter pod runs its current template and is ready:
    // what a password rotation waits for before its next step.
    let mut rolled_out = true;
    let redis = match &redis {
        Some((service, statefulset)) => {
            ensure_redis_secrets(cc, client, &ns).await?;
            apply_service(&services, service, cc).await?;
            let live = apply(&statefulsets, statefulset).await?;
            rolled_out &= statefulset_rolled_out(&live);
            statefulset_readiness(&live)
        }
        None => {
            let name = child_name(cc, "redis");
            delete_owned(&statefulsets, StatefulSet::KIND.as_str(), &name, cc).await?;
            delete_owned(&services, Service::KIND.as_str(), &name, cc).await?;
            ComponentReadiness::default()
        }
    };
    let sentinels = match &redis_sentinel {
        Some((service, statefulset)) => {
            apply(&services, service).await?;
            let live = apply(&statefulsets, statefulset).await?;
            rolled_out &= statefulset_rolled_out(&live);
            Some(statefulset_readiness(&live))
        }
        None => {
            if had_sentinels(cc) {
                let name = sentinel_name(cc);
                delete_owned(&statefulsets, StatefulSet::KIND.as_str(), &name, cc).await?;
                delete_owned(&services, Service::KIND.as_str(), &name, cc).await?;
                let policies = api::<NetworkPolicy>(client, &ns);
                delete_owned(&policies, NetworkPolicy::KIND.as_str(), &name, cc).await?;
            }
            None
        }
    };
    let redis = match (cc.spec.redis.mode, sentinels) {
        (RedisMode::External, _) => RedisObserved::External,
        (RedisMode::Managed, Some(sentinels)) => RedisObserved::Replicated {
            redis,
            sentinels,
            replication: replication::observe_counter_cluster(cc, sentinel_tls.as_ref()).await,
        },
        (RedisMode::Managed, None) => RedisObserved::Managed(redis),
    };

    let deployments = api::<Deployment>(client, &ns);
    apply(&services, &counter_service).await?;
    let counter = apply(&deployments, &counter_deployment).await?;
    rolled_out &= deployment_rolled_out(&counter);
    apply(&services, &gateway_service).await?;
    let gateway = apply(&deployments, &gateway_deployment).await?;

    let hpas = api::<HorizontalPodAutoscaler>(client, &ns);
    match &gateway_hpa {
        Some(hpa) => drop(apply(&hpas, hpa).await?),
        None => {
            delete_owned(
                &hpas,
                HorizontalPodAutoscaler::KIND.as_str(),
                &child_name(cc, "gateway"),
                cc,
            )
            .await?
        }
    }

    let pdb_api = api::<PodDisruptionBudget>(client, &ns);
    for pdb in &pdbs {
        apply(&pdb_api, pdb).await?;
    }

    let policies = api::<NetworkPolicy>(client, &ns);
    if network_policies.is_empty() {
        for name in network_policy_names(cc) {
            delete_owned(&policies, NetworkPolicy::KIND.as_str(), &name, cc).await?;
        }
    } else {
        for policy in &network_policies {
            apply(&policies, policy).await?;
        }
    }

    let mut skipped = Vec::new();
    if serves_service_monitors(client).await? {
        let monitors: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &service_monitor_resource());
        match &service_monitor {
            Some(monitor) => drop(apply(&monitors, monitor).await?),
            None => {
                delete_owned(&monitors, DynamicObject::KIND.as_str(), &cc.name_any(), cc).await?
            }
        }
    } else if service_monitor.is_some() {
        skipped.push(format!(
            "ServiceMonitor skipped: the API server does not serve {SERVICE_MONITOR_GROUP}/{SERVICE_MONITOR_VERSION} (install the prometheus-operator CRDs)"
        ));
    }

    Ok(Observed {
        gateway: deployment_readiness(&gateway),
        counter: deployment_readiness(&counter),
        redis,
        invalid_spec: None,
        apply_error: None,
        skipped,
        certificates,
        cert_manager_issuer,
        tls_components: components.iter().map(|c| c.as_str().to_owned()).collect(),
        rolled_out,
    })
}

/// The cert-manager `Certificate`s asking `issuer` for `components`' certificates, into the
/// same Secrets the pods mount. Fails the reconcile (`Degraded`, naming cert-manager) when the
/// API server does not serve cert-manager.io/v1: the pods could not start without the Secrets.
async fn apply_certificate_requests(
    cc: &ValidCounterCluster,
    ctx: &Context,
    issuer: &IssuerRef,
    components: &[Component],
) -> Result<(), ReconcileError> {
    if !serves(&ctx.client, CERT_MANAGER_GROUP_VERSION, "certificates").await? {
        return Err(ReconcileError::CertManagerNotServed);
    }
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace(cc), &certificate_resource());
    for component in components {
        apply(&api, &build_certificate(cc, *component, issuer)).await?;
    }
    Ok(())
}

/// Whether the last status reports cert-manager `Certificate`s, which the spec may no longer
/// ask for (so cert-manager would keep rewriting Secrets the operator now issues, or that are
/// no longer used).
fn had_cert_manager_certificates(cc: &ValidCounterCluster) -> bool {
    cc.status
        .as_ref()
        .is_some_and(|s| s.cert_manager_issuer.is_some())
}

/// The components whose TLS Secrets the last status says the operator kept. A status from
/// before `tlsComponents` existed kept the gateway's and the counter's.
fn kept_tls_components(cc: &ValidCounterCluster) -> Vec<String> {
    let Some(status) = cc.status.as_ref() else {
        return Vec::new();
    };
    let kept_any = status.certificates.is_some() || status.cert_manager_issuer.is_some();
    if status.tls_components.is_empty() && kept_any {
        return [Component::Gateway, Component::Counter]
            .map(|c| c.as_str().to_owned())
            .to_vec();
    }
    status.tls_components.clone()
}

/// Deletes the `Certificate`s that the last status reports and `keep` leaves out, if this
/// CounterCluster controls them.
async fn delete_certificate_requests(
    cc: &ValidCounterCluster,
    ctx: &Context,
    keep: &[Component],
) -> Result<(), ReconcileError> {
    let gone: Vec<Component> = [Component::Gateway, Component::Counter, Component::Redis]
        .into_iter()
        .filter(|c| !keep.contains(c) && kept_tls_components(cc).iter().any(|k| k == c.as_str()))
        .collect();
    if gone.is_empty() || !serves(&ctx.client, CERT_MANAGER_GROUP_VERSION, "certificates").await? {
        return Ok(());
    }
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace(cc), &certificate_resource());
    for component in gone {
        let name = tls_secret_name(cc, component);
        delete_owned(&api, "Certificate", &name, cc).await?;
    }
    Ok(())
}

/// The certificates of `components` in the Secrets `<name>-<component>-tls`: issued with the
/// operator's CA when the status records none or other components, they are two thirds into
/// their life, the CA rotated, or the reissue annotation changed; otherwise left as they are
/// (the operator cannot read them, so the status is its record). Also the CA bundle they are
/// trusted through.
async fn ensure_certificates(
    cc: &ValidCounterCluster,
    ctx: &Context,
    components: &[Component],
) -> Result<(CertificatesStatus, String), ReconcileError> {
    let now = OffsetDateTime::now_utc();
    let ca_secrets = Api::<Secret>::namespaced(ctx.client.clone(), &ctx.ca_namespace);
    let ca = CertificateAuthority::load_or_create(&ca_secrets, &ctx.ca_namespace, now).await?;
    let fingerprint = ca.fingerprint()?;
    let token = cc.annotations().get(REISSUE_ANNOTATION).cloned();
    let recorded = cc.status.as_ref().and_then(|s| s.certificates.as_ref());
    let same_components = kept_tls_components(cc)
        .iter()
        .eq(components.iter().map(|c| c.as_str()));
    if let Some(recorded) =
        recorded.filter(|r| same_components && still_good(r, &fingerprint, &token, now))
    {
        return Ok((recorded.clone(), ca.trust_bundle()));
    }
    let secrets = api::<Secret>(&ctx.client, &namespace(cc));
    let mut not_after = None;
    for component in components {
        let issued = ca.issue(&leaf_request(cc, *component), now)?;
        not_after = Some(issued.not_after);
        apply(&secrets, &build_tls_secret(cc, *component, &issued)).await?;
    }
    let not_after = not_after.expect("at least one component gets a certificate");
    let status = CertificatesStatus {
        ca_fingerprint: fingerprint,
        issued_at: rfc3339(now),
        not_after: rfc3339(not_after),
        renew_at: rfc3339(now + (not_after - now) * 2 / 3),
        reissue_token: token,
    };
    Ok((status, ca.trust_bundle()))
}

/// Whether recorded certificates need not be issued again at `now`.
fn still_good(
    recorded: &CertificatesStatus,
    fingerprint: &str,
    token: &Option<String>,
    now: OffsetDateTime,
) -> bool {
    let renew_at = OffsetDateTime::parse(&recorded.renew_at, &Rfc3339);
    recorded.ca_fingerprint == fingerprint
        && &recorded.reissue_token == token
        && renew_at.is_ok_and(|at| now < at)
}

/// Whether the last status written reports sentinels, so they may still exist and must go now
/// that the spec has none (`replicas` back to 1, or an external Redis). The status, rather
/// than a read of the StatefulSet, decides, so a single Redis costs no request per reconcile.
fn had_sentinels(cc: &ValidCounterCluster) -> bool {
    cc.status
        .as_ref()
        .and_then(|s| s.redis.as_ref())
        .is_some_and(|r| r.sentinels.is_some())
}

/// Applies the Redis Service. A Service's `clusterIP` cannot change, so when the API server
/// refuses the apply for it (a single Redis's ClusterIP Service becoming the headless Service
/// of a replicated one), the Service is deleted, if this CounterCluster controls it, and
/// applied again.
async fn apply_service(
    services: &Api<Service>,
    service: &Service,
    cc: &ValidCounterCluster,
) -> Result<Service, WriteError> {
    match apply(services, service).await {
        Err(WriteError {
            source: kube::Error::Api(status),
            ..
        }) if cluster_ip_immutable(&status) => {
            // Boxed, as the rare path: its futures would otherwise deepen every reconcile's
            // stack.
            Box::pin(delete_owned(
                services,
                Service::KIND.as_str(),
                &service.name_any(),
                cc,
            ))
            .await?;
            Box::pin(apply(services, service)).await
        }
        other => other,
    }
}

/// Whether an API error is the refusal to change a Service's `clusterIP`:
/// `422 Service "x" is invalid: spec.clusterIPs[0]: Invalid value: ["None"]: may not change
/// once set`.
fn cluster_ip_immutable(status: &kube::core::Status) -> bool {
    status.code == 422 && status.message.contains("spec.clusterIP")
}

fn api<K>(client: &Client, ns: &str) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), ns)
}

/// Creates the managed Redis password Secret of each generation the pods use now (two during
/// a rotation) unless it exists. They are only ever created: the operator never reads, logs or
/// updates them, so it needs no permission to read Secrets.
async fn ensure_redis_secrets(
    cc: &ValidCounterCluster,
    client: &Client,
    ns: &str,
) -> Result<(), ReconcileError> {
    let plan = password_plan(cc);
    for generation in std::iter::once(plan.client).chain(plan.also_accepted) {
        let secret = build_redis_secret(cc, generation, &random_password());
        match api::<Secret>(client, ns)
            .create(&PostParams::default(), &secret)
            .await
        {
            Ok(_) => {}
            // Created by an earlier reconcile: keep it, whatever it holds.
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(source) => {
                return Err(ReconcileError::Secret {
                    name: password_secret_name(cc, generation),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// 32 random bytes from the operating system, hex-encoded.
fn random_password() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is unrecoverable and never happens on Linux.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the API server serves `monitoring.coreos.com/v1` (the prometheus-operator CRDs).
async fn serves_service_monitors(client: &Client) -> Result<bool, ReconcileError> {
    let version = format!("{SERVICE_MONITOR_GROUP}/{SERVICE_MONITOR_VERSION}");
    serves(client, &version, "servicemonitors").await
}

/// Whether the API server serves `resource` in `group_version` (a CRD that may be absent).
async fn serves(
    client: &Client,
    group_version: &str,
    resource: &str,
) -> Result<bool, ReconcileError> {
    match client.list_api_group_resources(group_version).await {
        Ok(resources) => Ok(resources.resources.iter().any(|r| r.name == resource)),
        Err(kube::Error::Api(status)) if group_not_served(&status) => Ok(false),
        Err(source) => Err(ReconcileError::Discovery {
            group_version: group_version.to_owned(),
            source,
        }),
    }
}

/// Whether a discovery error means the API group is not served. A real kube-apiserver answers
/// an unserved group with a plain-text `404 page not found`, not a Status object, which kube
/// turns into a Status with code 404 and the reason `Failed to parse error data`; `is_not_found`
/// only looks at the reason when the expected one (`NotFound`) is a known reason, so the code is
/// checked here.
fn group_not_served(status: &kube::core::Status) -> bool {
    status.is_not_found() || status.code == 404
}

/// Desired replicas and the replicas that are both updated to the current template and ready.
///
/// The status in an apply response is the Deployment controller's last report, which may
/// describe the previous generation: right after a template change its `updatedReplicas` still
/// counts the old pods. Until the controller has observed the current generation, no replica
/// counts as ready, so a CounterCluster is never reported Ready before its rollout happened.
fn deployment_readiness(deployment: &Deployment) -> ComponentReadiness {
    let desired = replicas_of(deployment.spec.as_ref().and_then(|s| s.replicas));
    let status = deployment.status.clone().unwrap_or_default();
    let ready = if observed_current_generation(&deployment.metadata, status.observed_generation) {
        status
            .ready_replicas
            .unwrap_or(0)
            .min(status.updated_replicas.unwrap_or(0))
    } else {
        0
    };
    ComponentReadiness { desired, ready }
}

/// The same for the managed Redis StatefulSet: ready replicas of the current revision, once the
/// StatefulSet controller has observed the current generation.
fn statefulset_readiness(statefulset: &StatefulSet) -> ComponentReadiness {
    let desired = replicas_of(statefulset.spec.as_ref().and_then(|s| s.replicas));
    let status = statefulset.status.clone().unwrap_or_default();
    let ready = if observed_current_generation(&statefulset.metadata, status.observed_generation) {
        let ready = status.ready_replicas.unwrap_or(0);
        if status.update_revision.is_some() && status.update_revision != status.current_revision {
            // A rolling update is under way: count only the pods already on the new revision.
            ready.min(status.updated_replicas.unwrap_or(0))
        } else {
            ready
        }
    } else {
        0
    };
    ComponentReadiness { desired, ready }
}

/// Whether every pod of the Deployment runs its current template and is ready, and no pod of
/// an older one is left.
fn deployment_rolled_out(deployment: &Deployment) -> bool {
    let desired = replicas_of(deployment.spec.as_ref().and_then(|s| s.replicas));
    let status = deployment.status.clone().unwrap_or_default();
    observed_current_generation(&deployment.metadata, status.observed_generation)
        && status.updated_replicas.unwrap_or(0) == desired
        && status.ready_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired
}

/// The same for a StatefulSet: its current revision is the update revision.
fn statefulset_rolled_out(statefulset: &StatefulSet) -> bool {
    let desired = replicas_of(statefulset.spec.as_ref().and_then(|s| s.replicas));
    let status = statefulset.status.clone().unwrap_or_default();
    observed_current_generation(&statefulset.metadata, status.observed_generation)
        && status.current_revision == status.update_revision
        && status.ready_replicas.unwrap_or(0) == desired
        && status.replicas == desired
}

/// A workload's `spec.replicas`, which defaults to 1.
fn replicas_of(spec_replicas: Option<i32>) -> i32 {
    spec_replicas.unwrap_or(1)
}

/// Whether a workload controller's status describes the object's current generation.
fn observed_current_generation(metadata: &ObjectMeta, observed: Option<i64>) -> bool {
    match (metadata.generation, observed) {
        (Some(generation), Some(observed)) => observed >= generation,
        // An object without a generation (never from a real API server) has nothing to wait for.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStatus, StatefulSetSpec, StatefulSetStatus,
    };
    use kube::core::Status;

    #[test]
    fn an_unserved_group_is_a_plain_text_404_or_a_not_found_status() {
        // What kube makes of a real kube-apiserver's answer for an unserved group.
        let plain =
            Status::failure("404 page not found", "Failed to parse error data").with_code(404);
        assert!(group_not_served(&plain));
        let status = Status::failure(
            "the server could not find the requested resource",
            "NotFound",
        )
        .with_code(404);
        assert!(group_not_served(&status));
        let forbidden = Status::failure("forbidden", "Forbidden").with_code(403);
        assert!(!group_not_served(&forbidden));
    }

    #[test]
    fn a_deployment_whose_new_generation_is_not_observed_has_no_ready_replicas() {
        let mut deployment = Deployment {
            metadata: ObjectMeta {
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(2),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(2),
                ready_replicas: Some(2),
                updated_replicas: Some(2),
                ..DeploymentStatus::default()
            }),
        };
        let readiness = deployment_readiness(&deployment);
        assert_eq!((readiness.desired, readiness.ready), (2, 0));
        deployment.status.as_mut().unwrap().observed_generation = Some(3);
        assert_eq!(deployment_readiness(&deployment).ready, 2);
        deployment.status.as_mut().unwrap().updated_replicas = Some(1);
        assert_eq!(deployment_readiness(&deployment).ready, 1);
    }

    #[test]
    fn a_statefulset_mid_update_counts_only_pods_of_the_new_revision() {
        let mut statefulset = StatefulSet {
            metadata: ObjectMeta {
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                ..StatefulSetSpec::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(1),
                ready_replicas: Some(1),
                replicas: 1,
                current_revision: Some("a".to_owned()),
                update_revision: Some("a".to_owned()),
                ..StatefulSetStatus::default()
            }),
        };
        assert_eq!(statefulset_readiness(&statefulset).ready, 0);
        let status = statefulset.status.as_mut().unwrap();
        status.observed_generation = Some(2);
        status.update_revision = Some("b".to_owned());
        status.updated_replicas = Some(0);
        assert_eq!(statefulset_readiness(&statefulset).ready, 0);
        let status = statefulset.status.as_mut().unwrap();
        status.current_revision = Some("b".to_owned());
        status.updated_replicas = Some(1);
        assert_eq!(statefulset_readiness(&statefulset).ready, 1);
    }

    #[test]
    fn only_a_refused_cluster_ip_change_replaces_the_service() {
        let immutable = Status::failure(
            r#"Service "likes-redis" is invalid: spec.clusterIPs[0]: Invalid value: ["None"]: may not change once set"#,
            "Invalid",
        )
        .with_code(422);
        assert!(cluster_ip_immutable(&immutable));
        let other_invalid = Status::failure(
            r#"Service "likes-redis" is invalid: spec.ports[0].port: Invalid value: 0"#,
            "Invalid",
        )
        .with_code(422);
        assert!(!cluster_ip_immutable(&other_invalid));
        let conflict = Status::failure("spec.clusterIP conflict", "Conflict").with_code(409);
        assert!(!cluster_ip_immutable(&conflict));
    }

    #[test]
    fn passwords_are_64_hex_characters_and_differ() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
