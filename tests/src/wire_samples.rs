//! One sample of every message of the wire protocol, by name and version:
//! what `examples/wire_fixtures.rs` writes to `tests/fixtures/wire/v<N>/`
//! for the protocol version this code speaks, and what
//! `tests/wire_fixtures.rs` expects each version's bytes to decode to (a
//! field a version did not have is its default).
//!
//! A login's proof is [`PROOF_MARK`] in the fixture, so a client replaying
//! the recorded bytes (`tests/old_client.rs`) can put a real one in its
//! place without encoding anything itself.

use std::net::SocketAddr;

use wire::message::*;

/// The 32 bytes a recorded login carries where the proof goes.
pub const PROOF_MARK: [u8; 32] = [0xa5; 32];

/// A sample of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sample {
    Hello(Hello),
    Control(Control),
    Work(WorkHeader),
    /// The head of a visitor's stream (version 6).
    Visit(Visit),
    /// An xtcp rendezvous message (version 6).
    Rendezvous(Rendezvous),
    /// A UDP datagram frame (`wire::udp`): the user's address and payload.
    Udp(SocketAddr, Vec<u8>),
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn login(version: u16) -> Login {
    // Protocol 4 added clientID and metadatas.
    let metas = if version >= 4 {
        [("rack".to_owned(), "12".to_owned())].into()
    } else {
        Default::default()
    };
    Login {
        version,
        hostname: "fixture-host".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        user: "fixture".into(),
        run_id: String::new(),
        proof: PROOF_MARK,
        tcp_mux: true,
        client_id: String::new(),
        metas,
        caps: caps(version),
    }
}

/// Protocol 5 added a proxy's annotations.
fn annotations(version: u16) -> Vec<(String, String)> {
    if version >= 5 {
        vec![("frp.io/owner".into(), "fixture team".into())]
    } else {
        Vec::new()
    }
}

/// Protocol 5 added capability sets.
fn caps(version: u16) -> Vec<String> {
    if version >= 5 {
        vec![
            "proxy.tcp".into(),
            "proxy.http".into(),
            "later.thing".into(),
        ]
    } else {
        Vec::new()
    }
}

fn proxy(name: &str, spec: ProxySpec) -> Control {
    Control::NewProxy(NewProxy {
        name: name.into(),
        spec,
        opts: ProxyOpts::default(),
    })
}

fn http_spec() -> HttpSpec {
    HttpSpec {
        custom_domains: vec!["fixture.example.test".into()],
        subdomain: String::new(),
        locations: vec!["/".into()],
        http_user: String::new(),
        http_password: String::new(),
        host_header_rewrite: String::new(),
        request_headers: vec![("x-from".into(), "fixture".into())],
        response_headers: vec![],
        route_by_http_user: String::new(),
    }
}

fn hellos(version: u16) -> Vec<(&'static str, Sample)> {
    let resp = |result| Sample::Hello(Hello::LoginResp(LoginResp { result }));
    vec![
        ("hello-client", Sample::Hello(Hello::Client { version })),
        (
            "hello-server",
            Sample::Hello(Hello::Server {
                version,
                nonce: [7; NONCE_LEN],
            }),
        ),
        ("hello-login", Sample::Hello(Hello::Login(login(version)))),
        (
            "hello-login-resp-accepted",
            resp(Ok(LoginAccepted {
                run_id: "0123456789abcdef".into(),
                heartbeat_timeout: 90,
                udp_packet_size: 1500,
                caps: caps(version),
            })),
        ),
        (
            "hello-login-resp-invalid-token",
            resp(Err(LoginError::InvalidToken)),
        ),
        (
            "hello-login-resp-version-mismatch",
            resp(Err(LoginError::VersionMismatch {
                client: version + 1,
                server: version,
            })),
        ),
        (
            "hello-login-resp-other",
            resp(Err(LoginError::Other("refused".into()))),
        ),
        (
            "hello-new-work-conn",
            Sample::Hello(Hello::NewWorkConn(NewWorkConn {
                run_id: "0123456789abcdef".into(),
                user: "fixture".into(),
                proof: PROOF_MARK,
            })),
        ),
    ]
}

