//! The session's shared state and its two tasks.
//!
//! The reader task owns the read half: it parses frames and writes payloads
//! straight into a stream's sink socket, or copies them into the stream's
//! queue (so no received piece pins the read buffer). Writes from every stream share one outgoing side
//! (`writer`): a stream that finds nobody writing sends a large frame
//! itself; small frames in quick succession, and whatever piles up while
//! someone writes, go out from the writer task in one go.
//! Reading and writing do not wait for each other, so decrypting and
//! encrypting a TLS session proceed in parallel, and small frames of many
//! streams leave in one write.

use std::collections::{BTreeMap, HashMap};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frame::{self, Header, Kind, ACK, DEFAULT_WINDOW, FIN, HEADER_LEN, RST, SYN};
use super::limits::{PingLimiter, Share};
use super::stream::{consumed, enqueue, lock, wake, MuxStream, Piece, StreamState};
use super::writer::{Outbox, WriteIo};
use super::{Mode, MuxConfig, MuxError, MuxStats, CLOSE_GRACE};

/// Largest receive window one stream can grow to.
const MAX_WINDOW: u32 = 16 * 1024 * 1024;

/// What all streams of a session together may be granted beyond their
/// initial windows: bounds the memory a session's fast streams can make us
/// buffer when their readers later stall.
const WINDOW_BUDGET: usize = 64 * 1024 * 1024;

/// Read buffer of the reader task: large reads mean few syscalls (and with
/// TLS, whole records) per byte.
pub(crate) const READ_BUF: usize = 256 * 1024;

/// A piece at least this large that has to be queued is kept as a slice of
/// the read buffer instead of copied (a bulk transfer into a slower socket
/// queues nearly every byte: the copy cost ~20 % more CPU per GiB). The
/// slice keeps the whole read buffer alive, so it is charged `READ_BUF` of
/// the process budget until it is taken, and copied instead when the
/// budget has no room: slices never take memory beyond the budget, and a
/// stream with a 256 KiB window holds at most 4.
const PIN_AT_LEAST: usize = 64 * 1024;

/// Below this much free room the read buffer is compacted or grown first.
const MIN_READ: usize = 16 * 1024;

/// Runs of stream ids below the peer's highest that it has skipped and may
/// still open (SYNs of streams opened together can arrive out of order).
/// Kept as ranges, so a SYN costs O(log n) however far it jumps; beyond
/// this many runs the lowest are forgotten, and opening those is an error.
const MAX_SKIPPED_RUNS: usize = 1024;

struct Table {
    streams: HashMap<u32, Arc<StreamState>>,
    next_id: u32,
    /// Highest stream id the peer has opened, and the ids below it it has
    /// not opened yet: a SYN for any other id at or below it reuses an id,
    /// which yamux forbids.
    peer_high: u32,
    /// Skipped ids as runs: first id → last id (both of the peer's parity).
    peer_skipped: BTreeMap<u32, u32>,
    closed: bool,
    /// The peer said goodbye: no new streams, the open ones finish.
    peer_gone_away: bool,
}

impl Table {
    /// Records that the peer opened `id`; an id it used before is an error.
    fn note_peer_id(&mut self, id: u32) -> Result<(), MuxError> {
        if id <= self.peer_high {
            // Inside a skipped run: split the run around it.
            let run = self
                .peer_skipped
                .range(..=id)
                .next_back()
                .map(|(&s, &e)| (s, e));
            return match run {
                Some((first, last)) if id <= last => {
                    self.peer_skipped.remove(&first);
                    if first < id {
                        self.peer_skipped.insert(first, id - 2);
                    }
                    if id < last {
                        self.peer_skipped.insert(id + 2, last);
                    }
                    Ok(())
                }
                _ => Err(MuxError::Protocol(format!("peer reused stream id {id}"))),
            };
        }
        // The ids of the peer's parity between the old highest and this one.
        let first = match self.peer_high {
            0 if id % 2 == 1 => 1,
            0 => 2,
            high => high + 2,
        };
        if first < id {
            self.peer_skipped.insert(first, id - 2);
            if self.peer_skipped.len() > MAX_SKIPPED_RUNS {
                self.peer_skipped.pop_first();
            }
        }
        self.peer_high = id;
        Ok(())
    }
}

