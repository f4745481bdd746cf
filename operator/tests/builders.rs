//! The pure builders, field by field: pod security, probes, commands, owner references,
//! labels, replica counts, the HPA, PDBs, the managed Redis and its redis_exporter sidecar,
//! what the ServiceMonitor scrapes and the NetworkPolicies admit, and the ConfigMap's Redis
//! wiring (never a password).

mod support;

use std::collections::BTreeMap;

use highpress_operator::reconcile::build::config::{CONFIG_KEY, render_service_config};
use highpress_operator::reconcile::build::{
    BuildContext, CONFIG_HASH_ANNOTATION, ChildKind, build_all, build_config_map,
    build_counter_deployment, build_counter_headless_service, build_gateway_deployment,
    build_gateway_hpa, build_gateway_service, build_network_policies, build_pdbs,
    build_redis_secret, build_redis_service, build_redis_statefulset, build_service_monitor,
    config_hash,
};
use highpress_operator::reconcile::validate::ValidCounterCluster;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;
use serde_json::json;
use support::{CounterClusterFixture, cluster};

fn ctx() -> BuildContext {
    BuildContext {
        default_image_tag: "9.9.9".to_owned(),
    }
}

fn template(spec: Option<&k8s_openapi::api::apps::v1::DeploymentSpec>) -> &PodTemplateSpec {
    &spec.expect("a Deployment spec").template
}

fn pod(template: &PodTemplateSpec) -> &PodSpec {
    template.spec.as_ref().expect("a pod spec")
}

fn only_container(template: &PodTemplateSpec) -> &Container {
    let containers = &pod(template).containers;
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn pod_templates(cc: &ValidCounterCluster) -> Vec<(&'static str, PodTemplateSpec)> {
    let gateway = build_gateway_deployment(cc, &ctx());
    let counter = build_counter_deployment(cc, &ctx());
    let redis = build_redis_statefulset(cc);
    vec![
        ("gateway", gateway.spec.expect("spec").template),
        ("counter", counter.spec.expect("spec").template),
        ("redis", redis.spec.expect("spec").template),
    ]
}

fn every_metadata(cc: &ValidCounterCluster) -> Vec<(String, ObjectMeta)> {
    let objects = build_all(cc, &ctx())
        .to_values()
        .expect("objects serialize");
    objects
        .into_iter()
        .map(|value| {
            let kind = value["kind"].as_str().expect("kind").to_owned();
            let meta: ObjectMeta =
                serde_json::from_value(value["metadata"].clone()).expect("metadata");
            (kind, meta)
        })
        .collect()
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    // With the exporter, the Redis pod has a second container, checked like every other.
    let containers: Vec<(String, PodTemplateSpec, Container)> =
        pod_templates(&cluster().with_redis_exporter().valid())
            .into_iter()
            .flat_map(|(pod_name, template)| {
                let containers = pod(&template).containers.clone();
                containers
                    .into_iter()
                    .map(move |c| (format!("{pod_name}/{}", c.name), template.clone(), c))
            })
            .collect();
    assert_eq!(
        containers.len(),
        4,
        "gateway, counter, redis and redis-exporter"
    );
    for (name, template, container) in containers {
        let pod_sc = pod(&template)
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: pod securityContext"));
        assert_eq!(pod_sc.run_as_non_root, Some(true), "{name}");
        assert!(pod_sc.run_as_user.is_some_and(|uid| uid > 0), "{name}");
        assert_eq!(
            pod_sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault"),
            "{name}"
        );
        let sc = container
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: container securityContext"));
        assert_eq!(sc.run_as_non_root, Some(true), "{name}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()]),
            "{name}"
        );
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.add.clone()),
            None,
            "{name}"
        );
        assert_eq!(
            sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault"),
            "{name}"
        );
        assert_eq!(pod(&template).host_network, None, "{name}");
    }
}

#[test]
fn every_pod_spreads_across_nodes_by_hostname_and_selects_its_own_component() {
    for (name, template) in pod_templates(&cluster().valid()) {
        let spread = pod(&template)
            .topology_spread_constraints
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: topology spread"));
        assert_eq!(spread.len(), 1, "{name}");
        assert_eq!(spread[0].topology_key, "kubernetes.io/hostname", "{name}");
        assert_eq!(spread[0].max_skew, 1, "{name}");
        let selector = spread[0]
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .expect("a label selector");
        assert_eq!(
            selector
                .get("app.kubernetes.io/component")
                .map(String::as_str),
            Some(name)
        );
    }
}

#[test]
fn gateway_runs_the_gateway_command_with_http_probes_and_spec_resources() {
    let cc = cluster().valid();
    let deployment = build_gateway_deployment(&cc, &ctx());
    let container = only_container(template(deployment.spec.as_ref()));
    assert_eq!(container.command, Some(vec!["highpress".to_owned()]));
    assert_eq!(
        container.args,
        Some(
            ["gateway", "--config", "/etc/highpress/config.yaml"]
                .map(str::to_owned)
                .to_vec()
        )
    );
    assert_eq!(container.image.as_deref(), Some("highpress:9.9.9"));
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let liveness = container.liveness_probe.as_ref().expect("liveness probe");
    let readiness = container.readiness_probe.as_ref().expect("readiness probe");
    for (probe, path) in [(liveness, "/livez"), (readiness, "/readyz")] {
        let http = probe.http_get.as_ref().expect("an HTTP probe");
        assert_eq!(http.path.as_deref(), Some(path));
        assert_eq!(http.port, IntOrString::String("http".to_owned()));
    }
    let ports = container.ports.as_ref().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].container_port),
        (Some("http"), 8080)
    );
    assert_eq!(
        container.resources.as_ref(),
        Some(&cc.spec.gateway.resources)
    );
    assert_eq!(container.env, None, "the gateway gets no Redis password");
}

