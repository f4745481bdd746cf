//! Replication of a replicated managed Redis as its sentinels see it: which pod is the primary
//! and how many replicas are in sync with it, for `status.redis`.
//!
//! Contract:
//! - Every sentinel is asked at once, each within [`OBSERVE_TIMEOUT`]: a sentinel that is
//!   down or frozen costs the reconcile at most that long.
//! - The operator logs in as [`OBSERVER_USER`], a user that each sentinel's generated config
//!   defines without a password and that may only run `PING`,
//!   `SENTINEL get-master-addr-by-name` and `SENTINEL replicas`. So the operator needs neither
//!   the Redis password (it may create Secrets but not read them) nor any power over the set:
//!   the user cannot fail it over, reconfigure it or reach Redis.
//! - The primary is the address that a quorum ([`SENTINEL_QUORUM`]) of the sentinels that
//!   answered agree on, named by its pod; fewer answers, or no such agreement (a failover in
//!   progress), leave it unknown, with the reason.
//! - A replica is in sync when a sentinel that named the primary sees it replicating from
//!   that primary with its link up: no `s_down`, `o_down` or `disconnected` flag,
//!   `master-link-status` `ok`. Sentinels refresh what they know of replicas every 10 seconds
//!   (every second during a failover), so the count can be that old.
//! - With `security.tls.redis` the sentinels are asked over TLS ([`Trust`]): verified against
//!   the operator's CA bundle when the operator issued their certificate; unverified when
//!   cert-manager did, since the operator may not read the Secret with the issuer's CA. The
//!   user sends no password and reads only the topology, so a forged answer could only
//!   mislead `status.redis`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
    TlsCertificates,
};

use super::build::child_name;
use super::build::sentinel::{SENTINEL_QUORUM, redis_addrs, sentinel_addrs, sentinel_master_name};
use crate::crd::CounterCluster;

/// The sentinels' read-only user for the operator, defined without a password.
pub const OBSERVER_USER: &str = "highpress-observer";

/// The ACL rules of [`OBSERVER_USER`]: topology reads and nothing else.
pub const OBSERVER_RULES: &str =
    "on nopass -@all +ping +sentinel|get-master-addr-by-name +sentinel|replicas";

/// How long asking every sentinel may take, connecting included.
pub const OBSERVE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the sentinels said about the set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replication {
    /// A quorum of the sentinels agree on the primary.
    Known {
        /// The primary's pod name, or its `host:port` when it is no pod of this set.
        primary: String,
        /// Replicas in sync with the primary.
        in_sync: i32,
    },
    /// Why the primary is not known.
    Unknown(String),
}

/// One Redis pod: its name and the `host:port` the sentinels announce it under.
#[derive(Clone, Debug)]
pub struct RedisPod {
    /// The pod's name, `<name>-redis-<ordinal>`.
    pub name: String,
    /// `host:port` as the sentinels name it.
    pub addr: String,
}

/// How the sentinels' TLS certificates are checked.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Against these PEM CA certificates.
    Roots(String),
    /// Not at all (encrypted, not authenticated).
    Unverified,
}

/// Asks the sentinels of `cc`'s replicated managed Redis, at their in-cluster hostnames; over
/// TLS when `tls` is given.
pub async fn observe_counter_cluster(cc: &CounterCluster, tls: Option<&Trust>) -> Replication {
    let pods: Vec<RedisPod> = redis_addrs(cc)
        .into_iter()
        .enumerate()
        .map(|(ordinal, addr)| RedisPod {
            name: format!("{}-{ordinal}", child_name(cc, "redis")),
            addr,
        })
        .collect();
    observe(&sentinel_addrs(cc), &sentinel_master_name(cc), &pods, tls).await
}

/// Asks every sentinel in `sentinels` (`host:port`) about `master_name`, over TLS when `tls`
/// is given; `pods` turn the address they name into a pod name.
pub async fn observe(
    sentinels: &[String],
    master_name: &str,
    pods: &[RedisPod],
    tls: Option<&Trust>,
) -> Replication {
    // In the sentinels' order, so the reason for an unknown primary names the same sentinel
    // every time and an unchanged set does not rewrite the status.
    let asks = sentinels.iter().map(|addr| async move {
        tokio::time::timeout(OBSERVE_TIMEOUT, ask(addr, master_name, tls))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "sentinel {addr}: no answer within {} s",
                    OBSERVE_TIMEOUT.as_secs()
                ))
            })
    });
    agree(join_all(asks).await, pods)
}

