//! The gateway tier: Deployment and Service `<name>-gateway` (the public HTTP API), and the
//! HorizontalPodAutoscaler `<name>-gateway` when `gateway.autoscaling.enabled`.
//!
//! Contract: while autoscaling is enabled the Deployment leaves `replicas` unset, so the HPA
//! alone owns the replica count; otherwise it is `gateway.replicas`.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{Container, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::CONFIG_FILE_PATH;
use super::pod::{
    highpress_image, highpress_pod_template, http_container_port, http_probe, pull_policy,
};
use super::{BuildContext, Component, child_name, object_meta, selector_labels};
use crate::crd::ServiceType;
use crate::reconcile::validate::ValidCounterCluster;

/// The gateway Deployment: `highpress gateway --config /etc/highpress/config.yaml`.
pub fn build_gateway_deployment(cc: &ValidCounterCluster, ctx: &BuildContext) -> Deployment {
    let gateway = &cc.spec.gateway;
    let container = Container {
        name: "gateway".to_owned(),
        image: Some(highpress_image(cc, ctx)),
        image_pull_policy: Some(pull_policy(cc.spec.image.pull_policy)),
        command: Some(vec!["highpress".to_owned()]),
        args: Some(vec![
            "gateway".to_owned(),
            "--config".to_owned(),
            CONFIG_FILE_PATH.to_owned(),
        ]),
        ports: Some(vec![http_container_port()]),
        resources: Some(gateway.resources.clone()),
        liveness_probe: Some(http_probe(cc, "/livez", 10, 3)),
        readiness_probe: Some(http_probe(cc, "/readyz", 5, 2)),
        ..Container::default()
    };
    Deployment {
        metadata: object_meta(cc, child_name(cc, "gateway"), Component::Gateway),
        spec: Some(DeploymentSpec {
            replicas: (!gateway.autoscaling.enabled).then_some(gateway.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cc, Component::Gateway)),
                match_expressions: None,
            },
            template: highpress_pod_template(cc, Component::Gateway, container),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The gateway Service: `gateway.service.type`, port `gateway.service.port` to the pods' `http`.
pub fn build_gateway_service(cc: &ValidCounterCluster) -> Service {
    let service = &cc.spec.gateway.service;
    let type_ = match service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: object_meta(cc, child_name(cc, "gateway"), Component::Gateway),
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            selector: Some(selector_labels(cc, Component::Gateway)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: service.port,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The gateway HPA (autoscaling/v2, CPU utilization), or `None` when autoscaling is disabled.
pub fn build_gateway_hpa(cc: &ValidCounterCluster) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = &cc.spec.gateway.autoscaling;
    if !autoscaling.enabled {
        return None;
    }
    Some(HorizontalPodAutoscaler {
        metadata: object_meta(cc, child_name(cc, "gateway"), Component::Gateway),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: child_name(cc, "gateway"),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(autoscaling.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        }),
        status: None,
    })
}
