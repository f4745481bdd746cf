//! Reconcile: one pass of a CounterCluster through the pipeline, one module per stage:
//! [`validate`] → [`build`] (pure) → [`apply`] (writes through [`ssa`]) → [`status`] (pure),
//! with every condition and Event word in [`conditions`]. Which watch events start a pass is
//! [`crate::controller`]'s concern; when the next one is due (resync, error backoff) is said
//! here, in the [`Action`] each pass returns.
//!
//! Contract:
//! - [`reconcile`] is thin. `spec.paused` stops there (only the status says so). A spec that
//!   [`validate::validate`] rejects gets `Degraded/InvalidSpec`, a Warning Event and no write to
//!   any child object, and waits for the next spec change rather than requeueing.
//! - Otherwise [`apply::apply_children`] writes every object of the [`validate::ValidCounterCluster`]
//!   in the stated order, deletes the objects of disabled features, and reports what it
//!   observed; the status is computed by the pure [`status::compute_status`] and patched only
//!   when it changed, so a status write never triggers an endless loop of reconciles.
//! - An error is returned to the controller runtime, which requeues with per-object exponential
//!   backoff ([`Backoff`]); one failing CounterCluster never blocks the others or the watch.
//! - Events are best effort: failing to record one is logged and counted, never fatal.

pub mod apply;
pub mod build;
pub mod conditions;
pub mod replication;
pub mod ssa;
pub mod status;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use self::build::BuildContext;
use self::conditions::{
    ACTION_APPLY, ACTION_VALIDATE, EVENT_CREATED, EVENT_FEATURE_SKIPPED, EVENT_UPDATED,
    REASON_APPLY_FAILED, REASON_INVALID_SPEC,
};
use self::status::{Observed, compute_status};
use crate::crd::{CounterCluster, CounterClusterStatus};
use crate::metrics::{Metrics, ReconcileResult};

pub use ssa::FIELD_MANAGER;

/// How often a healthy CounterCluster is reconciled again even without a change: a safety net
/// for drift that no watch reports (the Redis Secret, which the operator may not read, and any
/// watch event lost while the operator was down).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// How often a CounterCluster with a replicated managed Redis is reconciled again, so that
/// `status.redis.primary` follows a failover the watches do not report (a failover changes no
/// Kubernetes object; a killed primary's pod going unready and ready again does, sooner); and
/// one whose Redis password is being rotated, as a safety net for the pod readiness changes
/// that move the rotation on.
pub const REPLICATION_RESYNC_PERIOD: Duration = Duration::from_secs(30);

/// Shared state of every reconcile.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Inputs of the builders that do not come from the spec.
    pub build: BuildContext,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Records Events; it remembers recent ones, so a repeat becomes a patch of the same Event's
    /// series instead of a new Event.
    pub recorder: Recorder,
    /// Per-CounterCluster error backoff.
    pub backoff: Backoff,
    /// The operator's namespace, which holds its CA Secret.
    pub ca_namespace: String,
}

impl Context {
    /// A context for `client` with an empty backoff table.
    pub fn new(
        client: Client,
        build: BuildContext,
        metrics: Arc<Metrics>,
        instance: String,
        ca_namespace: String,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            build,
            metrics,
            backoff: Backoff::default(),
            ca_namespace,
        }
    }
}

/// Why a reconcile failed; the runtime requeues the CounterCluster with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Writing a child object failed.
    #[error(transparent)]
    Write(#[from] ssa::WriteError),
    /// Reading or creating the managed Redis password Secret failed.
    #[error("ensuring the Redis password Secret {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Loading, making or using the operator's CA failed.
    #[error(transparent)]
    Certificates(#[from] crate::certificates::CaError),
    /// Asking the API server whether it serves an optional API (ServiceMonitors, cert-manager)
    /// failed.
    #[error("discovering the {group_version} API: {source}")]
    Discovery {
        group_version: String,
        #[source]
        source: kube::Error,
    },
    /// `security.tls.issuerRef` names a cert-manager issuer, but cert-manager is not installed.
    #[error(
        "security.tls.issuerRef asks cert-manager for the certificates, but the API server does not serve cert-manager.io/v1 Certificates (install cert-manager, or remove issuerRef to use the operator's own CA)"
    )]
    CertManagerNotServed,
    /// Patching `status` failed.
    #[error("patching the status: {0}")]
    Status(#[source] kube::Error),
}

