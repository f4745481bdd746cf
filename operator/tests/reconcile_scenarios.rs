//! Reconcile scenarios against the fake API server (`support::fake_api`, the kube-rs
//! ApiServerVerifier pattern): the exact requests of each scenario (paths, server-side apply
//! patches, status patches, deletes of disabled features, error requeues, the process's
//! Lease and watches), each scenario followed by its test; and at the end the RBAC
//! completeness check, which replays every scenario and compares the requests they made with
//! the ClusterRole and Role the chart installs.
//!
//! Each scenario returns its requests for that check. What the operator does to a real
//! cluster is `control_plane.rs`'s.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use highpress_operator::crd::{CounterCluster, CounterClusterStatus};
use highpress_operator::metrics::{Metrics, ReconcileResult};
use highpress_operator::reconcile::build::BuildContext;
use highpress_operator::reconcile::{Context, error_policy, reconcile};
use highpress_operator::render::render;
use highpress_operator::run::{Settings, serve};
use http::Method;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Action;
use serde::Deserialize;
use serde_json::json;
use support::fake_api::{Failure, FakeApi, Recorded};
use support::{CounterClusterFixture, cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const CC_PATH: &str = "/apis/highpress.dev/v1alpha1/namespaces/apps/counterclusters/likes";
const CORE: &str = "/api/v1/namespaces/apps";
const APPS: &str = "/apis/apps/v1/namespaces/apps";
const HPA: &str = "/apis/autoscaling/v2/namespaces/apps/horizontalpodautoscalers";
const PDB: &str = "/apis/policy/v1/namespaces/apps/poddisruptionbudgets";
const NETPOL: &str = "/apis/networking.k8s.io/v1/namespaces/apps/networkpolicies";
const MONITORS: &str = "/apis/monitoring.coreos.com/v1/namespaces/apps/servicemonitors";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

/// A fake API server holding `cc`, and a context whose client talks to it.
fn setup(cc: &CounterCluster) -> (FakeApi, Arc<Context>) {
    let fake = FakeApi::new();
    fake.insert(CC_PATH, serde_json::to_value(cc).expect("JSON"));
    let ctx = Context::new(
        fake.client("highpress-system"),
        BuildContext {
            default_image_tag: "9.9.9".to_owned(),
        },
        Arc::new(Metrics::new()),
        "operator-0".to_owned(),
        "highpress-system".to_owned(),
    );
    (fake, Arc::new(ctx))
}

async fn run(cc: &CounterCluster, ctx: &Arc<Context>) -> Result<Action, String> {
    reconcile(Arc::new(DeserializeGuard(Ok(cc.clone()))), ctx.clone())
        .await
        .map_err(|e| e.to_string())
}

/// The CounterCluster as stored by the fake, with the status the operator patched.
fn stored(fake: &FakeApi) -> CounterCluster {
    serde_json::from_value(fake.get(CC_PATH).expect("the CounterCluster"))
        .expect("a CounterCluster")
}

fn status(fake: &FakeApi) -> CounterClusterStatus {
    stored(fake).status.expect("a status")
}

fn condition(status: &CounterClusterStatus, type_: &str) -> (String, String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn lines(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(Recorded::line).collect()
}

fn event_reasons(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == Method::POST && r.path == EVENTS)
        .map(|r| r.body["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Whether a request is a forced apply of a child (the status is always forced).
trait ForcedChild {
    fn is_forced_child(&self) -> bool;
}

impl ForcedChild for Recorded {
    fn is_forced_child(&self) -> bool {
        self.is_forced() && !self.path.ends_with("/status")
    }
}

/// A fresh, managed-Redis CounterCluster with every optional feature off.
async fn scenario_new_cluster() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);

    let action = run(&cc, &ctx).await.expect("reconciled");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));

    let requests = fake.requests();
    assert_eq!(
        lines(&requests),
        [
            format!("PATCH {CORE}/configmaps/likes-config"),
            format!("POST {CORE}/secrets"),
            format!("PATCH {CORE}/services/likes-redis"),
            format!("PATCH {APPS}/statefulsets/likes-redis"),
            format!("PATCH {CORE}/services/likes-counter"),
            format!("PATCH {APPS}/deployments/likes-counter"),
            format!("PATCH {CORE}/services/likes-gateway"),
            format!("PATCH {APPS}/deployments/likes-gateway"),
            format!("GET {HPA}/likes-gateway"),
            format!("PATCH {PDB}/likes-gateway"),
            format!("PATCH {PDB}/likes-counter"),
            format!("GET {NETPOL}/likes-counter"),
            format!("GET {NETPOL}/likes-redis"),
            "GET /apis/monitoring.coreos.com/v1".to_owned(),
            format!("POST {EVENTS}"),
            format!("PATCH {CC_PATH}/status"),
        ],
        "the requests of a first reconcile, in the stated order"
    );
    for request in requests.iter().filter(|r| r.method == Method::PATCH) {
        assert!(
            request.is_apply(),
            "{} is a server-side apply",
            request.line()
        );
        assert!(
            request.query.contains("fieldManager=highpress-operator"),
            "{} uses the operator's field manager: {}",
            request.line(),
            request.query
        );
    }
    // Children are applied unforced; only the status (owned by the operator alone) is forced.
    for request in requests.iter().filter(|r| r.is_apply()) {
        assert_eq!(
            request.is_forced(),
            request.path.ends_with("/status"),
            "{}",
            request.line()
        );
    }
    let gateway = &requests[7].body;
    assert_eq!(gateway["kind"], "Deployment");
    assert_eq!(
        gateway["metadata"]["ownerReferences"][0]["uid"],
        json!(cc.metadata.uid)
    );
    assert_eq!(
        gateway["metadata"]["ownerReferences"][0]["controller"],
        true
    );

    let secret = &requests[1].body;
    assert_eq!(secret["metadata"]["name"], "likes-redis-auth-5f0c2a4e");
    let password = secret["stringData"]["password"]
        .as_str()
        .expect("a password");
    assert_eq!(password.len(), 64);
    assert!(password.chars().all(|c| c.is_ascii_hexdigit()));
    for request in &requests {
        if request.path.ends_with("/secrets") {
            continue;
        }
        assert!(
            !request.body.to_string().contains(password),
            "the Redis password leaked into {}",
            request.line()
        );
    }

    assert_eq!(event_reasons(&requests), ["Created"]);
    let status = status(&fake);
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        condition(&status, "Ready").0,
        "False",
        "nothing is ready on a fresh cluster"
    );
    assert_eq!(condition(&status, "Progressing").1, "RollingOut");
    assert_eq!(condition(&status, "Degraded").0, "False");
    assert_eq!(status.gateway.expect("gateway").ready, "0/2");
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://likes-gateway.apps.svc:8080")
    );
    assert_eq!(ctx.metrics.reconcile_count(ReconcileResult::Success), 1);
    requests
}

#[tokio::test]
async fn a_new_cluster_gets_every_object_in_order_and_a_status() {
    scenario_new_cluster().await;
}

