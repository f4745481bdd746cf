//! The `CounterCluster` custom resource (`counterclusters.highpress.dev`, `v1alpha1`).
//!
//! Owns the Rust types behind the CRD and nothing else: the schema, its defaults and its CEL
//! rules are derived from them, so `highpress-operator crd` and the committed YAML in
//! `deploy/crds/` come from this one file. Every field's `///` comment becomes its schema
//! description, which is what `kubectl explain countercluster.spec...` shows.
//!
//! Defaults: each struct's `Default` impl holds the documented defaults, and the container-level
//! `#[serde(default)]` puts them both into deserialization and into the schema's `default`
//! keywords. A struct's derived `Default` would give `replicas: 0`, which the schema's own
//! `minimum: 1` rejects, so every `Default` here is written out by hand.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the CRD.
pub const GROUP: &str = "highpress.dev";
/// API version of the CRD.
pub const VERSION: &str = "v1alpha1";

/// Desired state of a highpress installation: a gateway tier, a counter tier and Redis.
// `Default` is derived here because every field's own `Default` is written out by hand.
// The printcolumn(...) groups repeat `type_ = "string"`, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "highpress.dev",
    version = "v1alpha1",
    kind = "CounterCluster",
    plural = "counterclusters",
    singular = "countercluster",
    shortname = "cc",
    namespaced,
    status = "CounterClusterStatus",
    derive = "PartialEq",
    doc = "A highpress counting service installation: gateway and counter Deployments backed by \
           managed or external Redis, reconciled by highpress-operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether every component has its desired ready replicas"
    ),
    printcolumn(
        name = "Gateway",
        type_ = "string",
        json_path = ".status.gateway.ready",
        description = "Ready/desired gateway replicas"
    ),
    printcolumn(
        name = "Counter",
        type_ = "string",
        json_path = ".status.counter.ready",
        description = "Ready/desired counter replicas"
    ),
    printcolumn(
        name = "Redis",
        type_ = "string",
        json_path = ".status.redis.state",
        description = "Redis state: Ready, NotReady or External"
    ),
    printcolumn(
        name = "Primary",
        type_ = "string",
        json_path = ".status.redis.primary",
        description = "The replicated managed Redis's primary pod",
        priority = 1
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "In-cluster URL of the gateway's HTTP API"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct CounterClusterSpec {
    /// Container image for the gateway and counter pods.
    pub image: ImageSpec,
    /// The gateway tier: the public HTTP API, which routes each counter to its owning counter pod.
    pub gateway: GatewaySpec,
    /// The counter tier: coalesces increments and caches reads in front of Redis.
    pub counter: CounterSpec,
    /// Where counters are stored: a Redis the operator manages, or an external one.
    pub redis: RedisSpec,
    /// Policies per counter type (the map key, `[a-z0-9_-]{1,64}`, e.g. `like`), rendered into
    /// the service config as `counter_types`. Counter types without an entry count any
    /// increment within the global limit.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub counter_types: BTreeMap<String, CounterTypeSpec>,
    /// REST API switches, rendered into the service config as `api`.
    pub api: ApiSpec,
    /// Idempotent retries with the `Idempotency-Key` header, rendered into the service config
    /// as `idempotency`.
    pub idempotency: IdempotencySpec,
    /// Counter event publishing.
    pub events: EventsSpec,
    /// Logs, metrics and tracing.
    pub observability: ObservabilitySpec,
    /// Scheduling and metadata applied to every pod the operator creates.
    pub pod_template: PodTemplateOverrides,
    /// NetworkPolicies that let only the gateway reach the counters' gRPC port and only the
    /// counters reach Redis. They take effect only with a CNI that enforces NetworkPolicy.
    pub network_policy: NetworkPolicySpec,
    /// API tokens, rate limits and TLS between the tiers (docs/security.md).
    pub security: SecuritySpec,
    /// Stop reconciling this CounterCluster without deleting anything it created.
    pub paused: bool,
}

/// Container image of the highpress service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageSpec {
    /// Image repository, without the tag.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Image tag. When omitted, the operator uses the tag matching its own version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Kubernetes image pull policy.
    pub pull_policy: PullPolicy,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: "highpress".to_owned(),
            tag: None,
            pull_policy: PullPolicy::IfNotPresent,
        }
    }
}

