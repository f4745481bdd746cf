//! Prometheus metrics, prefix `highpress_`. Label values come only from closed sets: route
//! templates, methods, status codes, the process mode and static reason names.

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
    pub leaderboard_flushes: IntCounterVec,
    pub gateway_batch_size: Histogram,
    pub discovery_refreshes: IntCounterVec,
    pub build_info: IntGaugeVec,
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
            &["route", "method", "status", "mode"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "highpress_http_request_duration_seconds",
                "HTTP request latency.",
            )
            .buckets(exp_buckets(0.000_1, 2.0, 16)),
            &["route", "method", "status", "mode"],
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
            Box::new(leaderboard_flushes.clone()),
            Box::new(gateway_batch_size.clone()),
            Box::new(discovery_refreshes.clone()),
            Box::new(build_info.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
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
            leaderboard_flushes,
            gateway_batch_size,
            discovery_refreshes,
            build_info,
        }
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
