//! Reading and writing single frames on async streams.
//!
//! The handshake is read with exact reads, one frame at a time, so nothing
//! after it is consumed; the control stream then uses
//! `tokio_util::codec::Framed` with [`MessageCodec`]. A work stream carries
//! exactly one frame (the [`WorkHeader`](wire::message::WorkHeader))
//! followed by raw user bytes, read the same exact way, so the relay sees
//! every user byte.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use wire::codec::{self, CodecError, MessageCodec, MAX_FRAME_LEN};
use wire::message::{Control, Frame};

pub type ControlStream<S> = tokio_util::codec::Framed<S, MessageCodec<Control>>;

/// The reading half of a control stream after [`split_control`].
pub type ControlReader<S> = futures::stream::SplitStream<ControlStream<S>>;

pub fn control<S: AsyncRead + AsyncWrite>(stream: S) -> ControlStream<S> {
    tokio_util::codec::Framed::new(stream, MessageCodec::new())
}

/// Sends control messages through a writer task, so that the task reading
/// the control stream (and watching the heartbeat clock) never blocks on a
/// write stuck behind a dead link.
#[derive(Clone, Debug)]
pub struct ControlWriter {
    tx: tokio::sync::mpsc::Sender<Control>,
}

/// Queue depth of the writer. Control traffic is a handful of messages; a
/// full queue means the connection is stuck.
const WRITER_QUEUE: usize = 64;

impl ControlWriter {
    /// Queues `msg`, waiting for room. Err when the writer has stopped.
    pub async fn send(&self, msg: Control) -> Result<(), CodecError> {
        self.tx.send(msg).await.map_err(|_| closed())
    }

    /// Queues `msg` without waiting. Err when the queue is full or the writer
    /// has stopped; a dropped beat is what the timeout is there for.
    pub fn try_send(&self, msg: Control) -> Result<(), CodecError> {
        self.tx.try_send(msg).map_err(|_| closed())
    }
}

fn closed() -> CodecError {
    CodecError::Io(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "control stream writer stopped",
    ))
}

/// Splits a control stream into its reading half and a [`ControlWriter`]
/// backed by a spawned task. Messages queued together go out in one flush.
pub fn split_control<S>(ctrl: ControlStream<S>) -> (ControlReader<S>, ControlWriter)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    use futures::{SinkExt, StreamExt};
    let (mut sink, stream) = ctrl.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Control>(WRITER_QUEUE);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(msg) = rx.try_recv() {
                if sink.feed(msg).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    (stream, ControlWriter { tx })
}

/// Reads exactly one frame. `Ok(None)` on a clean EOF before the first byte.
pub async fn read_message<M: Frame, R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<M>, CodecError> {
    let mut header = [0u8; 2];
    match r.read(&mut header[..1]).await? {
        0 => return Ok(None),
        _ => {
            r.read_exact(&mut header[1..]).await.map_err(mid_frame)?;
        }
    }
    let len = u16::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge { len });
    }
    let mut buf = BytesMut::zeroed(2 + len);
    buf[..2].copy_from_slice(&header);
    r.read_exact(&mut buf[2..]).await.map_err(mid_frame)?;
    codec::decode(&mut buf)?
        .ok_or(CodecError::Truncated)
        .map(Some)
}

/// EOF inside a frame is truncation; any other error keeps its cause.
fn mid_frame(e: std::io::Error) -> CodecError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        CodecError::Truncated
    } else {
        CodecError::Io(e)
    }
}

/// Writes one frame without flushing the writer's buffer.
pub async fn write_message<M: Frame, W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &M,
) -> Result<(), CodecError> {
    let mut buf = BytesMut::new();
    codec::encode(msg, &mut buf)?;
    w.write_all(&buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::message::{StartWork, WorkHeader};

    #[tokio::test]
    async fn header_then_raw_bytes() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let msg = WorkHeader::Start(StartWork {
            proxy_name: "web".into(),
            src: "127.0.0.1:1".parse().expect("addr"),
            dst: "127.0.0.1:2".parse().expect("addr"),
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
        let got: Option<WorkHeader> = read_message(&mut b).await.expect("clean eof");
        assert_eq!(got, None);

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 10, 1, 2]).await.expect("write");
        drop(a);
        assert!(matches!(
            read_message::<WorkHeader, _>(&mut b).await,
            Err(CodecError::Truncated)
        ));
    }
}
