//! The tunnel between a multiplexed stream and a local socket, over real
//! TCP sockets and a real session.

use std::sync::Arc;
use std::time::Duration;

use mux::{self, Mode, MuxConfig};
use net::stats::{Meters, Traffic};
use net::tunnel::{Local, Tunnel};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
    (a.expect("connect"), b.expect("accept").0)
}

/// One side of a session over `io`, never asked to close.
fn session(io: TcpStream, mode: Mode, max_streams: usize) -> mux::Session {
    mux::start(
        io,
        mode,
        MuxConfig::new(max_streams),
        CancellationToken::new(),
    )
}

/// Writes `data` in uneven pieces, then half-closes; meanwhile reads
/// everything the peer sends until it half-closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: S, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(s);
    let send = async {
        let mut rest = data;
        let mut k = 1;
        while !rest.is_empty() {
            let n = rest.len().min(k * 997);
            w.write_all(&rest[..n]).await.expect("write");
            rest = &rest[n..];
            k = k % 97 + 1;
        }
        w.shutdown().await.expect("shutdown");
    };
    let recv = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read");
        got
    };
    tokio::join!(send, recv).1
}

/// `Tunnel::carry` on the direct path (payloads written straight into the socket by the session's
/// reader task, the rest queued): a slow TCP reader, both directions at
/// once, each half-closed on its own, nothing lost or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_carry_slow_socket_half_close_and_live_counts() {
    let traffic = Arc::new(Traffic::default());
    let (a, b) = tcp_pair().await;
    let client = session(a, Mode::Client, 64);
    let mut server = session(b, Mode::Server, 64);
    for round in 0..2u32 {
        // user <-> (tcp pair) <-> carry <-> stream ... stream <-> far end
        let (user, relayed) = tcp_pair().await;
        // Small socket buffers, so the socket fills up long before the
        // stream's window and the relay has to queue and drain.
        socket2::SockRef::from(&relayed)
            .set_send_buffer_size(16 * 1024)
            .expect("sndbuf");
        socket2::SockRef::from(&user)
            .set_recv_buffer_size(64 * 1024)
            .expect("rcvbuf");
        let mut near = client.opener.open().await.expect("open");
        near.write_all(b"!").await.expect("announce");
        let mut far = server.incoming.recv().await.expect("accept");
        let mut bang = [0u8; 1];
        far.read_exact(&mut bang).await.expect("announce");
        let before = traffic.snapshot();
        let meters = Meters::new(vec![traffic.clone()]);
        let relay =
            tokio::spawn(async move { Tunnel::Mux(near).carry(Local::Tcp(relayed), meters).await });

        let down = pattern(6 * 1024 * 1024 + 11, round);
        let up = pattern(3 * 1024 * 1024 + 5, round + 100);
        let (down2, up2) = (down.clone(), up.clone());
        let far_task = tokio::spawn(async move { exchange(far, &down2).await });
        let (mut ur, mut uw) = user.into_split();
        let user_send = tokio::spawn(async move {
            for c in up2.chunks(50_000) {
                uw.write_all(c).await.expect("user write");
            }
            uw.shutdown().await.expect("user shutdown");
        });
        // A slow reader: the socket fills, so the relay must queue and drain.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        for i in 0u64.. {
            let n = ur.read(&mut buf).await.expect("user read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if i % 8 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        user_send.await.expect("user send");
        assert_eq!(sha(&got), sha(&down), "round {round}: far -> user intact");
        let far_got = far_task.await.expect("far");
        assert_eq!(sha(&far_got), sha(&up), "round {round}: user -> far intact");
        let c = relay.await.expect("join").expect("relay");
        assert_eq!(
            (c.into_tunnel as usize, c.out_of_tunnel as usize),
            (up.len(), down.len())
        );
        // Every byte was counted, both the ones the reader task wrote
        // straight into the socket and the ones drained from the queue.
        let after = traffic.snapshot();
        assert_eq!(after.into_tunnel - before.into_tunnel, up.len() as u64);
        assert_eq!(
            after.out_of_tunnel - before.out_of_tunnel,
            down.len() as u64
        );
    }
}

/// The other local ends: a Unix socket takes the direct path too, and any
/// other byte stream (here an in-memory pipe) the generic relay; both carry
/// both ways intact, half-close included, and count what they carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_and_other_local_ends() {
    let (a, b) = tcp_pair().await;
    let client = session(a, Mode::Client, 64);
    let mut server = session(b, Mode::Server, 64);
    let dir = std::env::temp_dir().join(format!("frp-rs-tunnel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (round, unix) in [(0u32, true), (1, false)] {
        let mut near = client.opener.open().await.expect("open");
        near.write_all(b"!").await.expect("announce");
        let mut far = server.incoming.recv().await.expect("accept");
        let mut bang = [0u8; 1];
        far.read_exact(&mut bang).await.expect("announce");
        // `user` is the far end of the local side.
        let (local, user): (Local, Box<dyn Stream>) = if unix {
            let path = dir.join("s");
            let _ = std::fs::remove_file(&path);
            let l = tokio::net::UnixListener::bind(&path).expect("bind unix");
            let (u, s) = tokio::join!(tokio::net::UnixStream::connect(&path), l.accept());
            (
                Local::Unix(s.expect("accept").0),
                Box::new(u.expect("connect")),
            )
        } else {
            let (x, y) = tokio::io::duplex(4096);
            (Local::Other(Box::new(x)), Box::new(y))
        };
        let traffic = Arc::new(Traffic::default());
        let meters = Meters::new(vec![traffic.clone()]);
        let relay = tokio::spawn(async move { Tunnel::Mux(near).carry(local, meters).await });
        let up = pattern(1024 * 1024 + 3, round);
        let down = pattern(2 * 1024 * 1024 + 5, round + 7);
        let down2 = down.clone();
        let far_task = tokio::spawn(async move { exchange(far, &down2).await });
        let got = exchange(user, &up).await;
        assert_eq!(sha(&got), sha(&down), "unix {unix}: far -> local intact");
        assert_eq!(
            sha(&far_task.await.expect("far")),
            sha(&up),
            "unix {unix}: local -> far"
        );
        let c = relay.await.expect("join").expect("carry");
        assert_eq!(
            (c.into_tunnel as usize, c.out_of_tunnel as usize),
            (up.len(), down.len())
        );
        let t = traffic.snapshot();
        assert_eq!(
            (t.into_tunnel as usize, t.out_of_tunnel as usize),
            (up.len(), down.len())
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
