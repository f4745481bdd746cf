//! The operator, its CRD and the chart against a real Kubernetes control plane: etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and kwok's fake kubelets, started by
//! `scripts/control-plane.sh` (see `support::control_plane`). The operator runs as a host
//! process whose kubeconfig holds a token of the chart's own ServiceAccount, so the real RBAC is
//! what it gets; `kubectl` and `helm` are the real tools, run as the README says.
//!
//! The scenarios share one control plane and run in order, each building on the state the
//! previous ones left (libtest-mimic, one thread): the plain manifests, then the chart, the
//! examples becoming Ready without the Prometheus Operator's CRDs, the apiserver's own schema
//! and CEL rejections, spec changes, a resync after a restart, deleted children re-created at
//! once, a person's conflicting edit and the HPA, the pod wiring, leader election, the
//! Prometheus Operator's CRDs, deletion, and the chart's upgrade and uninstall. kwok runs no container: what runs is checked by the pod
//! wiring scenario, which starts the real binaries exactly as the API server describes them.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use highpress_operator::crd::CounterCluster;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolumeClaim, Pod, PodSpec, PodTemplateSpec, Secret, Service,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Client, Resource, ResourceExt};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::control_plane::{
    ControlPlane, OperatorProcess, free_port, http_get, http_request, log_tail, metric_sum, tool,
    tools_dir, wait_until,
};
use support::jaeger::{Jaeger, span_names};
use support::{cel_counterexamples, example_names, highpress_binary, repo_root};

const OPERATOR_NAMESPACE: &str = "highpress-system";
const OPERATOR_SERVICE_ACCOUNT: &str = "highpress-operator";
/// How long a CounterCluster may take to become Ready: pods are scheduled and marked Ready by
/// kwok within seconds; this bounds a hang, it measures nothing.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The examples of `deploy/examples/`: (namespace, name).
const EXAMPLES: [(&str, &str); 3] = [("games", "scores"), ("apps", "likes"), ("apps", "views")];

fn main() {
    let mut args = Arguments::from_args();
    // The scenarios build on each other's state.
    args.test_threads = Some(1);
    let scenarios: &[(&str, Scenario)] = &[
        (
            "plain_manifests_install_and_reconcile_as_the_readme_says",
            plain_manifests,
        ),
        ("helm_install_as_the_readme_says", helm_install),
        (
            "examples_become_ready_without_the_prometheus_operator_crds",
            examples_ready_without_prometheus,
        ),
        (
            "the_apiserver_rejects_each_schema_and_cel_violation_naming_the_field",
            apiserver_rejections,
        ),
        (
            "a_spec_change_touches_only_what_it_should_and_the_config_hash_rolls_pods",
            spec_change,
        ),
        (
            "a_restarted_operator_writes_nothing_to_an_unchanged_cluster",
            resync_writes_nothing,
        ),
        (
            "a_deleted_service_or_config_map_is_back_within_seconds",
            deleted_children_come_back_at_once,
        ),
        (
            "a_persons_conflicting_edit_fails_the_apply_and_the_hpa_owns_replicas",
            conflicts_and_hpa,
        ),
        (
            "the_pods_the_operator_wrote_run_and_become_ready",
            pod_wiring,
        ),
        (
            "secured_pods_use_the_tokens_and_certificates_the_operator_wired",
            secured_pod_wiring,
        ),
        (
            "managed_redis_goes_from_one_to_three_replicas_keeping_pod_0s_claim_and_back",
            redis_replicas_one_to_three_and_back,
        ),
        (
            "the_standby_takes_the_lease_when_the_leader_is_killed",
            leader_failover,
        ),
        (
            "with_the_prometheus_operator_crds_monitors_and_rules_are_applied",
            with_prometheus_crds,
        ),
        (
            "cert_manager_certificates_are_asked_for_once_its_crds_are_served",
            with_cert_manager_crds,
        ),
        (
            "deleting_a_countercluster_collects_every_child_but_the_pvc",
            deletion,
        ),
        (
            "helm_upgrade_and_uninstall_as_the_readme_says",
            helm_upgrade_and_uninstall,
        ),
    ];
    let trials = scenarios
        .iter()
        .map(|&(name, scenario)| {
            Trial::test(name, move || {
                let mut guard = SUITE.lock().unwrap_or_else(|e| e.into_inner());
                let suite = guard.get_or_insert_with(Suite::start);
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(suite)));
                result.map_err(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    Failed::from(format!(
                        "{message}\n--- operator log (last 40 lines) ---\n{}",
                        suite.operator_log_tail()
                    ))
                })
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stops the operators, then the control plane.
    drop(SUITE.lock().unwrap_or_else(|e| e.into_inner()).take());
    conclusion.exit();
}

/// One step of the suite, run on the shared state.
type Scenario = fn(&mut Suite);

static SUITE: Mutex<Option<Suite>> = Mutex::new(None);

/// What the scenarios share.
struct Suite {
    runtime: tokio::runtime::Runtime,
    /// The running operators, leader first (dropped, and so killed, before the cluster).
    operators: Vec<OperatorProcess>,
    /// A kubeconfig with a token of the installed operator's ServiceAccount.
    operator_kubeconfig: Option<PathBuf>,
    client: Client,
    cluster: ControlPlane,
}

impl Suite {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let cluster = ControlPlane::up();
        let client = runtime.block_on(cluster.admin_client());
        Self {
            runtime,
            operators: Vec::new(),
            operator_kubeconfig: None,
            client,
            cluster,
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn log(&self) -> PathBuf {
        self.cluster.dir().join("logs/operator.log")
    }

    fn operator_log_tail(&self) -> String {
        log_tail(&self.log(), 40)
    }

    /// Starts an operator with the installed ServiceAccount's token.
    fn start_operator(&mut self, identity: &str) {
        let kubeconfig = self
            .operator_kubeconfig
            .clone()
            .expect("an operator ServiceAccount kubeconfig");
        let log = self.log();
        let operator = OperatorProcess::start(&kubeconfig, identity, &log);
        self.operators.push(operator);
    }

    fn stop_operators(&mut self) {
        self.operators.clear();
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.block_on(self.api::<K>(namespace).get_opt(name))
            .unwrap_or_else(|e| panic!("reading {namespace}/{name}: {e}"))
    }

    fn counter_cluster(&self, namespace: &str, name: &str) -> CounterCluster {
        self.get::<CounterCluster>(namespace, name)
            .unwrap_or_else(|| panic!("CounterCluster {namespace}/{name} exists"))
    }

    /// Waits until `namespace/name` has `Ready=True` for its current generation.
    fn wait_ready(&self, namespace: &str, name: &str) -> CounterCluster {
        wait_until(
            READY_TIMEOUT,
            &format!("{namespace}/{name} Ready=True"),
            || {
                let cc = self.get::<CounterCluster>(namespace, name)?;
                let status = cc.status.as_ref()?;
                (status.observed_generation == cc.metadata.generation
                    && condition(&cc, "Ready").is_some_and(|c| c.status == "True"))
                .then_some(cc)
            },
        )
    }

    /// `kubectl delete cc`, returning once the CounterCluster itself is gone (its children are
    /// removed by the garbage collector afterwards: see [`Suite::wait_collected`]).
    fn delete_counter_cluster(&self, namespace: &str, name: &str) {
        self.cluster.kubectl_ok(&[
            "-n",
            namespace,
            "delete",
            "cc",
            name,
            "--wait=true",
            "--timeout=60s",
        ]);
    }

    /// Waits until the garbage collector has removed every object that the deleted `cc`
    /// controlled.
    fn wait_collected(&self, cc: &CounterCluster) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = self.children_versions(cc);
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the children of {} were not collected in 60 s: {left:?}",
                cc.name_any()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Merge-patches `namespace/name`'s spec with `spec`, as a person's `kubectl patch`.
    fn patch_spec(&self, namespace: &str, name: &str, spec: Value) -> CounterCluster {
        self.block_on(self.api::<CounterCluster>(namespace).patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        ))
        .unwrap_or_else(|e| panic!("patching {namespace}/{name}: {e}"))
    }

    /// Touches an annotation of the CounterCluster: a watch event, so a reconcile, with no
    /// spec change.
    fn nudge(&self, namespace: &str, name: &str) {
        self.block_on(self.api::<CounterCluster>(namespace).patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": {
                "test.highpress.dev/nudge": format!("{:?}", std::time::SystemTime::now()),
            }}})),
        ))
        .unwrap_or_else(|e| panic!("annotating {namespace}/{name}: {e}"));
    }

    /// `Kind/name` → resourceVersion of every object in `cc`'s namespace that `cc` controls.
    fn children_versions(&self, cc: &CounterCluster) -> BTreeMap<String, String> {
        self.children(cc, |meta| meta.resource_version.clone().unwrap_or_default())
    }

    /// `Kind/name` → when the operator last changed it (the time of its managedFields entry;
    /// a server-side apply that changes nothing leaves it alone) for every object in the
    /// namespace that `cc` controls. Unlike the resourceVersion, other controllers' status
    /// writes (a PDB's counts, a Deployment's replicas) do not move it.
    fn operator_writes(&self, cc: &CounterCluster) -> BTreeMap<String, String> {
        self.children(cc, |meta| {
            meta.managed_fields
                .iter()
                .flatten()
                .filter(|m| {
                    m.manager.as_deref() == Some("highpress-operator") && m.subresource.is_none()
                })
                .find_map(|m| m.time.as_ref().map(|t| t.0.to_string()))
                .unwrap_or_else(|| "created, never applied".to_owned())
        })
    }

    /// `Kind/name` → `stamp(metadata)` of every object of the operator's child kinds in `cc`'s
    /// namespace that `cc` controls.
    fn children(
        &self,
        cc: &CounterCluster,
        stamp: fn(&ObjectMeta) -> String,
    ) -> BTreeMap<String, String> {
        let namespace = cc.namespace().expect("namespaced");
        let uid = cc.uid().expect("a uid");
        let mut out = BTreeMap::new();
        self.collect::<ConfigMap>(&namespace, &uid, stamp, &mut out);
        self.collect::<Secret>(&namespace, &uid, stamp, &mut out);
        self.collect::<Service>(&namespace, &uid, stamp, &mut out);
        self.collect::<Deployment>(&namespace, &uid, stamp, &mut out);
        self.collect::<StatefulSet>(&namespace, &uid, stamp, &mut out);
        self.collect::<HorizontalPodAutoscaler>(&namespace, &uid, stamp, &mut out);
        self.collect::<PodDisruptionBudget>(&namespace, &uid, stamp, &mut out);
        self.collect::<NetworkPolicy>(&namespace, &uid, stamp, &mut out);
        out
    }

    fn collect<K>(
        &self,
        namespace: &str,
        uid: &str,
        stamp: fn(&ObjectMeta) -> String,
        out: &mut BTreeMap<String, String>,
    ) where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let list = self
            .block_on(self.api::<K>(namespace).list(&ListParams::default()))
            .unwrap_or_else(|e| panic!("listing {} in {namespace}: {e}", K::kind(&())));
        for object in list {
            if object.owner_references().iter().any(|r| r.uid == uid) {
                out.insert(
                    format!("{}/{}", K::kind(&()), object.name_any()),
                    stamp(object.meta()),
                );
            }
        }
    }

    /// Events whose subject is `namespace/name`, as `(type, reason, note)`.
    fn events(&self, namespace: &str, name: &str) -> Vec<(String, String, String)> {
        let list = self
            .block_on(self.api::<Event>(namespace).list(&ListParams::default()))
            .expect("listing Events");
        list.into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits until each CRD is `Established`. (`kubectl wait` right after an apply can fail:
    /// the CRD may not have any status conditions yet.)
    fn wait_established(&self, names: &[&str]) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for name in names {
            wait_until(
                Duration::from_secs(60),
                &format!("CRD {name} Established"),
                || {
                    let crd = self.block_on(crds.get_opt(name)).ok()??;
                    crd.status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                        .then_some(())
                },
            );
        }
    }

    /// `highpress_operator_reconcile_total{result="success"}`, summed over the operators.
    fn successful_reconciles(&self) -> f64 {
        self.operators
            .iter()
            .map(|o| {
                metric_sum(
                    &o.metrics(),
                    "highpress_operator_reconcile_total",
                    "success",
                )
            })
            .sum()
    }
}