/// Kubernetes image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull only when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// The gateway tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpec {
    /// Number of gateway pods. Ignored while autoscaling is enabled.
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// CPU and memory requests and limits of each gateway container.
    pub resources: ResourceRequirements,
    /// The Service in front of the gateway pods.
    pub service: GatewayServiceSpec,
    /// Horizontal pod autoscaling of the gateway tier.
    pub autoscaling: AutoscalingSpec,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            replicas: 2,
            resources: resources("100m", "64Mi", "256Mi"),
            service: GatewayServiceSpec::default(),
            autoscaling: AutoscalingSpec::default(),
        }
    }
}

/// The Service that exposes the gateway's HTTP API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayServiceSpec {
    /// Kubernetes Service type.
    #[serde(rename = "type")]
    pub type_: ServiceType,
    /// Service port of the HTTP API.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for GatewayServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::ClusterIP,
            port: 8080,
        }
    }
}

/// Kubernetes Service type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    ClusterIP,
    /// Also exposed on a port of every node.
    NodePort,
    /// Also exposed through the cloud provider's load balancer.
    LoadBalancer,
}

/// Horizontal pod autoscaling on CPU utilization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.minReplicas <= self.maxReplicas",
    "message": "autoscaling.minReplicas must not exceed autoscaling.maxReplicas"
}]))]
pub struct AutoscalingSpec {
    /// Create a HorizontalPodAutoscaler for the gateway. Disabling it deletes the HPA.
    pub enabled: bool,
    /// Lower bound on the number of gateway pods.
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Upper bound on the number of gateway pods.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Average CPU utilization, in percent of the CPU request, that the autoscaler aims for.
    #[serde(rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: 2,
            max_replicas: 10,
            target_cpu_utilization_percentage: 70,
        }
    }
}

/// The counter tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CounterSpec {
    /// Number of counter pods. Each owns a share of the counters.
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// CPU and memory requests and limits of each counter container.
    pub resources: ResourceRequirements,
    /// Write coalescing: increments to Redis are batched.
    pub coalescing: CoalescingSpec,
    /// Read cache in each counter pod.
    pub cache: CacheSpec,
    /// Leaderboards (top counters per hour, day, week and all time), kept by each counter pod.
    pub leaderboards: LeaderboardSpec,
}

impl Default for CounterSpec {
    fn default() -> Self {
        Self {
            replicas: 3,
            resources: resources("250m", "128Mi", "512Mi"),
            coalescing: CoalescingSpec::default(),
            cache: CacheSpec::default(),
            leaderboards: LeaderboardSpec::default(),
        }
    }
}

/// Write coalescing in the counter pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CoalescingSpec {
    /// Largest number of counter increments sent to Redis in one flush.
    #[schemars(range(min = 1, max = 65536))]
    pub max_batch: i32,
}

impl Default for CoalescingSpec {
    fn default() -> Self {
        Self { max_batch: 4096 }
    }
}

/// Read cache in the counter pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.ttlMillis == 0 || self.maxEntries >= 1",
    "message": "cache.maxEntries must be at least 1 when cache.ttlMillis is above 0"
}]))]
pub struct CacheSpec {
    /// How long a cached counter value is served, in milliseconds. 0 disables the cache.
    #[schemars(range(min = 0))]
    pub ttl_millis: i64,
    /// Largest number of counters held in the cache of one counter pod.
    #[schemars(range(min = 0))]
    pub max_entries: i64,
}

impl Default for CacheSpec {
    fn default() -> Self {
        Self {
            ttl_millis: 1000,
            max_entries: 100_000,
        }
    }
}

/// Leaderboards in the counter pods: rendered as the service's `leaderboard` section, with
/// the service's defaults and bounds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LeaderboardSpec {
    /// Whether increments feed the leaderboards. Off saves about four Redis commands per
    /// distinct counter per flush interval, and the leaderboard endpoint answers 404.
    pub enabled: bool,
    /// Counters each ranking keeps (its K): memory and Redis writes grow with this, not with
    /// the number of counters, and each counter pod keeps 4 × K candidates per current hour,
    /// day and week ranking in memory. 100 (the largest `limit` a leaderboard read may ask
    /// for) to 100000.
    #[schemars(range(min = 100, max = 100_000))]
    pub top_k: i32,
    /// How often accumulated leaderboard updates are written to Redis, in milliseconds, so
    /// leaderboards lag the counters by up to this interval. At least 1.
    #[schemars(range(min = 1))]
    pub flush_interval_millis: i64,
}

