//! Attacks on a public frps, each against the real frps binary
//! (so descriptors and memory are its own, read from /proc): connections
//! that never log in, reply floods, a client that stops reading, stalled
//! public users, run-id takeover, a non-multiplexed client that sends no
//! work connections, and log injection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::raw::{self, LoginOutcome, Raw};
use e2e::*;
use mux::frame::{Kind, SYN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::message::{Control, Hello, Ping, WorkHeader};

const TOKEN: &str = "hardening-secret";

fn frps(dir: &std::path::Path, extra: &str) -> (Proc, SocketAddr) {
    let (p, port) = spawn_frps(dir, &format!("auth.token = \"{TOKEN}\"\n{extra}"));
    (p, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Polls `f` until it holds, failing after [`WAIT`].
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a connection does before it is supposed to be closed.
#[derive(Clone, Copy, Debug)]
enum PreLogin {
    SynPing,
    OpenStreamSilently,
    MalformedHello,
    HelloThenSilence,
    WrongToken,
}

async fn pre_login(mut r: Raw, what: PreLogin) -> Raw {
    match what {
        PreLogin::SynPing => r.send(&raw::header(Kind::Ping, SYN, 0, 7)).await,
        PreLogin::OpenStreamSilently => r.send(&raw::header(Kind::WindowUpdate, SYN, 1, 0)).await,
        PreLogin::MalformedHello => {
            let mut f = raw::header(Kind::Data, SYN, 1, 6).to_vec();
            f.extend_from_slice(b"\x00\x04junk");
            r.send(&f).await
        }
        PreLogin::HelloThenSilence => {
            let hello = Hello::Client {
                version: wire::message::PROTOCOL_VERSION,
            };
            r.send_message(SYN, &hello).await
        }
        PreLogin::WrongToken => {
            let out = r.login("not-the-token", "u", "", false).await;
            assert!(!matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
            Ok(())
        }
    }
    .expect("send");
    r
}

/// Whatever a connection does short of logging in, it is closed by
/// loginTimeout, over plain TCP and TLS, and frps's descriptors come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_closed_by_the_login_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, addr) = frps(
        dir.path(),
        "transport.loginTimeout = 1\ntransport.maxPendingLogins = 64\n",
    );
    let pid = p.child.id();
    // One full TLS login first, so lazily opened files are open already.
    let mut warm = Raw::new(raw::connect_tls(addr).await);
    warm.send(&raw::header(Kind::Ping, SYN, 0, 1))
        .await
        .expect("send");
    assert!(warm.closed_within(WAIT).await);
    let mut before = 0;
    eventually("frps settles", || {
        before = raw::fd_count(pid);
        before > 0
    })
    .await;

    let kinds = [
        PreLogin::SynPing,
        PreLogin::OpenStreamSilently,
        PreLogin::MalformedHello,
        PreLogin::HelloThenSilence,
        PreLogin::WrongToken,
    ];
    let mut tasks = Vec::new();
    for tls in [false, true] {
        for what in kinds {
            for _ in 0..3 {
                tasks.push(tokio::spawn(async move {
                    let io = if tls {
                        raw::connect_tls(addr).await
                    } else {
                        raw::connect_plain(addr).await
                    };
                    let mut r = pre_login(Raw::new(io), what).await;
                    // Keeps reading (so pings would be answered) until closed.
                    assert!(
                        r.closed_within(WAIT).await,
                        "{what:?} over tls={tls} still open"
                    );
                }));
            }
        }
    }
    for t in tasks {
        t.await.expect("connection task");
    }
    eventually("frps's descriptors return to where they were", || {
        raw::fd_count(pid) <= before
    })
    .await;
}

/// Floods of replies-provoking frames from connections that never read,
/// before and after login, keep frps's memory within a fixed bound (here
/// 24 MiB over its idle size, for 10 flooding connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_floods_without_reading_keep_memory_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, addr) = frps(dir.path(), "transport.loginTimeout = 60\n");
    let pid = p.child.id();
    let idle = raw::rss_kib(pid);
    let pings = raw::pings(100_000);
    let mut floods = Vec::new();
    for logged_in in [
        false, false, false, false, false, false, false, false, true, true,
    ] {
        let pings = pings.clone();
        floods.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            socket2::SockRef::from(&tcp)
                .set_recv_buffer_size(4096)
                .expect("rcvbuf");
            let mut r = Raw::new(Box::new(tcp));
            if logged_in {
                let out = r.login(TOKEN, "flood", "", true).await;
                assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
            }
            // 12 MB of pings each, never reading a reply.
            for _ in 0..10 {
                r.io.write_all(&pings).await.expect("flood is read");
            }
            r
        }));
    }
    let mut held = Vec::new();
    for f in floods {
        held.push(f.await.expect("flood"));
    }
    let grown = raw::rss_kib(pid).saturating_sub(idle);
    assert!(
        grown < 24 * 1024,
        "frps grew by {grown} KiB under reply floods"
    );
    drop(held);
}

