//! Build: pure functions from a [`ValidCounterCluster`] to the typed Kubernetes objects it
//! becomes.
//!
//! Contract: nothing here talks to a cluster, reads the clock or draws random numbers, so the
//! same CounterCluster and [`BuildContext`] always give the same objects. The builders take only
//! a [`ValidCounterCluster`], so nothing is built from a spec that [`super::validate`] rejects
//! (the naming helpers, such as [`child_name`], take any CounterCluster). Every object carries
//! the standard `app.kubernetes.io/*` labels and, when the CounterCluster has a `metadata.uid`
//! (always true for one read from the API server), a controller owner reference to it.
//!
//! [`ChildObjects`] holds everything [`build_all`] returns, one field per child; the apply step
//! and [`ChildObjects::objects`] name every field without `..`, and each field's type has a
//! [`ChildKind`] ([`Child`]), the list of kinds the controller watches. So a new child cannot be
//! built without being applied, rendered and watched.
//!
//! One module per object family: [`config`] (the service's config ConfigMap), [`gateway`],
//! [`counter`], [`redis`] (managed Redis), [`redis_password`] (its password and rotation), [`redis_tls`] (its TLS),
//! [`sentinel`] (its sentinels when replicated),
//! [`pdb`], [`network_policy`], [`service_monitor`], [`security`] (the tokens and TLS Secrets in
//! the pods), and [`pod`] (the pod security, probes and scheduling every pod shares).
//!
//! The managed Redis password Secret `<name>-redis-auth-<uid8>` is not part of [`build_all`]: its
//! password is random and it is created once, which is the reconciler's job
//! ([`redis::build_redis_secret`] only shapes it). The pods only reference it. The same holds
//! for the TLS Secrets of `security.tls` ([`security::build_tls_secret`]): their keys are
//! drawn when the reconciler issues them.

pub mod config;
pub mod counter;
pub mod gateway;
pub mod network_policy;
pub mod pdb;
pub mod pod;
pub mod redis;
pub mod redis_password;
pub mod redis_tls;
pub mod security;
pub mod sentinel;
pub mod service_monitor;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};
use serde::Serialize;

use super::validate::ValidCounterCluster;
use crate::crd::{CounterCluster, RedisMode};

pub use config::{build_config_map, config_hash};
pub use counter::{build_counter_deployment, build_counter_headless_service};
pub use gateway::{build_gateway_deployment, build_gateway_hpa, build_gateway_service};
pub use network_policy::build_network_policies;
pub use pdb::build_pdbs;
pub use redis::{build_redis_secret, build_redis_service, build_redis_statefulset};
pub use sentinel::{build_sentinel_service, build_sentinel_statefulset};
pub use service_monitor::build_service_monitor;

/// Value of `app.kubernetes.io/name` on every object.
pub const APP_NAME: &str = "highpress";
/// Value of `app.kubernetes.io/managed-by` on every object.
pub const MANAGED_BY: &str = "highpress-operator";
/// Pod annotation holding [`config_hash`] of the ConfigMap, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "highpress.dev/config-hash";
/// Namespace used when a CounterCluster (e.g. one read from a file) names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Inputs to the builders that do not come from the CounterCluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    /// Image tag used when `spec.image.tag` is omitted: the operator's own version.
    pub default_image_tag: String,
}

impl Default for BuildContext {
    /// The tag matching this operator build's crate version.
    fn default() -> Self {
        Self {
            default_image_tag: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// The part of the installation an object belongs to (`app.kubernetes.io/component`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The service config ConfigMap.
    Config,
    /// The HTTP gateway tier.
    Gateway,
    /// The gRPC counter tier.
    Counter,
    /// The managed Redis.
    Redis,
    /// The sentinels of a replicated managed Redis.
    RedisSentinel,
}

impl Component {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Gateway => "gateway",
            Self::Counter => "counter",
            Self::Redis => "redis",
            Self::RedisSentinel => "redis-sentinel",
        }
    }
}