impl ReconcileError {
    /// The static `reason` label of `highpress_operator_reconcile_errors_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::Write(_) => "apply",
            Self::Secret { .. } => "secret",
            Self::Certificates(_) => "certificates",
            Self::Discovery { .. } | Self::CertManagerNotServed => "discovery",
            Self::Status(_) => "status",
        }
    }
}

/// Reconciles one CounterCluster; the entry point the controller runtime calls.
///
/// An object that does not deserialize as a CounterCluster (possible only if the API server's
/// schema is older than this operator) gets a Warning Event and no retry until it changes; its
/// status is left alone, since it cannot be read.
pub async fn reconcile(
    object: Arc<DeserializeGuard<CounterCluster>>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let cc = match &object.0 {
        Ok(cc) => cc,
        Err(invalid) => {
            report_unreadable(invalid, &ctx).await;
            ctx.metrics
                .reconciled(ReconcileResult::InvalidSpec, started.elapsed());
            return Ok(Action::await_change());
        }
    };
    let outcome = reconcile_counter_cluster(cc, &ctx).await;
    let result = match &outcome {
        Ok(result) => *result,
        Err(error) => {
            ctx.metrics.reconcile_error(error.metric_reason());
            ReconcileResult::Error
        }
    };
    ctx.metrics.reconciled(result, started.elapsed());
    let result = outcome?;
    ctx.backoff.reset(&object_key(cc));
    Ok(match result {
        ReconcileResult::Success
            if replicated_managed_redis(cc) || build::redis_password::rotation(cc).is_some() =>
        {
            Action::requeue(REPLICATION_RESYNC_PERIOD)
        }
        ReconcileResult::Success => Action::requeue(RESYNC_PERIOD),
        _ => Action::await_change(),
    })
}

fn replicated_managed_redis(cc: &CounterCluster) -> bool {
    cc.spec.redis.mode == crate::crd::RedisMode::Managed && cc.spec.redis.managed.replicated()
}

/// What the runtime does after a failed reconcile: log it and requeue after the next backoff.
pub fn error_policy(
    object: Arc<DeserializeGuard<CounterCluster>>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let key = format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    );
    let delay = ctx.backoff.next(&key);
    tracing::warn!(
        countercluster = %key,
        error = %error,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    Action::requeue(delay)
}

async fn reconcile_counter_cluster(
    cc: &CounterCluster,
    ctx: &Context,
) -> Result<ReconcileResult, ReconcileError> {
    let previous = cc.status.as_ref();
    let new_generation = previous.and_then(|s| s.observed_generation) != cc.metadata.generation;

    if cc.spec.paused {
        patch_status(ctx, cc, &Observed::not_applied(None, None)).await?;
        return Ok(ReconcileResult::Paused);
    }

    let valid = match validate::validate(cc) {
        Ok(valid) => valid,
        Err(invalid) => {
            let message = invalid.to_string();
            if new_generation {
                publish(
                    ctx,
                    cc,
                    EventType::Warning,
                    REASON_INVALID_SPEC,
                    ACTION_VALIDATE,
                    &message,
                )
                .await;
            }
            patch_status(ctx, cc, &Observed::not_applied(Some(message), None)).await?;
            return Ok(ReconcileResult::InvalidSpec);
        }
    };

    match apply::apply_children(&valid, ctx).await {
        Ok(observed) => {
            if new_generation {
                let (reason, verb) = if previous.and_then(|s| s.observed_generation).is_none() {
                    (EVENT_CREATED, "created")
                } else {
                    (EVENT_UPDATED, "applied")
                };
                let generation = cc.metadata.generation.unwrap_or_default();
                let note = format!("{verb} the objects of generation {generation}");
                publish(ctx, cc, EventType::Normal, reason, ACTION_APPLY, &note).await;
                for skipped in &observed.skipped {
                    publish(
                        ctx,
                        cc,
                        EventType::Normal,
                        EVENT_FEATURE_SKIPPED,
                        ACTION_APPLY,
                        skipped,
                    )
                    .await;
                }
            }
            patch_status(ctx, cc, &observed).await?;
            Ok(ReconcileResult::Success)
        }
        Err(error) => {
            let message = error.to_string();
            publish(
                ctx,
                cc,
                EventType::Warning,
                REASON_APPLY_FAILED,
                ACTION_APPLY,
                &message,
            )
            .await;
            // Best effort: the apply error is what the runtime must see and retry.
            if let Err(status_error) =
                patch_status(ctx, cc, &Observed::not_applied(None, Some(message))).await
            {
                tracing::warn!(countercluster = %object_key(cc), error = %status_error, "could not report the apply failure in status");
            }
            Err(error)
        }
    }
}

