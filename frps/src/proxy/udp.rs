//! `type = "udp"`: a public UDP port. Datagrams from all users travel over
//! one work stream, each framed with the user's address (`wire::udp`);
//! frpc answers with the address each reply is for. The stream is opened
//! by the first datagram and again after it ends (frpc reconnected), so an
//! idle UDP proxy holds no stream.
//!
//! Memory: one receive buffer of `udpPacketSize` + 1, and what
//! `net::udp_relay` holds (a batch in, the frames read so far out).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use net::logging::Field;
use net::udp_relay;
use tokio::net::UdpSocket;
use tracing::{debug, info_span, warn, Instrument};
use wire::message::{ProxyError, UdpSpec};
use wire::udp;

use super::{open_work, ports, ProxyCtx};

pub(super) async fn start(spec: &UdpSpec, ctx: ProxyCtx) -> Result<SocketAddr, ProxyError> {
    let bound = ports::bind_udp(&ctx.server, spec.remote_port).await?;
    let (sock, fd) = (bound.port, bound._fd);
    let addr = sock
        .local_addr()
        .map_err(|e| ProxyError::Bind(e.to_string()))?;
    let span = info_span!("proxy", name = %Field(&ctx.name), %addr, kind = "udp");
    ctx.tasks.clone().spawn(
        async move {
            run(Arc::new(sock), addr, ctx).await;
            drop(fd);
        }
        .instrument(span),
    );
    Ok(addr)
}

async fn run(sock: Arc<UdpSocket>, addr: SocketAddr, ctx: ProxyCtx) {
    relay(&sock, addr, &ctx).await;
    // The port is free before the proxy counts as released (`Proxy::close`).
    drop(sock);
    drop(ctx);
}

async fn relay(sock: &UdpSocket, addr: SocketAddr, ctx: &ProxyCtx) {
    let max = ctx.server.config.udp_packet_size;
    let mut buf = vec![0u8; max + 1];
    loop {
        // No stream while idle: wait for a datagram first.
        let (n, peer) = tokio::select! {
            _ = ctx.stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("udp receive failed: {e}");
                    continue;
                }
            },
        };
        if n > max {
            too_large(ctx, peer, n, max);
            continue;
        }
        let tunnel = match open_work(ctx, addr, addr).await {
            Ok(t) => t,
            Err(e) => {
                warn!("{e:#}; datagram dropped");
                ctx.meters.0.drop_one();
                continue;
            }
        };
        // Datagrams count by their payload, as frp counts them, and the
        // work stream as one connection while it is open.
        let (tunnel, _meters, _open) = tunnel.into_parts();
        let mut first = BytesMut::new();
        // Cannot fail: n ≤ udpPacketSize ≤ udp::MAX_PAYLOAD (validated).
        let _ = udp::encode(peer, &buf[..n], &mut first);
        ctx.meters.0.add(true, n);
        let (rd, wr) = tokio::io::split(tunnel);
        let meters = &ctx.meters.0;
        let too_large = |peer, n| too_large(ctx, peer, n, max);
        tokio::select! {
            _ = ctx.stop.cancelled() => return,
            r = udp_relay::socket_to_stream(sock, wr, first, &mut buf, meters, too_large) => {
                debug!("udp stream to the client ended: {r:?}")
            }
            r = udp_relay::stream_to_socket(sock, rd, meters) => {
                debug!("udp stream from the client ended: {r:?}")
            }
        }
    }
}

fn too_large(ctx: &ProxyCtx, peer: SocketAddr, n: usize, max: usize) {
    ctx.meters.0.drop_one();
    debug!(%peer, "datagram of more than {max} bytes (udpPacketSize) dropped ({n} read)");
}