fn condition<'a>(
    cc: &'a CounterCluster,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    cc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn example_path(file: &str) -> String {
    format!("deploy/examples/{file}")
}

// --- 1. the plain manifests of deploy/ -----------------------------------------------------------

/// README: `kubectl apply --server-side -f deploy/crds/`, create `highpress-system`, then
/// `kubectl apply -f deploy/operator/install.yaml`. The operator, run with that install's
/// ServiceAccount token, brings the minimal example to Ready. Everything is then removed
/// again: `install.yaml` is the chart rendered for release `highpress` in `highpress-system`,
/// so its cluster-scoped RBAC has the chart's names, and a cluster runs one or the other.
fn plain_manifests(suite: &mut Suite) {
    suite
        .cluster
        .kubectl_ok(&["apply", "--server-side", "-f", "deploy/crds/"]);
    suite.wait_established(&["counterclusters.highpress.dev"]);
    suite
        .cluster
        .kubectl_ok(&["create", "namespace", OPERATOR_NAMESPACE]);
    suite
        .cluster
        .kubectl_ok(&["apply", "-f", "deploy/operator/install.yaml"]);
    // kwok marks the operator's pod Running and Ready: the Deployment becomes Available.
    suite.cluster.kubectl_ok(&[
        "-n",
        OPERATOR_NAMESPACE,
        "wait",
        "--for=condition=Available",
        "deployment/highpress-operator",
        "--timeout=60s",
    ]);

    suite.operator_kubeconfig = Some(
        suite
            .cluster
            .service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT),
    );
    suite.start_operator("plain-manifests");
    suite.cluster.kubectl_ok(&["create", "namespace", "apps"]);
    suite
        .cluster
        .kubectl_ok(&["apply", "-f", &example_path("countercluster-minimal.yaml")]);
    let first = suite.wait_ready("apps", "likes");

    // Deleted and re-created at once, as `kubectl delete -f … && kubectl apply -f …` does: the
    // garbage collector is still removing the first one's children while the operator builds
    // the second one's. The second must end up with a Redis password Secret of its own.
    suite.delete_counter_cluster("apps", "likes");
    suite
        .cluster
        .kubectl_ok(&["apply", "-f", &example_path("countercluster-minimal.yaml")]);
    let second = suite.wait_ready("apps", "likes");
    assert_ne!(first.uid(), second.uid());
    // The Secret that Redis reads must be controlled by the second CounterCluster: the
    // collector deletes an object only when every owner is gone, so this one stays. (Waiting
    // for the first one's Secret to go is no use here: the CRD is seconds old, the collector
    // has not started watching CounterClusters yet, and it finds the first one gone only when
    // its back-off re-checks it, minutes later.)
    let statefulset = suite
        .get::<StatefulSet>("apps", "likes-redis")
        .expect("the second likes' Redis");
    let secret_name = redis_secret_name(&statefulset);
    let secret = suite
        .get::<Secret>("apps", &secret_name)
        .unwrap_or_else(|| panic!("the Secret {secret_name} that Redis reads"));
    assert_eq!(
        secret
            .owner_references()
            .iter()
            .map(|o| o.uid.as_str())
            .collect::<Vec<_>>(),
        [second.uid().expect("a uid").as_str()],
        "{secret_name} belongs to the second likes"
    );

    suite.delete_counter_cluster("apps", "likes");
    suite.wait_collected(&second);
    suite.stop_operators();
    suite.cluster.kubectl_ok(&[
        "delete",
        "-f",
        "deploy/operator/install.yaml",
        "--wait=true",
    ]);
    // The CRD stays, as the README says of an uninstall; the chart installs the same one.
    let crds: Api<CustomResourceDefinition> = Api::all(suite.client.clone());
    assert!(
        suite
            .block_on(crds.get_opt("counterclusters.highpress.dev"))
            .expect("reading the CRD")
            .is_some()
    );
}

// --- 2. the chart --------------------------------------------------------------------------------

/// README: `helm install highpress charts/highpress -n highpress-system --create-namespace`.
/// The operator then runs as a host process with the chart's ServiceAccount's token.
fn helm_install(suite: &mut Suite) {
    suite.cluster.helm_ok(&[
        "install",
        "highpress",
        "charts/highpress",
        "-n",
        OPERATOR_NAMESPACE,
        "--create-namespace",
    ]);
    suite.cluster.kubectl_ok(&[
        "-n",
        OPERATOR_NAMESPACE,
        "wait",
        "--for=condition=Available",
        "deployment/highpress-operator",
        "--timeout=60s",
    ]);
    let status = suite
        .cluster
        .helm_ok(&["status", "highpress", "-n", OPERATOR_NAMESPACE]);
    assert!(status.contains("STATUS: deployed"), "{status}");
    // The plain install's pod is collected with its ReplicaSet; the chart's one stays.
    wait_until(Duration::from_secs(60), "one operator pod", || {
        let pods = suite
            .block_on(
                suite
                    .api::<Pod>(OPERATOR_NAMESPACE)
                    .list(&ListParams::default().labels("app.kubernetes.io/component=operator")),
            )
            .expect("listing the operator's pods");
        (pods.items.len() == 1).then_some(())
    });
    // A new token: the plain install's ServiceAccount was deleted with its tokens.
    suite.operator_kubeconfig = Some(
        suite
            .cluster
            .service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT),
    );
    suite.start_operator("operator-a");
}

// --- 3. the examples -----------------------------------------------------------------------------

/// Every file of `deploy/examples/`, applied with `kubectl apply -f`, becomes Ready on a cluster
/// without the Prometheus Operator's CRDs (most clusters): the ServiceMonitors are skipped with
/// a `FeatureSkipped` Event. `kubectl get cc` prints the columns with real values.
fn examples_ready_without_prometheus(suite: &mut Suite) {
    assert_eq!(
        example_names().len(),
        EXAMPLES.len(),
        "EXAMPLES lists every example"
    );
    suite.cluster.kubectl_ok(&["create", "namespace", "games"]);
    // The production example's external Redis password, as its header says.
    suite.cluster.kubectl_ok(&[
        "-n",
        "apps",
        "create",
        "secret",
        "generic",
        "redis-auth",
        "--from-literal=password=not-a-real-password",
    ]);
    for name in example_names() {
        suite
            .cluster
            .kubectl_ok(&["apply", "-f", &example_path(&name)]);
    }
    // views autoscales: its HPA's controller scales the gateway from 1 to minReplicas (3).
    wait_until(READY_TIMEOUT, "views with 3 ready gateways", || {
        let cc = suite.wait_ready("apps", "views");
        (cc.status.as_ref()?.gateway.as_ref()?.ready == "3/3").then_some(())
    });
    for (namespace, name) in EXAMPLES {
        let cc = suite.wait_ready(namespace, name);
        let status = cc.status.as_ref().expect("a status");
        assert_eq!(status.observed_generation, cc.metadata.generation);
        let degraded = condition(&cc, "Degraded").expect("a Degraded condition");
        assert_eq!(degraded.status, "False", "{namespace}/{name}: {degraded:?}");
    }
    for (namespace, name) in [("games", "scores"), ("apps", "views")] {
        let events = suite.events(namespace, name);
        assert!(
            events.iter().any(|(type_, reason, note)| type_ == "Normal"
                && reason == "FeatureSkipped"
                && note.contains("monitoring.coreos.com/v1")),
            "{namespace}/{name} has a FeatureSkipped Event for its ServiceMonitor: {events:?}"
        );
    }

    // The printer columns, read by the real kubectl from the real status.
    let table = suite.cluster.kubectl_ok(&["get", "cc", "-A"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "GATEWAY",
            "COUNTER",
            "REDIS",
            "ENDPOINT",
            "AGE"
        ]
    );
    let rows: BTreeMap<(String, String), Vec<String>> = lines
        .map(|l| {
            let cells: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            ((cells[0].clone(), cells[1].clone()), cells)
        })
        .collect();
    for (namespace, name, gateway, counter, redis) in [
        ("apps", "likes", "2/2", "3/3", "Ready"),
        ("games", "scores", "2/2", "2/2", "Ready"),
        ("apps", "views", "3/3", "6/6", "External"),
    ] {
        let row = &rows[&(namespace.to_owned(), name.to_owned())];
        let endpoint = format!("http://{name}-gateway.{namespace}.svc:8080");
        assert_eq!(
            row[2..7],
            ["True", gateway, counter, redis, endpoint.as_str()],
            "kubectl get cc row of {namespace}/{name}: {table}"
        );
    }
}

// --- 4. the apiserver's own validation ------------------------------------------------------------

