//! The multiplexer against itself and against the yamux crate in both roles:
//! the wire protocol must stay yamux, and flow control, half-close, resets
//! and limits must hold under real concurrency.

use std::future::poll_fn;
use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use mux::{self, frame, Mode, MuxConfig, MuxError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
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

/// Echo every stream a yamux-crate server accepts; returns when the
/// connection ends.
async fn yamux_echo_server(io: TcpStream) {
    let mut conn =
        yamux::Connection::new(io.compat(), yamux::Config::default(), yamux::Mode::Server);
    while let Some(Ok(mut s)) = poll_fn(|cx| conn.poll_next_inbound(cx)).await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            loop {
                let n = s.read(&mut buf).await.expect("yamux read");
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.expect("yamux write");
            }
            s.close().await.expect("yamux close");
        });
    }
}

async fn ours_echo(mut s: mux::MuxStream) {
    let (mut r, mut w) = tokio::io::split(&mut s);
    tokio::io::copy(&mut r, &mut w).await.expect("echo");
    w.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_with_yamux_crate_server() {
    let (a, b) = tcp_pair().await;
    tokio::spawn(yamux_echo_server(b));
    let session = session(a, Mode::Client, 64);
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let opener = session.opener.clone();
        tasks.push(tokio::spawn(async move {
            let s = opener.open().await.expect("open");
            // More than yamux's initial window, so credit must flow.
            let data = pattern(3 * 1024 * 1024 + i as usize * 4099, i);
            let got = exchange(s, &data).await;
            assert_eq!(sha(&got), sha(&data), "stream {i} echoed intact");
        }));
    }
    for t in tasks {
        t.await.expect("stream task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yamux_crate_client_with_our_server() {
    let (a, b) = tcp_pair().await;
    let mut server = session(b, Mode::Server, 64);
    tokio::spawn(async move {
        while let Some(s) = server.incoming.recv().await {
            tokio::spawn(ours_echo(s));
        }
    });
    let mut conn =
        yamux::Connection::new(a.compat(), yamux::Config::default(), yamux::Mode::Client);
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(
            poll_fn(|cx| conn.poll_new_outbound(cx))
                .await
                .expect("yamux open"),
        );
    }
    tokio::spawn(async move {
        while let Some(Ok(_)) = poll_fn(|cx| conn.poll_next_inbound(cx)).await {}
    });
    let mut tasks = Vec::new();
    for (i, s) in streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let data = pattern(2 * 1024 * 1024 + i * 7, i as u32);
            let got = exchange(s.compat(), &data).await;
            assert_eq!(sha(&got), sha(&data), "stream {i} echoed intact");
        }));
    }
    for t in tasks {
        t.await.expect("stream task");
    }
}

/// Like `tcp_pair`, with tiny socket buffers on the client's side, so
/// that its writes to the session's socket are often taken only in part.
async fn tcp_pair_small_buffers() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_send_buffer_size(4096).expect("sndbuf");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let (a, b) = tokio::join!(sock.connect(addr), l.accept());
    (a.expect("connect"), b.expect("accept").0)
}

/// Ours on both ends, many streams at once, a slow reader on some: flow
/// control must hold every stream to its window and lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_slow_readers_nothing_lost() {
    many_streams(tcp_pair().await, 100).await;
}

/// The same through a socket that takes little at a time: a frame sent
/// straight from a stream's buffer and cut short must go on, whole and in
/// order, before anything queued after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_through_a_narrow_socket_nothing_lost() {
    many_streams(tcp_pair_small_buffers().await, 30).await;
}

async fn many_streams((a, b): (TcpStream, TcpStream), streams: u32) {
    let client = session(a, Mode::Client, 1024);
    let mut server = session(b, Mode::Server, 1024);
    let sink = tokio::spawn(async move {
        let mut n = 0u32;
        let mut sums = Vec::new();
        while let Some(mut s) = server.incoming.recv().await {
            n += 1;
            let slow = n % 3 == 0;
            sums.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 1500];
                loop {
                    let k = s.read(&mut buf).await.expect("read");
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..k]);
                    if slow && got.len() % 7 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                s.write_all(&sha(&got)).await.expect("reply");
                s.shutdown().await.expect("shutdown");
            }));
            if n == streams {
                break;
            }
        }
        for s in sums {
            s.await.expect("sink task");
        }
    });
    let mut tasks = Vec::new();
    for i in 0..streams {
        let opener = client.opener.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = opener.open().await.expect("open");
            let data = pattern(1000 + (i as usize * 9973) % 700_000, i);
            for c in data.chunks(65_000) {
                s.write_all(c).await.expect("write");
            }
            s.shutdown().await.expect("shutdown");
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).await.expect("read reply");
            assert_eq!(reply, sha(&data), "stream {i}");
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    sink.await.expect("sink");
}

