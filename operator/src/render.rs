//! `highpress-operator render`: CounterCluster documents in, every object they become out, as
//! multi-document YAML. Needs no cluster: for review, GitOps, and the offline tests.
//!
//! Contract: input documents that are empty are skipped; any other document must be a
//! `highpress.dev/v1alpha1` CounterCluster with a `metadata.name` that passes the reconciler's
//! own [`validate`], or nothing is printed: `render` prints exactly the objects the reconciler
//! would apply, and rejects a spec the reconciler would report `Degraded/InvalidSpec` with the
//! same message. A file's CounterClusters have no `metadata.uid`, so the output carries no
//! owner references (the API server would reject one without a uid); the reconciler adds them.

use serde::Deserialize;
use serde_json::Value;

use crate::crd::CounterCluster;
use crate::reconcile::build::{BuildContext, build_all};
use crate::reconcile::validate::{ValidCounterCluster, validate};
use crate::{Error, Result};

/// Parses every CounterCluster in `input` (one or more YAML documents), valid or not.
pub fn parse_counter_clusters(input: &str) -> Result<Vec<CounterCluster>> {
    Ok(parse_documents(input)?
        .into_iter()
        .map(|(_, cc)| cc)
        .collect())
}

/// Parses and validates every CounterCluster in `input`; the first invalid one is the error.
pub fn valid_counter_clusters(input: &str) -> Result<Vec<ValidCounterCluster>> {
    parse_documents(input)?
        .into_iter()
        .map(|(document, cc)| {
            validate(&cc).map_err(|source| Error::InvalidSpec {
                document,
                name: cc.metadata.name.clone().unwrap_or_default(),
                source,
            })
        })
        .collect()
}

/// The CounterClusters of `input` with the (1-based) number of the document each came from.
fn parse_documents(input: &str) -> Result<Vec<(usize, CounterCluster)>> {
    let mut clusters = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(input).enumerate() {
        let value = Value::deserialize(document).map_err(|source| Error::ParseInput {
            document: index + 1,
            source,
        })?;
        if value.is_null() {
            continue;
        }
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        if kind != "CounterCluster" || api_version != "highpress.dev/v1alpha1" {
            return Err(Error::NotACounterCluster {
                document: index + 1,
                found: format!("{api_version} {kind}"),
            });
        }
        if value["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            return Err(Error::MissingName {
                document: index + 1,
            });
        }
        let cc: CounterCluster =
            serde_json::from_value(value).map_err(|source| Error::InvalidCounterCluster {
                document: index + 1,
                source,
            })?;
        clusters.push((index + 1, cc));
    }
    Ok(clusters)
}

/// Every object built from the CounterClusters in `input`, as multi-document YAML, each
/// CounterCluster's objects in apply order. Nothing is rendered unless every one is valid.
pub fn render(input: &str, ctx: &BuildContext) -> Result<String> {
    let mut out = String::new();
    for cc in valid_counter_clusters(input)? {
        out.push_str(&render_counter_cluster(&cc, ctx)?);
    }
    Ok(out)
}

/// Every object built from `cc`, as multi-document YAML in apply order.
pub fn render_counter_cluster(cc: &ValidCounterCluster, ctx: &BuildContext) -> Result<String> {
    let values = build_all(cc, ctx)
        .to_values()
        .map_err(Error::SerializeObject)?;
    let mut out = String::new();
    for value in values {
        out.push_str("---\n");
        out.push_str(&crate::yaml::to_yaml(&value));
    }
    Ok(out)
}
