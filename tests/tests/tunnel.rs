//! The tunnel end to end, with frps and frpc running in-process over real
//! loopback sockets.

use std::net::SocketAddr;

use e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const TOKEN: &str = "auth.token = \"tunnel-test\"\n";

async fn tunnel(proxies: &str) -> (TestServer, TestClient) {
    let server = TestServer::start(TOKEN).await;
    let client = TestClient::start(server.addr, &format!("{TOKEN}{proxies}"));
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_64_mib_each_way_arrives_intact() {
    const LEN: usize = 64 << 20;
    // A service that receives and sends 64 MiB at the same time.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let local = listener.local_addr().expect("addr");
    let (got_tx, got_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        let (mut r, mut w) = sock.into_split();
        let sender = tokio::spawn(async move {
            w.write_all(&pattern(LEN, 2)).await.expect("service write");
            w.shutdown().await.expect("service shutdown");
        });
        let received = read_all(&mut r).await;
        sender.await.expect("sender");
        let _ = got_tx.send(received);
    });

    let (server, mut client) = tunnel(&tcp_proxy("bulk", local, 0)).await;
    let remote = client.proxy_addr("bulk").await;
    let user = TcpStream::connect(remote).await.expect("connect");
    let (mut r, mut w) = user.into_split();
    let up = pattern(LEN, 1);
    let up_hash = sha256(&up);
    let writer = tokio::spawn(async move {
        w.write_all(&up).await.expect("user write");
        w.shutdown().await.expect("user shutdown");
    });
    let down = read_all(&mut r).await;
    writer.await.expect("writer");
    let received = got_rx.await.expect("service result");

    assert_eq!(down.len(), LEN, "bytes received by the user");
    assert_eq!(
        sha256(&down),
        sha256(&pattern(LEN, 2)),
        "service → user data differs"
    );
    assert_eq!(received.len(), LEN, "bytes received by the service");
    assert_eq!(sha256(&received), up_hash, "user → service data differs");
    client.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_all_echo() {
    const N: usize = 1000;
    let echo = spawn_echo().await;
    let (server, mut client) = tunnel(&tcp_proxy("echo", echo, 0)).await;
    let remote = client.proxy_addr("echo").await;

    // Open all of them first so they are truly concurrent.
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        conns.push(TcpStream::connect(remote).await.expect("connect"));
    }
    let mut tasks = Vec::with_capacity(N);
    for (i, c) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let msg = pattern(4096 + i, i as u64 + 7);
            exchange(c, &msg).await.expect("echo") == msg
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.expect("task") {
            ok += 1;
        }
    }
    assert_eq!(ok, N, "connections that echoed correctly");
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn half_close_keeps_the_other_direction_open() {
    // The service sends a greeting and half-closes, then reads the user's
    // request to the end and reports it.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let local = listener.local_addr().expect("addr");
    let (got_tx, got_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        sock.write_all(b"greeting").await.expect("write");
        sock.shutdown().await.expect("shutdown");
        let req = read_all(&mut sock).await;
        let _ = got_tx.send(req);
    });
    let (server, mut client) = tunnel(&tcp_proxy("hc", local, 0)).await;
    let remote = client.proxy_addr("hc").await;
    let mut user = TcpStream::connect(remote).await.expect("connect");
    // The user sees the greeting and EOF, and can still send afterwards.
    assert_eq!(read_all(&mut user).await, b"greeting");
    user.write_all(b"request after the server finished")
        .await
        .expect("write");
    user.shutdown().await.expect("shutdown");
    assert_eq!(
        got_rx.await.expect("service"),
        b"request after the server finished"
    );

    // And the other way round: user half-closes first, the echo answers after.
    let echo = spawn_echo().await;
    drop(client);
    let mut client = TestClient::start(
        server.addr,
        &format!("{TOKEN}{}", tcp_proxy("echo", echo, 0)),
    );
    let remote = client.proxy_addr("echo").await;
    let mut user = TcpStream::connect(remote).await.expect("connect");
    user.write_all(b"ping").await.expect("write");
    user.shutdown().await.expect("shutdown");
    assert_eq!(read_all(&mut user).await, b"ping");
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn local_service_down_closes_the_user_connection_and_tunnel_stays_up() {
    let down = closed_port().await;
    let echo = spawn_echo().await;
    let proxies = format!(
        "{}{}",
        tcp_proxy("down", down, 0),
        tcp_proxy("echo", echo, 0)
    );
    let (server, mut client) = tunnel(&proxies).await;
    let dead = client.proxy_addr("down").await;
    let alive = client.proxy_addr("echo").await;

    for _ in 0..3 {
        let mut user = TcpStream::connect(dead).await.expect("connect");
        let mut buf = [0u8; 16];
        // Closed (EOF or reset), never hanging.
        let n = tokio::time::timeout(WAIT, user.read(&mut buf))
            .await
            .expect("user connection to a dead service was not closed");
        assert!(matches!(n, Ok(0) | Err(_)), "unexpected data: {n:?}");
    }
    let mut user = TcpStream::connect(alive).await.expect("connect");
    user.write_all(b"still up").await.expect("write");
    user.shutdown().await.expect("shutdown");
    assert_eq!(read_all(&mut user).await, b"still up");
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn wrong_token_is_rejected_with_a_clear_error() {
    let server = TestServer::start(TOKEN).await;
    let echo = spawn_echo().await;
    let client = TestClient::start(
        server.addr,
        &format!("auth.token = \"wrong\"\n{}", tcp_proxy("echo", echo, 0)),
    );
    let err = tokio::time::timeout(WAIT, client.task)
        .await
        .expect("frpc did not give up")
        .expect("join")
        .expect_err("login must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("login rejected: invalid token"), "{msg}");
    server.stop().await;
}

#[tokio::test]
async fn port_conflict_and_disallowed_port_fail_alone() {
    let server = TestServer::start(&format!(
        "{TOKEN}allowPorts = [{{ start = 1024, end = 65535 }}]\n"
    ))
    .await;
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let echo = spawn_echo().await;
    let proxies = format!(
        "{}{}{}",
        tcp_proxy("clash", echo, taken_port),
        tcp_proxy("privileged", echo, 80),
        tcp_proxy("fine", echo, 0)
    );
    let mut client = TestClient::start(server.addr, &format!("{TOKEN}{proxies}"));
    let mut failures = Vec::new();
    let mut fine = None;
    while failures.len() < 2 || fine.is_none() {
        match client.next_event().await {
            Event::ProxyFailed { name, error } => failures.push((name, error)),
            Event::ProxyStarted { name, remote_addr } if name == "fine" => fine = Some(remote_addr),
            _ => {}
        }
    }
    failures.sort();
    assert_eq!(failures[0].0, "clash");
    assert!(
        failures[0]
            .1
            .contains(&format!("port {taken_port} is already in use")),
        "{failures:?}"
    );
    assert_eq!(failures[1].0, "privileged");
    assert!(failures[1].1.contains("not allowed"), "{failures:?}");

    let port: u16 = fine
        .and_then(|a| a.rsplit(':').next().and_then(|p| p.parse().ok()))
        .expect("port");
    let mut user = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    user.write_all(b"works").await.expect("write");
    user.shutdown().await.expect("shutdown");
    assert_eq!(read_all(&mut user).await, b"works");
    drop(taken);
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn proxy_names_are_unique_per_user() {
    let server = TestServer::start(TOKEN).await;
    let echo = spawn_echo().await;
    let mut first = TestClient::start(
        server.addr,
        &format!("{TOKEN}{}", tcp_proxy("web", echo, 0)),
    );
    first.proxy_addr("web").await;
    let mut second = TestClient::start(
        server.addr,
        &format!("{TOKEN}{}", tcp_proxy("web", echo, 0)),
    );
    loop {
        match second.next_event().await {
            Event::ProxyFailed { name, error } => {
                assert_eq!(name, "web");
                assert!(error.contains("already registered"), "{error}");
                break;
            }
            Event::ProxyStarted { .. } => panic!("the same name was registered twice"),
            _ => {}
        }
    }
    // Another user may use the same name.
    let mut other = TestClient::start(
        server.addr,
        &format!("{TOKEN}user = \"bob\"\n{}", tcp_proxy("web", echo, 0)),
    );
    other.proxy_addr("web").await;
    for c in [first, second, other] {
        c.stop().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_client_frees_its_ports() {
    let server = TestServer::start(TOKEN).await;
    let echo = spawn_echo().await;
    let mut client = TestClient::start(
        server.addr,
        &format!("{TOKEN}{}", tcp_proxy("echo", echo, 0)),
    );
    let remote = client.proxy_addr("echo").await;
    client.stop().await;
    // The port is free again: poll until bind succeeds, bounded by WAIT.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if TcpListener::bind(remote).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {remote} never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_do_not_stall_new_ones() {
    // yamux implementations commonly cap streams awaiting acknowledgement
    // (the yamux crate at 256); idle connections to a service that waits for
    // the user to speak first must not hold new ones back.
    let echo = spawn_echo().await;
    let (server, mut client) = tunnel(&tcp_proxy("echo", echo, 0)).await;
    let remote = client.proxy_addr("echo").await;
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(remote).await.expect("connect"));
    }
    let mut user = TcpStream::connect(remote).await.expect("connect");
    user.write_all(b"not stuck").await.expect("write");
    user.shutdown().await.expect("shutdown");
    let echoed = tokio::time::timeout(WAIT, read_all(&mut user))
        .await
        .expect("a new connection stalled behind idle ones");
    assert_eq!(echoed, b"not stuck");
    drop(idle);
    client.stop().await;
    server.stop().await;
}
