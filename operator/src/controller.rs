//! The controller: which watch events start a [`reconcile`](crate::reconcile::reconcile) of
//! which CounterCluster.
//!
//! Contract: one controller runs per watched namespace (one cluster-wide when none is named).
//! It watches the CounterClusters and the Deployments and StatefulSets they own, selected by
//! the `app.kubernetes.io/managed-by` label and mapped to their CounterCluster by the
//! controller owner reference. Drift in any other child waits for the resync.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Api;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::crd::CounterCluster;
use crate::reconcile::build::MANAGED_BY;
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
            "watching CounterClusters"
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

/// Adds a watch of the Deployments and StatefulSets the CounterClusters own.
fn watch_children(
    controller: CounterClusterController,
    client: &Client,
    namespace: Option<&str>,
) -> CounterClusterController {
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    controller
        .owns(api::<Deployment>(client, namespace), owned.clone())
        .owns(api::<StatefulSet>(client, namespace), owned)
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