#[test]
fn counter_runs_the_counter_command_with_grpc_readiness_and_http_liveness() {
    let mut cc = cluster();
    cc.spec.image.tag = Some("1.2.3".to_owned());
    let cc = cc.valid();
    let deployment = build_counter_deployment(&cc, &ctx());
    let container = only_container(template(deployment.spec.as_ref()));
    assert_eq!(
        container.args,
        Some(
            ["counter", "--config", "/etc/highpress/config.yaml"]
                .map(str::to_owned)
                .to_vec()
        )
    );
    assert_eq!(
        container.image.as_deref(),
        Some("highpress:1.2.3"),
        "spec.image.tag wins over the operator's version"
    );
    let readiness = container.readiness_probe.as_ref().expect("readiness probe");
    assert_eq!(readiness.grpc.as_ref().map(|g| g.port), Some(50051));
    assert_eq!(readiness.http_get, None);
    let liveness = container.liveness_probe.as_ref().expect("liveness probe");
    assert_eq!(
        liveness.http_get.as_ref().and_then(|h| h.path.as_deref()),
        Some("/livez")
    );
    let port_names: Vec<_> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(
        port_names,
        [("http".to_owned(), 8080), ("grpc".to_owned(), 50051)]
    );
    assert_eq!(
        container.resources.as_ref(),
        Some(&cc.spec.counter.resources)
    );
}

#[test]
fn highpress_pods_mount_the_config_map_and_a_writable_tmp_only() {
    let cc = cluster().valid();
    for (name, template) in pod_templates(&cc).into_iter().take(2) {
        let volumes = pod(&template).volumes.as_ref().expect("volumes");
        let config = volumes
            .iter()
            .find(|v| v.name == "config")
            .unwrap_or_else(|| panic!("{name}: config volume"));
        assert_eq!(
            config.config_map.as_ref().map(|c| c.name.as_str()),
            Some("likes-config")
        );
        let mounts: Vec<_> = only_container(&template)
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [("/etc/highpress", Some(true)), ("/tmp", None)],
            "{name}"
        );
    }
}

#[test]
fn every_object_has_a_controller_owner_reference_and_the_standard_labels() {
    let cc = cluster().valid();
    let objects = every_metadata(&cc);
    assert_eq!(objects.len(), 9, "{objects:#?}");
    for (kind, meta) in objects {
        let owners = meta.owner_references.expect("owner references");
        assert_eq!(owners.len(), 1, "{kind}");
        let owner = &owners[0];
        assert_eq!(owner.api_version, "highpress.dev/v1alpha1");
        assert_eq!(owner.kind, "CounterCluster");
        assert_eq!(owner.name, "likes");
        assert_eq!(owner.uid, "5f0c2a4e-1111-2222-3333-444455556666");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("apps"), "{kind}");
        let labels = meta.labels.expect("labels");
        assert_eq!(labels["app.kubernetes.io/name"], "highpress", "{kind}");
        assert_eq!(labels["app.kubernetes.io/instance"], "likes", "{kind}");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "highpress-operator",
            "{kind}"
        );
        assert!(
            ["config", "gateway", "counter", "redis"]
                .contains(&labels["app.kubernetes.io/component"].as_str()),
            "{kind}: {labels:?}"
        );
    }
}

#[test]
fn a_cluster_without_a_uid_gives_objects_without_owner_references() {
    for (kind, meta) in every_metadata(&cluster().without_uid().valid()) {
        assert_eq!(meta.owner_references, None, "{kind}");
    }
}

/// The Redis Secret's name carries the CounterCluster's uid, so a CounterCluster re-created
/// under the same name never finds (and keeps) the Secret of its predecessor, which the garbage
/// collector is about to delete.
#[test]
fn the_redis_secret_is_named_per_counter_cluster_uid() {
    let mut recreated = cluster();
    recreated.metadata.uid = Some("9E1D77B0-aaaa-bbbb-cccc-ddddeeeeffff".to_owned());
    let names = [cluster(), recreated, cluster().without_uid()].map(|cc| {
        build_redis_secret(&cc.valid(), 0, "pw")
            .metadata
            .name
            .expect("a name")
    });
    assert_eq!(
        names,
        [
            "likes-redis-auth-5f0c2a4e",
            "likes-redis-auth-9e1d77b0",
            "likes-redis-auth"
        ]
    );
}

#[test]
fn network_policies_are_on_by_default() {
    let spec: highpress_operator::crd::CounterClusterSpec =
        serde_json::from_value(serde_json::json!({})).expect("an empty spec");
    assert!(spec.network_policy.enabled);
    let mut cc = cluster();
    cc.spec = spec;
    let names: Vec<String> = build_network_policies(&cc.valid())
        .into_iter()
        .map(|p| p.metadata.name.expect("a name"))
        .collect();
    assert_eq!(names, ["likes-counter", "likes-redis"]);
}

#[test]
fn object_names_follow_the_cluster_name() {
    let names: Vec<(String, String)> = every_metadata(&cluster().valid())
        .into_iter()
        .map(|(kind, meta)| (kind, meta.name.expect("a name")))
        .collect();
    let expected = [
        ("ConfigMap", "likes-config"),
        ("Service", "likes-redis"),
        ("StatefulSet", "likes-redis"),
        ("Service", "likes-counter"),
        ("Deployment", "likes-counter"),
        ("Service", "likes-gateway"),
        ("Deployment", "likes-gateway"),
        ("PodDisruptionBudget", "likes-gateway"),
        ("PodDisruptionBudget", "likes-counter"),
    ]
    .map(|(k, n)| (k.to_owned(), n.to_owned()));
    assert_eq!(names, expected);
}

#[test]
fn replica_counts_come_from_the_spec() {
    let cc = cluster()
        .with_gateway_replicas(4)
        .with_counter_replicas(7)
        .valid();
    let gateway = build_gateway_deployment(&cc, &ctx());
    let counter = build_counter_deployment(&cc, &ctx());
    assert_eq!(gateway.spec.and_then(|s| s.replicas), Some(4));
    assert_eq!(counter.spec.and_then(|s| s.replicas), Some(7));
    let redis = build_redis_statefulset(&cc);
    assert_eq!(redis.spec.and_then(|s| s.replicas), Some(1));
}