/// Workloads become ready, then a second reconcile with an unchanged status writes no status.
async fn scenario_ready_then_steady() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);
    fake.set_workloads_ready(true);

    run(&cc, &ctx).await.expect("reconciled");
    let status = status(&fake);
    assert_eq!(condition(&status, "Ready").0, "True");
    assert_eq!(condition(&status, "Ready").1, "AllComponentsReady");
    assert_eq!(condition(&status, "Progressing").1, "RolloutComplete");
    assert_eq!(status.counter.as_ref().expect("counter").ready, "3/3");
    assert_eq!(status.redis.as_ref().expect("redis").state, "Ready");

    // The runtime hands the reconciler the object with the status it just wrote.
    let mut requests = fake.requests();
    fake.clear_requests();
    run(&stored(&fake), &ctx).await.expect("reconciled again");
    let again = fake.requests();
    assert!(
        !again.iter().any(|r| r.path.ends_with("/status")),
        "an unchanged status is not patched again: {:?}",
        lines(&again)
    );
    assert!(
        event_reasons(&again).is_empty(),
        "no Event for an unchanged generation: {:?}",
        event_reasons(&again)
    );
    assert!(
        again
            .iter()
            .any(|r| r.line() == format!("POST {CORE}/secrets")),
        "the Secret is only ever created; an existing one answers AlreadyExists"
    );
    requests.extend(again);
    requests
}

#[tokio::test]
async fn ready_workloads_make_it_ready_and_a_steady_state_writes_nothing_new() {
    scenario_ready_then_steady().await;
}

/// A spec change rewrites only what it should: more counter replicas change the counter
/// Deployment's `spec.replicas` and nothing else in any applied object.
async fn scenario_spec_change_is_minimal() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);
    run(&cc, &ctx).await.expect("reconciled");
    let before = fake.requests();
    fake.clear_requests();

    let mut changed = stored(&fake);
    changed.spec.counter.replicas = 5;
    changed.metadata.generation = Some(2);
    run(&changed, &ctx).await.expect("reconciled");
    let after = fake.requests();

    let applied = |requests: &[Recorded]| -> Vec<(String, serde_json::Value)> {
        requests
            .iter()
            .filter(|r| r.is_apply() && !r.path.ends_with("/status"))
            .map(|r| (r.path.clone(), r.body.clone()))
            .collect()
    };
    let (before, after_applied) = (applied(&before), applied(&after));
    assert_eq!(
        before.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        after_applied.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        "the same objects, in the same order"
    );
    let counter = format!("{APPS}/deployments/likes-counter");
    for ((path, old), (_, new)) in before.iter().zip(&after_applied) {
        if *path == counter {
            assert_eq!(old["spec"]["replicas"], 3);
            assert_eq!(new["spec"]["replicas"], 5);
            let (mut old, mut new) = (old.clone(), new.clone());
            old["spec"]["replicas"] = json!(null);
            new["spec"]["replicas"] = json!(null);
            assert_eq!(old, new, "only spec.replicas of {path} changed");
        } else {
            assert_eq!(old, new, "{path} is unchanged");
        }
    }
    assert_eq!(event_reasons(&after), ["Updated"]);
    assert_eq!(status(&fake).observed_generation, Some(2));
    after
}

#[tokio::test]
async fn a_spec_change_rewrites_only_what_it_should() {
    scenario_spec_change_is_minimal().await;
}

/// Autoscaling on: the HPA is applied and the Deployment leaves replicas to it. Off again: the
/// HPA the operator owns is deleted with a uid precondition.
async fn scenario_autoscaling_toggle() -> Vec<Recorded> {
    let mut cc = cluster().with_autoscaling(2, 8);
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);
    run(&cc, &ctx).await.expect("reconciled");
    let on = fake.requests();
    let hpa = on
        .iter()
        .find(|r| r.line() == format!("PATCH {HPA}/likes-gateway"))
        .expect("the HPA is applied");
    assert_eq!(hpa.body["spec"]["maxReplicas"], 8);
    let gateway = on
        .iter()
        .find(|r| r.line() == format!("PATCH {APPS}/deployments/likes-gateway"))
        .expect("the gateway is applied");
    assert!(
        gateway.body["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    let hpa_uid = fake
        .get(&format!("{HPA}/likes-gateway"))
        .expect("stored HPA")["metadata"]["uid"]
        .clone();

    fake.clear_requests();
    let mut off = stored(&fake);
    off.spec.gateway.autoscaling.enabled = false;
    off.metadata.generation = Some(2);
    run(&off, &ctx).await.expect("reconciled");
    let requests = fake.requests();
    let delete = requests
        .iter()
        .find(|r| r.line() == format!("DELETE {HPA}/likes-gateway"))
        .unwrap_or_else(|| panic!("the HPA is deleted: {:?}", lines(&requests)));
    assert_eq!(delete.body["preconditions"]["uid"], hpa_uid);
    assert!(fake.get(&format!("{HPA}/likes-gateway")).is_none());
    assert_eq!(event_reasons(&requests), ["Updated"]);
    let mut all = on;
    all.extend(requests);
    all
}

#[tokio::test]
async fn disabling_autoscaling_deletes_the_owned_hpa() {
    scenario_autoscaling_toggle().await;
}

/// An object of a disabled feature that someone else owns is left alone.
async fn scenario_foreign_object_kept() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);
    fake.insert(
        &format!("{HPA}/likes-gateway"),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "likes-gateway", "namespace": "apps"}}),
    );
    run(&cc, &ctx).await.expect("reconciled");
    let requests = fake.requests();
    assert!(
        !requests.iter().any(|r| r.method == Method::DELETE),
        "{:?}",
        lines(&requests)
    );
    assert!(fake.get(&format!("{HPA}/likes-gateway")).is_some());
    requests
}

#[tokio::test]
async fn objects_owned_by_someone_else_are_never_deleted() {
    scenario_foreign_object_kept().await;
}

/// Switching to an external Redis deletes the managed StatefulSet and Service (the Secret and
/// PVC stay), and writes no Secret.
async fn scenario_external_redis() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);
    run(&cc, &ctx).await.expect("reconciled");
    fake.clear_requests();

    let mut external = stored(&fake).with_external_redis(
        "redis://redis.example:6379/0",
        Some(("redis-auth", "password")),
        false,
    );
    external.metadata.generation = Some(2);
    run(&external, &ctx).await.expect("reconciled");
    let requests = fake.requests();
    let lines = lines(&requests);
    for expected in [
        format!("DELETE {APPS}/statefulsets/likes-redis"),
        format!("DELETE {CORE}/services/likes-redis"),
    ] {
        assert!(lines.contains(&expected), "{expected} in {lines:?}");
    }
    assert!(!lines.iter().any(|l| l.contains("/secrets")), "{lines:?}");
    assert!(
        fake.get(&format!("{CORE}/secrets/likes-redis-auth-5f0c2a4e"))
            .is_some(),
        "the Secret is kept"
    );
    assert_eq!(status(&fake).redis.expect("redis").state, "External");
    requests
}

#[tokio::test]
async fn switching_to_external_redis_deletes_the_managed_redis_but_keeps_its_secret() {
    scenario_external_redis().await;
}

