//! Framing: a 2-byte big-endian length followed by one postcard-encoded
//! message of a channel's type ([`Frame`]). Works on byte buffers only;
//! sockets live elsewhere.
//!
//! A u16 length keeps the smallest frames (heartbeats) small and gives a hard
//! ceiling for free; [`MAX_FRAME_LEN`] lowers it further so a peer cannot make
//! us buffer more than that before a frame is rejected.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::message::{Frame, PROTOCOL_VERSION};

/// Largest payload accepted or produced. Control messages are tiny; anything
/// bigger is a broken or hostile peer.
pub const MAX_FRAME_LEN: usize = 16 * 1024;

const HEADER_LEN: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN}")]
    FrameTooLarge { len: usize },
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Appends one frame holding `msg` to `dst`, in the newest version's shape.
pub fn encode<M: Frame>(msg: &M, dst: &mut BytesMut) -> Result<(), CodecError> {
    encode_for(msg, PROTOCOL_VERSION, dst)
}

/// Appends one frame holding `msg` in protocol `version`'s shape to `dst`.
pub fn encode_for<M: Frame>(msg: &M, version: u16, dst: &mut BytesMut) -> Result<(), CodecError> {
    let payload = msg.encode_for(version)?;
    if payload.len() > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge { len: payload.len() });
    }
    dst.reserve(HEADER_LEN + payload.len());
    // Cannot truncate: MAX_FRAME_LEN < u16::MAX.
    dst.put_u16(payload.len() as u16);
    dst.put_slice(&payload);
    Ok(())
}

/// Length of the frame at the front of `src` once its header is buffered.
/// Rejects oversized frames before their body has been received.
fn frame_len(src: &[u8]) -> Result<Option<usize>, CodecError> {
    if src.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u16::from_be_bytes([src[0], src[1]]) as usize;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge { len });
    }
    Ok(Some(len))
}

/// Removes and decodes one frame from the front of `src` in the newest
/// version's shape, or returns `Ok(None)` when the frame is not complete yet.
pub fn decode<M: Frame>(src: &mut BytesMut) -> Result<Option<M>, CodecError> {
    decode_for(src, PROTOCOL_VERSION)
}

/// Removes and decodes one frame in protocol `version`'s shape. A frame of
/// a variant this code does not know is removed and skipped where the
/// channel allows it ([`Frame::SKIP_UNKNOWN`]).
pub fn decode_for<M: Frame>(src: &mut BytesMut, version: u16) -> Result<Option<M>, CodecError> {
    loop {
        let Some(len) = frame_len(src)? else {
            return Ok(None);
        };
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len);
        if M::SKIP_UNKNOWN {
            if let Some(tag) = variant(&payload).filter(|t| *t >= M::VARIANTS) {
                tracing::debug!(
                    variant = tag,
                    bytes = len,
                    "skipped a message this version does not know (from a newer peer)"
                );
                continue;
            }
        }
        // A frame must hold exactly one message: trailing bytes mean the
        // peer and we disagree about the format.
        let (msg, rest) = M::decode_for(&payload, version)?;
        if !rest.is_empty() {
            return Err(CodecError::Malformed(
                postcard::Error::DeserializeBadEncoding,
            ));
        }
        return Ok(Some(msg));
    }
}

