//! Copy bytes both ways until both directions are finished.
//!
//! Like `tokio::io::copy_bidirectional`, half-close is kept intact: when one
//! side stops sending, the other side's writer is shut down (a FIN, or a
//! yamux stream close) and the opposite direction keeps flowing until it
//! ends too. Racing two copies in `select!` would cut the slower direction
//! off and lose data.
//!
//! Unlike it, a direction holds no buffer while it is idle. An idle
//! connection waits on a one-byte read; only when data arrives is a full
//! buffer allocated, and it is released as soon as the reader has nothing
//! more. With tens of thousands of mostly idle tunnelled connections, the
//! buffers (2 × 32 KiB per connection on each side) would otherwise be most
//! of the memory.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Per-direction buffer size while data flows. Larger than tokio's 8 KiB
/// default so a busy stream moves in fewer, bigger writes (one yamux frame
/// is 16 KiB).
pub const RELAY_BUF: usize = 32 * 1024;

#[derive(Default)]
struct Direction {
    buf: Option<Box<[u8]>>,
    pos: usize,
    cap: usize,
    read_done: bool,
    done: bool,
    need_flush: bool,
    amt: u64,
}

impl Direction {
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            // Write out what was read.
            if let Some(buf) = &self.buf {
                if self.pos < self.cap {
                    let n = ready!(w.as_mut().poll_write(cx, &buf[self.pos..self.cap]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.pos += n;
                    self.amt += n as u64;
                    self.need_flush = true;
                    continue;
                }
            }
            if self.read_done {
                ready!(w.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(self.amt));
            }
            // Read more: into the buffer while data flows, else wait for the
            // first byte without holding one.
            let polled = match &mut self.buf {
                Some(buf) => {
                    let mut rb = ReadBuf::new(buf);
                    match r.as_mut().poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) => Poll::Ready(Ok((rb.filled().len(), false))),
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    }
                }
                None => {
                    let mut one = [0u8; 1];
                    let mut rb = ReadBuf::new(&mut one);
                    match r.as_mut().poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                            Poll::Ready(Ok((0, false)))
                        }
                        Poll::Ready(Ok(())) => {
                            let mut buf = vec![0u8; RELAY_BUF].into_boxed_slice();
                            buf[0] = one[0];
                            self.buf = Some(buf);
                            Poll::Ready(Ok((1, true)))
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    }
                }
            };
            match polled {
                Poll::Pending => {
                    // Idle: give the buffer back and push out what was written.
                    self.buf = None;
                    if self.need_flush {
                        ready!(w.as_mut().poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok((0, _))) => self.read_done = true,
                Poll::Ready(Ok((n, first))) => {
                    self.pos = 0;
                    self.cap = n;
                    if first {
                        // Don't send a lone byte: see what else is there.
                        if let Some(buf) = &mut self.buf {
                            let mut rb = ReadBuf::new(&mut buf[1..]);
                            match r.as_mut().poll_read(cx, &mut rb) {
                                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                                    self.read_done = true
                                }
                                Poll::Ready(Ok(())) => self.cap += rb.filled().len(),
                                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                                Poll::Pending => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Returns the bytes copied (a → b, b → a).
pub async fn relay<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut ab = Direction::default();
    let mut ba = Direction::default();
    poll_fn(|cx| {
        let mut a = Pin::new(&mut *a);
        let mut b = Pin::new(&mut *b);
        if !ab.done {
            if let Poll::Ready(r) = ab.poll_copy(cx, a.as_mut(), b.as_mut()) {
                r?;
            }
        }
        if !ba.done {
            if let Poll::Ready(r) = ba.poll_copy(cx, b.as_mut(), a.as_mut()) {
                r?;
            }
        }
        if ab.done && ba.done {
            Poll::Ready(Ok((ab.amt, ba.amt)))
        } else {
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn half_close_keeps_other_direction() {
        let (mut user, mut a) = tokio::io::duplex(1024);
        let (mut b, mut service) = tokio::io::duplex(1024);
        let r = tokio::spawn(async move { relay(&mut a, &mut b).await });

        user.write_all(b"request").await.expect("write");
        user.shutdown().await.expect("shutdown");
        let mut req = Vec::new();
        service.read_to_end(&mut req).await.expect("read");
        assert_eq!(req, b"request");
        // The service answers after seeing EOF.
        service.write_all(b"response").await.expect("write");
        drop(service);
        let mut resp = Vec::new();
        user.read_to_end(&mut resp).await.expect("read");
        assert_eq!(resp, b"response");
        assert_eq!(r.await.expect("join").expect("relay"), (7, 8));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_both_ways_in_odd_pieces() {
        // Small pipes force many partial reads, writes and idle gaps.
        let (user, mut a) = tokio::io::duplex(777);
        let (mut b, service) = tokio::io::duplex(333);
        let r = tokio::spawn(async move { relay(&mut a, &mut b).await });
        let up: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let down: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 241) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        let (mut ur, mut uw) = tokio::io::split(user);
        let (mut sr, mut sw) = tokio::io::split(service);
        let t1 = tokio::spawn(async move {
            for c in up2.chunks(1 + 997) {
                uw.write_all(c).await.expect("write");
            }
            uw.shutdown().await.expect("shutdown");
        });
        let t2 = tokio::spawn(async move {
            for c in down2.chunks(1).take(10).chain(down2[10..].chunks(4096)) {
                sw.write_all(c).await.expect("write");
            }
            sw.shutdown().await.expect("shutdown");
        });
        let mut got_up = Vec::new();
        let mut got_down = Vec::new();
        let (x, y) = tokio::join!(sr.read_to_end(&mut got_up), ur.read_to_end(&mut got_down));
        x.expect("read up");
        y.expect("read down");
        t1.await.expect("t1");
        t2.await.expect("t2");
        assert_eq!(got_up, up);
        assert_eq!(got_down, down);
        let (n1, n2) = r.await.expect("join").expect("relay");
        assert_eq!((n1 as usize, n2 as usize), (up.len(), down.len()));
    }
}