impl Default for LeaderboardSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            top_k: 1000,
            flush_interval_millis: 1000,
        }
    }
}

/// Where counters are stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.mode != 'External' || has(self.external)",
    "message": "redis.external with a url is required when redis.mode is External"
}]))]
pub struct RedisSpec {
    /// Managed: the operator runs a Redis StatefulSet. External: use the Redis at external.url.
    pub mode: RedisMode,
    /// Settings of the managed Redis. Used when mode is Managed.
    pub managed: ManagedRedisSpec,
    /// Connection to an external Redis. Required when mode is External.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedisSpec>,
    /// Where counters live in Redis. Highpress: `c:{counter_type}:{resource_id}`. HighGoPress:
    /// `counter:{resource_id}:{counter_type}`, HighGoPress's own keys, to take over (or share) a
    /// HighGoPress Redis as it is.
    pub key_layout: KeyLayout,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            mode: RedisMode::Managed,
            managed: ManagedRedisSpec::default(),
            external: None,
            key_layout: KeyLayout::Highpress,
        }
    }
}

/// The service's `store.key_layout`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum KeyLayout {
    /// `c:{counter_type}:{resource_id}`.
    #[default]
    Highpress,
    /// `counter:{resource_id}:{counter_type}`, as HighGoPress kept them.
    HighGoPress,
}

/// Who runs Redis.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RedisMode {
    /// The operator runs Redis as a StatefulSet with a PVC and a generated password Secret.
    Managed,
    /// Redis runs elsewhere; the operator only points highpress at it.
    External,
}

/// A Redis StatefulSet run by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.minReplicasAck) || self.minReplicasAck < self.replicas",
    "message": "redis.managed.minReplicasAck must be below redis.managed.replicas"
}]))]
pub struct ManagedRedisSpec {
    /// Redis container image.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Redis pods. 1: a single Redis, no Sentinel. More: one primary and replicas-1 replicas
    /// in the StatefulSet `<name>-redis`, plus three sentinels (`<name>-redis-sentinel`) that
    /// fail over to a replica when the primary is down; the counters find the primary through
    /// the sentinels. Going from 1 to more keeps the data: pod 0 stays the primary at first and
    /// the new pods replicate from it.
    #[schemars(range(min = 1, max = 16))]
    pub replicas: i32,
    /// Replicas that must have a flush of increments before the increments are acknowledged
    /// (the service's `redis.min_replicas_ack`: each flush ends with `WAIT n`). When omitted, 1
    /// with replicas above 1, else 0. Must be below replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub min_replicas_ack: Option<i32>,
    /// Which password the managed Redis uses. Raise it (by one) to rotate the password: the
    /// operator makes a new random one in the Secret `<name>-redis-auth-<uid8>-<generation>`
    /// (generation 0 is `<name>-redis-auth-<uid8>`) and rolls it out in three steps, Redis
    /// accepting both passwords until every client uses the new one, so no client is ever
    /// refused (`status.redis.passwordRotation` follows the steps).
    #[schemars(range(min = 0, max = 1_000_000))]
    pub password_generation: i32,
    /// The persistent volume that holds the Redis data.
    pub storage: StorageSpec,
    /// Enable Redis append-only-file persistence (AOF).
    pub append_only: bool,
    /// CPU and memory requests and limits of the Redis container.
    pub resources: ResourceRequirements,
    /// A redis_exporter sidecar in the Redis pod, serving Redis metrics for Prometheus.
    pub exporter: RedisExporterSpec,
}

impl ManagedRedisSpec {
    /// Whether the managed Redis is replicated and watched by sentinels (replicas above 1).
    pub fn replicated(&self) -> bool {
        self.replicas > 1
    }

    /// `minReplicasAck`, or its default: 1 when replicated, else 0.
    pub fn min_replicas_ack(&self) -> i32 {
        self.min_replicas_ack
            .unwrap_or(if self.replicated() { 1 } else { 0 })
    }
}

impl Default for ManagedRedisSpec {
    fn default() -> Self {
        Self {
            image: "redis:7.2".to_owned(),
            replicas: 1,
            min_replicas_ack: None,
            password_generation: 0,
            storage: StorageSpec::default(),
            append_only: true,
            resources: resources("100m", "128Mi", "512Mi"),
            exporter: RedisExporterSpec::default(),
        }
    }
}

