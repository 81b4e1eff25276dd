//! Security and bad input: TLS verification modes, mutual TLS, replayed
//! logins, junk on the public port, and a flood while a tunnel keeps working.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use e2e::*;
use futures::SinkExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "auth.token = \"security-test-secret\"\n";

async fn client_error(server: SocketAddr, extra: &str) -> String {
    let client = TestClient::start(server, &format!("{TOKEN}{extra}"));
    let err = tokio::time::timeout(WAIT, client.task)
        .await
        .expect("frpc did not give up")
        .expect("join")
        .expect_err("frpc must refuse");
    format!("{err:#}")
}

async fn echo_through(client: &mut TestClient, name: &str) {
    let remote = client.proxy_addr(name).await;
    let mut s = TcpStream::connect(remote).await.expect("connect");
    s.write_all(b"hello").await.expect("write");
    s.shutdown().await.expect("shutdown");
    assert_eq!(read_all(&mut s).await, b"hello");
}

#[tokio::test]
async fn pinned_fingerprint_is_enforced() {
    // Make the server's self-signed certificate up front to know its fingerprint.
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, _, _) = net::tls::self_signed(
        &dir.path().join("frps_selfsigned.crt"),
        &dir.path().join("frps_selfsigned.key"),
    )
    .expect("certificate");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = TestServer::start_on(listener, std::sync::Arc::new(dir), TOKEN);
    let echo = spawn_echo().await;
    let right = net::tls::pretty_fingerprint(&net::tls::fingerprint(&cert[0]));

    let mut ok = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}transport.tls.serverFingerprint = \"{right}\"\n{}",
            tcp_proxy("e", echo, 0)
        ),
    );
    echo_through(&mut ok, "e").await;
    ok.stop().await;

    let wrong = "AB:".repeat(31) + "AB";
    let msg = client_error(
        server.addr,
        &format!("transport.tls.serverFingerprint = \"{wrong}\"\n"),
    )
    .await;
    assert!(msg.contains("does not match"), "{msg}");
    assert!(
        msg.contains(&right),
        "the message shows the server's real fingerprint: {msg}"
    );
    server.stop().await;
}

#[tokio::test]
async fn trust_on_first_use_stores_then_enforces() {
    let server = TestServer::start(TOKEN).await;
    let addr = server.addr;
    let known = tempfile::tempdir().expect("tempdir");
    let known_file = known.path().join("known");
    let tofu = format!(
        "transport.tls.knownHostsFile = \"{}\"\n",
        known_file.display()
    );
    let echo = spawn_echo().await;

    let mut first = TestClient::start(addr, &format!("{TOKEN}{tofu}{}", tcp_proxy("e", echo, 0)));
    echo_through(&mut first, "e").await;
    first.stop().await;
    let stored = std::fs::read_to_string(&known_file).expect("known servers file written");
    assert!(
        stored.contains(&format!("127.0.0.1:{}", addr.port())),
        "{stored}"
    );

    // Same server again: accepted silently.
    let mut second = TestClient::start(addr, &format!("{TOKEN}{tofu}{}", tcp_proxy("e", echo, 0)));
    echo_through(&mut second, "e").await;
    second.stop().await;

    // A different certificate on the same address: refused, both shown.
    server.stop().await;
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let impostor = TestServer::start_on(
        listener,
        std::sync::Arc::new(tempfile::tempdir().expect("tempdir")),
        TOKEN,
    );
    let msg = client_error(addr, &tofu).await;
    assert!(msg.contains("CHANGED"), "{msg}");
    let old_fp = stored.split_whitespace().nth(1).expect("fingerprint");
    assert!(
        msg.contains(&net::tls::pretty_fingerprint(old_fp)),
        "old fingerprint shown: {msg}"
    );
    impostor.stop().await;
}

/// A CA, and certificates it signs, written as PEM files into `dir`.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        Pki { ca }
    }

    fn write_ca(&self, dir: &Path, name: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, self.ca.pem()).expect("write ca");
        p.display().to_string()
    }

    /// Writes `<name>.crt` and `<name>.key`, returns TOML lines setting them.
    fn leaf(&self, dir: &Path, name: &str, prefix: &str) -> String {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &self.ca)
            .expect("sign");
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        format!(
            "{prefix}.certFile = \"{}\"\n{prefix}.keyFile = \"{}\"\n",
            c.display(),
            k.display()
        )
    }
}