/// The variant index postcard puts first in an enum's encoding (a varint
/// u32); None when it is not a valid one.
fn variant(payload: &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for (i, b) in payload.iter().take(5).enumerate() {
        value |= u32::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// [`Decoder`]/[`Encoder`] of one channel's messages in the protocol
/// version the peers agreed on, for use with `tokio_util::codec::Framed`.
#[derive(Debug)]
pub struct MessageCodec<M> {
    version: u16,
    _messages: PhantomData<fn() -> M>,
}

impl<M> MessageCodec<M> {
    /// The newest version: what a hello is read and written in before the
    /// peers have agreed.
    pub fn new() -> Self {
        Self::for_version(PROTOCOL_VERSION)
    }

    pub fn for_version(version: u16) -> Self {
        MessageCodec {
            version,
            _messages: PhantomData,
        }
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// From now on, frames are read and written in `version`'s shape.
    pub fn set_version(&mut self, version: u16) {
        self.version = version;
    }
}

impl<M> Default for MessageCodec<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Frame> Decoder for MessageCodec<M> {
    type Item = M;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<M>, CodecError> {
        decode_for(src, self.version)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<M>, CodecError> {
        match decode_for(src, self.version)? {
            Some(msg) => Ok(Some(msg)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Truncated),
        }
    }
}

impl<M: Frame> Encoder<M> for MessageCodec<M> {
    type Error = CodecError;

    fn encode(&mut self, msg: M, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_for(&msg, self.version, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;

    fn roundtrip<M: Frame + Clone + PartialEq>(msg: M) {
        let mut buf = BytesMut::new();
        encode(&msg, &mut buf).expect("encode");
        // Byte by byte: a partial frame must never decode.
        let whole = buf.split();
        let mut partial = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            partial.put_u8(*b);
            let got = decode::<M>(&mut partial).expect("decode");
            if i + 1 < whole.len() {
                assert!(got.is_none(), "decoded early at byte {i}");
            } else {
                assert_eq!(got, Some(msg.clone()));
            }
        }
        assert!(partial.is_empty());
    }

    #[test]
    fn messages_roundtrip() {
        roundtrip(Hello::Client {
            version: PROTOCOL_VERSION,
        });
        roundtrip(Hello::Server {
            version: 1,
            nonce: [7; NONCE_LEN],
        });
        roundtrip(Hello::Login(Login {
            version: 1,
            hostname: "h".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            user: "u".into(),
            run_id: "abc".into(),
            proof: [1; 32],
            tcp_mux: true,
            client_id: "rack-12".into(),
            metas: [("k".to_owned(), "v".to_owned())].into(),
            caps: vec!["proxy.tcp".into()],
        }));
        roundtrip(Hello::NewWorkConn(NewWorkConn {
            run_id: "abc".into(),
            user: "u".into(),
            proof: [2; 32],
        }));
        roundtrip(Control::ReqWorkConn { count: 3 });
        roundtrip(Control::NewProxy(NewProxy {
            name: "dns".into(),
            spec: ProxySpec::Udp(UdpSpec { remote_port: 53 }),
            opts: ProxyOpts::default(),
        }));
        roundtrip(Control::NewProxyResp(NewProxyResp {
            name: "ssh".into(),
            result: Err(ProxyError::PortInUse(6000)),
        }));
        roundtrip(Control::Ping(Ping {
            seq: 9,
            proxies: 2,
            bytes_in: 1 << 40,
            bytes_out: 0,
            rtt_us: 0,
        }));
        roundtrip(WorkHeader::Start(StartWork {
            proxy_name: "ssh".into(),
            src: "1.2.3.4:5".parse().expect("addr"),
            dst: "[::1]:6000".parse().expect("addr"),
        }));
    }

    /// The two hello variants keep the encoding of protocol version 1, so
    /// that a version-1 peer still hears "version mismatch", not garbage.
    #[test]
    fn hellos_are_encoded_as_in_version_1() {
        let mut buf = BytesMut::new();
        encode(&Hello::Client { version: 1 }, &mut buf).expect("encode");
        assert_eq!(&buf[..], &[0, 2, 0, 1]);
        buf.clear();
        encode(
            &Hello::Server {
                version: 2,
                nonce: [9; NONCE_LEN],
            },
            &mut buf,
        )
        .expect("encode");
        assert_eq!(&buf[..4], &[0, 2 + NONCE_LEN as u8, 1, 2]);
        let refusal = Hello::LoginResp(LoginResp {
            result: Err(LoginError::VersionMismatch {
                client: 1,
                server: 2,
            }),
        });
        buf.clear();
        encode(&refusal, &mut buf).expect("encode");
        // Variant 3 (LoginResp), Err (1), VersionMismatch (1), 1, 2: what
        // version 1 decoded as the same refusal.
        assert_eq!(&buf[..], &[0, 5, 3, 1, 1, 1, 2]);
    }

    #[test]
    fn ping_frame_is_tiny() {
        let mut buf = BytesMut::new();
        // An idle tunnel: a few proxies, a few hundred bytes since the last
        // beat, a LAN's round trip (~1 ms: two bytes).
        let ping = Ping {
            seq: 100,
            proxies: 3,
            bytes_in: 300,
            bytes_out: 300,
            rtt_us: 900,
        };
        encode(&Control::Ping(ping), &mut buf).expect("encode");
        assert!(buf.len() <= 12, "ping frame is {} bytes", buf.len());
        buf.clear();
        encode(&Control::Pong(Pong { seq: 100 }), &mut buf).expect("encode");
        assert!(buf.len() <= 4, "pong frame is {} bytes", buf.len());
    }

    #[test]
    fn oversized_header_rejected_before_body() {
        let mut buf = BytesMut::from(&[0xff, 0xff][..]);
        assert!(matches!(
            decode::<Control>(&mut buf),
            Err(CodecError::FrameTooLarge { len: 0xffff })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // An unknown variant index where the channel does not skip.
        let mut buf = BytesMut::from(&[0x00, 0x01, 0x7f][..]);
        assert!(matches!(
            decode::<Hello>(&mut buf),
            Err(CodecError::Malformed(_))
        ));
        // A variant index that is no varint.
        let mut buf = BytesMut::from(&[0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            decode::<Control>(&mut buf),
            Err(CodecError::Malformed(_))
        ));
        // Trailing bytes after a valid message.
        let mut buf = BytesMut::new();
        encode(&Control::Pong(Pong { seq: 1 }), &mut buf).expect("encode");
        buf[1] += 1;
        buf.put_u8(0);
        assert!(matches!(
            decode::<Control>(&mut buf),
            Err(CodecError::Malformed(_))
        ));
    }

    /// A newer peer's control message this version does not know is
    /// skipped, and the next one is read.
    #[test]
    fn unknown_control_messages_are_skipped() {
        let mut buf = BytesMut::from(&[0x00, 0x04, Control::VARIANTS as u8, 1, 2, 3][..]);
        buf.extend_from_slice(&[0x00, 0x03, 0x86, 0x01, 9]);
        encode(&Control::Pong(Pong { seq: 5 }), &mut buf).expect("encode");
        assert_eq!(
            decode::<Control>(&mut buf).expect("skipped"),
            Some(Control::Pong(Pong { seq: 5 }))
        );
        assert!(buf.is_empty());
        // Each channel's count is its last variant's index + 1.
        let last = |bytes: Vec<u8>| variant(&bytes).expect("tag") + 1;
        let msg = Control::ReqWorkConn { count: 1 };
        assert_eq!(
            last(msg.encode_for(PROTOCOL_VERSION).expect("enc")),
            Control::VARIANTS
        );
        let msg = Hello::NewWorkConn(NewWorkConn {
            run_id: String::new(),
            user: String::new(),
            proof: [0; 32],
        });
        assert_eq!(
            last(msg.encode_for(PROTOCOL_VERSION).expect("enc")),
            Hello::VARIANTS
        );
    }

    #[test]
    fn truncated_at_eof_is_an_error() {
        let mut codec = MessageCodec::<Control>::new();
        let mut buf = BytesMut::from(&[0x00, 0x05, 0x01][..]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(CodecError::Truncated)
        ));
        assert!(codec
            .decode_eof(&mut BytesMut::new())
            .expect("clean eof")
            .is_none());
    }
}
