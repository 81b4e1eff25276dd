//! `transport.tcpMux = false`: one TCP (TLS) connection per forwarded
//! connection, from a pool frpc opens in advance or on request.

use std::time::Duration;

use e2e::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const TOKEN: &str = "auth.token = \"no-mux\"\n";

async fn tunnel(
    pool_count: usize,
    local: std::net::SocketAddr,
) -> (TestServer, TestClient, std::net::SocketAddr) {
    let server = TestServer::start(&format!("{TOKEN}transport.maxPoolCount = 16\n")).await;
    let mut client = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}transport.tcpMux = false\ntransport.poolCount = {pool_count}\n{}",
            tcp_proxy("p", local, 0)
        ),
    );
    let remote = client.proxy_addr("p").await;
    (server, client, remote)
}

async fn echo(remote: std::net::SocketAddr, msg: Vec<u8>) -> bool {
    let s = TcpStream::connect(remote).await.expect("connect");
    exchange(s, &msg).await.is_ok_and(|v| v == msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_work_connections_carry_data_intact() {
    let local = spawn_echo().await;
    let (server, client, remote) = tunnel(4, local).await;
    // Bulk, then many at once (more than the pool: the rest come on request).
    assert!(
        echo(remote, pattern(16 << 20, 5)).await,
        "16 MiB through a work connection"
    );
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        tasks.push(tokio::spawn(echo(remote, pattern(1000 + i as usize, i))));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.expect("task"));
    }
    assert_eq!(ok, 200);
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn without_a_pool_work_connections_come_on_request() {
    let local = spawn_echo().await;
    let (server, client, remote) = tunnel(0, local).await;
    for i in 0..5 {
        assert!(echo(remote, pattern(100, i)).await);
    }
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn half_close_survives_work_connections() {
    let local = spawn_echo().await;
    let (server, client, remote) = tunnel(2, local).await;
    let mut s = TcpStream::connect(remote).await.expect("connect");
    s.write_all(b"req").await.expect("write");
    s.shutdown().await.expect("shutdown");
    assert_eq!(read_all(&mut s).await, b"req");
    client.stop().await;
    server.stop().await;
}

/// A server (or an impostor) that asks for work connections without
/// ever using them gets at most poolCount + 64 of them pending from frpc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frpc_caps_work_connections_a_server_asks_for() {
    use futures::{SinkExt, StreamExt};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wire::message::{Control, Hello, LoginAccepted, LoginResp, PROTOCOL_VERSION};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let work = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = work.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let mut first = [0u8; 1];
            if tcp.peek(&mut first).await.is_err() {
                continue;
            }
            if first[0] == wire::message::WORK_CONN_MARKER {
                counted.fetch_add(1, Ordering::Relaxed);
                held.push(tcp); // never answered
                continue;
            }
            let mut s = mux::start(
                tcp,
                mux::Mode::Server,
                mux::MuxConfig::new(16),
                tokio_util::sync::CancellationToken::new(),
            );
            let stream = s.incoming.recv().await.expect("control stream");
            let mut ctrl =
                tokio_util::codec::Framed::new(stream, wire::codec::MessageCodec::<Hello>::new());
            let _hello = ctrl.next().await;
            let nonce = wire::auth::new_nonce();
            ctrl.send(Hello::Server {
                version: PROTOCOL_VERSION,
                nonce,
            })
            .await
            .expect("hello");
            let _login = ctrl.next().await;
            let ok = LoginResp {
                result: Ok(LoginAccepted {
                    run_id: "fake".into(),
                    heartbeat_timeout: 0,
                    udp_packet_size: 1500,
                    caps: Vec::new(),
                }),
            };
            ctrl.send(Hello::LoginResp(ok)).await.expect("login");
            let mut ctrl = ctrl.map_codec(|_| wire::codec::MessageCodec::<Control>::new());
            for _ in 0..100 {
                ctrl.send(Control::ReqWorkConn { count: 100_000 })
                    .await
                    .expect("req");
            }
            tokio::spawn(async move {
                let _keep = s;
                while ctrl.next().await.is_some() {}
            });
        }
    });
    let echo = spawn_echo().await;
    let client = TestClient::start(
        addr,
        &format!(
            "transport.tls.enable = false\ntransport.tcpMux = false\n{}",
            tcp_proxy("p", echo, 0)
        ),
    );
    let limit = 64;
    let deadline = std::time::Instant::now() + WAIT;
    while work.load(Ordering::Relaxed) < limit {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} work connections",
            work.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give frpc every chance to open more; it must not.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(work.load(Ordering::Relaxed), limit);
    client.shutdown.cancel();
}