#[test]
fn hpa_exists_only_when_autoscaling_is_enabled_and_then_owns_the_gateway_replicas() {
    let disabled = cluster().with_gateway_replicas(4).valid();
    assert_eq!(build_gateway_hpa(&disabled), None);
    assert_eq!(build_all(&disabled, &ctx()).gateway_hpa, None);

    let enabled = cluster()
        .with_gateway_replicas(4)
        .with_autoscaling(3, 12)
        .valid();
    let hpa = build_gateway_hpa(&enabled).expect("an HPA when autoscaling is enabled");
    assert_eq!(hpa.metadata.name.as_deref(), Some("likes-gateway"));
    let spec = hpa.spec.expect("HPA spec");
    assert_eq!(spec.scale_target_ref.kind, "Deployment");
    assert_eq!(spec.scale_target_ref.name, "likes-gateway");
    assert_eq!(
        spec.scale_target_ref.api_version.as_deref(),
        Some("apps/v1")
    );
    assert_eq!(spec.min_replicas, Some(3));
    assert_eq!(spec.max_replicas, 12);
    let metrics = spec.metrics.expect("metrics");
    let resource = metrics[0].resource.as_ref().expect("a resource metric");
    assert_eq!(resource.name, "cpu");
    assert_eq!(resource.target.type_, "Utilization");
    assert_eq!(resource.target.average_utilization, Some(70));
    assert_eq!(
        build_gateway_deployment(&enabled, &ctx())
            .spec
            .and_then(|s| s.replicas),
        None,
        "with an HPA the Deployment must not set replicas"
    );
}

#[test]
fn gateway_service_follows_the_spec_and_targets_the_http_port() {
    let mut cc = cluster();
    cc.spec.gateway.service.port = 80;
    cc.spec.gateway.service.type_ = highpress_operator::crd::ServiceType::LoadBalancer;
    let cc = cc.valid();
    let spec = build_gateway_service(&cc).spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    let port = &spec.ports.expect("ports")[0];
    assert_eq!(port.port, 80);
    assert_eq!(
        port.target_port,
        Some(IntOrString::String("http".to_owned()))
    );
    assert_eq!(
        spec.selector.expect("selector")["app.kubernetes.io/component"],
        "gateway"
    );
}

#[test]
fn counter_service_is_headless_on_grpc_50051_and_publishes_only_ready_pods() {
    let spec = build_counter_headless_service(&cluster().valid())
        .spec
        .expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(false));
    let ports = spec.ports.expect("ports");
    let named: Vec<(Option<&str>, i32)> =
        ports.iter().map(|p| (p.name.as_deref(), p.port)).collect();
    // gRPC for the gateway; http for the ServiceMonitor's scrapes.
    assert_eq!(named, [(Some("grpc"), 50051), (Some("http"), 8080)]);
    assert_eq!(
        spec.selector.expect("selector")["app.kubernetes.io/component"],
        "counter"
    );
}

#[test]
fn pdbs_allow_one_unavailable_pod_per_tier() {
    let pdbs = build_pdbs(&cluster().valid());
    let summary: Vec<_> = pdbs
        .iter()
        .map(|pdb| {
            let spec = pdb.spec.as_ref().expect("spec");
            (
                pdb.metadata.name.clone().expect("name"),
                spec.max_unavailable.clone(),
                spec.selector
                    .as_ref()
                    .and_then(|s| s.match_labels.clone())
                    .expect("selector")["app.kubernetes.io/component"]
                    .clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "likes-gateway".to_owned(),
                Some(IntOrString::Int(1)),
                "gateway".to_owned()
            ),
            (
                "likes-counter".to_owned(),
                Some(IntOrString::Int(1)),
                "counter".to_owned()
            ),
        ]
    );
}

#[test]
fn config_map_never_holds_a_password_and_counters_get_it_from_the_secret() {
    let external = cluster()
        .with_external_redis(
            "rediss://redis.data.svc:6380/0",
            Some(("redis-auth", "secret-key")),
            false,
        )
        .valid();
    for cc in [cluster().valid(), external.clone()] {
        let text = render_service_config(&cc);
        assert!(!text.contains("password"), "{text}");
        assert!(!text.contains("redis-auth"), "{text}");
        let config_map = build_config_map(&cc);
        assert_eq!(config_map.binary_data, None);
        assert_eq!(
            config_map.data.expect("data").keys().collect::<Vec<_>>(),
            [CONFIG_KEY]
        );
    }
    let counter = build_counter_deployment(&external, &ctx());
    let env = only_container(template(counter.spec.as_ref()))
        .env
        .clone()
        .expect("env");
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].name, "HIGHPRESS_REDIS__PASSWORD");
    assert_eq!(env[0].value, None);
    let secret = env[0]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("a secretKeyRef");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("redis-auth", "secret-key")
    );

    let managed = build_counter_deployment(&cluster().valid(), &ctx());
    let env = only_container(template(managed.spec.as_ref()))
        .env
        .clone()
        .expect("env");
    let secret = env[0]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("a secretKeyRef");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("likes-redis-auth-5f0c2a4e", "password")
    );
}

#[test]
fn external_redis_without_a_secret_gives_counters_no_password_env() {
    let cc = cluster()
        .with_external_redis("redis://redis.example:6379/0", None, false)
        .valid();
    let counter = build_counter_deployment(&cc, &ctx());
    assert_eq!(only_container(template(counter.spec.as_ref())).env, None);
}

