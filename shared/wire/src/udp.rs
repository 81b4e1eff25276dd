//! UDP datagrams over a stream: each datagram is one frame, so datagrams are
//! never merged, split or reordered on the way, and each carries the user
//! address it belongs to (frps: who sent it, frpc: who gets the answer).
//!
//! Frame: `len: u16` (big endian, the bytes after it), `family: u8` (4 or
//! 6), the address (4 or 16 bytes), `port: u16`, then the payload. A fixed
//! binary header rather than a postcard message: it is written for every
//! datagram, and this layout costs no allocation to encode or decode.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest payload a frame can hold (the u16 length covers the address too).
pub const MAX_PAYLOAD: usize = u16::MAX as usize - ADDR6_LEN;

const ADDR4_LEN: usize = 1 + 4 + 2;
const ADDR6_LEN: usize = 1 + 16 + 2;

/// One datagram and the user address it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub peer: SocketAddr,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UdpFrameError {
    #[error("datagram of {0} bytes does not fit a frame")]
    TooLarge(usize),
    #[error("bad address family {0} in a datagram frame")]
    Family(u8),
    #[error("datagram frame of {0} bytes is shorter than its address")]
    Short(usize),
}

/// Appends the frame of one datagram to `dst`.
pub fn encode(peer: SocketAddr, payload: &[u8], dst: &mut BytesMut) -> Result<(), UdpFrameError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(UdpFrameError::TooLarge(payload.len()));
    }
    let addr_len = if peer.is_ipv4() { ADDR4_LEN } else { ADDR6_LEN };
    dst.reserve(2 + addr_len + payload.len());
    // Cannot truncate: checked against MAX_PAYLOAD above.
    dst.put_u16((addr_len + payload.len()) as u16);
    match peer.ip() {
        IpAddr::V4(ip) => {
            dst.put_u8(4);
            dst.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            dst.put_u8(6);
            dst.put_slice(&ip.octets());
        }
    }
    dst.put_u16(peer.port());
    dst.put_slice(payload);
    Ok(())
}

/// Removes one datagram from the front of `src`, or `Ok(None)` while its
/// frame is incomplete. An error means the stream is corrupt: end it.
pub fn decode(src: &mut BytesMut) -> Result<Option<Datagram>, UdpFrameError> {
    if src.len() < 2 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([src[0], src[1]]) as usize;
    if src.len() < 2 + len {
        src.reserve(2 + len - src.len());
        return Ok(None);
    }
    let family = *src.get(2).ok_or(UdpFrameError::Short(len))?;
    let addr_len = match family {
        4 => ADDR4_LEN,
        6 => ADDR6_LEN,
        f if len == 0 => return Err(UdpFrameError::Short(f as usize)),
        f => return Err(UdpFrameError::Family(f)),
    };
    if len < addr_len {
        return Err(UdpFrameError::Short(len));
    }
    src.advance(3);
    let ip = if family == 4 {
        let mut o = [0u8; 4];
        src.copy_to_slice(&mut o);
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        let mut o = [0u8; 16];
        src.copy_to_slice(&mut o);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    let port = src.get_u16();
    let payload = src.split_to(len - addr_len).freeze();
    Ok(Some(Datagram {
        peer: SocketAddr::new(ip, port),
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_keep_their_bounds_and_addresses() {
        let a: SocketAddr = "10.1.2.3:53".parse().expect("addr");
        let b: SocketAddr = "[2001:db8::1]:4444".parse().expect("addr");
        let mut buf = BytesMut::new();
        encode(a, b"", &mut buf).expect("encode");
        encode(b, b"hello", &mut buf).expect("encode");
        encode(a, &[7u8; 1500], &mut buf).expect("encode");
        // Byte by byte: nothing decodes before its frame is whole.
        let whole = buf.split();
        let mut got = Vec::new();
        for byte in whole.iter() {
            buf.put_u8(*byte);
            while let Some(d) = decode(&mut buf).expect("decode") {
                got.push(d);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].peer, &got[0].payload[..]), (a, &b""[..]));
        assert_eq!((got[1].peer, &got[1].payload[..]), (b, &b"hello"[..]));
        assert_eq!((got[2].peer, got[2].payload.len()), (a, 1500));
        assert!(buf.is_empty());
    }

    #[test]
    fn corrupt_frames_are_errors() {
        let mut bad = BytesMut::from(&[0, 3, 5, 0, 0][..]);
        assert_eq!(decode(&mut bad), Err(UdpFrameError::Family(5)));
        let mut short = BytesMut::from(&[0, 3, 4, 0, 0][..]);
        assert_eq!(decode(&mut short), Err(UdpFrameError::Short(3)));
        let mut empty = BytesMut::from(&[0, 0][..]);
        assert!(decode(&mut empty).is_err());
        let big = vec![0u8; MAX_PAYLOAD + 1];
        let a: SocketAddr = "1.2.3.4:5".parse().expect("addr");
        assert_eq!(
            encode(a, &big, &mut BytesMut::new()),
            Err(UdpFrameError::TooLarge(MAX_PAYLOAD + 1))
        );
    }
}
