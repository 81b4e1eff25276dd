//! A stateful property test of frps's pre-login path: any sequence of
//! frames, control messages and junk from connections that never log in
//! ends with every socket closed by the login deadline, frps's descriptors
//! back where they were and its memory within a bound — and a real login
//! still works afterwards.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::raw::{self, LoginOutcome, Raw};
use e2e::*;
use mux::frame::Kind;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use wire::message::{
    Control, Hello, Login, NewProxy, NewWorkConn, Ping, ProxyOpts, ProxySpec, TcpSpec,
};

const TOKEN: &str = "prelogin-secret";

#[derive(Debug, Clone)]
enum Step {
    Frame {
        kind: u8,
        flags: u16,
        id: u32,
        len: u32,
    },
    Data {
        id: u32,
        flags: u16,
        body: Vec<u8>,
    },
    Message(u8, String),
    Garbage(Vec<u8>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..5, 0u16..16, 0u32..8, 0u32..300_000).prop_map(|(kind, flags, id, len)| Step::Frame {
            kind,
            flags,
            id,
            len
        }),
        (
            0u32..6,
            0u16..16,
            proptest::collection::vec(any::<u8>(), 0..600)
        )
            .prop_map(|(id, flags, body)| Step::Data { id, flags, body }),
        (0u8..6, "[a-z\n\x1b]{0,40}").prop_map(|(k, s)| Step::Message(k, s)),
        proptest::collection::vec(any::<u8>(), 1..200).prop_map(Step::Garbage),
    ]
}

/// One frame of a message of any channel (sent where it may not belong).
fn message(k: u8, s: &str) -> bytes::BytesMut {
    let mut b = bytes::BytesMut::new();
    let hello = |m: Hello, b: &mut bytes::BytesMut| wire::codec::encode(&m, b);
    let control = |m: Control, b: &mut bytes::BytesMut| wire::codec::encode(&m, b);
    match k {
        0 => hello(
            Hello::Client {
                version: wire::message::PROTOCOL_VERSION,
            },
            &mut b,
        ),
        1 => hello(Hello::Client { version: 999 }, &mut b),
        2 => hello(
            Hello::Login(Login {
                version: wire::message::PROTOCOL_VERSION,
                hostname: s.into(),
                os: s.into(),
                arch: s.into(),
                user: s.into(),
                run_id: s.into(),
                proof: [7; 32],
                tcp_mux: s.len() % 2 == 0,
                client_id: s.into(),
                metas: [(s.to_owned(), s.to_owned())].into(),
                caps: vec![s.into()],
            }),
            &mut b,
        ),
        3 => control(
            Control::NewProxy(NewProxy {
                name: s.into(),
                spec: ProxySpec::Tcp(TcpSpec { remote_port: 0 }),
                opts: ProxyOpts::default(),
            }),
            &mut b,
        ),
        4 => hello(
            Hello::NewWorkConn(NewWorkConn {
                run_id: s.into(),
                user: s.into(),
                proof: [0; 32],
            }),
            &mut b,
        ),
        _ => control(
            Control::Ping(Ping {
                seq: 1,
                proxies: 0,
                bytes_in: 0,
                bytes_out: 0,
                rtt_us: 0,
            }),
            &mut b,
        ),
    }
    .expect("encode");
    b
}

fn encode(work_conn: bool, steps: &[Step]) -> Vec<u8> {
    let mut out = Vec::new();
    if work_conn {
        out.push(wire::message::WORK_CONN_MARKER);
    }
    for s in steps {
        match s {
            Step::Frame {
                kind,
                flags,
                id,
                len,
            } => {
                let mut h = raw::header(Kind::Data, *flags, *id, *len);
                h[1] = *kind;
                out.extend_from_slice(&h);
            }
            Step::Data { id, flags, body } => {
                out.extend_from_slice(&raw::header(Kind::Data, *flags, *id, body.len() as u32));
                out.extend_from_slice(body);
            }
            Step::Message(k, s) if work_conn => out.extend_from_slice(&message(*k, s)),
            Step::Message(k, s) => {
                let body = message(*k, s);
                out.extend_from_slice(&raw::header(Kind::Data, 0, raw::CONTROL, body.len() as u32));
                out.extend_from_slice(&body);
            }
            Step::Garbage(g) => out.extend_from_slice(g),
        }
    }
    out
}

async fn run_scripts(addr: SocketAddr, scripts: Vec<(bool, bool, Vec<Step>)>) {
    let mut tasks = Vec::new();
    for (tls, work_conn, steps) in scripts {
        let bytes = encode(work_conn, &steps);
        tasks.push(tokio::spawn(async move {
            let io = if tls {
                raw::connect_tls(addr).await
            } else {
                raw::connect_plain(addr).await
            };
            let mut r = Raw::new(io);
            // The server may close while we still write: that is fine.
            let _ = r.send(&bytes).await;
            assert!(r.closed_within(WAIT).await, "still open: {steps:?}");
        }));
    }
    for t in tasks {
        t.await.expect("script");
    }
}

#[test]
fn any_pre_login_sequence_ends_closed_by_the_deadline() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, port) = spawn_frps(
        dir.path(),
        &format!("auth.token = \"{TOKEN}\"\ntransport.loginTimeout = 1\n"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let pid = p.child.id();
    rt.block_on(run_scripts(addr, vec![(true, false, vec![])]));
    let fds = raw::fd_count(pid);
    let rss = raw::rss_kib(pid);

    let script = (
        prop_oneof![4 => Just(false), 1 => Just(true)],
        prop_oneof![5 => Just(false), 1 => Just(true)],
        proptest::collection::vec(step(), 0..12),
    );
    let mut runner = TestRunner::new(Config {
        cases: 6,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(script, 1..12), |scripts| {
            rt.block_on(run_scripts(addr, scripts));
            let deadline = Instant::now() + WAIT;
            while raw::fd_count(pid) > fds {
                prop_assert!(Instant::now() < deadline, "descriptors not released");
                std::thread::sleep(Duration::from_millis(50));
            }
            let grown = raw::rss_kib(pid).saturating_sub(rss);
            prop_assert!(grown < 32 * 1024, "frps grew by {} KiB", grown);
            Ok(())
        })
        .expect("property");

    // And a real client still gets in.
    rt.block_on(async {
        let mut r = Raw::new(raw::connect_plain(addr).await);
        let out = r.login(TOKEN, "after", "", true).await;
        assert!(matches!(out, LoginOutcome::Accepted { .. }), "{out:?}");
    });
}