#[test]
fn managed_redis_config_points_at_the_managed_service_and_no_external_is_built_for_it() {
    let text = render_service_config(&cluster().valid());
    assert!(text.contains("addr: likes-redis.apps.svc:6379\n"), "{text}");
    assert!(text.contains("cluster: false\n"), "{text}");
    assert!(
        text.contains("dns: likes-counter.apps.svc.cluster.local:50051\n"),
        "{text}"
    );
    assert!(build_all(&cluster().valid(), &ctx()).redis.is_some());
}

#[test]
fn external_redis_config_uses_the_url_and_cluster_flag_and_builds_no_redis() {
    // One seed URL: the spec checks reject a comma-separated seed list (see validate.rs).
    let cc = cluster()
        .with_external_redis("redis://seed-a:6379", None, true)
        .valid();
    let text = render_service_config(&cc);
    assert!(text.contains("addr: redis://seed-a:6379\n"), "{text}");
    assert!(text.contains("cluster: true\n"), "{text}");
    assert_eq!(build_all(&cc, &ctx()).redis, None);
}

#[test]
fn leaderboard_settings_render_into_the_services_leaderboard_section() {
    let text = render_service_config(&cluster().valid());
    assert!(
        text.contains("leaderboard:\n  enabled: true\n  flush_interval_ms: 1000\n  top_k: 1000\n"),
        "{text}"
    );
    let mut cc = cluster();
    cc.spec.counter.leaderboards.enabled = false;
    cc.spec.counter.leaderboards.top_k = 100_000;
    cc.spec.counter.leaderboards.flush_interval_millis = 250;
    let text = render_service_config(&cc.valid());
    assert!(
        text.contains(
            "leaderboard:\n  enabled: false\n  flush_interval_ms: 250\n  top_k: 100000\n"
        ),
        "{text}"
    );
}

#[test]
fn managed_redis_statefulset_has_aof_a_pvc_and_writes_only_to_its_data_volume() {
    let mut cc = cluster();
    cc.spec.redis.managed.storage.size = Quantity("20Gi".to_owned());
    cc.spec.redis.managed.storage.storage_class_name = Some("fast-ssd".to_owned());
    let cc = cc.valid();
    let statefulset = build_redis_statefulset(&cc);
    assert_eq!(statefulset.metadata.name.as_deref(), Some("likes-redis"));
    let spec = statefulset.spec.expect("spec");
    assert_eq!(spec.service_name.as_deref(), Some("likes-redis"));
    let container = only_container(&spec.template);
    assert_eq!(container.image.as_deref(), Some("redis:7.2"));
    let args = container.args.clone().expect("args");
    let appendonly = args
        .iter()
        .position(|a| a == "--appendonly")
        .expect("--appendonly");
    assert_eq!(args[appendonly + 1], "yes");
    let requirepass = args
        .iter()
        .position(|a| a == "--requirepass")
        .expect("--requirepass");
    assert_eq!(args[requirepass + 1], "$(REDIS_PASSWORD)");
    let env_secrets: Vec<_> = container
        .env
        .iter()
        .flatten()
        .map(|e| {
            let secret = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("secretKeyRef");
            (e.name.as_str(), secret.name.as_str(), secret.key.as_str())
        })
        .collect();
    assert_eq!(
        env_secrets,
        [
            ("REDIS_PASSWORD", "likes-redis-auth-5f0c2a4e", "password"),
            ("REDISCLI_AUTH", "likes-redis-auth-5f0c2a4e", "password")
        ]
    );
    let mounts: Vec<_> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(mounts, [("data", "/data")]);
    assert_eq!(
        container
            .security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem),
        Some(true)
    );
    assert_eq!(
        container.resources.as_ref(),
        Some(&cc.spec.redis.managed.resources)
    );
    assert!(container.liveness_probe.is_some() && container.readiness_probe.is_some());
    let claims = spec.volume_claim_templates.expect("a PVC template");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    let claim = claims[0].spec.as_ref().expect("claim spec");
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast-ssd"));
    assert_eq!(claim.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
    assert_eq!(
        claim
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .expect("requests")["storage"],
        Quantity("20Gi".to_owned())
    );
    let retention = spec
        .persistent_volume_claim_retention_policy
        .expect("retention policy");
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));

    let mut cc = cc.into_inner();
    cc.spec.redis.managed.append_only = false;
    let cc = cc.valid();
    let args = only_container(&build_redis_statefulset(&cc).spec.expect("spec").template)
        .args
        .clone()
        .expect("args");
    let appendonly = args
        .iter()
        .position(|a| a == "--appendonly")
        .expect("--appendonly");
    assert_eq!(args[appendonly + 1], "no");
}

#[test]
fn redis_service_exposes_6379_to_the_redis_pod() {
    let spec = build_redis_service(&cluster().valid()).spec.expect("spec");
    let port = &spec.ports.expect("ports")[0];
    assert_eq!(port.port, 6379);
    assert_eq!(
        spec.selector.expect("selector")["app.kubernetes.io/component"],
        "redis"
    );
}

fn redis_containers(cc: &ValidCounterCluster) -> Vec<Container> {
    build_redis_statefulset(cc)
        .spec
        .expect("spec")
        .template
        .spec
        .expect("a pod spec")
        .containers
}

fn service_ports(service: &Service) -> Vec<(String, i32, Option<IntOrString>)> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .expect("ports")
        .into_iter()
        .map(|p| (p.name.expect("a port name"), p.port, p.target_port))
        .collect()
}

#[test]
fn redis_exporter_is_off_by_default_and_then_adds_no_container_and_no_port() {
    let cc = cluster().valid();
    assert!(!cc.spec.redis.managed.exporter.enabled);
    let names: Vec<String> = redis_containers(&cc).into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["redis"]);
    assert_eq!(
        service_ports(&build_redis_service(&cc)),
        [(
            "redis".to_owned(),
            6379,
            Some(IntOrString::String("redis".to_owned()))
        )]
    );
}