fn controls(version: u16) -> Vec<(&'static str, Sample)> {
    let c = Sample::Control;
    let answer = |result| {
        c(Control::NewProxyResp(NewProxyResp {
            name: "fixture-tcp".into(),
            result,
        }))
    };
    vec![
        (
            "control-new-proxy-tcp",
            c(proxy(
                "fixture-tcp",
                ProxySpec::Tcp(TcpSpec { remote_port: 0 }),
            )),
        ),
        (
            "control-new-proxy-udp",
            c(proxy(
                "fixture-udp",
                ProxySpec::Udp(UdpSpec { remote_port: 0 }),
            )),
        ),
        (
            "control-new-proxy-http",
            c(proxy("fixture-http", ProxySpec::Http(http_spec()))),
        ),
        (
            "control-new-proxy-https",
            c(proxy(
                "fixture-https",
                ProxySpec::Https(HttpsSpec {
                    custom_domains: vec![],
                    subdomain: "fixture".into(),
                }),
            )),
        ),
        (
            "control-new-proxy-tcpmux",
            c(Control::NewProxy(NewProxy {
                name: "fixture-tcpmux".into(),
                spec: ProxySpec::Tcpmux(TcpmuxSpec {
                    custom_domains: vec!["mux.example.test".into()],
                    subdomain: String::new(),
                    http_user: "u".into(),
                    http_password: "p".into(),
                    route_by_http_user: String::new(),
                }),
                opts: ProxyOpts {
                    group: "g".into(),
                    group_key: "k".into(),
                    bandwidth_limit: 1 << 20,
                    limit_on_server: true,
                    metas: vec![("owner".into(), "fixture".into())],
                    annotations: annotations(version),
                },
            })),
        ),
        (
            "control-new-proxy-resp-ok",
            answer(Ok("0.0.0.0:6000".into())),
        ),
        (
            "control-new-proxy-resp-port-in-use",
            answer(Err(ProxyError::PortInUse(6000))),
        ),
        (
            "control-new-proxy-resp-port-not-allowed",
            answer(Err(ProxyError::PortNotAllowed(6000))),
        ),
        (
            "control-new-proxy-resp-duplicate-name",
            answer(Err(ProxyError::DuplicateName)),
        ),
        (
            "control-new-proxy-resp-bind",
            answer(Err(ProxyError::Bind("address in use".into()))),
        ),
        (
            "control-new-proxy-resp-too-many-ports",
            answer(Err(ProxyError::TooManyPorts(32))),
        ),
        (
            "control-new-proxy-resp-refused",
            answer(Err(ProxyError::Refused("no".into()))),
        ),
        (
            "control-close-proxy",
            c(Control::CloseProxy {
                name: "fixture-tcp".into(),
            }),
        ),
        (
            "control-ping",
            c(Control::Ping(Ping {
                seq: 3,
                proxies: 3,
                bytes_in: 1000,
                bytes_out: 2000,
                rtt_us: 450,
            })),
        ),
        ("control-pong", c(Control::Pong(Pong { seq: 3 }))),
        (
            "control-req-work-conn",
            c(Control::ReqWorkConn { count: 1 }),
        ),
    ]
}

/// Every sample of protocol `version`, by fixture name.
pub fn samples(version: u16) -> Vec<(&'static str, Sample)> {
    let mut all = hellos(version);
    all.extend(controls(version));
    all.extend([
        (
            "work-start-v4",
            Sample::Work(WorkHeader::Start(StartWork {
                proxy_name: "fixture-tcp".into(),
                src: addr("192.0.2.7:40000"),
                dst: addr("0.0.0.0:6000"),
            })),
        ),
        (
            "work-start-v6",
            Sample::Work(WorkHeader::Start(StartWork {
                proxy_name: "fixture-tcp".into(),
                src: addr("[2001:db8::7]:40000"),
                dst: addr("[::]:6000"),
            })),
        ),
        (
            "udp-datagram-v4",
            Sample::Udp(addr("192.0.2.7:53"), b"datagram".to_vec()),
        ),
        (
            "udp-datagram-v6",
            Sample::Udp(addr("[2001:db8::7]:53"), b"datagram".to_vec()),
        ),
    ]);
    if version >= 6 {
        all.extend(private());
    }
    all
}