/// Managed Redis from 1 to 3 replicas and back. Going up, the API server refuses to turn the
/// ClusterIP Service `likes-redis` headless (injected here with the real API server's answer),
/// so the operator deletes it (owned, uid precondition) and applies it again, headless, before
/// the StatefulSet; the sentinels' Service and StatefulSet and the Redis and sentinel PDBs
/// follow, and the status reports the sentinels. Back to 1, the sentinels are deleted.
async fn scenario_redis_replicas() -> Vec<Recorded> {
    // The checks are plain functions: an async fn's frame holds every temporary of its body,
    // and with these inline the RBAC test (which awaits every scenario) overflowed its stack.
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);
    run(&cc, &ctx).await.expect("reconciled");
    check_single_redis_service(&fake);
    fake.clear_requests();

    let replicated = with_redis_replicas(&fake, 3, 2);
    refuse_headless_once(&fake);
    run(&replicated, &ctx).await.expect("reconciled");
    let requests_up = fake.requests();
    check_one_to_three(&fake, &requests_up);
    fake.clear_requests();

    let single = with_redis_replicas(&fake, 1, 3);
    run(&single, &ctx).await.expect("reconciled");
    let requests_down = fake.requests();
    check_three_to_one(&fake, &requests_down);
    fake.clear_requests();

    // The next reconcile of the single Redis asks nothing about sentinels.
    run(&stored(&fake), &ctx).await.expect("reconciled");
    check_no_sentinel_request(&fake.requests());

    let mut requests = requests_up;
    requests.extend(requests_down);
    requests
}

fn check_single_redis_service(fake: &FakeApi) {
    let single = fake
        .get(&format!("{CORE}/services/likes-redis"))
        .expect("the Redis Service");
    assert!(single["spec"].get("clusterIP").is_none(), "{single}");
}

fn with_redis_replicas(fake: &FakeApi, replicas: i32, generation: i64) -> CounterCluster {
    let mut cc = stored(fake);
    cc.spec.redis.managed.replicas = replicas;
    cc.metadata.generation = Some(generation);
    cc
}

/// What a real API server answers an apply that makes a ClusterIP Service headless.
fn refuse_headless_once(fake: &FakeApi) {
    fake.fail(Failure {
        method: Method::PATCH,
        path_suffix: "/services/likes-redis".to_owned(),
        code: 422,
        message: r#"Service "likes-redis" is invalid: spec.clusterIPs[0]: Invalid value: ["None"]: may not change once set"#.to_owned(),
        times: 1,
    });
}

fn check_one_to_three(fake: &FakeApi, requests: &[Recorded]) {
    let up: Vec<String> = lines(requests)
        .into_iter()
        .filter(|l| l.contains("likes-redis") && !l.contains("/secrets") && !l.contains("/events"))
        .collect();
    assert_eq!(
        up,
        [
            format!("PATCH {CORE}/services/likes-redis"),
            format!("GET {CORE}/services/likes-redis"),
            format!("DELETE {CORE}/services/likes-redis"),
            format!("PATCH {CORE}/services/likes-redis"),
            format!("PATCH {APPS}/statefulsets/likes-redis"),
            format!("PATCH {CORE}/services/likes-redis-sentinel"),
            format!("PATCH {APPS}/statefulsets/likes-redis-sentinel"),
            format!("PATCH {PDB}/likes-redis"),
            format!("PATCH {PDB}/likes-redis-sentinel"),
            // NetworkPolicies are off: both Redis policies are looked for, to be deleted.
            format!("GET {NETPOL}/likes-redis"),
            format!("GET {NETPOL}/likes-redis-sentinel"),
        ]
    );
    let delete = requests
        .iter()
        .find(|r| r.method == Method::DELETE)
        .expect("the delete");
    assert!(
        delete.body["preconditions"]["uid"].is_string(),
        "{}",
        delete.body
    );
    let service = fake
        .get(&format!("{CORE}/services/likes-redis"))
        .expect("the Redis Service");
    assert_eq!(service["spec"]["clusterIP"], "None");
    let statefulset = fake
        .get(&format!("{APPS}/statefulsets/likes-redis"))
        .expect("the Redis StatefulSet");
    assert_eq!(statefulset["spec"]["replicas"], 3);
    let redis = status(fake).redis.expect("redis");
    assert_eq!((redis.replicas, redis.sentinels), (Some(3), Some(3)));
}

fn check_three_to_one(fake: &FakeApi, requests: &[Recorded]) {
    let down = lines(requests);
    for expected in [
        format!("DELETE {APPS}/statefulsets/likes-redis-sentinel"),
        format!("DELETE {CORE}/services/likes-redis-sentinel"),
    ] {
        assert!(down.contains(&expected), "{expected} in {down:?}");
    }
    assert!(
        fake.get(&format!("{APPS}/statefulsets/likes-redis-sentinel"))
            .is_none()
    );
    let redis = status(fake).redis.expect("redis");
    assert_eq!((redis.replicas, redis.sentinels), (None, None));
}

fn check_no_sentinel_request(requests: &[Recorded]) {
    let again = lines(requests);
    assert!(!again.iter().any(|l| l.contains("sentinel")), "{again:?}");
}

#[tokio::test]
async fn redis_replicas_one_to_three_replaces_the_service_and_back_deletes_the_sentinels() {
    scenario_redis_replicas().await;
}

/// NetworkPolicies, a ServiceMonitor (its API served) and the redis_exporter sidecar are
/// applied when enabled, and go away when disabled.
async fn scenario_optional_features_on() -> Vec<Recorded> {
    let mut cc = cluster().with_redis_exporter();
    cc.metadata.generation = Some(1);
    cc.spec.network_policy.enabled = true;
    cc.spec.observability.metrics.service_monitor.enabled = true;
    let (fake, ctx) = setup(&cc);
    fake.serve_group("monitoring.coreos.com/v1", &["servicemonitors"]);
    run(&cc, &ctx).await.expect("reconciled");
    let requests = fake.requests();
    let lines = lines(&requests);
    for expected in [
        format!("PATCH {NETPOL}/likes-counter"),
        format!("PATCH {NETPOL}/likes-redis"),
        format!("PATCH {MONITORS}/likes"),
    ] {
        assert!(lines.contains(&expected), "{expected} in {lines:?}");
    }
    let monitor = requests
        .iter()
        .find(|r| r.path == format!("{MONITORS}/likes"))
        .expect("the ServiceMonitor");
    assert_eq!(monitor.body["kind"], "ServiceMonitor");
    assert_eq!(
        each(&monitor.body["spec"]["endpoints"], "port"),
        ["http", "metrics"],
        "the exporter's port is scraped too"
    );
    assert_eq!(
        redis_applies(&requests),
        (vec!["redis", "redis-exporter"], vec!["redis", "metrics"])
    );
    let redis_policy = requests
        .iter()
        .find(|r| r.path == format!("{NETPOL}/likes-redis"))
        .expect("the Redis NetworkPolicy");
    assert_eq!(
        redis_policy.body["spec"]["ingress"][1]["ports"][0]["port"],
        9121
    );

    // Turned off again: both policies and the monitor are deleted, and the Redis pod and
    // Service are applied without the exporter.
    fake.clear_requests();
    let mut off = stored(&fake);
    off.spec.network_policy.enabled = false;
    off.spec.observability.metrics.service_monitor.enabled = false;
    off.spec.redis.managed.exporter.enabled = false;
    run(&off, &ctx).await.expect("reconciled");
    let more = fake.requests();
    let more_lines: Vec<String> = more.iter().map(Recorded::line).collect();
    for expected in [
        format!("DELETE {NETPOL}/likes-counter"),
        format!("DELETE {NETPOL}/likes-redis"),
        format!("DELETE {MONITORS}/likes"),
    ] {
        assert!(
            more_lines.contains(&expected),
            "{expected} in {more_lines:?}"
        );
    }
    assert_eq!(redis_applies(&more), (vec!["redis"], vec!["redis"]));
    let mut all = requests;
    all.extend(more);
    all
}

