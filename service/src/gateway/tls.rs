//! The gateway's side of mutual TLS to the counters (`grpc.tls`): a connector for tonic's
//! channels that opens TCP and completes a TLS handshake with the client configuration of now,
//! so a rotated gateway certificate (or CA) is used from the next connection on. The counter's
//! certificate must name `grpc.tls.server_name` (or, when that is empty, the endpoint's host).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::codegen::http::Uri;

use crate::tls::ClientTls;

/// Connects tonic channels over TLS.
#[derive(Clone)]
pub struct TlsConnector {
    tls: Arc<ClientTls>,
    server_name: Option<ServerName<'static>>,
}

impl TlsConnector {
    /// `server_name` empty: check each counter's certificate against its endpoint's host.
    pub fn new(tls: Arc<ClientTls>, server_name: &str) -> Self {
        Self {
            tls,
            server_name: ServerName::try_from(server_name.to_owned()).ok(),
        }
    }
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.tls.current();
        let expected = self.server_name.clone();
        Box::pin(async move {
            let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?
                .trim_matches(['[', ']'])
                .to_owned();
            let port = uri.port_u16().unwrap_or(80);
            let name = match expected {
                Some(name) => name,
                None => ServerName::try_from(host.clone()).map_err(|e| invalid(e.to_string()))?,
            };
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(stream))
        })
    }
}
