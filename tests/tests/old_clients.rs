//! A client of each older protocol version against today's frps binary,
//! built from that version's recorded bytes (tests/fixtures/wire), not
//! from today's encoder: it logs in, registers a tcp, a udp and an http
//! proxy, and carries a user's bytes, a datagram and an HTTP request. The
//! only things it computes are the login proof and yamux frame headers;
//! what it sends is the record with the proof put in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use e2e::raw::{self, Raw, CONTROL};
use e2e::wire_samples::{fixture, PROOF_MARK};
use e2e::*;
use mux::frame::{Kind, ACK, FIN, SYN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use wire::auth::{Purpose, Token};
use wire::codec::decode_for;
use wire::message::{Control, Hello, WorkHeader};

const TOKEN: &str = "old-clients";

/// A client replaying version `version`'s record over plain TCP.
struct OldClient {
    raw: Raw,
    version: u16,
    control: BytesMut,
    /// Bytes received on each work stream frps opened.
    streams: HashMap<u32, BytesMut>,
}

impl OldClient {
    async fn connect(addr: SocketAddr, version: u16) -> OldClient {
        OldClient {
            raw: Raw::new(raw::connect_plain(addr).await),
            version,
            control: BytesMut::new(),
            streams: HashMap::new(),
        }
    }

    fn record(&self, name: &str) -> Vec<u8> {
        fixture(self.version, name)
    }

    async fn send_on(&mut self, id: u32, flags: u16, bytes: &[u8]) {
        let mut frame = raw::header(Kind::Data, flags, id, bytes.len() as u32).to_vec();
        frame.extend_from_slice(bytes);
        self.raw.send(&frame).await.expect("send");
    }

    /// Reads frames until a control message is whole, noting any work
    /// stream frps opens (acknowledged at once) and what arrives on it.
    async fn next_control<M: wire::message::Frame>(&mut self) -> M {
        loop {
            if let Some(m) = decode_for::<M>(&mut self.control, self.version).expect("decode") {
                return m;
            }
            self.pump().await;
        }
    }

    async fn pump(&mut self) {
        let (h, payload) = tokio::time::timeout(WAIT, self.raw.next_frame())
            .await
            .expect("a frame in time")
            .expect("read")
            .expect("frps closed the connection");
        if h.id == CONTROL {
            self.control.extend_from_slice(&payload);
            return;
        }
        if h.flags & SYN != 0 {
            self.raw
                .send(&raw::header(Kind::WindowUpdate, ACK, h.id, 0))
                .await
                .expect("ack");
            self.streams.entry(h.id).or_default();
        }
        if h.kind == Kind::Data {
            self.streams
                .entry(h.id)
                .or_default()
                .extend_from_slice(&payload);
        }
    }

    /// The next work stream's id and its header.
    async fn next_work(&mut self) -> (u32, WorkHeader) {
        loop {
            let ready = self.streams.iter_mut().find_map(|(id, buf)| {
                decode_for::<WorkHeader>(buf, self.version)
                    .expect("work header")
                    .map(|h| (*id, h))
            });
            if let Some((id, header)) = ready {
                return (id, header);
            }
            self.pump().await;
        }
    }

    /// At least `n` bytes of stream `id` after its header.
    async fn read_stream(&mut self, id: u32, n: usize) -> Vec<u8> {
        while self.streams.get(&id).map_or(0, |b| b.len()) < n {
            self.pump().await;
        }
        self.streams.get_mut(&id).expect("stream").split().to_vec()
    }

    async fn log_in(&mut self) {
        let hello = self.record("hello-client");
        self.send_on(CONTROL, SYN, &hello).await;
        let Hello::Server { version, nonce } = self.next_control::<Hello>().await else {
            panic!("expected ServerHello");
        };
        assert_eq!(version, self.version, "frps agrees on the client's version");
        let proof = Token::new(TOKEN).prove(Purpose::Login, &nonce, &[0; 32], "", "fixture");
        let mut login = self.record("hello-login");
        let at = login
            .windows(32)
            .position(|w| w == PROOF_MARK)
            .expect("the proof's place in the record");
        login[at..at + 32].copy_from_slice(&proof);
        self.send_on(CONTROL, 0, &login).await;
        match self.next_control::<Hello>().await {
            Hello::LoginResp(r) => {
                r.result.expect("login accepted");
            }
            other => panic!("expected LoginResp, got {other:?}"),
        }
    }

    /// Registers the recorded proxy `name`; returns where frps serves it.
    async fn register(&mut self, name: &str) -> String {
        let bytes = self.record(name);
        self.send_on(CONTROL, 0, &bytes).await;
        match self.next_control::<Control>().await {
            Control::NewProxyResp(r) => r.result.unwrap_or_else(|e| panic!("{name}: {e}")),
            other => panic!("expected NewProxyResp, got {other:?}"),
        }
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

async fn tcp_through(c: &mut OldClient, port: u16) {
    let mut user = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    user.write_all(b"ping from a user").await.expect("write");
    let (id, WorkHeader::Start(start)) = c.next_work().await;
    assert_eq!(start.proxy_name, "fixture-tcp");
    let got = c.read_stream(id, 16).await;
    assert_eq!(got, b"ping from a user");
    c.send_on(id, FIN, b"pong from the service").await;
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, user.read_to_end(&mut back))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(back, b"pong from the service");
}

async fn udp_through(c: &mut OldClient, port: u16) {
    let user = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    user.send_to(b"a datagram", ("127.0.0.1", port))
        .await
        .expect("send");
    let (id, WorkHeader::Start(start)) = c.next_work().await;
    assert_eq!(start.proxy_name, "fixture-udp");
    // One datagram frame: length, family, address, port, payload. Sent
    // back as it came, it answers the user with the same bytes.
    let frame = c.read_stream(id, 2 + 7 + 10).await;
    c.send_on(id, 0, &frame).await;
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(WAIT, user.recv_from(&mut buf))
        .await
        .expect("answer in time")
        .expect("recv");
    assert_eq!(&buf[..n], b"a datagram");
}

async fn http_through(c: &mut OldClient, vhost: u16) {
    let curl = tokio::task::spawn_blocking(move || {
        e2e::web::curl(vhost, &["-H", "Host: fixture.example.test"], "/old")
    });
    let (id, WorkHeader::Start(start)) = c.next_work().await;
    assert_eq!(start.proxy_name, "fixture-http");
    let mut request = Vec::new();
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        request.extend(c.read_stream(id, 1).await);
    }
    let request = String::from_utf8_lossy(&request).to_lowercase();
    assert!(request.starts_with("get /old http/1.1"), "{request}");
    assert!(request.contains("x-from: fixture"), "{request}");
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nold and well";
    c.send_on(id, FIN, answer).await;
    let (status, body) = curl.await.expect("curl");
    assert_eq!((status, body.as_str()), (200, "old and well"));
}

async fn old_client_works(version: u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let vhost = free_port();
    let (_frps, port) = spawn_frps(
        dir.path(),
        &format!("auth.token = \"{TOKEN}\"\nvhostHTTPPort = {vhost}\n"),
    );
    let mut c = OldClient::connect(SocketAddr::from(([127, 0, 0, 1], port)), version).await;
    c.log_in().await;
    let tcp = port_of(&c.register("control-new-proxy-tcp").await);
    let udp = port_of(&c.register("control-new-proxy-udp").await);
    c.register("control-new-proxy-http").await;
    tcp_through(&mut c, tcp).await;
    udp_through(&mut c, udp).await;
    http_through(&mut c, vhost).await;
    // A heartbeat of that version is answered.
    let ping = c.record("control-ping");
    c.send_on(CONTROL, 0, &ping).await;
    let pong = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Control::Pong(p) = c.next_control::<Control>().await {
                return p;
            }
        }
    })
    .await
    .expect("pong");
    assert_eq!(pong.seq, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_3_client_from_its_recorded_bytes_works() {
    old_client_works(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_4_client_from_its_recorded_bytes_works() {
    old_client_works(4).await;
}
