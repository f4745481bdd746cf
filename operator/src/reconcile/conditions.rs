//! Every word the operator writes about a CounterCluster: the condition types, statuses and
//! reasons of `status.conditions`, and the reasons and actions of its Events.
//!
//! Contract: these strings are API. `kubectl wait --for=condition=Ready`, alerts and people's
//! scripts match on them, so each is defined once here and nowhere else in the operator
//! (the CRD's READY column names `Ready` in a derive attribute, which cannot take a constant).
//! Condition reasons are CamelCase, as the Kubernetes API conventions ask. Which condition gets
//! which reason is [`super::status`]'s job; which Event is recorded when is [`super`]'s.

// --- condition types, always written in this order ----------------------------------------------

/// Every component has its desired ready replicas.
pub const READY: &str = "Ready";
/// The operator is rolling out a change.
pub const PROGRESSING: &str = "Progressing";
/// Something is wrong; the reason says what.
pub const DEGRADED: &str = "Degraded";

// --- condition statuses -------------------------------------------------------------------------

/// Condition status `"True"`.
pub const STATUS_TRUE: &str = "True";
/// Condition status `"False"`.
pub const STATUS_FALSE: &str = "False";
/// Condition status `"Unknown"`.
pub const STATUS_UNKNOWN: &str = "Unknown";

// --- condition reasons --------------------------------------------------------------------------

/// The spec is invalid in a way the CRD's schema and CEL rules cannot catch. Also the reason of
/// the Warning Event that says so.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Applying the child objects to the API server failed. Also the reason of the Warning Event
/// that says so.
pub const REASON_APPLY_FAILED: &str = "ApplyFailed";
/// `spec.paused` is true, so the operator does not reconcile.
pub const REASON_PAUSED: &str = "Paused";
/// Every component is ready.
pub const REASON_ALL_COMPONENTS_READY: &str = "AllComponentsReady";
/// At least one component has fewer ready replicas than desired.
pub const REASON_COMPONENTS_NOT_READY: &str = "ComponentsNotReady";
/// The operator applied the spec and waits for components to become ready.
pub const REASON_ROLLING_OUT: &str = "RollingOut";
/// Every component is ready, so nothing is rolling out.
pub const REASON_ROLLOUT_COMPLETE: &str = "RolloutComplete";
/// (`Degraded=False`) The spec was valid and applied.
pub const REASON_AS_EXPECTED: &str = "AsExpected";

// --- Event reasons (besides REASON_INVALID_SPEC and REASON_APPLY_FAILED) ------------------------

/// Normal Event: the objects of a CounterCluster's first generation were applied.
pub const EVENT_CREATED: &str = "Created";
/// Normal Event: the objects of a new generation were applied.
pub const EVENT_UPDATED: &str = "Updated";
/// Normal Event: an optional feature was skipped without failing (a ServiceMonitor without
/// its CRD).
pub const EVENT_FEATURE_SKIPPED: &str = "FeatureSkipped";

// --- Event actions ------------------------------------------------------------------------------

/// The action of Events about validating a spec.
pub const ACTION_VALIDATE: &str = "Validate";
/// The action of Events about applying the child objects.
pub const ACTION_APPLY: &str = "Apply";
