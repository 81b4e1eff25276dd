//! Big reads from the socket under TLS.
//!
//! rustls asks its transport for about 4 KiB at a time, so a TLS session
//! read straight from a socket costs a system call per 4 KiB. While data
//! streams, this wrapper reads up to 64 KiB at once and serves rustls from
//! memory. Like the relay, it holds no buffer while the connection is idle
//! (thousands of idle `tcpMux = false` connections keep nothing), and a
//! small message is read straight into rustls's buffer: only a read that
//! fills it switches to reading ahead.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio_util::io::poll_read_buf;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const CAP: usize = 64 * 1024;

pub struct ReadAhead<T> {
    inner: T,
    /// Read ahead and not yet handed out; no allocation while idle.
    buf: BytesMut,
    /// The last direct read filled the caller's buffer: data is streaming,
    /// so read ahead from now on.
    bulk: bool,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        ReadAhead {
            inner,
            buf: BytesMut::new(),
            bulk: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if !this.bulk || dst.remaining() >= CAP {
                // Idle, or the caller's buffer is big enough: read straight
                // into it. A small message costs no allocation and no copy.
                let room = dst.remaining();
                let before = dst.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, dst))?;
                this.bulk = dst.filled().len() - before == room;
                return Poll::Ready(Ok(()));
            }
            this.buf.reserve(CAP);
            match poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Ran dry: back to idle, giving the buffer back.
                    this.bulk = false;
                    this.buf = BytesMut::new();
                    return Poll::Pending;
                }
            }
        }
        let n = this.buf.len().min(dst.remaining());
        dst.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_see_every_byte_in_order() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let w = tokio::spawn(async move {
            for c in data.chunks(70_001) {
                a.write_all(c).await.expect("write");
            }
        });
        let mut r = ReadAhead::new(b);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        let mut big = vec![0u8; CAP + 10];
        let mut i = 0;
        while got.len() < expect.len() {
            let n = if i % 5 == 4 {
                let n = r.read(&mut big).await.expect("read");
                got.extend_from_slice(&big[..n]);
                n
            } else {
                let n = r.read(&mut small).await.expect("read");
                got.extend_from_slice(&small[..n]);
                n
            };
            assert!(n > 0);
            i += 1;
        }
        w.await.expect("writer");
        assert_eq!(got, expect);
    }
}