#[tokio::test]
async fn ca_verification_and_mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let other = Pki::new();
    let ca = pki.write_ca(dir.path(), "ca.pem");
    let server_tls = pki.leaf(dir.path(), "server", "transport.tls");
    let server = TestServer::start(&format!(
        "{TOKEN}{server_tls}transport.tls.trustedCaFile = \"{ca}\"\ntransport.tls.force = true\n"
    ))
    .await;
    let echo = spawn_echo().await;
    let verify_by_ca = format!(
        "transport.tls.trustedCaFile = \"{ca}\"\ntransport.tls.serverName = \"localhost\"\n"
    );

    // A client certificate from the right CA: in.
    let good = pki.leaf(dir.path(), "client", "transport.tls");
    let mut client = TestClient::start(
        server.addr,
        &format!("{TOKEN}{verify_by_ca}{good}{}", tcp_proxy("e", echo, 0)),
    );
    echo_through(&mut client, "e").await;
    client.stop().await;

    // No client certificate, or one from another CA: out.
    let msg = client_error(server.addr, &verify_by_ca).await;
    assert!(msg.contains("CertificateRequired"), "{msg}");
    let stranger = other.leaf(dir.path(), "stranger", "transport.tls");
    let msg = client_error(server.addr, &format!("{verify_by_ca}{stranger}")).await;
    assert!(msg.contains("alert"), "{msg}");

    // Plain TCP is refused when the server forces TLS.
    let msg = client_error(server.addr, "transport.tls.enable = false\n").await;
    assert!(msg.contains("closed the connection"), "{msg}");

    // A server whose certificate does not chain to the client's CA.
    let other_ca = other.write_ca(dir.path(), "other-ca.pem");
    let msg = client_error(
        server.addr,
        &format!("transport.tls.trustedCaFile = \"{other_ca}\"\ntransport.tls.serverName = \"localhost\"\n{good}"),
    )
    .await;
    assert!(
        msg.contains("TLS handshake failed: invalid peer certificate"),
        "{msg}"
    );
    server.stop().await;
}

