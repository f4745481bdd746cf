//! Logs and traces. [`init`] installs one `tracing` subscriber: the log layer (`log.level`,
//! `log.format`, on stderr) and, when `tracing.enabled`, an OpenTelemetry layer exporting spans
//! over OTLP/gRPC through a batch processor with a bounded queue, so an unreachable collector
//! drops spans instead of slowing or failing requests.
//!
//! W3C trace context travels in HTTP headers and gRPC metadata: [`extract_http`] continues a
//! caller's trace, [`inject_grpc`] hands ours to a counter. Root spans carry a `trace_id` field,
//! so JSON log lines written inside them name the trace.
//!
//! When tracing is off, [`enabled`] is false and the request paths build no spans at all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat};

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
    let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
        .with_batch_config(batch)
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        config.tracing.sampling_ratio,
    )));
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(resource(mode))
        .build())
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
/// sampled one and linked to at most `max_links` distinct ones. Returns the number of links.
pub fn adopt<'a>(
    span: &tracing::Span,
    contexts: impl Iterator<Item = &'a SpanContext>,
    max_links: usize,
) -> usize {
    let mut parent = false;
    let mut linked: Vec<opentelemetry::trace::SpanId> = Vec::new();
    for sc in contexts.filter(|sc| sc.is_valid()) {
        if !parent && sc.is_sampled() {
            set_parent(span, sc);
            parent = true;
        }
        if linked.len() < max_links && !linked.contains(&sc.span_id()) {
            linked.push(sc.span_id());
            add_link(span, sc.clone());
        }
    }
    linked.len()
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
