//! Replicated managed Redis (`spec.redis.managed.replicas` above 1) and an external Sentinel,
//! field by field: replicas 1 builds no sentinel object and exactly the single Redis; replicas
//! 3 builds the headless Services, the StatefulSets with their start scripts, anti-affinity,
//! PDBs, NetworkPolicies, the counters' sentinel password and the service config's Sentinel
//! keys, which the service's own loader accepts. The processes those scripts start are run in
//! `sentinel_wiring.rs`.

mod support;

use std::collections::BTreeMap;

use highpress_operator::crd::{ExternalSentinelSpec, SecretKeyRef};
use highpress_operator::reconcile::build::config::{CONFIG_KEY, render_service_config};
use highpress_operator::reconcile::build::sentinel::{
    REDIS_START_SCRIPT, SENTINEL_START_SCRIPT, sentinel_addrs,
};
use highpress_operator::reconcile::build::{
    BuildContext, build_all, build_counter_deployment, build_network_policies, build_pdbs,
    build_redis_service, build_redis_statefulset,
};
use highpress_operator::reconcile::validate::{ValidCounterCluster, validate};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::{CounterClusterFixture, cluster};

fn ctx() -> BuildContext {
    BuildContext {
        default_image_tag: "9.9.9".to_owned(),
    }
}

fn replicated(replicas: i32) -> ValidCounterCluster {
    let mut cc = cluster();
    cc.spec.redis.managed.replicas = replicas;
    cc.valid()
}

fn pod_spec(statefulset: &StatefulSet) -> &PodSpec {
    statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
}

fn container(statefulset: &StatefulSet) -> &Container {
    &pod_spec(statefulset).containers[0]
}

fn env(container: &Container) -> BTreeMap<String, EnvVar> {
    container
        .env
        .iter()
        .flatten()
        .map(|var| (var.name.clone(), var.clone()))
        .collect()
}

fn value(env: &BTreeMap<String, EnvVar>, name: &str) -> String {
    env[name]
        .value
        .clone()
        .unwrap_or_else(|| panic!("{name} has a value"))
}

fn secret_name(var: &EnvVar) -> String {
    var.value_from
        .as_ref()
        .and_then(|s| s.secret_key_ref.as_ref())
        .map(|k| format!("{}/{}", k.name, k.key))
        .unwrap_or_else(|| panic!("{} comes from a Secret", var.name))
}

fn headless(service: &Service) -> (Option<String>, Option<bool>) {
    let spec = service.spec.as_ref().expect("spec");
    (spec.cluster_ip.clone(), spec.publish_not_ready_addresses)
}

fn anti_affinity_component(spec: &PodSpec) -> Option<(String, String, i32)> {
    let term = spec
        .affinity
        .as_ref()?
        .pod_anti_affinity
        .as_ref()?
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()?
        .first()?
        .clone();
    let labels = term.pod_affinity_term.label_selector?.match_labels?;
    Some((
        term.pod_affinity_term.topology_key,
        labels["app.kubernetes.io/component"].clone(),
        term.weight,
    ))
}

#[test]
fn one_replica_builds_the_single_redis_and_no_sentinel() {
    let cc = replicated(1);
    let objects = build_all(&cc, &ctx());
    assert!(objects.redis_sentinel.is_none());
    let (service, statefulset) = objects.redis.expect("managed Redis");
    assert_eq!(headless(&service), (None, None));
    assert_eq!(
        service.spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("ClusterIP")
    );
    let spec = statefulset.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let container = container(&statefulset);
    assert_eq!(container.command, Some(vec!["redis-server".to_owned()]));
    assert!(!container.args.iter().flatten().any(|a| a == "--masterauth"));
    assert!(pod_spec(&statefulset).affinity.is_none());
    assert_eq!(build_pdbs(&cc).len(), 2, "gateway and counter only");
    let config = render_service_config(&cc);
    assert!(!config.contains("sentinel"), "{config}");
    assert!(!config.contains("min_replicas_ack"), "{config}");
    // The defaults are what an explicit replicas: 1 gives.
    assert_eq!(
        build_all(&cluster().valid(), &ctx()),
        build_all(&cc, &ctx())
    );
}

