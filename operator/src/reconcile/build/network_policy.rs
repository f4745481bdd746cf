//! NetworkPolicies (networking.k8s.io/v1), built when `networkPolicy.enabled`.
//!
//! Contract: `<name>-counter` admits the gRPC port only from this cluster's gateway pods, and
//! `<name>-redis` (managed Redis only) admits the Redis port only from its counter pods. The
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
use super::{Component, child_name, object_meta, selector_labels};
use crate::crd::{CounterCluster, RedisMode};
use crate::reconcile::validate::ValidCounterCluster;

/// Names of every NetworkPolicy the operator may create for `cc`, so disabling the feature
/// deletes all of them.
pub fn network_policy_names(cc: &CounterCluster) -> [String; 2] {
    [child_name(cc, "counter"), child_name(cc, "redis")]
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
        let mut ingress = vec![only_from(cc, Component::Counter, REDIS_PORT)];
        if redis_exporter_enabled(cc) {
            ingress.push(open_port(REDIS_EXPORTER_PORT));
        }
        policies.push(policy(cc, Component::Redis, ingress));
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
    NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cc, peer)),
                match_expressions: None,
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![tcp_port(port)]),
    }
}

fn open_port(port: i32) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: None,
        ports: Some(vec![tcp_port(port)]),
    }
}