#[tokio::test]
async fn network_policies_and_service_monitor_follow_their_switches() {
    scenario_optional_features_on().await;
}

const CA_SECRET: &str = "/api/v1/namespaces/highpress-system/secrets/highpress-operator-ca";

/// The PEM certificates in a Secret's base64 `key`, counted.
fn certificates_in(secret: &serde_json::Value, key: &str) -> usize {
    let data = secret["data"][key].as_str().unwrap_or_default();
    let pem = String::from_utf8(decode_base64(data)).expect("PEM text");
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    } as u32;
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | value(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len() * 6 / 8 + 1]);
    }
    out
}

/// `cc` with the annotation that asks for new certificates, value `1`.
fn with_reissue_annotation(mut cc: CounterCluster) -> CounterCluster {
    cc.metadata.annotations = Some(
        [(
            "highpress.dev/reissue-certificates".to_owned(),
            "1".to_owned(),
        )]
        .into(),
    );
    cc
}

/// `security.tls`: the first reconcile makes the operator's CA and issues both certificates;
/// the next issues nothing; the reissue annotation and a CA rotation each issue them again.
async fn scenario_tls_certificates() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    cc.spec.security.tls.api = true;
    cc.spec.security.tls.grpc = true;
    let (fake, ctx) = setup(&cc);
    let tls_applies = |requests: &[Recorded]| -> Vec<String> {
        requests
            .iter()
            .filter(|r| r.is_apply() && r.path.contains("-tls"))
            .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_owned())
            .collect()
    };

    run(&cc, &ctx).await.expect("reconciled");
    let requests = fake.requests();
    let order = lines(&requests);
    let position = |line: &str| order.iter().position(|l| l == line);
    let made = position("POST /api/v1/namespaces/highpress-system/secrets");
    let gateway_tls = position(&format!("PATCH {CORE}/secrets/likes-gateway-tls"));
    let counter_tls = position(&format!("PATCH {CORE}/secrets/likes-counter-tls"));
    let counter = position(&format!("PATCH {APPS}/deployments/likes-counter"));
    assert!(
        made.is_some() && made < gateway_tls && gateway_tls < counter_tls && counter_tls < counter,
        "CA, then both Secrets, before the pods that mount them: {order:?}"
    );
    let ca = fake.get(CA_SECRET).expect("the CA Secret");
    assert_eq!(certificates_in(&ca, "current.crt"), 1);
    let gateway_secret = requests
        .iter()
        .find(|r| r.path.ends_with("/secrets/likes-gateway-tls"))
        .expect("the gateway's Secret");
    assert_eq!(gateway_secret.body["type"], "kubernetes.io/tls");
    assert_eq!(certificates_in(&gateway_secret.body, "tls.crt"), 1);
    assert_eq!(
        certificates_in(&gateway_secret.body, "ca.crt"),
        2,
        "current and next CA"
    );
    let first = status(&fake)
        .certificates
        .expect("the certificates' record");
    assert!(first.renew_at < first.not_after, "{first:?}");

    // Nothing is due: nothing is issued.
    fake.clear_requests();
    let steady = stored(&fake);
    run(&steady, &ctx).await.expect("reconciled");
    let mut all = requests.clone();
    let more = fake.requests();
    assert!(tls_applies(&more).is_empty(), "{:?}", lines(&more));
    all.extend(more);

    // The reissue annotation issues both again.
    fake.clear_requests();
    let annotated = with_reissue_annotation(stored(&fake));
    run(&annotated, &ctx).await.expect("reconciled");
    let more = fake.requests();
    assert_eq!(
        tls_applies(&more),
        ["likes-gateway-tls", "likes-counter-tls"]
    );
    assert_eq!(
        status(&fake).certificates.and_then(|c| c.reissue_token),
        Some("1".to_owned())
    );
    all.extend(more);

    // A CA made 2.5 years ago is rotated: the Secret is replaced, the certificates issued with
    // the new current CA, and the bundle trusts previous, current and next.
    let old = highpress_operator::certificates::CertificateAuthority::generate(
        time::OffsetDateTime::now_utc() - time::Duration::days(912),
    )
    .expect("a CA");
    fake.insert(
        CA_SECRET,
        serde_json::to_value(old.to_secret("highpress-system")).expect("JSON"),
    );
    fake.clear_requests();
    let annotated = with_reissue_annotation(stored(&fake));
    run(&annotated, &ctx).await.expect("reconciled");
    let more = fake.requests();
    assert!(
        lines(&more).contains(&format!("PUT {CA_SECRET}")),
        "{:?}",
        lines(&more)
    );
    assert_eq!(
        tls_applies(&more),
        ["likes-gateway-tls", "likes-counter-tls"]
    );
    let rotated = fake.get(CA_SECRET).expect("the CA Secret");
    assert_eq!(certificates_in(&rotated, "previous.crt"), 1);
    let counter_secret = more
        .iter()
        .find(|r| r.path.ends_with("/secrets/likes-counter-tls"))
        .expect("the counter's Secret");
    assert_eq!(certificates_in(&counter_secret.body, "ca.crt"), 3);
    let after = status(&fake).certificates.expect("the record");
    assert_ne!(after.ca_fingerprint, first.ca_fingerprint);
    all.extend(more);

    // TLS on the managed Redis too: its certificate joins the record, so all three are issued
    // at once; then nothing, while none is due.
    fake.clear_requests();
    let mut with_redis = stored(&fake);
    with_redis.spec.security.tls.redis = true;
    run(&with_redis, &ctx).await.expect("reconciled");
    let more = fake.requests();
    assert_eq!(
        tls_applies(&more),
        ["likes-gateway-tls", "likes-counter-tls", "likes-redis-tls"]
    );
    let redis_secret = more
        .iter()
        .find(|r| r.path.ends_with("/secrets/likes-redis-tls"))
        .expect("the Redis Secret");
    assert_eq!(certificates_in(&redis_secret.body, "tls.crt"), 1);
    assert_eq!(certificates_in(&redis_secret.body, "ca.crt"), 3);
    assert_eq!(
        status(&fake).tls_components,
        ["gateway", "counter", "redis"]
    );
    all.extend(more);
    fake.clear_requests();
    let mut steady = stored(&fake);
    steady.spec.security.tls.redis = true;
    run(&steady, &ctx).await.expect("reconciled");
    let more = fake.requests();
    assert!(tls_applies(&more).is_empty(), "{:?}", lines(&more));
    all.extend(more);
    all
}

#[tokio::test]
async fn tls_certificates_are_issued_once_and_again_when_due() {
    scenario_tls_certificates().await;
}

const CERTIFICATES: &str = "/apis/cert-manager.io/v1/namespaces/apps/certificates";

