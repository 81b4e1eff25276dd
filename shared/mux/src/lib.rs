//! The multiplexed session: yamux on the wire, implemented here for speed.
//!
//! The yamux crate drives a whole session from one task: every byte of every
//! stream crosses that task twice and is copied into a frame of its own, and
//! one core does all of a session's TLS work. Here the reader task hands
//! payloads to streams directly, streams append their frames to one shared
//! outgoing buffer, and a writer task sends it in batches (see `conn`). The
//! frames are yamux's (`frame`), so the wire protocol stays yamux; the
//! tests in `shared/mux/tests/mux.rs` run against the yamux crate in both roles.
//!
//! When the session ends, every stream of it fails, which is what closes the
//! user connections of a dead session.

mod conn;
pub mod frame;
pub mod limits;
mod sink;
mod stream;
mod writer;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use limits::MemoryBudget;
pub use sink::DirectSink;
pub use stream::MuxStream;

/// Whether `e` says the stream failed because its whole session ended.
pub fn is_session_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::ConnectionAborted
}

/// Which side of the session we are: clients open odd stream ids, servers
/// even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Client,
    Server,
}

/// How long a graceful close may take before the connection is just dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Default cap on concurrent streams per session.
pub const DEFAULT_MAX_STREAMS: usize = 16 * 1024;

/// Streams frpc lets frps have open at once. frps enforces its own
/// `transport.maxStreamsPerClient` (16,384 by default) before opening one;
/// this cap only keeps a malicious or impersonated server from making frpc
/// hold windows for a million streams.
pub const CLIENT_MAX_STREAMS: usize = 64 * 1024;

/// Bytes of outgoing frames (replies, window updates, data) a session may
/// have queued before its reader stops reading until the writer catches up,
/// while the peer has not proven who it is: replies to an unauthenticated
/// peer that does not read cost us this much at most.
pub const UNTRUSTED_OUT_PAUSE: usize = 64 * 1024;

/// Streams an untrusted peer may have open at once: logging in takes one.
/// Each costs a window of budget and, when dropped, a reset frame.
pub const UNTRUSTED_MAX_STREAMS: usize = 4;

/// The same once the peer is trusted (logged in). Above what our own data
/// can queue (`writer::OUT_HIGH` plus a batch in flight and one carried),
/// so it never pauses a session that only carries data; only replies the
/// peer provokes without reading them pile up this high.
pub const TRUSTED_OUT_PAUSE: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("multiplexed session is closed")]
    Closed,
    #[error("multiplexed session ran out of stream ids")]
    IdsExhausted,
    #[error("receive buffer budget exhausted (transport.maxBufferMB): stream refused")]
    Budget,
    #[error("multiplexer protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct MuxConfig {
    /// Streams the peer may have open at once; more are refused with a reset
    /// of that stream only.
    pub max_streams: usize,
    /// Receive memory shared with every other session of the process.
    pub budget: Arc<MemoryBudget>,
    /// Outgoing bytes queued above which the reader pauses (see
    /// [`UNTRUSTED_OUT_PAUSE`]); raised by [`Opener::trust`].
    pub out_pause: usize,
    /// Until [`Opener::trust`], at most [`UNTRUSTED_MAX_STREAMS`] streams.
    pub untrusted: bool,
}

impl MuxConfig {
    /// A trusted session with no process-wide budget.
    pub fn new(max_streams: usize) -> Self {
        MuxConfig {
            max_streams,
            budget: MemoryBudget::unlimited(),
            out_pause: TRUSTED_OUT_PAUSE,
            untrusted: false,
        }
    }

    pub fn with_budget(mut self, budget: Arc<MemoryBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// The peer has not proven itself yet: until [`Opener::trust`] it gets
    /// [`UNTRUSTED_OUT_PAUSE`] and [`UNTRUSTED_MAX_STREAMS`].
    pub fn untrusted(mut self) -> Self {
        self.out_pause = UNTRUSTED_OUT_PAUSE;
        self.untrusted = true;
        self
    }
}

/// A snapshot of what a session holds, for tests and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MuxStats {
    pub streams: usize,
    /// Received bytes no reader has taken yet, over all streams.
    pub queued: usize,
    /// Sum of the streams' receive windows (what the peer may make us queue).
    pub windows: usize,
    /// Streams holding more than their window (always 0 unless a bug).
    pub over_window: usize,
    /// Outgoing bytes not yet written to the socket.
    pub outgoing: usize,
}

