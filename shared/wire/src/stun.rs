//! The little of STUN (RFC 5389) an xtcp peer needs to learn its public
//! address: a Binding request, and the mapped address in the server's
//! success response. No I/O here; `frpc` sends and receives.
//!
//! Bounds: a response is read from one datagram of at most
//! [`MAX_RESPONSE`] bytes; attributes are walked within the message's
//! stated length, never beyond the datagram.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MAGIC: u32 = 0x2112_A442;
const HEADER: usize = 20;
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// The largest response read (a Binding success is well under 100 bytes).
pub const MAX_RESPONSE: usize = 1024;

/// Why a datagram is not the answer we wait for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("not a STUN message")]
    NotStun,
    #[error("not the answer to our request")]
    OtherTransaction,
    #[error("the server answered with message type {0:#06x}")]
    NotSuccess(u16),
    #[error("malformed STUN message")]
    Malformed,
    #[error("the answer has no mapped address")]
    NoAddress,
}

/// A Binding request with transaction id `id`.
pub fn binding_request(id: &[u8; 12]) -> [u8; HEADER] {
    let mut m = [0u8; HEADER];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // Length 0: no attributes.
    m[4..8].copy_from_slice(&MAGIC.to_be_bytes());
    m[8..20].copy_from_slice(id);
    m
}

/// The address the server saw the request come from, read from its
/// Binding success response to transaction `id`.
pub fn mapped_address(datagram: &[u8], id: &[u8; 12]) -> Result<SocketAddr, StunError> {
    if datagram.len() < HEADER || datagram.len() > MAX_RESPONSE || datagram[0] & 0xc0 != 0 {
        return Err(StunError::NotStun);
    }
    let kind = u16::from_be_bytes([datagram[0], datagram[1]]);
    let len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if datagram[4..8] != MAGIC.to_be_bytes() {
        return Err(StunError::NotStun);
    }
    if &datagram[8..20] != id {
        return Err(StunError::OtherTransaction);
    }
    if kind != BINDING_SUCCESS {
        return Err(StunError::NotSuccess(kind));
    }
    let body = datagram
        .get(HEADER..HEADER + len)
        .ok_or(StunError::Malformed)?;
    let (mut xor, mut plain) = (None, None);
    let mut rest = body;
    while rest.len() >= 4 {
        let t = u16::from_be_bytes([rest[0], rest[1]]);
        let l = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + l).ok_or(StunError::Malformed)?;
        match t {
            XOR_MAPPED_ADDRESS => xor = Some(address(value, Some(id))?),
            MAPPED_ADDRESS => plain = Some(address(value, None)?),
            _ => {}
        }
        // Attributes are padded to 4 bytes.
        let padded = (4 + l).div_ceil(4) * 4;
        rest = rest.get(padded..).unwrap_or(&[]);
    }
    xor.or(plain).ok_or(StunError::NoAddress)
}

/// A (XOR-)MAPPED-ADDRESS value; `xor` holds the transaction id when the
/// address is XORed with the magic cookie (and the id, for IPv6).
fn address(v: &[u8], xor: Option<&[u8; 12]>) -> Result<SocketAddr, StunError> {
    if v.len() < 4 {
        return Err(StunError::Malformed);
    }
    let magic = MAGIC.to_be_bytes();
    let mut port = u16::from_be_bytes([v[2], v[3]]);
    if xor.is_some() {
        port ^= (MAGIC >> 16) as u16;
    }
    let ip = match (v[1], &v[4..]) {
        (0x01, a) if a.len() == 4 => {
            let mut b: [u8; 4] = a.try_into().map_err(|_| StunError::Malformed)?;
            if xor.is_some() {
                b.iter_mut().zip(magic).for_each(|(x, m)| *x ^= m);
            }
            IpAddr::V4(Ipv4Addr::from(b))
        }
        (0x02, a) if a.len() == 16 => {
            let mut b: [u8; 16] = a.try_into().map_err(|_| StunError::Malformed)?;
            if let Some(id) = xor {
                let key = magic.iter().chain(id.iter());
                b.iter_mut().zip(key).for_each(|(x, k)| *x ^= k);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return Err(StunError::Malformed),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding success for `id` with one XOR-MAPPED-ADDRESS of `addr`, as
    /// RFC 5389 builds it.
    fn success(id: &[u8; 12], addr: SocketAddr) -> Vec<u8> {
        let mut value = vec![0u8];
        let port = addr.port() ^ (MAGIC >> 16) as u16;
        match addr.ip() {
            IpAddr::V4(ip) => {
                value.push(1);
                value.extend(port.to_be_bytes());
                let m = MAGIC.to_be_bytes();
                value.extend(ip.octets().iter().zip(m).map(|(a, b)| a ^ b));
            }
            IpAddr::V6(ip) => {
                value.push(2);
                value.extend(port.to_be_bytes());
                let key: Vec<u8> = MAGIC.to_be_bytes().iter().chain(id).copied().collect();
                value.extend(ip.octets().iter().zip(key).map(|(a, b)| a ^ b));
            }
        }
        let mut m = BINDING_SUCCESS.to_be_bytes().to_vec();
        m.extend(((4 + value.len()) as u16).to_be_bytes());
        m.extend(MAGIC.to_be_bytes());
        m.extend(id);
        m.extend(XOR_MAPPED_ADDRESS.to_be_bytes());
        m.extend((value.len() as u16).to_be_bytes());
        m.extend(value);
        m
    }

    #[test]
    fn the_mapped_address_of_our_transaction_is_read() {
        let id = [7u8; 12];
        for addr in ["198.51.100.7:40123", "[2001:db8::7]:3478"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            assert_eq!(mapped_address(&success(&id, addr), &id), Ok(addr));
        }
        let addr: SocketAddr = "198.51.100.7:1".parse().expect("addr");
        let m = success(&id, addr);
        assert_eq!(
            mapped_address(&m, &[8; 12]),
            Err(StunError::OtherTransaction)
        );
        assert_eq!(
            mapped_address(&m[..m.len() - 1], &id),
            Err(StunError::Malformed)
        );
        assert_eq!(mapped_address(b"hello", &id), Err(StunError::NotStun));
        assert_eq!(binding_request(&id)[4..8], MAGIC.to_be_bytes());
    }
}