/// `security.tls.issuerRef`: without cert-manager the reconcile fails naming it; with it, one
/// `Certificate` per component asks the issuer for the Secrets the pods mount, and nothing is
/// issued by the operator's CA; without `issuerRef` again, both are deleted.
async fn scenario_cert_manager_certificates() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    cc.spec.security.tls.api = true;
    cc.spec.security.tls.grpc = true;
    cc.spec.security.tls.issuer_ref = Some(highpress_operator::crd::IssuerRef {
        name: "corp-ca".to_owned(),
        kind: highpress_operator::crd::IssuerKind::ClusterIssuer,
        group: "cert-manager.io".to_owned(),
    });
    let (fake, ctx) = setup(&cc);

    let error = run(&cc, &ctx).await.expect_err("no cert-manager");
    assert!(error.contains("cert-manager"), "{error}");
    let (degraded, reason, message) = condition(&status(&fake), "Degraded");
    assert_eq!(
        (degraded.as_str(), reason.as_str()),
        ("True", "ApplyFailed")
    );
    assert!(message.contains("cert-manager.io/v1"), "{message}");
    let mut all = fake.requests();

    fake.serve_group("cert-manager.io/v1", &["certificates"]);
    fake.clear_requests();
    run(&cc, &ctx).await.expect("reconciled");
    let requests = fake.requests();
    let order = lines(&requests);
    for name in ["likes-gateway-tls", "likes-counter-tls"] {
        assert!(
            order.contains(&format!("PATCH {CERTIFICATES}/{name}")),
            "{name} in {order:?}"
        );
    }
    assert!(
        !order
            .iter()
            .any(|l| l.contains("-tls") && l.contains("/secrets") || l.contains("highpress-system")),
        "the operator's CA is not used: {order:?}"
    );
    let gateway = requests
        .iter()
        .find(|r| r.path.ends_with("/certificates/likes-gateway-tls"))
        .expect("the gateway's Certificate");
    assert_eq!(gateway.body["spec"]["secretName"], "likes-gateway-tls");
    assert_eq!(
        gateway.body["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    assert!(each_str(&gateway.body["spec"]["usages"]).contains(&"client auth"));
    let counter = requests
        .iter()
        .find(|r| r.path.ends_with("/certificates/likes-counter-tls"))
        .expect("the counter's Certificate");
    assert!(!each_str(&counter.body["spec"]["usages"]).contains(&"client auth"));
    assert!(status(&fake).cert_manager_issuer.is_some());
    all.extend(requests);

    // TLS on the managed Redis: a third Certificate, a server's only; off again, it is deleted
    // and the other two stay.
    fake.clear_requests();
    let mut with_redis = stored(&fake);
    with_redis.spec.security.tls.redis = true;
    run(&with_redis, &ctx).await.expect("reconciled");
    let more = fake.requests();
    let redis = more
        .iter()
        .find(|r| r.is_apply() && r.path.ends_with("/certificates/likes-redis-tls"))
        .expect("the Redis Certificate");
    assert!(!each_str(&redis.body["spec"]["usages"]).contains(&"client auth"));
    assert!(each_str(&redis.body["spec"]["dnsNames"]).contains(&"*.likes-redis-sentinel.apps.svc"));
    all.extend(more);
    fake.clear_requests();
    let mut without_redis = stored(&fake);
    without_redis.spec.security.tls.redis = false;
    run(&without_redis, &ctx).await.expect("reconciled");
    let more = fake.requests();
    let order = lines(&more);
    assert!(
        order.contains(&format!("DELETE {CERTIFICATES}/likes-redis-tls")),
        "{order:?}"
    );
    assert!(
        !order
            .iter()
            .any(|l| l.starts_with("DELETE") && l.contains("likes-gateway-tls")),
        "{order:?}"
    );
    all.extend(more);

    // Back to the operator's CA: the Certificates go, and the operator issues the Secrets.
    fake.clear_requests();
    let mut own_ca = stored(&fake);
    own_ca.spec.security.tls.issuer_ref = None;
    run(&own_ca, &ctx).await.expect("reconciled");
    let more = fake.requests();
    let order = lines(&more);
    for name in ["likes-gateway-tls", "likes-counter-tls"] {
        assert!(
            order.contains(&format!("DELETE {CERTIFICATES}/{name}")),
            "{name} deleted: {order:?}"
        );
        assert!(
            order.contains(&format!("PATCH {CORE}/secrets/{name}")),
            "{name} issued: {order:?}"
        );
    }
    let after = status(&fake);
    assert!(after.cert_manager_issuer.is_none() && after.certificates.is_some());
    all.extend(more);
    all
}

#[tokio::test]
async fn cert_manager_certificates_follow_the_issuer_ref() {
    scenario_cert_manager_certificates().await;
}

/// The strings of a JSON array.
fn each_str(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect()
}

/// A Redis password rotation: raising `passwordGeneration` creates the new generation's Secret
/// and walks through the three steps, one per reconcile once the previous one has rolled out
/// (the fake's workloads are ready at once), and stays on a step while the pods are not.
async fn scenario_password_rotation() -> Vec<Recorded> {
    use highpress_operator::crd::RotationPhase;
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);
    fake.set_workloads_ready(true);
    run(&cc, &ctx).await.expect("reconciled");
    let redis_status = |fake: &FakeApi| status(fake).redis.expect("redis status");
    assert_eq!(redis_status(&fake).password_generation, Some(0));
    let mut all = fake.requests();

    let applied = |requests: &[Recorded], path: &str| -> serde_json::Value {
        let container = |name: &str| {
            requests
                .iter()
                .find(|r| r.is_apply() && r.path.ends_with(name))
                .map(|r| r.body["spec"]["template"]["spec"]["containers"][0].clone())
                .unwrap_or_else(|| panic!("{name} applied"))
        };
        container(path)
    };
    let env_secret = |container: &serde_json::Value, var: &str| -> Option<String> {
        container["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == var)?["valueFrom"]["secretKeyRef"]["name"]
            .as_str()
            .map(str::to_owned)
    };
    let (old, new) = ("likes-redis-auth-5f0c2a4e", "likes-redis-auth-5f0c2a4e-1");
    let mut current = stored(&fake);
    current.metadata.generation = Some(2);
    current.spec.redis.managed.password_generation = 1;
    for (phase, client, redis_other, user_args) in [
        (RotationPhase::AcceptBoth, old, Some(new), true),
        (RotationPhase::UseNew, new, Some(new), true),
        (RotationPhase::DropOld, new, None, false),
    ] {
        fake.clear_requests();
        run(&current, &ctx).await.expect("reconciled");
        let requests = fake.requests();
        let redis = applied(&requests, "/statefulsets/likes-redis");
        let counter = applied(&requests, "/deployments/likes-counter");
        assert_eq!(
            env_secret(&counter, "HIGHPRESS_REDIS__PASSWORD").as_deref(),
            Some(client),
            "{phase:?}: the counters' password"
        );
        assert_eq!(
            env_secret(&redis, "REDIS_OTHER_PASSWORD").as_deref(),
            redis_other,
            "{phase:?}: the second password a single Redis accepts"
        );
        let args = redis["args"].to_string();
        assert_eq!(args.contains("\"--user\""), user_args, "{phase:?}: {args}");
        assert_eq!(
            args.contains("--requirepass"),
            !user_args,
            "{phase:?}: {args}"
        );
        let recorded = redis_status(&fake);
        let expected = match phase {
            RotationPhase::AcceptBoth => Some(RotationPhase::UseNew),
            RotationPhase::UseNew => Some(RotationPhase::DropOld),
            RotationPhase::DropOld => None,
        };
        assert_eq!(
            recorded.password_rotation.map(|r| r.phase),
            expected,
            "{phase:?} rolled out, so the next step is recorded"
        );
        if phase == RotationPhase::AcceptBoth {
            assert!(
                requests
                    .iter()
                    .any(|r| r.line() == format!("POST {CORE}/secrets")
                        && r.body["metadata"]["name"] == new),
                "the new generation's Secret is created"
            );
            // Not rolled out: the step stays.
            let mut again = stored(&fake);
            again
                .status
                .as_mut()
                .unwrap()
                .redis
                .as_mut()
                .unwrap()
                .password_rotation = Some(highpress_operator::crd::PasswordRotation {
                from: 0,
                to: 1,
                phase: RotationPhase::AcceptBoth,
            });
            fake.set_workloads_ready(false);
            run(&again, &ctx).await.expect("reconciled");
            assert_eq!(
                redis_status(&fake).password_rotation.map(|r| r.phase),
                Some(RotationPhase::AcceptBoth)
            );
            fake.set_workloads_ready(true);
            run(&again, &ctx).await.expect("reconciled");
        }
        all.extend(fake.requests());
        current = stored(&fake);
    }
    assert_eq!(redis_status(&fake).password_generation, Some(1));
    all
}

#[tokio::test]
async fn a_password_rotation_steps_through_once_each_step_rolled_out() {
    scenario_password_rotation().await;
}

/// The string `key` of every item of the JSON array `list`.
fn each<'a>(list: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| {
            item[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} in {item}"))
        })
        .collect()
}

