//! The prometheus-operator ServiceMonitor `<name>` (monitoring.coreos.com/v1), built when
//! `observability.metrics.serviceMonitor.enabled`.
//!
//! Contract: it selects the gateway and counter Services of this CounterCluster and scrapes
//! their `http` port at `/metrics` every `interval`, honouring the pods' own labels. When the
//! managed Redis runs the redis_exporter sidecar, it also selects the Redis Service and scrapes
//! its `metrics` port, without honouring labels. With `security.tls.api` the highpress pods are
//! scraped over HTTPS. k8s-openapi has no type for it, so it is a
//! [`DynamicObject`]; the reconciler applies it only when the API group is served.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::redis::{REDIS_EXPORTER_PORT_NAME, redis_exporter_enabled};
use super::security::{metrics_server_name, tls_secret_name};
use super::{APP_NAME, Component, cluster_object_meta};
use crate::reconcile::validate::ValidCounterCluster;
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
pub fn build_service_monitor(cc: &ValidCounterCluster) -> DynamicObject {
    let interval = &cc.spec.observability.metrics.service_monitor.interval;
    let mut components = vec![Component::Gateway.as_str(), Component::Counter.as_str()];
    let mut highpress = json!({
        "port": "http",
        "path": "/metrics",
        // The gateway's own `endpoint` label (a counter's address) must survive the
        // scrape; without this Prometheus renames it to `exported_endpoint`.
        "honorLabels": true,
        "interval": interval,
    });
    if cc.spec.security.tls.api {
        // HTTPS, checked against the operator's CA; both components' certificates carry the
        // shared metrics name, since one endpoint scrapes both.
        highpress["scheme"] = json!("https");
        highpress["tlsConfig"] = json!({
            "ca": {"secret": {"name": tls_secret_name(cc, Component::Gateway), "key": "ca.crt"}},
            "serverName": metrics_server_name(cc),
        });
    }
    let mut endpoints = vec![highpress];
    // One ServiceMonitor has one selector, so the Redis Service joins the gateway and counter
    // Services in it, and the exporter gets an endpoint of its own. prometheus-operator keeps
    // only the Service ports whose name an endpoint names: `http` finds nothing on the Redis
    // Service and `metrics` nothing on the others, so each endpoint scrapes only its own pods.
    // A second ServiceMonitor would need its own name to apply and delete, for no gain.
    if redis_exporter_enabled(cc) {
        components.push(Component::Redis.as_str());
        endpoints.push(json!({
            "port": REDIS_EXPORTER_PORT_NAME,
            "path": "/metrics",
            // redis_exporter's labels describe Redis, not the target: on a clash, the target
            // labels (`namespace`, `pod`, `service`, ...) win.
            "honorLabels": false,
            "interval": interval,
        }));
    }
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
                    "values": components,
                }],
            },
            "endpoints": endpoints,
        }
    });
    monitor
}
