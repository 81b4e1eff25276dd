//! One multiplexed stream: a receive queue filled by the session's reader
//! task and a send window that writes go against. Writes go to the
//! session's outgoing side (`writer.rs`: straight to the socket when it is
//! idle, else into the shared queue); there is no per-stream task.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::Conn;
use super::frame::{Header, Kind, DEFAULT_WINDOW, FIN, RST};
use super::sink::DirectSink;

/// Largest data frame we send. Bigger frames mean fewer headers and wake-ups
/// per byte; the receiver delivers a frame in pieces as it arrives, so size
/// does not add latency.
pub(crate) const MAX_FRAME: usize = 128 * 1024;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take every stream down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct StreamState {
    pub id: u32,
    pub inner: Mutex<Inner>,
}

pub(crate) struct Inner {
    /// Received, not yet read: copies in pieces of at most `QUEUE_CHUNK`
    /// (see `enqueue`), and slices of read buffers (`Piece::pinned`).
    pub recv: VecDeque<Piece>,
    /// Credit the peer still has for sending to us.
    pub recv_window: u32,
    /// The window we keep granting: grows while the peer is starved of
    /// credit and we keep up (see `consumed`).
    pub window: u32,
    /// Read since the last window update we sent.
    pub consumed: u32,
    /// Bytes in `recv`.
    pub queued: usize,
    /// Slices of read buffers in `recv`, each charged `READ_BUF` of the
    /// budget until it is taken (see `conn::PIN_AT_LEAST`).
    pub pins: usize,
    /// Bytes the application has taken (read, or written to the sink).
    pub delivered: u64,
    /// Where the reader task writes payloads directly while nothing is
    /// queued (see `MuxStream::set_sink`).
    pub sink: Option<Arc<dyn DirectSink>>,
    /// The peer ran (nearly) out of credit since the last window update.
    pub starved: bool,
    pub remote_fin: bool,
    pub reader: Option<Waker>,
    /// Credit we have for sending.
    pub send_window: u32,
    pub local_fin: bool,
    pub writer: Option<Waker>,
    /// Reset by the peer, by the end of the session, or dropped by us.
    pub reset: bool,
    /// The reset came from the end of the whole session.
    pub session_gone: bool,
}

impl StreamState {
    pub fn new(id: u32) -> Arc<Self> {
        Arc::new(StreamState {
            id,
            inner: Mutex::new(Inner {
                recv: VecDeque::new(),
                recv_window: DEFAULT_WINDOW,
                window: DEFAULT_WINDOW,
                consumed: 0,
                queued: 0,
                pins: 0,
                delivered: 0,
                sink: None,
                starved: false,
                remote_fin: false,
                reader: None,
                send_window: DEFAULT_WINDOW,
                local_fin: false,
                writer: None,
                reset: false,
                session_gone: false,
            }),
        })
    }

    /// Marks the stream dead and wakes whoever waits on it.
    pub fn reset(&self, session_gone: bool) {
        let mut inner = lock(&self.inner);
        inner.reset = true;
        inner.session_gone |= session_gone;
        let (r, w) = (inner.reader.take(), inner.writer.take());
        drop(inner);
        wake(r);
        wake(w);
    }
}

/// Size of the pieces a stream's receive queue is kept in. Received data
/// is copied into the last piece while it has room: a peer sending
/// one-byte frames costs one byte each, not an allocation each, and a
/// stream's queue never holds more than `queued + 2 * QUEUE_CHUNK`
/// (the unread part of the first piece and the free part of the last).
pub(crate) const QUEUE_CHUNK: usize = 16 * 1024;

/// A piece of a stream's receive queue.
pub(crate) struct Piece {
    pub data: BytesMut,
    /// A slice of the reader's read buffer (keeping all of it alive), not
    /// a copy.
    pub pinned: bool,
}

/// Appends a copy of `data` to a receive queue.
pub(crate) fn enqueue(recv: &mut VecDeque<Piece>, mut data: &[u8]) {
    if let Some(back) = recv.back_mut().filter(|b| !b.pinned) {
        let k = (back.data.capacity() - back.data.len()).min(data.len());
        back.data.extend_from_slice(&data[..k]);
        data = &data[k..];
    }
    for piece in data.chunks(QUEUE_CHUNK) {
        let mut b = BytesMut::with_capacity(QUEUE_CHUNK);
        b.extend_from_slice(piece);
        recv.push_back(Piece {
            data: b,
            pinned: false,
        });
    }
}

/// Takes the (empty) first piece off the queue, giving back its charge.
fn pop_front(inner: &mut Inner, conn: &Conn) {
    if let Some(p) = inner.recv.pop_front() {
        if p.pinned {
            inner.pins -= 1;
            conn.unpin(1);
        }
    }
}