/// The container names of the applied Redis StatefulSet and the port names of the applied
/// Redis Service.
fn redis_applies(requests: &[Recorded]) -> (Vec<&str>, Vec<&str>) {
    let applied = |path: String| {
        &requests
            .iter()
            .find(|r| r.is_apply() && r.path == path)
            .unwrap_or_else(|| panic!("an apply of {path}"))
            .body
    };
    let statefulset = applied(format!("{APPS}/statefulsets/likes-redis"));
    let service = applied(format!("{CORE}/services/likes-redis"));
    (
        each(
            &statefulset["spec"]["template"]["spec"]["containers"],
            "name",
        ),
        each(&service["spec"]["ports"], "name"),
    )
}

/// A ServiceMonitor without the prometheus-operator CRDs is skipped with a status message.
async fn scenario_service_monitor_without_crd() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    cc.spec.observability.metrics.service_monitor.enabled = true;
    let (fake, ctx) = setup(&cc);
    run(&cc, &ctx).await.expect("a missing CRD is not an error");
    let requests = fake.requests();
    assert!(
        !requests.iter().any(|r| r.path.starts_with(MONITORS)),
        "{:?}",
        lines(&requests)
    );
    let (degraded, _, message) = condition(&status(&fake), "Degraded");
    assert_eq!(degraded, "False");
    assert!(message.contains("ServiceMonitor skipped"), "{message}");
    assert_eq!(event_reasons(&requests), ["Created", "FeatureSkipped"]);
    requests
}

#[tokio::test]
async fn a_service_monitor_without_its_crd_is_skipped_with_a_message() {
    scenario_service_monitor_without_crd().await;
}

/// A spec the CRD cannot reject: Degraded/InvalidSpec, an Event, no child written, no requeue.
async fn scenario_invalid_spec() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    cc.metadata.name = Some("a".repeat(60));
    let path = CC_PATH.replace("/likes", &format!("/{}", "a".repeat(60)));
    let (fake, ctx) = setup(&cc);
    fake.insert(&path, serde_json::to_value(&cc).expect("JSON"));

    let action = run(&cc, &ctx)
        .await
        .expect("an invalid spec is not an error");
    assert_eq!(
        action,
        Action::await_change(),
        "no requeue until the spec changes"
    );
    let requests = fake.requests();
    assert_eq!(
        lines(&requests),
        [format!("POST {EVENTS}"), format!("PATCH {path}/status")],
        "nothing but the Event and the status"
    );
    assert_eq!(event_reasons(&requests), ["InvalidSpec"]);
    assert_eq!(requests[0].body["type"], "Warning");
    let stored: CounterCluster =
        serde_json::from_value(fake.get(&path).expect("stored")).expect("a CounterCluster");
    let status = stored.status.expect("a status");
    let (degraded, reason, message) = condition(&status, "Degraded");
    assert_eq!(
        (degraded.as_str(), reason.as_str()),
        ("True", "InvalidSpec")
    );
    assert!(message.contains("metadata.name"), "{message}");
    assert_eq!(ctx.metrics.reconcile_count(ReconcileResult::InvalidSpec), 1);

    // `render` builds nothing from the same spec, and says why in the same words.
    let file = serde_norway::to_string(&cc).expect("YAML");
    let error = render(&file, &BuildContext::default())
        .expect_err("render rejects what reconcile rejects")
        .to_string();
    assert_eq!(
        error,
        format!("document 1: CounterCluster {}: {message}", "a".repeat(60))
    );
    requests
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_and_writes_no_child() {
    scenario_invalid_spec().await;
}

/// An API error stops the apply at the failing object, reports ApplyFailed, and requeues with
/// a growing backoff; the next success resets it.
async fn scenario_api_error_requeues() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);
    fake.fail(Failure {
        method: Method::PATCH,
        path_suffix: "/deployments/likes-counter".to_owned(),
        code: 500,
        message: "etcdserver: request timed out".to_owned(),
        times: 2,
    });

    let error = run(&cc, &ctx).await.expect_err("the apply failed");
    assert!(error.contains("apply Deployment likes-counter"), "{error}");
    let requests = fake.requests();
    let lines = lines(&requests);
    assert!(
        !lines.iter().any(|l| l.contains("likes-gateway")),
        "nothing after the failing object is applied: {lines:?}"
    );
    assert_eq!(event_reasons(&requests), ["ApplyFailed"]);
    let (degraded, reason, message) = condition(&status(&fake), "Degraded");
    assert_eq!(
        (degraded.as_str(), reason.as_str()),
        ("True", "ApplyFailed")
    );
    assert!(message.contains("request timed out"), "{message}");

    let guard = Arc::new(DeserializeGuard(Ok(cc.clone())));
    let error_value = {
        // error_policy needs the error value itself; produce a second failure.
        reconcile(guard.clone(), ctx.clone())
            .await
            .expect_err("fails again")
    };
    assert_eq!(
        error_policy(guard.clone(), &error_value, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        error_policy(guard.clone(), &error_value, ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(ctx.metrics.reconcile_count(ReconcileResult::Error), 2);
    let repeat = fake
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH && r.path.starts_with(&format!("{EVENTS}/")))
        .expect("the repeated ApplyFailed Event is patched as a series, not created again");
    assert_eq!(repeat.body["series"]["count"], 2);

    let recovered = stored(&fake);
    run(&recovered, &ctx)
        .await
        .expect("recovers once the API server does");
    assert_eq!(condition(&status(&fake), "Degraded").0, "False");
    assert_eq!(
        error_policy(guard, &error_value, ctx),
        Action::requeue(Duration::from_secs(1)),
        "a success resets the backoff"
    );
    fake.requests()
}

#[tokio::test]
async fn api_errors_requeue_with_backoff() {
    scenario_api_error_requeues().await;
}

/// A field someone else set is not taken by force; a conflict on `.spec.replicas` (left by
/// the HPA's controller) is.
async fn scenario_apply_conflicts() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    let (fake, ctx) = setup(&cc);
    fake.fail(Failure {
        method: Method::PATCH,
        path_suffix: "/deployments/likes-gateway".to_owned(),
        code: 409,
        message: r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.template.spec.containers[name="gateway"].image"#.to_owned(),
        times: 1,
    });
    let error = run(&cc, &ctx)
        .await
        .expect_err("a person's edit is not overwritten");
    assert!(error.contains("kubectl-edit"), "{error}");
    let requests = fake.requests();
    assert!(
        !requests.iter().any(Recorded::is_forced_child),
        "{:?}",
        lines(&requests)
    );

    fake.clear_requests();
    fake.fail(Failure {
        method: Method::PATCH,
        path_suffix: "/deployments/likes-gateway".to_owned(),
        code: 409,
        message: r#"Apply failed with 1 conflict: conflict with "kube-controller-manager" using apps/v1: .spec.replicas"#.to_owned(),
        times: 1,
    });
    run(&stored(&fake), &ctx)
        .await
        .expect("replicas are reclaimed");
    let after = fake.requests();
    let retried: Vec<&Recorded> = after
        .iter()
        .filter(|r| r.path == format!("{APPS}/deployments/likes-gateway"))
        .collect();
    assert_eq!(retried.len(), 2, "one conflict, one forced retry");
    assert!(!retried[0].is_forced() && retried[1].is_forced());
    let mut all = requests;
    all.extend(after);
    all
}

