//! UDP proxies end to end: a real DNS server (dnsmasq) behind frpc asked
//! with dig through frps; many concurrent users, each answered at its own
//! address, byte-exact; mapping expiry and its bound; oversized and junk
//! datagrams; frpc restarting while datagrams flow.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use e2e::*;
use tokio::net::UdpSocket;

const TOKEN: &str = "auth.token = \"udp-secret\"\n";

/// A UDP service that echoes every datagram back to its sender.
async fn udp_echo() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = sock.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], peer).await;
        }
    });
    addr
}

/// A UDP service that answers with the port it saw the datagram come from.
async fn udp_whoami() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = sock.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((_, peer)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(peer.port().to_string().as_bytes(), peer).await;
        }
    });
    addr
}

/// Sends `data` and waits for one answer, resending a few times (UDP may
/// drop); None if nothing came back.
async fn ask(sock: &UdpSocket, to: SocketAddr, data: &[u8], tries: u32) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    for _ in 0..tries {
        sock.send_to(data, to).await.expect("send");
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(700), sock.recv_from(&mut buf)).await
        {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

async fn start(
    local: SocketAddr,
    proxy_extra: &str,
    client_extra: &str,
) -> (TestServer, TestClient, SocketAddr) {
    let server = TestServer::start(TOKEN).await;
    let mut client = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}{client_extra}{}",
            udp_proxy("u", local, 0, proxy_extra)
        ),
    );
    let public = client.proxy_addr("u").await;
    (server, client, public)
}

/// dnsmasq on 127.0.0.1 answering `*.tunnel.test` with 10.9.8.7.
fn spawn_dnsmasq() -> (Proc, u16) {
    e2e::services::dnsmasq("/tunnel.test/10.9.8.7")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_asks_dnsmasq_through_the_tunnel() {
    let (mut dns, port) = spawn_dnsmasq();
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    for mode in ["", "transport.tcpMux = false\ntransport.poolCount = 1\n"] {
        let (server, client, public) = start(local, "", mode).await;
        let out = tokio::task::spawn_blocking(move || {
            Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &public.port().to_string(),
                    "+short",
                    "+tries=3",
                    "+time=2",
                    "a.tunnel.test",
                ])
                .output()
                .expect("run dig")
        })
        .await
        .expect("dig");
        let answer = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            answer.trim(),
            "10.9.8.7",
            "mode {mode:?}: dig said {answer:?}"
        );
        dns.wait_line("a.tunnel.test", WAIT);
        // frp's curConns for udp: one while the proxy's work stream is open.
        let open: Vec<u64> = server
            .stats
            .proxies()
            .iter()
            .filter(|p| p.name == "u")
            .map(|p| p.traffic.open)
            .collect();
        assert_eq!(open, [1], "mode {mode:?}");
        client.stop().await;
        server.stop().await;
    }
}

/// 10,000 datagrams of every size from 1 to udpPacketSize, from 100 user
/// sockets at once: each answer reaches the socket that asked, intact; a
/// datagram over the size is dropped and counted, not truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_datagrams_from_a_hundred_ports() {
    let local = udp_echo().await;
    let (server, client, public) = start(local, "", "").await;
    let mut users = Vec::new();
    for u in 0..100u32 {
        users.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let mut lost = 0;
            for i in 0..100u32 {
                let size = 1 + ((u * 100 + i) as usize * 7919) % 1500;
                let data: Vec<u8> = (0..size).map(|k| (k as u32 ^ u ^ (i << 3)) as u8).collect();
                match ask(&sock, public, &data, 5).await {
                    Some(got) => assert_eq!(got, data, "user {u} datagram {i}"),
                    None => lost += 1,
                }
            }
            lost
        }));
    }
    let mut lost = 0;
    for u in users {
        lost += tokio::time::timeout(Duration::from_secs(120), u)
            .await
            .expect("users finish in time")
            .expect("user");
    }
    assert_eq!(lost, 0, "datagrams never answered even after 5 tries");
    // Over the limit: nothing comes back, and it is counted.
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    assert_eq!(ask(&sock, public, &[1u8; 1501], 2).await, None);
    let p = &server.stats.proxies()[0];
    assert!(p.traffic.dropped >= 1, "{p:?}");
    assert!(
        p.traffic.into_tunnel >= 10_000 && p.traffic.out_of_tunnel >= 10_000,
        "{p:?}"
    );
    // Junk of every size up to the limit is just data to UDP: still served.
    for n in [0usize, 1, 3, 1500] {
        let junk: Vec<u8> = (0..n).map(|k| (k * 131) as u8).collect();
        assert_eq!(ask(&sock, public, &junk, 5).await, Some(junk));
    }
    client.stop().await;
    server.stop().await;
}

