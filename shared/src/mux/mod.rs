//! The multiplexed session: yamux on the wire, implemented here for speed.
//!
//! The yamux crate drives a whole session from one task: every byte of every
//! stream crosses that task twice and is copied into a frame of its own, and
//! one core does all of a session's TLS work. Here the reader task hands
//! payloads to streams directly, streams append their frames to one shared
//! outgoing buffer, and a writer task sends it in batches (see `conn`). The
//! frames are yamux's (`frame`), so the wire protocol stays yamux; the
//! tests in `shared/tests/mux.rs` run against the yamux crate in both roles.
//!
//! When the session ends, every stream of it fails, which is what closes the
//! user connections of a dead session.

mod conn;
pub mod frame;
mod stream;
mod writer;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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

/// frpc accepts whatever number of streams frps opens (frps enforces its
/// `transport.maxStreamsPerClient`); this only has to be above any sane value.
pub const CLIENT_MAX_STREAMS: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("multiplexed session is closed")]
    Closed,
    #[error("multiplexed session ran out of stream ids")]
    IdsExhausted,
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
}

impl MuxConfig {
    pub fn new(max_streams: usize) -> Self {
        MuxConfig { max_streams }
    }
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
    let conn = conn::Conn::new(mode, &cfg, Box::new(w));
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
}