#[test]
fn three_replicas_build_a_headless_redis_and_three_sentinels() {
    let cc = replicated(3);
    let objects = build_all(&cc, &ctx());
    let (redis_service, redis) = objects.redis.expect("managed Redis");
    let (sentinel_service, sentinels) = objects.redis_sentinel.expect("sentinels");

    assert_eq!(redis_service.metadata.name.as_deref(), Some("likes-redis"));
    assert_eq!(
        headless(&redis_service),
        (Some("None".to_owned()), Some(true))
    );
    assert_eq!(
        sentinel_service.metadata.name.as_deref(),
        Some("likes-redis-sentinel")
    );
    assert_eq!(
        headless(&sentinel_service),
        (Some("None".to_owned()), Some(true))
    );
    let sentinel_ports: Vec<_> = sentinel_service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .expect("ports")
        .into_iter()
        .map(|p| (p.name, p.port, p.target_port))
        .collect();
    assert_eq!(
        sentinel_ports,
        [(
            Some("sentinel".to_owned()),
            26379,
            Some(IntOrString::String("sentinel".to_owned()))
        )]
    );
    assert_eq!(
        sentinel_service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .expect("selector")["app.kubernetes.io/component"],
        "redis-sentinel"
    );

    // Redis: three pods governed by the headless Service, the start script, masterauth.
    let spec = redis.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("likes-redis"));
    let redis_container = container(&redis);
    let command = redis_container.command.clone().expect("a command");
    assert_eq!(command[..2], ["sh", "-c"]);
    assert_eq!(command[2], REDIS_START_SCRIPT);
    let args = redis_container.args.clone().expect("args");
    let after = |flag: &str| {
        let at = args.iter().position(|a| a == flag).expect(flag);
        args[at + 1].clone()
    };
    assert_eq!(after("--requirepass"), "$(REDIS_PASSWORD)");
    assert_eq!(after("--masterauth"), "$(REDIS_PASSWORD)");
    assert_eq!(after("--dir"), "/data");
    let redis_env = env(redis_container);
    assert_eq!(
        value(&redis_env, "SELF_HOST"),
        "$(POD_NAME).likes-redis.apps.svc"
    );
    assert_eq!(
        value(&redis_env, "PRIMARY_ADDR"),
        "likes-redis-0.likes-redis.apps.svc:6379"
    );
    assert_eq!(
        value(&redis_env, "SENTINEL_ADDRS"),
        "likes-redis-sentinel-0.likes-redis-sentinel.apps.svc:26379 \
         likes-redis-sentinel-1.likes-redis-sentinel.apps.svc:26379 \
         likes-redis-sentinel-2.likes-redis-sentinel.apps.svc:26379"
    );
    assert_eq!(value(&redis_env, "MASTER_NAME"), "likes");
    let names: Vec<&str> = redis_container
        .env
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let pod_name_at = names
        .iter()
        .position(|n| *n == "POD_NAME")
        .expect("POD_NAME");
    let self_host_at = names
        .iter()
        .position(|n| *n == "SELF_HOST")
        .expect("SELF_HOST");
    assert!(
        pod_name_at < self_host_at,
        "$(POD_NAME) expands only from an earlier variable"
    );
    assert_eq!(
        secret_name(&redis_env["REDIS_PASSWORD"]),
        "likes-redis-auth-5f0c2a4e/password"
    );
    // The PVC template and its retention are those of the single Redis, so pod 0 keeps its
    // claim data-likes-redis-0 when replicas go from 1 to 3.
    let single = build_redis_statefulset(&replicated(1));
    let single_spec = single.spec.as_ref().expect("spec");
    assert_eq!(
        spec.volume_claim_templates,
        single_spec.volume_claim_templates
    );
    assert_eq!(
        spec.persistent_volume_claim_retention_policy,
        single_spec.persistent_volume_claim_retention_policy
    );
    assert_eq!(spec.selector, single_spec.selector);
    assert_eq!(spec.service_name, single_spec.service_name);

    // Sentinels: three, the start script, the config file in an emptyDir, the password.
    let spec = sentinels.spec.as_ref().expect("spec");
    assert_eq!(
        sentinels.metadata.name.as_deref(),
        Some("likes-redis-sentinel")
    );
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("likes-redis-sentinel"));
    assert!(spec.volume_claim_templates.is_none());
    let sentinel_container = container(&sentinels);
    let command = sentinel_container.command.clone().expect("a command");
    assert_eq!(command[2], SENTINEL_START_SCRIPT);
    assert_eq!(
        sentinel_container.args,
        Some(vec!["--port".to_owned(), "26379".to_owned()])
    );
    let sentinel_env = env(sentinel_container);
    assert_eq!(
        value(&sentinel_env, "SELF_HOST"),
        "$(POD_NAME).likes-redis-sentinel.apps.svc"
    );
    assert_eq!(
        value(&sentinel_env, "REDIS_ADDRS"),
        "likes-redis-0.likes-redis.apps.svc:6379 likes-redis-1.likes-redis.apps.svc:6379 \
         likes-redis-2.likes-redis.apps.svc:6379"
    );
    assert_eq!(value(&sentinel_env, "QUORUM"), "2");
    assert_eq!(
        value(&sentinel_env, "SENTINEL_CONFIG"),
        "/etc/sentinel/sentinel.conf"
    );
    assert_eq!(
        secret_name(&sentinel_env["REDIS_PASSWORD"]),
        "likes-redis-auth-5f0c2a4e/password"
    );
    let pod = pod_spec(&sentinels);
    let volume = &pod.volumes.as_ref().expect("volumes")[0];
    assert!(volume.empty_dir.is_some());
    let mount = &sentinel_container.volume_mounts.as_ref().expect("mounts")[0];
    assert_eq!(
        (mount.name.as_str(), mount.mount_path.as_str()),
        ("config", "/etc/sentinel")
    );
    let security = sentinel_container
        .security_context
        .as_ref()
        .expect("security");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        pod.security_context.as_ref().and_then(|s| s.run_as_user),
        Some(999)
    );
    assert!(sentinel_container.readiness_probe.is_some());
    assert!(sentinel_container.liveness_probe.is_some());
}

