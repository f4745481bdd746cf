//! Validate: the spec checks that the CRD's schema and CEL rules cannot express, and the one
//! way to get a [`ValidCounterCluster`].
//!
//! Contract: [`validate`] is the only constructor of [`ValidCounterCluster`], and building
//! ([`super::build`]) and rendering ([`crate::render`]) take nothing else, so no object is
//! ever built from a spec that fails these checks. A CounterCluster that fails them gets
//! `Degraded`/`InvalidSpec` with the [`InvalidSpec`] message and nothing is applied, instead of
//! a half-applied installation or an API error on the third object; `render` fails with the
//! same message. Each problem names the field at fault.

use std::ops::RangeInclusive;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use crate::crd::{CounterCluster, RedisMode};

/// Longest name whose child objects all stay valid: Services need DNS-1035 labels
/// (≤ 63 characters, `<name>-gateway`), and a StatefulSet's pods carry a
/// `controller-revision-hash` label `<name>-redis-<10 characters>` of at most 63.
const MAX_NAME_MANAGED: usize = 63 - "-redis-".len() - 10;
const MAX_NAME_EXTERNAL: usize = 63 - "-gateway".len();
/// With replicated Redis the sentinel StatefulSet's pods carry
/// `<name>-redis-sentinel-<10 characters>`.
const MAX_NAME_REPLICATED: usize = 63 - "-redis-sentinel-".len() - 10;

/// The `idempotency.ttl` values the service accepts (its `Config::validate`): 1s to 30d.
const IDEMPOTENCY_TTL_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(30 * 86_400);

/// A CounterCluster that passed [`validate`]. It derefs to the CounterCluster it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidCounterCluster(CounterCluster);

impl ValidCounterCluster {
    /// The CounterCluster, no longer known to be valid.
    pub fn into_inner(self) -> CounterCluster {
        self.0
    }
}

impl std::ops::Deref for ValidCounterCluster {
    type Target = CounterCluster;

    fn deref(&self) -> &CounterCluster {
        &self.0
    }
}

/// Why a spec is invalid: every problem found, each naming its field. Its text, the problems
/// joined by `; `, is the message of the `InvalidSpec` condition and Event and of `render`'s
/// error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct InvalidSpec {
    /// Each problem, naming its field, in the order checked.
    pub problems: Vec<String>,
}

/// `cc` as a [`ValidCounterCluster`], or every problem that keeps it from being one.
pub fn validate(cc: &CounterCluster) -> Result<ValidCounterCluster, InvalidSpec> {
    let problems = problems(cc);
    if problems.is_empty() {
        Ok(ValidCounterCluster(cc.clone()))
    } else {
        Err(InvalidSpec { problems })
    }
}

/// Every problem found, each naming its field; empty when the spec is usable.
fn problems(cc: &CounterCluster) -> Vec<String> {
    let mut problems = Vec::new();
    let name = cc.name_any();
    let max = match cc.spec.redis.mode {
        RedisMode::Managed if cc.spec.redis.managed.replicated() => MAX_NAME_REPLICATED,
        RedisMode::Managed => MAX_NAME_MANAGED,
        RedisMode::External => MAX_NAME_EXTERNAL,
    };
    if name.len() > max {
        problems.push(format!(
            "metadata.name: at most {max} characters, so that every object built from it is a valid name ({} given)",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        problems.push(
            "metadata.name: must start with a lowercase letter (Service names are DNS-1035 labels)"
                .into(),
        );
    }
    check_resources(
        "spec.gateway.resources",
        &cc.spec.gateway.resources,
        &mut problems,
    );
    check_resources(
        "spec.counter.resources",
        &cc.spec.counter.resources,
        &mut problems,
    );
    for name in cc.spec.counter_types.keys() {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            problems.push(format!(
                "spec.counterTypes.{name}: a counter type is 1-64 characters of a-z, 0-9, '_' or '-'"
            ));
        }
    }
    check_idempotency_ttl(&cc.spec.idempotency.ttl, &mut problems);
    match cc.spec.redis.mode {
        RedisMode::Managed => {
            check_resources(
                "spec.redis.managed.resources",
                &cc.spec.redis.managed.resources,
                &mut problems,
            );
            check_quantity(
                "spec.redis.managed.storage.size",
                &cc.spec.redis.managed.storage.size,
                &mut problems,
            );
            if cc.spec.redis.managed.exporter.enabled {
                check_resources(
                    "spec.redis.managed.exporter.resources",
                    &cc.spec.redis.managed.exporter.resources,
                    &mut problems,
                );
            }
        }
        RedisMode::External => {
            if cc.spec.security.tls.redis {
                problems.push(
                    "spec.security.tls.redis: applies to the managed Redis only; an external Redis takes its TLS settings from spec.redis.external.tls"
                        .into(),
                );
            }
            if let Some(external) = &cc.spec.redis.external {
                check_redis_url(&external.url, &mut problems);
                for addr in external.sentinel.iter().flat_map(|s| &s.addrs) {
                    let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok()
                    });
                    if !valid {
                        problems.push(format!(
                            "spec.redis.external.sentinel.addrs: {addr:?} is not host:port"
                        ));
                    }
                }
            }
        }
    }
    problems
}