/// The redis_exporter sidecar of the managed Redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RedisExporterSpec {
    /// Run redis_exporter next to Redis, serving `redis_*` metrics at `/metrics` on port 9121
    /// (`metrics` on the Redis Service), which the ServiceMonitor scrapes when it is enabled.
    /// Turning it on or off restarts the Redis pod.
    pub enabled: bool,
    /// redis_exporter container image.
    #[schemars(length(min = 1))]
    pub image: String,
    /// CPU and memory requests and limits of the redis_exporter container.
    pub resources: ResourceRequirements,
}

impl Default for RedisExporterSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            image: "oliver006/redis_exporter:v1.67.0".to_owned(),
            resources: resources("10m", "32Mi", "64Mi"),
        }
    }
}

/// A PersistentVolumeClaim template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct StorageSpec {
    /// Requested volume size, as a Kubernetes quantity such as 1Gi.
    pub size: Quantity,
    /// StorageClass of the claim. When omitted, the cluster's default StorageClass is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: Quantity("1Gi".to_owned()),
            storage_class_name: None,
        }
    }
}

/// A Redis that the operator does not run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.url.startsWith('redis://') || self.url.startsWith('rediss://')",
    "message": "redis.external.url must start with redis:// or rediss://"
}, {
    "rule": "!has(self.sentinel) || !self.cluster",
    "message": "redis.external.sentinel and redis.external.cluster are mutually exclusive"
}]))]
pub struct ExternalRedisSpec {
    /// Redis URL, redis:// or rediss:// (TLS). Put no password here: use passwordSecretRef.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Secret key holding the Redis password. It reaches pods only as a Secret reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Use the Redis Cluster client (slot routing, MOVED/ASK handling) instead of a single node.
    #[serde(default)]
    pub cluster: bool,
    /// Find the primary through your own Redis Sentinel (and follow its failovers). The
    /// url's host and port are then not used; `passwordSecretRef` is still the primary's
    /// password. Not with `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<ExternalSentinelSpec>,
    /// Replicas that must have a flush of increments before they are acknowledged (the
    /// service's `redis.min_replicas_ack`, `WAIT n` after each flush). 0 acknowledges once
    /// the primary has them.
    #[serde(default)]
    #[schemars(range(min = 0, max = 16))]
    pub min_replicas_ack: i32,
    /// TLS to this Redis (its nodes and sentinels alike) with your own CA or a client
    /// certificate; a `rediss://` url without it trusts the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ExternalRedisTlsSpec>,
}

/// TLS to an external Redis: the service's `redis.tls`, its files mounted into the counter pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedisTlsSpec {
    /// Secret key holding the PEM CA certificates that sign the Redis servers' certificates.
    /// Omitted: the public web roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<CaSecretRef>,
    /// Name of a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) whose certificate the
    /// counters present, for a Redis started with `tls-auth-clients yes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub client_certificate_secret: Option<String>,
}

/// The Secret key of a PEM CA bundle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    /// Name of the Secret, in the CounterCluster's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".to_owned()
}

/// Sentinels that monitor an external Redis primary.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSentinelSpec {
    /// The name the sentinels monitor the primary under (`sentinel monitor <name> ...`).
    #[schemars(length(min = 1), regex(pattern = r"^\S+$"))]
    pub master_name: String,
    /// The sentinels, `host:port` each.
    #[schemars(length(min = 1, max = 16))]
    pub addrs: Vec<String>,
    /// Secret key holding the sentinels' own password, if they require one. It reaches pods
    /// only as a Secret reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// A key in a Secret in the CounterCluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".to_owned()
}

/// The policy of one counter type.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.uniquePerUser || !has(self.maxIncrement)",
    "message": "counterTypes: maxIncrement has no effect with uniquePerUser, which accepts only +1 and -1"
}]))]
pub struct CounterTypeSpec {
    /// Count each user at most once per counter (likes, follows): +1 counts only if the user
    /// had not counted, -1 only if they had, and any other increment is rejected. Costs one
    /// Redis set per counter, holding the users who counted.
    pub unique_per_user: bool,
    /// Largest absolute increment for this counter type, overriding the service default
    /// (1,000,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9_007_199_254_740_992_i64))]
    pub max_increment: Option<i64>,
}