/// A logged-in client that stops granting window on its control stream
/// and floods registrations cannot freeze its control loop: the session is
/// ended (and so reaped), and frps keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_its_control_stream_is_ended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_p, addr) = frps(dir.path(), "transport.heartbeatTimeout = 3\n");
    let mut r = Raw::new(raw::connect_plain(addr).await);
    let out = r.login(TOKEN, "staller", "", true).await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
    // Answers of ~2 KB each, never credited: the 256 KiB window the client
    // grants and then frps's answer queue fill. The client itself stays
    // within the window frps grants it (it reads frps's window updates).
    let name = "n".repeat(2000);
    let request = raw::message_frame(
        raw::CONTROL,
        0,
        &Control::NewProxy(wire::message::NewProxy {
            name: name.clone(),
            spec: wire::message::ProxySpec::Tcp(wire::message::TcpSpec { remote_port: 0 }),
            opts: Default::default(),
        }),
    );
    let mut credit: usize = mux::frame::DEFAULT_WINDOW as usize - 4096;
    for _ in 0..400 {
        while credit < request.len() {
            // Wait for frps to grant more; a stalled frps grants none.
            match tokio::time::timeout(Duration::from_secs(3), r.next_frame()).await {
                Ok(Ok(Some((h, _)))) if h.kind == Kind::WindowUpdate && h.id == raw::CONTROL => {
                    credit += h.len as usize
                }
                Ok(Ok(Some(_))) => {}
                _ => break,
            }
        }
        if credit < request.len() || r.send(&request).await.is_err() {
            break;
        }
        credit -= request.len();
    }
    // Client-opened streams (frps takes none after login): each is reset.
    let mut syns = Vec::new();
    for i in 0..200u32 {
        syns.extend(raw::header(Kind::WindowUpdate, SYN, 3 + 2 * i, 0));
    }
    // (The session may be ended already.)
    let _ = r.send(&syns).await;
    assert!(
        r.closed_within(WAIT).await,
        "the stalled session was never ended"
    );

    let mut other = Raw::new(raw::connect_plain(addr).await);
    let out = other.login(TOKEN, "someone-else", "", true).await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
}

/// A local service that sends as fast as it is read, forever.
async fn spawn_firehose() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let chunk = vec![7u8; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addr
}

