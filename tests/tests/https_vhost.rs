//! `type = "https"`: TLS sites behind frpc (real `openssl s_server`s with
//! their own certificates), reached with real `curl --resolve` by name
//! through frps's vhostHTTPSPort, routed by SNI; the certificate the user
//! sees is the site's own, byte for byte.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use e2e::*;
use frpc::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "auth.token = \"vhost\"\n";

/// frps whose vhostHTTPSPort is its bindPort, with `extra` TOML; and
/// that port.
async fn sharing_bind_port(extra: &str) -> (TestServer, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let certs = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    let text = format!("{TOKEN}vhostHTTPSPort = {port}\n{extra}");
    (TestServer::start_on(listener, certs, &text), port)
}

/// TOML for one https proxy.
fn https_proxy(name: &str, local_port: u16, domains: &[&str], subdomain: &str) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
    format!(
        "[[proxies]]\nname = \"{name}\"\ntype = \"https\"\nlocalPort = {local_port}\n\
         customDomains = [{}]\nsubdomain = \"{subdomain}\"\n",
        domains.join(", ")
    )
}

/// `curl https://host:port/index.html` with `host` resolved to 127.0.0.1
/// (so SNI carries `host`); Some((body, certificates)) on success.
async fn curl(host: &str, port: u16) -> Option<(String, String)> {
    let host = host.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "-k", "--max-time", "10"])
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .args(["-w", "\n--certs--\n%{certs}"])
            .arg(format!("https://{host}:{port}/index.html"))
            .output()
            .expect("run curl")
    })
    .await
    .expect("curl");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, certs) = text.split_once("\n--certs--\n")?;
    Some((body.to_owned(), certs.to_owned()))
}

/// The base64 body of a PEM certificate, for comparing across formats.
fn der_b64(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("")
}

async fn failed(client: &mut TestClient, name: &str) -> String {
    loop {
        match client.next_event().await {
            Event::ProxyFailed { name: n, error } if n == name => return error,
            Event::ProxyStarted { name: n, .. } if n == name => panic!("{name} started"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_are_routed_by_sni_with_their_own_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_a, a_port, a_cert) = tls_site(dir.path(), "a.example.test", "site A\n");
    let (_b, b_port, b_cert) = tls_site(dir.path(), "b.frps.test", "site B\n");
    let vhost = free_port();
    let server = TestServer::start(&format!(
        "{TOKEN}vhostHTTPSPort = {vhost}\nsubDomainHost = \"frps.test\"\n"
    ))
    .await;
    // Two clients: one by full name, one by subdomain and a wildcard.
    let mut ca = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}{}",
            https_proxy("a", a_port, &["A.example.test"], "")
        ),
    );
    ca.proxy_addr("a").await;
    let mut cb = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}{}",
            https_proxy("b", b_port, &["*.wild.example.test"], "b")
        ),
    );
    cb.proxy_addr("b").await;

    for (host, body, cert) in [
        ("a.example.test", "site A\n", &a_cert),
        ("b.frps.test", "site B\n", &b_cert),
        ("deep.wild.example.test", "site B\n", &b_cert),
    ] {
        let (got, certs) = curl(host, vhost).await.unwrap_or_else(|| panic!("{host}"));
        assert_eq!(got, body, "{host}");
        assert!(
            der_b64(&certs).contains(&der_b64(cert)),
            "{host}: not the site's certificate"
        );
    }
    // A name nobody claimed, and no name at all: closed, nothing else.
    assert!(curl("c.example.test", vhost).await.is_none());
    let mut plain = TcpStream::connect(("127.0.0.1", vhost))
        .await
        .expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, plain.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "garbage got an answer: {n:?}");

    // A ClientHello that trickles in a byte at a time is still routed.
    let trickle = trickle_relay(SocketAddr::from(([127, 0, 0, 1], vhost))).await;
    let (got, _) = curl("a.example.test", trickle)
        .await
        .expect("trickled hello");
    assert_eq!(got, "site A\n");

    // Once its proxy is gone, its name is free and no longer routed.
    ca.stop().await;
    assert!(
        curl("a.example.test", vhost).await.is_none(),
        "routed after its proxy closed"
    );
    let mut again = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}{}",
            https_proxy("a2", b_port, &["a.example.test"], "")
        ),
    );
    again.proxy_addr("a2").await;
    assert_eq!(
        curl("a.example.test", vhost).await.expect("a2").0,
        "site B\n"
    );
    again.stop().await;
    cb.stop().await;
    server.stop().await;
}

