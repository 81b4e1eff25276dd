//! The one way bytes cross the tunnel: between a [`Tunnel`] (a multiplexed
//! stream, or a work connection of its own with `tcpMux = false`) and a
//! [`Local`] end (the public user's socket on frps, the local service on
//! frpc).
//!
//! A multiplexed stream carried to a TCP or Unix socket takes the direct
//! path: the session's reader task writes the stream's payloads straight
//! into the socket while it takes them (through [`mux::DirectSink`]), so the
//! way in has no task hop and no buffer; this task only drains what had to
//! be queued. Every other pairing takes the generic relay.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mux::{DirectSink, MuxStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::relay::{relay_counted, Direction, MUX_RELAY_BUF};
use crate::stats::{Counting, Meters};
use crate::transport::BoxIo;

/// The tunnel side of a forwarded connection.
pub enum Tunnel {
    Mux(MuxStream),
    Conn(BoxIo),
}

/// The local side of a forwarded connection.
pub enum Local {
    Tcp(TcpStream),
    Unix(UnixStream),
    Other(BoxIo),
}

/// Bytes a finished [`Tunnel::carry`] moved, named by direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Carried {
    pub into_tunnel: u64,
    pub out_of_tunnel: u64,
}

impl Tunnel {
    /// Carries bytes between this tunnel and `local` until both directions
    /// have ended (half-close kept intact), adding to `meters` as they go.
    pub async fn carry(self, local: Local, meters: Meters) -> io::Result<Carried> {
        let meters = &meters;
        let (into_tunnel, out_of_tunnel) = match (self, local) {
            (Tunnel::Mux(mut s), Local::Tcp(t)) => carry_direct(t, &mut s, meters).await?,
            (Tunnel::Mux(mut s), Local::Unix(u)) => carry_direct(u, &mut s, meters).await?,
            (mut t, Local::Tcp(mut l)) => relay_counted(&mut l, &mut t, meters).await?,
            (mut t, Local::Unix(mut l)) => relay_counted(&mut l, &mut t, meters).await?,
            (mut t, Local::Other(mut l)) => relay_counted(&mut l, &mut t, meters).await?,
        };
        Ok(Carried {
            into_tunnel,
            out_of_tunnel,
        })
    }
}

impl crate::stats::Metered<Tunnel> {
    /// [`Tunnel::carry`] on the tunnel's own meters.
    pub async fn carry(self, local: Local) -> io::Result<Carried> {
        let (tunnel, meters, _open) = self.into_parts();
        tunnel.carry(local, meters).await
    }
}

/// A socket split for the direct path: this task reads the read half
/// (tokio's own `AsyncRead`, which takes a short read as the end of the
/// socket's readiness and so saves a read that would only say
/// `WouldBlock`), while the reader task writes the write half.
trait SplitSocket {
    type Read: AsyncRead + Unpin + Send;
    type Write: WriteHalf;
    fn split(self) -> (Self::Read, Self::Write);
}

/// The write half as the reader task uses it: tokio's readiness-based
/// `try_write` takes `&self`.
trait WriteHalf: Send + Sync + 'static {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    fn shutdown_write(&self) -> io::Result<()>;
}

macro_rules! split_socket {
    ($stream:ty, $halves:ident) => {
        impl SplitSocket for $stream {
            type Read = tokio::net::$halves::OwnedReadHalf;
            type Write = tokio::net::$halves::OwnedWriteHalf;
            fn split(self) -> (Self::Read, Self::Write) {
                self.into_split()
            }
        }

        impl WriteHalf for tokio::net::$halves::OwnedWriteHalf {
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                AsRef::<$stream>::as_ref(self).poll_write_ready(cx)
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                tokio::net::$halves::OwnedWriteHalf::try_write(self, buf)
            }
            fn shutdown_write(&self) -> io::Result<()> {
                // tokio's shutdown needs `&mut`; the half is shared.
                let sock: &$stream = self.as_ref();
                socket2::SockRef::from(sock).shutdown(std::net::Shutdown::Write)
            }
        }
    };
}
split_socket!(TcpStream, tcp);
split_socket!(UnixStream, unix);

/// The local socket's write half as the stream's sink, counting what it
/// is given.
struct Shared<W> {
    sock: W,
    count: Option<Counting>,
}

impl<W: WriteHalf> DirectSink for Shared<W> {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sock.try_write(buf)?;
        if let Some(c) = &self.count {
            c.add(n);
        }
        Ok(n)
    }
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.sock.poll_write_ready(cx)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.sock.shutdown_write()
    }
}

/// The direct path: local → stream is the usual copy (one read of
/// [`MUX_RELAY_BUF`] becomes one frame); stream → local is written by the
/// reader task, and this task only drains its queue. Returns the bytes
/// (into the tunnel, out of it).
async fn carry_direct<S: SplitSocket>(
    sock: S,
    stream: &mut MuxStream,
    meters: &Meters,
) -> io::Result<(u64, u64)> {
    let (mut reader, writer) = sock.split();
    stream.set_sink(Arc::new(Shared {
        sock: writer,
        count: meters.counting(false),
    }));
    let mut up = Direction::new(MUX_RELAY_BUF, meters.counting(true));
    let mut down: Option<u64> = None;
    poll_fn(|cx| {
        if !up.done() {
            if let Poll::Ready(r) = up.poll_copy(cx, Pin::new(&mut reader), Pin::new(&mut *stream))
            {
                r?;
            }
        }
        if down.is_none() {
            if let Poll::Ready(r) = stream.poll_drain(cx) {
                down = Some(r?);
            }
        }
        match down {
            Some(d) if up.done() => Poll::Ready(Ok((up.amt, d))),
            _ => Poll::Pending,
        }
    })
    .await
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Tunnel::Mux(s) => Pin::new(s).poll_read(cx, buf),
            Tunnel::Conn(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Tunnel::Mux(s) => Pin::new(s).poll_write(cx, buf),
            Tunnel::Conn(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Tunnel::Mux(s) => Pin::new(s).poll_flush(cx),
            Tunnel::Conn(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Tunnel::Mux(s) => Pin::new(s).poll_shutdown(cx),
            Tunnel::Conn(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
