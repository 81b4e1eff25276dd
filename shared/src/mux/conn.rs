//! The session's shared state and its two tasks.
//!
//! The reader task owns the read half: it parses frames and hands payloads
//! to streams (without copying big ones), or writes them straight into a
//! stream's sink socket. Writes from every stream share one outgoing side
//! (`writer`): a stream that finds nobody writing sends a large frame
//! itself; small frames in quick succession, and whatever piles up while
//! someone writes, go out from the writer task in one go.
//! Reading and writing do not wait for each other, so decrypting and
//! encrypting a TLS session proceed in parallel, and small frames of many
//! streams leave in one write.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frame::{self, Header, Kind, ACK, DEFAULT_WINDOW, FIN, HEADER_LEN, RST, SYN};
use super::stream::{consumed, lock, wake, MuxStream, StreamState};
use super::writer::{Outbox, WriteIo};
use super::{Mode, MuxConfig, MuxError, CLOSE_GRACE};

/// Frames the peer makes us send (window updates, pings, resets) are queued
/// regardless of `OUT_HIGH`; a peer that provokes them without ever reading
/// is cut off here.
const OUT_HARD_CAP: usize = 64 * 1024 * 1024;

/// Largest receive window one stream can grow to.
const MAX_WINDOW: u32 = 16 * 1024 * 1024;

/// What all streams of a session together may be granted beyond their
/// initial windows: bounds the memory a session's fast streams can make us
/// buffer when their readers later stall.
const WINDOW_BUDGET: usize = 64 * 1024 * 1024;

/// Read buffer of the reader task: large reads mean few syscalls (and with
/// TLS, whole records) per byte.
const READ_BUF: usize = 256 * 1024;

/// Payloads smaller than this are copied out of the read buffer, so that a
/// small unread message cannot pin a whole read buffer in memory.
const COPY_BELOW: usize = 16 * 1024;

struct Table {
    streams: HashMap<u32, Arc<StreamState>>,
    next_id: u32,
    closed: bool,
}

pub(crate) struct Conn {
    max_streams: usize,
    mode: Mode,
    pub out: Outbox,
    /// Left of `WINDOW_BUDGET`.
    window_budget: AtomicUsize,
    table: Mutex<Table>,
}

impl Conn {
    pub fn new(mode: Mode, cfg: &MuxConfig, io: WriteIo) -> Arc<Self> {
        Arc::new(Conn {
            max_streams: cfg.max_streams.max(1),
            mode,
            out: Outbox::new(io),
            window_budget: AtomicUsize::new(WINDOW_BUDGET),
            table: Mutex::new(Table {
                streams: HashMap::new(),
                next_id: match mode {
                    Mode::Client => 1,
                    Mode::Server => 2,
                },
                closed: false,
            }),
        })
    }

    pub fn push_control(&self, h: Header) {
        self.out.push_control(h);
    }

    /// Takes `by` bytes of window growth from the session's budget.
    pub fn grow_window(&self, by: u32) -> bool {
        if by.saturating_mul(2) > MAX_WINDOW {
            return false;
        }
        self.window_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(by as usize)
            })
            .is_ok()
    }

    /// Gives back the growth of a stream's window when the stream goes.
    pub fn release_window(&self, window: u32) {
        let grown = window.saturating_sub(DEFAULT_WINDOW) as usize;
        if grown > 0 {
            self.window_budget.fetch_add(grown, Ordering::Relaxed);
        }
    }

    /// Opens an outbound stream. The SYN goes out with the window we grant;
    /// nothing waits for the peer's acknowledgement.
    pub fn open(self: &Arc<Self>) -> Result<MuxStream, MuxError> {
        let mut table = lock(&self.table);
        if table.closed {
            return Err(MuxError::Closed);
        }
        let id = table.next_id;
        table.next_id = id.checked_add(2).ok_or(MuxError::IdsExhausted)?;
        Ok(self.register(table, id, SYN))
    }

    /// Enters a new stream in the table and tells the peer (SYN for ours,
    /// ACK for theirs). Every stream starts at yamux's default window;
    /// `consumed` grows it when that is what limits the stream.
    fn register(
        self: &Arc<Self>,
        mut table: MutexGuard<'_, Table>,
        id: u32,
        flag: u16,
    ) -> MuxStream {
        let state = StreamState::new(id);
        table.streams.insert(id, state.clone());
        drop(table);
        self.push_control(Header::new(Kind::WindowUpdate, flag, id, 0));
        MuxStream::new(state, self.clone())
    }

    /// Called when a stream handle is dropped.
    pub fn forget(&self, id: u32) {
        lock(&self.table).streams.remove(&id);
    }

    fn get(&self, id: u32) -> Option<Arc<StreamState>> {
        lock(&self.table).streams.get(&id).cloned()
    }

    /// A stream the peer opened: acknowledge it, or refuse it with a reset
    /// when the table is full.
    fn accept(self: &Arc<Self>, id: u32) -> Result<Option<MuxStream>, MuxError> {
        let peer_odd = self.mode == Mode::Server;
        if id == 0 || (id % 2 == 1) != peer_odd {
            return Err(MuxError::Protocol(format!(
                "peer opened stream {id} with the wrong parity"
            )));
        }
        let table = lock(&self.table);
        if table.closed {
            return Ok(None);
        }
        if table.streams.contains_key(&id) {
            return Err(MuxError::Protocol(format!("peer reopened stream {id}")));
        }
        if table.streams.len() >= self.max_streams {
            drop(table);
            tracing::debug!("refusing stream {id}: {} streams open", self.max_streams);
            self.push_control(Header::new(Kind::WindowUpdate, RST, id, 0));
            return Ok(None);
        }
        Ok(Some(self.register(table, id, ACK)))
    }

    /// Ends the session for every stream; the writer sends what is queued
    /// (a goodbye, if one was queued) and stops.
    pub fn shutdown(&self) {
        let streams: Vec<_> = {
            let mut table = lock(&self.table);
            table.closed = true;
            table.streams.drain().map(|(_, s)| s).collect()
        };
        for s in streams {
            s.reset(true);
        }
        self.out.close();
    }

    fn go_away(&self, code: u32) {
        self.push_control(Header::new(Kind::GoAway, 0, 0, code));
        self.shutdown();
    }
}