/// Forwards one connection to `to`, the first 600 bytes one at a time.
async fn trickle_relay(to: SocketAddr) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let Ok((user, _)) = l.accept().await else {
            return;
        };
        let Ok(up) = TcpStream::connect(to).await else {
            return;
        };
        user.set_nodelay(true).ok();
        up.set_nodelay(true).ok();
        let (mut ur, mut uw) = user.into_split();
        let (mut dr, mut dw) = up.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut dr, &mut uw).await;
        });
        let mut byte = [0u8; 1];
        for _ in 0..600 {
            if ur.read_exact(&mut byte).await.is_err() || dw.write_all(&byte).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = tokio::io::copy(&mut ur, &mut dw).await;
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_clear_errors_at_registration() {
    let vhost = free_port();
    let server = TestServer::start(&format!("{TOKEN}vhostHTTPSPort = {vhost}\n")).await;
    let mut first = TestClient::start(
        server.addr,
        &format!("{TOKEN}{}", https_proxy("one", 1, &["x.example.test"], "")),
    );
    first.proxy_addr("one").await;
    let mut second = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}{}{}",
            https_proxy("two", 1, &["X.example.test"], ""),
            https_proxy("sub", 1, &[], "web")
        ),
    );
    let e = failed(&mut second, "two").await;
    assert!(
        e.contains("x.example.test") && e.contains("already taken"),
        "{e}"
    );
    let e = failed(&mut second, "sub").await;
    assert!(e.contains("subDomainHost"), "{e}");
    second.stop().await;
    first.stop().await;
    server.stop().await;

    let off = TestServer::start(TOKEN).await;
    let mut c = TestClient::start(
        off.addr,
        &format!("{TOKEN}{}", https_proxy("web", 1, &["y.example.test"], "")),
    );
    let e = failed(&mut c, "web").await;
    assert!(e.contains("vhostHTTPSPort is 0"), "{e}");
    c.stop().await;
    off.stop().await;
}

/// `vhostHTTPSPort` may be `bindPort`: a ClientHello naming a routed domain
/// goes to its site, while frpc (whose hello names none) still logs in on
/// the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_shares_bind_port_with_frpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_a, a_port, a_cert) = tls_site(dir.path(), "a.example.test", "site A\n");
    let (server, port) = sharing_bind_port("").await;
    let mut client = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}{}",
            https_proxy("a", a_port, &["a.example.test"], "")
        ),
    );
    client.proxy_addr("a").await;
    let (body, got) = curl("a.example.test", port)
        .await
        .expect("through bindPort");
    assert_eq!(body, "site A\n");
    assert!(
        der_b64(&got).contains(&der_b64(&a_cert)),
        "not the site's certificate"
    );
    client.stop().await;
    server.stop().await;
}

/// On a bindPort shared with https virtual hosts, a proxy claiming the name
/// frpc sends (`transport.tls.serverName`, else serverAddr) does not
/// capture other clients' logins: their hellos offer frpc's ALPN
/// and go to login whatever their name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_cannot_capture_logins_on_a_shared_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_trap, trap_port, _) = tls_site(dir.path(), "frps.example.test", "captured\n");
    let (server, _) = sharing_bind_port("").await;
    let mut mallory = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}user = \"mallory\"\n{}",
            https_proxy("trap", trap_port, &["frps.example.test"], "")
        ),
    );
    mallory.proxy_addr("trap").await;
    let echo = spawn_echo().await;
    let mut victim = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}user = \"victim\"\ntransport.tls.serverName = \"frps.example.test\"\n{}",
            tcp_proxy("mine", echo, 0)
        ),
    );
    let at = victim.proxy_addr("mine").await;
    let s = TcpStream::connect(at).await.expect("connect");
    assert_eq!(exchange(s, b"mine").await.expect("echo"), b"mine");
    victim.stop().await;
    mallory.stop().await;
    server.stop().await;
}

/// frp's domain rules: names under subDomainHost are handed out by
/// `subdomain` only (a custom domain there, or a wildcard over it, is
/// refused); frpc itself refuses a subdomain of more than one label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_under_sub_domain_host_are_subdomains_only() {
    let vhost = free_port();
    let server = TestServer::start(&format!(
        "{TOKEN}vhostHTTPSPort = {vhost}\nsubDomainHost = \"frps.test\"\n"
    ))
    .await;
    let mut c = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}{}{}{}{}",
            https_proxy("under", 1, &["bob.frps.test"], ""),
            https_proxy("wild", 1, &["*.frps.test"], ""),
            https_proxy("itself", 1, &["FRPS.test"], ""),
            https_proxy("fine", 1, &["bob.example.test"], "bob"),
        ),
    );
    for name in ["under", "wild", "itself"] {
        let e = failed(&mut c, name).await;
        assert!(
            e.contains("should not belong to subdomain host"),
            "{name}: {e}"
        );
    }
    c.proxy_addr("fine").await;
    c.stop().await;
    server.stop().await;
}

/// On a bindPort shared with https virtual hosts, telling a login from a
/// user is part of the login's time: a connection that starts a
/// ClientHello and stalls is closed by loginTimeout (1 s here), not by
/// the hello's own 10 s and a fresh login deadline after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_hello_on_a_shared_port_has_only_the_login_deadline() {
    let (server, _) = sharing_bind_port("transport.loginTimeout = 1\n").await;
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let started = std::time::Instant::now();
    // A handshake record of 512 bytes, of which only the header comes.
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
    assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "{end:?}");
    let took = started.elapsed();
    // Generous against a slow machine; the old path took 11 s.
    assert!(took < Duration::from_secs(6), "closed after {took:?}");
    server.stop().await;
}
