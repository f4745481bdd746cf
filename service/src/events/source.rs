//! The `source` field of events: which process published them.

/// The pod name from `POD_NAME` (the chart and operator set it from the downward API), else the
/// host name, else `unknown`.
pub fn source_name() -> String {
    from(
        std::env::var("POD_NAME").ok(),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok(),
    )
}

fn from(pod_name: Option<String>, host_name: Option<String>) -> String {
    [pod_name, host_name]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_name_wins_over_host_name() {
        assert_eq!(
            from(Some("counter-0".into()), Some("h\n".into())),
            "counter-0"
        );
        assert_eq!(from(Some(" ".into()), Some("host-a\n".into())), "host-a");
        assert_eq!(from(None, None), "unknown");
    }
}