/// One invalid CounterCluster per rule, sent to the real apiserver as a server-side dry run:
/// each CEL rule of the CRD (with the counterexamples that kube's client-side CEL engine checks
/// in `cel_rules.rs`), and each `minimum`, `maximum`, `enum`, `pattern`, `minLength` and
/// `maxItems` of its schema, found by walking the committed CRD. Each must be rejected with 422
/// and a message naming the field; a CEL rule's message must be the one the client-side engine
/// gives.
fn apiserver_rejections(suite: &mut Suite) {
    let resource = ApiResource::erase::<CounterCluster>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(suite.client.clone(), "apps", &resource);
    let dry_run = PostParams {
        dry_run: true,
        field_manager: None,
    };
    let reject = |object: Value| -> (u16, String) {
        let object: DynamicObject = serde_json::from_value(object).expect("an object");
        match suite.block_on(api.create(&dry_run, &object)) {
            Ok(_) => (200, String::new()),
            Err(kube::Error::Api(status)) => (status.code, status.message.clone()),
            Err(other) => panic!("the dry run failed in transit: {other}"),
        }
    };

    let mut failures = Vec::new();
    let cel = cel_counterexamples();
    for (index, (message, cc)) in cel.iter().enumerate() {
        let mut object = serde_json::to_value(cc).expect("JSON");
        object["metadata"] = json!({ "name": format!("cel-{index}"), "namespace": "apps" });
        let (code, answer) = reject(object);
        if code != 422 || !answer.contains(message) {
            failures.push(format!("CEL rule {message:?}: got {code} {answer:?}"));
        }
    }

    let schema = crd_schema();
    let mut cases = Vec::new();
    schema_violations(
        &schema["properties"]["spec"],
        "spec",
        &mut Vec::new(),
        &mut cases,
    );
    // 2 pattern, 4 enum, 5 maximum, 11 minimum, 7 minLength, 1 maxItems in today's CRD; a walk
    // that finds far fewer has stopped seeing the schema.
    assert!(cases.len() >= 25, "only {} schema rules found", cases.len());
    for (index, case) in cases.iter().enumerate() {
        let mut object = json!({
            "apiVersion": "highpress.dev/v1alpha1",
            "kind": "CounterCluster",
            "metadata": { "name": format!("schema-{index}"), "namespace": "apps" },
            "spec": {},
        });
        set_path(&mut object["spec"], &case.path[1..], case.value.clone());
        let (code, answer) = reject(object);
        if code != 422 || !answer.contains(&case.field) {
            failures.push(format!(
                "{} ({}): got {code} {answer:?}",
                case.field, case.rule
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid CounterClusters were not rejected naming the field:\n{}",
        failures.len(),
        cel.len() + cases.len(),
        failures.join("\n")
    );
    // Nothing was written.
    let names: Vec<String> = suite
        .block_on(
            suite
                .api::<CounterCluster>("apps")
                .list(&ListParams::default()),
        )
        .expect("listing")
        .into_iter()
        .map(|cc| cc.name_any())
        .collect();
    assert_eq!(names, ["likes", "views"], "a dry run writes nothing");
}

fn crd_schema() -> Value {
    let path = repo_root().join(highpress_operator::CRD_MANIFEST_PATH);
    let text = std::fs::read_to_string(&path).expect("the committed CRD");
    let crd: Value = serde_norway::from_str(&text).expect("CRD YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// A value that breaks one schema rule at one path.
struct SchemaViolation {
    /// JSON path segments from `spec`; `[]` means "the first item of an array", `*` a map key.
    path: Vec<String>,
    /// The field as the apiserver names it (`spec.gateway.replicas`).
    field: String,
    rule: String,
    value: Value,
}

fn schema_violations(
    schema: &Value,
    field: &str,
    path: &mut Vec<String>,
    out: &mut Vec<SchemaViolation>,
) {
    let mut push = |rule: String, value: Value| {
        let mut full = vec!["spec".to_owned()];
        full.extend(path.iter().cloned());
        out.push(SchemaViolation {
            path: full,
            field: field.to_owned(),
            rule,
            value,
        });
    };
    if let Some(min) = schema["minimum"].as_f64() {
        push(format!("minimum {min}"), json!(min as i64 - 1));
    }
    if let Some(max) = schema["maximum"].as_f64() {
        push(format!("maximum {max}"), json!(max as i64 + 1));
    }
    if schema["enum"].is_array() {
        push("enum".to_owned(), json!("NotOneOfTheValues"));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        push(format!("pattern {pattern}"), json!("not matching !"));
    }
    if schema["minLength"].as_u64().is_some_and(|n| n >= 1) {
        push("minLength".to_owned(), json!(""));
    }
    if let Some(max) = schema["maxItems"].as_u64() {
        let item = match schema["items"]["type"].as_str() {
            Some("string") => json!("broker:9092"),
            _ => json!({}),
        };
        push(
            format!("maxItems {max}"),
            Value::Array(vec![item; max as usize + 1]),
        );
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, child) in properties {
            path.push(name.clone());
            schema_violations(child, &format!("{field}.{name}"), path, out);
            path.pop();
        }
    }
    if schema["additionalProperties"].is_object() {
        path.push("*".to_owned());
        schema_violations(
            &schema["additionalProperties"],
            &format!("{field}.x"),
            path,
            out,
        );
        path.pop();
    }
    if schema["items"].is_object() {
        path.push("[]".to_owned());
        schema_violations(&schema["items"], &format!("{field}[0]"), path, out);
        path.pop();
    }
}

/// Sets `value` at `path` under `root`, creating objects (and one-item arrays) on the way.
fn set_path(root: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *root = value;
        return;
    };
    match first.as_str() {
        "[]" => {
            if !root.is_array() {
                *root = json!([{}]);
            }
            set_path(&mut root[0], rest, value);
        }
        key => {
            let key = if key == "*" { "x" } else { key };
            if !root.is_object() {
                *root = json!({});
            }
            let slot = root
                .as_object_mut()
                .expect("an object")
                .entry(key.to_owned())
                .or_insert(json!({}));
            set_path(slot, rest, value);
        }
    }
}

// --- 5. spec changes -----------------------------------------------------------------------------

/// Scaling the gateway writes the gateway Deployment and nothing else the operator owns; a
/// config change writes the ConfigMap and both Deployments, and the config-hash annotation
/// rolls a new ReplicaSet of each.
fn spec_change(suite: &mut Suite) {
    let cc = suite.wait_ready("apps", "likes");
    let before = suite.operator_writes(&cc);
    assert!(before.len() >= 9, "likes owns its children: {before:?}");
    // managedFields times have a resolution of one second.
    std::thread::sleep(Duration::from_millis(1100));

    suite.patch_spec("apps", "likes", json!({ "gateway": { "replicas": 3 } }));
    let cc = wait_until(READY_TIMEOUT, "likes Ready with 3 gateways", || {
        let cc = suite.wait_ready("apps", "likes");
        (cc.status.as_ref()?.gateway.as_ref()?.ready == "3/3").then_some(cc)
    });
    let after = suite.operator_writes(&cc);
    let changed: Vec<&String> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert_eq!(
        changed,
        ["Deployment/likes-gateway"],
        "scaling the gateway changed only the gateway Deployment"
    );

    let replica_sets = |component: &str| -> Vec<ReplicaSet> {
        suite
            .block_on(
                suite
                    .api::<ReplicaSet>("apps")
                    .list(&ListParams::default().labels(&format!(
                        "app.kubernetes.io/instance=likes,app.kubernetes.io/component={component}"
                    ))),
            )
            .expect("listing ReplicaSets")
            .items
    };
    let hash = |rs: &ReplicaSet| -> String {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| {
                a.get(highpress_operator::reconcile::build::CONFIG_HASH_ANNOTATION)
                    .cloned()
            })
            .unwrap_or_default()
    };
    let gateway_sets_before = replica_sets("gateway").len();
    let counter_sets_before = replica_sets("counter").len();
    let old_config = suite
        .get::<ConfigMap>("apps", "likes-config")
        .expect("the ConfigMap");

    std::thread::sleep(Duration::from_millis(1100));
    suite.patch_spec(
        "apps",
        "likes",
        json!({ "observability": { "logLevel": "debug" } }),
    );
    let cc = suite.wait_ready("apps", "likes");
    // Ready means rolled out: each Deployment's controller has seen the new template and every
    // replica runs it (a status read from the apply response alone would still describe the
    // old ReplicaSet).
    for name in ["likes-gateway", "likes-counter"] {
        let deployment = suite
            .get::<Deployment>("apps", name)
            .expect("the Deployment");
        let status = deployment.status.expect("a status");
        let replicas = deployment.spec.and_then(|s| s.replicas);
        assert_eq!(
            status.observed_generation, deployment.metadata.generation,
            "{name}"
        );
        assert_eq!(
            status.updated_replicas, replicas,
            "{name} is rolled out when Ready"
        );
        // Old pods may still be on their way out (the rolling update's surge).
        assert!(status.ready_replicas >= replicas, "{name}: {status:?}");
    }
    let new_config = suite
        .get::<ConfigMap>("apps", "likes-config")
        .expect("the ConfigMap");
    assert_ne!(old_config.data, new_config.data, "the config changed");
    assert!(
        new_config.data.as_ref().expect("data")["config.yaml"].contains("level: debug"),
        "{:?}",
        new_config.data
    );
    let after_config = suite.operator_writes(&cc);
    let changed: Vec<&String> = after_config
        .keys()
        .filter(|k| after.get(*k) != after_config.get(*k))
        .collect();
    assert_eq!(
        changed,
        [
            "ConfigMap/likes-config",
            "Deployment/likes-counter",
            "Deployment/likes-gateway"
        ],
        "a config change writes the ConfigMap and the two Deployments that mount it"
    );
    for (component, before) in [
        ("gateway", gateway_sets_before),
        ("counter", counter_sets_before),
    ] {
        let sets = wait_until(
            Duration::from_secs(60),
            &format!("a new {component} ReplicaSet"),
            || {
                let sets = replica_sets(component);
                (sets.len() > before).then_some(sets)
            },
        );
        let hashes: std::collections::BTreeSet<String> = sets.iter().map(hash).collect();
        assert_eq!(
            hashes.len(),
            sets.len(),
            "each {component} ReplicaSet has its own config hash"
        );
    }
}

// --- 6. resync after a restart --------------------------------------------------------------------

/// A restarted operator reconciles every CounterCluster again and writes nothing: every
/// CounterCluster's resourceVersion stays the same, and so does the operator's last write to
/// each child (its resourceVersion also moves with other controllers' status writes, such as
/// the HPA controller's, which failed a clean-clone CI run).
fn resync_writes_nothing(suite: &mut Suite) {
    for (namespace, name) in EXAMPLES {
        suite.wait_ready(namespace, name);
    }
    // Let the Deployment and ReplicaSet controllers settle after the last change.
    let snapshot = |suite: &Suite| -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        for (namespace, name) in EXAMPLES {
            let cc = suite.counter_cluster(namespace, name);
            all.insert(
                format!("{namespace}/CounterCluster/{name}"),
                cc.resource_version().unwrap_or_default(),
            );
            for (key, version) in suite.operator_writes(&cc) {
                all.insert(format!("{namespace}/{key}"), version);
            }
        }
        all
    };
    let before = wait_until(Duration::from_secs(60), "a settled cluster", || {
        let first = snapshot(suite);
        std::thread::sleep(Duration::from_secs(3));
        (snapshot(suite) == first).then_some(first)
    });

    suite.stop_operators();
    suite.start_operator("operator-a");
    wait_until(
        Duration::from_secs(60),
        "a reconcile of every example",
        || (suite.successful_reconciles() >= EXAMPLES.len() as f64).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = snapshot(suite);
    let changed: Vec<String> = before
        .iter()
        .filter(|(key, version)| after.get(*key) != Some(version))
        .map(|(key, version)| format!("{key}: {version} -> {:?}", after.get(key)))
        .collect();
    assert!(
        changed.is_empty(),
        "the resync wrote to {} objects:\n{}",
        changed.len(),
        changed.join("\n")
    );
}

// --- 7. drift in any child ----------------------------------------------------------------------

/// docs/operator.md: the operator watches every kind of child it owns, so a child deleted by
/// hand is back within seconds, not at the next resync (5 minutes). Nothing else changes in a
/// settled cluster, so nothing but the watch of the deleted object's kind starts the reconcile.
/// The Prometheus Operator's CRDs are not installed yet, so this also shows that the failing
/// ServiceMonitor watch holds no other watch back.
fn deleted_children_come_back_at_once(suite: &mut Suite) {
    let (namespace, name) = ("apps", "likes");
    suite.wait_ready(namespace, name);
    let uid = |meta: &ObjectMeta| meta.uid.clone().expect("a uid");
    let service = format!("{name}-gateway");
    let config_map = format!("{name}-config");
    let old_service = uid(&suite
        .get::<Service>(namespace, &service)
        .expect("the Service")
        .metadata);
    let old_config_map = uid(&suite
        .get::<ConfigMap>(namespace, &config_map)
        .expect("the ConfigMap")
        .metadata);
    for (kind, object) in [("service", &service), ("configmap", &config_map)] {
        suite
            .cluster
            .kubectl_ok(&["-n", namespace, "delete", kind, object, "--wait=true"]);
    }
    let bound = Duration::from_secs(30);
    wait_until(
        bound,
        "the deleted Service and ConfigMap to be re-created",
        || {
            let service = suite.get::<Service>(namespace, &service)?;
            let config_map = suite.get::<ConfigMap>(namespace, &config_map)?;
            (uid(&service.metadata) != old_service && uid(&config_map.metadata) != old_config_map)
                .then_some(())
        },
    );
    suite.wait_ready(namespace, name);
}

// --- 8. conflicts and the HPA --------------------------------------------------------------------

/// docs/operator.md: a person's edit of a field the operator sets is not undone; the apply
/// fails with `ApplyFailed` naming that field manager, until the person's value agrees with the
/// operator's. The HPA's controller owns the gateway's `spec.replicas` without a fight.
fn conflicts_and_hpa(suite: &mut Suite) {
    let deployments = suite.api::<Deployment>("apps");
    let image_of = |d: &Deployment| -> String {
        d.spec
            .as_ref()
            .expect("a spec")
            .template
            .spec
            .as_ref()
            .expect("a pod spec")
            .containers[0]
            .image
            .clone()
            .unwrap_or_default()
    };
    let original = image_of(
        &suite
            .get::<Deployment>("apps", "likes-gateway")
            .expect("gateway"),
    );
    let edit = |image: &str| {
        suite
            .block_on(deployments.patch(
                "likes-gateway",
                &PatchParams {
                    field_manager: Some("kubectl-edit".to_owned()),
                    ..PatchParams::default()
                },
                &Patch::Strategic(json!({ "spec": { "template": { "spec": { "containers": [
                    { "name": "gateway", "image": image }
                ]}}}})),
            ))
            .expect("a person's edit");
    };
    edit("example.org/someone-else:1");
    // The edit changes a Deployment the operator watches, so it reconciles at once.
    let cc = wait_until(READY_TIMEOUT, "Degraded=True/ApplyFailed on likes", || {
        let cc = suite.counter_cluster("apps", "likes");
        condition(&cc, "Degraded")
            .is_some_and(|c| c.status == "True" && c.reason == "ApplyFailed")
            .then_some(cc)
    });
    let degraded = condition(&cc, "Degraded").expect("Degraded");
    assert!(
        degraded.message.contains("kubectl-edit") && degraded.message.contains("image"),
        "the message names the manager and the field: {}",
        degraded.message
    );
    assert_eq!(
        condition(&cc, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    assert_eq!(
        image_of(
            &suite
                .get::<Deployment>("apps", "likes-gateway")
                .expect("gateway")
        ),
        "example.org/someone-else:1",
        "the person's edit is not silently undone"
    );
    assert!(
        suite
            .events("apps", "likes")
            .iter()
            .any(|(type_, reason, note)| type_ == "Warning"
                && reason == "ApplyFailed"
                && note.contains("kubectl-edit")),
        "a Warning ApplyFailed Event names the manager"
    );
    // The person puts the operator's value back: both managers agree, the apply succeeds.
    edit(&original);
    suite.wait_ready("apps", "likes");

    // views autoscales (3..12): the Deployment leaves replicas to the HPA, whose controller
    // scales it to minReplicas.
    let owners_of_replicas = |d: &Deployment| -> Vec<String> {
        d.metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| {
                m.fields_v1
                    .as_ref()
                    .and_then(|f| f.0.pointer("/f:spec/f:replicas"))
                    .is_some()
            })
            .filter_map(|m| m.manager.clone())
            .collect()
    };
    for replicas in [3, 4] {
        if replicas == 4 {
            suite.patch_spec(
                "apps",
                "views",
                json!({ "gateway": { "autoscaling": { "minReplicas": 4 } } }),
            );
        }
        let deployment = wait_until(
            Duration::from_secs(90),
            &format!("the HPA scaling views-gateway to {replicas}"),
            || {
                let d = suite.get::<Deployment>("apps", "views-gateway")?;
                (d.spec.as_ref()?.replicas == Some(replicas)).then_some(d)
            },
        );
        // On 1.36 the HPA controller's writes through the scale subresource leave no
        // managedFields owner of spec.replicas at all; what matters is that the operator never
        // owns it, so no apply of its can conflict with, or undo, the HPA.
        let owners = owners_of_replicas(&deployment);
        assert!(
            !owners.iter().any(|m| m == "highpress-operator"),
            "the operator does not own spec.replicas: {owners:?}"
        );
        suite.nudge("apps", "views");
        let cc = wait_until(
            READY_TIMEOUT,
            "views Ready at the HPA's replica count",
            || {
                let cc = suite.counter_cluster("apps", "views");
                let gateway = cc.status.as_ref()?.gateway.as_ref()?;
                (gateway.replicas == replicas
                    && condition(&cc, "Ready").is_some_and(|c| c.status == "True"))
                .then_some(cc)
            },
        );
        assert_eq!(
            condition(&cc, "Degraded").map(|c| c.status.as_str()),
            Some("False")
        );
        assert_eq!(
            suite
                .get::<Deployment>("apps", "views-gateway")
                .and_then(|d| d.spec?.replicas),
            Some(replicas),
            "the operator's reconcile left the HPA's replica count alone"
        );
    }
}

// --- 9. the pod wiring ---------------------------------------------------------------------------

/// What the operator wrote runs: for `likes`, read the Redis StatefulSet, the counter and
/// gateway Deployments, their ConfigMap and the Redis Secret from the API server, and start
/// redis-server, `highpress counter` and `highpress gateway` exactly so on loopback: the
/// container's command and args (with Kubernetes' `$(VAR)` expansion), its env (values,
/// Secret and field references resolved as a kubelet would) and the ConfigMap's config.yaml
/// at its mount path. What cluster DNS and pod IPs provide is the one stand-in: every
/// Service name in the config is checked against the Service of that name (its port, and a
/// selector that matches the pods), then mapped to the loopback address of the process behind
/// it. Each process must pass the readiness probe its pod declares, and an increment through
/// the gateway must be counted in Redis. With `spec.observability.tracing` pointed at a real
/// Jaeger, the increment's trace must be there, from the gateway to the counter's flush.
fn pod_wiring(suite: &mut Suite) {
    let namespace = "apps";
    let work = suite.cluster.dir().join("pod-wiring");
    std::fs::create_dir_all(work.join("jaeger")).expect("a scratch dir");
    // Tracing on, into a real Jaeger: the rendered endpoint must be one Jaeger accepts.
    let jaeger = Jaeger::start(work.join("jaeger"));
    suite.patch_spec(
        namespace,
        "likes",
        json!({"observability": {"tracing": {
            "enabled": true,
            "otlpEndpoint": format!("http://127.0.0.1:{}", jaeger.otlp_port),
            "samplingRatio": 1.0,
        }}}),
    );
    suite.wait_ready(namespace, "likes");
    let config_map = suite
        .get::<ConfigMap>(namespace, "likes-config")
        .expect("the ConfigMap");
    let statefulset = suite
        .get::<StatefulSet>(namespace, "likes-redis")
        .expect("Redis");
    let secret = suite
        .get::<Secret>(namespace, &redis_secret_name(&statefulset))
        .expect("the Redis Secret");
    let counter = suite
        .get::<Deployment>(namespace, "likes-counter")
        .expect("the counter");
    let gateway = suite
        .get::<Deployment>(namespace, "likes-gateway")
        .expect("the gateway");

    // Redis, as its StatefulSet says.
    let redis_spec = statefulset.spec.as_ref().expect("a spec");
    let redis_container = &redis_spec
        .template
        .spec
        .as_ref()
        .expect("a pod spec")
        .containers[0];
    let mut processes = Processes::default();
    let (redis_port, redis_cli) = start_redis_as_written(
        &mut processes,
        &work,
        &statefulset,
        &secret,
        &config_map,
        None,
    );
    assert_ne!(
        tool("redis-cli")
            .args(["-p", &redis_port.to_string(), "ping"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default(),
        "PONG",
        "Redis requires the Secret's password"
    );

    // The config file, as mounted.
    let config_text = &config_map.data.as_ref().expect("data")["config.yaml"];
    let config: Value = serde_norway::from_str(config_text).expect("config.yaml is YAML");
    let config_path = work.join("config.yaml");
    std::fs::write(&config_path, config_text).expect("writing config.yaml");

    // The Services the config names exist and lead to the right pods and ports.
    let redis_addr = config["redis"]["addr"].as_str().expect("redis.addr");
    check_service_address(
        suite,
        namespace,
        redis_addr,
        &redis_spec.template.metadata,
        redis_container,
    );
    let discovery = config["discovery"]["dns"].as_str().expect("discovery.dns");
    let counter_spec = counter.spec.as_ref().expect("a spec");
    let counter_container = &counter_spec
        .template
        .spec
        .as_ref()
        .expect("a pod spec")
        .containers[0];
    check_service_address(
        suite,
        namespace,
        discovery,
        &counter_spec.template.metadata,
        counter_container,
    );
    let gateway_spec = gateway.spec.as_ref().expect("a spec");
    let gateway_container = &gateway_spec
        .template
        .spec
        .as_ref()
        .expect("a pod spec")
        .containers[0];
    let endpoint = suite
        .counter_cluster(namespace, "likes")
        .status
        .and_then(|s| s.endpoint)
        .expect("an endpoint");
    let gateway_addr = endpoint.trim_start_matches("http://");
    check_service_address(
        suite,
        namespace,
        gateway_addr,
        &gateway_spec.template.metadata,
        gateway_container,
    );

    // The counter and the gateway, as their Deployments say.
    let Tiers {
        counter_grpc,
        gateway_http,
        ..
    } = start_tiers(
        &mut processes,
        &work,
        [counter_container, gateway_container],
        (&secret, &config_map),
        redis_port,
        |_| config_path.clone(),
    );

    // The readiness probes the pods declare.
    let counter_probe = counter_container
        .readiness_probe
        .as_ref()
        .expect("a readiness probe");
    assert_eq!(
        counter_probe.grpc.as_ref().map(|g| g.port),
        Some(highpress_operator::reconcile::build::config::GRPC_PORT)
    );
    let gateway_probe = gateway_container
        .readiness_probe
        .as_ref()
        .expect("a readiness probe");
    let gateway_path = gateway_probe
        .http_get
        .as_ref()
        .and_then(|h| h.path.clone())
        .expect("an HTTP probe");
    let counter_grpc_addr = SocketAddr::from(([127, 0, 0, 1], counter_grpc));
    wait_until(
        Duration::from_secs(30),
        "the counter's gRPC health SERVING",
        || {
            processes.assert_running();
            grpc_serving(suite, counter_grpc_addr).then_some(())
        },
    );
    let gateway_addr = SocketAddr::from(([127, 0, 0, 1], gateway_http));
    wait_until(
        Duration::from_secs(30),
        &format!("the gateway's {gateway_path}"),
        || {
            processes.assert_running();
            (http_get(gateway_addr, &gateway_path).map(|(code, _)| code) == Some(200)).then_some(())
        },
    );

    // One increment through the gateway, counted in Redis with the Secret's password.
    let (code, body) = http_request(
        gateway_addr,
        "POST",
        "/api/v1/counter/increment",
        Some(r#"{"resource_id":"wired","counter_type":"like","user_id":"u1","increment":3}"#),
    )
    .expect("an answer");
    assert_eq!(code, 200, "{body}");
    let keys = redis_cli(&["--scan", "--pattern", "*wired*"]);
    let key = keys
        .lines()
        .next()
        .unwrap_or_else(|| panic!("the increment is in Redis: {keys:?}"));
    assert_eq!(redis_cli(&["get", key]), "3");

    // Its trace in Jaeger: the gateway's HTTP and gRPC client spans, the counter's gRPC server
    // span, its flush and the Redis pipeline.
    let expected = [
        ("highpress-gateway", "POST /api/v1/counter/increment"),
        ("highpress-gateway", INCREMENT_BATCH),
        ("highpress-counter", INCREMENT_BATCH),
        ("highpress-counter", "coalescer.flush"),
        ("highpress-counter", "store.pipeline"),
    ];
    wait_until(
        Duration::from_secs(60),
        "the increment's trace in Jaeger",
        || {
            jaeger
                .traces("highpress-gateway", "POST /api/v1/counter/increment")
                .iter()
                .map(span_names)
                .find(|names| {
                    expected.iter().all(|(service, op)| {
                        names.contains(&((*service).to_owned(), (*op).to_owned()))
                    })
                })
        },
    );
    drop(processes);
    suite.patch_spec(
        namespace,
        "likes",
        json!({"observability": {"tracing": null}}),
    );
    suite.wait_ready(namespace, "likes");
}

/// `security` on (API tokens, HTTPS and mutual TLS between the tiers), run as the operator
/// wrote it: the tokens Secret and each component's certificate Secret (issued by the
/// operator's CA) laid out where the pods mount them, the processes started as the Deployments
/// say. An increment over HTTPS with the token reaches Redis through the gateway's mutual TLS
/// to the counter; without a token it is refused; the counter's gRPC port refuses a client
/// without the gateway's certificate, its own included.
fn secured_pod_wiring(suite: &mut Suite) {
    const TOKEN: &str = "wiring-token-0123456789abcdef";
    let namespace = "apps";
    let work = suite.cluster.dir().join("secured-wiring");
    std::fs::create_dir_all(&work).expect("a scratch dir");
    let tokens = Secret {
        metadata: ObjectMeta {
            name: Some("likes-tokens".to_owned()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(
            "tokens.yaml".to_owned(),
            format!("tokens:\n  - name: wiring\n    token: {TOKEN}\n    scopes: [read, write]\n"),
        )])),
        ..Secret::default()
    };
    suite
        .block_on(
            suite
                .api::<Secret>(namespace)
                .create(&PostParams::default(), &tokens),
        )
        .expect("the tokens Secret");
    suite.patch_spec(
        namespace,
        "likes",
        json!({"security": {
            "auth": {"enabled": true, "tokensSecretRef": {"name": "likes-tokens"}},
            "tls": {"api": true, "grpc": true, "redis": true},
        }}),
    );
    suite.wait_ready(namespace, "likes");
    let certificates = wait_until(Duration::from_secs(60), "status.certificates", || {
        suite
            .counter_cluster(namespace, "likes")
            .status
            .and_then(|s| s.certificates)
    });
    let ca = suite
        .get::<Secret>("highpress-system", "highpress-operator-ca")
        .expect("the operator's CA Secret");
    assert!(
        ca.data.as_ref().is_some_and(|d| d.contains_key("next.crt")),
        "the CA holds its successor"
    );

    let config_map = suite
        .get::<ConfigMap>(namespace, "likes-config")
        .expect("the ConfigMap");
    let statefulset = suite
        .get::<StatefulSet>(namespace, "likes-redis")
        .expect("Redis");
    let secret = suite
        .get::<Secret>(namespace, &redis_secret_name(&statefulset))
        .expect("the Redis Secret");
    // Redis with its certificate where its pod mounts it: TLS alone.
    let redis_root = work.join("redis");
    lay_out_secret_volumes(
        suite,
        namespace,
        pod_spec(&statefulset.spec.as_ref().expect("a spec").template),
        &redis_root,
    );
    let mut processes = Processes::default();
    let (redis_port, redis_cli) = start_redis_as_written(
        &mut processes,
        &work,
        &statefulset,
        &secret,
        &config_map,
        Some(&redis_root),
    );
    let plain = tool("redis-cli")
        .args(["-p", &redis_port.to_string(), "ping"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        !plain.contains("PONG"),
        "Redis answered plain text: {plain}"
    );

    // Each component's files where its pod mounts them, and its config naming them there.
    let config_text = &config_map.data.as_ref().expect("data")["config.yaml"];
    let mut components = BTreeMap::new();
    for name in ["counter", "gateway"] {
        let deployment = suite
            .get::<Deployment>(namespace, &format!("likes-{name}"))
            .expect("the Deployment");
        let root = work.join(name);
        let template = &deployment.spec.as_ref().expect("a spec").template;
        lay_out_secret_volumes(suite, namespace, pod_spec(template), &root);
        let config_path = root.join("config.yaml");
        let rooted = config_text.replace(
            "/var/run/secrets/",
            &format!("{}/var/run/secrets/", root.display()),
        );
        std::fs::write(&config_path, rooted).expect("writing config.yaml");
        components.insert(name, (deployment, root, config_path));
    }
    let container = |name: &str| -> Container {
        components[name]
            .0
            .spec
            .as_ref()
            .expect("a spec")
            .template
            .spec
            .as_ref()
            .expect("a pod spec")
            .containers[0]
            .clone()
    };
    let file = |name: &str, file: &str| -> String {
        components[name]
            .1
            .join("var/run/secrets/highpress/tls")
            .join(file)
            .to_string_lossy()
            .into_owned()
    };

    let (counter_container, gateway_container) = (container("counter"), container("gateway"));
    let Tiers {
        counter_http,
        counter_grpc,
        gateway_http,
    } = start_tiers(
        &mut processes,
        &work,
        [&counter_container, &gateway_container],
        (&secret, &config_map),
        redis_port,
        |tier| components[tier].2.clone(),
    );

    // The readiness probes, over HTTPS (the counter's on its HTTP port), each answered with a
    // certificate for its Service that the operator's CA signed.
    let https =
        |component: &str, port: u16, path: &str, extra: &[&str]| -> (bool, String, String) {
            let host = format!("likes-{component}.{namespace}.svc");
            let output = Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "5",
                ])
                .args(["--cacert", &file(component, "ca.crt")])
                .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
                .args(extra)
                .arg(format!("https://{host}:{port}{path}"))
                .output()
                .expect("curl");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        };
    for (name, port) in [("counter", counter_http), ("gateway", gateway_http)] {
        let probe = container(name).readiness_probe.expect("a readiness probe");
        let get = probe.http_get.expect("an HTTP readiness probe");
        assert_eq!(get.scheme.as_deref(), Some("HTTPS"), "{name}");
        let path = get.path.expect("a path");
        wait_until(
            Duration::from_secs(30),
            &format!("{name}'s {path} over HTTPS"),
            || {
                processes.assert_running();
                (https(name, port, &path, &[]).1 == "200").then_some(())
            },
        );
    }

    // An increment with the token, through the gateway's mutual TLS to the counter.
    let body = r#"{"resource_id":"secured","counter_type":"like","user_id":"u1","increment":5}"#;
    let increment = |token: Option<&str>| -> String {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut extra = vec![
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ];
        if let Some(auth) = &auth {
            extra.extend(["-H", auth.as_str()]);
        }
        let (_, code, stderr) = https("gateway", gateway_http, "/api/v1/counter/increment", &extra);
        if code == "000" {
            eprintln!("curl: {stderr}\n{}", processes.log_tails(40));
        }
        code
    };
    assert_eq!(increment(None), "401", "no token");
    assert_eq!(
        increment(Some("wiring-token-wrong-0123456789")),
        "401",
        "an unknown token"
    );
    assert_eq!(increment(Some(TOKEN)), "200", "the Secret's token");
    // In Redis, which the counter reached over TLS with the CA its pod mounts.
    let keys = redis_cli(&["--scan", "--pattern", "*secured*"]);
    let key = keys
        .lines()
        .next()
        .unwrap_or_else(|| panic!("the increment is in Redis: {keys:?}"));
    assert_eq!(
        redis_cli(&["get", key]),
        "5",
        "only the authorized increment counted"
    );

    // Plain HTTP is not served.
    let plain = http_get(SocketAddr::from(([127, 0, 0, 1], gateway_http)), "/readyz");
    assert_ne!(
        plain.map(|(code, _)| code),
        Some(200),
        "plain HTTP to an HTTPS port"
    );

    // The counter's gRPC port: only the gateway's certificate gets an answer.
    let grpc = |client: Option<&str>| -> bool {
        let cert_args = client
            .map(|who| {
                vec![
                    "--cert".to_owned(),
                    file(who, "tls.crt"),
                    "--key".to_owned(),
                    file(who, "tls.key"),
                ]
            })
            .unwrap_or_default();
        let mut extra: Vec<&str> = vec![
            "--http2",
            "-X",
            "POST",
            "-H",
            "content-type: application/grpc",
        ];
        extra.extend(cert_args.iter().map(String::as_str));
        https(
            "counter",
            counter_grpc,
            "/grpc.health.v1.Health/Check",
            &extra,
        )
        .0
    };
    assert!(
        grpc(Some("gateway")),
        "the gateway's certificate is accepted"
    );
    assert!(!grpc(None), "a client without a certificate is refused");
    assert!(
        !grpc(Some("counter")),
        "a counter's certificate is no client certificate"
    );
    eprintln!(
        "secured wiring: certificates issued {} by CA {}, renewed from {}",
        certificates.issued_at,
        &certificates.ca_fingerprint[..16],
        certificates.renew_at
    );

    drop(processes);
    suite.patch_spec(namespace, "likes", json!({"security": null}));
    suite.wait_ready(namespace, "likes");
}

/// Where a wiring scenario's counter and gateway listen on loopback.
struct Tiers {
    counter_http: u16,
    counter_grpc: u16,
    gateway_http: u16,
}

/// Starts `highpress counter` and `highpress gateway` as their `[counter, gateway]` containers
/// say (env from the Redis Secret and the ConfigMap, the config file at `config_of(tier)`),
/// each address mapped to loopback: the counter to the Redis on `redis_port`, the gateway to
/// the counter.
fn start_tiers(
    processes: &mut Processes,
    work: &Path,
    [counter, gateway]: [&Container; 2],
    (secret, config_map): (&Secret, &ConfigMap),
    redis_port: u16,
    config_of: impl Fn(&str) -> PathBuf,
) -> Tiers {
    let tiers = Tiers {
        counter_http: free_port(),
        counter_grpc: free_port(),
        gateway_http: free_port(),
    };
    let counter_grpc = format!("127.0.0.1:{}", tiers.counter_grpc);
    let overrides = [
        (
            "counter",
            counter,
            vec![
                ("HIGHPRESS_REDIS__ADDR", format!("127.0.0.1:{redis_port}")),
                ("HIGHPRESS_SERVER__PORT", tiers.counter_http.to_string()),
                ("HIGHPRESS_GRPC__LISTEN", counter_grpc.clone()),
            ],
        ),
        (
            "gateway",
            gateway,
            vec![
                ("HIGHPRESS_SERVER__PORT", tiers.gateway_http.to_string()),
                ("HIGHPRESS_DISCOVERY__DNS", counter_grpc),
            ],
        ),
    ];
    let highpress = highpress_binary();
    for (tier, container, addresses) in overrides {
        let mut env = container_env(container, secret, config_map);
        env.insert("HIGHPRESS_SERVER__HOST".into(), "127.0.0.1".into());
        env.extend(addresses.into_iter().map(|(k, v)| (k.to_owned(), v)));
        processes.spawn(
            tier,
            Command::new(&highpress)
                .args(mounted(expand_args(container, &env), &config_of(tier)))
                .envs(&env),
            work,
        );
    }
    tiers
}

/// The pod spec of a workload's template.
fn pod_spec(template: &PodTemplateSpec) -> &PodSpec {
    template.spec.as_ref().expect("a pod spec")
}

/// Writes the Secret volumes the pod's first container mounts under `root`, at their mount
/// paths, as the kubelet would (the keys `items` names, else every key).
fn lay_out_secret_volumes(suite: &Suite, namespace: &str, pod: &PodSpec, root: &Path) {
    for mount in pod.containers[0].volume_mounts.iter().flatten() {
        // A mount without a pod volume is a StatefulSet's claim (Redis's data).
        let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name);
        let Some(source) = volume.and_then(|v| v.secret.as_ref()) else {
            continue;
        };
        let name = source.secret_name.clone().expect("a Secret name");
        let secret = suite
            .get::<Secret>(namespace, &name)
            .unwrap_or_else(|| panic!("the Secret {name} the pod mounts"));
        let data = secret.data.unwrap_or_default();
        let dir = root.join(mount.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).expect("the mount dir");
        let files: Vec<(String, String)> = match &source.items {
            Some(items) => items
                .iter()
                .map(|i| (i.key.clone(), i.path.clone()))
                .collect(),
            None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        for (key, path) in files {
            let value = data
                .get(&key)
                .unwrap_or_else(|| panic!("{name} has no key {key}"));
            std::fs::write(dir.join(path), &value.0).expect("writing a Secret file");
        }
    }
}

/// Starts the managed Redis StatefulSet's container as written (its data dir in `work`, a
/// free port); returns the port and a redis-cli with the Secret's password. With
/// `security.tls.redis`, `mounts` is where its Secret volumes were laid out: the container's
/// paths under `/var/run/secrets/` are mapped there, the TLS port is the one set, and redis-cli
/// speaks TLS trusting the mounted `ca.crt`.
fn start_redis_as_written(
    processes: &mut Processes,
    work: &Path,
    statefulset: &StatefulSet,
    secret: &Secret,
    config_map: &ConfigMap,
    mounts: Option<&Path>,
) -> (u16, impl Fn(&[&str]) -> String + use<>) {
    let container = &statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
        .containers[0];
    let port = free_port();
    let mut env = container_env(container, secret, config_map);
    let data_dir = work.join("redis-data");
    std::fs::create_dir_all(&data_dir).expect("the Redis data dir");
    let rooted = |text: &str| match mounts {
        Some(root) => text.replace(
            "/var/run/secrets/",
            &format!("{}/var/run/secrets/", root.display()),
        ),
        None => text.to_owned(),
    };
    for value in env.values_mut() {
        *value = rooted(value);
    }
    let command = container.command.clone().expect("a command");
    let words: Vec<String> = command[1..]
        .iter()
        .cloned()
        .chain(expand_args(container, &env))
        .map(|word| rooted(&word.replace("/data", &data_dir.to_string_lossy())))
        .collect();
    let tls = words.iter().any(|w| w == "--tls-port");
    let words = replace_flag(
        words,
        if tls { "--tls-port" } else { "--port" },
        &port.to_string(),
    );
    processes.spawn("redis", tool(&command[0]).args(&words).envs(&env), work);
    let password = env["REDIS_PASSWORD"].clone();
    let tls_flags: Vec<String> = match (tls, mounts) {
        (true, Some(root)) => vec![
            "--tls".to_owned(),
            "--cacert".to_owned(),
            root.join("var/run/secrets/highpress/tls/ca.crt")
                .to_string_lossy()
                .into_owned(),
        ],
        (true, None) => panic!("a TLS Redis needs its mounts laid out"),
        _ => Vec::new(),
    };
    let redis_cli = move |args: &[&str]| -> String {
        let output = tool("redis-cli")
            .args(&tls_flags)
            .args(["-p", &port.to_string()])
            .args(args)
            .env("REDISCLI_AUTH", &password)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    wait_until(Duration::from_secs(20), "redis-server PONG", || {
        (redis_cli(&["ping"]) == "PONG").then_some(())
    });
    (port, redis_cli)
}

const INCREMENT_BATCH: &str = "highpress.counter.v1.CounterService/IncrementBatch";

/// The name of the Secret that a managed Redis StatefulSet's `REDIS_PASSWORD` reads.
fn redis_secret_name(statefulset: &StatefulSet) -> String {
    let pod = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec");
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .find(|var| var.name == "REDIS_PASSWORD")
        .and_then(|var| var.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|key| key.name.clone())
        .expect("REDIS_PASSWORD from a Secret")
}

/// The env of `container` as a kubelet would set it: literal values, Secret keys and
/// ConfigMap keys resolved, field references to the pod's name and namespace.
fn container_env(
    container: &Container,
    secret: &Secret,
    config_map: &ConfigMap,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            value.clone()
        } else {
            let source = var.value_from.as_ref().expect("a value or a source");
            if let Some(key) = &source.secret_key_ref {
                assert_eq!(key.name, secret.name_any(), "{} reads the Secret", var.name);
                let bytes = &secret.data.as_ref().expect("Secret data")[&key.key];
                String::from_utf8(bytes.0.clone()).expect("a UTF-8 secret")
            } else if let Some(key) = &source.config_map_key_ref {
                assert_eq!(key.name, config_map.name_any());
                config_map.data.as_ref().expect("data")[&key.key].clone()
            } else if let Some(field) = &source.field_ref {
                match field.field_path.as_str() {
                    "metadata.name" => "pod-wiring-0".to_owned(),
                    "metadata.namespace" => "apps".to_owned(),
                    other => panic!("unexpected field reference {other}"),
                }
            } else {
                panic!("unsupported env source of {}", var.name)
            }
        };
        env.insert(var.name.clone(), value);
    }
    env
}

/// The container's args with `$(VAR)` expanded from `env`, as Kubernetes does.
fn expand_args(container: &Container, env: &BTreeMap<String, String>) -> Vec<String> {
    container
        .args
        .iter()
        .flatten()
        .map(|arg| {
            let mut arg = arg.clone();
            for (name, value) in env {
                arg = arg.replace(&format!("$({name})"), value);
            }
            arg
        })
        .collect()
}

/// `args` with the value after `flag` replaced.
fn replace_flag(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"));
    args[at + 1] = value.to_owned();
    args
}

/// `args` with the ConfigMap's mount path mapped to where the test wrote config.yaml.
fn mounted(args: Vec<String>, config: &Path) -> Vec<String> {
    let in_pod = highpress_operator::reconcile::build::config::CONFIG_FILE_PATH;
    assert!(
        args.iter().any(|a| a == in_pod),
        "the args name the mounted config: {args:?}"
    );
    args.into_iter()
        .map(|a| {
            if a == in_pod {
                config.to_string_lossy().into_owned()
            } else {
                a
            }
        })
        .collect()
}

/// `<service>.<namespace>.svc[.cluster.local]:<port>` names a Service of `namespace` that
/// serves `port`, whose selector matches the pod template's labels, and whose target port is a
/// port of `container`.
fn check_service_address(
    suite: &Suite,
    namespace: &str,
    address: &str,
    pod_metadata: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    container: &Container,
) {
    let (host, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("host:port in {address}"));
    let port: i32 = port.parse().expect("a port");
    let mut parts = host.split('.');
    let name = parts.next().expect("a Service name");
    assert_eq!(parts.next(), Some(namespace), "{address} is in {namespace}");
    assert_eq!(parts.next(), Some("svc"), "{address} is a Service address");
    let service = suite
        .get::<Service>(namespace, name)
        .unwrap_or_else(|| panic!("{address}: Service {namespace}/{name} exists"));
    let spec = service.spec.expect("a Service spec");
    let service_port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == port)
        .unwrap_or_else(|| panic!("Service {name} serves port {port}"));
    let labels = pod_metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let selector = spec.selector.expect("a selector");
    assert!(
        selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "Service {name}'s selector {selector:?} matches the pods {labels:?}"
    );
    let target = service_port.target_port.clone();
    let container_ports = container.ports.clone().unwrap_or_default();
    let matches = container_ports.iter().any(|p| match &target {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
            p.container_port == *n
        }
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => {
            p.name.as_deref() == Some(s)
        }
        None => p.container_port == port,
    });
    assert!(
        matches,
        "Service {name} port {port} targets a port of {}",
        container.name
    );
}

/// Whether the gRPC health service at `addr` answers SERVING, as the kubelet's gRPC probe asks.
fn grpc_serving(suite: &Suite, addr: SocketAddr) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    suite.block_on(async {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
            return false;
        };
        let Ok(channel) = endpoint.connect().await else {
            return false;
        };
        let mut client = HealthClient::new(channel);
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
    })
}

