//! Sending: every stream appends its frames to one outgoing buffer, and
//! whoever finds nobody writing sends it right away.
//!
//! A stream that sends a large frame while the connection is idle writes
//! it to the socket itself, straight from its own buffer, without waking
//! another task and without copying it into the queue first. A small frame
//! is queued and the writer task woken; it first lets the other tasks
//! woken at the same time run, so their small frames share one write (see
//! `DEFER_BELOW`). When the socket (or TLS) cannot take everything at
//! once, the rest goes to the writer task too, which waits for the socket
//! and keeps sending in batches until the queue is empty. One flag,
//! `writing`, says who may write, so frames never interleave.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

use super::frame::{Header, Kind, HEADER_LEN};
use super::stream::lock;
use super::MuxError;

/// Streams wait for the writer once this much is queued.
pub(crate) const OUT_HIGH: usize = 1024 * 1024;

/// What one stream may have queued and not yet taken by a writer: one
/// largest frame. Beyond it the stream waits for the next batch, so a
/// small frame of another stream never waits behind more than the batch
/// being written and one frame of each busy stream (not a megabyte of one
/// bulk transfer): round robin between streams, a frame at a time.
pub(crate) const STREAM_AHEAD: usize = super::stream::MAX_FRAME;

/// Data frames smaller than this, sent while nobody is writing less than
/// `BUSY_GAP` after the previous small one, go through the writer task
/// after it lets other ready tasks run, instead of straight to the socket:
/// with many small messages in flight (64 request/response connections)
/// frames from streams woken together then share one write (and TLS
/// record), ~28 % more requests per second. Larger frames go out at once:
/// deferring them (one more copy, one more hop) cost a third of
/// single-stream throughput.
const DEFER_BELOW: usize = 16 * 1024;

/// Deferring costs a lone request/response connection 10-15 µs per round
/// trip (the writer task's turn comes after the next poll for events), so
/// only frames that follow another small one this closely wait: a round
/// trip through the tunnel takes over 100 µs even on loopback, while 64
/// busy connections queue a frame every ~12 µs.
const BUSY_GAP: Duration = Duration::from_micros(50);

/// Capacity an outgoing buffer keeps between bursts.
const KEEP: usize = 64 * 1024;

pub(crate) type WriteIo = Box<dyn AsyncWrite + Send + Unpin>;

enum Next {
    Write,
    Yield,
    Wait,
    Finish,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    io: Mutex<WriteIo>,
    wake: Notify,
    /// Notified whenever queued bytes have left (the reader waits on it
    /// while the peer is not taking our replies).
    drained: Notify,
}

struct State {
    /// Frames queued and not yet taken by a writer.
    buf: BytesMut,
    /// An empty buffer with capacity, to swap with `buf`.
    spare: BytesMut,
    /// What a direct write could not send, handed to the writer task; goes
    /// out before `buf`.
    carry: BytesMut,
    /// The batch the writer task is writing now (taken out of `buf` or
    /// `carry`, but not sent yet).
    in_flight: usize,
    /// Somebody holds the right to write to the socket.
    writing: bool,
    /// The right to write was handed to the writer task (with `carry`).
    handoff: bool,
    /// The right to write was given to the writer task, which lets other
    /// tasks queue frames before it writes.
    deferred: bool,
    /// When the last small data frame (of any stream) was sent or queued.
    last_small: Option<Instant>,
    closed: bool,
    /// Streams waiting for `buf` to drain below `OUT_HIGH`, or for their
    /// frames in it to be taken.
    waiters: Vec<Waker>,
    /// Bytes each stream has in `buf` (few entries: the streams of one
    /// batch), cleared when a writer takes it.
    by_stream: Vec<(u32, usize)>,
}

impl State {
    /// Notes a small data frame; true if the one before was less than
    /// `BUSY_GAP` ago.
    fn small_frames_busy(&mut self) -> bool {
        let now = Instant::now();
        let busy = self.last_small.is_some_and(|t| now - t < BUSY_GAP);
        self.last_small = Some(now);
        busy
    }