/// A user's mapping expires after udpIdleTimeout (the next datagram comes
/// from a new local socket), and no more than udpMaxMappings users are
/// mapped at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_expire_and_are_bounded() {
    let local = udp_whoami().await;
    let (server, client, public) =
        start(local, "udpIdleTimeout = 1\nudpMaxMappings = 2\n", "").await;
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let first = ask(&a, public, b"?", 5).await.expect("answer");
    // Still mapped: the same local socket.
    assert_eq!(ask(&a, public, b"?", 5).await.expect("answer"), first);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = ask(&a, public, b"?", 5).await.expect("answer");
    assert_ne!(later, first, "the idle mapping was not dropped");

    // a holds one mapping; b takes the second; c finds none free.
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let c = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    assert!(ask(&b, public, b"?", 5).await.is_some());
    // (frpc drops and counts it; frps forwarded it.)
    assert_eq!(
        ask(&c, public, b"?", 1).await,
        None,
        "a third mapping was made"
    );
    // Once they expire, c gets its turn.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(ask(&c, public, b"?", 5).await.is_some());
    client.stop().await;
    server.stop().await;
}

/// Full mappings are said, once, not per dropped datagram: 20 new senders
/// beyond `udpMaxMappings` make one warning in frpc's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mappings_are_warned_once() {
    let local = udp_echo().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), TOKEN);
    let remote = free_udp_port();
    let proxy = udp_proxy("u", local, remote, "udpMaxMappings = 2\n");
    let mut frpc = spawn_frpc(dir.path(), port, &format!("{TOKEN}{proxy}"));
    frpc.wait_line("proxy started", WAIT);
    let public = SocketAddr::from(([127, 0, 0, 1], remote));
    let mut held = Vec::new();
    for _ in 0..2 {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        assert!(
            ask(&s, public, b"hi", 5).await.is_some(),
            "a mapping within the bound"
        );
        held.push(s);
    }
    let mut beyond = Vec::new();
    for _ in 0..20 {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        s.send_to(b"hi", public).await.expect("send");
        beyond.push(s);
    }
    // Datagrams of one proxy are taken in order: once a held mapping is
    // answered again, frpc has seen all 20.
    assert!(ask(&held[0], public, b"again", 5).await.is_some());
    let mut buf = [0u8; 16];
    for s in &beyond {
        assert!(
            s.try_recv_from(&mut buf).is_err(),
            "a mapping beyond the bound"
        );
    }
    let line = frpc.wait_line("udpMaxMappings (2) reached", WAIT);
    assert!(line.contains("WARN") && line.contains("proxy=u"), "{line}");
    let log = frpc.output();
    assert_eq!(
        log.matches("udpMaxMappings (2) reached").count(),
        1,
        "{log}"
    );
}