#[tokio::test]
async fn conflicts_with_people_are_reported_and_replicas_are_reclaimed() {
    scenario_apply_conflicts().await;
}

/// Paused: only the status says so; no child is written.
async fn scenario_paused() -> Vec<Recorded> {
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    cc.spec.paused = true;
    let (fake, ctx) = setup(&cc);
    let action = run(&cc, &ctx).await.expect("paused is not an error");
    assert_eq!(action, Action::await_change());
    let requests = fake.requests();
    assert_eq!(lines(&requests), [format!("PATCH {CC_PATH}/status")]);
    let (progressing, reason, _) = condition(&status(&fake), "Progressing");
    assert_eq!((progressing.as_str(), reason.as_str()), ("False", "Paused"));
    assert_eq!(ctx.metrics.reconcile_count(ReconcileResult::Paused), 1);
    requests
}

#[tokio::test]
async fn a_paused_cluster_only_gets_its_status() {
    scenario_paused().await;
}

/// An object the operator cannot read as a CounterCluster gets a Warning Event, nothing else.
async fn scenario_unreadable_object() -> Vec<Recorded> {
    let cc = cluster();
    let (fake, ctx) = setup(&cc);
    let value = json!({
        "apiVersion": "highpress.dev/v1alpha1", "kind": "CounterCluster",
        "metadata": {"name": "broken", "namespace": "apps", "uid": "u-1"},
        "spec": {"gateway": {"replicas": "many"}},
    });
    let guard: DeserializeGuard<CounterCluster> = serde_json::from_value(value).expect("a guard");
    assert!(guard.0.is_err());
    let action = reconcile(Arc::new(guard), ctx.clone())
        .await
        .expect("not an error");
    assert_eq!(action, Action::await_change());
    let requests = fake.requests();
    assert_eq!(lines(&requests), [format!("POST {EVENTS}")]);
    assert_eq!(requests[0].body["regarding"]["name"], "broken");
    requests
}

#[tokio::test]
async fn an_unreadable_object_gets_an_event_and_no_crash() {
    scenario_unreadable_object().await;
}

const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/highpress-system/leases/highpress-operator";

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

fn settings(http_addr: SocketAddr, identity: &str) -> Settings {
    Settings {
        http_addr,
        watch_namespaces: vec!["apps".to_owned()],
        leader_election: true,
        lease_name: "highpress-operator".to_owned(),
        lease_namespace: Some("highpress-system".to_owned()),
        identity: identity.to_owned(),
    }
}

/// `GET path` on the operator's HTTP server: (status code, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (code, body)
}

/// `promtool check metrics` (installed by scripts/install-test-deps.sh; a missing one fails)
/// reports nothing on the operator's exposition.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/install-test-deps.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics on the operator's /metrics:\n{report}"
    );
}