    /// Takes the queued frames into `batch` (which must be empty).
    fn take(&mut self, batch: &mut BytesMut) -> Vec<Waker> {
        std::mem::swap(&mut self.buf, batch);
        self.by_stream.clear();
        std::mem::take(&mut self.waiters)
    }

    /// Whether stream `id` may queue `n` more bytes (see [`STREAM_AHEAD`]).
    fn stream_has_room(&self, id: u32, n: usize) -> bool {
        match self.by_stream.iter().find(|(s, _)| *s == id) {
            Some((_, queued)) => queued + n <= STREAM_AHEAD,
            None => true,
        }
    }

    /// Queues a data frame of stream `id`.
    fn queue_data(&mut self, id: u32, header: &[u8], data: &[u8]) {
        self.buf.reserve(header.len() + data.len());
        self.buf.extend_from_slice(header);
        self.buf.extend_from_slice(data);
        let n = header.len() + data.len();
        match self.by_stream.iter_mut().find(|(s, _)| *s == id) {
            Some((_, queued)) => *queued += n,
            None => self.by_stream.push((id, n)),
        }
    }

    /// The writer task takes `batch` to write it.
    fn take_in_flight(&mut self, batch: &mut BytesMut) -> Vec<Waker> {
        let w = self.take(batch);
        self.in_flight = batch.len();
        w
    }
}

/// A burst grows the buffers to about `OUT_HIGH`; an idle session does
/// not keep that much.
fn shrunk(b: BytesMut) -> BytesMut {
    if b.capacity() > KEEP {
        BytesMut::with_capacity(KEEP)
    } else {
        b
    }
}

fn wake_all(w: Vec<Waker>) {
    w.into_iter().for_each(Waker::wake);
}