fn check_resources(field: &str, resources: &ResourceRequirements, problems: &mut Vec<String>) {
    for (kind, map) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        for (resource, quantity) in map.iter().flatten() {
            check_quantity(&format!("{field}.{kind}.{resource}"), quantity, problems);
        }
    }
}

/// The Kubernetes quantity grammar: a decimal number and an optional SI, binary or exponent suffix.
fn check_quantity(field: &str, quantity: &Quantity, problems: &mut Vec<String>) {
    let s = quantity.0.trim();
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let number_ok =
        !number.is_empty() && number.trim_start_matches(['+', '-']).parse::<f64>().is_ok();
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) || (suffix.starts_with(['e', 'E'])
        && suffix[1..]
            .trim_start_matches(['+', '-'])
            .parse::<u32>()
            .is_ok());
    if !(number_ok && suffix_ok) {
        problems.push(format!(
            "{field}: {s:?} is not a Kubernetes quantity (like 100m, 64Mi or 1Gi)"
        ));
    }
}

fn check_idempotency_ttl(ttl: &str, problems: &mut Vec<String>) {
    match parse_duration(ttl) {
        None => problems.push(format!(
            "spec.idempotency.ttl: {ttl:?} is not a duration like 500ms, 30s, 2m, 24h or 7d"
        )),
        Some(duration) if !IDEMPOTENCY_TTL_RANGE.contains(&duration) => problems.push(format!(
            "spec.idempotency.ttl: {ttl:?} is outside 1s to 30d, the range the service accepts"
        )),
        Some(_) => {}
    }
}

/// A duration in the grammar of the CRD's `ttl` pattern, `^[0-9]+(ms|s|m|h|d)?$`, read as the
/// service reads its duration keys (`highpress::config::parse_duration`): a bare number is
/// milliseconds. `None` when it does not match the pattern or overflows.
fn parse_duration(text: &str) -> Option<Duration> {
    let number_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let n: u64 = number.parse().ok()?;
    let seconds_per_unit = match unit {
        "" | "ms" => return Some(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(seconds_per_unit)?))
}