pub(crate) struct Conn {
    /// Streams the peer may have open now, and once trusted.
    max_streams: AtomicUsize,
    trusted_max_streams: usize,
    mode: Mode,
    pub out: Outbox,
    /// Left of `WINDOW_BUDGET`.
    window_budget: AtomicUsize,
    /// This session's part of the budget shared with the other sessions
    /// of the process.
    budget: Share,
    /// See `MuxConfig::out_pause`.
    out_pause: AtomicUsize,
    /// Ends the whole session (when stream ids run out).
    close: CancellationToken,
    table: Mutex<Table>,
}

impl Conn {
    pub fn new(mode: Mode, cfg: &MuxConfig, io: WriteIo, close: CancellationToken) -> Arc<Self> {
        let max_streams = cfg.max_streams.max(1);
        Arc::new(Conn {
            max_streams: AtomicUsize::new(if cfg.untrusted {
                max_streams.min(super::UNTRUSTED_MAX_STREAMS)
            } else {
                max_streams
            }),
            trusted_max_streams: max_streams,
            mode,
            out: Outbox::new(io),
            window_budget: AtomicUsize::new(WINDOW_BUDGET),
            budget: Share::new(cfg.budget.clone()),
            out_pause: AtomicUsize::new(cfg.out_pause),
            close,
            table: Mutex::new(Table {
                streams: HashMap::new(),
                next_id: match mode {
                    Mode::Client => 1,
                    Mode::Server => 2,
                },
                peer_high: 0,
                peer_skipped: BTreeMap::new(),
                closed: false,
                peer_gone_away: false,
            }),
        })
    }

    pub fn push_control(&self, h: Header) {
        self.out.push_control(h);
    }

    pub fn trust(&self) {
        self.out_pause
            .store(super::TRUSTED_OUT_PAUSE, Ordering::Relaxed);
        self.max_streams
            .store(self.trusted_max_streams, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub fn set_next_id(&self, id: u32) {
        lock(&self.table).next_id = id;
    }

    /// More is queued to go out than the peer may make us hold.
    fn over_out_pause(&self) -> bool {
        self.out.queued() > self.out_pause.load(Ordering::Relaxed)
    }

    /// Takes `by` bytes of window growth from the session's budget and the
    /// process's.
    pub fn grow_window(&self, by: u32) -> bool {
        if by.saturating_mul(2) > MAX_WINDOW {
            return false;
        }
        let took = self
            .window_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(by as usize)
            })
            .is_ok();
        if took && !self.budget.take(by as usize) {
            self.window_budget.fetch_add(by as usize, Ordering::Relaxed);
            return false;
        }
        took
    }

    /// `n` slices of read buffers were taken from a stream's queue (or
    /// dropped with it): give back what they were charged.
    pub fn unpin(&self, n: usize) {
        if n > 0 {
            self.budget.give(n * READ_BUF);
        }
    }

    /// Gives back a stream's window when the stream goes.
    pub fn release_window(&self, window: u32) {
        self.budget.give(window as usize);
        let grown = window.saturating_sub(DEFAULT_WINDOW) as usize;
        if grown > 0 {
            self.window_budget.fetch_add(grown, Ordering::Relaxed);
        }
    }

