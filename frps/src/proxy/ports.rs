//! Public ports: `remotePort`, `allowPorts` and the random pick for
//! `remotePort = 0`, for TCP and UDP alike. Each port holds a descriptor
//! from the ports' share (`Server::ports`), as its users' connections do
//! from theirs (`Server::public`), so no number of proxies or users can
//! take the descriptors logins and tunnels need, or each other's.

use std::future::Future;
use std::io;

use rand::seq::SliceRandom;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::OwnedSemaphorePermit;
use wire::message::ProxyError;

use crate::Server;

/// How many random ports from `allowPorts` to try for `remotePort = 0`.
const PICK_ATTEMPTS: usize = 64;

/// A bound port and its place in the descriptor share, given back when
/// the two are dropped together.
pub(crate) struct Bound<T> {
    pub port: T,
    pub _fd: OwnedSemaphorePermit,
}

/// Why a port or a user's connection found no descriptor.
pub(crate) const NO_DESCRIPTOR: &str = "frps holds all the public ports and connections its \
     descriptor limit leaves room for (raise `ulimit -n`, LimitNOFILE= in systemd)";

pub(crate) async fn bind_tcp(server: &Server, port: u16) -> Result<Bound<TcpListener>, ProxyError> {
    bind(
        server,
        port,
        |addr| async move { TcpListener::bind(addr).await },
    )
    .await
}

pub(crate) async fn bind_udp(server: &Server, port: u16) -> Result<Bound<UdpSocket>, ProxyError> {
    bind(
        server,
        port,
        |addr| async move { UdpSocket::bind(addr).await },
    )
    .await
}

async fn bind<T, F, Fut>(server: &Server, port: u16, bind_one: F) -> Result<Bound<T>, ProxyError>
where
    F: Fn((String, u16)) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let Some(fd) = server.ports.try_take() else {
        return Err(ProxyError::Bind(NO_DESCRIPTOR.into()));
    };
    let port = pick(server, port, bind_one).await?;
    Ok(Bound { port, _fd: fd })
}

async fn pick<T, F, Fut>(server: &Server, port: u16, bind_one: F) -> Result<T, ProxyError>
where
    F: Fn((String, u16)) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let host = server.config.proxy_bind_addr.clone();
    let live = server.live();
    if port != 0 {
        if !live.port_allowed(port) {
            return Err(ProxyError::PortNotAllowed(port));
        }
        return bind_one((host, port))
            .await
            .map_err(|e| bind_error(port, e));
    }
    // Let the server pick among the allowed ports, as frp does.
    if live.allow_ports.is_empty() {
        return bind_one((host, 0)).await.map_err(|e| bind_error(0, e));
    }
    let mut candidates: Vec<u16> = (1..=u16::MAX).filter(|p| live.port_allowed(*p)).collect();
    candidates.shuffle(&mut rand::thread_rng());
    for p in candidates.into_iter().take(PICK_ATTEMPTS) {
        match bind_one((host.clone(), p)).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(bind_error(p, e)),
        }
    }
    Err(ProxyError::Bind("no free port among allowPorts".into()))
}

fn bind_error(port: u16, e: io::Error) -> ProxyError {
    match e.kind() {
        io::ErrorKind::AddrInUse => ProxyError::PortInUse(port),
        _ => ProxyError::Bind(format!("port {port}: {e}")),
    }
}
