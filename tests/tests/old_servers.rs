//! frpc against an frps of protocol 4, which predates version agreement and
//! refuses any version but its own. The frps is played from protocol 4's
//! recorded answers (tests/fixtures/wire/v4), byte for byte; what frpc
//! sends it must decode in protocol 4's shape, with nothing left over. Once
//! that frps is gone, the next one (perhaps upgraded) is offered frpc's own
//! version again.

use bytes::BytesMut;
use e2e::wire_samples::fixture;
use e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wire::codec::decode_for;
use wire::message::{Control, Frame, Hello, ProxySpec};

/// Reads one frame of `M` in protocol `version`'s shape.
async fn read<M: Frame>(s: &mut mux::MuxStream, buf: &mut BytesMut, version: u16) -> M {
    loop {
        if let Some(m) = decode_for::<M>(buf, version).expect("decodes in that version's shape") {
            return m;
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "frpc closed the stream");
    }
}

/// One connection to the played frps: its control stream and a buffer.
async fn control_stream(listener: &TcpListener) -> (mux::Session, mux::MuxStream) {
    let (tcp, _) = listener.accept().await.expect("accept");
    let mut session = mux::start(
        tcp,
        mux::Mode::Server,
        mux::MuxConfig::new(16),
        tokio_util::sync::CancellationToken::new(),
    );
    let stream = session.incoming.recv().await.expect("control stream");
    (session, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frpc_speaks_protocol_4_to_an_frps_that_speaks_only_4() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (taken, taken_rx) = tokio::sync::oneshot::channel::<()>();
    let old = tokio::spawn(async move {
        // First login: the newest version, refused as a protocol 4 frps
        // refuses it.
        let (_s, mut ctrl) = control_stream(&listener).await;
        let mut buf = BytesMut::new();
        let Hello::Client { version } = read::<Hello>(&mut ctrl, &mut buf, 4).await else {
            panic!("expected ClientHello");
        };
        assert_eq!(version, wire::message::PROTOCOL_VERSION);
        ctrl.write_all(&fixture(4, "hello-login-resp-version-mismatch"))
            .await
            .expect("refuse");
        ctrl.shutdown().await.expect("close");
        // Second: protocol 4 all the way.
        let (session, mut ctrl) = control_stream(&listener).await;
        let mut buf = BytesMut::new();
        let hello = read::<Hello>(&mut ctrl, &mut buf, 4).await;
        assert_eq!(hello, Hello::Client { version: 4 });
        ctrl.write_all(&fixture(4, "hello-server"))
            .await
            .expect("hello");
        let Hello::Login(login) = read::<Hello>(&mut ctrl, &mut buf, 4).await else {
            panic!("expected Login");
        };
        assert_eq!(login.version, 4);
        assert_eq!(login.metas.get("site").map(String::as_str), Some("old"));
        ctrl.write_all(&fixture(4, "hello-login-resp-accepted"))
            .await
            .expect("accept");
        let Control::NewProxy(p) = read::<Control>(&mut ctrl, &mut buf, 4).await else {
            panic!("expected NewProxy");
        };
        assert_eq!(p.name, "fixture-tcp");
        assert!(matches!(p.spec, ProxySpec::Tcp(_)), "{:?}", p.spec);
        ctrl.write_all(&fixture(4, "control-new-proxy-resp-ok"))
            .await
            .expect("answer");
        // Kept open until the test has seen frpc take the answer; then
        // this frps goes away, and the one frpc finds next (upgraded) is
        // offered the newest version again.
        let _ = taken_rx.await;
        drop((session, ctrl));
        let (_s, mut ctrl) = control_stream(&listener).await;
        let mut buf = BytesMut::new();
        read::<Hello>(&mut ctrl, &mut buf, 4).await
    });
    let echo = spawn_echo().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut frpc = spawn_frpc(
        dir.path(),
        port,
        &format!(
            "transport.tls.enable = false\ntransport.reconnectInitialDelay = 0.2\n\
             metadatas.site = \"old\"\n{}",
            tcp_proxy("fixture-tcp", echo, 6000)
        ),
    );
    let line = frpc.wait_line("frps speaks protocol 4", WAIT);
    assert!(line.contains("speaking 4 to it"), "{line}");
    frpc.wait_line("logged in", WAIT);
    frpc.wait_line("proxy started", WAIT);
    taken.send(()).expect("played frps waits");
    let next = tokio::time::timeout(WAIT, old)
        .await
        .expect("frpc came back")
        .expect("played frps");
    assert_eq!(
        next,
        Hello::Client {
            version: wire::message::PROTOCOL_VERSION
        },
        "after the old frps went away, frpc must offer its own version again"
    );
}