#[test]
fn redis_exporter_sidecar_reads_redis_over_localhost_with_the_secret_password() {
    let mut cc = cluster().with_redis_exporter();
    cc.spec.redis.managed.exporter.resources.requests = Some(BTreeMap::from([(
        "cpu".to_owned(),
        Quantity("20m".to_owned()),
    )]));
    let cc = cc.valid();
    let containers = redis_containers(&cc);
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["redis", "redis-exporter"]);
    let exporter = &containers[1];
    assert_eq!(
        exporter.image.as_deref(),
        Some("oliver006/redis_exporter:v1.67.0")
    );
    assert_eq!(
        (&exporter.command, &exporter.args),
        (&None, &None),
        "the image's own entrypoint, configured by env"
    );
    let ports: Vec<_> = exporter
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port, p.protocol.as_deref()))
        .collect();
    assert_eq!(ports, [(Some("metrics"), 9121, Some("TCP"))]);

    let env = exporter.env.clone().expect("env");
    assert_eq!(env.len(), 2, "{env:?}");
    assert_eq!(env[0].name, "REDIS_ADDR");
    assert_eq!(env[0].value.as_deref(), Some("redis://localhost:6379"));
    assert_eq!(env[0].value_from, None);
    assert_eq!(env[1].name, "REDIS_PASSWORD");
    assert_eq!(env[1].value, None, "the password is never a literal");
    let secret = env[1]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("a secretKeyRef");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str(), secret.optional),
        ("likes-redis-auth-5f0c2a4e", "password", Some(false))
    );
    // The same Secret key the redis container's --requirepass reads.
    let redis_password = containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "REDIS_PASSWORD")
        .expect("the redis container's REDIS_PASSWORD");
    assert_eq!(redis_password.value_from, env[1].value_from);

    assert_eq!(
        exporter.security_context, containers[0].security_context,
        "the restricted security context of the redis container"
    );
    let http = exporter
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("an HTTP liveness probe");
    assert_eq!(http.path.as_deref(), Some("/health"));
    assert_eq!(http.port, IntOrString::String("metrics".to_owned()));
    // A not-ready exporter must not make the Redis pod, and so Redis, unroutable.
    assert_eq!(exporter.readiness_probe, None);
    assert_eq!(
        exporter.resources.as_ref(),
        Some(&cc.spec.redis.managed.exporter.resources)
    );
    assert_eq!(exporter.volume_mounts, None, "it writes nothing");

    assert_eq!(
        service_ports(&build_redis_service(&cc)),
        [
            (
                "redis".to_owned(),
                6379,
                Some(IntOrString::String("redis".to_owned()))
            ),
            (
                "metrics".to_owned(),
                9121,
                Some(IntOrString::String("metrics".to_owned()))
            ),
        ]
    );
}

#[test]
fn redis_exporter_defaults_to_small_resources() {
    let resources = &cluster().spec.redis.managed.exporter.resources;
    let quantity = |map: &Option<BTreeMap<String, Quantity>>, key: &str| {
        map.as_ref().and_then(|m| m.get(key)).map(|q| q.0.clone())
    };
    assert_eq!(quantity(&resources.requests, "cpu").as_deref(), Some("10m"));
    assert_eq!(
        quantity(&resources.requests, "memory").as_deref(),
        Some("32Mi")
    );
    assert_eq!(
        quantity(&resources.limits, "memory").as_deref(),
        Some("64Mi")
    );
}

#[test]
fn an_enabled_exporter_is_ignored_with_external_redis() {
    let mut cc = cluster().with_external_redis("redis://redis.example:6379/0", None, false);
    cc.spec.redis.managed.exporter.enabled = true;
    cc.spec.network_policy.enabled = true;
    cc.spec.observability.metrics.service_monitor.enabled = true;
    let cc = cc.valid();
    let children = build_all(&cc, &ctx());
    assert_eq!(children.redis, None);
    let policies: Vec<_> = children
        .network_policies
        .iter()
        .map(|p| p.metadata.name.clone().expect("a name"))
        .collect();
    assert_eq!(policies, ["likes-counter"]);
    let monitor = children.service_monitor.expect("a ServiceMonitor");
    assert_eq!(
        monitor.data["spec"]["selector"]["matchExpressions"][0]["values"],
        json!(["gateway", "counter"])
    );
    assert_eq!(
        monitor.data["spec"]["endpoints"]
            .as_array()
            .expect("endpoints")
            .len(),
        1
    );
}

/// Whether `labels` satisfy the ServiceMonitor's `selector` (matchLabels and `In` expressions).
fn selects(monitor: &DynamicObject, labels: &BTreeMap<String, String>) -> bool {
    let selector = &monitor.data["spec"]["selector"];
    let match_labels = selector["matchLabels"].as_object().expect("matchLabels");
    let labels_match = match_labels
        .iter()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let expressions_match = selector["matchExpressions"]
        .as_array()
        .expect("matchExpressions")
        .iter()
        .all(|e| {
            assert_eq!(e["operator"], "In");
            let key = e["key"].as_str().expect("key");
            e["values"]
                .as_array()
                .expect("values")
                .iter()
                .any(|v| labels.get(key).map(String::as_str) == v.as_str())
        });
    labels_match && expressions_match
}

/// For each Service the ServiceMonitor selects, the endpoint port names it has, which are the
/// targets prometheus-operator scrapes.
fn scraped_ports(cc: &ValidCounterCluster) -> Vec<(String, String)> {
    let monitor = build_service_monitor(cc);
    let endpoint_ports: Vec<&str> = monitor.data["spec"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["port"].as_str().expect("a port name"))
        .collect();
    let mut scraped = Vec::new();
    for service in [
        build_gateway_service(cc),
        build_counter_headless_service(cc),
        build_redis_service(cc),
    ] {
        let labels = service.metadata.labels.clone().expect("labels");
        if !selects(&monitor, &labels) {
            continue;
        }
        for (port, _, _) in service_ports(&service) {
            if endpoint_ports.contains(&port.as_str()) {
                scraped.push((service.metadata.name.clone().expect("a name"), port));
            }
        }
    }
    scraped
}

