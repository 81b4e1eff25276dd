//! Byte counters per proxy and per client are live: readable, and right,
//! while the connection they count is still open.

use e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_while_the_connection_is_open() {
    let echo = spawn_echo().await;
    let server = TestServer::start("").await;
    let mut client = TestClient::start(server.addr, &tcp_proxy("e", echo, 0));
    let public = client.proxy_addr("e").await;
    let mut user = TcpStream::connect(public).await.expect("connect");
    let data = pattern(100_000, 7);
    user.write_all(&data).await.expect("write");
    let mut back = vec![0u8; data.len()];
    user.read_exact(&mut back).await.expect("echo");
    assert_eq!(back, data);
    // The connection is still open: the figures are there. (The relay adds
    // to them just after each write, so the user may read the echo a
    // moment before they include it: wait for them, while still open.)
    let want = data.len() as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.stats.proxies()[0].traffic.out_of_tunnel < want
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let p = &server.stats.proxies()[0];
    assert_eq!((p.name.as_str(), p.kind.as_str()), ("e", "tcp"));
    assert_eq!(p.traffic.into_tunnel, data.len() as u64, "{p:?}");
    assert_eq!(p.traffic.out_of_tunnel, data.len() as u64, "{p:?}");
    assert_eq!(p.traffic.open, 1, "{p:?}");
    let c = &server.stats.clients()[0];
    assert_eq!(c.traffic.into_tunnel, data.len() as u64, "{c:?}");
    drop(user);
    client.stop().await;
    server.stop().await;
}
