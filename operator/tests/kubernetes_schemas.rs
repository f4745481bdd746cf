//! Every object `render` builds from the examples, and the CRD itself, validate against the
//! official Kubernetes JSON schemas in strict mode (unknown fields rejected), with
//! `kubernetes-validate` (installed by `scripts/install-test-deps.sh`). A missing validator
//! fails the test; it is never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn validate(file: &Path) {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .arg(file)
        .output()
        .expect("python3 runs (scripts/install-test-deps.sh installs kubernetes-validate)");
    assert!(
        out.status.success(),
        "{} does not validate:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rendered_examples_validate_against_the_kubernetes_schemas() {
    let dir = std::env::temp_dir().join(format!("highpress-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(workspace_path("deploy/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 3, "examples missing: {examples:?}");
    for example in examples {
        let out = Command::new(env!("CARGO_BIN_EXE_highpress-operator"))
            .arg("render")
            .arg(&example)
            .output()
            .expect("run highpress-operator render");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = dir.join(example.file_name().unwrap());
        std::fs::write(&rendered, &out.stdout).unwrap();
        validate(&rendered);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_crd_validates_against_the_kubernetes_schemas() {
    validate(&workspace_path(
        "deploy/crds/highpress.dev_counterclusters.yaml",
    ));
}

#[test]
fn the_validator_rejects_an_invalid_object() {
    // Guards against a validator that accepts everything: an unknown field in strict mode.
    let file = std::env::temp_dir().join(format!("highpress-invalid-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}], bogusField: 1}\n",
    )
    .unwrap();
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        !out.status.success(),
        "strict validation accepted an unknown field"
    );
}
