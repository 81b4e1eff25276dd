//! Where a peer may reach this side's UDP socket: the public address a
//! STUN server saw (`natHoleStunServer`), and, unless
//! `natTraversal.disableAssistedAddrs`, the local address the socket sends
//! from (for two peers in one LAN).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::UdpSocket;
use tracing::debug;
use wire::stun;

/// Each STUN request waits this long for its answer; three are sent.
const STUN_WAIT: Duration = Duration::from_millis(700);
const STUN_TRIES: usize = 3;

/// The public address `server` (host:port) sees `sock` at.
pub(crate) async fn public_addr(sock: &UdpSocket, server: &str) -> Result<SocketAddr> {
    let to = tokio::net::lookup_host(server)
        .await
        .with_context(|| format!("cannot resolve the STUN server {server}"))?
        .find(|a| a.is_ipv4() == sock.local_addr().map(|l| l.is_ipv4()).unwrap_or(true))
        .with_context(|| format!("the STUN server {server} has no address of our family"))?;
    let id: [u8; 12] = rand::random();
    let mut buf = vec![0u8; stun::MAX_RESPONSE + 1];
    for _ in 0..STUN_TRIES {
        sock.send_to(&stun::binding_request(&id), to).await?;
        let deadline = tokio::time::Instant::now() + STUN_WAIT;
        while let Ok(r) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            let (n, from) = r?;
            if from != to {
                continue;
            }
            match stun::mapped_address(&buf[..n], &id) {
                Ok(addr) => return Ok(addr),
                Err(e) => debug!("STUN answer ignored: {e}"),
            }
        }
    }
    bail!("no answer from the STUN server {server} ({to})")
}

/// The local address `sock` sends to `towards` from (a connected probe
/// socket tells, without sending anything).
pub(crate) fn local_addr(sock: &UdpSocket, towards: SocketAddr) -> Option<SocketAddr> {
    let probe = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    probe.connect(towards).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    Some(SocketAddr::new(ip, sock.local_addr().ok()?.port()))
}

/// This side's candidates, public first.
pub(crate) async fn gather(
    sock: &UdpSocket,
    stun_server: &str,
    assisted: bool,
) -> Result<Vec<SocketAddr>> {
    let public = public_addr(sock, stun_server).await?;
    let mut out = vec![public];
    if assisted {
        if let Some(local) = local_addr(sock, public) {
            if local != public {
                out.push(local);
            }
        }
    }
    Ok(out)
}
