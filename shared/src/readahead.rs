//! Big reads from the socket under TLS.
//!
//! rustls asks its transport for about 4 KiB at a time, so a TLS session
//! read straight from a socket costs a system call per 4 KiB. This wrapper
//! reads up to 64 KiB at once and serves rustls from memory. Like the relay,
//! it holds no buffer while the connection is idle, so thousands of idle
//! TLS connections (`tcpMux = false`) do not each keep 64 KiB.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const CAP: usize = 64 * 1024;

pub struct ReadAhead<T> {
    inner: T,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        ReadAhead {
            inner,
            buf: Vec::new(),
            pos: 0,
            end: 0,
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
        if this.pos == this.end {
            if dst.remaining() >= CAP {
                return Pin::new(&mut this.inner).poll_read(cx, dst);
            }
            if this.buf.is_empty() {
                this.buf = vec![0u8; CAP];
            }
            let mut rb = ReadBuf::new(&mut this.buf);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    this.pos = 0;
                    this.end = rb.filled().len();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Idle: give the buffer back.
                    this.buf = Vec::new();
                    return Poll::Pending;
                }
            }
        }
        let n = (this.end - this.pos).min(dst.remaining());
        dst.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
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
