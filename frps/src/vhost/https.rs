//! The HTTPS virtual host port (`vhostHTTPSPort`): each connection is
//! routed by the server name in its TLS ClientHello (SNI) to the
//! `type = "https"` proxy that claimed it, and passed through untouched —
//! frps never terminates the TLS, the local service's certificate is what
//! the user sees.
//!
//! The ClientHello is only peeked at (`TcpStream::peek`), so the carry
//! afterwards is the usual TCP one, direct path included. It is parsed by
//! rustls's own `Acceptor`, not by hand.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use net::logging::Field;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::BackendRef;
use super::Router;
use crate::Server;

/// Routes of the HTTPS port: server name → proxy.
pub(crate) type Routes = Router<BackendRef>;

/// Most of a ClientHello we look at: one TLS record (16 KiB) and its header.
/// A hello that needs more is refused.
const MAX_HELLO: usize = 16 * 1024 + 5;

/// Time a connection has to send its whole ClientHello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(server: Arc<Server>, listener: TcpListener, stop: CancellationToken) {
    let gate = net::gate::Gate::new(&server.public, super::PER_ADDRESS);
    super::accept_loop(listener, stop, "https", gate, move |tcp, peer| {
        route(server.clone(), tcp, peer)
    })
    .await
}

/// Routes one user connection by the name in its ClientHello.
pub(crate) async fn route(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr) {
    let name = match tokio::time::timeout(HELLO_TIMEOUT, server_name(&tcp)).await {
        Ok(Ok(Some(name))) => name,
        Ok(Ok(None)) => return debug!("ClientHello without a server name (SNI): closed"),
        Ok(Err(e)) => return debug!("not a TLS ClientHello: {e}; closed"),
        Err(_) => return debug!("no whole ClientHello within {HELLO_TIMEOUT:?}; closed"),
    };
    let Some(ctx) = server.vhosts.https.lookup(&name) else {
        return debug!(name = %Field(&name), "no https proxy for this name; closed");
    };
    carry_home(ctx, tcp, peer).await
}

/// [`carry`] on the worker thread of the proxy's client.
pub(crate) async fn carry_home(backend: BackendRef, tcp: TcpStream, peer: SocketAddr) {
    let home = backend.home().clone();
    net::workers::move_to(home, tcp, move |tcp| carry(backend, tcp, peer)).await
}

/// Carries a connection whose ClientHello named `backend`'s proxy.
pub(crate) async fn carry(backend: BackendRef, tcp: TcpStream, peer: SocketAddr) {
    let permit = match backend.permit() {
        Ok(p) => p,
        Err(max) => {
            return warn!(
                "client already has {max} connections open (transport.maxStreamsPerClient); closing this one"
            )
        }
    };
    let dst = tcp.local_addr().unwrap_or(peer);
    backend.carry_tcp(tcp, peer, dst, permit).await;
}

/// The server name of the ClientHello at the head of `tcp`, without taking
/// it off the socket. Waits (with a short backoff) while the hello arrives
/// in pieces; fails on anything that is not a ClientHello.
pub(crate) async fn server_name(tcp: &TcpStream) -> io::Result<Option<String>> {
    Ok(hello(tcp).await?.name)
}

/// What routing needs of a ClientHello.
pub struct Hello {
    /// Its server name (SNI).
    pub name: Option<String>,
    /// It offers frpc's ALPN protocol: a login, not a user.
    pub frpc: bool,
}

/// The ClientHello at the head of `tcp`, as [`server_name`] reads it.
pub(crate) async fn hello(tcp: &TcpStream) -> io::Result<Hello> {
    let mut buf = vec![0u8; MAX_HELLO];
    let mut seen = 0;
    let mut delay = Duration::from_millis(1);
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if n > seen {
            if let Some(hello) = parse(&buf[..n])? {
                return Ok(hello);
            }
            seen = n;
        }
        if n == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("ClientHello larger than {MAX_HELLO} bytes"),
            ));
        }
        // peek returns at once while anything is buffered: back off.
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Some once `bytes` hold a whole ClientHello; None while more is needed.
pub fn parse(bytes: &[u8]) -> io::Result<Option<Hello>> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        if acceptor.read_tls(&mut rest)? == 0 {
            break;
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            let hello = accepted.client_hello();
            let frpc = hello
                .alpn()
                .is_some_and(|mut offered| offered.any(|p| p == net::tls::CLIENT_ALPN));
            Ok(Some(Hello {
                name: hello.server_name().map(str::to_owned),
                frpc,
            }))
        }
        Ok(None) => Ok(None),
        Err((e, _)) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}