/// Opens outbound streams on a session. Cheap to clone.
#[derive(Clone)]
pub struct Opener {
    conn: Arc<conn::Conn>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener").finish_non_exhaustive()
    }
}

impl Opener {
    /// A new stream. The peer learns of it with the first frame; nothing
    /// waits for a round trip.
    pub async fn open(&self) -> Result<MuxStream, MuxError> {
        self.conn.open()
    }

    /// The peer has logged in: it may make us queue up to
    /// [`TRUSTED_OUT_PAUSE`] of outgoing frames and open as many streams as
    /// the session's `max_streams`.
    pub fn trust(&self) {
        self.conn.trust();
    }

    pub fn stats(&self) -> MuxStats {
        self.conn.stats()
    }

    /// Whether the peer ended the session in order (sent GoAway): what
    /// tells a peer that stopped from one whose connection broke off.
    pub fn peer_said_goodbye(&self) -> bool {
        self.conn.peer_said_goodbye()
    }
}

/// A running session: open streams with `opener`, accept them from
/// `incoming`, and await `driver` to learn how the connection ended.
pub struct Session {
    pub opener: Opener,
    pub incoming: mpsc::UnboundedReceiver<MuxStream>,
    pub driver: tokio::task::JoinHandle<Result<(), MuxError>>,
}

/// A stream limit comfortably above `n`, for the multiplexer's own table:
/// frps counts (and refuses) streams before they reach it.
pub fn with_headroom(n: usize) -> usize {
    n.saturating_add(n / 4).saturating_add(64)
}

/// Starts a session over `io`. Cancelling `close` closes the session
/// gracefully (the peer sees a goodbye).
pub fn start<T>(io: T, mode: Mode, cfg: MuxConfig, close: CancellationToken) -> Session
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    // Reading and writing go on in different tasks (TLS decrypts in one
    // while it encrypts in the other).
    let (r, w) = tokio::io::split(io);
    let conn = conn::Conn::new(mode, &cfg, Box::new(w), close.clone());
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(conn::run(conn.clone(), r, in_tx, close));
    Session {
        opener: Opener { conn },
        incoming: in_rx,
        driver,
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
        let mut client = start(a, Mode::Client, MuxConfig::new(16), close_a.clone());
        let mut server = start(
            b,
            Mode::Server,
            MuxConfig::new(16),
            CancellationToken::new(),
        );

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

    /// Stream ids running out ends the session (frpc then reconnects and
    /// starts again), instead of leaving it up and unable to open streams.
    #[tokio::test]
    async fn running_out_of_stream_ids_ends_the_session() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = start(
            a,
            Mode::Client,
            MuxConfig::new(16),
            CancellationToken::new(),
        );
        let server = start(
            b,
            Mode::Server,
            MuxConfig::new(16),
            CancellationToken::new(),
        );
        server.opener.conn.set_next_id(u32::MAX - 1);
        assert!(matches!(
            server.opener.open().await,
            Err(MuxError::IdsExhausted)
        ));
        server.driver.await.expect("join").expect("ended cleanly");
        client
            .driver
            .await
            .expect("join")
            .expect("peer saw the end");
    }

    /// Each stream holds its window in the process's budget; a stream that
    /// does not fit is refused, and dropping streams gives the room back.
    #[tokio::test]
    async fn streams_are_refused_beyond_the_memory_budget() {
        let budget = MemoryBudget::new(3 * frame::DEFAULT_WINDOW as usize);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let cfg = MuxConfig::new(16).with_budget(budget.clone());
        let client = start(a, Mode::Client, cfg, CancellationToken::new());
        let mut server = start(
            b,
            Mode::Server,
            MuxConfig::new(16),
            CancellationToken::new(),
        );
        let s: Vec<_> = futures::future::join_all((0..3).map(|_| client.opener.open())).await;
        assert!(s.iter().all(|s| s.is_ok()));
        assert!(matches!(client.opener.open().await, Err(MuxError::Budget)));
        assert_eq!(budget.in_use(), budget.total());
        drop(s);
        let _t = server.incoming.recv().await.expect("accepted");
        assert_eq!(budget.in_use(), 0);
        assert!(client.opener.open().await.is_ok());
    }
}
