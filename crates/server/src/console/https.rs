//! The console over HTTPS: the server's TLS certificate and key (`tls.cert_path`,
//! `tls.key_path`, the same files as gRPC's) in a rustls configuration with the ring provider,
//! and a listener that does each TLS handshake on its own task, so a slow or silent client
//! never holds up the next connection. Like gRPC's, the files are read once at start: a new
//! certificate takes a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; connections beyond it are closed at once.
pub const HANDSHAKES_PENDING_MAX: usize = 512;

/// The console's TLS configuration from the server's PEM files; errors name the key. Only
/// HTTP/1.1 is offered (ALPN), as the console serves nothing else. The console asks for no
/// client certificate: those identify providers to gRPC, and people sign in.
pub fn server_config(tls: &TlsConfig) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(&tls.cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("tls.cert_path: cannot read {}", tls.cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_path)
        .with_context(|| format!("tls.key_path: cannot read {}", tls.key_path.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls: the protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.key_path: the key does not fit the certificate of tls.cert_path")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and yields those whose TLS handshake succeeded.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<Handshaken>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let handshaking = !self.handshakes.is_empty();
            let event = tokio::select! {
                accepted = self.tcp.accept() => Event::Accepted(accepted),
                Some(done) = self.handshakes.join_next(), if handshaking => Event::Handshaken(Box::new(done)),
            };
            match event {
                Event::Accepted(Ok((stream, peer))) => {
                    if self.handshakes.len() >= HANDSHAKES_PENDING_MAX {
                        tracing::warn!(%peer, "console: too many TLS handshakes in progress; connection closed");
                        continue;
                    }
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(tls)) => Some((tls, peer)),
                            // Plain HTTP, a client that distrusts the certificate, a scanner.
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "console: TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "console: TLS handshake timed out");
                                None
                            }
                        }
                    });
                }
                // Out of file descriptors and the like: as axum's own listener, wait a little.
                Event::Accepted(Err(e)) => {
                    tracing::error!(error = %e, "console: accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Event::Handshaken(done) => {
                    if let Ok(Some(accepted)) = *done {
                        return accepted;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A connection whose TLS handshake succeeded, and its client's address.
type Handshaken = (TlsStream<TcpStream>, SocketAddr);

/// What the listener waits for next.
enum Event {
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    /// Boxed: a TLS connection is large beside an accepted socket.
    Handshaken(Box<Result<Option<Handshaken>, tokio::task::JoinError>>),
}

/// The client's address of a console connection, over TCP or TLS alike.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}
