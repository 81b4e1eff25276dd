//! Reading and writing single frames on async streams.
//!
//! The control stream uses `tokio_util::codec::Framed` with
//! [`MessageCodec`]. A work stream carries exactly one frame (the
//! [`StartWork`](crate::protocol::StartWork) header) followed by raw user
//! bytes, so it is read with exact reads: nothing past the header is consumed
//! and the relay sees every user byte.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{self, CodecError, MAX_FRAME_LEN};
use crate::protocol::Message;

pub type ControlStream<S> = tokio_util::codec::Framed<S, codec::MessageCodec>;

pub fn control<S: AsyncRead + AsyncWrite>(stream: S) -> ControlStream<S> {
    tokio_util::codec::Framed::new(stream, codec::MessageCodec)
}

/// Reads exactly one frame. `Ok(None)` on a clean EOF before the first byte.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Message>, CodecError> {
    let mut header = [0u8; 2];
    match r.read(&mut header[..1]).await? {
        0 => return Ok(None),
        _ => {
            r.read_exact(&mut header[1..])
                .await
                .map_err(|_| CodecError::Truncated)?;
        }
    }
    let len = u16::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge { len });
    }
    let mut buf = BytesMut::zeroed(2 + len);
    buf[..2].copy_from_slice(&header);
    r.read_exact(&mut buf[2..])
        .await
        .map_err(|_| CodecError::Truncated)?;
    codec::decode(&mut buf)?
        .ok_or(CodecError::Truncated)
        .map(Some)
}

/// Writes one frame without flushing the writer's buffer.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Message,
) -> Result<(), CodecError> {
    let mut buf = BytesMut::new();
    codec::encode(msg, &mut buf)?;
    w.write_all(&buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Message, StartWork};

    #[tokio::test]
    async fn header_then_raw_bytes() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let msg = Message::StartWork(StartWork {
            proxy_name: "web".into(),
            src_addr: "127.0.0.1:1".into(),
        });
        let sent = msg.clone();
        let writer = tokio::spawn(async move {
            write_message(&mut a, &sent).await.expect("write");
            a.write_all(b"payload").await.expect("write");
        });
        assert_eq!(read_message(&mut b).await.expect("read"), Some(msg));
        let mut rest = Vec::new();
        writer.await.expect("join");
        b.read_to_end(&mut rest).await.expect("read rest");
        assert_eq!(rest, b"payload");
    }

    #[tokio::test]
    async fn eof_and_truncation() {
        let (a, mut b) = tokio::io::duplex(64);
        drop(a);
        assert_eq!(read_message(&mut b).await.expect("clean eof"), None);

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 10, 1, 2]).await.expect("write");
        drop(a);
        assert!(matches!(
            read_message(&mut b).await,
            Err(CodecError::Truncated)
        ));
    }
}