fn check_redis_url(url: &str, problems: &mut Vec<String>) {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let valid_port = host_port
        .rsplit_once(':')
        .is_none_or(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if host_port.is_empty() || !valid_port {
        problems.push(format!(
            "spec.redis.external.url: {url:?} has no valid host[:port]"
        ));
    }
    if authority.contains('@') {
        problems.push(
            "spec.redis.external.url: must not carry credentials; use passwordSecretRef".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CounterClusterSpec, ExternalRedisSpec};

    fn cluster(name: &str) -> CounterCluster {
        CounterCluster::new(name, CounterClusterSpec::default())
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(problems(&cluster("likes")), Vec::<String>::new());
        let valid = validate(&cluster("likes")).expect("valid");
        assert_eq!(valid.into_inner(), cluster("likes"));
    }

    #[test]
    fn an_invalid_spec_says_every_problem_in_one_message() {
        let mut cc = cluster("1likes");
        cc.spec.idempotency.ttl = "1w".to_owned();
        let error = validate(&cc).expect_err("invalid");
        assert_eq!(error.problems.len(), 2, "{error:?}");
        assert_eq!(error.to_string(), error.problems.join("; "));
    }

    #[test]
    fn long_or_badly_started_names_are_rejected() {
        let ok = "a".repeat(MAX_NAME_MANAGED);
        assert!(problems(&cluster(&ok)).is_empty());
        let long = problems(&cluster(&"a".repeat(MAX_NAME_MANAGED + 1)));
        assert!(long[0].starts_with("metadata.name: at most 46"), "{long:?}");
        assert!(problems(&cluster("1likes"))[0].contains("lowercase letter"));
    }

    #[test]
    fn counter_type_keys_must_be_counter_types() {
        let mut cc = cluster("likes");
        for name in ["like", "page_view-2", "Like", "a:b", ""] {
            cc.spec
                .counter_types
                .insert(name.to_owned(), crate::crd::CounterTypeSpec::default());
        }
        let problems = problems(&cc);
        assert_eq!(
            problems,
            [
                "spec.counterTypes.: a counter type is 1-64 characters of a-z, 0-9, '_' or '-'",
                "spec.counterTypes.Like: a counter type is 1-64 characters of a-z, 0-9, '_' or '-'",
                "spec.counterTypes.a:b: a counter type is 1-64 characters of a-z, 0-9, '_' or '-'",
            ]
        );
    }

    #[test]
    fn idempotency_ttls_outside_what_the_service_accepts_are_rejected() {
        let mut cc = cluster("likes");
        for (ttl, problem) in [
            ("1s", None),
            ("24h", None),
            ("30d", None),
            ("1000", None),
            ("999ms", Some("is outside 1s to 30d")),
            ("0s", Some("is outside 1s to 30d")),
            ("31d", Some("is outside 1s to 30d")),
            ("721h", Some("is outside 1s to 30d")),
            ("1w", Some("is not a duration")),
            ("", Some("is not a duration")),
            ("99999999999999999999d", Some("is not a duration")),
        ] {
            cc.spec.idempotency.ttl = ttl.to_owned();
            let problems = problems(&cc);
            match problem {
                None => assert!(problems.is_empty(), "{ttl}: {problems:?}"),
                Some(text) => {
                    assert_eq!(problems.len(), 1, "{ttl}: {problems:?}");
                    assert!(
                        problems[0].starts_with("spec.idempotency.ttl: ")
                            && problems[0].contains(text),
                        "{ttl}: {problems:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn durations_read_as_the_service_reads_them() {
        let service = highpress::config::parse_duration;
        for text in [
            "0",
            "1500",
            "500ms",
            "30s",
            "2m",
            "24h",
            "7d",
            "30d",
            "",
            "h",
            "1.5h",
            "1H",
            "-1s",
            "1w",
            "18446744073709551615",
            "18446744073709551615d",
        ] {
            assert_eq!(parse_duration(text), service(text), "{text:?}");
        }
        // The CRD's pattern has no room for the spaces the service also trims.
        assert_eq!(service(" 1 h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 1 h"), None);
    }

    #[test]
    fn bad_quantities_name_their_field() {
        let mut cc = cluster("likes");
        cc.spec.counter.resources.limits =
            Some([("memory".to_string(), Quantity("lots".into()))].into());
        cc.spec.redis.managed.storage.size = Quantity("10 GB".into());
        let problems = problems(&cc);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("spec.counter.resources.limits.memory"));
        assert!(problems[1].starts_with("spec.redis.managed.storage.size"));
        for good in ["100m", "64Mi", "1Gi", "0.5", "2", "1e3", "+1.5Ki"] {
            let mut v = Vec::new();
            check_quantity("q", &Quantity(good.into()), &mut v);
            assert!(v.is_empty(), "{good}: {v:?}");
        }
    }

    #[test]
    fn exporter_resources_are_checked_only_when_the_exporter_runs() {
        let mut cc = cluster("likes");
        cc.spec.redis.managed.exporter.resources.requests =
            Some([("cpu".to_string(), Quantity("a bit".into()))].into());
        assert!(
            problems(&cc).is_empty(),
            "a disabled exporter builds nothing"
        );
        cc.spec.redis.managed.exporter.enabled = true;
        let problems = problems(&cc);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("spec.redis.managed.exporter.resources.requests.cpu: "),
            "{problems:?}"
        );
    }

    #[test]
    fn external_urls_need_a_host_and_no_credentials() {
        let mut cc = cluster("likes");
        cc.spec.redis.mode = RedisMode::External;
        for (url, expect) in [
            ("redis://redis.data.svc:6379/0", 0),
            ("rediss://cache.example", 0),
            ("redis://:6379", 1),
            ("redis://host:port", 1),
            ("redis://:secret@host:6379", 1),
            // The service's Redis Cluster client takes comma-separated seeds in `redis.addr`,
            // but `spec.redis.external.url` is one URL, and a seed list fails its host check.
            ("redis://a:6379,redis://b:6379", 1),
        ] {
            cc.spec.redis.external = Some(ExternalRedisSpec {
                url: url.into(),
                password_secret_ref: None,
                cluster: false,
                sentinel: None,
                min_replicas_ack: 0,
                tls: None,
            });
            assert_eq!(problems(&cc).len(), expect, "{url}: {:?}", problems(&cc));
        }
    }

    #[test]
    fn redis_tls_is_for_the_managed_redis_only() {
        let mut cc = cluster("likes");
        cc.spec.security.tls.redis = true;
        assert_eq!(problems(&cc), Vec::<String>::new());
        cc.spec.redis.mode = RedisMode::External;
        cc.spec.redis.external = Some(ExternalRedisSpec {
            url: "rediss://cache.example:6380".into(),
            password_secret_ref: None,
            cluster: false,
            sentinel: None,
            min_replicas_ack: 0,
            tls: None,
        });
        let problems = problems(&cc);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("spec.security.tls.redis: "),
            "{problems:?}"
        );
    }
}