#[tokio::test]
async fn dropped_stream_resets_peer_and_session_lives_on() {
    let (a, b) = tcp_pair().await;
    let client = session(a, Mode::Client, 16);
    let mut server = session(b, Mode::Server, 16);
    let mut s = client.opener.open().await.expect("open");
    s.write_all(b"x").await.expect("write");
    let mut t = server.incoming.recv().await.expect("accept");
    let mut one = [0u8; 1];
    t.read_exact(&mut one).await.expect("read");
    drop(s);
    let err = t.read(&mut one).await.expect_err("reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    // The session is fine.
    let mut s2 = client.opener.open().await.expect("open again");
    s2.write_all(b"y").await.expect("write");
    let mut t2 = server.incoming.recv().await.expect("accept");
    t2.read_exact(&mut one).await.expect("read");
    assert_eq!(&one, b"y");
}

#[tokio::test]
async fn streams_over_the_limit_are_refused_alone() {
    let (a, b) = tcp_pair().await;
    let client = session(a, Mode::Client, 1024);
    let mut server = session(b, Mode::Server, 3);
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = client.opener.open().await.expect("open");
        s.write_all(b"a").await.expect("write");
        open.push(s);
    }
    let mut accepted = Vec::new();
    for _ in 0..3 {
        accepted.push(server.incoming.recv().await.expect("accept"));
    }
    let mut extra = client.opener.open().await.expect("open");
    let mut buf = [0u8; 1];
    let err = extra.read(&mut buf).await.expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    // Freeing one makes room again.
    drop(accepted.pop());
    drop(open.pop());
    // Dropping the accepted stream frees its slot at once.
    let mut s = client.opener.open().await.expect("open");
    s.write_all(b"b").await.expect("write");
    let t = tokio::time::timeout(Duration::from_secs(5), server.incoming.recv())
        .await
        .expect("a stream within the limit is accepted")
        .expect("session alive");
    let mut s = (s, t);
    s.1.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"b");
    s.0.write_all(b"c").await.expect("write");
    s.1.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"c");
}

