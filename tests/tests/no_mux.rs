//! `transport.tcpMux = false`: one TCP (TLS) connection per forwarded
//! connection, from a pool frpc opens in advance or on request.

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