/// Each kind of object a CounterCluster owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildKind {
    ConfigMap,
    /// The managed Redis password, created by the apply step rather than built here.
    Secret,
    Service,
    StatefulSet,
    Deployment,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
    NetworkPolicy,
    /// `monitoring.coreos.com/v1`, served only where the prometheus-operator CRDs are installed.
    ServiceMonitor,
}

impl ChildKind {
    /// Every kind, in the order its first object is applied.
    pub const ALL: [Self; 9] = [
        Self::ConfigMap,
        Self::Secret,
        Self::Service,
        Self::StatefulSet,
        Self::Deployment,
        Self::HorizontalPodAutoscaler,
        Self::PodDisruptionBudget,
        Self::NetworkPolicy,
        Self::ServiceMonitor,
    ];

    /// The objects' `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
            Self::Service => "Service",
            Self::StatefulSet => "StatefulSet",
            Self::Deployment => "Deployment",
            Self::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Self::PodDisruptionBudget => "PodDisruptionBudget",
            Self::NetworkPolicy => "NetworkPolicy",
            Self::ServiceMonitor => "ServiceMonitor",
        }
    }
}

/// A type of child object and its [`ChildKind`]. [`ChildObjects::objects`] needs it of every
/// field's type, so a child of a new type needs a new kind, which the controller's exhaustive
/// match over [`ChildKind`] then makes it watch (or say why not).
pub trait Child: Serialize {
    /// The kind of every object of this type.
    const KIND: ChildKind;
}

impl Child for ConfigMap {
    const KIND: ChildKind = ChildKind::ConfigMap;
}
impl Child for Secret {
    const KIND: ChildKind = ChildKind::Secret;
}
impl Child for Service {
    const KIND: ChildKind = ChildKind::Service;
}
impl Child for StatefulSet {
    const KIND: ChildKind = ChildKind::StatefulSet;
}
impl Child for Deployment {
    const KIND: ChildKind = ChildKind::Deployment;
}
impl Child for HorizontalPodAutoscaler {
    const KIND: ChildKind = ChildKind::HorizontalPodAutoscaler;
}
impl Child for PodDisruptionBudget {
    const KIND: ChildKind = ChildKind::PodDisruptionBudget;
}
impl Child for NetworkPolicy {
    const KIND: ChildKind = ChildKind::NetworkPolicy;
}
/// The one dynamic child: the ServiceMonitor (its Rust type is not in `k8s-openapi`).
impl Child for DynamicObject {
    const KIND: ChildKind = ChildKind::ServiceMonitor;
}

/// Everything one CounterCluster becomes (but the Redis Secret), in apply order: config, Redis,
/// sentinels, counter, gateway, PDBs, NetworkPolicies, ServiceMonitor.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildObjects {
    pub config_map: ConfigMap,
    /// Present only for `redis.mode: Managed`.
    pub redis: Option<(Service, StatefulSet)>,
    /// The sentinels' headless Service and StatefulSet: present only for a managed Redis with
    /// `replicas` above 1.
    pub redis_sentinel: Option<(Service, StatefulSet)>,
    pub counter_service: Service,
    pub counter_deployment: Deployment,
    pub gateway_service: Service,
    pub gateway_deployment: Deployment,
    /// Present only when `gateway.autoscaling.enabled`.
    pub gateway_hpa: Option<HorizontalPodAutoscaler>,
    pub pdbs: Vec<PodDisruptionBudget>,
    /// Empty unless `networkPolicy.enabled`.
    pub network_policies: Vec<NetworkPolicy>,
    /// Present only when `observability.metrics.serviceMonitor.enabled`.
    pub service_monitor: Option<DynamicObject>,
}