#[test]
fn service_monitor_scrapes_the_http_ports_and_the_exporter_only_when_it_runs() {
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(s, p)| ((*s).to_owned(), (*p).to_owned()))
            .collect()
    };
    assert_eq!(
        scraped_ports(&cluster().valid()),
        pairs(&[("likes-gateway", "http"), ("likes-counter", "http")])
    );
    assert_eq!(
        scraped_ports(&cluster().with_redis_exporter().valid()),
        pairs(&[
            ("likes-gateway", "http"),
            ("likes-counter", "http"),
            ("likes-redis", "metrics"),
        ])
    );

    let mut cc = cluster().with_redis_exporter();
    cc.spec.observability.metrics.service_monitor.interval = "30s".to_owned();
    let cc = cc.valid();
    let monitor = build_service_monitor(&cc);
    assert_eq!(
        monitor.data["spec"]["endpoints"],
        json!([
            {"port": "http", "path": "/metrics", "honorLabels": true, "interval": "30s"},
            {"port": "metrics", "path": "/metrics", "honorLabels": false, "interval": "30s"},
        ])
    );
}

/// Each ingress rule of a policy as (peer components, or `None` for every source; ports).
fn ingress_rules(policy: &NetworkPolicy) -> Vec<(Option<Vec<String>>, Vec<i32>)> {
    policy
        .spec
        .as_ref()
        .and_then(|s| s.ingress.clone())
        .expect("ingress rules")
        .into_iter()
        .map(|rule| {
            let peers = rule.from.map(|from| {
                from.into_iter()
                    .map(|peer| {
                        peer.pod_selector
                            .and_then(|s| s.match_labels)
                            .expect("a pod selector")["app.kubernetes.io/component"]
                            .clone()
                    })
                    .collect()
            });
            let ports = rule
                .ports
                .into_iter()
                .flatten()
                .map(|p| match p.port {
                    Some(IntOrString::Int(port)) => port,
                    other => panic!("a numeric port, not {other:?}"),
                })
                .collect();
            (peers, ports)
        })
        .collect()
}

#[test]
fn network_policies_open_the_exporter_port_to_every_pod_only_when_it_runs() {
    let counters_only = (Some(vec!["counter".to_owned()]), vec![6379]);
    let plain = build_network_policies(&cluster().valid());
    assert_eq!(plain.len(), 2);
    assert_eq!(
        ingress_rules(&plain[0]),
        [
            (Some(vec!["gateway".to_owned()]), vec![50051]),
            (None, vec![8080])
        ],
        "the counters' metrics port is open to every pod"
    );
    assert_eq!(plain[1].metadata.name.as_deref(), Some("likes-redis"));
    assert_eq!(
        ingress_rules(&plain[1]),
        std::slice::from_ref(&counters_only)
    );

    let exporter = build_network_policies(&cluster().with_redis_exporter().valid());
    assert_eq!(exporter[0], plain[0], "the counter policy does not change");
    assert_eq!(
        ingress_rules(&exporter[1]),
        [counters_only, (None, vec![9121])],
        "the exporter's metrics port is open like the counters' HTTP port"
    );
}

fn config_hash_annotation(template: &PodTemplateSpec) -> String {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
        .cloned()
        .expect("the config-hash annotation")
}

#[test]
fn pods_carry_the_config_hash_which_changes_only_when_the_config_does() {
    let cc = cluster().valid();
    let hash = config_hash(&build_config_map(&cc));
    assert_eq!(hash.len(), 16);
    let gateway = build_gateway_deployment(&cc, &ctx());
    let counter = build_counter_deployment(&cc, &ctx());
    assert_eq!(
        config_hash_annotation(template(gateway.spec.as_ref())),
        hash
    );
    assert_eq!(
        config_hash_annotation(template(counter.spec.as_ref())),
        hash
    );

    let more_replicas = cluster().with_counter_replicas(9).valid();
    assert_eq!(config_hash(&build_config_map(&more_replicas)), hash);

    let mut new_batch = cluster();
    new_batch.spec.counter.coalescing.max_batch = 1024;
    let new_batch = new_batch.valid();
    let changed = config_hash(&build_config_map(&new_batch));
    assert_ne!(changed, hash);
    let counter = build_counter_deployment(&new_batch, &ctx());
    assert_eq!(
        config_hash_annotation(template(counter.spec.as_ref())),
        changed
    );
}

#[test]
fn config_hash_is_fnv1a_of_keys_and_values() {
    // Pinned, so an accidental change of the hash (which would roll every pod) fails here.
    let config_map = k8s_openapi::api::core::v1::ConfigMap {
        data: Some(BTreeMap::from([("a".to_owned(), "b".to_owned())])),
        ..Default::default()
    };
    assert_eq!(config_hash(&config_map), "ab40d7820d408076");
}

#[test]
fn pod_template_overrides_reach_every_pod() {
    let mut cc = cluster();
    cc.spec.pod_template.annotations = BTreeMap::from([("team".to_owned(), "growth".to_owned())]);
    cc.spec.pod_template.node_selector =
        BTreeMap::from([("kubernetes.io/os".to_owned(), "linux".to_owned())]);
    cc.spec.pod_template.tolerations = vec![k8s_openapi::api::core::v1::Toleration {
        key: Some("dedicated".to_owned()),
        operator: Some("Equal".to_owned()),
        value: Some("highpress".to_owned()),
        effect: Some("NoSchedule".to_owned()),
        toleration_seconds: None,
    }];
    let cc = cc.valid();
    for (name, template) in pod_templates(&cc) {
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        assert_eq!(
            annotations.get("team").map(String::as_str),
            Some("growth"),
            "{name}"
        );
        let spec = pod(&template);
        assert_eq!(
            spec.node_selector,
            Some(cc.spec.pod_template.node_selector.clone()),
            "{name}"
        );
        assert_eq!(
            spec.tolerations,
            Some(cc.spec.pod_template.tolerations.clone()),
            "{name}"
        );
    }
}

