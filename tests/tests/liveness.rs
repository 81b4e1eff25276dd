//! Heartbeat and reconnection, in-process over loopback. The NAT lab
//! (natlab.rs) covers what needs a real middlebox.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "auth.token = \"liveness\"\n";

async fn echo_once(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(msg).await.expect("write");
    s.shutdown().await.expect("shutdown");
    tokio::time::timeout(WAIT, read_all(&mut s))
        .await
        .expect("echo timed out")
}

/// Drains and counts PingSent events so far.
fn pings(client: &mut TestClient) -> (usize, Vec<Event>) {
    let mut n = 0;
    let mut other = Vec::new();
    while let Ok(e) = client.events.try_recv() {
        match e {
            Event::PingSent { .. } => n += 1,
            e => other.push(e),
        }
    }
    (n, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pings_while_bulk_traffic_flows() {
    // A service that sinks what it gets and streams data back at the same time.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let local = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.into_split();
                let sink = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while r.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                });
                let chunk = vec![7u8; 64 * 1024];
                while w.write_all(&chunk).await.is_ok() {}
                let _ = sink.await;
            });
        }
    });
    let server = TestServer::start(TOKEN).await;
    let mut client = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}transport.heartbeatInterval = 1\ntransport.heartbeatTimeout = 10\n{}",
            tcp_proxy("bulk", local, 0)
        ),
    );
    let remote = client.proxy_addr("bulk").await;

    // Idle first: beats must flow, or the zero count below proves nothing.
    let first_beat = tokio::time::timeout(WAIT, async {
        while !matches!(client.events.recv().await, Some(Event::PingSent { .. })) {}
    })
    .await;
    assert!(first_beat.is_ok(), "an idle tunnel sent no ping");
    let user = TcpStream::connect(remote).await.expect("connect");
    let (mut r, mut w) = user.into_split();

    // 30 s of bulk traffic both ways.
    let stop = Arc::new(AtomicBool::new(false));
    let up = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let chunk = vec![1u8; 64 * 1024];
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                w.write_all(&chunk).await.expect("upload");
                sent += chunk.len() as u64;
            }
            sent
        })
    };
    let down = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0u64;
            while !stop.load(Ordering::Relaxed) {
                got += r.read(&mut buf).await.expect("download") as u64;
            }
            got
        })
    };
    // Drop the pings of the idle phase now that traffic flows.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, events) = pings(&mut client);
    assert!(events.is_empty(), "unexpected events: {events:?}");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (during, events) = pings(&mut client);
    stop.store(true, Ordering::Relaxed);
    let (sent, got) = (up.await.expect("up"), down.await.expect("down"));
    assert!(
        sent > 1 << 20 && got > 1 << 20,
        "traffic flowed: up {sent} down {got}"
    );
    assert!(events.is_empty(), "unexpected events: {events:?}");
    assert_eq!(during, 0, "pings sent while bulk traffic flowed");

    // And once idle again, beats resume: the counter is live.
    let resumed = tokio::time::timeout(WAIT, async {
        while !matches!(client.events.recv().await, Some(Event::PingSent { .. })) {}
    })
    .await;
    assert!(resumed.is_ok(), "no ping after the traffic stopped");
    client.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_server_timeout_does_not_cause_drops() {
    // frps reaps after 3 s of silence; frpc is configured to beat every 30 s.
    let server = TestServer::start(&format!("{TOKEN}transport.heartbeatTimeout = 3\n")).await;
    let echo = spawn_echo().await;
    let mut client = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}transport.heartbeatInterval = 30\ntransport.heartbeatTimeout = 90\n{}",
            tcp_proxy("echo", echo, 0)
        ),
    );
    let remote = client.proxy_addr("echo").await;
    // Idle for more than three server timeouts.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (beats, events) = pings(&mut client);
    assert!(events.is_empty(), "session was disturbed: {events:?}");
    assert!(
        beats >= 5,
        "frpc lowered its interval to 1 s, but sent only {beats} pings"
    );
    assert_eq!(echo_once(remote, b"alive").await, b"alive");
    client.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_reconnects_and_reregisters_the_same_port() {
    let server = TestServer::start(TOKEN).await;
    let addr = server.addr;
    let echo = spawn_echo().await;
    let port = closed_port().await.port();
    let mut client = TestClient::start(
        addr,
        &format!(
            "{TOKEN}transport.reconnectInitialDelay = 0.2\ntransport.reconnectMaxDelay = 1\n{}",
            tcp_proxy("echo", echo, port)
        ),
    );
    let first_run_id = loop {
        if let Event::LoggedIn { run_id } = client.next_event().await {
            break run_id;
        }
    };
    assert_eq!(client.proxy_addr("echo").await.port(), port);
    let mut user = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");

    let dir = server.dir.clone();
    server.stop().await;
    // The in-flight user connection is closed, not left hanging.
    let n = tokio::time::timeout(WAIT, user.read(&mut [0u8; 8]))
        .await
        .expect("in-flight connection left open");
    assert!(matches!(n, Ok(0) | Err(_)));

    // A new server on the same address, with the same certificate.
    let listener = TcpListener::bind(addr).await.expect("rebind frps port");
    let restarted = TestServer::start_on(listener, dir, TOKEN);

    let mut lost = false;
    let run_id = loop {
        match client.next_event().await {
            Event::SessionLost { .. } => lost = true,
            Event::LoggedIn { run_id } => break run_id,
            _ => {}
        }
    };
    assert!(lost, "the client never noticed the server went away");
    assert_eq!(run_id, first_run_id, "the client keeps its run id");
    assert_eq!(
        client.proxy_addr("echo").await.port(),
        port,
        "same remote port again"
    );
    assert_eq!(
        echo_once(SocketAddr::from(([127, 0, 0, 1], port)), b"back").await,
        b"back"
    );
    client.stop().await;
    restarted.stop().await;
}