impl ChildObjects {
    /// Every object with its kind, as JSON, in apply order.
    pub fn objects(&self) -> serde_json::Result<Vec<(ChildKind, serde_json::Value)>> {
        fn push<C: Child>(
            out: &mut Vec<(ChildKind, serde_json::Value)>,
            object: &C,
        ) -> serde_json::Result<()> {
            out.push((C::KIND, serde_json::to_value(object)?));
            Ok(())
        }
        let Self {
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
        } = self;
        let mut out = Vec::new();
        push(&mut out, config_map)?;
        if let Some((service, statefulset)) = redis {
            push(&mut out, service)?;
            push(&mut out, statefulset)?;
        }
        if let Some((service, statefulset)) = redis_sentinel {
            push(&mut out, service)?;
            push(&mut out, statefulset)?;
        }
        push(&mut out, counter_service)?;
        push(&mut out, counter_deployment)?;
        push(&mut out, gateway_service)?;
        push(&mut out, gateway_deployment)?;
        if let Some(hpa) = gateway_hpa {
            push(&mut out, hpa)?;
        }
        for pdb in pdbs {
            push(&mut out, pdb)?;
        }
        for policy in network_policies {
            push(&mut out, policy)?;
        }
        if let Some(monitor) = service_monitor {
            push(&mut out, monitor)?;
        }
        Ok(out)
    }

    /// Every object as JSON, in apply order.
    pub fn to_values(&self) -> serde_json::Result<Vec<serde_json::Value>> {
        Ok(self
            .objects()?
            .into_iter()
            .map(|(_, value)| value)
            .collect())
    }
}

/// Builds every child object of `cc`.
pub fn build_all(cc: &ValidCounterCluster, ctx: &BuildContext) -> ChildObjects {
    let managed = cc.spec.redis.mode == RedisMode::Managed;
    let redis = managed.then(|| (build_redis_service(cc), build_redis_statefulset(cc)));
    let redis_sentinel = (managed && cc.spec.redis.managed.replicated())
        .then(|| (build_sentinel_service(cc), build_sentinel_statefulset(cc)));
    ChildObjects {
        config_map: build_config_map(cc),
        redis,
        redis_sentinel,
        counter_service: build_counter_headless_service(cc),
        counter_deployment: build_counter_deployment(cc, ctx),
        gateway_service: build_gateway_service(cc),
        gateway_deployment: build_gateway_deployment(cc, ctx),
        gateway_hpa: build_gateway_hpa(cc),
        pdbs: build_pdbs(cc),
        network_policies: if cc.spec.network_policy.enabled {
            build_network_policies(cc)
        } else {
            Vec::new()
        },
        service_monitor: cc
            .spec
            .observability
            .metrics
            .service_monitor
            .enabled
            .then(|| build_service_monitor(cc)),
    }
}

/// The CounterCluster's namespace, or [`DEFAULT_NAMESPACE`].
pub fn namespace(cc: &CounterCluster) -> String {
    cc.namespace()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
}

/// `<cluster name>-<suffix>`.
pub fn child_name(cc: &CounterCluster, suffix: &str) -> String {
    format!("{}-{suffix}", cc.name_any())
}

/// Labels that select one component's pods: name, instance and component.
pub fn selector_labels(cc: &CounterCluster, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), cc.name_any()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.as_str().to_owned(),
        ),
    ])
}

/// Labels of an object that belongs to the whole cluster rather than one component: name,
/// instance and `app.kubernetes.io/managed-by`.
pub fn cluster_labels(cc: &CounterCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), cc.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
    ])
}

/// The selector labels plus `app.kubernetes.io/managed-by`.
pub fn labels(cc: &CounterCluster, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cc, component);
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGED_BY.to_owned(),
    );
    labels
}

/// A controller owner reference to `cc`, or `None` when it has no `metadata.uid` (a
/// CounterCluster read from a file rather than from the API server).
pub fn owner_reference(cc: &CounterCluster) -> Option<OwnerReference> {
    let uid = cc.meta().uid.clone()?;
    Some(OwnerReference {
        api_version: CounterCluster::api_version(&()).into_owned(),
        kind: CounterCluster::kind(&()).into_owned(),
        name: cc.name_any(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Metadata of a child object: its name, the cluster's namespace, labels and owner reference.
pub fn object_meta(cc: &CounterCluster, name: String, component: Component) -> ObjectMeta {
    ObjectMeta {
        labels: Some(labels(cc, component)),
        ..cluster_object_meta(cc, name)
    }
}

/// Metadata of a child object of no single component, labelled with [`cluster_labels`].
pub fn cluster_object_meta(cc: &CounterCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(cc)),
        labels: Some(cluster_labels(cc)),
        owner_references: owner_reference(cc).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}
