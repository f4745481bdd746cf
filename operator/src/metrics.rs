//! The operator's Prometheus metrics, `highpress_operator_*`, in a registry of its own.
//!
//! Every label value comes from a closed set written in this crate (results, error reasons),
//! never from object names, so cardinality stays fixed however many CounterClusters exist.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The outcome of one reconcile, the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Applied and status written.
    Success,
    /// The spec failed validation; nothing was applied.
    InvalidSpec,
    /// `spec.paused`; nothing was applied.
    Paused,
    /// Failed; requeued with backoff.
    Error,
}

impl ReconcileResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::InvalidSpec => "invalid_spec",
            Self::Paused => "paused",
            Self::Error => "error",
        }
    }
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    duration: Histogram,
    errors: IntCounterVec,
    leader: IntGauge,
}

impl Metrics {
    /// Registers every metric in a new registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "highpress_operator_reconcile_total",
                "Reconciles of CounterClusters, by result (success, invalid_spec, paused, error).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "highpress_operator_reconcile_duration_seconds",
                "Duration of one reconcile of a CounterCluster, API calls included.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "highpress_operator_reconcile_errors_total",
                "Reconcile errors by reason (apply, secret, certificates, discovery, status, event).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "highpress_operator_leader",
            "1 while this replica holds the leader Lease and reconciles, else 0.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "highpress_operator_build_info",
                "Always 1; the version label is the operator's version.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(errors.clone()),
            Box::new(leader.clone()),
            Box::new(build_info),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        // Pre-create every series so dashboards and alerts see zeros, not gaps.
        for result in [
            ReconcileResult::Success,
            ReconcileResult::InvalidSpec,
            ReconcileResult::Paused,
            ReconcileResult::Error,
        ] {
            reconciles.with_label_values(&[result.as_str()]);
        }
        for reason in [
            "apply",
            "secret",
            "certificates",
            "discovery",
            "status",
            "event",
        ] {
            errors.with_label_values(&[reason]);
        }
        Self {
            registry,
            reconciles,
            duration,
            errors,
            leader,
        }
    }

    /// Records one finished reconcile.
    pub fn reconciled(&self, result: ReconcileResult, elapsed: Duration) {
        self.reconciles.with_label_values(&[result.as_str()]).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts an error; `reason` is one of the static reasons in the metric's help.
    pub fn reconcile_error(&self, reason: &'static str) {
        self.errors.with_label_values(&[reason]).inc();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Reconciles counted with `result` so far.
    pub fn reconcile_count(&self, result: ReconcileResult) -> u64 {
        self.reconciles.with_label_values(&[result.as_str()]).get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