#[test]
fn replicated_pods_prefer_distinct_nodes() {
    let cc = replicated(3);
    let objects = build_all(&cc, &ctx());
    let (_, redis) = objects.redis.expect("Redis");
    let (_, sentinels) = objects.redis_sentinel.expect("sentinels");
    assert_eq!(
        anti_affinity_component(pod_spec(&redis)),
        Some(("kubernetes.io/hostname".to_owned(), "redis".to_owned(), 100))
    );
    assert_eq!(
        anti_affinity_component(pod_spec(&sentinels)),
        Some((
            "kubernetes.io/hostname".to_owned(),
            "redis-sentinel".to_owned(),
            100
        ))
    );
    // The topology spread every pod has stays.
    assert!(pod_spec(&sentinels).topology_spread_constraints.is_some());

    // A podTemplate affinity is kept; its own pod anti-affinity wins over the operator's.
    let mut cc = cluster();
    cc.spec.redis.managed.replicas = 3;
    cc.spec.pod_template.affinity = Some(serde_json::from_value(serde_json::json!({
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["redis"]}]}
        ]}}
    })).expect("an affinity"));
    let statefulset = build_redis_statefulset(&cc.clone().valid());
    let affinity = pod_spec(&statefulset).affinity.clone().expect("affinity");
    assert!(affinity.node_affinity.is_some());
    assert!(affinity.pod_anti_affinity.is_some());
    cc.spec.pod_template.affinity = Some(serde_json::from_value(serde_json::json!({
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"a": "b"}}}
        ]}
    })).expect("an affinity"));
    let statefulset = build_redis_statefulset(&cc.valid());
    let anti = pod_spec(&statefulset)
        .affinity
        .clone()
        .and_then(|a| a.pod_anti_affinity)
        .expect("anti-affinity");
    assert!(
        anti.preferred_during_scheduling_ignored_during_execution
            .is_none()
    );
    assert!(
        anti.required_during_scheduling_ignored_during_execution
            .is_some()
    );
}

#[test]
fn replicated_redis_gets_pdbs_for_redis_and_sentinels() {
    let summary: Vec<_> = build_pdbs(&replicated(3))
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
    let one = Some(IntOrString::Int(1));
    assert_eq!(
        summary,
        [
            (
                "likes-gateway".to_owned(),
                one.clone(),
                "gateway".to_owned()
            ),
            (
                "likes-counter".to_owned(),
                one.clone(),
                "counter".to_owned()
            ),
            ("likes-redis".to_owned(), one.clone(), "redis".to_owned()),
            (
                "likes-redis-sentinel".to_owned(),
                one,
                "redis-sentinel".to_owned()
            ),
        ]
    );
}

