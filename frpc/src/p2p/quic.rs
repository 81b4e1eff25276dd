//! QUIC over a punched UDP path (quinn over rustls): the proxy's side is
//! the server, with a certificate made for the session whose fingerprint
//! the visitor pins; the visitor is the client. Liveness is the tunnel's:
//! QUIC keep-alives after `heartbeatInterval` of silence, and the path is
//! declared dead after `heartbeatTimeout` without a packet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, EndpointConfig, TokioRuntime, TransportConfig};
use tokio::net::UdpSocket;

/// The name the visitor asks for (the certificate is pinned, not named).
const SERVER_NAME: &str = "frp-rs-p2p";

/// How the session beats and when it is dead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
}

impl Liveness {
    /// The tunnel's heartbeat (`transport.heartbeatInterval` /
    /// `heartbeatTimeout`; 30 s and 90 s when off).
    pub fn of(config: &config::ClientConfig) -> Self {
        Liveness {
            keep_alive: config
                .heartbeat_interval()
                .unwrap_or(Duration::from_secs(30)),
            idle_timeout: config
                .heartbeat_timeout()
                .unwrap_or(Duration::from_secs(90)),
        }
    }
}

/// A TLS config for one session's QUIC server, and its certificate's
/// fingerprint.
pub(crate) fn server_tls() -> Result<(Arc<rustls::ServerConfig>, String)> {
    net::tls::p2p_server_config().context("QUIC certificate")
}

fn transport(l: Liveness) -> Result<Arc<TransportConfig>> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(l.keep_alive));
    t.max_idle_timeout(Some(l.idle_timeout.try_into().context("heartbeatTimeout")?));
    Ok(Arc::new(t))
}

fn into_std(sock: UdpSocket) -> Result<std::net::UdpSocket> {
    Ok(sock.into_std()?)
}

/// The proxy's side: a QUIC server on `sock` with the session's `tls`.
pub(crate) fn server(
    sock: UdpSocket,
    tls: Arc<rustls::ServerConfig>,
    l: Liveness,
) -> Result<Endpoint> {
    let crypto = QuicServerConfig::try_from((*tls).clone()).context("QUIC TLS")?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport(l)?);
    let ep = Endpoint::new(
        EndpointConfig::default(),
        Some(cfg),
        into_std(sock)?,
        Arc::new(TokioRuntime),
    )?;
    Ok(ep)
}

/// The visitor's side: a QUIC connection on `sock` to `peer`, whose
/// certificate must have `fingerprint`.
pub(crate) async fn connect(
    sock: UdpSocket,
    peer: SocketAddr,
    fingerprint: &str,
    l: Liveness,
) -> Result<(Endpoint, Connection)> {
    let tls = net::tls::p2p_client_config(fingerprint).context("QUIC TLS")?;
    let crypto = QuicClientConfig::try_from((*tls).clone()).context("QUIC TLS")?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport(l)?);
    let ep = Endpoint::new(
        EndpointConfig::default(),
        None,
        into_std(sock)?,
        Arc::new(TokioRuntime),
    )?;
    let conn = ep
        .connect_with(cfg, peer, SERVER_NAME)?
        .await
        .context("QUIC handshake with the peer")?;
    Ok((ep, conn))
}