/// Each child's [`ChildKind`] is the `kind` its object carries, and with every optional
/// feature on the builders make one of every kind but the Secret (which the apply step
/// creates), so the kinds the controller watches are the kinds the operator writes.
#[test]
fn every_child_carries_its_kind_and_every_kind_is_built() {
    let mut cc = cluster().with_redis_exporter().with_autoscaling(2, 4);
    cc.spec.network_policy.enabled = true;
    cc.spec.observability.metrics.service_monitor.enabled = true;
    let objects = build_all(&cc.valid(), &ctx())
        .objects()
        .expect("objects serialize");
    for (kind, value) in &objects {
        assert_eq!(value["kind"], kind.as_str(), "{value}");
    }
    let built: std::collections::BTreeSet<&str> =
        objects.iter().map(|(kind, _)| kind.as_str()).collect();
    let expected: std::collections::BTreeSet<&str> = ChildKind::ALL
        .into_iter()
        .filter(|kind| *kind != ChildKind::Secret)
        .map(ChildKind::as_str)
        .collect();
    assert_eq!(built, expected);
    let secret = build_redis_secret(&cluster().valid(), 0, "pw");
    assert_eq!(
        serde_json::to_value(&secret).expect("JSON")["kind"],
        ChildKind::Secret.as_str()
    );
}

/// A CounterCluster with API tokens and TLS on both hops.
fn secured() -> ValidCounterCluster {
    let mut cc = cluster();
    cc.spec.security.auth.enabled = true;
    cc.spec.security.auth.tokens_secret_ref = Some(highpress_operator::crd::TokensSecretRef {
        name: "likes-tokens".to_owned(),
        key: "tokens.yaml".to_owned(),
    });
    cc.spec.security.tls.api = true;
    cc.spec.security.tls.grpc = true;
    cc.spec.observability.metrics.service_monitor.enabled = true;
    cc.valid()
}

#[test]
fn security_mounts_the_tokens_and_each_components_own_certificate() {
    use highpress_operator::reconcile::build::security::{TLS_MOUNT_PATH, TOKENS_MOUNT_PATH};
    let cc = secured();
    for (component, deployment) in [
        ("gateway", build_gateway_deployment(&cc, &ctx())),
        ("counter", build_counter_deployment(&cc, &ctx())),
    ] {
        let template = template(deployment.spec.as_ref());
        let secret_of = |name: &str| secret_volume(template, name);
        assert_eq!(
            secret_of("api-tokens").secret_name.as_deref(),
            Some("likes-tokens")
        );
        assert_eq!(
            secret_of("tls").secret_name,
            Some(format!("likes-{component}-tls")),
            "each component mounts its own certificate"
        );
        let mounts = mount_paths(template);
        assert_eq!(mounts["api-tokens"], TOKENS_MOUNT_PATH, "{component}");
        assert_eq!(mounts["tls"], TLS_MOUNT_PATH, "{component}");
        // The kubelet probes over HTTPS; the counter's readiness leaves the gRPC port, whose
        // mutual TLS the kubelet's gRPC probe cannot speak.
        let container = only_container(template);
        for probe in [&container.liveness_probe, &container.readiness_probe] {
            let http = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .unwrap_or_else(|| panic!("{component}: an HTTP probe"));
            assert_eq!(http.scheme.as_deref(), Some("HTTPS"), "{component}");
        }
    }
    // Without security nothing extra is mounted, and the counter keeps its gRPC probe.
    let plain = cluster().valid();
    let counter = build_counter_deployment(&plain, &ctx());
    let template = template(counter.spec.as_ref());
    assert_eq!(pod(template).volumes.as_ref().map(Vec::len), Some(2));
    assert!(
        only_container(template)
            .readiness_probe
            .as_ref()
            .is_some_and(|p| p.grpc.is_some())
    );
}

#[test]
fn only_the_gateway_certificate_is_a_client_certificate() {
    use highpress_operator::reconcile::build::Component;
    use highpress_operator::reconcile::build::security::leaf_request;
    let cc = secured();
    let gateway = leaf_request(&cc, Component::Gateway);
    let counter = leaf_request(&cc, Component::Counter);
    assert!(gateway.client_auth && !counter.client_auth);
    assert!(
        counter
            .dns_names
            .contains(&"likes-counter.apps.svc".to_owned())
    );
    assert!(
        gateway
            .dns_names
            .contains(&"likes-gateway.apps.svc.cluster.local".to_owned())
    );
    for request in [&gateway, &counter] {
        assert!(
            request
                .dns_names
                .contains(&"likes-metrics.apps.svc".to_owned())
        );
    }
}

#[test]
fn with_tls_the_service_monitor_scrapes_https_against_the_operators_ca() {
    let monitor = build_service_monitor(&secured());
    let endpoint = &monitor.data["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(
        endpoint["tlsConfig"],
        json!({
            "ca": {"secret": {"name": "likes-gateway-tls", "key": "ca.crt"}},
            "serverName": "likes-metrics.apps.svc",
        })
    );
}

