//! Prometheus metrics, prefix `highpress_`. Label values come only from closed sets: route
//! templates, methods, status codes and classes, gRPC method and code names, the process mode and
//! static reason names. The one exception is the gateway's `endpoint` label: a counter endpoint
//! address, bounded by discovery, whose series are removed when discovery drops the endpoint.
//! `docs/observability.md` lists every metric.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the service, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub flush_batch_size: Histogram,
    pub flush_duration: Histogram,
    pub flushes: IntCounter,
    pub flush_keys: IntCounter,
    pub flush_increments: IntCounter,
    pub store_commands: IntCounter,
    pub acknowledged_increments: IntCounter,
    pub rejected_increments: IntCounterVec,
    pub cache_requests: IntCounterVec,
    /// `cache_requests{result="hit"}`, resolved once for the read path.
    pub cache_hits: IntCounter,
    /// `cache_requests{result="miss"}`.
    pub cache_misses: IntCounter,
    pub store_errors: IntCounterVec,
    pub store_up: IntGauge,
    pub store_redirects: IntCounter,
    pub store_primary_changes: IntCounter,
    pub leaderboard_flushes: IntCounterVec,
    pub gateway_batch_size: Histogram,
    pub discovery_refreshes: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub grpc_requests: IntCounterVec,
    pub grpc_duration: HistogramVec,
    pub gateway_calls: IntCounterVec,
    pub gateway_errors: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    pub endpoint_up: IntGaugeVec,
    pub gateway_endpoints: IntGauge,
    pub events_queued: IntGauge,
    pub events_sent: IntCounter,
    pub events_dropped: IntCounterVec,
    pub events_producer_errors: IntCounter,
    pub events_relay_lag: prometheus::Gauge,
    pub events_relay_partitions: IntGauge,
    pub events_outbox_max_len: IntGauge,
    pub trace_spans_exported: IntCounter,
    pub trace_spans_dropped: IntCounterVec,
    pub connections: IntGaugeVec,
    pub connections_rejected: IntCounterVec,
    pub connections_idle_closed: IntCounterVec,
    pub connections_header_timeout: IntCounterVec,
    pub tls_handshakes_failed: IntCounterVec,
    pub auth_requests: IntCounterVec,
    pub auth_rejected_missing: IntCounter,
    pub auth_rejected_unknown: IntCounter,
    pub auth_reloads: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub rate_limit_untracked: IntCounter,
    pub tls_reloads: IntCounterVec,
}

/// The gRPC methods a metric may name; anything else is `other`.
pub const GRPC_METHODS: [&str; 9] = [
    "Increment",
    "IncrementBatch",
    "Get",
    "BatchGet",
    "Leaderboard",
    "Reset",
    "Check",
    "Watch",
    "other",
];

/// The `reason` labels of `highpress_events_dropped_total`, registered up front so every series
/// exists from the start; `events::DropReason` names the same set (tested there).
pub const EVENT_DROP_REASONS: [&str; 1] = ["outbox_full"];

/// The `reason` labels of `highpress_trace_spans_dropped_total`.
pub const SPAN_DROP_REASONS: [&str; 2] = ["queue_full", "export_failed"];

/// `2xx`, `4xx`, `5xx` (or `1xx`, `3xx`): the class of an HTTP status code.
pub fn http_status_class(code: u16) -> &'static str {
    match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The class of a gRPC code: `ok`, `client_error` (the caller's request was refused as asked) or
/// `server_error` (the service could not answer: unavailable, overloaded, deadline, internal).
pub fn grpc_code_class(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Cancelled => "client_error",
        _ => "server_error",
    }
}