    /// Opens an outbound stream. The SYN goes out with the window we grant;
    /// nothing waits for the peer's acknowledgement. When the ids run out
    /// the session ends (with a goodbye), so the client reconnects and
    /// starts again with fresh ids.
    pub fn open(self: &Arc<Self>) -> Result<MuxStream, MuxError> {
        let mut table = lock(&self.table);
        if table.closed || table.peer_gone_away {
            return Err(MuxError::Closed);
        }
        let id = table.next_id;
        let Some(next) = id.checked_add(2) else {
            drop(table);
            tracing::warn!("multiplexed session ran out of stream ids; ending it");
            self.close.cancel();
            return Err(MuxError::IdsExhausted);
        };
        table.next_id = next;
        self.register(table, id, SYN).ok_or(MuxError::Budget)
    }

    /// Enters a new stream in the table and tells the peer (SYN for ours,
    /// ACK for theirs), if the process's budget has room for its window.
    /// Every stream starts at yamux's default window; `consumed` grows it
    /// when that is what limits the stream.
    fn register(
        self: &Arc<Self>,
        mut table: MutexGuard<'_, Table>,
        id: u32,
        flag: u16,
    ) -> Option<MuxStream> {
        if !self.budget.take(DEFAULT_WINDOW as usize) {
            return None;
        }
        let state = StreamState::new(id);
        table.streams.insert(id, state.clone());
        drop(table);
        self.push_control(Header::new(Kind::WindowUpdate, flag, id, 0));
        Some(MuxStream::new(state, self.clone()))
    }

    /// Called when a stream handle is dropped.
    pub fn forget(&self, id: u32) {
        lock(&self.table).streams.remove(&id);
    }

    fn get(&self, id: u32) -> Option<Arc<StreamState>> {
        lock(&self.table).streams.get(&id).cloned()
    }

    /// A stream the peer opened: acknowledge it, or refuse it with a reset
    /// when the table is full or the budget has no room.
    fn accept(self: &Arc<Self>, id: u32) -> Result<Option<MuxStream>, MuxError> {
        let peer_odd = self.mode == Mode::Server;
        if id == 0 || (id % 2 == 1) != peer_odd {
            return Err(MuxError::Protocol(format!(
                "peer opened stream {id} with the wrong parity"
            )));
        }
        let mut table = lock(&self.table);
        if table.streams.contains_key(&id) {
            return Err(MuxError::Protocol(format!("peer reopened stream {id}")));
        }
        table.note_peer_id(id)?;
        if table.closed {
            return Ok(None);
        }
        let refuse = if table.peer_gone_away {
            Some("the peer said goodbye")
        } else if table.streams.len() >= self.max_streams.load(Ordering::Relaxed) {
            Some("too many streams open")
        } else {
            None
        };
        let accepted = match refuse {
            Some(why) => {
                drop(table);
                tracing::debug!("refusing stream {id}: {why}");
                None
            }
            None => {
                let s = self.register(table, id, ACK);
                if s.is_none() {
                    tracing::debug!("refusing stream {id}: receive buffer budget exhausted");
                }
                s
            }
        };
        if accepted.is_none() {
            self.push_control(Header::new(Kind::WindowUpdate, RST, id, 0));
        }
        Ok(accepted)
    }