/// Public users that never read cost frps at most their streams'
/// windows, and all of them together at most `transport.maxBufferMB`;
/// users beyond it are refused, and the budget comes back when they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_public_users_stay_within_the_buffer_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut p, addr) = frps(dir.path(), "transport.maxBufferMB = 16\n");
    let pid = p.child.id();
    let firehose = spawn_firehose().await;
    let mut c = spawn_frpc(
        dir.path(),
        addr.port(),
        &format!(
            "auth.token = \"{TOKEN}\"\n{}",
            tcp_proxy("hose", firehose, 0)
        ),
    );
    let port = port_from_line(&c.wait_line("proxy started", WAIT));
    let public = SocketAddr::from(([127, 0, 0, 1], port));
    let idle = raw::rss_kib(pid);

    // 100 users that read nothing, with small receive buffers so the data
    // piles up in frps, not in their kernels.
    let mut users = Vec::new();
    for _ in 0..100 {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.set_recv_buffer_size(4096).expect("rcvbuf");
        users.push(s.connect(public).await.expect("connect"));
    }
    p.wait_line("receive buffer budget exhausted", WAIT);
    // Let the tunnel fill every window it was given.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = raw::rss_kib(pid).saturating_sub(idle);
    assert!(
        grown < (16 + 8) * 1024,
        "frps grew by {grown} KiB with a 16 MiB buffer budget"
    );
    drop(users);

    // The budget is free again: a new user is served.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = TcpStream::connect(public).await.expect("connect");
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            if n > 0 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no user served after the stalled ones left"
        );
    }
    drop(c.child.kill());
}

/// A token holder presenting another user's run id gets a session of
/// its own; the other user's session is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_id_of_another_user_replaces_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_p, addr) = frps(dir.path(), "");
    let mut alice = Raw::new(raw::connect_plain(addr).await);
    let out = alice.login(TOKEN, "alice", "shared-run-id", true).await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
    let mut mallory = Raw::new(raw::connect_plain(addr).await);
    let out = mallory.login(TOKEN, "mallory", "shared-run-id", true).await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
    // A registration is answered only once mallory's session is in place
    // (and any session it replaced is gone).
    mallory.new_proxy("m", 0).await.expect("register");
    match tokio::time::timeout(WAIT, mallory.next_message()).await {
        Ok(Ok(Some(Control::NewProxyResp(r)))) => assert!(r.result.is_ok(), "{r:?}"),
        other => panic!("{other:?}"),
    }
    // Alice's session still answers.
    let ping = Control::Ping(Ping {
        seq: 9,
        proxies: 0,
        bytes_in: 0,
        bytes_out: 0,
        rtt_us: 0,
    });
    alice.send_message(0, &ping).await.expect("ping");
    match tokio::time::timeout(WAIT, alice.next_message()).await {
        Ok(Ok(Some(Control::Pong(p)))) => assert_eq!(p.seq, 9),
        other => panic!("alice's session was taken over: {other:?}"),
    }
    // The same user reconnecting with its run id still replaces its session.
    let mut alice2 = Raw::new(raw::connect_plain(addr).await);
    let out = alice2.login(TOKEN, "alice", "shared-run-id", true).await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
    assert!(
        alice.closed_within(WAIT).await,
        "old session of alice replaced"
    );
}

/// With tcpMux = false, user connections wait for work connections side
/// by side: a second one asks for its work connection while the first is
/// still waiting, and both are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_multiplexed_user_connections_wait_side_by_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_p, addr) = frps(dir.path(), "");
    let mut ctl = Raw::new(raw::connect_plain(addr).await);
    let run_id = match ctl.login(TOKEN, "pool", "pool-run", false).await {
        LoginOutcome::Accepted { run_id } => run_id,
        other => panic!("{other:?}"),
    };
    ctl.new_proxy("p", 0).await.expect("register");
    let port = match ctl.next_message().await {
        Ok(Some(Control::NewProxyResp(r))) => port_of(&r.result.expect("proxy")),
        other => panic!("{other:?}"),
    };
    let public = SocketAddr::from(([127, 0, 0, 1], port));
    let mut first = TcpStream::connect(public).await.expect("user 1");
    expect_req_work_conn(&mut ctl).await;
    let mut second = TcpStream::connect(public).await.expect("user 2");
    expect_req_work_conn(&mut ctl).await;
    // The first is still waiting (not timed out) when the second asks.
    let mut probe = [0u8; 1];
    assert!(
        matches!(first.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "user 1 gave up before user 2 asked"
    );
    for _ in 0..2 {
        let mut w = raw::work_conn(addr, TOKEN, "pool", &run_id).await;
        match net::framed::read_message(&mut w).await {
            Ok(Some(WorkHeader::Start(_))) => {}
            other => panic!("{other:?}"),
        }
        w.write_all(b"hi").await.expect("write");
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = w.read_to_end(&mut sink).await;
        });
    }
    for user in [&mut first, &mut second] {
        let mut got = [0u8; 2];
        tokio::time::timeout(WAIT, user.read_exact(&mut got))
            .await
            .expect("served")
            .expect("read");
        assert_eq!(&got, b"hi");
    }
}