/// A TCP relay that records what the client sends.
async fn recording_relay(
    target: SocketAddr,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok((a, _)) = listener.accept().await else {
            return;
        };
        let Ok(b) = TcpStream::connect(target).await else {
            return;
        };
        let (mut ar, mut aw) = a.into_split();
        let (mut br, mut bw) = b.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut br, &mut aw).await;
        });
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = ar.read(&mut buf).await {
            if n == 0 || bw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            let _ = tx.send(buf[..n].to_vec());
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_recorded_login_does_not_work_twice() {
    // Plain TCP so the transcript is visible; with TLS it could not even be
    // replayed at the byte level.
    let server = TestServer::start(TOKEN).await;
    let (relay, mut recorded) = recording_relay(server.addr).await;
    let echo = spawn_echo().await;
    let port = closed_port().await.port();
    let mut client = TestClient::start(
        relay,
        &format!(
            "{TOKEN}transport.tls.enable = false\n{}",
            tcp_proxy("e", echo, port)
        ),
    );
    echo_through(&mut client, "e").await;
    client.stop().await;
    let mut transcript = Vec::new();
    while let Ok(chunk) = recorded.try_recv() {
        transcript.extend(chunk);
    }
    assert!(transcript.len() > 50, "recorded {} bytes", transcript.len());
    // The port is free again once the real client is gone.
    wait_until_bindable(port).await;

    // Replay the client's bytes verbatim on a new connection.
    let mut attacker = TcpStream::connect(server.addr).await.expect("connect");
    attacker.write_all(&transcript).await.expect("replay");
    let closed = tokio::time::timeout(WAIT, async {
        let mut sink = vec![0u8; 4096];
        while attacker.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    assert!(closed.is_ok(), "the server kept a replayed login open");
    // The replayed NewProxy never bound the port.
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "a replayed login registered a proxy"
    );
    server.stop().await;
}

async fn wait_until_bindable(port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// frps's answers to the first `n` registrations: how many started, and
/// the (name, error) of the others.
async fn answers(client: &mut TestClient, n: usize) -> (usize, Vec<(String, String)>) {
    let (mut started, mut failed) = (0, Vec::new());
    while started + failed.len() < n {
        match client.next_event().await {
            Event::ProxyStarted { .. } => started += 1,
            Event::ProxyFailed { name, error } => failed.push((name, error)),
            _ => {}
        }
    }
    (started, failed)
}

#[tokio::test]
async fn max_ports_per_client() {
    let server = TestServer::start(&format!("{TOKEN}maxPortsPerClient = 2\n")).await;
    let echo = spawn_echo().await;
    let proxies = format!(
        "{}{}{}",
        tcp_proxy("a", echo, 0),
        tcp_proxy("b", echo, 0),
        tcp_proxy("c", echo, 0)
    );
    let mut client = TestClient::start(server.addr, &format!("{TOKEN}{proxies}"));
    let (started, failed) = answers(&mut client, 3).await;
    assert_eq!(started, 2);
    assert!(failed[0].1.contains("maxPortsPerClient"), "{failed:?}");
    client.stop().await;
    server.stop().await;
}

/// `maxProxiesPerClient` bounds proxies of every kind (10,000 by default).
#[tokio::test]
async fn max_proxies_per_client() {
    let server = TestServer::start(&format!(
        "{TOKEN}maxProxiesPerClient = 2\nvhostHTTPPort = {}\n",
        free_port()
    ))
    .await;
    let echo = spawn_echo().await;
    let proxies = format!(
        "{}[[proxies]]\nname = \"w\"\ntype = \"http\"\nlocalPort = {}\ncustomDomains = [\"w.test\"]\n{}",
        tcp_proxy("a", echo, 0),
        echo.port(),
        tcp_proxy("c", echo, 0)
    );
    let mut client = TestClient::start(server.addr, &format!("{TOKEN}{proxies}"));
    let (started, failed) = answers(&mut client, 3).await;
    assert_eq!(started, 2);
    assert!(failed[0].1.contains("maxProxiesPerClient"), "{failed:?}");
    client.stop().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Bad input against the real frps binary: one concise log line per bad
// connection, and everyone else keeps being served.

/// A plain yamux session to frps with the control stream open, to speak
/// the protocol wrongly on purpose.
async fn raw_control(
    port: u16,
) -> tokio_util::codec::Framed<mux::MuxStream, wire::codec::MessageCodec<wire::message::Hello>> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let session = mux::start(
        tcp,
        mux::Mode::Client,
        mux::MuxConfig::new(16),
        tokio_util::sync::CancellationToken::new(),
    );
    let stream = session.opener.open().await.expect("open");
    // Keep the session alive as long as the stream (the driver task owns it).
    std::mem::forget(session.incoming);
    tokio_util::codec::Framed::new(stream, wire::codec::MessageCodec::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_is_rejected_with_one_line_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut frps, port) = spawn_frps(dir.path(), &format!("{TOKEN}transport.loginTimeout = 2\n"));

    // An HTTP request.
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    frps.wait_line("an HTTP request, not a frp-rs client", WAIT);
    // Garbage.
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(&[0xde, 0xad, 0xbe, 0xef]).await.expect("write");
    frps.wait_line("not a frp-rs client (first byte 0xde)", WAIT);
    // A broken TLS record.
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .expect("write");
    frps.wait_line("TLS handshake failed", WAIT);
    // A silent connection is closed after loginTimeout.
    let mut silent = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let n = tokio::time::timeout(WAIT, silent.read(&mut [0u8; 1]))
        .await
        .expect("silent connection kept open");
    assert!(matches!(n, Ok(0) | Err(_)));
    frps.wait_line("no handshake within 2s", WAIT);

    // Frames that break the protocol, over plain yamux.
    let mut ctrl = raw_control(port).await;
    ctrl.get_mut()
        .write_all(&[0xff, 0xff, 0, 0])
        .await
        .expect("write");
    ctrl.get_mut().flush().await.expect("flush");
    frps.wait_line("exceeds the maximum", WAIT);

    let mut ctrl = raw_control(port).await;
    ctrl.get_mut()
        .write_all(&[0x00, 0x01, 0x7f])
        .await
        .expect("write");
    ctrl.get_mut().flush().await.expect("flush");
    frps.wait_line("malformed message", WAIT);

    let mut ctrl = raw_control(port).await;
    // A login before the hello: the handshake's order is enforced.
    let early = wire::message::Hello::NewWorkConn(wire::message::NewWorkConn {
        run_id: "sneaky".into(),
        user: "sneaky".into(),
        proof: [0; 32],
    });
    ctrl.send(early).await.expect("send");
    frps.wait_line("expected ClientHello, got NewWorkConn", WAIT);

    // Still serving: a real client logs in and forwards.
    let (_l, local) = std_echo();
    let mut frpc = spawn_frpc(
        dir.path(),
        port,
        &format!("{TOKEN}{}", tcp_proxy("e", local, 0)),
    );
    let remote = port_from_line(&frpc.wait_line("reachable on server port", WAIT));
    assert_eq!(std_echo_once(remote, b"fine"), b"fine");
    assert!(
        frps.child.try_wait().expect("try_wait").is_none(),
        "frps died"
    );
    // And the token never shows up in any log.
    let logs = format!("{}\n{}", frps.output(), frpc.output());
    assert!(
        !logs.contains("security-test-secret"),
        "token leaked into logs"
    );
}

/// A std echo server on its own threads.
fn std_echo() -> (std::thread::JoinHandle<()>, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let h = std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().expect("clone");
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
                let _ = w.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (h, addr)
}

fn std_echo_once(port: u16, msg: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(msg).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_does_not_disturb_a_running_transfer() {
    const LEN: usize = 32 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut frps, port) = spawn_frps(
        dir.path(),
        &format!("{TOKEN}transport.loginTimeout = 3\ntransport.maxPendingLogins = 64\n"),
    );
    let (_h, local) = std_echo();
    let mut frpc = spawn_frpc(
        dir.path(),
        port,
        &format!("{TOKEN}{}", tcp_proxy("bulk", local, 0)),
    );
    let remote = port_from_line(&frpc.wait_line("reachable on server port", WAIT));

    // The transfer: 32 MiB through the tunnel and back, checked by hash.
    let transfer = tokio::spawn(async move {
        let s = TcpStream::connect(("127.0.0.1", remote))
            .await
            .expect("connect");
        let (mut r, mut w) = s.into_split();
        let data = pattern(LEN, 99);
        let want = sha256(&data);
        let writer = tokio::spawn(async move {
            w.write_all(&data).await.expect("write");
            w.shutdown().await.expect("shutdown");
        });
        let got = read_all(&mut r).await;
        writer.await.expect("writer");
        (sha256(&got), want, got.len())
    });

    // Meanwhile: hundreds of silent and junk connections.
    let mut flood = Vec::new();
    for i in 0..600u32 {
        flood.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                return None;
            };
            match i % 4 {
                0 => {}
                1 => {
                    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
                }
                2 => {
                    let _ = s.write_all(&pattern(512, u64::from(i))).await;
                }
                _ => {
                    let _ = s
                        .write_all(&[0x16, 0x03, 0x01, 0x40, 0x00, 0xff, 0xff])
                        .await;
                }
            }
            Some(s)
        }));
    }
    let mut held = Vec::new();
    for f in flood {
        held.extend(f.await.expect("flood task"));
    }
    let (got, want, len) = tokio::time::timeout(Duration::from_secs(120), transfer)
        .await
        .expect("transfer stalled under the flood")
        .expect("transfer task");
    assert_eq!(len, LEN);
    assert_eq!(got, want, "data changed in transit");
    drop(held);

    assert!(
        frps.child.try_wait().expect("try_wait").is_none(),
        "frps died under the flood"
    );
    // Once the junk is gone, new clients get in again.
    let mut second = spawn_frpc(
        dir.path(),
        port,
        &format!("{TOKEN}{}", tcp_proxy("after", local, 0)),
    );
    let after = port_from_line(&second.wait_line("reachable on server port", WAIT));
    assert_eq!(std_echo_once(after, b"after the flood"), b"after the flood");
}