    pub fn stats(&self) -> MuxStats {
        let streams: Vec<_> = lock(&self.table).streams.values().cloned().collect();
        let mut st = MuxStats {
            streams: streams.len(),
            outgoing: self.out.queued(),
            ..MuxStats::default()
        };
        for s in streams {
            let inner = lock(&s.inner);
            st.queued += inner.queued;
            st.windows += inner.window as usize;
            if inner.queued > inner.window as usize {
                st.over_window += 1;
            }
        }
        st
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

    /// The peer said goodbye: it takes no new streams, the open ones go on.
    fn peer_gone_away(&self) {
        lock(&self.table).peer_gone_away = true;
    }

    pub fn peer_said_goodbye(&self) -> bool {
        lock(&self.table).peer_gone_away
    }
}

/// A data frame whose payload is still arriving.
struct Payload {
    stream: Option<Arc<StreamState>>,
    remaining: usize,
    flags: u16,
}

/// Reads and dispatches frames until the connection ends. Returns `Ok` when
/// the session ended cleanly (we were asked to close, or EOF).
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
    let mut pings = PingLimiter::new(tokio::time::Instant::now());
    // Made once: a fresh `cancelled()` per read would register and
    // deregister two waiters for every read on the hot path.
    let mut closed = pin!(close.cancelled());
    let mut dead = pin!(writer_dead.cancelled());
    loop {
        let paused = dispatch(conn, &mut buf, &mut payload, &incoming, &mut pings)?;
        if paused || conn.over_out_pause() {
            let drained = conn.out.drained();
            let mut drained = pin!(drained);
            drained.as_mut().enable();
            if conn.over_out_pause() {
                tokio::select! {
                    biased;
                    _ = &mut closed => return Ok(ReadEnd::Closed),
                    _ = &mut dead => return Ok(ReadEnd::WriterDead),
                    _ = drained => {}
                }
            }
            continue;
        }
        if buf.capacity() - buf.len() < MIN_READ {
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

/// Dispatches every complete frame (and payload piece) in `buf`, unless
/// the peer has made us queue more than it takes: then nothing more of
/// what it sent is looked at until the writer has caught up. Returns
/// whether it stopped for that reason.
fn dispatch(
    conn: &Arc<Conn>,
    buf: &mut BytesMut,
    payload: &mut Option<Payload>,
    incoming: &mpsc::UnboundedSender<MuxStream>,
    pings: &mut PingLimiter,
) -> Result<bool, MuxError> {
    // Only SYNs (an ack or a reset each) and pings (a pong) make us reply
    // frame for frame; data and window updates reply at most once per half
    // window or per stream. So the queue (behind a lock the senders share)
    // is checked once per round and after each provoking frame, not on
    // every frame of a bulk transfer.
    let mut check = true;
    loop {
        if let Some(p) = payload.as_mut() {
            let k = p.remaining.min(buf.len());
            if k > 0 {
                match &p.stream {
                    Some(s) => deliver(conn, s, buf, k),
                    None => buf.advance(k),
                }
                p.remaining -= k;
            }
            if p.remaining > 0 {
                return Ok(false);
            }
            if let Some(p) = payload.take() {
                if let Some(s) = &p.stream {
                    apply_flags(s, p.flags);
                }
            }
        }
        if buf.len() < HEADER_LEN {
            return Ok(false);
        }
        if check && conn.over_out_pause() {
            return Ok(true);
        }
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&buf[..HEADER_LEN]);
        buf.advance(HEADER_LEN);
        let h = Header::decode(&raw).map_err(|e| MuxError::Protocol(e.to_string()))?;
        check = h.has(SYN) || h.kind == Kind::Ping;
        on_header(conn, h, incoming, payload, pings)?;
    }
}

pub(crate) enum ReadEnd {
    /// We were asked to close.
    Closed,
    Eof,
    WriterDead,
}

fn on_header(
    conn: &Arc<Conn>,
    h: Header,
    incoming: &mpsc::UnboundedSender<MuxStream>,
    payload: &mut Option<Payload>,
    pings: &mut PingLimiter,
) -> Result<(), MuxError> {
    match h.kind {
        Kind::Data | Kind::WindowUpdate => on_stream_frame(conn, h, incoming, payload),
        Kind::Ping => {
            if h.has(SYN) {
                if pings.allow(tokio::time::Instant::now()) {
                    conn.push_control(Header::new(Kind::Ping, ACK, 0, h.len));
                } else {
                    tracing::trace!("ping over the rate limit; not answered");
                }
            }
            Ok(())
        }
        Kind::GoAway => {
            if h.len != frame::GO_AWAY_NORMAL {
                tracing::debug!("peer ended the multiplexed session with code {}", h.len);
            }
            conn.peer_gone_away();
            Ok(())
        }
    }
}

fn on_stream_frame(
    conn: &Arc<Conn>,
    h: Header,
    incoming: &mpsc::UnboundedSender<MuxStream>,
    payload: &mut Option<Payload>,
) -> Result<(), MuxError> {
    let mut stream = if h.has(SYN) {
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
        return Ok(());
    }
    if let Some(s) = stream.clone() {
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
        if inner.remote_fin && h.len > 0 && !inner.reset {
            // Data after the peer closed its side: that stream is broken,
            // the rest of the session is not.
            drop(inner);
            tracing::debug!("stream {} sent data after closing; resetting it", h.id);
            conn.push_control(Header::new(Kind::WindowUpdate, RST, h.id, 0));
            s.reset(false);
            stream = None;
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
    Ok(())
}

/// Hands the first `k` bytes of `buf` (payload) to a stream: straight into
/// its sink socket while nothing is queued; what is left is queued, as a
/// slice of the read buffer (see `PIN_AT_LEAST`) or copied (`enqueue`).
fn deliver(conn: &Conn, s: &StreamState, buf: &mut BytesMut, mut k: usize) {
    let mut inner = lock(&s.inner);
    if inner.reset {
        buf.advance(k);
        return;
    }
    if inner.recv.is_empty() {
        if let Some(sink) = &inner.sink {
            // Errors are met (and reported) again by the relay when it
            // drains the queue.
            if let Ok(n) = sink.try_write(&buf[..k]) {
                buf.advance(n);
                k -= n;
                consumed(&mut inner, conn, s.id, n);
                if k == 0 {
                    return;
                }
            }
        }
    }
    if k >= PIN_AT_LEAST && conn.budget.take(READ_BUF) {
        inner.pins += 1;
        let data = buf.split_to(k);
        inner.recv.push_back(Piece { data, pinned: true });
    } else {
        enqueue(&mut inner.recv, &buf[..k]);
        buf.advance(k);
    }
    inner.queued += k;
    debug_assert!(inner.queued <= inner.window as usize);
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

/// Ends the writer task and lets go of the socket however `run` ends,
/// including when its task is aborted: a session whose driver is gone must
/// not keep its connection open.
struct WriterGuard {
    conn: Arc<Conn>,
    writer: tokio::task::AbortHandle,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.writer.abort();
        self.conn.shutdown();
        self.conn.out.detach();
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
    let _guard = WriterGuard {
        conn: conn.clone(),
        writer: writer.abort_handle(),
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
    match ended {
        Ok(ReadEnd::WriterDead) => match written {
            Err(e) => Err(MuxError::Io(e)),
            Ok(()) => Err(MuxError::Closed),
        },
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            streams: HashMap::new(),
            next_id: 2,
            peer_high: 0,
            peer_skipped: BTreeMap::new(),
            closed: false,
            peer_gone_away: false,
        }
    }

    #[test]
    fn peer_ids_may_arrive_out_of_order_but_never_twice() {
        let mut t = table();
        for id in [5, 1, 3, 9, 7, 11] {
            t.note_peer_id(id).expect("first use");
        }
        assert!(t.peer_skipped.is_empty());
        for id in [1, 3, 5, 7, 9, 11] {
            assert!(t.note_peer_id(id).is_err(), "reuse of {id}");
        }
        // A huge jump is one run, whatever its length; ids in it open once.
        t.note_peer_id(1_000_001).expect("jump");
        assert_eq!(t.peer_skipped.len(), 1);
        for id in [13, 999_999, 500_001] {
            t.note_peer_id(id).expect("skipped id");
            assert!(t.note_peer_id(id).is_err(), "reuse of {id}");
        }
        // Beyond MAX_SKIPPED_RUNS runs, the oldest are forgotten.
        let mut next = 1_000_001;
        for _ in 0..MAX_SKIPPED_RUNS + 10 {
            next += 4;
            t.note_peer_id(next).expect("skip one id");
        }
        assert_eq!(t.peer_skipped.len(), MAX_SKIPPED_RUNS);
        assert!(t.note_peer_id(15).is_err(), "forgotten run");
        t.note_peer_id(next - 2).expect("recent skipped id");
    }
}
