//! Server-side apply: the one place that writes child objects to the API server, and the only
//! way [`super::apply`] writes or deletes one.
//!
//! Contract:
//! - Objects are written with server-side apply under field manager [`FIELD_MANAGER`]. The
//!   first apply is not forced. On a conflict it is retried with `force` only when every
//!   conflicting manager is the operator itself, cert-manager (the TLS Secrets it wrote while
//!   `security.tls.issuerRef` was set), or the field is `.spec.replicas` (which the
//!   HPA's controller owned while autoscaling was on); any other conflict, such as a person's
//!   `kubectl edit` of a field the operator sets, fails the apply and names the manager.
//! - A disabled feature's object is deleted only when it is controlled by this CounterCluster
//!   (its controller owner reference carries the CounterCluster's uid), with a uid
//!   precondition, so a same-named object someone else created is never touched.

use std::fmt::Debug;

use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::CounterCluster;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "highpress-operator";

/// The prefix of cert-manager's field managers. It writes only the TLS Secrets, while
/// `security.tls.issuerRef` is set; when it goes, the operator issues them again, over what
/// cert-manager wrote.
const CERT_MANAGER_FIELD_MANAGERS: &str = "cert-manager";

/// A failed write, naming the object.
#[derive(Debug, thiserror::Error)]
#[error("{verb} {kind} {name}: {source}")]
pub struct WriteError {
    /// `apply` or `delete`.
    pub verb: &'static str,
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// Server-side applies `object` (in its own namespace) and returns the live object.
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, WriteError>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.name_any();
    let params = PatchParams::apply(FIELD_MANAGER);
    let result = match api.patch(&name, &params, &Patch::Apply(object)).await {
        Err(kube::Error::Api(status)) if status.is_conflict() && forceable(&status.message) => {
            api.patch(&name, &params.force(), &Patch::Apply(object))
                .await
        }
        other => other,
    };
    result.map_err(|source| WriteError {
        verb: "apply",
        kind: kind_of(object),
        name,
        source,
    })
}

/// Deletes the `kind` object `name` if it exists and is controlled by `owner`; otherwise does
/// nothing.
pub async fn delete_owned<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    owner: &CounterCluster,
) -> Result<(), WriteError>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    let error = |source| WriteError {
        verb: "delete",
        kind: kind.to_owned(),
        name: name.to_owned(),
        source,
    };
    let Some(object) = api.get_opt(name).await.map_err(error)? else {
        return Ok(());
    };
    let owner_uid = owner.uid();
    let controlled = object
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == owner_uid.as_ref());
    if !controlled {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: object.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(error(source)),
    }
}

/// The `kind` an object serializes with (every object built here carries it).
fn kind_of<K: Serialize>(object: &K) -> String {
    serde_json::to_value(object)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "object".to_owned())
}

/// Whether a server-side apply conflict may be forced: every conflict in the API server's
/// message is with [`FIELD_MANAGER`] itself or on `.spec.replicas`.
///
/// The message has the form `Apply failed with 2 conflicts: conflict with "kubectl-edit"
/// using apps/v1: .spec.template.spec.containers[...]` with one `conflict with` per field,
/// separated by newlines when there are several.
pub fn forceable(message: &str) -> bool {
    let conflicts: Vec<&str> = message.split("conflict with \"").skip(1).collect();
    !conflicts.is_empty()
        && conflicts.iter().all(|conflict| {
            let manager = conflict.split('"').next().unwrap_or_default();
            let fields = conflict.rsplit(": ").next().unwrap_or_default().trim();
            manager == FIELD_MANAGER
                || fields == ".spec.replicas"
                || manager.starts_with(CERT_MANAGER_FIELD_MANAGERS)
        })
}

#[cfg(test)]
mod tests {
    use super::forceable;

    #[test]
    fn conflicts_with_the_operator_itself_or_on_replicas_are_forced() {
        assert!(forceable(
            r#"Apply failed with 1 conflict: conflict with "highpress-operator" using apps/v1: .spec.template"#
        ));
        assert!(forceable(
            r#"Apply failed with 1 conflict: conflict with "kube-controller-manager" using apps/v1: .spec.replicas"#
        ));
    }

    #[test]
    fn conflicts_with_cert_manager_over_a_tls_secret_are_forced() {
        assert!(forceable(
            r#"Apply failed with 1 conflict: conflict with "cert-manager-certificates-issuing" using v1: .data.tls.crt"#
        ));
    }

    #[test]
    fn conflicts_with_people_are_not_forced() {
        assert!(!forceable(
            r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.template.spec.containers[name="gateway"].image"#
        ));
        assert!(!forceable(
            "Apply failed with 2 conflicts: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas\nconflict with \"kubectl-edit\" using apps/v1: .spec.paused"
        ));
        assert!(!forceable(
            "Operation cannot be fulfilled: the object has been modified"
        ));
    }
}