/// The canonical upper-case name of a gRPC code, as the gRPC spec spells it.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn exp_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).expect("static bucket layout is valid")
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "highpress_http_requests_total",
                "HTTP requests by route template, method, status and mode.",
            ),
            &["route", "method", "status", "status_class", "mode"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "highpress_http_request_duration_seconds",
                "HTTP request latency.",
            )
            .buckets(exp_buckets(0.000_1, 2.0, 16)),
            &["route", "method", "status", "status_class", "mode"],
        )
        .expect("valid metric");
        let flush_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "highpress_coalescer_batch_size",
                "Increments per coalesced flush.",
            )
            .buckets(exp_buckets(1.0, 2.0, 17)),
        )
        .expect("valid metric");
        let flush_duration = Histogram::with_opts(
            HistogramOpts::new(
                "highpress_coalescer_flush_duration_seconds",
                "Time from flush start to store acknowledgement.",
            )
            .buckets(exp_buckets(0.000_05, 2.0, 16)),
        )
        .expect("valid metric");
        let flushes = IntCounter::new(
            "highpress_coalescer_flushes_total",
            "Coalesced flushes sent to the store.",
        )
        .expect("valid metric");
        let flush_keys = IntCounter::new(
            "highpress_coalescer_flush_keys_total",
            "Distinct counter keys over all flushes (the numerator of the coalescing limit).",
        )
        .expect("valid metric");
        let flush_increments = IntCounter::new(
            "highpress_coalescer_flush_increments_total",
            "Increments over all flushes (the denominator of the coalescing limit).",
        )
        .expect("valid metric");
        let store_commands = IntCounter::new(
            "highpress_store_commands_total",
            "Store commands sent for counter writes; divide by acknowledged increments for commands per increment.",
        )
        .expect("valid metric");
        let acknowledged_increments = IntCounter::new(
            "highpress_increments_acknowledged_total",
            "Increments acknowledged after the store acknowledged them.",
        )
        .expect("valid metric");
        let rejected_increments = IntCounterVec::new(
            Opts::new(
                "highpress_increments_rejected_total",
                "Increments not applied, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "highpress_cache_requests_total",
                "Read-cache lookups by result (hit or miss).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let cache_hits = cache_requests.with_label_values(&["hit"]);
        let cache_misses = cache_requests.with_label_values(&["miss"]);
        let store_errors = IntCounterVec::new(
            Opts::new(
                "highpress_store_errors_total",
                "Store operations that failed, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let store_redirects = IntCounter::new(
            "highpress_store_redirects_total",
            "Redis Cluster commands answered MOVED or ASK and resent to the owning node.",
        )
        .expect("valid metric");
        let store_primary_changes = IntCounter::new(
            "highpress_store_primary_changes_total",
            "Times Sentinel named a primary other than the one written to (the first one included).",
        )
        .expect("valid metric");
        let store_up = IntGauge::new("highpress_store_up", "1 while the store answers, else 0.")
            .expect("valid metric");
        let leaderboard_flushes = IntCounterVec::new(
            Opts::new(
                "highpress_leaderboard_flushes_total",
                "Leaderboard flushes by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let gateway_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "highpress_gateway_batch_size",
                "Increments per IncrementBatch call from the gateway to a counter.",
            )
            .buckets(exp_buckets(1.0, 2.0, 14)),
        )
        .expect("valid metric");
        let discovery_refreshes = IntCounterVec::new(
            Opts::new(
                "highpress_discovery_refreshes_total",
                "Counter discovery refreshes by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "highpress_build_info",
                "Build information; the value is always 1.",
            ),
            &["version", "mode"],
        )
        .expect("valid metric");
        let grpc_requests = IntCounterVec::new(
            Opts::new(
                "highpress_grpc_server_requests_total",
                "gRPC calls served, by method, code, code class and mode.",
            ),
            &["method", "code", "code_class", "mode"],
        )
        .expect("valid metric");
        let grpc_duration = HistogramVec::new(
            HistogramOpts::new(
                "highpress_grpc_server_request_duration_seconds",
                "gRPC call latency until the response headers (unary calls: the answer).",
            )
            .buckets(exp_buckets(0.000_1, 2.0, 16)),
            &["method", "code_class", "mode"],
        )
        .expect("valid metric");
        let gateway_calls = IntCounterVec::new(
            Opts::new(
                "highpress_gateway_endpoint_calls_total",
                "gRPC calls from the gateway to a counter endpoint, by method.",
            ),
            &["endpoint", "method"],
        )
        .expect("valid metric");
        let gateway_errors = IntCounterVec::new(
            Opts::new(
                "highpress_gateway_endpoint_errors_total",
                "Failed gateway calls to a counter endpoint: transport (the breaker counts it), deadline, or rejected (the counter answered an error).",
            ),
            &["endpoint", "method", "kind"],
        )
        .expect("valid metric");
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "highpress_gateway_breaker_state",
                "Circuit breaker state per counter endpoint: 1 for the current state, 0 for the others.",
            ),
            &["endpoint", "state"],
        )
        .expect("valid metric");
        let endpoint_up = IntGaugeVec::new(
            Opts::new(
                "highpress_gateway_endpoint_up",
                "1 while the counter endpoint's gRPC health check says SERVING, else 0.",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let gateway_endpoints = IntGauge::new(
            "highpress_gateway_endpoints",
            "Counter endpoints the gateway currently knows from discovery.",
        )
        .expect("valid metric");
        let events_queued = IntGauge::new(
            "highpress_events_queued",
            "Counter events waiting in the outbox partitions this process relays to Kafka.",
        )
        .expect("valid metric");
        let events_sent = IntCounter::new(
            "highpress_events_sent_total",
            "Counter events the Kafka broker acknowledged.",
        )
        .expect("valid metric");
        let events_dropped = IntCounterVec::new(
            Opts::new(
                "highpress_events_dropped_total",
                "Counter events not written, by reason: outbox_full (the outbox held kafka.outbox_max_len events and kafka.outbox_full_policy is drop).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let events_producer_errors = IntCounter::new(
            "highpress_events_producer_errors_total",
            "Errors the Kafka client reported (broker unreachable, all brokers down, ...); the events wait in the outbox.",
        )
        .expect("valid metric");
        let events_relay_lag = prometheus::Gauge::new(
            "highpress_events_relay_lag_seconds",
            "Age of the oldest event not yet delivered to Kafka in the outbox partitions this process relays (0 when they are empty).",
        )
        .expect("valid metric");
        let events_relay_partitions = IntGauge::new(
            "highpress_events_relay_partitions",
            "Outbox partitions this process relays to Kafka (holds the lease of).",
        )
        .expect("valid metric");
        let events_outbox_max_len = IntGauge::new(
            "highpress_events_outbox_max_len",
            "The outbox's bound in events (kafka.outbox_max_len); 0 when events are off.",
        )
        .expect("valid metric");
        let trace_spans_exported = IntCounter::new(
            "highpress_trace_spans_exported_total",
            "Sampled spans the trace collector accepted (tracing.enabled).",
        )
        .expect("valid metric");
        let trace_spans_dropped = IntCounterVec::new(
            Opts::new(
                "highpress_trace_spans_dropped_total",
                "Sampled spans not exported, by reason: queue_full (the export queue held its bound while the collector was slow or away) or export_failed (the collector did not accept their batch).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let connections = IntGaugeVec::new(
            Opts::new(
                "highpress_connections",
                "Open client connections, by server: http (REST, or the counter's probes) or grpc (the counter's gRPC).",
            ),
            &["server"],
        )
        .expect("valid metric");
        let connections_rejected = IntCounterVec::new(
            Opts::new(
                "highpress_connections_rejected_total",
                "Connections closed as soon as they were accepted because server.max_connections were open, by server.",
            ),
            &["server"],
        )
        .expect("valid metric");
        let connections_idle_closed = IntCounterVec::new(
            Opts::new(
                "highpress_connections_idle_closed_total",
                "Connections closed after server.idle_timeout_ms without a byte either way, by server.",
            ),
            &["server"],
        )
        .expect("valid metric");
        let connections_header_timeout = IntCounterVec::new(
            Opts::new(
                "highpress_connections_header_timeout_total",
                "HTTP/1 connections closed because a request's headers did not arrive within server.header_read_timeout_ms, by server.",
            ),
            &["server"],
        )
        .expect("valid metric");
        let tls_handshakes_failed = IntCounterVec::new(
            Opts::new(
                "highpress_tls_handshakes_failed_total",
                "TLS handshakes that failed (no or an unknown client certificate, plain text on a TLS port, a protocol error) or did not finish within server.header_read_timeout_ms, by server.",
            ),
            &["server"],
        )
        .expect("valid metric");
        let auth_requests = IntCounterVec::new(
            Opts::new(
                "highpress_auth_requests_total",
                "Requests to guarded routes that presented a known API token, by token name and result: allowed, or forbidden (the token lacks the route's scope).",
            ),
            &["token", "result"],
        )
        .expect("valid metric");
        let auth_rejected = IntCounterVec::new(
            Opts::new(
                "highpress_auth_rejected_total",
                "Requests to guarded routes answered 401, by reason: missing (no bearer token) or unknown (a token that matches none).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let auth_reloads = IntCounterVec::new(
            Opts::new(
                "highpress_auth_reloads_total",
                "Reads of a changed api.auth.tokens_file, by result: loaded, or failed (the previous tokens stay).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "highpress_rate_limited_total",
                "Requests answered 429 rate_limited (api.rate_limit), by client: the API token's name, or address when limiting by client address.",
            ),
            &["client"],
        )
        .expect("valid metric");
        let rate_limit_untracked = IntCounter::new(
            "highpress_rate_limit_untracked_total",
            "Requests let through without a bucket because api.rate_limit.max_clients addresses were all mid-bucket.",
        )
        .expect("valid metric");
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "highpress_tls_reloads_total",
                "Changes of a server's TLS files (server.tls, grpc.tls), by server and result: loaded, or failed (the previous certificate stays).",
            ),
            &["server", "result"],
        )
        .expect("valid metric");

        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(flush_batch_size.clone()),
            Box::new(flush_duration.clone()),
            Box::new(flushes.clone()),
            Box::new(flush_keys.clone()),
            Box::new(flush_increments.clone()),
            Box::new(store_commands.clone()),
            Box::new(acknowledged_increments.clone()),
            Box::new(rejected_increments.clone()),
            Box::new(cache_requests.clone()),
            Box::new(store_errors.clone()),
            Box::new(store_up.clone()),
            Box::new(store_redirects.clone()),
            Box::new(store_primary_changes.clone()),
            Box::new(leaderboard_flushes.clone()),
            Box::new(gateway_batch_size.clone()),
            Box::new(discovery_refreshes.clone()),
            Box::new(build_info.clone()),
            Box::new(grpc_requests.clone()),
            Box::new(grpc_duration.clone()),
            Box::new(gateway_calls.clone()),
            Box::new(gateway_errors.clone()),
            Box::new(breaker_state.clone()),
            Box::new(endpoint_up.clone()),
            Box::new(gateway_endpoints.clone()),
            Box::new(events_queued.clone()),
            Box::new(events_sent.clone()),
            Box::new(events_dropped.clone()),
            Box::new(events_producer_errors.clone()),
            Box::new(events_relay_lag.clone()),
            Box::new(events_relay_partitions.clone()),
            Box::new(events_outbox_max_len.clone()),
            Box::new(trace_spans_exported.clone()),
            Box::new(trace_spans_dropped.clone()),
            Box::new(connections.clone()),
            Box::new(connections_rejected.clone()),
            Box::new(connections_idle_closed.clone()),
            Box::new(connections_header_timeout.clone()),
            Box::new(tls_handshakes_failed.clone()),
            Box::new(auth_requests.clone()),
            Box::new(auth_rejected.clone()),
            Box::new(auth_reloads.clone()),
            Box::new(rate_limited.clone()),
            Box::new(rate_limit_untracked.clone()),
            Box::new(tls_reloads.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Pre-create the closed-set series, so dashboards and alerts see zeros, not gaps, before
        // the first error, rejection or refresh.
        for kind in ["unavailable", "internal", "rejected"] {
            store_errors.with_label_values(&[kind]);
        }
        for reason in [
            "overflow",
            "overloaded",
            "unavailable",
            "shutting_down",
            "internal",
        ] {
            rejected_increments.with_label_values(&[reason]);
        }
        for result in ["ok", "empty", "error"] {
            discovery_refreshes.with_label_values(&[result]);
        }
        for result in ["ok", "error"] {
            leaderboard_flushes.with_label_values(&[result]);
        }
        for reason in EVENT_DROP_REASONS {
            events_dropped.with_label_values(&[reason]);
        }
        for reason in SPAN_DROP_REASONS {
            trace_spans_dropped.with_label_values(&[reason]);
        }
        for server in ["http", "grpc"] {
            connections.with_label_values(&[server]);
            connections_rejected.with_label_values(&[server]);
            connections_idle_closed.with_label_values(&[server]);
            tls_handshakes_failed.with_label_values(&[server]);
        }
        // Only HTTP/1 has a header timeout.
        connections_header_timeout.with_label_values(&["http"]);
        for result in ["loaded", "failed"] {
            auth_reloads.with_label_values(&[result]);
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::new(
                    std::process::id() as i32,
                    "highpress",
                ),
            ))
            .expect("process collector registers once");

        Self {
            registry,
            http_requests,
            http_duration,
            flush_batch_size,
            flush_duration,
            flushes,
            flush_keys,
            flush_increments,
            store_commands,
            acknowledged_increments,
            rejected_increments,
            cache_requests,
            cache_hits,
            cache_misses,
            store_errors,
            store_up,
            store_redirects,
            store_primary_changes,
            leaderboard_flushes,
            gateway_batch_size,
            discovery_refreshes,
            build_info,
            grpc_requests,
            grpc_duration,
            gateway_calls,
            gateway_errors,
            breaker_state,
            endpoint_up,
            gateway_endpoints,
            events_queued,
            events_sent,
            events_dropped,
            events_producer_errors,
            events_relay_lag,
            events_relay_partitions,
            events_outbox_max_len,
            trace_spans_exported,
            trace_spans_dropped,
            connections,
            connections_rejected,
            connections_idle_closed,
            connections_header_timeout,
            tls_handshakes_failed,
            auth_requests,
            auth_rejected_missing: auth_rejected.with_label_values(&["missing"]),
            auth_rejected_unknown: auth_rejected.with_label_values(&["unknown"]),
            auth_reloads,
            rate_limited,
            rate_limit_untracked,
            tls_reloads,
        }
    }

    /// Drops every series of a counter endpoint that discovery removed.
    pub fn forget_endpoint(&self, endpoint: &str) {
        for method in GRPC_METHODS {
            let _ = self.gateway_calls.remove_label_values(&[endpoint, method]);
            for kind in ["transport", "deadline", "rejected"] {
                let _ = self
                    .gateway_errors
                    .remove_label_values(&[endpoint, method, kind]);
            }
        }
        for state in ["closed", "open", "half_open"] {
            let _ = self.breaker_state.remove_label_values(&[endpoint, state]);
        }
        let _ = self.endpoint_up.remove_label_values(&[endpoint]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("Prometheus text is UTF-8")
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_code_classes() {
        assert_eq!(http_status_class(200), "2xx");
        assert_eq!(http_status_class(429), "4xx");
        assert_eq!(http_status_class(503), "5xx");
        assert_eq!(grpc_code_class(tonic::Code::Ok), "ok");
        assert_eq!(
            grpc_code_class(tonic::Code::InvalidArgument),
            "client_error"
        );
        assert_eq!(
            grpc_code_class(tonic::Code::ResourceExhausted),
            "server_error"
        );
        assert_eq!(
            grpc_code_name(tonic::Code::DeadlineExceeded),
            "DEADLINE_EXCEEDED"
        );
    }

    #[test]
    fn closed_set_series_exist_before_their_first_event() {
        let text = METRICS.render();
        for series in [
            r#"highpress_store_errors_total{kind="unavailable"}"#,
            r#"highpress_store_errors_total{kind="rejected"}"#,
            r#"highpress_increments_rejected_total{reason="overloaded"}"#,
            r#"highpress_increments_rejected_total{reason="shutting_down"}"#,
            r#"highpress_discovery_refreshes_total{result="empty"}"#,
            r#"highpress_leaderboard_flushes_total{result="error"}"#,
            r#"highpress_events_dropped_total{reason="outbox_full"}"#,
            "highpress_events_sent_total",
            "highpress_events_queued",
            "highpress_events_relay_lag_seconds",
            "highpress_events_relay_partitions",
            r#"highpress_trace_spans_dropped_total{reason="queue_full"}"#,
            r#"highpress_trace_spans_dropped_total{reason="export_failed"}"#,
            "highpress_trace_spans_exported_total",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{series} "))),
                "{series} missing"
            );
        }
    }

    #[test]
    fn forgetting_an_endpoint_removes_its_series() {
        let m = &*METRICS;
        m.gateway_calls
            .with_label_values(&["10.0.0.9:1", "Get"])
            .inc();
        m.breaker_state
            .with_label_values(&["10.0.0.9:1", "closed"])
            .set(1);
        assert!(m.render().contains("10.0.0.9:1"));
        m.forget_endpoint("10.0.0.9:1");
        assert!(!m.render().contains("10.0.0.9:1"));
    }
}