#[test]
fn replicated_network_policies_let_redis_and_sentinels_reach_each_other() {
    let mut cc = cluster();
    cc.spec.redis.managed.replicas = 3;
    cc.spec.network_policy.enabled = true;
    let policies = build_network_policies(&cc.valid());
    let rules: Vec<_> = policies
        .iter()
        .map(|policy| {
            let spec = policy.spec.as_ref().expect("spec");
            let ingress = &spec.ingress.as_ref().expect("ingress")[0];
            let from: Vec<String> = ingress
                .from
                .iter()
                .flatten()
                .map(|peer| {
                    peer.pod_selector
                        .as_ref()
                        .and_then(|s| s.match_labels.clone())
                        .expect("a pod selector")["app.kubernetes.io/component"]
                        .clone()
                })
                .collect();
            let port = ingress.ports.as_ref().expect("ports")[0].port.clone();
            (policy.metadata.name.clone().expect("name"), from, port)
        })
        .collect();
    let all = ["counter", "redis", "redis-sentinel"]
        .map(str::to_owned)
        .to_vec();
    // The sentinels also admit the operator's pods, in any namespace, which read the primary.
    let with_operator = ["counter", "redis", "redis-sentinel", "operator"]
        .map(str::to_owned)
        .to_vec();
    assert_eq!(
        rules[1..],
        [
            ("likes-redis".to_owned(), all, Some(IntOrString::Int(6379))),
            (
                "likes-redis-sentinel".to_owned(),
                with_operator,
                Some(IntOrString::Int(26379))
            ),
        ]
    );
    let sentinel_ingress = &policies[2]
        .spec
        .as_ref()
        .expect("spec")
        .ingress
        .as_ref()
        .expect("ingress")[0];
    let operator = sentinel_ingress
        .from
        .as_ref()
        .expect("peers")
        .last()
        .expect("a peer");
    assert_eq!(
        operator.namespace_selector,
        Some(Default::default()),
        "the operator runs in its own namespace"
    );
}

#[test]
fn replicated_config_points_at_the_sentinels_and_waits_for_a_replica() {
    let cc = replicated(3);
    let config: serde_json::Value =
        serde_norway::from_str(&render_service_config(&cc)).expect("YAML");
    let redis = &config["redis"];
    assert_eq!(redis["sentinel"]["master_name"], "likes");
    assert_eq!(
        redis["sentinel"]["addrs"],
        serde_json::json!([
            "likes-redis-sentinel-0.likes-redis-sentinel.apps.svc:26379",
            "likes-redis-sentinel-1.likes-redis-sentinel.apps.svc:26379",
            "likes-redis-sentinel-2.likes-redis-sentinel.apps.svc:26379",
        ])
    );
    assert_eq!(
        redis["sentinel"]["addrs"],
        serde_json::to_value(sentinel_addrs(&cc)).expect("JSON")
    );
    assert!(
        redis["sentinel"].get("password").is_none(),
        "no password in the file"
    );
    assert_eq!(redis["min_replicas_ack"], 1, "the default with replicas");
    assert_eq!(redis["replica_ack_timeout_ms"], 500);
    assert_eq!(redis["cluster"], false);

    let mut explicit = cluster();
    explicit.spec.redis.managed.replicas = 3;
    explicit.spec.redis.managed.min_replicas_ack = Some(0);
    let text = render_service_config(&explicit.valid());
    assert!(text.contains("min_replicas_ack: 0\n"), "{text}");

    // The counters get the sentinels' password from the Redis Secret; the gateway none.
    let deployment = build_counter_deployment(&cc, &ctx());
    let counter = &deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
        .containers[0];
    let counter_env = env(counter);
    assert_eq!(
        secret_name(&counter_env["HIGHPRESS_REDIS__SENTINEL__PASSWORD"]),
        "likes-redis-auth-5f0c2a4e/password"
    );
    assert_eq!(
        secret_name(&counter_env["HIGHPRESS_REDIS__PASSWORD"]),
        "likes-redis-auth-5f0c2a4e/password"
    );
    let text = build_all(&cc, &ctx()).config_map.data.expect("data")[CONFIG_KEY].clone();
    assert!(!text.contains("password"), "{text}");
}

#[test]
fn the_rendered_sentinel_config_loads_in_the_service() {
    let managed = load(&replicated(3), "managed-sentinel");
    assert!(managed.redis.sentinel.enabled());
    assert_eq!(managed.redis.sentinel.master_name, "likes");
    assert_eq!(managed.redis.sentinel.addrs.len(), 3);
    assert_eq!(managed.redis.min_replicas_ack, 1);

    let external = external_sentinel(2, Some(("sentinel-auth", "pw"))).valid();
    let config = load(&external, "external-sentinel");
    assert_eq!(config.redis.sentinel.master_name, "counts");
    assert_eq!(
        config.redis.sentinel.addrs,
        ["s-0.example:26379", "s-1.example:26379"]
    );
    assert_eq!(config.redis.min_replicas_ack, 2);
}

