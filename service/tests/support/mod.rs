//! Shared fixtures for integration tests, one file per component: real `redis-server`
//! processes (`redis`), `highpress` deployments in every topology (`highpress`), an Apache Kafka
//! broker and an event collector (`kafka`), a Jaeger v2 and its query API (`jaeger`), a per-key
//! load for fault tests (`load`), the HTTP client and assertions (`http`), and certificates made
//! with openssl for TLS tests (`certs`). Every process is
//! owned by a guard that kills it on drop, panic included. A missing tool fails the test (run
//! `scripts/install-test-deps.sh`); nothing is skipped.

#![allow(dead_code)]

mod certs;
mod highpress;
mod http;
mod jaeger;
mod kafka;
mod load;
mod redis;

// Each test binary uses some of these, so any one of them may be unused in a given binary.
#[allow(unused_imports)]
pub use certs::*;
#[allow(unused_imports)]
pub use highpress::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use jaeger::*;
#[allow(unused_imports)]
pub use kafka::*;
#[allow(unused_imports)]
pub use load::*;
#[allow(unused_imports)]
pub use redis::*;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768–60999), so that no
/// outgoing connection's source port can take one between the check and the server's bind (a
/// port the kernel picked with `bind(:0)` is exactly such an ephemeral port: that race failed
/// a counter with `Address already in use` under load). Redis Cluster's bus port, the node's
/// port + 10000, lands in 20000–29999, which is never handed out either.
const PORTS: std::ops::Range<u16> = 10_000..20_000;

/// SIGKILLs the process in `child`, if any, and waits for it, so it is neither left running nor
/// left a zombie. Every process guard's `kill` and `drop` end here.
fn kill_and_reap(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A free TCP port on 127.0.0.1, never the same one twice in this process.
/// Polls `done` every 50 ms until it holds; fails the test naming `what` after `within`.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    // Test binaries that run one after the other start at different places in the range.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = PORTS.start + u16::try_from(offset).expect("offset < span");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PORTS:?}")
}

fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "highpress-{prefix}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// `name` from `PATH`, else from the tools dir scripts/install-test-deps.sh installs into
/// (`$HIGHPRESS_TOOLS_DIR/bin`, default `~/.cache/highpress-tools/bin`), so a plain `cargo test`
/// finds what `make test` puts on `PATH`.
pub fn tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        let dir = std::env::var_os("HIGHPRESS_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                    .join(".cache/highpress-tools")
            });
        dir.join("bin").join(name)
    })
}