/// `userConnTimeout` (frp's key): a user connection nobody delivers a work
/// connection for is closed after that long, and frps says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_conn_timeout_closes_an_unserved_user_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut frps, addr) = frps(dir.path(), "userConnTimeout = 1\n");
    let mut ctl = Raw::new(raw::connect_plain(addr).await);
    match ctl.login(TOKEN, "slow", "slow-run", false).await {
        LoginOutcome::Accepted { .. } => {}
        other => panic!("{other:?}"),
    }
    ctl.new_proxy("p", 0).await.expect("register");
    let port = match ctl.next_message().await {
        Ok(Some(Control::NewProxyResp(r))) => port_of(&r.result.expect("proxy")),
        other => panic!("{other:?}"),
    };
    let mut user = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("user");
    expect_req_work_conn(&mut ctl).await;
    let mut probe = [0u8; 1];
    let closed = tokio::time::timeout(WAIT, user.read(&mut probe)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let said = tokio::task::spawn_blocking(move || {
        frps.wait_line("no work connection within 1s (userConnTimeout)", WAIT)
    })
    .await
    .expect("log");
    assert!(said.contains("WARN"), "{said}");
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

async fn expect_req_work_conn(ctl: &mut Raw) {
    match tokio::time::timeout(WAIT, ctl.next_message()).await {
        Ok(Ok(Some(Control::ReqWorkConn { .. }))) => {}
        other => panic!("expected ReqWorkConn, got {other:?}"),
    }
}

/// Newlines and escape sequences in peer-supplied strings do not reach
/// frps's log raw, before login or after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_strings_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut p, addr) = frps(dir.path(), "");
    let forged = "x\n2026-01-01T00:00:00.000000Z  INFO client logged in FORGED";
    let mut r = Raw::new(raw::connect_plain(addr).await);
    let out = r.login_as("wrong", "u\x1b[31mred", "", forged, true).await;
    assert!(matches!(out, LoginOutcome::Rejected(_)), "{out:?}");
    p.wait_line("login rejected: invalid token", WAIT);
    let mut r = Raw::new(raw::connect_plain(addr).await);
    let out = r.login_as(TOKEN, "u", "", forged, true).await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
    r.new_proxy("evil\nINFO FORGED proxy", 0)
        .await
        .expect("register");
    p.wait_line("proxy started", WAIT);
    let log = p.output();
    assert!(!log.contains('\x1b'), "raw ESC in the log:\n{log}");
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-01-01") && !line.starts_with("INFO FORGED"),
            "forged line: {line:?}\n{log}"
        );
    }
}

/// A protocol error before login is logged, even from a peer that
/// does not read (its goodbye cannot be delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_before_login_are_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut p, addr) = frps(dir.path(), "");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    socket2::SockRef::from(&tcp)
        .set_recv_buffer_size(4096)
        .expect("rcvbuf");
    let mut r = Raw::new(Box::new(tcp));
    for _ in 0..4 {
        r.io.write_all(&raw::pings(100_000)).await.expect("pings");
    }
    let mut bad = raw::header(Kind::Data, 0, 0, 0);
    bad[1] = 9;
    r.send(&bad).await.expect("bad frame");
    let line = p.wait_line("unknown yamux frame type 9", WAIT);
    assert!(line.contains("WARN"), "{line}");
    drop(r);
}

