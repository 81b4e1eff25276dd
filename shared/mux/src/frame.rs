//! yamux frame headers (the wire format of
//! <https://github.com/hashicorp/yamux/blob/master/spec.md>): 12 bytes of
//! version, type, flags, stream id and length, big endian. No I/O here.

use bytes::BytesMut;

pub const HEADER_LEN: usize = 12;

/// The window every stream starts with, before any window update.
pub const DEFAULT_WINDOW: u32 = 256 * 1024;

pub const SYN: u16 = 1;
pub const ACK: u16 = 2;
pub const FIN: u16 = 4;
pub const RST: u16 = 8;

/// GoAway codes.
pub const GO_AWAY_NORMAL: u32 = 0;
pub const GO_AWAY_PROTOCOL: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data = 0,
    WindowUpdate = 1,
    Ping = 2,
    GoAway = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub flags: u16,
    pub id: u32,
    /// Payload length (Data), credit (WindowUpdate), opaque value (Ping) or
    /// error code (GoAway).
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unsupported yamux version {0}")]
    Version(u8),
    #[error("unknown yamux frame type {0}")]
    Kind(u8),
}

impl Header {
    pub fn new(kind: Kind, flags: u16, id: u32, len: u32) -> Self {
        Header {
            kind,
            flags,
            id,
            len,
        }
    }

    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.extend_from_slice(&self.to_bytes());
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[1] = self.kind as u8;
        b[2..4].copy_from_slice(&self.flags.to_be_bytes());
        b[4..8].copy_from_slice(&self.id.to_be_bytes());
        b[8..12].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, FrameError> {
        if b[0] != 0 {
            return Err(FrameError::Version(b[0]));
        }
        let kind = match b[1] {
            0 => Kind::Data,
            1 => Kind::WindowUpdate,
            2 => Kind::Ping,
            3 => Kind::GoAway,
            k => return Err(FrameError::Kind(k)),
        };
        Ok(Header {
            kind,
            flags: u16::from_be_bytes([b[2], b[3]]),
            id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let h = Header::new(Kind::WindowUpdate, SYN | ACK, 0x0102_0304, 0x0a0b_0c0d);
        let mut out = BytesMut::new();
        h.encode(&mut out);
        assert_eq!(&out[..], &[0, 1, 0, 3, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d]);
        let arr: [u8; HEADER_LEN] = out[..].try_into().expect("12 bytes");
        assert_eq!(Header::decode(&arr), Ok(h));
    }

    #[test]
    fn rejects_bad_version_and_type() {
        let mut b = [0u8; HEADER_LEN];
        b[0] = 1;
        assert_eq!(Header::decode(&b), Err(FrameError::Version(1)));
        b[0] = 0;
        b[1] = 4;
        assert_eq!(Header::decode(&b), Err(FrameError::Kind(4)));
    }
}
