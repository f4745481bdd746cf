//! TLS to Redis (`redis.tls`): one [`RedisTls`] makes every Redis client of the process, so the
//! server, each cluster node, the sentinels and the primaries they name are all reached the same
//! way. Certificates are read once at start; a `rediss://` address without `redis.tls` keeps
//! the redis crate's own TLS (the public web roots).

use redis::{Client, IntoConnectionInfo, TlsCertificates};

use super::classify;
use crate::config::RedisConfig;
use crate::store::StoreError;

/// How this process opens Redis connections: plain, or TLS with these certificates.
#[derive(Clone, Default)]
pub struct RedisTls(Option<TlsCertificates>);

impl RedisTls {
    /// Plain connections (or the URL's own `rediss://`).
    pub fn plain() -> Self {
        Self(None)
    }

    /// TLS as `config.tls` says, its files read now.
    pub fn from_config(config: &RedisConfig) -> Result<Self, StoreError> {
        let tls = &config.tls;
        if !tls.enabled {
            return Ok(Self::plain());
        }
        let read = |field: &str, path: &str| {
            std::fs::read(path)
                .map_err(|e| StoreError::Internal(format!("redis.tls.{field} {path}: {e}")))
        };
        let root_cert = (!tls.ca_file.is_empty())
            .then(|| read("ca_file", &tls.ca_file))
            .transpose()?;
        let client_tls = if tls.cert_file.is_empty() {
            None
        } else {
            Some(redis::ClientTlsConfig {
                client_cert: read("cert_file", &tls.cert_file)?,
                client_key: read("key_file", &tls.key_file)?,
            })
        };
        Ok(Self(Some(TlsCertificates {
            client_tls,
            root_cert,
        })))
    }

    /// A client for `info`: over TLS with this process's certificates when it has any (a
    /// `redis://` or `host:port` address becomes `rediss://`), else as `info` says.
    pub fn client<T: IntoConnectionInfo>(&self, info: T) -> Result<Client, StoreError> {
        let info = info.into_connection_info().map_err(classify)?;
        let Some(certificates) = &self.0 else {
            return Client::open(info).map_err(classify);
        };
        let info = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => format!("rediss://{host}:{port}")
                .into_connection_info()
                .map_err(classify)?
                .set_redis_settings(info.redis_settings().clone()),
            _ => info,
        };
        Client::build_with_tls(info, certificates.clone()).map_err(classify)
    }
}
