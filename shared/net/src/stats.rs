//! Live byte counters. A proxy and a client each own a [`Traffic`]; every
//! connection they carry adds to both as its bytes are written, so the
//! figures are current while connections are still open (a counter updated
//! only when a connection ends would show nothing for a day-long SSH
//! session). One relaxed atomic add per write, not per byte.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes carried for one proxy or one client, seen from the side that owns
/// it: `into_tunnel` came from the local end (frps: the public user; frpc:
/// the local service) and went into the tunnel, `out_of_tunnel` the reverse.
#[derive(Debug, Default)]
pub struct Traffic {
    into_tunnel: AtomicU64,
    out_of_tunnel: AtomicU64,
    /// Connections (or UDP mappings) open now.
    open: AtomicU64,
    /// UDP datagrams dropped: over `udpPacketSize`, over the mapping limit,
    /// or with the tunnel too slow to take them.
    dropped: AtomicU64,
}

/// A snapshot of [`Traffic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficSnapshot {
    pub into_tunnel: u64,
    pub out_of_tunnel: u64,
    pub open: u64,
    pub dropped: u64,
}

impl Traffic {
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            into_tunnel: self.into_tunnel.load(Ordering::Relaxed),
            out_of_tunnel: self.out_of_tunnel.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    pub fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, into_tunnel: bool, n: usize) {
        let c = if into_tunnel {
            &self.into_tunnel
        } else {
            &self.out_of_tunnel
        };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The counters one connection adds to (its proxy's and its client's).
#[derive(Debug, Clone, Default)]
pub struct Meters {
    to: Vec<Arc<Traffic>>,
}

impl Meters {
    pub fn new(to: Vec<Arc<Traffic>>) -> Self {
        Meters { to }
    }

    pub fn add(&self, into_tunnel: bool, n: usize) {
        for t in &self.to {
            t.add(into_tunnel, n);
        }
    }

    pub fn drop_one(&self) {
        for t in &self.to {
            t.drop_one();
        }
    }

    /// Counts this connection as open until the guard is dropped.
    pub fn open(&self) -> OpenGuard {
        for t in &self.to {
            t.open.fetch_add(1, Ordering::Relaxed);
        }
        OpenGuard(self.clone())
    }

    pub(crate) fn counting(&self, into_tunnel: bool) -> Option<Counting> {
        (!self.to.is_empty()).then(|| Counting {
            meters: self.clone(),
            into_tunnel,
        })
    }
}

/// Decrements the open count of its meters when dropped.
#[derive(Debug)]
pub struct OpenGuard(Meters);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        for t in &self.0.to {
            t.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One direction's share of [`Meters`].
#[derive(Debug, Clone)]
pub(crate) struct Counting {
    meters: Meters,
    into_tunnel: bool,
}

impl Counting {
    pub(crate) fn add(&self, n: usize) {
        self.meters.add(self.into_tunnel, n);
    }
}

/// A tunnel whose bytes count on `meters` as they pass, and which counts
/// as one open connection while it lives. frps hands every kind its
/// tunnels in this form, so each is counted the same way: copied by
/// `Metered<Tunnel>::carry`, or read and written by a library (hyper), as
/// HTTP requests and what an upgrade (WebSocket, CONNECT) carries are.
#[derive(Debug)]
pub struct Metered<T> {
    inner: T,
    meters: Meters,
    _open: OpenGuard,
}

impl<T> Metered<T> {
    pub fn new(inner: T, meters: Meters) -> Self {
        let _open = meters.open();
        Metered {
            inner,
            meters,
            _open,
        }
    }

    /// What it counts into (for connections it leads to, as an xtcp
    /// rendezvous leads to a session's streams).
    pub fn meters(&self) -> &Meters {
        &self.meters
    }

    /// The connection, its meters and its open-connection count, for a
    /// carrier that counts in its own unit (UDP counts datagrams' payload).
    pub fn into_parts(self) -> (T, Meters, OpenGuard) {
        (self.inner, self.meters, self._open)
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Metered<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.meters.add(false, n);
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.meters.add(true, n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.meters.add(true, n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
