//! The `status` of a CounterCluster, computed from what was applied and observed.
//!
//! Contract: [`compute_status`] is pure. The reconciler gathers an [`Observed`] (replica counts
//! of the Deployments and of the managed Redis StatefulSet, a validation message, an apply
//! error), passes the status it read and the current time, and patches what comes back. No
//! client and no clock are read here, so tests freeze `now`.
//!
//! Conditions follow the Kubernetes API conventions: `Ready`, `Progressing` and `Degraded`,
//! always in that order, with status `"True"`, `"False"` or `"Unknown"`, a CamelCase reason from
//! [`super::conditions`], a message naming what is wrong, and `observedGeneration`. A condition's
//! `lastTransitionTime` is kept from the previous status while its status does not change.
//!
//! Precedence, first match wins:
//! 1. `spec.paused`: `Progressing=False/Paused`; `Ready` and `Degraded` are kept as they were
//!    (`Unknown/Paused` when there were none), and so are the replica counts, since nothing
//!    was reconciled or observed.
//! 2. An invalid spec: `Degraded=True/InvalidSpec`, `Ready=False`, `Progressing=False`.
//! 3. An apply error: `Degraded=True/ApplyFailed`, `Ready=False`, `Progressing=False`.
//!
//! In cases 1 to 3 nothing was observed, so the replica counts, Redis state and endpoint are
//! kept from the previous status.
//! 4. Otherwise, readiness: `Ready=True/AllComponentsReady`, or `Ready=False/ComponentsNotReady`
//!    with `Progressing=True/RollingOut` while any component lacks ready replicas.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::build::redis_password::next_password_state;
use super::build::{child_name, namespace};
use super::conditions::{
    DEGRADED, PROGRESSING, READY, REASON_ALL_COMPONENTS_READY, REASON_APPLY_FAILED,
    REASON_AS_EXPECTED, REASON_COMPONENTS_NOT_READY, REASON_INVALID_SPEC, REASON_PAUSED,
    REASON_ROLLING_OUT, REASON_ROLLOUT_COMPLETE, STATUS_FALSE, STATUS_TRUE, STATUS_UNKNOWN,
};
use super::replication::Replication;
use crate::crd::{
    CertificatesStatus, ComponentStatus, CounterCluster, CounterClusterStatus, IssuerRef,
    RedisStatus,
};

/// `status.redis.state` of a managed Redis with its desired ready replicas.
pub const REDIS_STATE_READY: &str = "Ready";
/// `status.redis.state` of a managed Redis without its desired ready replicas.
pub const REDIS_STATE_NOT_READY: &str = "NotReady";
/// `status.redis.state` of an external Redis, which the operator does not check.
pub const REDIS_STATE_EXTERNAL: &str = "External";

/// Desired and ready replicas of one workload, as read from its status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ComponentReadiness {
    /// Replicas the workload should run.
    pub desired: i32,
    /// Replicas passing their readiness probe.
    pub ready: i32,
}

impl ComponentReadiness {
    /// Whether the workload has at least its desired ready replicas.
    pub fn is_ready(self) -> bool {
        self.ready >= self.desired
    }

    fn to_status(self) -> ComponentStatus {
        ComponentStatus {
            replicas: self.desired,
            ready_replicas: self.ready,
            ready: format!("{}/{}", self.ready, self.desired),
        }
    }
}

/// What is known of Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisObserved {
    /// The operator's Redis StatefulSet, one Redis.
    Managed(ComponentReadiness),
    /// The operator's replicated Redis: the Redis StatefulSet (primary and replicas), the
    /// sentinel StatefulSet, and what the sentinels say. Ready when both StatefulSets have
    /// their desired ready pods and, if the sentinels answered, at least `minReplicasAck`
    /// replicas are in sync (with fewer, every increment is answered 503). A primary the
    /// operator cannot learn does not change readiness: the operator may be the one that
    /// cannot reach the sentinels.
    Replicated {
        /// The Redis StatefulSet.
        redis: ComponentReadiness,
        /// The sentinel StatefulSet.
        sentinels: ComponentReadiness,
        /// The primary and its in-sync replicas, as the sentinels see them.
        replication: Replication,
    },
    /// A Redis the operator does not run and does not check; never blocks `Ready`.
    External,
}

/// Everything the reconciler observed, the input of [`compute_status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The gateway Deployment.
    pub gateway: ComponentReadiness,
    /// The counter Deployment.
    pub counter: ComponentReadiness,
    /// Redis.
    pub redis: RedisObserved,
    /// Why the spec is invalid, when validation rejected it (nothing was applied).
    pub invalid_spec: Option<String>,
    /// Why applying the child objects failed, when it did.
    pub apply_error: Option<String>,
    /// Optional features that were skipped without failing, such as a ServiceMonitor whose CRD
    /// is not installed; appended to the `Degraded=False` message.
    pub skipped: Vec<String>,
    /// The certificates in the TLS Secrets, with `security.tls` on and the operator's CA.
    pub certificates: Option<CertificatesStatus>,
    /// The cert-manager issuer the `Certificate`s were applied for, with `security.tls` on
    /// and `issuerRef` set.
    pub cert_manager_issuer: Option<IssuerRef>,
    /// The components whose TLS Secrets were kept, by either.
    pub tls_components: Vec<String>,
    /// Every managed Redis pod, sentinel and counter pod runs its current template and is
    /// ready: a password rotation may take its next step.
    pub rolled_out: bool,
}