/// Computes the status and patches the status subresource, unless nothing changed.
async fn patch_status(
    ctx: &Context,
    cc: &CounterCluster,
    observed: &Observed,
) -> Result<(), ReconcileError> {
    let previous = cc.status.as_ref();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = compute_status(cc, observed, previous, now);
    if previous == Some(&status) {
        return Ok(());
    }
    let api: Api<CounterCluster> = Api::namespaced(ctx.client.clone(), &build::namespace(cc));
    let patch = status_patch(&status);
    api.patch_status(
        &cc.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(ReconcileError::Status)?;
    Ok(())
}

/// The server-side apply body of a status patch.
pub fn status_patch(status: &CounterClusterStatus) -> serde_json::Value {
    json!({
        "apiVersion": CounterCluster::api_version(&()),
        "kind": CounterCluster::kind(&()),
        "status": status,
    })
}

async fn report_unreadable(invalid: &InvalidObject, ctx: &Context) {
    let reference = ObjectReference {
        api_version: Some(CounterCluster::api_version(&()).into_owned()),
        kind: Some(CounterCluster::kind(&()).into_owned()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        ..ObjectReference::default()
    };
    let note = format!("not a readable CounterCluster: {}", invalid.error);
    tracing::warn!(name = ?reference.name, namespace = ?reference.namespace, error = %invalid.error, "unreadable CounterCluster");
    publish_for(
        ctx,
        &reference,
        EventType::Warning,
        REASON_INVALID_SPEC,
        ACTION_VALIDATE,
        &note,
    )
    .await;
}

async fn publish(
    ctx: &Context,
    cc: &CounterCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    publish_for(ctx, &cc.object_ref(&()), type_, reason, action, note).await;
}

async fn publish_for(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, 1000)),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        ctx.metrics.reconcile_error("event");
        tracing::warn!(name = ?reference.name, namespace = ?reference.namespace, reason, error = %error, "could not record an Event");
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// `namespace/name`, the key of logs and of the backoff table.
pub fn object_key(cc: &CounterCluster) -> String {
    format!("{}/{}", build::namespace(cc), cc.name_any())
}

/// Exponential backoff per CounterCluster: 1 s, 2 s, 4 s … capped at 5 minutes, reset by a
/// successful reconcile.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(300);

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.to_owned()).or_insert(0);
        let delay = Self::BASE
            .saturating_mul(1u32.checked_shl(*count).unwrap_or(u32::MAX))
            .min(Self::MAX);
        *count = count.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..12).map(|_| backoff.next("a/b").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff.next("other/one").as_secs(), 1);
        backoff.reset("a/b");
        assert_eq!(backoff.next("a/b").as_secs(), 1);
    }

    #[test]
    fn long_event_notes_are_cut_on_a_character_boundary() {
        let note = "é".repeat(600);
        let cut = truncate(&note, 1000);
        assert!(cut.len() <= 1000 + "…".len());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", 1000), "short");
    }
}
