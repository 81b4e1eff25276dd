//! Hole punching: both sides send small datagrams to every candidate of
//! the other until one arrives; each NAT then has an entry for the other
//! side's address, so datagrams pass both ways. Both sides run the same
//! [`punch`], which returns the address the other side's datagram came
//! from. A punch names its session's token, so stray datagrams are ignored.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::debug;

use super::TOKEN_LEN;

const MAGIC: &[u8; 8] = b"frp-rs-p";
/// A punch is sent to every candidate this often.
const EVERY: Duration = Duration::from_millis(50);
/// Acknowledgements sent once a punch arrived (the other side may still
/// be waiting for one).
const ACKS: usize = 3;

fn packet(token: &[u8; TOKEN_LEN], ack: bool) -> [u8; 8 + TOKEN_LEN + 1] {
    let mut p = [0u8; 8 + TOKEN_LEN + 1];
    p[..8].copy_from_slice(MAGIC);
    p[8..8 + TOKEN_LEN].copy_from_slice(token);
    p[8 + TOKEN_LEN] = u8::from(ack);
    p
}

/// Whether `d` is a punch (or its acknowledgement) of session `token`.
fn ours(d: &[u8], token: &[u8; TOKEN_LEN]) -> Option<bool> {
    (d.len() == 8 + TOKEN_LEN + 1 && &d[..8] == MAGIC && &d[8..8 + TOKEN_LEN] == token)
        .then(|| d[8 + TOKEN_LEN] == 1)
}

/// Punches towards `peers` until the other side's punch arrives or
/// `deadline`; returns where it came from.
pub(crate) async fn punch(
    sock: &UdpSocket,
    peers: &[SocketAddr],
    token: &[u8; TOKEN_LEN],
    deadline: Instant,
) -> Result<SocketAddr> {
    let mut buf = [0u8; 64];
    let mut next = Instant::now();
    loop {
        if Instant::now() >= deadline {
            bail!("no punch from the peer got through (tried {peers:?})");
        }
        if Instant::now() >= next {
            for p in peers {
                let _ = sock.send_to(&packet(token, false), p).await;
            }
            next = Instant::now() + EVERY;
        }
        let until = next.min(deadline);
        let Ok(r) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await else {
            continue;
        };
        let Ok((n, from)) = r else { continue };
        if ours(&buf[..n], token).is_some() {
            for _ in 0..ACKS {
                let _ = sock.send_to(&packet(token, true), from).await;
            }
            debug!(%from, "punch got through");
            return Ok(from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_sockets_find_each_other() {
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (aa, ba) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        let token = [5u8; TOKEN_LEN];
        let deadline = Instant::now() + Duration::from_secs(5);
        let (to_b, to_a) = ([ba], [aa]);
        let (x, y) = tokio::join!(
            punch(&a, &to_b, &token, deadline),
            punch(&b, &to_a, &token, deadline)
        );
        assert_eq!((x.expect("a"), y.expect("b")), (ba, aa));
        // Another session's punches are not taken for ours.
        assert_eq!(ours(&packet(&[6; TOKEN_LEN], false), &token), None);
        let lonely = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(punch(&lonely, &[aa], &token, soon).await.is_err());
    }
}