impl Outbox {
    pub fn new(io: WriteIo) -> Self {
        Outbox {
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(64 * 1024),
                spare: BytesMut::with_capacity(64 * 1024),
                carry: BytesMut::new(),
                in_flight: 0,
                writing: false,
                handoff: false,
                deferred: false,
                last_small: None,
                closed: false,
                waiters: Vec::new(),
                by_stream: Vec::new(),
            }),
            io: Mutex::new(io),
            wake: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// Resolves the next time queued bytes leave. Enable it before checking
    /// `queued`, so a drain in between is not missed.
    pub fn drained(&self) -> tokio::sync::futures::Notified<'_> {
        self.drained.notified()
    }

    /// Queues a frame without payload. Never waits (the reader guards
    /// against peers that provoke such frames without reading).
    pub fn push_control(&self, h: Header) {
        let mut st = lock(&self.state);
        if st.closed {
            return;
        }
        h.encode(&mut st.buf);
        self.kick(st, &[]);
    }

    /// Sends or queues a data frame, or registers to be woken when there
    /// is room. When nobody is writing, the frame goes to the socket
    /// straight from `data`; only what the socket cannot take is copied.
    pub fn poll_push_data(
        &self,
        cx: &Context<'_>,
        id: u32,
        data: &[u8],
    ) -> Poll<Result<(), MuxError>> {
        let mut st = lock(&self.state);
        if st.closed {
            return Poll::Ready(Err(MuxError::Closed));
        }
        if st.buf.len() >= OUT_HIGH || !st.stream_has_room(id, HEADER_LEN + data.len()) {
            st.waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        let header = Header::new(Kind::Data, 0, id, data.len() as u32).to_bytes();
        let busy = data.len() < DEFER_BELOW && st.small_frames_busy();
        if st.writing {
            st.queue_data(id, &header, data);
        } else if busy {
            // Small frames come thick and fast: more may follow from other
            // streams woken together, so the writer task sends them in one go.
            st.writing = true;
            st.deferred = true;
            st.queue_data(id, &header, data);
            drop(st);
            self.wake.notify_one();
        } else {
            self.kick(st, &[&header, data]);
        }
        Poll::Ready(Ok(()))
    }

    /// Bytes of frames not yet written to the socket: queued, carried, and
    /// the batch being written.
    pub fn queued(&self) -> usize {
        let st = lock(&self.state);
        st.buf.len() + st.carry.len() + st.in_flight
    }

    /// No more frames; the writer task sends what is queued, then ends.
    pub fn close(&self) {
        let waiters = {
            let mut st = lock(&self.state);
            st.closed = true;
            std::mem::take(&mut st.waiters)
        };
        wake_all(waiters);
        self.wake.notify_one();
    }

    /// Lets go of the connection: the socket closes once the reader is gone
    /// too, even while openers of the dead session are still around.
    pub fn detach(&self) {
        *lock(&self.io) = Box::new(tokio::io::sink());
    }

    /// Writes the queue, then `more` (at most two parts), now if nobody
    /// else is writing.
    /// Whoever holds the right to write checks the queue before giving it
    /// up, so a frame queued meanwhile is never stranded; what the socket
    /// cannot take now goes to the writer task.
    fn kick(&self, mut st: std::sync::MutexGuard<'_, State>, more: &[&[u8]]) {
        if st.writing {
            for part in more {
                st.buf.extend_from_slice(part);
            }
            return;
        }
        st.writing = true;
        let mut batch = std::mem::take(&mut st.spare);
        let waiters = st.take(&mut batch);
        drop(st);
        wake_all(waiters);

        let mut parts = [&batch[..], &[], &[]];
        parts[1..=more.len()].copy_from_slice(more);
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let (mut written, flushed) = self.write_now(&parts);

        if written > 0 {
            self.drained.notify_waiters();
        }
        let mut st = lock(&self.state);
        if written == total && flushed {
            batch.clear();
            st.spare = shrunk(batch);
            st.writing = false;
            if !st.buf.is_empty() || st.closed {
                drop(st);
                self.wake.notify_one();
            }
        } else {
            // The rest, in order, becomes the writer task's carry.
            let mut carry = BytesMut::new();
            for part in parts {
                let skip = written.min(part.len());
                written -= skip;
                carry.extend_from_slice(&part[skip..]);
            }
            batch.clear();
            st.spare = shrunk(batch);
            st.carry = carry;
            st.handoff = true;
            drop(st);
            self.wake.notify_one();
        }
    }

    /// Writes `parts` in order without waiting; returns how much went out
    /// and whether it was also flushed (TLS may hold encrypted bytes back).
    /// Errors are left for the writer task to meet again and report.
    fn write_now(&self, parts: &[&[u8]; 3]) -> (usize, bool) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut io = lock(&self.io);
        let mut slices = [IoSlice::new(&[]); 3];
        let mut used = 0;
        for part in parts.iter().filter(|p| !p.is_empty()) {
            slices[used] = IoSlice::new(part);
            used += 1;
        }
        let mut bufs = &mut slices[..used];
        let mut off = 0;
        while !bufs.is_empty() {
            match Pin::new(&mut *io).poll_write_vectored(&mut cx, bufs) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    off += n;
                    IoSlice::advance_slices(&mut bufs, n);
                }
                _ => return (off, false),
            }
        }
        let flushed = matches!(Pin::new(&mut *io).poll_flush(&mut cx), Poll::Ready(Ok(())));
        (off, flushed)
    }

    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *lock(&self.io)).poll_write(cx, data)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        Ok(())
    }

    fn release_if_idle(&self) -> bool {
        let mut st = lock(&self.state);
        if st.buf.is_empty() {
            st.writing = false;
            st.buf = shrunk(std::mem::take(&mut st.buf));
        }
        !st.writing
    }

    /// The writer task: takes over when a direct write could not finish,
    /// or when frames were queued while a direct write was running.
    pub async fn run(&self) -> io::Result<()> {
        let mut batch = BytesMut::with_capacity(64 * 1024);
        loop {
            // Wait for the right to write and something to send.
            loop {
                let next = {
                    let mut st = lock(&self.state);
                    if st.deferred {
                        st.deferred = false;
                        Next::Yield
                    } else if st.handoff {
                        st.handoff = false;
                        std::mem::swap(&mut st.carry, &mut batch);
                        st.in_flight = batch.len();
                        Next::Write
                    } else if !st.writing && !st.buf.is_empty() {
                        st.writing = true;
                        Next::Write
                    } else if !st.writing && st.closed {
                        Next::Finish
                    } else {
                        Next::Wait
                    }
                };
                match next {
                    Next::Write => break,
                    Next::Yield => {
                        // Streams made ready by the same wake-up queue their
                        // frames meanwhile; they go out in one write.
                        tokio::task::yield_now().await;
                        break;
                    }
                    Next::Wait => self.wake.notified().await,
                    Next::Finish => {
                        // Best effort: the peer may be gone already.
                        let _ = poll_fn(|cx| Pin::new(&mut *lock(&self.io)).poll_flush(cx)).await;
                        let _ =
                            poll_fn(|cx| Pin::new(&mut *lock(&self.io)).poll_shutdown(cx)).await;
                        return Ok(());
                    }
                }
            }
            // Send until the queue is empty, then flush and give the right up.
            loop {
                if batch.is_empty() {
                    let waiters = lock(&self.state).take_in_flight(&mut batch);
                    wake_all(waiters);
                }
                if !batch.is_empty() {
                    self.write_all(&batch).await?;
                    batch.clear();
                    lock(&self.state).in_flight = 0;
                    self.drained.notify_waiters();
                    continue;
                }
                poll_fn(|cx| Pin::new(&mut *lock(&self.io)).poll_flush(cx)).await?;
                if self.release_if_idle() {
                    batch = shrunk(batch);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::frame::Kind;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A socket that takes arbitrary amounts, or nothing (Pending, woken
    /// again at once), as `plan` says; never Pending twice in a row, so it
    /// always gets somewhere (a plan of only Pendings would hang the test,
    /// not find a bug).
    struct Chaos {
        out: Arc<Mutex<Vec<u8>>>,
        plan: Vec<u8>,
        i: usize,
        was_pending: bool,
    }

    impl Chaos {
        fn step(&mut self) -> u8 {
            self.i += 1;
            self.plan[self.i % self.plan.len()]
        }

        /// Whether this call returns Pending, when the plan says `every`.
        fn pending(&mut self, s: u8, every: u8) -> bool {
            let p = s % every == 0 && !self.was_pending;
            self.was_pending = p;
            p
        }
    }

    impl AsyncWrite for Chaos {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let s = self.step();
            if self.pending(s, 4) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(1 + s as usize * 97);
            lock(&self.out).extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let s = self.step();
            if self.pending(s, 5) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn run(plan: Vec<u8>, sizes: Vec<usize>, streams: u32) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let out = Arc::new(Mutex::new(Vec::new()));
            let chaos = Chaos {
                out: out.clone(),
                plan,
                i: 0,
                was_pending: false,
            };
            let outbox = Arc::new(Outbox::new(Box::new(chaos)));
            let writer = tokio::spawn({
                let o = outbox.clone();
                async move { o.run().await }
            });
            let mut tasks = Vec::new();
            for id in 1..=streams {
                let o = outbox.clone();
                let sizes = sizes.clone();
                tasks.push(tokio::spawn(async move {
                    for (seq, n) in sizes.iter().enumerate() {
                        // Payload: the stream id and a running counter.
                        let data: Vec<u8> = (0..*n)
                            .map(|i| (id as usize * 31 + seq + i) as u8)
                            .collect();
                        poll_fn(|cx| o.poll_push_data(cx, id, &data))
                            .await
                            .expect("push");
                        if seq % 3 == 0 {
                            o.push_control(Header::new(Kind::WindowUpdate, 0, id, seq as u32));
                        }
                        if seq % 2 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.expect("pusher");
            }
            outbox.close();
            writer.await.expect("join").expect("writer");
            let v = lock(&out).clone();
            v
        })
    }

    /// A socket that never takes anything.
    struct Stuck;

    impl AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    /// What the writer task has taken but not written still counts as
    /// queued (the reader's pause and the bound on replies a peer provokes rely on it).
    #[tokio::test]
    async fn the_batch_being_written_counts_as_queued() {
        let outbox = Arc::new(Outbox::new(Box::new(Stuck)));
        let writer = tokio::spawn({
            let o = outbox.clone();
            async move { o.run().await }
        });
        for i in 0..100 {
            outbox.push_control(Header::new(Kind::WindowUpdate, 0, 1, i));
        }
        // Let the writer task take the batch and block on the socket.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            lock(&outbox.state).in_flight > 0,
            "the writer holds a batch"
        );
        assert_eq!(outbox.queued(), 100 * HEADER_LEN);
        writer.abort();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn frames_leave_whole_and_in_order(
            plan in proptest::collection::vec(any::<u8>(), 1..64),
            sizes in proptest::collection::vec(prop_oneof![1usize..64, 64usize..40_000], 1..24),
            streams in 1u32..5,
        ) {
            let bytes = run(plan, sizes.clone(), streams);
            // Parse it all back: every frame whole, each stream's frames in
            // the order it sent them.
            let mut next = vec![0usize; streams as usize + 1];
            let mut ctrl = vec![0u32; streams as usize + 1];
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                prop_assert!(rest.len() >= HEADER_LEN, "cut header");
                let h = Header::decode(rest[..HEADER_LEN].try_into().expect("12")).expect("header");
                rest = &rest[HEADER_LEN..];
                let id = h.id as usize;
                prop_assert!(id >= 1 && id <= streams as usize);
                match h.kind {
                    Kind::Data => {
                        let seq = next[id];
                        prop_assert!(seq < sizes.len(), "extra frame");
                        prop_assert_eq!(h.len as usize, sizes[seq]);
                        let body = &rest[..h.len as usize];
                        for (i, b) in body.iter().enumerate() {
                            prop_assert_eq!(*b, (id * 31 + seq + i) as u8);
                        }
                        rest = &rest[h.len as usize..];
                        next[id] += 1;
                    }
                    Kind::WindowUpdate => {
                        prop_assert_eq!(h.len, ctrl[id] * 3, "control frames in order");
                        prop_assert!((h.len as usize) < next[id], "control before its data");
                        ctrl[id] += 1;
                    }
                    k => prop_assert!(false, "unexpected {:?}", k),
                }
            }
            for (id, sent) in next.iter().enumerate().skip(1) {
                prop_assert_eq!(*sent, sizes.len(), "stream {} lost frames", id);
            }
        }
    }
}

#[cfg(test)]
mod fairness {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    /// One stream sends bulk as fast as the queue takes it, into a socket
    /// slower than it; another sends a small frame now and then. What is
    /// queued ahead of each small frame is at most the batch being written
    /// and one frame of the bulk stream.
    #[tokio::test]
    async fn a_small_frame_waits_behind_at_most_a_frame_of_a_bulk_stream() {
        let (ours, mut theirs) = tokio::io::duplex(16 * 1024);
        let out = Arc::new(Outbox::new(Box::new(ours)));
        let writer = tokio::spawn({
            let out = out.clone();
            async move { out.run().await }
        });
        let reader = tokio::spawn(async move {
            let mut b = vec![0u8; 16 * 1024];
            let mut total = 0usize;
            while let Ok(n) = theirs.read(&mut b).await {
                if n == 0 {
                    break;
                }
                total += n;
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            total
        });
        let bulk = tokio::spawn({
            let out = out.clone();
            async move {
                let data = vec![7u8; crate::stream::MAX_FRAME];
                for _ in 0..48 {
                    poll_fn(|cx| out.poll_push_data(cx, 1, &data))
                        .await
                        .expect("push");
                }
            }
        });
        let mut worst = 0;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(3)).await;
            // No await between the two: nothing is queued in between.
            let ahead = out.queued();
            poll_fn(|cx| out.poll_push_data(cx, 3, b"ping"))
                .await
                .expect("push");
            worst = worst.max(ahead);
        }
        bulk.await.expect("bulk");
        out.close();
        writer.await.expect("writer").expect("writes");
        assert!(reader.await.expect("reader") > 48 * crate::stream::MAX_FRAME);
        let frame = HEADER_LEN + crate::stream::MAX_FRAME;
        assert!(worst > 0, "the bulk stream kept the queue busy");
        assert!(
            worst <= 2 * frame + 1024,
            "{worst} bytes ahead of a small frame"
        );
    }
}