/// `cc`'s rendered config.yaml loaded as the service loads it (from a temporary file).
fn load(cc: &ValidCounterCluster, label: &str) -> highpress::config::Config {
    let path = std::env::temp_dir().join(format!(
        "highpress-operator-sentinel-{}-{label}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, render_service_config(cc)).expect("writing config.yaml");
    let loaded = highpress::config::Config::load(Some(&path));
    let _ = std::fs::remove_file(&path);
    loaded.unwrap_or_else(|e| panic!("the service loads the {label} config: {e}"))
}

fn external_sentinel(
    min_replicas_ack: i32,
    secret: Option<(&str, &str)>,
) -> highpress_operator::crd::CounterCluster {
    let mut cc = cluster().with_external_redis(
        "redis://ignored.example:6379",
        Some(("redis-auth", "password")),
        false,
    );
    let external = cc.spec.redis.external.as_mut().expect("external");
    external.min_replicas_ack = min_replicas_ack;
    external.sentinel = Some(ExternalSentinelSpec {
        master_name: "counts".to_owned(),
        addrs: vec![
            "s-0.example:26379".to_owned(),
            "s-1.example:26379".to_owned(),
        ],
        password_secret_ref: secret.map(|(name, key)| SecretKeyRef {
            name: name.to_owned(),
            key: key.to_owned(),
        }),
    });
    cc
}

#[test]
fn an_external_sentinel_renders_the_same_keys_and_its_password_secret() {
    let cc = external_sentinel(0, Some(("sentinel-auth", "pw"))).valid();
    let objects = build_all(&cc, &ctx());
    assert!(objects.redis.is_none() && objects.redis_sentinel.is_none());
    let config: serde_json::Value =
        serde_norway::from_str(&render_service_config(&cc)).expect("YAML");
    assert_eq!(config["redis"]["sentinel"]["master_name"], "counts");
    assert_eq!(
        config["redis"]["sentinel"]["addrs"],
        serde_json::json!(["s-0.example:26379", "s-1.example:26379"])
    );
    assert_eq!(config["redis"]["min_replicas_ack"], 0);
    let deployment = build_counter_deployment(&cc, &ctx());
    let counter = &deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
        .containers[0];
    let counter_env = env(counter);
    assert_eq!(
        secret_name(&counter_env["HIGHPRESS_REDIS__SENTINEL__PASSWORD"]),
        "sentinel-auth/pw"
    );
    assert_eq!(
        secret_name(&counter_env["HIGHPRESS_REDIS__PASSWORD"]),
        "redis-auth/password"
    );
    // Without a sentinel password Secret, no sentinel password variable.
    let cc = external_sentinel(0, None).valid();
    let deployment = build_counter_deployment(&cc, &ctx());
    let names: Vec<String> = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("a pod spec")
        .containers[0]
        .env
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect();
    assert_eq!(names, ["HIGHPRESS_REDIS__PASSWORD"]);
    // A plain external Redis renders no Sentinel and no acknowledgement keys.
    let plain = cluster()
        .with_external_redis("redis://redis.example:6379", None, false)
        .valid();
    let text = render_service_config(&plain);
    assert!(
        !text.contains("sentinel") && !text.contains("min_replicas_ack"),
        "{text}"
    );
}

#[test]
fn replicated_names_leave_room_for_the_sentinel_pods_and_addrs_are_checked() {
    let mut cc = cluster();
    cc.metadata.name = Some("a".repeat(38));
    assert!(
        validate(&cc).is_ok(),
        "38 characters are fine for one Redis"
    );
    cc.spec.redis.managed.replicas = 3;
    let error = validate(&cc).expect_err("too long for the sentinel pods");
    assert!(
        error.to_string().starts_with("metadata.name: at most 37"),
        "{error}"
    );
    let mut cc = external_sentinel(0, None);
    cc.spec
        .redis
        .external
        .as_mut()
        .and_then(|e| e.sentinel.as_mut())
        .expect("sentinel")
        .addrs
        .push("no-port".to_owned());
    let error = validate(&cc).expect_err("an address without a port");
    assert_eq!(
        error.to_string(),
        "spec.redis.external.sentinel.addrs: \"no-port\" is not host:port"
    );
}

#[test]
fn the_redis_service_becomes_headless_only_when_replicated() {
    assert_eq!(headless(&build_redis_service(&replicated(1))), (None, None));
    assert_eq!(
        headless(&build_redis_service(&replicated(2))),
        (Some("None".to_owned()), Some(true))
    );
}
