//! Proof of life: a wrapper around the connection under the multiplexer that
//! notes when bytes last arrived and counts bytes both ways.
//!
//! Every byte read counts — control messages, stream data, yamux window
//! updates — so a busy tunnel never needs a heartbeat.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Shared counters of one connection. Cheap to read from any task.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds after `epoch` at which bytes last arrived.
    last_recv_ms: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last_recv_ms: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        })
    }

    /// Records that bytes arrived now.
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_recv_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When bytes last arrived (the creation time if none have).
    pub fn last_recv(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_recv_ms.load(Ordering::Relaxed))
    }

    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
}

/// An I/O object whose reads and writes update an [`Activity`].
pub struct Metered<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Metered<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Metered { inner, activity }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity
                .bytes_in
                .fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.activity
                .bytes_out
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            self.activity
                .bytes_out
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn reads_move_last_recv_and_count() {
        let (a, mut b) = tokio::io::duplex(64);
        let act = Activity::new();
        let start = act.last_recv();
        let mut m = Metered::new(a, act.clone());
        tokio::time::advance(Duration::from_secs(5)).await;
        b.write_all(b"abc").await.expect("write");
        let mut buf = [0u8; 3];
        m.read_exact(&mut buf).await.expect("read");
        assert_eq!(act.last_recv() - start, Duration::from_secs(5));
        m.write_all(b"hello").await.expect("write");
        assert_eq!((act.bytes_in(), act.bytes_out()), (3, 5));
    }
}
