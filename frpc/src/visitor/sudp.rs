//! sudp visitors: the datagrams of every local user address travel over one
//! visit stream, framed with that address (`wire::udp`, as a udp proxy's
//! do), so the proxy's side keeps one mapping per user. The stream is
//! opened by the first datagram and again after it ends; an idle visitor
//! holds none.

use anyhow::{Context, Result};
use bytes::BytesMut;
use config::VisitorConfig;
use net::stats::Meters;
use net::udp_relay;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wire::udp;

use super::Shared;
use crate::proxy::Phase;

pub(super) async fn run(
    cfg: &VisitorConfig,
    shared: &Shared,
    set: &impl Fn(Phase, String),
    stop: &CancellationToken,
) -> Result<()> {
    let addr = cfg.bind().context("an sudp visitor needs a bindPort")?;
    let sock = UdpSocket::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    info!(%addr, "sudp visitor listening");
    set(Phase::Running, String::new());
    let max = shared.udp_packet_size;
    let mut buf = vec![0u8; max + 1];
    let meters = Meters::default();
    let too_large =
        |peer, n| debug!(%peer, "datagram of {n} bytes (over udpPacketSize {max}) dropped");
    let mut last_err = String::new();
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("udp receive failed: {e}");
                    continue;
                }
            },
        };
        if n > max {
            too_large(peer, n);
            continue;
        }
        let stream = match shared.open(cfg).await {
            Ok(s) => s,
            Err(e) => {
                // Said once until it changes: every datagram would repeat it.
                let said = format!("{e:#}");
                if said != last_err {
                    warn!("datagrams dropped: {said}");
                    last_err = said;
                }
                continue;
            }
        };
        last_err.clear();
        let mut first = BytesMut::new();
        let _ = udp::encode(peer, &buf[..n], &mut first);
        let (rd, wr) = tokio::io::split(stream);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = udp_relay::socket_to_stream(&sock, wr, first, &mut buf, &meters, too_large) => {
                debug!("visit stream ended: {r:?}")
            }
            r = udp_relay::stream_to_socket(&sock, rd, &meters) => debug!("visit stream ended: {r:?}"),
        }
    }
}