/// REST API switches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ApiSpec {
    /// Serve `DELETE /api/v1/counter/{resource_id}/{counter_type}`, which resets a counter to 0.
    /// Off, the route answers `403 reset_disabled`.
    pub allow_reset: bool,
}

/// Idempotent retries with the `Idempotency-Key` request header.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct IdempotencySpec {
    /// How long the outcome of a request with an `Idempotency-Key` is kept: a retry within it
    /// gets the original answer and counts nothing. A number and a unit (ms, s, m, h or d),
    /// such as 30s, 24h or 7d; a bare number is milliseconds. 1s to 30d.
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)?$"))]
    pub ttl: String,
}

impl Default for IdempotencySpec {
    fn default() -> Self {
        Self {
            ttl: "24h".to_owned(),
        }
    }
}

/// Counter event publishing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct EventsSpec {
    /// Publish counter events to Kafka.
    pub kafka: KafkaSpec,
}

/// Kafka event publishing: one JSON event per acknowledged increment (docs/events.md).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.enabled || size(self.brokers) > 0",
    "message": "events.kafka.brokers must list at least one broker when events.kafka.enabled is true"
}]))]
pub struct KafkaSpec {
    /// Publish counter events to Kafka.
    pub enabled: bool,
    /// Kafka bootstrap brokers, host:port.
    #[schemars(length(max = 64))]
    pub brokers: Vec<String>,
    /// Topic the events are written to.
    #[schemars(length(min = 1))]
    pub topic: String,
    /// Most events waiting in the outbox in Redis while Kafka is away or slow (about 0.3 KB of
    /// Redis memory each).
    #[schemars(range(min = 1))]
    pub outbox_max_len: u64,
    /// At the bound: Reject new increments with 503 (no acknowledged increment lacks its
    /// event), or Drop their events (counted).
    pub outbox_full_policy: OutboxFullPolicy,
}

/// What happens to new increments while the events outbox is full.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum OutboxFullPolicy {
    /// Refuse them with 503 `overloaded`; nothing is written.
    #[default]
    Reject,
    /// Count them, and drop their events.
    Drop,
}

impl OutboxFullPolicy {
    /// The service's `kafka.outbox_full_policy` value.
    pub fn as_config(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Drop => "drop",
        }
    }
}

impl Default for KafkaSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: Vec::new(),
            topic: "counter_events".to_owned(),
            outbox_max_len: 1_000_000,
            outbox_full_policy: OutboxFullPolicy::Reject,
        }
    }
}

/// Logs, metrics and tracing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ObservabilitySpec {
    /// Log level of the highpress pods.
    pub log_level: LogLevel,
    /// Prometheus metrics scraping.
    pub metrics: MetricsSpec,
    /// OpenTelemetry tracing.
    pub tracing: TracingSpec,
}

impl Default for ObservabilitySpec {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            metrics: MetricsSpec::default(),
            tracing: TracingSpec::default(),
        }
    }
}

/// Log level.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Warnings and errors only.
    Warn,
    /// Errors only.
    Error,
}

/// Prometheus metrics scraping.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MetricsSpec {
    /// A prometheus-operator ServiceMonitor for the highpress pods and, when it runs, the
    /// managed Redis's redis_exporter sidecar.
    pub service_monitor: ServiceMonitorSpec,
}

/// A prometheus-operator ServiceMonitor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceMonitorSpec {
    /// Create the ServiceMonitor. Skipped, with a status message, when its CRD is not installed.
    pub enabled: bool,
    /// Scrape interval, a Prometheus duration such as 15s or 1m.
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: String,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: "15s".to_owned(),
        }
    }
}

/// OpenTelemetry tracing over OTLP/gRPC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.enabled || has(self.otlpEndpoint)",
    "message": "observability.tracing.otlpEndpoint is required when tracing is enabled"
}]))]
pub struct TracingSpec {
    /// Export traces.
    pub enabled: bool,
    /// OTLP/gRPC collector endpoint, such as http://jaeger-collector.observability:4317.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Fraction of requests traced, from 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: f64,
}

impl Default for TracingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            otlp_endpoint: None,
            sampling_ratio: 0.01,
        }
    }
}