pub(crate) fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// Counts `n` bytes as taken by the application and gives the peer credit
/// back in big steps (as yamux does), only while it may still send.
pub(crate) fn consumed(inner: &mut Inner, conn: &Conn, id: u32, n: usize) {
    inner.consumed += n as u32;
    inner.delivered += n as u64;
    if inner.remote_fin || inner.reset || inner.consumed < inner.window / 2 {
        return;
    }
    let mut credit = std::mem::take(&mut inner.consumed);
    // The peer ran almost out of credit, yet we keep up with what it sends:
    // the window, not either end, is what limits this stream. Double it
    // while the session's budget allows. (A slow reader leaves data queued
    // and never grows it.)
    if std::mem::take(&mut inner.starved)
        && inner.queued < inner.window as usize / 4
        && conn.grow_window(inner.window)
    {
        credit += inner.window;
        inner.window *= 2;
    }
    inner.recv_window += credit;
    conn.push_control(Header::new(Kind::WindowUpdate, 0, id, credit));
}

fn store(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// A multiplexed stream with tokio's I/O traits. Dropping it without both
/// sides having closed resets it, so the peer learns at once.
pub struct MuxStream {
    state: Arc<StreamState>,
    conn: Arc<Conn>,
}

impl std::fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxStream")
            .field("id", &self.state.id)
            .finish()
    }
}

impl MuxStream {
    pub(crate) fn new(state: Arc<StreamState>, conn: Arc<Conn>) -> Self {
        MuxStream { state, conn }
    }

    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// Hands the stream's incoming data to `sink`: while nothing is queued,
    /// the session's reader task writes payloads straight into the socket
    /// (no task wake-up, no copy into a relay buffer); what the socket
    /// cannot take at once is queued for [`MuxStream::poll_drain`].
    pub fn set_sink(&self, sink: Arc<dyn DirectSink>) {
        lock(&self.state.inner).sink = Some(sink);
    }

    /// Writes queued data to the sink until the peer closes its side, then
    /// shuts the sink's write side down. Returns the bytes delivered.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let mut inner = lock(&self.state.inner);
        let Some(sink) = inner.sink.clone() else {
            return Poll::Ready(Err(io::Error::other("stream has no sink")));
        };
        loop {
            if let Some(front) = inner.recv.front_mut() {
                match sink.try_write(&front.data) {
                    Ok(n) => {
                        front.data.advance(n);
                        if front.data.is_empty() {
                            pop_front(&mut inner, &self.conn);
                        }
                        inner.queued -= n;
                        consumed(&mut inner, &self.conn, self.state.id, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        ready!(sink.poll_write_ready(cx))?;
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            if inner.remote_fin {
                sink.shutdown_write()?;
                return Poll::Ready(Ok(inner.delivered));
            }
            if inner.reset {
                return Poll::Ready(Err(reset_error(&inner)));
            }
            store(&mut inner.reader, cx);
            return Poll::Pending;
        }
    }

    pub(crate) fn state(&self) -> Arc<StreamState> {
        self.state.clone()
    }
}

fn reset_error(inner: &Inner) -> io::Error {
    if inner.session_gone {
        session_gone()
    } else {
        io::Error::new(io::ErrorKind::ConnectionReset, "multiplexed stream reset")
    }
}

/// The error every stream of a session that ended reports
/// (see [`super::is_session_gone`]).
pub(crate) fn session_gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the multiplexed session ended",
    )
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = lock(&self.state.inner);
        let mut n = 0;
        while buf.remaining() > 0 {
            let Some(front) = inner.recv.front_mut() else {
                break;
            };
            let k = front.data.len().min(buf.remaining());
            buf.put_slice(&front.data[..k]);
            front.data.advance(k);
            if front.data.is_empty() {
                pop_front(&mut inner, &self.conn);
            }
            n += k;
        }
        if n > 0 {
            inner.queued -= n;
            consumed(&mut inner, &self.conn, self.state.id, n);
            return Poll::Ready(Ok(()));
        }
        if inner.remote_fin {
            return Poll::Ready(Ok(()));
        }
        if inner.reset {
            return Poll::Ready(Err(reset_error(&inner)));
        }
        store(&mut inner.reader, cx);
        Poll::Pending
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = lock(&self.state.inner);
        if inner.reset {
            return Poll::Ready(Err(reset_error(&inner)));
        }
        if inner.local_fin {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if inner.send_window == 0 {
            store(&mut inner.writer, cx);
            return Poll::Pending;
        }
        let n = buf.len().min(inner.send_window as usize).min(MAX_FRAME);
        match self.conn.out.poll_push_data(cx, self.state.id, &buf[..n]) {
            Poll::Ready(Ok(())) => {
                inner.send_window -= n as u32;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(session_gone())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Everything written is already queued for the session's writer,
        // which sends as soon as it can.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = lock(&self.state.inner);
        if inner.local_fin || inner.reset {
            return Poll::Ready(Ok(()));
        }
        inner.local_fin = true;
        self.conn
            .push_control(Header::new(Kind::Data, FIN, self.state.id, 0));
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let mut inner = lock(&self.state.inner);
        self.conn.release_window(inner.window);
        let finished = inner.reset || (inner.local_fin && inner.remote_fin);
        inner.reset = true;
        inner.recv.clear();
        inner.queued = 0;
        self.conn.unpin(std::mem::take(&mut inner.pins));
        drop(inner);
        if !finished {
            self.conn
                .push_control(Header::new(Kind::WindowUpdate, RST, self.state.id, 0));
        }
        self.conn.forget(self.state.id);
    }
}