#[test]
fn an_external_redis_ca_and_client_certificate_are_mounted_into_the_counters_only() {
    use highpress_operator::crd::{CaSecretRef, ExternalRedisTlsSpec};
    use highpress_operator::reconcile::build::security::REDIS_TLS_MOUNT_PATH;
    let mut cc = cluster().with_external_redis("rediss://redis.data.svc:6380", None, false);
    cc.spec.redis.external.as_mut().unwrap().tls = Some(ExternalRedisTlsSpec {
        ca_secret_ref: Some(CaSecretRef {
            name: "redis-ca".to_owned(),
            key: "bundle.pem".to_owned(),
        }),
        client_certificate_secret: Some("redis-client".to_owned()),
    });
    let cc = cc.valid();
    let counter = build_counter_deployment(&cc, &ctx());
    let counter_pod = template(counter.spec.as_ref());
    let secret = |name: &str| secret_volume(counter_pod, name);
    let ca = secret("redis-ca");
    assert_eq!(ca.secret_name.as_deref(), Some("redis-ca"));
    let items = ca.items.unwrap_or_default();
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("bundle.pem", "ca.crt"),
        "the CA key lands where the config says"
    );
    assert_eq!(
        secret("redis-client-certificate").secret_name.as_deref(),
        Some("redis-client")
    );
    let mounts = mount_paths(counter_pod);
    assert_eq!(mounts["redis-ca"], format!("{REDIS_TLS_MOUNT_PATH}/ca"));
    assert_eq!(
        mounts["redis-client-certificate"],
        format!("{REDIS_TLS_MOUNT_PATH}/client")
    );
    // The gateways never talk to Redis.
    let gateway = build_gateway_deployment(&cc, &ctx());
    let gateway_volumes = pod(template(gateway.spec.as_ref()))
        .volumes
        .clone()
        .unwrap_or_default();
    assert!(gateway_volumes.iter().all(|v| !v.name.starts_with("redis")));
}

/// `security.tls.redis` on a replicated managed Redis with the exporter: every Redis and
/// sentinel port is TLS alone, under the supervisor that picks up renewals; the counters get
/// the CA (never the key); the certificate names every pod and `localhost`, as a server only.
#[test]
fn tls_on_the_managed_redis_reaches_every_redis_container_and_the_counters_get_only_the_ca() {
    use highpress_operator::reconcile::build::Component;
    use highpress_operator::reconcile::build::redis_tls::TLS_SUPERVISE_SCRIPT;
    use highpress_operator::reconcile::build::security::{
        REDIS_TLS_MOUNT_PATH, TLS_CA_FILE, TLS_MOUNT_PATH, leaf_request, tls_components,
    };
    let mut cc = cluster().with_redis_exporter();
    cc.spec.redis.managed.replicas = 3;
    cc.spec.security.tls.redis = true;
    let cc = cc.valid();
    let objects = build_all(&cc, &ctx());
    let (_, redis) = objects.redis.expect("Redis");
    let (_, sentinels) = objects.redis_sentinel.expect("sentinels");
    for (statefulset, port, renewal) in
        [(&redis, "6379", "reload"), (&sentinels, "26379", "restart")]
    {
        let template = &statefulset.spec.as_ref().expect("a spec").template;
        let container = &pod(template).containers[0];
        let command = container.command.clone().unwrap_or_default();
        assert_eq!(command[2], TLS_SUPERVISE_SCRIPT);
        assert_eq!(command[4], renewal);
        let args = container.args.clone().unwrap_or_default().join(" ");
        assert!(
            args.starts_with(&format!(
                "--port 0 --tls-port {port} --tls-cert-file {TLS_MOUNT_PATH}/tls.crt --tls-key-file {TLS_MOUNT_PATH}/tls.key --tls-ca-cert-file {TLS_CA_FILE} --tls-auth-clients no --tls-replication yes"
            )),
            "{args}"
        );
        assert_eq!(
            secret_volume(template, "tls").secret_name.as_deref(),
            Some("likes-redis-tls")
        );
        let tls_mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "tls")
            .map(|m| m.mount_path.as_str());
        assert_eq!(tls_mount, Some(TLS_MOUNT_PATH));
        let probe = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.clone())
            .unwrap_or_default();
        assert!(
            probe[2].starts_with(&format!("redis-cli --tls --cacert {TLS_CA_FILE} ")),
            "{probe:?}"
        );
    }
    let redis_template = &redis.spec.as_ref().expect("a spec").template;
    let exporter = &pod(redis_template).containers[1];
    let env: BTreeMap<String, String> = exporter
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    assert_eq!(env["REDIS_ADDR"], "rediss://localhost:6379");
    assert_eq!(env["REDIS_EXPORTER_TLS_CA_CERT_FILE"], TLS_CA_FILE);

    let counter = build_counter_deployment(&cc, &ctx());
    let counter_pod = template(counter.spec.as_ref());
    let ca = secret_volume(counter_pod, "redis-ca");
    assert_eq!(ca.secret_name.as_deref(), Some("likes-redis-tls"));
    let items = ca.items.unwrap_or_default();
    assert_eq!(items.len(), 1, "the CA alone, not the Redis key");
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("ca.crt", "ca.crt")
    );
    assert_eq!(
        mount_paths(counter_pod)["redis-ca"],
        format!("{REDIS_TLS_MOUNT_PATH}/ca")
    );
    assert!(
        !mount_paths(counter_pod).contains_key("tls"),
        "no highpress certificate"
    );

    assert_eq!(tls_components(&cc), vec![Component::Redis]);
    let request = leaf_request(&cc, Component::Redis);
    assert!(
        !request.client_auth,
        "a counter must not take it for a gateway's"
    );
    for name in [
        "likes-redis.apps.svc",
        "*.likes-redis.apps.svc",
        "likes-redis-sentinel.apps.svc",
        "*.likes-redis-sentinel.apps.svc",
        "localhost",
    ] {
        assert!(request.dns_names.contains(&name.to_owned()), "{name}");
    }
}

/// The Secret volume `name` of a pod template.
fn secret_volume(
    template: &PodTemplateSpec,
    name: &str,
) -> k8s_openapi::api::core::v1::SecretVolumeSource {
    pod(template)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .and_then(|v| v.secret.clone())
        .unwrap_or_else(|| panic!("no Secret volume {name}"))
}

/// Volume name → mount path of a pod template's only container.
fn mount_paths(template: &PodTemplateSpec) -> BTreeMap<String, String> {
    only_container(template)
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect()
}
