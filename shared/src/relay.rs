//! Copy bytes both ways until both directions are finished.
//!
//! `copy_bidirectional` keeps half-close intact: when one side stops sending,
//! the other side's writer is shut down (a FIN, or a yamux stream close) and
//! the opposite direction keeps flowing until it ends too. Racing two copies
//! in `select!` would cut the slower direction off and lose data.

use tokio::io::{AsyncRead, AsyncWrite};

/// Per-direction buffer size. Larger than tokio's 8 KiB default so a busy
/// stream moves in fewer, bigger writes (one yamux frame is 16 KiB).
pub const RELAY_BUF: usize = 32 * 1024;

/// Returns the bytes copied (a → b, b → a).
pub async fn relay<A, B>(a: &mut A, b: &mut B) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, RELAY_BUF, RELAY_BUF).await
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
}
