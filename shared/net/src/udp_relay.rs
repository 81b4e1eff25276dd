//! One UDP socket's datagrams over one stream, framed with the address of
//! each (`wire::udp`): what frps's udp proxy does for its public port and
//! an sudp visitor for its local one. Each datagram travels whole; the
//! stream side is a tunnel (any reader and writer).
//!
//! Memory: the caller's receive buffer, one batch of at most [`BATCH`]
//! bytes on the way in, the frames read so far on the way out. When the
//! stream is slower than the socket, datagrams wait in the socket's kernel
//! buffer and the kernel drops what does not fit, as UDP does anyway.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tracing::debug;
use wire::udp;

use crate::stats::Meters;

/// Datagrams read together are written to the stream in one write of up
/// to this many bytes.
pub const BATCH: usize = 64 * 1024;

/// Socket → stream: each datagram one frame (`first` already framed),
/// those already waiting batched into one write. A datagram longer than
/// `buf.len() - 1` is dropped and passed to `too_large`.
pub async fn socket_to_stream<W: AsyncWrite + Unpin>(
    sock: &UdpSocket,
    mut wr: W,
    mut out: BytesMut,
    buf: &mut [u8],
    meters: &Meters,
    too_large: impl Fn(SocketAddr, usize),
) -> std::io::Result<()> {
    let max = buf.len() - 1;
    loop {
        while out.len() < BATCH {
            match sock.try_recv_from(buf) {
                Ok((n, peer)) if n > max => too_large(peer, n),
                Ok((n, peer)) => {
                    // Cannot fail: n ≤ udpPacketSize ≤ udp::MAX_PAYLOAD.
                    let _ = udp::encode(peer, &buf[..n], &mut out);
                    meters.add(true, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!("udp receive failed: {e}");
                    break;
                }
            }
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            wr.flush().await?;
            out.clear();
        }
        sock.readable().await?;
    }
}

/// Stream → socket: each frame's datagram to the address it names.
pub async fn stream_to_socket<R: AsyncRead + Unpin>(
    sock: &UdpSocket,
    mut rd: R,
    meters: &Meters,
) -> std::io::Result<()> {
    let mut inbuf = BytesMut::with_capacity(8 * 1024);
    loop {
        loop {
            match udp::decode(&mut inbuf) {
                Ok(Some(d)) => {
                    meters.add(false, d.payload.len());
                    if let Err(e) = sock.send_to(&d.payload, d.peer).await {
                        debug!(peer = %d.peer, "udp send failed: {e}");
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
        }
        if rd.read_buf(&mut inbuf).await? == 0 {
            return Ok(());
        }
    }
}
