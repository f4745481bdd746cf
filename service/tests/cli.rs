//! The binary's start-up contract: a bad configuration exits non-zero naming the key; the
//! shipped config file and HighGoPress's config file load.

use std::process::Command;

fn run_with(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_highpress"))
        .arg("standalone")
        .args(args)
        .envs(env.iter().copied())
        .env("HIGHPRESS_SERVER__HOST", "127.0.0.1")
        .output()
        .expect("run highpress");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_configuration_exits_2_naming_the_key() {
    for (env, key) in [
        (("HIGHPRESS_SERVER__PORT", "eighty"), "server.port"),
        (("HIGHPRESS_STORE__KIND", "cassandra"), "store.kind"),
        (("HIGHPRESS_LOG__LEVEL", "chatty"), "log.level"),
        (
            ("HIGHPRESS_COALESCING__MAX_BATCH", "0"),
            "coalescing.max_batch",
        ),
        (("HIGHPRESS_REDIS__ADRESS", "x:1"), "adress"),
    ] {
        let (code, stderr) = run_with(&[env], &[]);
        assert_eq!(code, 2, "{env:?}: {stderr}");
        assert!(stderr.contains(key), "{env:?}: {stderr}");
    }
    let (code, stderr) = run_with(
        &[
            ("HIGHPRESS_STORE__KIND", "redis"),
            ("HIGHPRESS_REDIS__ADDR", "nonsense"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("redis.addr"), "{stderr}");
}

#[test]
fn missing_config_file_is_an_error() {
    let (code, stderr) = run_with(&[], &["--config", "/nonexistent/highpress.yaml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/highpress.yaml"), "{stderr}");
}

#[test]
fn shipped_config_file_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/config.yaml");
    let config = highpress::config::Config::load(Some(std::path::Path::new(path)))
        .expect("configs/config.yaml loads");
    assert_eq!(config.store.kind, highpress::config::StoreKind::Redis);
    assert_eq!(config.server.port, 8080);
}