/// Raw frames from a misbehaving peer end the session with a protocol error
/// instead of a panic or a hang.
#[tokio::test]
async fn protocol_violations_end_the_session() {
    async fn feed(frames: Vec<u8>) -> Result<(), MuxError> {
        let (mut a, b) = tcp_pair().await;
        let server = session(b, Mode::Server, 16);
        a.write_all(&frames).await.expect("write");
        let mut incoming = server.incoming;
        let keep = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Some(s) = incoming.recv().await {
                kept.push(s);
            }
        });
        let res = tokio::time::timeout(Duration::from_secs(5), server.driver)
            .await
            .expect("session ended")
            .expect("join");
        keep.abort();
        res
    }
    fn header(kind: frame::Kind, flags: u16, id: u32, len: u32) -> Vec<u8> {
        let mut b = bytes::BytesMut::new();
        frame::Header::new(kind, flags, id, len).encode(&mut b);
        b.to_vec()
    }
    use frame::Kind::*;
    // More data than the window allows.
    let mut over = header(WindowUpdate, frame::SYN, 1, 0);
    over.extend(header(Data, 0, 1, frame::DEFAULT_WINDOW + 1));
    over.extend(vec![0u8; frame::DEFAULT_WINDOW as usize + 1]);
    // A client opening an even (server) stream id; a reused id; bad version.
    let cases = [
        ("window", over),
        ("parity", header(WindowUpdate, frame::SYN, 2, 0)),
        ("reopen", {
            let mut v = header(WindowUpdate, frame::SYN, 1, 0);
            v.extend(header(WindowUpdate, frame::SYN, 1, 0));
            v
        }),
        // An id reused after its stream was reset (yamux forbids reuse).
        ("reuse", {
            let mut v = header(WindowUpdate, frame::SYN, 1, 0);
            v.extend(header(WindowUpdate, frame::RST, 1, 0));
            v.extend(header(WindowUpdate, frame::SYN, 1, 0));
            v
        }),
        ("version", vec![1u8; 12]),
        ("type", vec![0u8, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
    ];
    for (what, frames) in cases {
        match feed(frames).await {
            Err(MuxError::Protocol(_)) => {}
            other => panic!("{what}: expected a protocol error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn answers_pings_and_peer_goodbye_lets_streams_finish() {
    let (mut a, b) = tcp_pair().await;
    let mut server = session(b, Mode::Server, 16);
    let mut raw = bytes::BytesMut::new();
    frame::Header::new(frame::Kind::WindowUpdate, frame::SYN, 1, 0).encode(&mut raw);
    frame::Header::new(frame::Kind::Ping, frame::SYN, 0, 0xdead_beef).encode(&mut raw);
    a.write_all(&raw).await.expect("write");
    let mut t = server.incoming.recv().await.expect("accept");
    // The stream's ACK, then the pong.
    let mut got = [0u8; 24];
    a.read_exact(&mut got).await.expect("read");
    let ack = frame::Header::decode(got[..12].try_into().expect("12")).expect("ack");
    assert_eq!(
        (ack.kind, ack.flags, ack.id),
        (frame::Kind::WindowUpdate, frame::ACK, 1)
    );
    let pong = frame::Header::decode(got[12..].try_into().expect("12")).expect("pong");
    assert_eq!(
        (pong.kind, pong.flags, pong.len),
        (frame::Kind::Ping, frame::ACK, 0xdead_beef)
    );
    // A goodbye ends no stream (yamux: no new streams, the open ones
    // finish): stream 1 still carries data; only new streams are refused.
    let mut bye = bytes::BytesMut::new();
    frame::Header::new(frame::Kind::GoAway, 0, 0, 0).encode(&mut bye);
    frame::Header::new(frame::Kind::Data, 0, 1, 2).encode(&mut bye);
    bye.extend_from_slice(b"ok");
    a.write_all(&bye).await.expect("write");
    let mut buf = [0u8; 2];
    t.read_exact(&mut buf)
        .await
        .expect("data after the peer's goodbye");
    assert_eq!(&buf, b"ok");
    assert!(server.opener.open().await.is_err(), "no new streams");
    // The connection closing ends the stream and the session.
    drop(a);
    assert!(
        t.read(&mut buf).await.is_err(),
        "stream of a closed session fails"
    );
    server.driver.await.expect("join").expect("clean end");
}

/// Flow control bounds memory: a stream whose reader stalls lets the sender
/// get only about one window ahead (the window never grows for a reader
/// that does not keep up), and nothing is lost once it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_holds_the_sender_to_its_window() {
    let (a, b) = tcp_pair().await;
    // Small socket buffers, so what the sender got rid of is what the
    // multiplexer buffered, not the kernel.
    for s in [&a, &b] {
        let s = socket2::SockRef::from(s);
        s.set_send_buffer_size(16 * 1024).expect("sndbuf");
        s.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
    }
    let client = session(a, Mode::Client, 16);
    let mut server = session(b, Mode::Server, 16);
    let data = pattern(8 * 1024 * 1024, 7);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let data = data.clone();
        let sent = sent.clone();
        let opener = client.opener.clone();
        tokio::spawn(async move {
            let mut s = opener.open().await.expect("open");
            for c in data.chunks(16 * 1024) {
                s.write_all(c).await.expect("write");
                sent.fetch_add(c.len(), std::sync::atomic::Ordering::SeqCst);
            }
            s.shutdown().await.expect("shutdown");
            s
        })
    };
    let mut t = server.incoming.recv().await.expect("accept");
    // The reader stalls; give the sender ample time to run ahead.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ahead = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        ahead <= 1024 * 1024,
        "sender got {ahead} bytes ahead of a reader that reads nothing"
    );
    let mut got = Vec::new();
    t.read_to_end(&mut got).await.expect("read");
    assert_eq!(sha(&got), sha(&data));
    drop(writer.await.expect("writer"));
}

/// A peer that floods pings and never reads: only a burst and then a
/// trickle is answered, so our queue of replies stays tiny and the flood
/// itself is read to the end (nothing stalls, nothing is held).
#[tokio::test]
async fn ping_flood_without_reading_is_answered_at_a_bounded_rate() {
    let (mut a, b) = tcp_pair().await;
    let server = session(b, Mode::Server, 16);
    let mut pings = bytes::BytesMut::new();
    for i in 0..100_000u32 {
        frame::Header::new(frame::Kind::Ping, frame::SYN, 0, i).encode(&mut pings);
    }
    // 24 MB of pings (more than socket buffers hold, so the server must be
    // reading them); without the limit as many replies would be queued.
    for _ in 0..20 {
        a.write_all(&pings)
            .await
            .expect("the flood is read, not refused");
    }
    let most = (mux::limits::PING_BURST as usize + 64) * frame::HEADER_LEN;
    let stats = server.opener.stats();
    assert!(stats.outgoing <= most, "{stats:?}");
    // The peer finally reads: the replies are few, and all well formed.
    a.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), a.read_to_end(&mut got))
        .await
        .expect("server closes after EOF")
        .expect("read");
    assert_eq!(got.len() % frame::HEADER_LEN, 0);
    let replies = got.len() / frame::HEADER_LEN;
    assert!(
        replies >= mux::limits::PING_BURST as usize,
        "the burst is answered: {replies}"
    );
    assert!(replies < 20_000, "{replies} replies to 2,000,000 pings");
    server.driver.await.expect("join").expect("clean end");
}