impl Observed {
    /// Nothing was applied or observed: the CounterCluster is paused (both `None`), its spec
    /// is invalid, or applying failed. The replica counts are then kept from the previous
    /// status.
    pub fn not_applied(invalid_spec: Option<String>, apply_error: Option<String>) -> Self {
        Self {
            gateway: ComponentReadiness::default(),
            counter: ComponentReadiness::default(),
            redis: RedisObserved::External,
            invalid_spec,
            apply_error,
            skipped: Vec::new(),
            certificates: None,
            cert_manager_issuer: None,
            tls_components: Vec::new(),
            rolled_out: false,
        }
    }
}

/// The in-cluster URL of the gateway's HTTP API: `http://<name>-gateway.<ns>.svc:<port>`.
pub fn endpoint(cc: &CounterCluster) -> String {
    format!(
        "http://{}.{}.svc:{}",
        child_name(cc, "gateway"),
        namespace(cc),
        cc.spec.gateway.service.port
    )
}

/// The status of `cc`, given what was observed, the status read from the API server and the
/// current time. See the module documentation for the rules.
pub fn compute_status(
    cc: &CounterCluster,
    observed: &Observed,
    previous: Option<&CounterClusterStatus>,
    now: Time,
) -> CounterClusterStatus {
    let generation = cc.metadata.generation;
    let conditions = ConditionWriter {
        previous: previous.map_or(&[][..], |status| status.conditions.as_slice()),
        generation,
        now,
    };
    let redis_state = match &observed.redis {
        RedisObserved::Managed(readiness) if readiness.is_ready() => REDIS_STATE_READY,
        RedisObserved::Managed(_) => REDIS_STATE_NOT_READY,
        RedisObserved::Replicated {
            redis, sentinels, ..
        } if redis.is_ready()
            && sentinels.is_ready()
            && too_few_in_sync(cc, observed).is_none() =>
        {
            REDIS_STATE_READY
        }
        RedisObserved::Replicated { .. } => REDIS_STATE_NOT_READY,
        RedisObserved::External => REDIS_STATE_EXTERNAL,
    };
    let conditions = compute_conditions(cc, observed, &conditions);
    if cc.spec.paused || observed.invalid_spec.is_some() || observed.apply_error.is_some() {
        // Nothing was applied or observed: keep what the last successful reconcile saw.
        return CounterClusterStatus {
            observed_generation: generation,
            conditions,
            ..previous.cloned().unwrap_or_default()
        };
    }
    CounterClusterStatus {
        observed_generation: generation,
        conditions,
        gateway: Some(observed.gateway.to_status()),
        counter: Some(observed.counter.to_status()),
        redis: Some(redis_status(cc, redis_state, observed)),
        endpoint: Some(endpoint(cc)),
        certificates: observed.certificates.clone(),
        cert_manager_issuer: observed.cert_manager_issuer.clone(),
        tls_components: observed.tls_components.clone(),
    }
}

fn redis_status(cc: &CounterCluster, state: &str, observed: &Observed) -> RedisStatus {
    // The managed Redis's password generation, and the next step of a rotation once this one
    // has rolled out.
    let (password_generation, password_rotation) = match observed.redis {
        RedisObserved::External => (None, None),
        _ => {
            let (generation, rotation) = next_password_state(cc, observed.rolled_out);
            (Some(generation), rotation)
        }
    };
    let RedisObserved::Replicated {
        redis,
        sentinels,
        replication,
    } = &observed.redis
    else {
        return RedisStatus {
            state: state.to_owned(),
            password_generation,
            password_rotation,
            ..RedisStatus::default()
        };
    };
    let (primary, in_sync_replicas, message) = match replication {
        Replication::Known { primary, in_sync } => (
            Some(primary.clone()),
            Some(*in_sync),
            too_few_in_sync(cc, observed),
        ),
        Replication::Unknown(why) => (None, None, Some(format!("primary unknown: {why}"))),
    };
    RedisStatus {
        state: state.to_owned(),
        replicas: Some(redis.desired),
        ready_replicas: Some(redis.ready),
        sentinels: Some(sentinels.desired),
        ready_sentinels: Some(sentinels.ready),
        primary,
        in_sync_replicas,
        message,
        password_generation,
        password_rotation,
    }
}

/// `"<n> of <replicas> replicas in sync, fewer than minReplicasAck <m>"` when the sentinels
/// report fewer in-sync replicas than each flush waits for.
fn too_few_in_sync(cc: &CounterCluster, observed: &Observed) -> Option<String> {
    let RedisObserved::Replicated {
        replication: Replication::Known { in_sync, .. },
        redis,
        ..
    } = &observed.redis
    else {
        return None;
    };
    let wanted = cc.spec.redis.managed.min_replicas_ack();
    (*in_sync < wanted).then(|| {
        format!(
            "{in_sync} of {} replicas in sync, fewer than minReplicasAck {wanted}: increments are \
             answered 503",
            redis.desired - 1
        )
    })
}