/// One sentinel's view: the primary it names and the replicas in sync with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelView {
    /// `host:port` of the primary.
    pub primary: String,
    /// Replicas in sync with that primary.
    pub in_sync: i32,
}

/// The primary that a quorum of the answers name, with the fewest in-sync replicas any of
/// those sentinels sees.
pub fn agree(answers: Vec<Result<SentinelView, String>>, pods: &[RedisPod]) -> Replication {
    let mut votes: BTreeMap<&str, Vec<&SentinelView>> = BTreeMap::new();
    let mut errors = Vec::new();
    for answer in &answers {
        match answer {
            Ok(view) => votes.entry(view.primary.as_str()).or_default().push(view),
            Err(e) => errors.push(e.as_str()),
        }
    }
    let winner = votes
        .iter()
        .find(|(_, views)| views.len() >= SENTINEL_QUORUM as usize);
    match winner {
        Some((primary, views)) => Replication::Known {
            primary: pods
                .iter()
                .find(|pod| pod.addr == *primary)
                .map_or_else(|| (*primary).to_owned(), |pod| pod.name.clone()),
            in_sync: views.iter().map(|v| v.in_sync).min().unwrap_or(0),
        },
        None if votes.len() > 1 => Replication::Unknown(format!(
            "the sentinels disagree on the primary ({}); a failover may be in progress",
            votes
                .iter()
                .map(|(primary, views)| format!("{} name {primary}", views.len()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => {
            let answered = answers.len() - errors.len();
            let mut reason = format!(
                "{answered} of {} sentinels named a primary, fewer than the quorum of {SENTINEL_QUORUM}",
                answers.len()
            );
            if let Some(first) = errors.first() {
                reason.push_str(": ");
                reason.push_str(first);
            }
            Replication::Unknown(reason)
        }
    }
}

/// One sentinel's answer, as [`OBSERVER_USER`].
async fn ask(addr: &str, master_name: &str, tls: Option<&Trust>) -> Result<SentinelView, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("{addr}: not host:port"))?;
    let host = host.to_owned();
    let connection_addr = match tls {
        None => ConnectionAddr::Tcp(host, port),
        Some(trust) => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: matches!(trust, Trust::Unverified),
            tls_params: None,
        },
    };
    let info = connection_addr
        .into_connection_info()
        .map_err(|e| format!("{addr}: {e}"))?
        .set_redis_settings(
            RedisConnectionInfo::default()
                .set_username(OBSERVER_USER)
                .set_password(OBSERVER_USER),
        );
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(OBSERVE_TIMEOUT))
        .set_response_timeout(Some(OBSERVE_TIMEOUT));
    let client = match tls {
        Some(Trust::Roots(pem)) => Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone().into_bytes()),
            },
        ),
        _ => Client::open(info),
    };
    let mut con = client
        .map_err(|e| format!("{addr}: {e}"))?
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("sentinel {addr}: {e}"))?;
    let named: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master_name)
        .query_async(&mut con)
        .await
        .map_err(|e| format!("sentinel {addr}: {e}"))?;
    let (primary_host, primary_port) =
        named.ok_or_else(|| format!("sentinel {addr} does not monitor {master_name:?}"))?;
    let replicas: Vec<BTreeMap<String, String>> = redis::cmd("SENTINEL")
        .arg("replicas")
        .arg(master_name)
        .query_async(&mut con)
        .await
        .map_err(|e| format!("sentinel {addr}: {e}"))?;
    let in_sync = replicas
        .iter()
        .filter(|replica| in_sync_with(replica, &primary_host, primary_port))
        .count() as i32;
    Ok(SentinelView {
        primary: format!("{primary_host}:{primary_port}"),
        in_sync,
    })
}

/// Whether a replica of `SENTINEL replicas` replicates from this primary with its link up.
pub fn in_sync_with(replica: &BTreeMap<String, String>, host: &str, port: u16) -> bool {
    let field = |name: &str| replica.get(name).map(String::as_str);
    let flags_ok = field("flags").is_some_and(|flags| {
        flags
            .split(',')
            .all(|flag| !matches!(flag, "s_down" | "o_down" | "disconnected"))
    });
    flags_ok
        && field("master-link-status") == Some("ok")
        && field("master-host") == Some(host)
        && field("master-port") == Some(port.to_string().as_str())
}
