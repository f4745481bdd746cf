//! PodDisruptionBudgets `<name>-gateway` and `<name>-counter` (policy/v1).
//!
//! Contract: voluntary disruptions (node drains) take at most one pod of each tier at a time.
//! The single-replica managed Redis gets no PDB: one would block every drain of its node. A
//! replicated one gets two, `<name>-redis` and `<name>-redis-sentinel`, so a drain takes one
//! Redis pod and one sentinel at a time (two of three sentinels keep the quorum).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Component, child_name, object_meta, selector_labels};
use crate::crd::RedisMode;
use crate::reconcile::validate::ValidCounterCluster;

/// One PDB per highpress tier, gateway first, then, for a replicated managed Redis, one for
/// the Redis pods and one for the sentinels.
pub fn build_pdbs(cc: &ValidCounterCluster) -> Vec<PodDisruptionBudget> {
    let mut tiers = vec![
        (Component::Gateway, "gateway"),
        (Component::Counter, "counter"),
    ];
    if cc.spec.redis.mode == RedisMode::Managed && cc.spec.redis.managed.replicated() {
        tiers.extend([
            (Component::Redis, "redis"),
            (Component::RedisSentinel, "redis-sentinel"),
        ]);
    }
    tiers
        .into_iter()
        .map(|(component, suffix)| PodDisruptionBudget {
            metadata: object_meta(cc, child_name(cc, suffix), component),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(cc, component)),
                    match_expressions: None,
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        })
        .collect()
}