/// A data frame whose payload is still arriving.
struct Payload {
    stream: Option<Arc<StreamState>>,
    remaining: usize,
    flags: u16,
}

enum Step {
    Continue,
    /// The peer said goodbye.
    GoAway,
}

/// Reads and dispatches frames until the connection ends. Returns `Ok` when
/// the session ended cleanly (either side said goodbye, or EOF).
pub(crate) async fn read_loop<R>(
    conn: &Arc<Conn>,
    mut r: R,
    incoming: mpsc::UnboundedSender<MuxStream>,
    close: &CancellationToken,
    writer_dead: &CancellationToken,
) -> Result<ReadEnd, MuxError>
where
    R: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut payload: Option<Payload> = None;
    // Made once: a fresh `cancelled()` per read would register and
    // deregister two waiters for every read on the hot path.
    let mut closed = pin!(close.cancelled());
    let mut dead = pin!(writer_dead.cancelled());
    loop {
        // Dispatch everything complete in the buffer.
        loop {
            if let Some(p) = payload.as_mut() {
                let k = p.remaining.min(buf.len());
                if k > 0 {
                    let chunk = if k < COPY_BELOW {
                        let c = Bytes::copy_from_slice(&buf[..k]);
                        buf.advance(k);
                        c
                    } else {
                        buf.split_to(k).freeze()
                    };
                    p.remaining -= k;
                    if let Some(s) = &p.stream {
                        deliver(conn, s, chunk);
                    }
                }
                if p.remaining > 0 {
                    break;
                }
                if let Some(p) = payload.take() {
                    if let Some(s) = &p.stream {
                        apply_flags(s, p.flags);
                    }
                }
            }
            if buf.len() < HEADER_LEN {
                break;
            }
            let mut raw = [0u8; HEADER_LEN];
            raw.copy_from_slice(&buf[..HEADER_LEN]);
            buf.advance(HEADER_LEN);
            let h = Header::decode(&raw).map_err(|e| MuxError::Protocol(e.to_string()))?;
            match on_header(conn, h, &incoming, &mut payload)? {
                Step::Continue => {}
                Step::GoAway => return Ok(ReadEnd::GoAway),
            }
        }
        if conn.out.queued() > OUT_HARD_CAP {
            return Err(MuxError::Protocol(
                "peer keeps provoking replies without reading them".into(),
            ));
        }
        if buf.capacity() - buf.len() < COPY_BELOW {
            buf.reserve(READ_BUF);
        }
        tokio::select! {
            biased;
            _ = &mut closed => return Ok(ReadEnd::Closed),
            _ = &mut dead => return Ok(ReadEnd::WriterDead),
            n = r.read_buf(&mut buf) => {
                if n? == 0 {
                    return Ok(ReadEnd::Eof);
                }
            }
        }
    }
}

pub(crate) enum ReadEnd {
    /// We were asked to close.
    Closed,
    GoAway,
    Eof,
    WriterDead,
}