/// Guessing the token from one address: the first three wrong proofs are
/// answered at once, each after them waits longer (250 ms, 500 ms, …), and
/// `/metrics` counts those waits; the right token from the same address
/// still logs in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_from_one_address_wait_longer_each_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let (_p, addr) = frps(
        dir.path(),
        &format!(
            "webServer.port = {web}\nwebServer.addr = \"127.0.0.1\"\nenablePrometheus = true\n"
        ),
    );
    let mut answered_in = Vec::new();
    for _ in 0..6 {
        let mut r = Raw::new(raw::connect_plain(addr).await);
        let started = Instant::now();
        let out = r.login("a-guess", "u", "", true).await;
        assert!(matches!(out, LoginOutcome::Rejected(_)), "{out:?}");
        answered_in.push(started.elapsed());
    }
    // Lower bounds only: a slow machine makes them longer, never shorter.
    assert!(
        answered_in[3] >= Duration::from_millis(250),
        "{answered_in:?}"
    );
    assert!(
        answered_in[5] >= Duration::from_millis(1000),
        "{answered_in:?}"
    );
    let mut r = Raw::new(raw::connect_plain(addr).await);
    let out = r.login(TOKEN, "u", "", true).await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
    let metrics = tokio::task::spawn_blocking(move || {
        e2e::web::prometheus_samples(&e2e::web::curl(web, &[], "/metrics").1)
    })
    .await
    .expect("metrics");
    for want in [
        "frp_server_login_failures_delayed_total{} 3.0",
        "frp_server_login_failing_addresses{} 1.0",
        "frp_server_login_failures_total{reason=invalid_token} 6.0",
    ] {
        assert!(metrics.contains(want), "{want} not in\n{metrics}");
    }
}

