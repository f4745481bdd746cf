//! What the process tells about itself: its logs (`log`) and its OpenTelemetry traces
//! (`tracing`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Log format, as in HighGoPress's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    /// Human-readable lines; `console` (zap's name, which HighGoPress's config may use) is
    /// accepted for it.
    #[default]
    #[serde(alias = "console")]
    Text,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl LogConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.level_is_valid() {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "{:?} is not a level (trace, debug, info, warn, error)",
                    self.level
                ),
            ));
        }
        Ok(())
    }

    /// A plain level, or `tracing` directives such as `highpress=debug,info`.
    fn level_is_valid(&self) -> bool {
        let level = self.level.trim();
        const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
        LEVELS.contains(&level.to_ascii_lowercase().as_str())
            || (level.contains('=') && level.parse::<tracing_subscriber::EnvFilter>().is_ok())
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// OpenTelemetry tracing: spans exported over OTLP/gRPC (Jaeger ingests it natively).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Export spans. Off: no spans are built at all.
    pub enabled: bool,
    /// The OTLP/gRPC collector, `http://host:4317`.
    pub otlp_endpoint: String,
    /// Share of new traces sampled, 0..=1; a call that arrives with a sampled parent is traced.
    pub sampling_ratio: f64,
}

impl TracingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(ConfigError::invalid(
                "tracing.sampling_ratio",
                "must be within 0..=1",
            ));
        }
        let endpoint = self.otlp_endpoint.trim();
        if self.enabled && !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "tracing.otlp_endpoint",
                format!("{endpoint:?} is not an http:// or https:// URL"),
            ));
        }
        Ok(())
    }
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            otlp_endpoint: "http://localhost:4317".into(),
            sampling_ratio: 0.01,
        }
    }
}