fn on_header(
    conn: &Arc<Conn>,
    h: Header,
    incoming: &mpsc::UnboundedSender<MuxStream>,
    payload: &mut Option<Payload>,
) -> Result<Step, MuxError> {
    match h.kind {
        Kind::Data | Kind::WindowUpdate => {
            let stream = if h.has(SYN) {
                match conn.accept(h.id)? {
                    Some(s) => {
                        let state = s.state();
                        // Nobody accepting any more: dropping the stream resets it.
                        let _ = incoming.send(s);
                        Some(state)
                    }
                    None => None,
                }
            } else {
                conn.get(h.id)
            };
            if h.kind == Kind::WindowUpdate {
                if let Some(s) = &stream {
                    credit(s, h.len)?;
                    apply_flags(s, h.flags);
                }
                return Ok(Step::Continue);
            }
            if let Some(s) = &stream {
                let mut inner = lock(&s.inner);
                if h.len > inner.recv_window {
                    return Err(MuxError::Protocol(format!(
                        "stream {} sent {} bytes with only {} of window",
                        h.id, h.len, inner.recv_window
                    )));
                }
                inner.recv_window -= h.len;
                if inner.recv_window < inner.window / 4 {
                    inner.starved = true;
                }
            }
            if h.len == 0 {
                if let Some(s) = &stream {
                    apply_flags(s, h.flags);
                }
            } else {
                *payload = Some(Payload {
                    stream,
                    remaining: h.len as usize,
                    flags: h.flags,
                });
            }
            Ok(Step::Continue)
        }
        Kind::Ping => {
            if h.has(SYN) {
                conn.push_control(Header::new(Kind::Ping, ACK, 0, h.len));
            }
            Ok(Step::Continue)
        }
        Kind::GoAway => {
            if h.len != frame::GO_AWAY_NORMAL {
                tracing::debug!("peer ended the multiplexed session with code {}", h.len);
            }
            Ok(Step::GoAway)
        }
    }
}

fn deliver(conn: &Conn, s: &StreamState, mut chunk: Bytes) {
    let mut inner = lock(&s.inner);
    if inner.reset {
        return;
    }
    if inner.recv.is_empty() {
        if let Some(sink) = &inner.sink {
            // Straight into the destination socket; errors are met (and
            // reported) again by the relay when it drains the queue.
            if let Ok(n) = sink.try_write(&chunk) {
                chunk.advance(n);
                consumed(&mut inner, conn, s.id, n);
                if chunk.is_empty() {
                    return;
                }
            }
        }
    }
    inner.queued += chunk.len();
    inner.recv.push_back(chunk);
    let w = inner.reader.take();
    drop(inner);
    wake(w);
}

fn credit(s: &StreamState, n: u32) -> Result<(), MuxError> {
    if n == 0 {
        return Ok(());
    }
    let mut inner = lock(&s.inner);
    inner.send_window = inner
        .send_window
        .checked_add(n)
        .ok_or_else(|| MuxError::Protocol(format!("stream {} window overflow", s.id)))?;
    let w = inner.writer.take();
    drop(inner);
    wake(w);
    Ok(())
}

fn apply_flags(s: &StreamState, flags: u16) {
    if flags & RST != 0 {
        s.reset(false);
    } else if flags & FIN != 0 {
        let mut inner = lock(&s.inner);
        inner.remote_fin = true;
        let w = inner.reader.take();
        drop(inner);
        wake(w);
    }
}

/// Runs a session until it ends: reads here, spawns the writer task.
pub(crate) async fn run<R>(
    conn: Arc<Conn>,
    r: R,
    incoming: mpsc::UnboundedSender<MuxStream>,
    close: CancellationToken,
) -> Result<(), MuxError>
where
    R: AsyncRead + Unpin,
{
    let writer_dead = CancellationToken::new();
    let writer = {
        let conn = conn.clone();
        let dead = writer_dead.clone();
        tokio::spawn(async move {
            let res = conn.out.run().await;
            dead.cancel();
            res
        })
    };
    let ended = read_loop(&conn, r, incoming, &close, &writer_dead).await;
    let grace = match &ended {
        Ok(ReadEnd::Closed) => {
            conn.go_away(frame::GO_AWAY_NORMAL);
            true
        }
        Err(MuxError::Protocol(_)) => {
            conn.go_away(frame::GO_AWAY_PROTOCOL);
            true
        }
        // Finished already; only its error is wanted.
        Ok(ReadEnd::WriterDead) => {
            conn.shutdown();
            true
        }
        _ => {
            conn.shutdown();
            false
        }
    };
    // Say goodbye if the link allows; a dead link must not keep the writer
    // (and its socket) alive.
    let abort = writer.abort_handle();
    let written = if grace {
        match tokio::time::timeout(CLOSE_GRACE, writer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                tracing::debug!("peer did not take the goodbye within {CLOSE_GRACE:?}");
                Ok(())
            }
        }
    } else {
        Ok(())
    };
    abort.abort();
    conn.out.detach();
    match ended {
        Ok(ReadEnd::WriterDead) => match written {
            Err(e) => Err(MuxError::Io(e)),
            Ok(()) => Err(MuxError::Closed),
        },
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}
