//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated client-side by kube's CEL
//! engine (the `cel` feature, kube-cel) against the committed CRD's schema, as an API server
//! would after defaulting: every example passes, and every rule rejects its counterexample with
//! its own message. A rule without a counterexample here fails the test, so new rules cannot
//! go untested.

mod support;

use highpress_operator::crd::CounterCluster;
use highpress_operator::render::parse_counter_clusters;
use kube::core::cel::Validator;
use serde_json::Value;
use support::{cel_counterexamples, cluster, example_names, example_text, repo_root};

/// The committed CRD's `openAPIV3Schema`.
fn schema() -> Value {
    let path = repo_root().join(highpress_operator::CRD_MANIFEST_PATH);
    let text = std::fs::read_to_string(&path).expect("the committed CRD");
    let crd: Value = serde_norway::from_str(&text).expect("CRD YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The CEL messages `cc` violates; defaults are filled in by deserialization, as the API
/// server fills them in before evaluating CEL.
fn violations(cc: &CounterCluster) -> Vec<String> {
    let object = serde_json::to_value(cc).expect("JSON");
    match Validator::new().validate(&schema(), &object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

fn rule_messages(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for rule in rules {
                    out.push(rule["message"].as_str().expect("a message").to_owned());
                }
            }
            map.values().for_each(|v| rule_messages(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| rule_messages(v, out)),
        _ => {}
    }
}

#[test]
fn every_example_passes_the_cel_rules() {
    for name in example_names() {
        for cc in parse_counter_clusters(&example_text(&name)).expect("parses") {
            assert_eq!(violations(&cc), Vec::<String>::new(), "{name}");
        }
    }
}

#[test]
fn every_cel_rule_rejects_its_counterexample_with_its_message() {
    let counterexamples = cel_counterexamples();

    let mut messages = Vec::new();
    rule_messages(&schema(), &mut messages);
    messages.sort();
    let mut covered: Vec<String> = counterexamples
        .iter()
        .map(|(m, _)| (*m).to_owned())
        .collect();
    covered.sort();
    assert_eq!(
        covered, messages,
        "every CEL rule of the CRD has exactly one counterexample here"
    );

    assert_eq!(
        violations(&cluster()),
        Vec::<String>::new(),
        "the defaults pass"
    );
    for (message, cc) in counterexamples {
        assert_eq!(violations(&cc), [message.to_owned()], "{message}");
    }
}