/// Scheduling and metadata for every pod the operator creates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PodTemplateOverrides {
    /// Annotations added to every pod.
    pub annotations: BTreeMap<String, String>,
    /// Node labels every pod must match.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of every pod.
    pub tolerations: Vec<Toleration>,
    /// Affinity of every pod. When omitted, pods only get the operator's topology spread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// NetworkPolicies around the counter and Redis pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicies `<name>-counter` and, for managed Redis, `<name>-redis`
    /// (on by default: only the gateways reach the counters' gRPC port, only the counters
    /// reach Redis). The HTTP port (metrics, probes) stays open to every pod, as does the
    /// redis_exporter's metrics port when the sidecar runs.
    pub enabled: bool,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// API tokens, rate limits and TLS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SecuritySpec {
    /// Require an API token (`Authorization: Bearer`) on the API routes.
    pub auth: AuthSpec,
    /// A token bucket per API token (per client address with auth off) on increments and
    /// reads, enforced by each gateway pod on its own.
    pub rate_limit: RateLimitSpec,
    /// TLS on the REST API, between gateways and counters, and on the managed Redis, with
    /// certificates the operator issues and renews.
    pub tls: TlsSpec,
}

/// API tokens: the service's `api.auth`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.enabled || has(self.tokensSecretRef)",
    "message": "security.auth.tokensSecretRef is required when security.auth.enabled is true"
}]))]
pub struct AuthSpec {
    /// Require a token with the route's scope on every API route; probes and `/health` stay
    /// open.
    pub enabled: bool,
    /// The Secret key holding the tokens file (YAML: `tokens:` of `{name, scopes, sha256 or
    /// token, rate_limit}`, docs/security.md). It is mounted into the pods, never read by the
    /// operator; an edit reaches running pods within about a minute, without a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_secret_ref: Option<TokensSecretRef>,
    /// `/metrics` needs a token with the `metrics` scope too. The ServiceMonitor does not send
    /// one, so leave this off when Prometheus scrapes through it.
    pub protect_metrics: bool,
}

/// The Secret key of an API tokens file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokensSecretRef {
    /// Name of the Secret, in the CounterCluster's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_tokens_key")]
    #[schemars(length(min = 1), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_tokens_key() -> String {
    "tokens.yaml".to_owned()
}

/// Rate limits: the service's `api.rate_limit`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitSpec {
    /// Answer `429 rate_limited` with `Retry-After` beyond the rate; nothing is written.
    pub enabled: bool,
    /// Sustained requests per second per token (or client address), per gateway pod: N
    /// gateway pods allow N times it. A token's own `rate_limit` in the tokens file wins.
    #[schemars(range(min = 1))]
    pub requests_per_second: u32,
    /// Requests a client may send at once after being idle.
    #[schemars(range(min = 1))]
    pub burst: u32,
}

impl Default for RateLimitSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            requests_per_second: 1000,
            burst: 2000,
        }
    }
}

/// TLS between the tiers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsSpec {
    /// HTTPS on every highpress pod's HTTP port (the API, probes and metrics): the gateway's
    /// certificate names the gateway Service, the counter's the counter Service. Clients
    /// trust the `ca.crt` of the Secret `<name>-gateway-tls`.
    pub api: bool,
    /// Mutual TLS between gateways and counters: a counter accepts only clients with a
    /// certificate for client authentication from the same CA, which only the gateways get.
    pub grpc: bool,
    /// TLS on the managed Redis: its pods and sentinels listen on TLS alone (replication and
    /// the sentinels' links included), with a certificate for `<name>-redis` and
    /// `<name>-redis-sentinel` and their pods; the counters, the exporter and the operator
    /// verify it, and still log in with the password. A renewed certificate is loaded by
    /// Redis without a restart, and by each sentinel with a restart of its own process.
    /// Managed Redis only: for an external one, see `redis.external.tls`.
    pub redis: bool,
    /// Have cert-manager issue the certificates, from this Issuer or ClusterIssuer, through one
    /// `Certificate` per component (the Secrets keep their names). Omitted: the operator's own
    /// CA issues them. The issuer must put its CA in `ca.crt` (CA, Vault and self-signed
    /// issuers do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// A cert-manager issuer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the issuer.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `Issuer` (in the CounterCluster's namespace) or `ClusterIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
    /// API group of the issuer.
    #[serde(default = "default_issuer_group")]
    #[schemars(length(min = 1))]
    pub group: String,
}

