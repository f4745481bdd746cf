//! Redis Sentinel: which server is the primary now, and word when that changes.
//!
//! [`Sentinel::resolve`] asks every sentinel at once (`SENTINEL get-master-addr-by-name`) and
//! takes the first address whose server confirms it is a primary (`ROLE`), all within one
//! timeout: a sentinel that is down, frozen or behind on a failover costs nothing while another
//! answers. [`Sentinel::switches`] subscribes to one sentinel's `+switch-master` announcements.
//! [`RedisStore`](super::RedisStore) uses both to follow failovers.
//!
//! The redis crate has Sentinel support too; it asks the sentinels in order and without a
//! timeout of its own, so one frozen sentinel would stall every lookup (docs/ARCHITECTURE.md).

use std::pin::Pin;
use std::time::Duration;

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use redis::{RedisConnectionInfo, Value};

use super::{RedisTls, classify};
use crate::store::StoreError;

/// `+switch-master` announcements about one primary.
pub type Switches = Pin<Box<dyn Stream<Item = ()> + Send>>;

/// The sentinels that monitor one primary, and how to log in to the primaries they name.
pub struct Sentinel {
    master_name: String,
    sentinels: Vec<Client>,
    /// Password and database of the primary, whichever server it is.
    primary: RedisConnectionInfo,
    timeout: Duration,
    /// How the sentinels and the primaries they name are reached.
    tls: RedisTls,
}

impl Sentinel {
    /// `sentinels` are `redis://` URLs (with the sentinels' own password, if any); `password`
    /// and `db` are the primary's. Every lookup is bounded by `timeout`. `tls` reaches the
    /// sentinels and the primaries alike.
    pub fn new(
        master_name: &str,
        sentinels: &[String],
        password: &str,
        db: i64,
        timeout: Duration,
        tls: RedisTls,
    ) -> Result<Self, StoreError> {
        let sentinels = sentinels
            .iter()
            .map(|url| tls.client(url.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(StoreError::Internal("no sentinel to ask".into()));
        }
        let mut primary = RedisConnectionInfo::default().set_db(db);
        if !password.is_empty() {
            primary = primary.set_password(password);
        }
        Ok(Self {
            master_name: master_name.to_string(),
            sentinels,
            primary,
            timeout,
            tls,
        })
    }

    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
    }

    /// The primary now: the first address a sentinel names whose server says it is one.
    pub async fn resolve(&self) -> Result<ConnectionInfo, StoreError> {
        let asks: FuturesUnordered<_> = self.sentinels.iter().map(|s| self.ask(s)).collect();
        let first = async {
            let mut asks = asks;
            let mut last = StoreError::Unavailable("no sentinel answered".into());
            while let Some(answer) = asks.next().await {
                match answer {
                    Ok(primary) => return Ok(primary),
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        tokio::time::timeout(self.timeout, first)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "no sentinel named a primary in time".into(),
                ))
            })
    }

    /// One sentinel's primary, confirmed by the primary itself.
    async fn ask(&self, sentinel: &Client) -> Result<ConnectionInfo, StoreError> {
        let config = self.connection_config();
        let mut con = sentinel
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(classify)?;
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master_name)
            .query_async(&mut con)
            .await
            .map_err(classify)?;
        let Some((host, port)) = named else {
            return Err(StoreError::Unavailable(format!(
                "the sentinel does not monitor {:?}",
                self.master_name
            )));
        };
        let primary = ConnectionAddr::Tcp(host, port)
            .into_connection_info()
            .map_err(classify)?
            .set_redis_settings(self.primary.clone());
        let client = self.tls.client(primary)?;
        let primary = client.get_connection_info().clone();
        let mut con = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(classify)?;
        let role: Value = redis::cmd("ROLE")
            .query_async(&mut con)
            .await
            .map_err(classify)?;
        if is_primary_role(&role) {
            Ok(primary)
        } else {
            Err(StoreError::Unavailable(format!(
                "{} is not a primary (yet)",
                primary.addr()
            )))
        }
    }

    /// Announcements that this primary was replaced, from the first sentinel that takes the
    /// subscription. The stream ends when that sentinel's connection does.
    pub async fn switches(&self) -> Result<Switches, StoreError> {
        let mut last = StoreError::Unavailable("no sentinel to subscribe to".into());
        for sentinel in &self.sentinels {
            let subscribed = tokio::time::timeout(self.timeout, async {
                let mut pubsub = sentinel.get_async_pubsub().await?;
                pubsub.subscribe("+switch-master").await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            match subscribed {
                Ok(Ok(pubsub)) => {
                    let name = self.master_name.clone();
                    let about_ours = move |m: redis::Msg| {
                        // "<master name> <old ip> <old port> <new ip> <new port>"
                        let payload: String = m.get_payload().unwrap_or_default();
                        let ours = payload.split_whitespace().next() == Some(name.as_str());
                        std::future::ready(ours.then_some(()))
                    };
                    return Ok(Box::pin(pubsub.into_on_message().filter_map(about_ours)));
                }
                Ok(Err(e)) => last = classify(e),
                Err(_) => last = StoreError::Unavailable("a sentinel did not answer".into()),
            }
        }
        Err(last)
    }
}

/// `ROLE`'s answer starts with `master` on a primary.
fn is_primary_role(role: &Value) -> bool {
    let Value::Array(parts) = role else {
        return false;
    };
    matches!(
        parts.first(),
        Some(Value::BulkString(b)) if b.as_slice() == b"master"
    ) || matches!(parts.first(), Some(Value::SimpleString(s)) if s == "master")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_master_role_is_a_primary() {
        let role = |first: &[u8]| {
            Value::Array(vec![
                Value::BulkString(first.to_vec()),
                Value::Int(0),
                Value::Array(vec![]),
            ])
        };
        assert!(is_primary_role(&role(b"master")));
        assert!(!is_primary_role(&role(b"slave")));
        assert!(!is_primary_role(&role(b"sentinel")));
        assert!(!is_primary_role(&Value::Nil));
    }
}
