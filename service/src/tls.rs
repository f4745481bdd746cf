//! TLS from PEM files, rebuilt whenever the files change, so a rotated certificate is used for
//! new connections without a restart: the HTTP port's server side (`server.tls`), a counter's
//! gRPC server side and a gateway's client side of mutual TLS (`grpc.tls`).
//!
//! Contract:
//! - [`server_tls`] and [`client_tls`] read the files once; a file that is missing or does not
//!   parse stops the process at start.
//! - [`Reloading::watch`] (the `reload` module's loop) reads them again every
//!   `reload_interval`; when their content changed and still makes a valid configuration (a key
//!   that matches its certificate), new handshakes use it at once and open connections keep
//!   theirs. A change that does not (a half-rotated pair), or a file that is gone, keeps the
//!   previous configuration, is logged and counted once
//!   (`highpress_tls_reloads_total{server,result="failed"}`), and is tried again when the files
//!   change again.
//! - On the servers, each connection's handshake runs on that connection's own task, bounded by
//!   the header-read timeout, so a client that never finishes it holds only its own slot.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{GrpcTlsConfig, TlsFilesConfig};
use crate::metrics::METRICS;
use crate::reload::Reloading;

/// A server's TLS configuration.
pub type ServerTls = Reloading<ServerConfig>;
/// A client's TLS configuration.
pub type ClientTls = Reloading<ClientConfig>;

/// A configuration that `make` builds from `files`, made again when they change and counted
/// in `highpress_tls_reloads_total{server=label}`.
fn reloading<T: Send + Sync + 'static>(
    label: &'static str,
    files: Vec<PathBuf>,
    reload_interval: Duration,
    make: impl Fn() -> Result<T, String> + Send + Sync + 'static,
) -> Result<Arc<Reloading<T>>, String> {
    Reloading::new(
        format!("{label} TLS"),
        files,
        reload_interval,
        move |_previous| make().map_err(|e| format!("{label} TLS: {e}")),
        move |outcome| {
            METRICS
                .tls_reloads
                .with_label_values(&[label, outcome.result()])
                .inc();
        },
    )
}

/// The server side of `config` (`server.tls`), offering `alpn`; with `client_ca_file`, every
/// client must present a certificate that CA signed.
pub fn server_tls(
    config: &TlsFilesConfig,
    label: &'static str,
    alpn: &[&[u8]],
) -> Result<Arc<ServerTls>, String> {
    let client_ca =
        (!config.client_ca_file.is_empty()).then(|| PathBuf::from(&config.client_ca_file));
    server_from(
        PathBuf::from(&config.cert_file),
        PathBuf::from(&config.key_file),
        client_ca,
        config.reload_interval,
        label,
        alpn,
    )
}

/// A counter's gRPC server side of mutual TLS (`grpc.tls`): its certificate, and only clients
/// whose certificate `ca_file` signed.
pub fn grpc_server_tls(config: &GrpcTlsConfig) -> Result<Arc<ServerTls>, String> {
    server_from(
        PathBuf::from(&config.cert_file),
        PathBuf::from(&config.key_file),
        Some(PathBuf::from(&config.ca_file)),
        config.reload_interval,
        "grpc",
        &[b"h2"],
    )
}

fn server_from(
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    reload_interval: Duration,
    label: &'static str,
    alpn: &[&[u8]],
) -> Result<Arc<ServerTls>, String> {
    let mut files = vec![cert.clone(), key.clone()];
    files.extend(client_ca.clone());
    let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
    reloading(label, files, reload_interval, move || {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider)
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certificates(&cert)?, private_key(&key)?)
            .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
        config.alpn_protocols = alpn.clone();
        Ok(config)
    })
}

/// A gateway's client side of mutual TLS to the counters (`grpc.tls`): counters' certificates
/// checked against `ca_file`, and the gateway's own certificate presented.
pub fn client_tls(config: &GrpcTlsConfig) -> Result<Arc<ClientTls>, String> {
    let (cert, key, ca) = (
        PathBuf::from(&config.cert_file),
        PathBuf::from(&config.key_file),
        PathBuf::from(&config.ca_file),
    );
    let files = vec![cert.clone(), key.clone(), ca.clone()];
    reloading("grpc_client", files, config.reload_interval, move || {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(&ca)?)
            .with_client_auth_cert(certificates(&cert)?, private_key(&key)?)
            .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

fn private_key(path: &PathBuf) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn roots(path: &PathBuf) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(path)? {
        roots
            .add(ca)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Arc::new(roots))
}
