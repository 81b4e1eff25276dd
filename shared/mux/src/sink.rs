//! What the session's reader task needs from a stream's destination when it
//! writes incoming payload straight there (no queue, no extra copy) — and no
//! more. The net layer implements it for TCP and Unix sockets; anything else
//! is carried by the generic relay instead.

use std::io;
use std::task::{Context, Poll};

/// A destination written without `&mut`, from the session's reader task
/// and from the stream's own task (the `try_write` family of tokio sockets).
pub trait DirectSink: Send + Sync + 'static {
    /// Writes what fits now without waiting; `WouldBlock` when nothing does.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Ready when [`DirectSink::try_write`] may make progress again.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Ends the write direction (the peer sent FIN), keeping reads open.
    fn shutdown_write(&self) -> io::Result<()>;
}
