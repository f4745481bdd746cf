//! Logs and traces. [`init`] installs one `tracing` subscriber: the log layer (`log.level`,
//! `log.format`, on stderr) and, when `tracing.enabled`, an OpenTelemetry layer exporting spans
//! over OTLP/gRPC through a batch processor with a bounded queue, so an unreachable collector
//! drops spans (counted in `highpress_trace_spans_dropped_total`) instead of slowing or failing
//! requests.
//!
//! W3C trace context travels in HTTP headers and gRPC metadata: [`extract_http`] continues a
//! caller's trace, [`inject_grpc`] hands ours to a counter. Root spans carry a `trace_id` field,
//! so JSON log lines written inside them name the trace.
//!
//! When tracing is off, [`enabled`] is false and the request paths build no spans at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat};
use crate::metrics::METRICS;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Spans queued for export at most; past this, new spans are dropped, never waited for.
pub const MAX_QUEUED_SPANS: usize = 2048;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("tracing.otlp_endpoint: {0}")]
    Exporter(String),
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Whether spans are exported. False: request paths skip building spans.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The installed span pipeline; [`Telemetry::shutdown`] exports what is still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes queued spans (bounded by a timeout) and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        ENABLED.store(false, Ordering::Relaxed);
        let stopping =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT));
        match tokio::time::timeout(SHUTDOWN_TIMEOUT + Duration::from_secs(1), stopping).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "span exporter shutdown"),
            _ => tracing::warn!("span exporter did not shut down in time; queued spans dropped"),
        }
    }
}

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Installs logging and, when `tracing.enabled`, span export as `highpress-<mode>`. Call inside
/// the Tokio runtime: the exporter's batch task runs on it.
pub fn init(config: &Config, mode: &str) -> Result<Telemetry, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log_layer = match config.log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);

    let provider = if config.tracing.enabled {
        Some(provider(config, mode)?)
    } else {
        None
    };
    // Only this crate's spans are exported; events stay in the logs.
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("highpress"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("highpress")
            }))
    });
    tracing_subscriber::registry()
        .with(otel_layer)
        .with(log_layer)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    ENABLED.store(provider.is_some(), Ordering::Relaxed);
    if provider.is_some() {
        tracing::info!(
            endpoint = %config.tracing.otlp_endpoint,
            sampling_ratio = config.tracing.sampling_ratio,
            "exporting traces over OTLP/gRPC"
        );
    }
    Ok(Telemetry { provider })
}

fn provider(config: &Config, mode: &str) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.tracing.otlp_endpoint.trim())
        .with_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    // The Tokio-driven batch processor: the exporter's tonic channel needs the runtime, which
    // the SDK's default thread-based processor does not provide.
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(MAX_QUEUED_SPANS)
        .with_max_export_batch_size(512)
        .with_scheduled_delay(Duration::from_secs(1))
        .build();
    let pending = Arc::new(AtomicUsize::new(0));
    let exporter = CountingExporter {
        inner: exporter,
        pending: pending.clone(),
    };
    let processor = BoundedQueue {
        inner: BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
            .with_batch_config(batch)
            .build(),
        pending,
    };
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        config.tracing.sampling_ratio,
    )));
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(resource(mode))
        .build())
}

/// Bounds the spans waiting for export (queued or in an export under way) to
/// [`MAX_QUEUED_SPANS`], counting what it drops, in front of the batch processor (which drops
/// silently once its own queue of the same size is full, a bound this one reaches first).
#[derive(Debug)]
struct BoundedQueue<P> {
    inner: P,
    pending: Arc<AtomicUsize>,
}

impl<P: SpanProcessor> SpanProcessor for BoundedQueue<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_SPANS {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            METRICS
                .trace_spans_dropped
                .with_label_values(&["queue_full"])
                .inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting each batch's spans as exported or dropped once the collector
/// answered (or the export timed out), and releasing them from [`BoundedQueue`]'s bound.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        // Released however the export ends: the batch processor drops an export that outlives
        // its own timeout, and those spans are lost like a failed export's.
        let mut outcome = ExportOutcome {
            pending: &self.pending,
            spans,
            exported: false,
        };
        let result = self.inner.export(batch).await;
        outcome.exported = result.is_ok();
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// One export's spans: released from the bound and counted as exported or dropped when the
/// export ends, finished or abandoned.
struct ExportOutcome<'a> {
    pending: &'a AtomicUsize,
    spans: usize,
    exported: bool,
}

impl Drop for ExportOutcome<'_> {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.spans, Ordering::Relaxed);
        if self.exported {
            METRICS.trace_spans_exported.inc_by(self.spans as u64);
        } else {
            METRICS
                .trace_spans_dropped
                .with_label_values(&["export_failed"])
                .inc_by(self.spans as u64);
        }
    }
}

