//! The prometheus-operator ServiceMonitor `<name>` (monitoring.coreos.com/v1), built when
//! `observability.metrics.serviceMonitor.enabled`.
//!
//! Contract: it selects the gateway and counter Services of this CounterCluster and scrapes
//! their `http` port at `/metrics` every `interval`, honouring the pods' own labels. k8s-openapi has no type for it, so it is a
//! [`DynamicObject`]; the reconciler applies it only when the API group is served.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{APP_NAME, Component, cluster_object_meta};
use crate::crd::CounterCluster;
use kube::ResourceExt;

/// API group of the ServiceMonitor kind.
pub const SERVICE_MONITOR_GROUP: &str = "monitoring.coreos.com";
/// API version of the ServiceMonitor kind.
pub const SERVICE_MONITOR_VERSION: &str = "v1";

/// The ServiceMonitor's API resource (group, version, kind, plural).
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            SERVICE_MONITOR_GROUP,
            SERVICE_MONITOR_VERSION,
            "ServiceMonitor",
        ),
        "servicemonitors",
    )
}

/// The ServiceMonitor of `cc`, named like the CounterCluster.
pub fn build_service_monitor(cc: &CounterCluster) -> DynamicObject {
    let mut monitor = DynamicObject::new(&cc.name_any(), &service_monitor_resource());
    monitor.metadata = cluster_object_meta(cc, cc.name_any());
    monitor.data = json!({
        "spec": {
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": APP_NAME,
                    "app.kubernetes.io/instance": cc.name_any(),
                },
                "matchExpressions": [{
                    "key": "app.kubernetes.io/component",
                    "operator": "In",
                    "values": [Component::Gateway.as_str(), Component::Counter.as_str()],
                }],
            },
            "endpoints": [{
                "port": "http",
                "path": "/metrics",
                // The gateway's own `endpoint` label (a counter's address) must survive the
                // scrape; without this Prometheus renames it to `exported_endpoint`.
                "honorLabels": true,
                "interval": cc.spec.observability.metrics.service_monitor.interval,
            }],
        }
    });
    monitor
}
