//! TLS on the managed Redis (`security.tls.redis`): what the Redis and sentinel containers
//! become, and what their clients need.
//!
//! Contract:
//! - Every Redis and sentinel port speaks TLS alone: `--port 0` and `--tls-port` on the same
//!   port number as before, so Services, addresses and NetworkPolicies do not change.
//!   Replication and the sentinels' links go over TLS too (`tls-replication`).
//! - One certificate, in the Secret `<name>-redis-tls` mounted at the usual TLS path, names
//!   both Services, their pods (`*.<service>.<ns>.svc`) and `localhost` (the exporter and the
//!   probes). Clients are not asked for a certificate: they log in with the password.
//! - The counters get the Secret's `ca.crt` alone (never the key) at the path
//!   `redis.external.tls` uses, and render `redis.tls` with it.
//! - A renewed certificate is picked up where it lands: each container runs under
//!   [`TLS_SUPERVISE_SCRIPT`], which has Redis load it with `CONFIG SET` and restarts a sentinel
//!   (which has no CONFIG), one sentinel at a time.

use k8s_openapi::api::core::v1::{Container, EnvVar, Volume, VolumeMount};

use super::security::{
    TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, TLS_MOUNT_PATH, read_only_mount, secret_volume,
};
use super::sentinel::env_value;
use crate::crd::{CounterCluster, RedisMode};

/// The script every TLS Redis and sentinel container runs its server under (`sh -c`).
pub const TLS_SUPERVISE_SCRIPT: &str = include_str!("scripts/tls-supervise.sh");

/// Name of the TLS volume in the Redis and sentinel pods.
const TLS_VOLUME: &str = "tls";

/// How a container picks up a renewed certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Redis: `CONFIG SET` of the same files.
    Reload,
    /// A sentinel: a restart of its process, from the config file it keeps.
    Restart,
}

impl Renewal {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reload => "reload",
            Self::Restart => "restart",
        }
    }
}

/// Whether `cc` runs its managed Redis over TLS.
pub fn managed_redis_tls(cc: &CounterCluster) -> bool {
    cc.spec.redis.mode == RedisMode::Managed && cc.spec.security.tls.redis
}

/// redis-cli's TLS flags for a client in a Redis or sentinel pod, with a trailing space; empty
/// without TLS.
pub fn redis_cli_tls_flags(cc: &CounterCluster) -> String {
    if managed_redis_tls(cc) {
        format!("--tls --cacert {TLS_CA_FILE} ")
    } else {
        String::new()
    }
}

/// The server arguments that listen on `port`: `--port <port>`, or with TLS `--port 0
/// --tls-port <port>` and the certificate files.
pub fn listen_args(cc: &CounterCluster, port: i32) -> Vec<String> {
    if !managed_redis_tls(cc) {
        return vec!["--port".to_owned(), port.to_string()];
    }
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        TLS_CERT_FILE,
        "--tls-key-file",
        TLS_KEY_FILE,
        "--tls-ca-cert-file",
        TLS_CA_FILE,
        "--tls-auth-clients",
        "no",
        "--tls-replication",
        "yes",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// With TLS, runs `container`'s command under [`TLS_SUPERVISE_SCRIPT`], mounts the Secret
/// `secret` and returns its volume; without, leaves `container` as it is.
pub fn supervise(
    cc: &CounterCluster,
    container: &mut Container,
    renewal: Renewal,
    secret: &str,
) -> Option<Volume> {
    if !managed_redis_tls(cc) {
        return None;
    }
    let mut command: Vec<String> = ["sh", "-c", TLS_SUPERVISE_SCRIPT, "tls-supervise"]
        .map(str::to_owned)
        .to_vec();
    command.push(renewal.as_str().to_owned());
    command.extend(container.command.take().unwrap_or_default());
    container.command = Some(command);
    let env: &mut Vec<EnvVar> = container.env.get_or_insert_with(Vec::new);
    env.push(env_value("TLS_DIR", TLS_MOUNT_PATH));
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(tls_mount());
    Some(tls_volume(secret))
}

/// The TLS Secret's mount, read-only.
pub fn tls_mount() -> VolumeMount {
    read_only_mount(TLS_VOLUME, TLS_MOUNT_PATH)
}

/// The TLS Secret `secret` as a volume.
pub fn tls_volume(secret: &str) -> Volume {
    secret_volume(TLS_VOLUME, secret, None)
}