/// What version 6 added: private proxies and the visitor's stream.
fn private() -> Vec<(&'static str, Sample)> {
    let spec = PrivateSpec {
        verifier: [7; 32],
        allow_users: vec!["bob".into(), "*".into()],
    };
    let new = |name: &str, spec| {
        Sample::Control(Control::NewProxy(NewProxy {
            name: name.into(),
            spec,
            opts: ProxyOpts::default(),
        }))
    };
    let answer = |result| Sample::Visit(Visit::Answer(VisitAnswer { result }));
    vec![
        (
            "control-new-proxy-stcp",
            new("fixture-stcp", ProxySpec::Stcp(spec.clone())),
        ),
        (
            "control-new-proxy-sudp",
            new("fixture-sudp", ProxySpec::Sudp(spec)),
        ),
        (
            "visit-open",
            Sample::Visit(Visit::Open(OpenVisit {
                server_user: "alice".into(),
                server_name: "fixture-stcp".into(),
                kind: ProxyKind::Stcp,
                proof: [9; 32],
            })),
        ),
        ("visit-answer-ok", answer(Ok(()))),
        (
            "visit-answer-no-such-proxy",
            answer(Err(VisitError::NoSuchProxy)),
        ),
        (
            "visit-answer-wrong-kind",
            answer(Err(VisitError::WrongKind(ProxyKind::Sudp))),
        ),
        (
            "visit-answer-user-not-allowed",
            answer(Err(VisitError::UserNotAllowed)),
        ),
        (
            "visit-answer-wrong-secret",
            answer(Err(VisitError::WrongSecret)),
        ),
        (
            "visit-answer-refused",
            answer(Err(VisitError::Refused("busy".into()))),
        ),
        (
            "control-new-proxy-xtcp",
            new(
                "fixture-xtcp",
                ProxySpec::Xtcp(PrivateSpec {
                    verifier: [8; 32],
                    allow_users: vec![],
                }),
            ),
        ),
        (
            "rendezvous-offer",
            Sample::Rendezvous(Rendezvous::Offer(Offer {
                candidates: vec![addr("198.51.100.7:40000"), addr("192.168.1.7:40000")],
                token: [3; 16],
                timeout_ms: 1000,
            })),
        ),
        (
            "rendezvous-answer-ok",
            Sample::Rendezvous(Rendezvous::Answer(RendezvousAnswer {
                result: Ok((vec![addr("203.0.113.9:50000")], "ab".repeat(32))),
            })),
        ),
        (
            "rendezvous-answer-err",
            Sample::Rendezvous(Rendezvous::Answer(RendezvousAnswer {
                result: Err("no STUN answer".into()),
            })),
        ),
    ]
}

/// The frame of `sample` as this code writes it.
pub fn encode(sample: &Sample) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    match sample {
        Sample::Hello(m) => wire::codec::encode(m, &mut out).expect("encode"),
        Sample::Control(m) => wire::codec::encode(m, &mut out).expect("encode"),
        Sample::Work(m) => wire::codec::encode(m, &mut out).expect("encode"),
        Sample::Visit(m) => wire::codec::encode(m, &mut out).expect("encode"),
        Sample::Rendezvous(m) => wire::codec::encode(m, &mut out).expect("encode"),
        Sample::Udp(peer, payload) => wire::udp::encode(*peer, payload, &mut out).expect("encode"),
    }
    out.to_vec()
}

/// Where the fixtures of protocol `version` are.
pub fn fixture_dir(version: u16) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/wire")
        .join(format!("v{version}"))
}

/// The recorded frame `name` of protocol `version`.
pub fn fixture(version: u16, name: &str) -> Vec<u8> {
    let path = fixture_dir(version).join(format!("{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