/// An untrusted peer that opens streams without reading the acks and
/// resets: the session stops reading once 64 KiB of replies are queued.
#[tokio::test]
async fn untrusted_peer_cannot_make_us_queue_more_than_the_pause() {
    let (mut a, b) = tcp_pair().await;
    // Small socket buffers on both ends, so the replies queue with us.
    socket2::SockRef::from(&a)
        .set_recv_buffer_size(4096)
        .expect("rcvbuf");
    socket2::SockRef::from(&b)
        .set_send_buffer_size(4096)
        .expect("sndbuf");
    let mut server = mux::start(
        b,
        Mode::Server,
        MuxConfig::new(1 << 20).untrusted(),
        CancellationToken::new(),
    );
    // Accept and drop every stream: an ack and a reset each.
    let opener = server.opener.clone();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while server.incoming.recv().await.is_some() {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut syns = bytes::BytesMut::new();
    for i in 0..200_000u32 {
        frame::Header::new(frame::Kind::WindowUpdate, frame::SYN, 2 * i + 1, 0).encode(&mut syns);
    }
    let flood = tokio::spawn(async move {
        let _ = a.write_all(&syns).await;
        a
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while opener.stats().outgoing < mux::UNTRUSTED_OUT_PAUSE {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            opener.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Give the session every chance to go on reading; it must not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = opener.stats();
    // The pause, the frame that crossed it, and the resets of the streams
    // it had open (dropped after the reader stopped).
    let most = mux::UNTRUSTED_OUT_PAUSE + (2 + mux::UNTRUSTED_MAX_STREAMS) * frame::HEADER_LEN;
    assert!(stats.outgoing <= most, "{stats:?}");
    let n = accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n < 20_000, "{n} of 200,000 streams were looked at");
    flood.abort();
}

/// Data after a stream's FIN breaks that stream only: it is reset, the
/// data is not delivered, and the session goes on.
#[tokio::test]
async fn data_after_fin_resets_only_that_stream() {
    let (mut a, b) = tcp_pair().await;
    let mut server = session(b, Mode::Server, 16);
    let h = |kind, flags, id, len| frame::Header::new(kind, flags, id, len).to_bytes();
    let mut raw = Vec::new();
    raw.extend(h(frame::Kind::Data, frame::SYN, 1, 2));
    raw.extend(b"ab");
    raw.extend(h(frame::Kind::Data, frame::FIN, 1, 0));
    raw.extend(h(frame::Kind::Data, 0, 1, 3));
    raw.extend(b"bad");
    raw.extend(h(frame::Kind::Data, frame::SYN, 3, 2));
    raw.extend(b"ok");
    a.write_all(&raw).await.expect("write");
    let mut s1 = server.incoming.recv().await.expect("stream 1");
    let mut s3 = server
        .incoming
        .recv()
        .await
        .expect("stream 3 after the bad frame");
    let mut got = Vec::new();
    let r = s1.read_to_end(&mut got).await;
    assert!(r.is_err() || got == b"ab", "{r:?} {got:?}");
    assert!(
        !got.windows(3).any(|w| w == b"bad"),
        "data after FIN delivered"
    );
    let mut buf = [0u8; 2];
    s3.read_exact(&mut buf).await.expect("stream 3 works");
    assert_eq!(&buf, b"ok");
    // The peer was told: a reset for stream 1 among the frames it gets.
    let mut seen_rst = false;
    let mut hdr = [0u8; 12];
    while !seen_rst {
        a.read_exact(&mut hdr).await.expect("frames");
        let f = frame::Header::decode(&hdr).expect("frame");
        assert_ne!(f.kind, frame::Kind::Data, "no data was sent");
        seen_rst = f.id == 1 && f.has(frame::RST);
    }
}