/// `service.name` = `highpress-<mode>`, plus the pod's name and namespace when the downward API
/// sets `POD_NAME` and `POD_NAMESPACE`.
fn resource(mode: &str) -> Resource {
    let mut attributes = vec![KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))];
    for (var, key) in [
        ("POD_NAME", "k8s.pod.name"),
        ("POD_NAMESPACE", "k8s.namespace.name"),
    ] {
        if let Ok(value) = std::env::var(var)
            && !value.is_empty()
        {
            attributes.push(KeyValue::new(key, value));
        }
    }
    Resource::builder_empty()
        .with_service_name(format!("highpress-{mode}"))
        .with_attributes(attributes)
        .build()
}

/// The OpenTelemetry span context of `span` (invalid when tracing is off or it is not sampled).
pub fn span_context(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

/// Records the span's trace id in its `trace_id` field, so log lines inside it carry it.
pub fn record_trace_id(span: &tracing::Span) {
    let sc = span_context(span);
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// Makes `span` a child of the remote `parent` when it is valid.
pub fn set_parent(span: &tracing::Span, parent: &SpanContext) {
    if parent.is_valid() {
        let _ = span.set_parent(Context::new().with_remote_span_context(parent.clone()));
    }
}

/// Links `span` to `other` (a span it worked for but is not the child of).
pub fn add_link(span: &tracing::Span, other: SpanContext) {
    if other.is_valid() {
        span.add_link(other);
    }
}

/// Makes `span` serve the requests whose span contexts are `contexts`: a child of the first
/// sampled one, and linked to at most `max_links` distinct others. Returns the number of links.
///
/// The parent is not linked as well: Jaeger folds a link to a span's own parent into that
/// parent reference and shows it as `FOLLOWS_FROM`, no longer as the parent.
///
/// When none of them is sampled, `span` becomes the child of the first (unsampled) one, so the
/// parent-based sampler drops it: work done only for unsampled requests starts no trace of its
/// own, and the share of traces in the backend stays the configured ratio.
pub fn adopt<'a>(
    span: &tracing::Span,
    contexts: impl Iterator<Item = &'a SpanContext>,
    max_links: usize,
) -> usize {
    let valid: Vec<&SpanContext> = contexts.filter(|sc| sc.is_valid()).collect();
    let Some(parent) = valid
        .iter()
        .find(|sc| sc.is_sampled())
        .or_else(|| valid.first())
        .copied()
    else {
        return 0;
    };
    set_parent(span, parent);
    let mut linked: Vec<&SpanContext> = Vec::new();
    for sc in valid {
        if linked.len() == max_links {
            break;
        }
        if sc.span_id() != parent.span_id() && !linked.iter().any(|l| l.span_id() == sc.span_id()) {
            linked.push(sc);
            add_link(span, sc.clone());
        }
    }
    linked.len()
}

/// Marks `span` as failed (OpenTelemetry status `ERROR`, which Jaeger shows as `error=true`);
/// the span must declare an `otel.status_code` field.
pub fn mark_error(span: &tracing::Span) {
    span.record("otel.status_code", "ERROR");
}

/// Tags the current span (a request's) with the counter type it is about, so traces can be
/// searched by it. Nothing when tracing is off.
pub fn record_counter_type(counter_type: &str) {
    if enabled() {
        tracing::Span::current().record("highpress.counter_type", counter_type);
    }
}

fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: std::sync::LazyLock<TraceContextPropagator> =
        std::sync::LazyLock::new(TraceContextPropagator::new);
    &PROPAGATOR
}

/// The caller's trace context from W3C `traceparent`/`tracestate` headers (HTTP or gRPC).
pub fn extract_http(headers: &axum::http::HeaderMap) -> SpanContext {
    let cx = propagator().extract(&HeaderExtractor(headers));
    cx.span().span_context().clone()
}

/// Writes `span`'s trace context into gRPC request metadata.
pub fn inject_grpc(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    propagator().inject_context(&span.context(), &mut MetadataInjector(metadata));
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_through_grpc_metadata() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let sc = extract_http(&headers);
        assert!(sc.is_valid() && sc.is_sampled() && sc.is_remote());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut metadata = tonic::metadata::MetadataMap::new();
        propagator().inject_context(
            &Context::new().with_remote_span_context(sc),
            &mut MetadataInjector(&mut metadata),
        );
        assert_eq!(
            metadata.get("traceparent").unwrap().to_str().unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn missing_or_malformed_traceparent_gives_no_parent() {
        assert!(!extract_http(&axum::http::HeaderMap::new()).is_valid());
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("traceparent", "garbage".parse().unwrap());
        assert!(!extract_http(&headers).is_valid());
    }
}
