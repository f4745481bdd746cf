//! The committed CRD manifest must be byte-for-byte what `highpress-operator crd` prints.
//!
//! On drift, regenerate with
//! `cargo run -p highpress-operator -- crd > deploy/crds/highpress.dev_counterclusters.yaml`.

use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent directory")
        .to_path_buf()
}

fn committed_crd() -> String {
    let path = repo_root().join(highpress_operator::CRD_MANIFEST_PATH);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn committed_crd_matches_crd_subcommand_output() {
    let output = Command::new(env!("CARGO_BIN_EXE_highpress-operator"))
        .arg("crd")
        .output()
        .expect("running highpress-operator crd");
    assert!(
        output.status.success(),
        "highpress-operator crd failed: {output:?}"
    );
    let printed = String::from_utf8(output.stdout).expect("crd output is UTF-8");
    assert!(
        printed == committed_crd(),
        "{} is out of date with operator/src/crd.rs; regenerate it with \
         `cargo run -p highpress-operator -- crd > {}`",
        highpress_operator::CRD_MANIFEST_PATH,
        highpress_operator::CRD_MANIFEST_PATH,
    );
}

#[test]
fn committed_crd_matches_library_rendering() {
    let rendered = highpress_operator::crd_yaml().expect("the CRD renders");
    assert_eq!(rendered, committed_crd());
}

/// Without a cluster (no in-cluster service account, no kubeconfig) `run`, also the default
/// command, logs its start as a JSON line and exits non-zero naming the missing client config.
#[test]
fn run_without_a_cluster_logs_json_and_fails_clearly() {
    let home = std::env::temp_dir().join(format!("highpress-operator-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("a temp HOME");
    for args in [&["run"][..], &[][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_highpress-operator"))
            .args(args)
            .env_clear()
            .env("HOME", &home)
            .env("KUBECONFIG", home.join("missing-kubeconfig"))
            .env("HIGHPRESS_OPERATOR_HTTP_ADDR", "127.0.0.1:0")
            .output()
            .expect("running highpress-operator");
        assert!(!output.status.success(), "args {args:?} must exit non-zero");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("configuring the Kubernetes client"),
            "args {args:?}: stderr was {stderr}"
        );
        let first = stderr.lines().next().unwrap_or_default();
        let log: serde_json::Value = serde_json::from_str(first)
            .unwrap_or_else(|e| panic!("args {args:?}: the first line is not JSON ({e}): {first}"));
        assert_eq!(log["level"], "INFO", "{log}");
        assert_eq!(log["message"], "starting highpress-operator", "{log}");
    }
    let _ = std::fs::remove_dir_all(&home);
}