/// A TCP relay between frpc and frps that can stop forwarding without
/// closing anything: a dead link as both ends see it.
struct Blackhole {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
}

impl Blackhole {
    async fn start(target: SocketAddr) -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicBool::new(true));
        let flag = open.clone();
        tokio::spawn(async move {
            while let Ok((a, _)) = listener.accept().await {
                let Ok(b) = TcpStream::connect(target).await else {
                    continue;
                };
                let (ar, aw) = a.into_split();
                let (br, bw) = b.into_split();
                tokio::spawn(pump(ar, bw, flag.clone()));
                tokio::spawn(pump(br, aw, flag.clone()));
            }
        });
        Blackhole { addr, open }
    }
}

/// Copies while the hole is open; once closed, reads and discards forever
/// (keeping the sockets open), like a router that drops everything.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    open: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if open.load(Ordering::Relaxed) && w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if open.load(Ordering::Relaxed) {
        let _ = w.shutdown().await;
    } else {
        // Keep the write half alive: the peer must not see a FIN.
        std::future::pending::<()>().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_link_is_detected_and_the_new_session_replaces_the_old() {
    // frps waits long (30 s); frpc detects the dead link in 2 s and comes
    // back with the same run id while frps still holds the old session.
    let server = TestServer::start(&format!("{TOKEN}transport.heartbeatTimeout = 30\n")).await;
    let hole = Blackhole::start(server.addr).await;
    let echo = spawn_echo().await;
    let port = closed_port().await.port();
    let mut client = TestClient::start(
        hole.addr,
        &format!(
            "{TOKEN}transport.heartbeatInterval = 1\ntransport.heartbeatTimeout = 2\n\
             transport.reconnectInitialDelay = 0.2\n{}",
            tcp_proxy("echo", echo, port)
        ),
    );
    let run_id = loop {
        if let Event::LoggedIn { run_id } = client.next_event().await {
            break run_id;
        }
    };
    client.proxy_addr("echo").await;
    let remote = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(echo_once(remote, b"before").await, b"before");

    // Cut the existing connection silently; new connections pass again.
    hole.open.store(false, Ordering::Relaxed);
    let reason = loop {
        if let Event::SessionLost { reason } = client.next_event().await {
            break reason;
        }
    };
    assert!(reason.contains("declared dead"), "{reason}");
    hole.open.store(true, Ordering::Relaxed);

    // The reconnect replaces the old session at once: same id, same port,
    // no "port already in use" even though frps has not reaped the old one.
    loop {
        match client.next_event().await {
            Event::LoggedIn { run_id: r } => assert_eq!(r, run_id),
            Event::ProxyStarted { remote_addr, .. } => {
                assert!(remote_addr.ends_with(&format!(":{port}")), "{remote_addr}");
                break;
            }
            Event::ProxyFailed { error, .. } => panic!("re-registration failed: {error}"),
            _ => {}
        }
    }
    assert_eq!(echo_once(remote, b"after").await, b"after");
    client.stop().await;
    server.stop().await;
}

/// A session replaced by a reconnect (same user, same run id) has released
/// its proxy names and ports before the new session registers them again,
/// however fast the client re-registers. Repeated, because the old session
/// used to be waited for only until its connections ended, which could be
/// before it released its names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_session_frees_its_names_before_the_new_one_registers() {
    use e2e::raw::{self, LoginOutcome, Raw};
    use wire::message::Control;
    let server = TestServer::start("auth.token = \"replace\"\n").await;
    let mut conns = Vec::new();
    for round in 0..30 {
        let mut c = Raw::new(raw::connect_plain(server.addr).await);
        let out = c.login("replace", "u", "same-run", true).await;
        assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
        c.new_proxy("p", 0).await.expect("register");
        match tokio::time::timeout(WAIT, c.next_message()).await {
            Ok(Ok(Some(Control::NewProxyResp(r)))) => {
                assert!(r.result.is_ok(), "round {round}: {r:?}")
            }
            other => panic!("round {round}: {other:?}"),
        }
        // Kept open: the next round replaces it rather than it going away.
        conns.push(c);
    }
    server.stop().await;
}
