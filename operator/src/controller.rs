//! The controller: which watch events start a [`reconcile`](crate::reconcile::reconcile) of
//! which CounterCluster.
//!
//! Contract:
//! - One controller runs per watched namespace (one cluster-wide when none is named). It
//!   watches the CounterClusters and every kind of child they own ([`ChildKind`]), selected by
//!   the `app.kubernetes.io/managed-by` label and mapped to their CounterCluster by the
//!   controller owner reference, so a change to any child (a Service, a ConfigMap, a PDB...)
//!   starts a reconcile within seconds instead of at the next resync: a deleted child is
//!   re-created, a conflicting edit is reported as the apply's conflict policy says.
//! - The one child kind not watched is the Redis password Secret: watching needs `list` and
//!   `watch`, which read every Secret's data, and the operator may only create Secrets.
//! - ServiceMonitors exist only where the prometheus-operator CRDs are installed. Their watch
//!   retries with its own backoff (up to every 30 s) and its errors are logged (a 404 at debug
//!   level, anything else as a warning), never passed on: the runtime backs off every watch of
//!   a controller when one of them fails, so an absent CRD would otherwise delay every
//!   reconcile. Once the CRDs are installed, the retry finds them.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::crd::CounterCluster;
use crate::reconcile::build::service_monitor::service_monitor_resource;
use crate::reconcile::build::{ChildKind, MANAGED_BY};
use crate::reconcile::{self, Context};

type CounterClusterController = Controller<DeserializeGuard<CounterCluster>>;

/// Runs one controller per watched namespace (one cluster-wide when the list is empty) until
/// `shutdown`.
pub async fn run_controllers(
    client: Client,
    namespaces: &[String],
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    };
    let controllers = scopes.into_iter().map(|namespace| {
        tracing::info!(
            namespace = namespace.unwrap_or("<all>"),
            "watching CounterClusters and their children"
        );
        let counter_clusters = api::<DeserializeGuard<CounterCluster>>(&client, namespace);
        let controller = Controller::new(counter_clusters, watcher::Config::default());
        watch_children(controller, &client, namespace)
            .graceful_shutdown_on(shutdown.clone().cancelled_owned())
            .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                    Err(error) => tracing::debug!(%error, "reconcile or watch error"),
                }
            })
    });
    join_all(controllers).await;
}

/// Adds a watch of each kind in [`ChildKind::ALL`]; the match names every kind, so a new one
/// does not compile until it is watched here or the reason it is not is written down.
fn watch_children(
    controller: CounterClusterController,
    client: &Client,
    namespace: Option<&str>,
) -> CounterClusterController {
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    ChildKind::ALL
        .into_iter()
        .fold(controller, |controller, kind| match kind {
            ChildKind::ConfigMap => {
                controller.owns(api::<ConfigMap>(client, namespace), owned.clone())
            }
            // Not watched: see the module's contract. A deleted Secret is created again (with a
            // new password) by the next reconcile that any other event or the resync starts.
            ChildKind::Secret => controller,
            ChildKind::Service => controller.owns(api::<Service>(client, namespace), owned.clone()),
            ChildKind::StatefulSet => {
                controller.owns(api::<StatefulSet>(client, namespace), owned.clone())
            }
            ChildKind::Deployment => {
                controller.owns(api::<Deployment>(client, namespace), owned.clone())
            }
            ChildKind::HorizontalPodAutoscaler => controller.owns(
                api::<HorizontalPodAutoscaler>(client, namespace),
                owned.clone(),
            ),
            ChildKind::PodDisruptionBudget => {
                controller.owns(api::<PodDisruptionBudget>(client, namespace), owned.clone())
            }
            ChildKind::NetworkPolicy => {
                controller.owns(api::<NetworkPolicy>(client, namespace), owned.clone())
            }
            ChildKind::ServiceMonitor => {
                watch_service_monitors(controller, client, namespace, owned.clone())
            }
        })
}

/// The ServiceMonitor watch, whose API group may not be served (yet): see the module contract.
fn watch_service_monitors(
    controller: CounterClusterController,
    client: &Client,
    namespace: Option<&str>,
    owned: watcher::Config,
) -> CounterClusterController {
    let resource = service_monitor_resource();
    let api: Api<PartialObjectMeta<DynamicObject>> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let monitors = watcher(api, owned)
        .default_backoff()
        .filter_map(|event| {
            futures::future::ready(match event {
                Ok(event) => Some(Ok(event)),
                Err(error) if group_not_served(&error) => {
                    tracing::debug!(%error, "ServiceMonitors are not served (no prometheus-operator CRDs); retrying");
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, "watching ServiceMonitors failed; retrying");
                    None
                }
            })
        })
        .touched_objects();
    controller.owns_stream_with(monitors, resource)
}

/// Whether a watch error says the API group is not served: a 404, which a real kube-apiserver
/// sends as plain text for an unserved group (see `reconcile::apply`'s discovery).
fn group_not_served(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 404,
        watcher::Error::WatchError(status) => status.code == 404,
        _ => false,
    }
}

/// An API of `K` in `namespace`, or in all namespaces.
fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    #[test]
    fn only_a_404_means_the_service_monitor_group_is_not_served() {
        let list_failed = |code| {
            watcher::Error::InitialListFailed(kube::Error::Api(Box::new(
                Status::failure("failed", "Failed to parse error data").with_code(code),
            )))
        };
        assert!(group_not_served(&list_failed(404)));
        assert!(!group_not_served(&list_failed(403)));
        assert!(!group_not_served(&watcher::Error::NoResourceVersion));
    }
}