/// The kind of a cert-manager issuer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum IssuerKind {
    #[default]
    Issuer,
    ClusterIssuer,
}

fn default_issuer_group() -> String {
    "cert-manager.io".to_owned()
}

impl TlsSpec {
    /// Whether the highpress pods get a certificate (HTTPS or mutual TLS between the tiers).
    pub fn highpress(&self) -> bool {
        self.api || self.grpc
    }
}

/// Observed state, written by the operator on the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CounterClusterStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded, following the Kubernetes API conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Replicas of the gateway Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<ComponentStatus>,
    /// Replicas of the counter Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<ComponentStatus>,
    /// State of Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStatus>,
    /// In-cluster URL of the gateway's HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The certificates the operator last issued for `security.tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificatesStatus>,
    /// The cert-manager issuer whose `Certificate`s were last applied for `security.tls`, so
    /// they are deleted when the spec stops asking for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_manager_issuer: Option<IssuerRef>,
    /// The components whose TLS Secret (`<name>-<component>-tls`) the operator keeps, itself
    /// or through cert-manager: `gateway`, `counter`, `redis`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_components: Vec<String>,
}

/// The certificates of one CounterCluster, as the operator last issued them into the Secrets
/// `<name>-<component>-tls` of `tlsComponents`. The operator may write those Secrets but
/// not read them, so this record is how it knows when to issue again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesStatus {
    /// SHA-256 fingerprint of the CA certificate that signed them (hex).
    pub ca_fingerprint: String,
    /// When they were issued (RFC 3339).
    pub issued_at: String,
    /// When they expire (RFC 3339).
    pub not_after: String,
    /// When the operator issues new ones, two thirds into their life (RFC 3339).
    pub renew_at: String,
    /// The value of the annotation `highpress.dev/reissue-certificates` they were issued for:
    /// setting it to a new value issues new ones at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_token: Option<String>,
}

/// Replica counts of one Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Desired replicas.
    pub replicas: i32,
    /// Replicas passing their readiness probe.
    pub ready_replicas: i32,
    /// readyReplicas/replicas, for the kubectl columns.
    pub ready: String,
}

/// State of Redis.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisStatus {
    /// Ready, NotReady (managed Redis), or External (not checked by the operator).
    pub state: String,
    /// Replicated managed Redis only: desired Redis pods (primary and replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Replicated managed Redis only: Redis pods passing their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Replicated managed Redis only: desired sentinels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinels: Option<i32>,
    /// Replicated managed Redis only: sentinels passing their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_sentinels: Option<i32>,
    /// Replicated managed Redis only: the primary's pod, as a quorum of the sentinels name it
    /// when the operator last asked them. Absent while unknown (see `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Replicated managed Redis only: replicas that the sentinels see replicating from the
    /// primary with their link up (the sentinels refresh this every 10 seconds). Fewer than
    /// `minReplicasAck` makes Redis NotReady, since every increment is then answered 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_sync_replicas: Option<i32>,
    /// Replicated managed Redis only: why the primary is unknown, or why too few replicas are
    /// in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Managed Redis: the password generation every pod uses, and the only one Redis accepts
    /// (absent: 0). It becomes `spec.redis.managed.passwordGeneration` when a rotation ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_generation: Option<i32>,
    /// Managed Redis, while the password is being rotated: from which generation to which,
    /// and the step under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_rotation: Option<PasswordRotation>,
}

/// A rotation of the managed Redis password, from one generation to another.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordRotation {
    /// The generation every client used before.
    pub from: i32,
    /// The generation being rolled out.
    pub to: i32,
    /// The step under way; each starts once the previous one has rolled out everywhere.
    pub phase: RotationPhase,
}

/// The steps of a password rotation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RotationPhase {
    /// Redis and the sentinels accept both passwords; every client still uses the old one.
    AcceptBoth,
    /// Every client (counters, replicas, sentinels, the exporter) switches to the new one;
    /// Redis and the sentinels still accept both.
    UseNew,
    /// Redis and the sentinels accept only the new one.
    DropOld,
}

fn resources(cpu_request: &str, memory_request: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu_request.to_owned())),
            ("memory".to_owned(), Quantity(memory_request.to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity(memory_limit.to_owned()),
        )])),
        claims: None,
    }
}
