//! `highpress-operator render`: CounterCluster documents in, every object they become out, as
//! multi-document YAML. Needs no cluster: for review, GitOps, and the offline tests.
//!
//! Contract: input documents that are empty are skipped; any other document must be a
//! `highpress.dev/v1alpha1` CounterCluster with a `metadata.name`, or nothing is printed.
//! A file's CounterClusters have no `metadata.uid`, so the output carries no owner
//! references (the API server would reject one without a uid); the reconciler adds them.

use serde::Deserialize;
use serde_json::Value;

use crate::build::{BuildContext, build_all};
use crate::crd::CounterCluster;
use crate::{Error, Result};

/// Parses every CounterCluster in `input` (one or more YAML documents).
pub fn parse_counter_clusters(input: &str) -> Result<Vec<CounterCluster>> {
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
        clusters.push(cc);
    }
    Ok(clusters)
}

/// Every object built from the CounterClusters in `input`, as multi-document YAML, each
/// CounterCluster's objects in apply order.
pub fn render(input: &str, ctx: &BuildContext) -> Result<String> {
    let mut out = String::new();
    for cc in parse_counter_clusters(input)? {
        let values = build_all(&cc, ctx)
            .to_values()
            .map_err(Error::SerializeObject)?;
        for value in values {
            out.push_str("---\n");
            out.push_str(&crate::yaml::to_yaml(&value));
        }
    }
    Ok(out)
}