/// frpc goes away while a user keeps sending; a new frpc registers the
/// proxy again on the same port and the same user is answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frpc_restart_while_datagrams_flow() {
    let local = udp_echo().await;
    let port = free_udp_port();
    let server = TestServer::start(TOKEN).await;
    let proxy = udp_proxy("u", local, port, "");
    let mut client = TestClient::start(server.addr, &format!("{TOKEN}{proxy}"));
    let public = client.proxy_addr("u").await;
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    assert_eq!(
        ask(&sock, public, b"before", 5).await.as_deref(),
        Some(&b"before"[..])
    );
    // A sender that keeps going through the restart.
    let sender = {
        let sock = sock.clone();
        tokio::spawn(async move {
            for i in 0..200u32 {
                let _ = sock.send_to(&i.to_be_bytes(), public).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    client.stop().await;
    let mut client = TestClient::start(server.addr, &format!("{TOKEN}{proxy}"));
    assert_eq!(client.proxy_addr("u").await, public, "same port again");
    sender.await.expect("sender");
    // Drain what came back meanwhile, then ask afresh.
    let mut buf = [0u8; 64];
    let mut seen = HashSet::new();
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await
    {
        seen.insert(buf[..n].to_vec());
    }
    assert!(!seen.is_empty(), "nothing answered around the restart");
    assert_eq!(
        ask(&sock, public, b"after", 5).await.as_deref(),
        Some(&b"after"[..])
    );
    client.stop().await;
    server.stop().await;
}

/// A flood towards a local service that reads nothing: 100 users send
/// 100,000 datagrams of 1400 bytes (140 MB) as fast as they can. What does
/// not fit is dropped (UDP), never queued without bound: frps and frpc
/// each grow by less than 16 MiB, and frpc holds at most udpMaxMappings
/// sockets. Real processes, so their memory can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_to_a_stuck_service_keeps_memory_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bound and never read: its receive buffer fills at once.
    let stuck = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = stuck.local_addr().expect("addr");
    let (mut frps, port) = spawn_frps(dir.path(), TOKEN);
    let mut frpc = spawn_frpc(
        dir.path(),
        port,
        &format!(
            "{TOKEN}{}",
            udp_proxy("u", local, 0, "udpMaxMappings = 64\n")
        ),
    );
    let public = SocketAddr::from((
        [127, 0, 0, 1],
        port_from_line(&frpc.wait_line("proxy started", WAIT)),
    ));
    let (s_pid, c_pid) = (frps.child.id(), frpc.child.id());
    let (s0, c0) = (e2e::raw::rss_kib(s_pid), e2e::raw::rss_kib(c_pid));
    let mut users = Vec::new();
    for _ in 0..100 {
        users.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let data = [0xabu8; 1400];
            for _ in 0..1000 {
                let _ = sock.send_to(&data, public).await;
            }
        }));
    }
    let (mut s_max, mut c_max) = (0, 0);
    for u in users {
        tokio::time::timeout(Duration::from_secs(60), u)
            .await
            .expect("flood finishes")
            .expect("user");
        s_max = s_max.max(e2e::raw::rss_kib(s_pid));
        c_max = c_max.max(e2e::raw::rss_kib(c_pid));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    s_max = s_max.max(e2e::raw::rss_kib(s_pid));
    c_max = c_max.max(e2e::raw::rss_kib(c_pid));
    let (sg, cg) = (s_max.saturating_sub(s0), c_max.saturating_sub(c0));
    eprintln!(
        "frps +{sg} KiB, frpc +{cg} KiB, frpc fds {}",
        e2e::raw::fd_count(c_pid)
    );
    assert!(sg < 16 * 1024, "frps grew by {sg} KiB");
    assert!(cg < 16 * 1024, "frpc grew by {cg} KiB");
    // frpc: one socket per mapping, at most 64 of them.
    let fds = e2e::raw::fd_count(c_pid);
    assert!(fds < 64 + 32, "frpc holds {fds} descriptors");
    // Both still run.
    for (name, p) in [("frps", &mut frps), ("frpc", &mut frpc)] {
        if let Some(status) = p.child.try_wait().expect("wait") {
            panic!("{name} exited: {status}");
        }
    }
    drop(stuck);
}