/// Polls `check` every 50 ms for up to 60 s (a bound for a slow machine, not a measurement).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `(apiGroup, resource)` of every kind of child the controller watches: all it owns but the
/// Secret, which it may not read.
const WATCHED: [(&str, &str); 8] = [
    ("", "configmaps"),
    ("", "services"),
    ("apps", "statefulsets"),
    ("apps", "deployments"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("policy", "poddisruptionbudgets"),
    ("networking.k8s.io", "networkpolicies"),
    ("monitoring.coreos.com", "servicemonitors"),
];

/// Whether `requests` hold a `verb` (`list` or `watch`) of `(group, resource)` in namespace
/// `apps`, selected by the operator's `managed-by` label.
fn requested(requests: &[Recorded], (group, resource): (&str, &str), verb: &str) -> bool {
    requests.iter().any(|r| {
        r.rbac == Some((group.to_owned(), resource.to_owned(), verb.to_owned()))
            && r.path.contains("/namespaces/apps/")
            && r.query
                .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dhighpress-operator")
    })
}

/// The whole process: it takes the Lease, watches the namespace's CounterClusters and every
/// kind of child, reconciles the cluster to Ready, serves health and metrics, and on shutdown
/// releases the Lease.
async fn scenario_process_leads_and_reconciles() -> Vec<Recorded> {
    let fake = FakeApi::new();
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    fake.insert(CC_PATH, serde_json::to_value(&cc).expect("JSON"));
    fake.set_workloads_ready(true);
    fake.serve_group("monitoring.coreos.com/v1", &["servicemonitors"]);
    let addr = free_addr();
    let shutdown = CancellationToken::new();
    let process = tokio::spawn(serve(
        fake.client("highpress-system"),
        settings(addr, "operator-0"),
        shutdown.clone(),
    ));

    eventually("the CounterCluster to become Ready", || {
        stored(&fake).status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
    .await;
    assert_eq!(
        fake.get(LEASE).expect("the Lease")["spec"]["holderIdentity"],
        "operator-0"
    );
    assert_eq!(http_get(addr, "/livez").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    let (code, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("highpress_operator_leader 1"), "{metrics}");
    assert!(
        metrics.contains(r#"highpress_operator_reconcile_total{result="success"}"#),
        "{metrics}"
    );
    promtool_check_metrics(&metrics);
    eventually("a watch of every kind of child", || {
        let requests = fake.requests();
        WATCHED
            .iter()
            .all(|&kind| requested(&requests, kind, "list") && requested(&requests, kind, "watch"))
    })
    .await;

    shutdown.cancel();
    process
        .await
        .expect("the process task")
        .expect("a clean shutdown");
    let lease = fake.get(LEASE).expect("the Lease");
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the Lease is released on shutdown: {lease}"
    );
    let requests = fake.requests();
    let lines = lines(&requests);
    for expected in [
        "GET /apis/highpress.dev/v1alpha1/namespaces/apps/counterclusters".to_owned(),
        format!("GET {APPS}/deployments"),
        format!("GET {APPS}/statefulsets"),
        "POST /apis/coordination.k8s.io/v1/namespaces/highpress-system/leases".to_owned(),
        format!("PUT {LEASE}"),
    ] {
        assert!(lines.contains(&expected), "{expected} in {lines:?}");
    }
    requests
}

#[tokio::test]
async fn the_process_takes_the_lease_reconciles_and_releases_it_on_shutdown() {
    scenario_process_leads_and_reconciles().await;
}

/// Without the prometheus-operator CRDs (most clusters), the ServiceMonitor watch fails and
/// keeps retrying on its own, and the rest of the process works as if it were not there.
async fn scenario_process_without_service_monitor_crd() -> Vec<Recorded> {
    let fake = FakeApi::new();
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    fake.insert(CC_PATH, serde_json::to_value(&cc).expect("JSON"));
    fake.set_workloads_ready(true);
    let addr = free_addr();
    let shutdown = CancellationToken::new();
    let process = tokio::spawn(serve(
        fake.client("highpress-system"),
        settings(addr, "operator-0"),
        shutdown.clone(),
    ));
    let monitors = ("monitoring.coreos.com", "servicemonitors");
    eventually(
        "Ready, every other watch, and a retried ServiceMonitor list",
        || {
            let ready = stored(&fake).status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            let requests = fake.requests();
            let others_watched = WATCHED
                .iter()
                .filter(|&&kind| kind != monitors)
                .all(|&kind| requested(&requests, kind, "watch"));
            let monitor_lists = requests
                .iter()
                .filter(|r| r.method == Method::GET && r.path == MONITORS)
                .count();
            ready && others_watched && monitor_lists >= 2
        },
    )
    .await;
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    shutdown.cancel();
    process
        .await
        .expect("the process task")
        .expect("a clean shutdown");
    let requests = fake.requests();
    assert!(
        !requested(&requests, monitors, "watch"),
        "no watch without a successful list"
    );
    requests
}

#[tokio::test]
async fn without_the_service_monitor_crd_the_process_watches_the_rest_and_retries() {
    scenario_process_without_service_monitor_crd().await;
}

/// A standby waits while another replica holds a valid Lease: ready, but reconciling nothing.
async fn scenario_standby_waits() -> Vec<Recorded> {
    let fake = FakeApi::new();
    let mut cc = cluster();
    cc.metadata.generation = Some(1);
    fake.insert(CC_PATH, serde_json::to_value(&cc).expect("JSON"));
    fake.insert(
        LEASE,
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "highpress-operator", "namespace": "highpress-system"},
            "spec": {"holderIdentity": "operator-1", "leaseDurationSeconds": 3600,
                     "renewTime": "2100-01-01T00:00:00.000000Z"},
        }),
    );
    let addr = free_addr();
    let shutdown = CancellationToken::new();
    let process = tokio::spawn(serve(
        fake.client("highpress-system"),
        settings(addr, "operator-0"),
        shutdown.clone(),
    ));
    eventually("a second look at the Lease", || {
        fake.requests()
            .iter()
            .filter(|r| r.line() == format!("GET {LEASE}"))
            .count()
            >= 2
    })
    .await;
    assert_eq!(http_get(addr, "/readyz").await.0, 200, "a standby is ready");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(metrics.contains("highpress_operator_leader 0"), "{metrics}");
    shutdown.cancel();
    process
        .await
        .expect("the process task")
        .expect("a clean shutdown");
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.path == LEASE || r.path == "/version"),
        "a standby only reads the Lease: {:?}",
        lines(&requests)
    );
    assert_eq!(
        fake.get(LEASE).expect("the Lease")["spec"]["holderIdentity"],
        "operator-1",
        "the standby never touched the holder's Lease"
    );
    requests
}

#[tokio::test]
async fn a_standby_waits_for_the_lease() {
    scenario_standby_waits().await;
}

/// Every `(apiGroup, resource, verb)` the scenarios used. A server-side apply that may create
/// its object also needs `create`: the API server authorizes both for an apply that creates.
pub async fn used_permissions() -> BTreeSet<(String, String, String)> {
    // Each scenario's future is built in its own closure and moved to the heap: built here,
    // every one of them would sit in this function's frame at once (a debug build does not
    // overlap them), which came close to a test thread's 2 MiB stack.
    type Scenario = fn() -> std::pin::Pin<Box<dyn Future<Output = Vec<Recorded>>>>;
    let scenarios: [Scenario; 20] = [
        || Box::pin(scenario_new_cluster()),
        || Box::pin(scenario_password_rotation()),
        || Box::pin(scenario_tls_certificates()),
        || Box::pin(scenario_cert_manager_certificates()),
        || Box::pin(scenario_ready_then_steady()),
        || Box::pin(scenario_spec_change_is_minimal()),
        || Box::pin(scenario_autoscaling_toggle()),
        || Box::pin(scenario_foreign_object_kept()),
        || Box::pin(scenario_external_redis()),
        || Box::pin(scenario_redis_replicas()),
        || Box::pin(scenario_optional_features_on()),
        || Box::pin(scenario_service_monitor_without_crd()),
        || Box::pin(scenario_invalid_spec()),
        || Box::pin(scenario_api_error_requeues()),
        || Box::pin(scenario_apply_conflicts()),
        || Box::pin(scenario_paused()),
        || Box::pin(scenario_unreadable_object()),
        || Box::pin(scenario_process_leads_and_reconciles()),
        || Box::pin(scenario_process_without_service_monitor_crd()),
        || Box::pin(scenario_standby_waits()),
    ];
    let mut requests = Vec::new();
    for scenario in scenarios {
        requests.extend(scenario().await);
    }
    let mut used = BTreeSet::new();
    for request in &requests {
        let Some((group, resource, verb)) = request.rbac.clone() else {
            continue;
        };
        if request.is_apply() && !resource.contains('/') {
            used.insert((group.clone(), resource.clone(), "create".to_owned()));
        }
        used.insert((group, resource, verb));
    }
    used
}

/// `(apiGroup, resource, verb)` granted by the ClusterRole and Role of the plain-YAML install
/// (`deploy/operator/install.yaml`, generated from the Helm chart by `make manifests`, and kept
/// equal to it by the chart checks).
fn granted_permissions() -> BTreeSet<(String, String, String)> {
    let path = support::repo_root().join("deploy/operator/install.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut granted = BTreeSet::new();
    let mut roles = 0;
    for document in serde_norway::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(document).expect("YAML");
        if !matches!(value["kind"].as_str(), Some("ClusterRole" | "Role")) {
            continue;
        }
        roles += 1;
        for rule in value["rules"].as_array().expect("rules") {
            let strings = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .unwrap_or_else(|| panic!("{key} in {rule}"))
                    .iter()
                    .map(|v| v.as_str().expect("a string").to_owned())
                    .collect()
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        granted.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    assert_eq!(
        roles, 3,
        "one ClusterRole, the leader-election Role and the CA Role"
    );
    granted
}

#[tokio::test]
async fn rbac_grants_exactly_what_the_operator_uses() {
    let used = used_permissions().await;
    let granted = granted_permissions();
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "RBAC drift.\nused but not granted: {missing:#?}\ngranted but never used: {unused:#?}"
    );
}