#[tokio::test]
async fn max_streams_per_client_caps_one_client_only() {
    // The control stream counts as one: three forwarded connections fit.
    let server = TestServer::start(&format!("{TOKEN}transport.maxStreamsPerClient = 4\n")).await;
    let echo = spawn_echo().await;
    let mut greedy = TestClient::start(server.addr, &format!("{TOKEN}{}", tcp_proxy("g", echo, 0)));
    let mut other = TestClient::start(
        server.addr,
        &format!("{TOKEN}user = \"other\"\n{}", tcp_proxy("o", echo, 0)),
    );
    let g = greedy.proxy_addr("g").await;
    let o = other.proxy_addr("o").await;

    // Fill the greedy client's streams with open, working connections.
    let mut held = Vec::new();
    for i in 0..3u8 {
        let mut s = TcpStream::connect(g).await.expect("connect");
        s.write_all(&[i]).await.expect("write");
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .await
            .expect("echo while under the cap");
        held.push(s);
    }
    // One more is closed instead of queued forever…
    let mut extra = TcpStream::connect(g).await.expect("connect");
    let _ = extra.write_all(b"x").await;
    let n = tokio::time::timeout(WAIT, extra.read(&mut [0u8; 1]))
        .await
        .expect("not closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // …while another client is unaffected.
    let mut s = TcpStream::connect(o).await.expect("connect");
    s.write_all(b"fine").await.expect("write");
    s.shutdown().await.expect("shutdown");
    assert_eq!(read_all(&mut s).await, b"fine");
    // Freeing one makes room again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Until the freed stream is returned, attempts are refused (closed
        // or reset): that is the cap working, so just try again.
        let mut s = TcpStream::connect(g).await.expect("connect");
        let mut got = Vec::new();
        let ok = s.write_all(b"again").await.is_ok()
            && s.shutdown().await.is_ok()
            && s.read_to_end(&mut got).await.is_ok();
        if ok && got == b"again" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no room after a connection closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    greedy.stop().await;
    other.stop().await;
    server.stop().await;
}

/// A trusted CA implies TLS-only. A client without a certificate over
/// plain TCP (the real frpc, `transport.tls.enable = false`) cannot log in
/// or expose anything, and a plain work connection is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_ca_refuses_plain_tcp_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let ca = pki.write_ca(dir.path(), "ca.pem");
    let server_tls = pki.leaf(dir.path(), "server", "transport.tls");
    // transport.tls.force is left at its default (false).
    let server = TestServer::start(&format!(
        "{TOKEN}{server_tls}transport.tls.trustedCaFile = \"{ca}\"\n"
    ))
    .await;
    let echo = spawn_echo().await;
    let mut frpc = spawn_frpc(
        dir.path(),
        server.addr.port(),
        &format!(
            "{TOKEN}transport.tls.enable = false\n{}",
            tcp_proxy("bypass", echo, 0)
        ),
    );
    let code = frpc.wait_exit(WAIT);
    let out = frpc.output();
    assert_ne!(code, Some(0), "{out}");
    assert!(!out.contains("proxy started"), "{out}");
    // frps drops the plain connection with the ClientHello unread: frpc
    // sees a close or, when that data was still in flight, a reset.
    assert!(
        out.contains("closed the connection") || out.contains("Connection reset by peer"),
        "{out}"
    );

    let mut work = TcpStream::connect(server.addr).await.expect("connect");
    work.write_all(&[wire::message::WORK_CONN_MARKER])
        .await
        .expect("marker");
    let mut buf = Vec::new();
    let n = tokio::time::timeout(WAIT, work.read_to_end(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "a plain work connection got an answer");
    server.stop().await;
}

/// One client's users cannot take the whole receive budget: with
/// maxBufferMB = 16 (64 stream windows), 70 open connections to one
/// client's proxy get at most three quarters of it, and another client's
/// users are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_users_leave_buffer_budget_for_the_others() {
    let server = TestServer::start(&format!("{TOKEN}transport.maxBufferMB = 16\n")).await;
    let echo = spawn_echo().await;
    let mut greedy = TestClient::start(server.addr, &format!("{TOKEN}{}", tcp_proxy("g", echo, 0)));
    let mut other = TestClient::start(
        server.addr,
        &format!("{TOKEN}user = \"other\"\n{}", tcp_proxy("o", echo, 0)),
    );
    let g = greedy.proxy_addr("g").await;
    let o = other.proxy_addr("o").await;
    let mut held = Vec::new();
    for i in 0..70u8 {
        let mut s = TcpStream::connect(g).await.expect("connect");
        let _ = s.write_all(&[i]).await;
        let mut b = [0u8; 1];
        match tokio::time::timeout(WAIT, s.read(&mut b)).await {
            Ok(Ok(1)) => held.push(s),
            Ok(_) => {}
            Err(_) => panic!("connection {i} neither served nor closed"),
        }
    }
    assert!(
        (16..=48).contains(&held.len()),
        "{} of 70 connections of one client took a window",
        held.len()
    );
    for _ in 0..8 {
        let mut s = TcpStream::connect(o).await.expect("connect");
        s.write_all(b"fine").await.expect("write");
        s.shutdown().await.expect("shutdown");
        assert_eq!(read_all(&mut s).await, b"fine");
    }
    drop(held);
    greedy.stop().await;
    other.stop().await;
    server.stop().await;
}