/// Silent connections holding every pending-login slot (here 16 from one
/// address, with a 60 s login deadline) lock a client out only for the
/// first 2 s: after that a newcomer takes the oldest slot, and the client
/// logs in. A newcomer while all are young is refused; `/metrics` counts
/// both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_holding_every_login_slot_make_way_for_a_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let (_p, addr) = frps(
        dir.path(),
        &format!(
            "transport.loginTimeout = 60\ntransport.maxPendingLogins = 16\n\
             webServer.port = {web}\nwebServer.addr = \"127.0.0.1\"\nenablePrometheus = true\n"
        ),
    );
    let pending = move || {
        let text = e2e::web::curl(web, &[], "/metrics").1;
        text.lines()
            .find_map(|l| l.strip_prefix("frp_server_pending_logins "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    let mut silent = Vec::new();
    for n in 1..=16 {
        silent.push(Raw::new(raw::connect_plain(addr).await));
        // Each is taken in before the next is opened (a loaded frps could
        // accept them in another order), so the first is the oldest.
        let want = f64::from(n);
        eventually("frps holds the connection", || pending() == want).await;
    }
    let mut young = Raw::new(raw::connect_plain(addr).await);
    assert!(
        young.closed_within(WAIT).await,
        "refused while all are young"
    );

    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let mut r = Raw::new(raw::connect_plain(addr).await);
    let out = r.login(TOKEN, "u", "", true).await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
    // The oldest frps accepted gives way: under load, frps may have
    // accepted them in another order than they were opened, so which one
    // it is is not asserted, only that exactly one does.
    let deadline = Instant::now() + WAIT;
    let gave_way = loop {
        let mut gone = None;
        for (i, s) in silent.iter_mut().enumerate() {
            if s.closed_within(Duration::from_millis(10)).await {
                gone = Some(i);
                break;
            }
        }
        match gone {
            Some(i) => break i,
            None => assert!(Instant::now() < deadline, "none gave way"),
        }
    };
    for (i, s) in silent.iter_mut().enumerate() {
        if i != gave_way {
            assert!(
                !s.closed_within(Duration::from_millis(20)).await,
                "only one gave way"
            );
        }
    }
    let metrics = tokio::task::spawn_blocking(move || {
        e2e::web::prometheus_samples(&e2e::web::curl(web, &[], "/metrics").1)
    })
    .await
    .expect("metrics");
    for want in [
        "frp_server_pending_logins_closed_total{why=taken} 1.0",
        "frp_server_pending_logins_closed_total{why=refused} 1.0",
        "frp_server_pending_logins{} 15.0",
    ] {
        assert!(metrics.contains(want), "{want} not in\n{metrics}");
    }
}

/// A login may carry at most 64 capabilities of at most 32 bytes: more is
/// refused and said, and what frps keeps of a client stays bounded. A
/// client offering a version newer than frps's is answered in frps's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_bounded_and_a_newer_client_is_answered_in_our_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_p, addr) = frps(dir.path(), "");
    for caps in [
        vec!["x".to_owned(); wire::caps::MAX_CAPS + 1],
        vec!["x".repeat(wire::caps::MAX_CAP_LEN + 1)],
    ] {
        let mut r = Raw::new(raw::connect_plain(addr).await);
        let out = r.login_with(TOKEN, |l| l.caps = caps).await;
        let LoginOutcome::Rejected(why) = out else {
            panic!("{out:?}");
        };
        assert!(why.contains("capabilities: at most 64"), "{why}");
    }
    let mut r = Raw::new(raw::connect_plain(addr).await);
    let out = r
        .login_with(TOKEN, |l| l.caps = vec!["y".repeat(32); 64])
        .await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");

    let mut r = Raw::new(raw::connect_plain(addr).await);
    let newer = Hello::Client { version: 900 };
    r.send_message(SYN, &newer).await.expect("send");
    let answer: Option<Hello> = r.next_message().await.expect("answer");
    assert!(
        matches!(answer, Some(Hello::Server { version, .. }) if version == wire::message::PROTOCOL_VERSION),
        "{answer:?}"
    );
}

/// A proxy's metadatas and annotations are bounded as a login's
/// metadatas are: a registration beyond is refused with that said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_labels_beyond_their_bounds_are_refused() {
    use wire::message::{NewProxy, ProxyOpts, ProxySpec, TcpSpec, MAX_METAS, MAX_META_LEN};
    let dir = tempfile::tempdir().expect("tempdir");
    let (_p, addr) = frps(dir.path(), "");
    let mut r = Raw::new(raw::connect_plain(addr).await);
    let out = r.login(TOKEN, "u", "", true).await;
    assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
    let many: Vec<(String, String)> = (0..=MAX_METAS)
        .map(|i| (i.to_string(), "v".into()))
        .collect();
    let long = vec![("k".to_owned(), "v".repeat(MAX_META_LEN + 1))];
    let cases = [
        (
            "many-metas",
            ProxyOpts {
                metas: many.clone(),
                ..ProxyOpts::default()
            },
        ),
        (
            "long-annotation",
            ProxyOpts {
                annotations: long,
                ..ProxyOpts::default()
            },
        ),
        (
            "fine",
            ProxyOpts {
                annotations: many[..MAX_METAS].to_vec(),
                ..ProxyOpts::default()
            },
        ),
    ];
    for (name, opts) in cases {
        let msg = Control::NewProxy(NewProxy {
            name: name.into(),
            spec: ProxySpec::Tcp(TcpSpec { remote_port: 0 }),
            opts,
        });
        r.send_message(0, &msg).await.expect("send");
        let answer = loop {
            match r.next_message::<Control>().await.expect("read") {
                Some(Control::NewProxyResp(a)) => break a,
                Some(_) => continue,
                None => panic!("closed"),
            }
        };
        match name {
            "fine" => assert!(answer.result.is_ok(), "{answer:?}"),
            _ => {
                let err = answer.result.expect_err(name).to_string();
                assert!(
                    err.contains("at most 32 entries of at most 256 bytes"),
                    "{err}"
                );
            }
        }
    }
}