fn compute_conditions(
    cc: &CounterCluster,
    observed: &Observed,
    conditions: &ConditionWriter<'_>,
) -> Vec<Condition> {
    if cc.spec.paused {
        let kept_or_unknown = |type_: &str| {
            conditions.kept(type_).unwrap_or_else(|| {
                conditions.set(
                    type_,
                    STATUS_UNKNOWN,
                    REASON_PAUSED,
                    "spec.paused is true; the operator has not reconciled this CounterCluster",
                )
            })
        };
        return vec![
            kept_or_unknown(READY),
            conditions.set(
                PROGRESSING,
                STATUS_FALSE,
                REASON_PAUSED,
                "spec.paused is true; the operator does not reconcile this CounterCluster",
            ),
            kept_or_unknown(DEGRADED),
        ];
    }

    if let Some(problem) = &observed.invalid_spec {
        let message = format!("invalid spec: {problem}");
        return vec![
            conditions.set(READY, STATUS_FALSE, REASON_INVALID_SPEC, &message),
            conditions.set(PROGRESSING, STATUS_FALSE, REASON_INVALID_SPEC, &message),
            conditions.set(DEGRADED, STATUS_TRUE, REASON_INVALID_SPEC, &message),
        ];
    }

    if let Some(error) = &observed.apply_error {
        let message = format!("applying objects failed: {error}");
        return vec![
            conditions.set(READY, STATUS_FALSE, REASON_APPLY_FAILED, &message),
            conditions.set(PROGRESSING, STATUS_FALSE, REASON_APPLY_FAILED, &message),
            conditions.set(DEGRADED, STATUS_TRUE, REASON_APPLY_FAILED, &message),
        ];
    }

    let not_ready = not_ready_components(cc, observed);
    let mut degraded_message = "the spec is valid and applied".to_owned();
    for skipped in &observed.skipped {
        degraded_message.push_str("; ");
        degraded_message.push_str(skipped);
    }
    let degraded = conditions.set(
        DEGRADED,
        STATUS_FALSE,
        REASON_AS_EXPECTED,
        &degraded_message,
    );
    if not_ready.is_empty() {
        vec![
            conditions.set(
                READY,
                STATUS_TRUE,
                REASON_ALL_COMPONENTS_READY,
                "gateway, counter and redis have their desired ready replicas",
            ),
            conditions.set(
                PROGRESSING,
                STATUS_FALSE,
                REASON_ROLLOUT_COMPLETE,
                "every component is ready",
            ),
            degraded,
        ]
    } else {
        let list = not_ready.join(", ");
        vec![
            conditions.set(
                READY,
                STATUS_FALSE,
                REASON_COMPONENTS_NOT_READY,
                &format!("not ready: {list}"),
            ),
            conditions.set(
                PROGRESSING,
                STATUS_TRUE,
                REASON_ROLLING_OUT,
                &format!("waiting for {list}"),
            ),
            degraded,
        ]
    }
}

/// `"<component> (<ready>/<desired> ready)"` for each component short of ready replicas, in
/// the order gateway, counter, redis, sentinels; then Redis replication short of
/// `minReplicasAck`.
fn not_ready_components(cc: &CounterCluster, observed: &Observed) -> Vec<String> {
    let (redis, sentinels) = match &observed.redis {
        RedisObserved::Managed(readiness) => (Some(*readiness), None),
        RedisObserved::Replicated {
            redis, sentinels, ..
        } => (Some(*redis), Some(*sentinels)),
        RedisObserved::External => (None, None),
    };
    let mut not_ready: Vec<String> = [
        ("gateway", Some(observed.gateway)),
        ("counter", Some(observed.counter)),
        ("redis", redis),
        ("redis-sentinel", sentinels),
    ]
    .into_iter()
    .filter_map(|(name, readiness)| {
        let readiness = readiness?;
        (!readiness.is_ready())
            .then(|| format!("{name} ({}/{} ready)", readiness.ready, readiness.desired))
    })
    .collect();
    if let Some(why) = too_few_in_sync(cc, observed) {
        not_ready.push(format!("redis replication ({why})"));
    }
    not_ready
}

/// Writes conditions for one generation at one instant, keeping transition times from the
/// previous status.
struct ConditionWriter<'a> {
    previous: &'a [Condition],
    generation: Option<i64>,
    now: Time,
}

impl ConditionWriter<'_> {
    fn previous(&self, type_: &str) -> Option<&Condition> {
        self.previous.iter().find(|c| c.type_ == type_)
    }

    /// The previous condition of this type, unchanged.
    fn kept(&self, type_: &str) -> Option<Condition> {
        self.previous(type_).cloned()
    }

    /// A condition of this generation; `lastTransitionTime` is `now` only if the status flipped.
    fn set(&self, type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        let last_transition_time = match self.previous(type_) {
            Some(previous) if previous.status == status => previous.last_transition_time.clone(),
            _ => self.now.clone(),
        };
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time,
            observed_generation: self.generation,
        }
    }
}
