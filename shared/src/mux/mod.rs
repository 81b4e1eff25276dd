//! The yamux session: one task drives the connection, everybody else talks to
//! it through channels.
//!
//! yamux's `Connection` makes progress only while it is polled, and opening
//! and accepting streams both need `&mut` access, so a single driver task owns
//! it and never blocks: inbound streams go out on an unbounded channel (yamux
//! caps their number), outbound opens come in as requests answered by oneshot.
//! When the driver ends, every stream of the session fails, which is what
//! closes the user connections of a dead session.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use futures::future::poll_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use tokio_util::sync::CancellationToken;

pub use yamux::Mode;

/// A multiplexed stream with tokio's I/O traits.
pub type MuxStream = Compat<yamux::Stream>;

/// How long a graceful close may take before the connection is just dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Write buffer under the multiplexer: room for the largest data frame with
/// its header, so each frame reaches the socket (and TLS) in one write.
const WRITE_BUF: usize = 256 * 1024;

/// Largest yamux data frame we send (yamux's default is 16 KiB). Bigger
/// frames mean fewer frames, flushes and TLS writes per byte; measured +8 %
/// single-stream throughput (docs/performance.md).
const SPLIT_SEND: usize = 128 * 1024;

/// Default cap on concurrent streams per session.
pub const DEFAULT_MAX_STREAMS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("multiplexed session is closed")]
    Closed,
    #[error("multiplexer: {0}")]
    Yamux(#[from] yamux::ConnectionError),
}

type OpenReply = oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>;

/// Opens outbound streams on a session. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Opener {
    tx: mpsc::Sender<OpenReply>,
}

impl Opener {
    pub async fn open(&self) -> Result<MuxStream, MuxError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(reply).await.map_err(|_| MuxError::Closed)?;
        let stream = rx.await.map_err(|_| MuxError::Closed)??;
        Ok(stream.compat())
    }
}

/// A running session: open streams with `opener`, accept them from
/// `incoming`, and await `driver` to learn how the connection ended.
pub struct Session {
    pub opener: Opener,
    pub incoming: mpsc::UnboundedReceiver<MuxStream>,
    pub driver: tokio::task::JoinHandle<Result<(), MuxError>>,
}

/// A stream limit for yamux comfortably above `n`: yamux ends the whole
/// session when its limit is reached, so ours must bite first.
pub fn with_headroom(n: usize) -> usize {
    n.saturating_add(n / 4).saturating_add(64)
}

/// frpc accepts whatever number of streams frps opens (frps enforces its
/// `transport.maxStreamsPerClient`); this only has to be above any sane value.
pub const CLIENT_MAX_STREAMS: usize = 1 << 20;

pub fn yamux_config(max_streams: usize) -> yamux::Config {
    let mut cfg = yamux::Config::default();
    // yamux insists the connection window covers the default window of every
    // stream; the window is credit, not allocated memory.
    let window = max_streams.max(1) * yamux::DEFAULT_CREDIT as usize;
    cfg.set_max_connection_receive_window(Some(window.max(1 << 30)));
    cfg.set_max_num_streams(max_streams.max(1));
    cfg.set_split_send_size(SPLIT_SEND);
    cfg
}

/// Starts the driver task for a session over `io`. Cancelling `close` closes
/// the session gracefully (the peer sees a clean end).
pub fn start<T>(io: T, mode: Mode, cfg: yamux::Config, close: CancellationToken) -> Session
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // yamux writes each frame as a header and a body and flushes after every
    // frame; buffering underneath turns that into one write (one packet for
    // a heartbeat instead of two) and halves the syscalls of bulk transfer.
    let io = tokio::io::BufWriter::with_capacity(WRITE_BUF, io);
    let conn = yamux::Connection::new(io.compat(), cfg, mode);
    let (open_tx, open_rx) = mpsc::channel(64);
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(drive(conn, open_rx, in_tx, close));
    Session {
        opener: Opener { tx: open_tx },
        incoming: in_rx,
        driver,
    }
}

async fn drive<T>(
    mut conn: yamux::Connection<T>,
    mut open_rx: mpsc::Receiver<OpenReply>,
    in_tx: mpsc::UnboundedSender<MuxStream>,
    close: CancellationToken,
) -> Result<(), MuxError>
where
    T: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let mut pending: Option<OpenReply> = None;
    let mut closed = pin!(close.cancelled());
    // Ok(true): asked to close; Ok(false): the peer closed.
    let outcome = poll_fn(|cx| {
        if closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(true));
        }
        loop {
            if pending.is_none() {
                match open_rx.poll_recv(cx) {
                    Poll::Ready(Some(req)) => pending = Some(req),
                    _ => break,
                }
            }
            match conn.poll_new_outbound(cx) {
                Poll::Ready(res) => {
                    if let Some(reply) = pending.take() {
                        // The requester may have given up; the stream is then dropped.
                        let _ = reply.send(res);
                    }
                }
                Poll::Pending => break,
            }
        }
        loop {
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    // Nobody accepting any more: dropping the stream resets it.
                    let _ = in_tx.send(stream.compat());
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(MuxError::from(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(false)),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    match outcome {
        Ok(true) => {
            // Say goodbye if the link allows; a dead link must not keep this
            // task (and its socket) alive.
            match tokio::time::timeout(CLOSE_GRACE, poll_fn(|cx| conn.poll_close(cx))).await {
                Ok(r) => r?,
                Err(_) => tracing::debug!("peer did not take the goodbye within {CLOSE_GRACE:?}"),
            }
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn streams_both_ways_and_close() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let close_a = CancellationToken::new();
        let mut client = start(a, Mode::Client, yamux_config(16), close_a.clone());
        let mut server = start(b, Mode::Server, yamux_config(16), CancellationToken::new());

        let mut s = client.opener.open().await.expect("open");
        s.write_all(b"hi").await.expect("write");
        let mut t = server.incoming.recv().await.expect("accept");
        let mut buf = [0u8; 2];
        t.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi");

        // Server-initiated stream.
        let mut u = server.opener.open().await.expect("open");
        u.write_all(b"yo").await.expect("write");
        u.shutdown().await.expect("half-close");
        let mut v = client.incoming.recv().await.expect("accept");
        let mut got = Vec::new();
        v.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"yo");

        close_a.cancel();
        client.driver.await.expect("join").expect("clean close");
        server
            .driver
            .await
            .expect("join")
            .expect("peer closed cleanly");
        assert!(server.opener.open().await.is_err());
    }
}