/// Processes of one scenario, each in its own process group, killed (the whole group, so a
/// start script's server goes too) when dropped.
#[derive(Default)]
struct Processes(Vec<(String, Child, PathBuf)>);

impl Processes {
    fn spawn(&mut self, name: &str, command: &mut Command, dir: &Path) {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("a log file");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("a log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.0.push((name.to_owned(), child, log));
    }

    fn log_tails(&self, lines: usize) -> String {
        self.0
            .iter()
            .map(|(name, _, log)| format!("--- {name} ---\n{}\n", log_tail(log, lines)))
            .collect()
    }

    fn assert_running(&mut self) {
        for (name, child, log) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited ({status}):\n{}", log_tail(log, 30));
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.0 {
            // The group id is the child's pid (`process_group(0)`).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// --- 9b. Redis replicas 1 -> 3 -> 1 ---------------------------------------------------------------

/// `likes` goes from one Redis to three with sentinels on the real API server: the ClusterIP
/// Service `likes-redis`, whose clusterIP cannot change, is replaced by a headless one; the
/// StatefulSet keeps pod 0's claim and gains two; the sentinels, their Service and both PDBs
/// appear; the config points at the sentinels; the status counts ready Redis pods and
/// sentinels, and says why the primary is unknown. Back to one, the sentinels go.
fn redis_replicas_one_to_three_and_back(suite: &mut Suite) {
    let ns = "apps";
    let claim = |suite: &Suite, i: i32| {
        suite.get::<PersistentVolumeClaim>(ns, &format!("data-likes-redis-{i}"))
    };
    let claim_0 = claim(suite, 0).expect("pod 0's claim").uid();
    let single = suite
        .get::<Service>(ns, "likes-redis")
        .expect("the Redis Service");
    let cluster_ip = |service: &Service| service.spec.as_ref().and_then(|s| s.cluster_ip.clone());
    assert_ne!(cluster_ip(&single).as_deref(), Some("None"));

    suite.patch_spec(ns, "likes", json!({"redis": {"managed": {"replicas": 3}}}));
    let cc = suite.wait_ready(ns, "likes");
    let redis = cc.status.and_then(|s| s.redis).expect("a Redis status");
    assert_eq!(
        (
            redis.state.as_str(),
            redis.ready_replicas,
            redis.ready_sentinels
        ),
        ("Ready", Some(3), Some(3))
    );
    // The Redis pods here are kwok's, with no process behind them and no DNS: the operator
    // asks the sentinels, finds none, and says so without holding readiness back (the set
    // itself is read in sentinel_wiring.rs, against real sentinels).
    assert_eq!(redis.primary, None);
    let message = redis.message.unwrap_or_default();
    assert!(
        message.starts_with("primary unknown: 0 of 3 sentinels named a primary"),
        "{message}"
    );
    let service = suite
        .get::<Service>(ns, "likes-redis")
        .expect("the Redis Service");
    assert_eq!(cluster_ip(&service).as_deref(), Some("None"));
    assert_ne!(service.uid(), single.uid(), "the Service was replaced");
    for name in ["likes-redis", "likes-redis-sentinel"] {
        let statefulset = suite.get::<StatefulSet>(ns, name).expect(name);
        assert_eq!(statefulset.spec.and_then(|s| s.replicas), Some(3), "{name}");
        assert!(
            suite.get::<PodDisruptionBudget>(ns, name).is_some(),
            "PDB {name}"
        );
    }
    assert!(suite.get::<Service>(ns, "likes-redis-sentinel").is_some());
    assert_eq!(claim(suite, 0).expect("pod 0's claim").uid(), claim_0);
    for i in 1..3 {
        assert!(claim(suite, i).is_some(), "claim {i}");
    }
    let config_map = suite
        .get::<ConfigMap>(ns, "likes-config")
        .expect("the ConfigMap");
    let config: Value =
        serde_norway::from_str(&config_map.data.expect("data")["config.yaml"]).expect("YAML");
    assert_eq!(config["redis"]["sentinel"]["master_name"], "likes");
    assert_eq!(config["redis"]["min_replicas_ack"], 1);

    // A password rotation, with the real StatefulSet and Deployment controllers rolling kwok's
    // pods: every step is recorded, each once the one before rolled out, and at the end every
    // pod uses the new generation's Secret alone.
    suite.patch_spec(
        ns,
        "likes",
        json!({"redis": {"managed": {"passwordGeneration": 1}}}),
    );
    let mut phases: Vec<String> = Vec::new();
    wait_until(
        Duration::from_secs(300),
        "the password rotation to finish",
        || {
            let redis = suite.counter_cluster(ns, "likes").status?.redis?;
            if let Some(rotation) = &redis.password_rotation {
                let phase = format!("{:?}", rotation.phase);
                if phases.last() != Some(&phase) {
                    phases.push(phase);
                }
            }
            (redis.password_generation == Some(1) && redis.password_rotation.is_none())
                .then_some(())
        },
    );
    assert_eq!(
        phases,
        ["AcceptBoth", "UseNew", "DropOld"],
        "every step, in order"
    );
    let redis = suite.get::<StatefulSet>(ns, "likes-redis").expect("Redis");
    let new_secret = redis_secret_name(&redis);
    assert!(new_secret.ends_with("-1"), "{new_secret}");
    assert!(
        suite.get::<Secret>(ns, &new_secret).is_some(),
        "{new_secret}"
    );
    let container = &redis
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("a pod spec")
        .containers[0];
    assert!(
        container
            .args
            .iter()
            .flatten()
            .any(|a| a == "--requirepass")
            && !container
                .env
                .iter()
                .flatten()
                .any(|e| e.name == "REDIS_OTHER_PASSWORD"),
        "one password accepted again: {:?}",
        container.args
    );
    let cc = suite.wait_ready(ns, "likes");
    assert!(
        cc.status
            .and_then(|s| s.redis)
            .is_some_and(|r| r.state == "Ready")
    );

    suite.patch_spec(ns, "likes", json!({"redis": {"managed": {"replicas": 1}}}));
    let cc = suite.wait_ready(ns, "likes");
    let redis = cc.status.and_then(|s| s.redis).expect("a Redis status");
    assert_eq!((redis.state.as_str(), redis.sentinels), ("Ready", None));
    wait_until(Duration::from_secs(30), "the sentinels deleted", || {
        suite
            .get::<StatefulSet>(ns, "likes-redis-sentinel")
            .is_none()
            .then_some(())
    });
    assert!(suite.get::<Service>(ns, "likes-redis").is_some());
    assert_eq!(claim(suite, 0).expect("pod 0's claim").uid(), claim_0);
}

// --- 10. leader election --------------------------------------------------------------------------

/// Two operators with the chart's ServiceAccount: the second stands by; when the leader is
/// SIGKILLed (no release), the standby takes the real Lease once it expires, within the lease
/// duration plus one retry period of the leader's last renewal, and reconciles.
fn leader_failover(suite: &mut Suite) {
    assert_eq!(suite.operators.len(), 1, "operator-a runs");
    suite.start_operator("operator-b");
    let lease = |suite: &Suite| {
        suite
            .block_on(
                suite
                    .api::<Lease>(OPERATOR_NAMESPACE)
                    .get("highpress-operator"),
            )
            .expect("the Lease")
            .spec
            .expect("a Lease spec")
    };
    assert_eq!(lease(suite).holder_identity.as_deref(), Some("operator-a"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        metric_sum(
            &suite.operators[1].metrics(),
            "highpress_operator_leader",
            ""
        ),
        0.0,
        "operator-b stands by"
    );
    assert!(suite.operators[1].running());

    let duration = lease(suite)
        .lease_duration_seconds
        .expect("a lease duration");
    suite.operators[0].kill();
    let last_renewal = lease(suite).renew_time.expect("a renew time").0;
    let taken = wait_until(
        Duration::from_secs(60),
        "operator-b holding the Lease",
        || {
            let spec = lease(suite);
            (spec.holder_identity.as_deref() == Some("operator-b")).then_some(spec)
        },
    );
    let acquired = taken.acquire_time.expect("an acquire time").0;
    let gap = acquired.duration_since(last_renewal);
    let retry = highpress_operator::leader::LeaseTiming::default().retry_period;
    assert!(
        gap.as_secs_f64() >= f64::from(duration) - 1.0,
        "the standby waited for the Lease to expire (gap {gap:?}, duration {duration}s)"
    );
    assert!(
        gap.as_secs_f64() <= f64::from(duration) + retry.as_secs_f64() + 1.0,
        "the standby took the Lease within its duration plus one retry ({gap:?})"
    );
    suite.operators.remove(0);

    // The new leader reconciles.
    suite.patch_spec("apps", "likes", json!({ "gateway": { "replicas": 2 } }));
    wait_until(
        READY_TIMEOUT,
        "likes scaled to 2 gateways by the new leader",
        || {
            let cc = suite.wait_ready("apps", "likes");
            (cc.status?.gateway?.ready == "2/2").then_some(())
        },
    );
    assert_eq!(
        metric_sum(
            &suite.operators[0].metrics(),
            "highpress_operator_leader",
            ""
        ),
        1.0
    );
}

// --- cert-manager's CRDs ---------------------------------------------------------------------------

/// `security.tls.issuerRef` before cert-manager is installed: `Degraded`, naming cert-manager.
/// With its real CRDs (from its Go module; no cert-manager controller runs here, so nothing
/// issues the certificates): one `Certificate` per component, accepted by cert-manager's schema
/// and owned by the CounterCluster. Without `issuerRef` again: the Certificates are deleted and
/// the operator's own CA issues the Secrets.
fn with_cert_manager_crds(suite: &mut Suite) {
    let (namespace, name) = ("apps", "likes");
    suite.patch_spec(
        namespace,
        name,
        json!({"security": {"tls": {
            "api": true,
            "grpc": true,
            "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"},
        }}}),
    );
    wait_until(READY_TIMEOUT, "Degraded naming cert-manager", || {
        let cc = suite.counter_cluster(namespace, name);
        condition(&cc, "Degraded")
            .filter(|c| c.status == "True" && c.message.contains("cert-manager.io/v1"))
            .map(|_| ())
    });

    let crds = tools_dir().join("share/cert-manager-crds");
    suite
        .cluster
        .kubectl_ok(&["apply", "--server-side", "-f", &crds.to_string_lossy()]);
    suite.wait_established(&["certificates.cert-manager.io"]);
    let certificates: Api<DynamicObject> = Api::namespaced_with(
        suite.client.clone(),
        namespace,
        &highpress_operator::reconcile::build::security::certificate_resource(),
    );
    suite.nudge(namespace, name);
    let uid = suite.counter_cluster(namespace, name).uid();
    for (component, client_auth) in [("gateway", true), ("counter", false)] {
        let certificate_name = format!("{name}-{component}-tls");
        let certificate = wait_until(
            READY_TIMEOUT,
            &format!("Certificate {certificate_name}"),
            || {
                suite
                    .block_on(certificates.get_opt(&certificate_name))
                    .ok()
                    .flatten()
            },
        );
        let spec = &certificate.data["spec"];
        assert_eq!(spec["secretName"], certificate_name.as_str());
        assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
        assert_eq!(spec["issuerRef"]["group"], "cert-manager.io");
        let usages: Vec<&str> = spec["usages"]
            .as_array()
            .expect("usages")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(usages.contains(&"client auth"), client_auth, "{usages:?}");
        assert_eq!(
            certificate
                .owner_references()
                .first()
                .map(|o| Some(o.uid.clone())),
            Some(uid.clone()),
            "owned by the CounterCluster"
        );
    }
    // The status is written at the end of the reconcile that applied them.
    wait_until(READY_TIMEOUT, "no longer degraded", || {
        let cc = suite.counter_cluster(namespace, name);
        condition(&cc, "Degraded")
            .filter(|c| c.status == "False")
            .map(|_| ())
    });

    suite.patch_spec(
        namespace,
        name,
        json!({"security": {"tls": {"issuerRef": null}}}),
    );
    for component in ["gateway", "counter"] {
        let certificate_name = format!("{name}-{component}-tls");
        wait_until(
            READY_TIMEOUT,
            &format!("Certificate {certificate_name} deleted"),
            || {
                suite
                    .block_on(certificates.get_opt(&certificate_name))
                    .ok()
                    .and_then(|c| c.is_none().then_some(()))
            },
        );
    }
    wait_until(READY_TIMEOUT, "status.certificates", || {
        suite
            .counter_cluster(namespace, name)
            .status
            .and_then(|s| s.certificates)
    });
    suite.patch_spec(namespace, name, json!({"security": null}));
    suite.wait_ready(namespace, name);
}

// --- 11. with the Prometheus Operator's CRDs -------------------------------------------------------

/// Installs the Prometheus Operator's real CRDs (from its Go module): the examples that ask for
/// a ServiceMonitor get one, owned by their CounterCluster, and lose it when they stop asking;
/// the chart's own ServiceMonitor and PrometheusRule are accepted by those CRDs' schemas.
fn with_prometheus_crds(suite: &mut Suite) {
    let crds = tools_dir().join("share/prometheus-operator-crds");
    suite
        .cluster
        .kubectl_ok(&["apply", "--server-side", "-f", &crds.to_string_lossy()]);
    suite.wait_established(&[
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ]);
    let monitors = |namespace: &str| -> Api<DynamicObject> {
        let resource = ApiResource {
            group: "monitoring.coreos.com".into(),
            version: "v1".into(),
            api_version: "monitoring.coreos.com/v1".into(),
            kind: "ServiceMonitor".into(),
            plural: "servicemonitors".into(),
        };
        Api::namespaced_with(suite.client.clone(), namespace, &resource)
    };
    for (namespace, name) in EXAMPLES {
        suite.nudge(namespace, name);
    }
    for (namespace, name, wants_monitor) in [
        ("games", "scores", true),
        ("apps", "views", true),
        ("apps", "likes", false),
    ] {
        let cc = suite.wait_ready(namespace, name);
        let monitor = if wants_monitor {
            Some(wait_until(
                READY_TIMEOUT,
                &format!("ServiceMonitor {namespace}/{name}"),
                || {
                    suite
                        .block_on(monitors(namespace).get_opt(name))
                        .ok()
                        .flatten()
                },
            ))
        } else {
            std::thread::sleep(Duration::from_secs(1));
            suite
                .block_on(monitors(namespace).get_opt(name))
                .expect("reading")
        };
        assert_eq!(monitor.is_some(), wants_monitor, "{namespace}/{name}");
        if let Some(monitor) = monitor {
            assert!(
                monitor
                    .owner_references()
                    .iter()
                    .any(|r| Some(&r.uid) == cc.uid().as_ref() && r.controller == Some(true)),
                "the ServiceMonitor is controlled by its CounterCluster"
            );
        }
    }
    suite.patch_spec(
        "apps",
        "views",
        json!({ "observability": { "metrics": { "serviceMonitor": { "enabled": false } } } }),
    );
    suite.wait_ready("apps", "views");
    wait_until(READY_TIMEOUT, "the views ServiceMonitor deleted", || {
        suite
            .block_on(monitors("apps").get_opt("views"))
            .expect("reading")
            .is_none()
            .then_some(())
    });

    suite.cluster.helm_ok(&[
        "upgrade",
        "highpress",
        "charts/highpress",
        "-n",
        OPERATOR_NAMESPACE,
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
    ]);
    assert!(
        suite
            .block_on(monitors(OPERATOR_NAMESPACE).get_opt("highpress-operator"))
            .expect("reading")
            .is_some(),
        "the chart's ServiceMonitor was accepted"
    );
    let rules = suite.cluster.kubectl_ok(&[
        "-n",
        OPERATOR_NAMESPACE,
        "get",
        "prometheusrules",
        "-o",
        "name",
    ]);
    assert!(
        !rules.trim().is_empty(),
        "the chart's PrometheusRule was accepted"
    );
}

// --- 12. deletion --------------------------------------------------------------------------------

/// Deleting a CounterCluster: the garbage collector removes every object it controlled (and
/// their pods), and the managed Redis PVC stays.
fn deletion(suite: &mut Suite) {
    let cc = suite.counter_cluster("games", "scores");
    let owned = suite.children_versions(&cc);
    assert!(owned.contains_key("StatefulSet/scores-redis"), "{owned:?}");
    suite.delete_counter_cluster("games", "scores");
    wait_until(
        Duration::from_secs(120),
        "every child of scores collected",
        || {
            let left = suite.children_versions(&cc);
            let pods = suite
                .block_on(
                    suite
                        .api::<Pod>("games")
                        .list(&ListParams::default().labels("app.kubernetes.io/instance=scores")),
                )
                .expect("listing pods");
            (left.is_empty() && pods.items.is_empty()).then_some(())
        },
    );
    let pvc = suite
        .get::<PersistentVolumeClaim>("games", "data-scores-redis-0")
        .expect("the Redis PVC is retained");
    assert_eq!(pvc.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
}

// --- 13. helm upgrade and uninstall --------------------------------------------------------------

/// README: apply the CRD first, `helm upgrade` with changed values; to uninstall, delete the
/// CounterClusters, then `helm uninstall`. The CRD stays.
fn helm_upgrade_and_uninstall(suite: &mut Suite) {
    suite
        .cluster
        .kubectl_ok(&["apply", "--server-side", "-f", "deploy/crds/"]);
    suite.cluster.helm_ok(&[
        "upgrade",
        "highpress",
        "charts/highpress",
        "-n",
        OPERATOR_NAMESPACE,
        "--set",
        "logLevel=debug",
        "--set",
        "replicaCount=2",
    ]);
    let deployment = suite
        .get::<Deployment>(OPERATOR_NAMESPACE, "highpress-operator")
        .expect("the operator");
    let spec = deployment.spec.expect("a spec");
    assert_eq!(spec.replicas, Some(2));
    let env = spec.template.spec.expect("a pod spec").containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter().any(
            |e| e.name == "HIGHPRESS_OPERATOR_LOG_LEVEL" && e.value.as_deref() == Some("debug")
        ),
        "{env:?}"
    );
    suite.cluster.kubectl_ok(&[
        "-n",
        OPERATOR_NAMESPACE,
        "wait",
        "--for=condition=Available",
        "deployment/highpress-operator",
        "--timeout=60s",
    ]);

    suite.cluster.kubectl_ok(&[
        "delete",
        "cc",
        "--all",
        "-A",
        "--wait=true",
        "--timeout=120s",
    ]);
    suite.stop_operators();
    suite
        .cluster
        .helm_ok(&["uninstall", "highpress", "-n", OPERATOR_NAMESPACE, "--wait"]);
    assert!(
        suite
            .get::<Deployment>(OPERATOR_NAMESPACE, "highpress-operator")
            .is_none()
    );
    assert!(
        !suite
            .cluster
            .kubectl(&["get", "clusterrole", "highpress-operator"])
            .status
            .success()
    );
    let crds: Api<CustomResourceDefinition> = Api::all(suite.client.clone());
    assert!(
        suite
            .block_on(crds.get_opt("counterclusters.highpress.dev"))
            .expect("reading")
            .is_some(),
        "the CRD stays installed"
    );
}
