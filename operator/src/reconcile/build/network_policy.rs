//! NetworkPolicies (networking.k8s.io/v1), built when `networkPolicy.enabled`.
//!
//! Contract: `<name>-counter` admits the gRPC port only from this cluster's gateway pods, and
//! `<name>-redis` (managed Redis only) admits the Redis port only from its counter pods (and,
//! replicated, from its Redis and sentinel pods; `<name>-redis-sentinel` then admits the
//! sentinel port from the same three and from the operator's pods in any namespace, which
//! read the primary as a read-only sentinel user). The
//! highpress HTTP port (probes, metrics) stays open to every pod, so Prometheus can scrape;
//! so does the redis_exporter's metrics port on the Redis pod when the sidecar runs.
//! The gateway gets no policy: it is the public API.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{GRPC_PORT, HTTP_PORT, REDIS_PORT};
use super::redis::{REDIS_EXPORTER_PORT, redis_exporter_enabled};
use super::sentinel::{SENTINEL_PORT, sentinel_name};
use super::{Component, child_name, object_meta, selector_labels};
use crate::crd::{CounterCluster, RedisMode};
use crate::reconcile::validate::ValidCounterCluster;

/// Names of every NetworkPolicy the operator may create for `cc`, so disabling the feature
/// deletes all of them (the sentinels' only while Redis is replicated; the apply step deletes
/// it with the sentinels otherwise).
pub fn network_policy_names(cc: &CounterCluster) -> Vec<String> {
    let mut names = vec![child_name(cc, "counter"), child_name(cc, "redis")];
    if replicated(cc) {
        names.push(sentinel_name(cc));
    }
    names
}

fn replicated(cc: &CounterCluster) -> bool {
    cc.spec.redis.mode == RedisMode::Managed && cc.spec.redis.managed.replicated()
}

/// The policies for `cc`: counter first, then Redis when it is managed.
pub fn build_network_policies(cc: &ValidCounterCluster) -> Vec<NetworkPolicy> {
    let mut policies = vec![policy(
        cc,
        Component::Counter,
        vec![
            only_from(cc, Component::Gateway, GRPC_PORT),
            open_port(HTTP_PORT),
        ],
    )];
    if cc.spec.redis.mode == RedisMode::Managed {
        // Replicated, the Redis pods replicate from one another and the sentinels watch them.
        let redis_clients: &[Component] = if replicated(cc) {
            &[
                Component::Counter,
                Component::Redis,
                Component::RedisSentinel,
            ]
        } else {
            &[Component::Counter]
        };
        let mut ingress = vec![only_from_any(cc, redis_clients, REDIS_PORT)];
        if redis_exporter_enabled(cc) {
            ingress.push(open_port(REDIS_EXPORTER_PORT));
        }
        policies.push(policy(cc, Component::Redis, ingress));
    }
    if replicated(cc) {
        // Counters find the primary, Redis pods ask at start, sentinels talk to one another,
        // and the operator reads the primary and the replicas for the status.
        let mut from_peers = only_from_any(
            cc,
            &[
                Component::Counter,
                Component::Redis,
                Component::RedisSentinel,
            ],
            SENTINEL_PORT,
        );
        if let Some(from) = from_peers.from.as_mut() {
            from.push(operator_pods());
        }
        policies.push(policy(cc, Component::RedisSentinel, vec![from_peers]));
    }
    policies
}

fn policy(
    cc: &CounterCluster,
    component: Component,
    ingress: Vec<NetworkPolicyIngressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: object_meta(cc, child_name(cc, component.as_str()), component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cc, component)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            egress: None,
        }),
    }
}

fn tcp_port(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        end_port: None,
    }
}

fn only_from(cc: &CounterCluster, peer: Component, port: i32) -> NetworkPolicyIngressRule {
    only_from_any(cc, &[peer], port)
}

fn only_from_any(cc: &CounterCluster, peers: &[Component], port: i32) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(
            peers
                .iter()
                .map(|peer| NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(cc, *peer)),
                        match_expressions: None,
                    }),
                    ..NetworkPolicyPeer::default()
                })
                .collect(),
        ),
        ports: Some(vec![tcp_port(port)]),
    }
}

/// The operator's pods, in any namespace: `app.kubernetes.io/name: highpress` and
/// `app.kubernetes.io/component: operator`, as the chart labels them.
fn operator_pods() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector {
            match_labels: Some(
                [
                    ("app.kubernetes.io/name", "highpress"),
                    ("app.kubernetes.io/component", "operator"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            match_expressions: None,
        }),
        ip_block: None,
    }
}

fn open_port(port: i32) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: None,
        ports: Some(vec![tcp_port(port)]),
    }
}
