//! `type = "http"`: real nginx sites behind frpc, reached with real curl by
//! Host through frps's vhostHTTPPort: routing by name, wildcard, subdomain
//! and longest location; forwarding headers, host rewrite, header sets;
//! basic auth; 404 (custom page), 502 and 504; keep-alive across proxies;
//! a WebSocket echo with a real client (Python websockets); a large
//! download and upload checked by SHA-256.

use std::net::SocketAddr;
use std::process::Command;

use e2e::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "auth.token = \"web\"\n";

fn http_proxy(name: &str, port: u16, extra: &str) -> String {
    format!("[[proxies]]\nname = \"{name}\"\ntype = \"http\"\nlocalPort = {port}\n{extra}")
}

/// curl through the vhost port with `host` in the Host header; returns
/// (status, headers, body).
async fn curl(vhost: u16, host: &str, path: &str, extra: &[&str]) -> (u16, String, String) {
    let mut args: Vec<String> = ["-sS", "--max-time", "20", "-D", "-", "-H"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("Host: {host}"));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("http://127.0.0.1:{vhost}{path}"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl").args(&args).output().expect("run curl")
    })
    .await
    .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut rest = text.as_str();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        // An interim answer (100 Continue) comes before the real one.
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        return (status, head.to_ascii_lowercase(), body.to_owned());
    }
}

/// A "service" that accepts and never answers (for 504).
async fn silent_service() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

struct Sites {
    _dir: tempfile::TempDir,
    _a: Proc,
    _b: Proc,
    a_files: std::path::PathBuf,
    server: TestServer,
    clients: Vec<TestClient>,
    vhost: u16,
}

/// frps with a vhost port, sites A and B, and two clients with proxies
/// for every case below.
async fn setup() -> Sites {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, pa, a_files) = nginx_site(dir.path(), "A");
    let (b, pb, _) = nginx_site(dir.path(), "B");
    let page = write_file(dir.path(), "404.html", "<h1>nothing here (custom)</h1>\n");
    let vhost = free_port();
    let server = TestServer::start(&format!(
        "{TOKEN}vhostHTTPPort = {vhost}\nsubDomainHost = \"frps.test\"\nvhostHTTPTimeout = 2\n\
         custom404Page = \"{}\"\n",
        page.display()
    ))
    .await;
    let silent = silent_service().await;
    let dead = closed_port().await;
    let one = [
        http_proxy(
            "a",
            pa,
            "customDomains = [\"a.example.test\"]\nhostHeaderRewrite = \"internal.a\"\n\
             requestHeaders.set.x-custom = \"from-frp\"\nresponseHeaders.set.X-Served-By = \"frp-rs\"\n",
        ),
        http_proxy("shop", pa, "customDomains = [\"shop.example.test\"]\n"),
        http_proxy("secret", pa, "customDomains = [\"secret.example.test\"]\nhttpUser = \"u\"\nhttpPassword = \"p\"\n"),
        http_proxy("dead", dead.port(), "customDomains = [\"dead.example.test\"]\n"),
        http_proxy("slow", silent.port(), "customDomains = [\"slow.example.test\"]\n"),
        http_proxy(
            "alice",
            pa,
            "customDomains = [\"shared.example.test\"]\nrouteByHTTPUser = \"alice\"\n",
        ),
    ]
    .concat();
    let two = [
        http_proxy("b", pb, "subdomain = \"b\"\n"),
        http_proxy("wild", pb, "customDomains = [\"*.wild.example.test\"]\n"),
        http_proxy(
            "api",
            pb,
            "customDomains = [\"shop.example.test\"]\nlocations = [\"/api\"]\n",
        ),
        http_proxy(
            "everyone",
            pb,
            "customDomains = [\"shared.example.test\"]\n",
        ),
    ]
    .concat();
    let mut clients = Vec::new();
    for (text, names) in [
        (one, vec!["a", "shop", "secret", "dead", "slow", "alice"]),
        (two, vec!["b", "wild", "api", "everyone"]),
    ] {
        let mut c = TestClient::start(server.addr, &format!("{TOKEN}{text}"));
        for n in names {
            c.proxy_addr(n).await;
        }
        clients.push(c);
    }
    Sites {
        _dir: dir,
        _a: a,
        _b: b,
        a_files,
        server,
        clients,
        vhost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_headers_auth_and_errors() {
    let s = setup().await;
    let v = s.vhost;
    // By name, subdomain, wildcard; case and port in Host ignored.
    assert_eq!(
        curl(v, "A.Example.Test:80", "/x", &[]).await.2,
        "site A /x\n"
    );
    assert_eq!(curl(v, "b.frps.test", "/y", &[]).await.2, "site B /y\n");
    assert_eq!(
        curl(v, "deep.wild.example.test", "/z", &[]).await.2,
        "site B /z\n"
    );
    // Longest location wins on a shared name.
    assert_eq!(curl(v, "shop.example.test", "/", &[]).await.2, "site A /\n");
    assert_eq!(
        curl(v, "shop.example.test", "/api/items", &[]).await.2,
        "site B /api/items\n"
    );
    spellings_of_a_location_reach_it(v).await;
    // Forwarding headers, host rewrite, header sets both ways.
    let (status, head, body) = curl(v, "a.example.test", "/echo", &[]).await;
    assert_eq!(status, 200);
    for want in [
        "site=A",
        "host=internal.a",
        "xff=127.0.0.1",
        "xfh=a.example.test",
        "xfp=http",
        "xri=127.0.0.1",
        "custom=from-frp",
    ] {
        assert!(body.contains(want), "{want} missing in {body}");
    }
    assert!(head.contains("x-served-by: frp-rs"), "{head}");
    // A target in absolute form names the host, whatever Host says; the
    // site gets it in origin form, with that Host.
    let answer = raw_answer(
        v,
        b"GET http://b.frps.test/echo?q=1 HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    for want in [
        "site=B",
        "host=b.frps.test",
        "req=\"GET /echo?q=1 HTTP/1.1\"",
    ] {
        assert!(answer.contains(want), "{want} missing in {answer}");
    }
    // Basic auth: missing and wrong get 401 with a challenge; right passes.
    let (status, head, _) = curl(v, "secret.example.test", "/", &[]).await;
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: basic"), "{head}");
    assert_eq!(
        curl(v, "secret.example.test", "/", &["-u", "u:wrong"])
            .await
            .0,
        401
    );
    let (status, _, body) = curl(v, "secret.example.test", "/", &["-u", "u:p"]).await;
    assert_eq!((status, body.as_str()), (200, "site A /\n"));
    // routeByHTTPUser: alice's requests go to her proxy, the rest to the
    // proxy for everybody on the same name.
    let to = |extra: &'static [&'static str]| curl(v, "shared.example.test", "/s", extra);
    assert_eq!(to(&["-u", "alice:x"]).await.2, "site A /s\n");
    assert_eq!(to(&["-u", "bob:x"]).await.2, "site B /s\n");
    assert_eq!(to(&[]).await.2, "site B /s\n");
    // Unknown name: 404 with the custom page; dead backend 502; silent 504.
    let (status, _, body) = curl(v, "nobody.example.test", "/", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (404, "<h1>nothing here (custom)</h1>\n")
    );
    assert_eq!(curl(v, "dead.example.test", "/", &[]).await.0, 502);
    assert_eq!(curl(v, "slow.example.test", "/", &[]).await.0, 504);

    // One keep-alive connection, two proxies of two clients.
    let mut conn = BufReader::new(TcpStream::connect(("127.0.0.1", v)).await.expect("connect"));
    for (host, want) in [
        ("a.example.test", "site A /k\n"),
        ("b.frps.test", "site B /k\n"),
    ] {
        let req = format!("GET /k HTTP/1.1\r\nHost: {host}\r\n\r\n");
        conn.get_mut()
            .write_all(req.as_bytes())
            .await
            .expect("write");
        assert_eq!(read_response(&mut conn).await, want);
    }
    for c in s.clients {
        c.stop().await;
    }
    s.server.stop().await;
}

/// Reads one response with a Content-Length body.
async fn read_response(r: &mut BufReader<TcpStream>) -> String {
    let mut len = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await.expect("head");
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.expect("body");
    String::from_utf8(body).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_intact() {
    let s = setup().await;
    let data = pattern(64 << 20, 11);
    std::fs::write(s.a_files.join("big.bin"), &data).expect("write");
    let out = s.a_files.join("down.bin");
    let (status, _, _) = curl(
        s.vhost,
        "a.example.test",
        "/files/big.bin",
        &["-o", out.to_str().expect("path")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        sha256(&std::fs::read(&out).expect("read")),
        sha256(&data),
        "download"
    );
    // Upload (PUT) through the vhost, then compare what nginx stored.
    let up = pattern(48 << 20, 12);
    let src = s.a_files.join("up-src.bin");
    std::fs::write(&src, &up).expect("write");
    let (status, _, _) = curl(
        s.vhost,
        "a.example.test",
        "/files/up.bin",
        &["-T", src.to_str().expect("path")],
    )
    .await;
    assert!(status == 201 || status == 204, "PUT answered {status}");
    assert_eq!(
        sha256(&std::fs::read(s.a_files.join("up.bin")).expect("read")),
        sha256(&up),
        "upload"
    );
    for c in s.clients {
        c.stop().await;
    }
    s.server.stop().await;
}

/// A WebSocket echo service (Python websockets) behind an http proxy, and
/// a Python websockets client talking to it through the vhost port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_the_vhost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_port = free_port();
    let server_py = write_file(
        dir.path(),
        "ws_server.py",
        &format!(
            "import asyncio, websockets\n\
             async def echo(ws):\n    async for m in ws:\n        await ws.send('echo:' + m)\n\
             async def main():\n    async with websockets.serve(echo, '127.0.0.1', {ws_port}):\n        print('ready', flush=True)\n        await asyncio.Future()\n\
             asyncio.run(main())\n"
        ),
    );
    let mut c = Command::new("/usr/bin/python3");
    c.arg(&server_py);
    let mut ws = Proc::spawn(c);
    ws.wait_line("ready", WAIT);
    let vhost = free_port();
    let server = TestServer::start(&format!("{TOKEN}vhostHTTPPort = {vhost}\n")).await;
    let mut client = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}{}",
            http_proxy("ws", ws_port, "customDomains = [\"ws.example.test\"]\n")
        ),
    );
    client.proxy_addr("ws").await;
    let client_py = write_file(
        dir.path(),
        "ws_client.py",
        &format!(
            "import asyncio, websockets\n\
             async def main():\n    async with websockets.connect('ws://ws.example.test:{vhost}/chat', host='127.0.0.1', port={vhost}) as ws:\n\
             \x20       for i in range(3):\n            await ws.send('m%d' % i)\n            print(await ws.recv(), flush=True)\n\
             asyncio.run(main())\n"
        ),
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("/usr/bin/python3")
            .arg(&client_py)
            .output()
            .expect("python")
    })
    .await
    .expect("client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "echo:m0\necho:m1\necho:m2\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    client.stop().await;
    server.stop().await;
}

/// `type = "tcpmux"`: curl opens with HTTP CONNECT (`-p -x`) on the tcpmux
/// port and then speaks HTTP to the site through the carried connection;
/// the proxy's credentials are asked with 407; an unknown name gets 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcpmux_httpconnect_with_curl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_a, pa, _) = nginx_site(dir.path(), "A");
    let (_b, pb, _) = nginx_site(dir.path(), "B");
    let mux = free_port();
    let server = TestServer::start(&format!("{TOKEN}tcpmuxHTTPConnectPort = {mux}\n")).await;
    let proxies = [
        format!("[[proxies]]\nname = \"m\"\ntype = \"tcpmux\"\nmultiplexer = \"httpconnect\"\nlocalPort = {pa}\ncustomDomains = [\"m.example.test\"]\n"),
        format!("[[proxies]]\nname = \"locked\"\ntype = \"tcpmux\"\nlocalPort = {pa}\ncustomDomains = [\"locked.example.test\"]\nhttpUser = \"u\"\nhttpPassword = \"p\"\n"),
        format!("[[proxies]]\nname = \"m-bob\"\ntype = \"tcpmux\"\nlocalPort = {pb}\ncustomDomains = [\"m.example.test\"]\nrouteByHTTPUser = \"bob\"\n"),
    ]
    .concat();
    let mut client = TestClient::start(server.addr, &format!("{TOKEN}{proxies}"));
    client.proxy_addr("m").await;
    client.proxy_addr("locked").await;
    client.proxy_addr("m-bob").await;
    let proxy = format!("http://127.0.0.1:{mux}");
    let run = |url: &'static str, extra: Vec<String>| {
        let proxy = proxy.clone();
        tokio::task::spawn_blocking(move || {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "10", "-p", "-x", &proxy])
                .args(&extra)
                .arg(url)
                .output()
                .expect("curl");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let (ok, body, err) = run("http://m.example.test/through", vec![])
        .await
        .expect("curl");
    assert!(ok, "{err}");
    assert_eq!(body, "site A /through\n");
    // routeByHTTPUser: bob's CONNECT reaches his proxy on the same name.
    let bob = vec!["--proxy-user".to_string(), "bob:x".to_string()];
    let (ok, body, err) = run("http://m.example.test/b", bob).await.expect("curl");
    assert!(ok, "{err}");
    assert_eq!(body, "site B /b\n");
    // Credentials: none → 407 (curl fails the CONNECT), right → through.
    let (ok, _, err) = run("http://locked.example.test/", vec![])
        .await
        .expect("curl");
    assert!(!ok && err.contains("407"), "{err}");
    let creds = vec!["--proxy-user".to_string(), "u:p".to_string()];
    let (ok, body, err) = run("http://locked.example.test/in", creds)
        .await
        .expect("curl");
    assert!(ok, "{err}");
    assert_eq!(body, "site A /in\n");
    let (ok, _, err) = run("http://other.example.test/", vec![])
        .await
        .expect("curl");
    assert!(!ok && err.contains("404"), "{err}");
    // A CONNECT target that is no host name is refused before routing.
    let target = format!("{}m.example.test:80", "a.".repeat(20_000));
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
    let answer = raw_answer(mux, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    client.stop().await;
    server.stop().await;
}

/// Bad input costs only its connection: an oversized head gets 431, a head
/// that never ends is closed by the header timeout, garbage gets 400; the
/// sites keep serving meanwhile. Then 200 keep-alive clients make 50
/// requests each, alternating between two clients' proxies: all correct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_heads_and_many_keep_alive_clients() {
    let s = setup().await;
    let v = s.vhost;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a.example.test\r\nX-Big: {}\r\n\r\n",
        "x".repeat(100 * 1024)
    );
    let answer = raw_answer(v, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    let answer = raw_answer(v, b"\x16\x03\x01garbage\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    names_beyond_rfc_1123_are_refused(v).await;
    // A head that never finishes: closed after the header timeout (30 s).
    let mut slow = TcpStream::connect(("127.0.0.1", v)).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a.exa")
        .await
        .expect("write");
    let slow_closed = tokio::spawn(async move {
        let mut buf = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            slow.read_to_end(&mut buf),
        )
        .await
        .is_ok()
    });

    let mut users = Vec::new();
    for u in 0..200u32 {
        users.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(("127.0.0.1", v)).await.expect("connect");
            let mut conn = BufReader::new(tcp);
            for i in 0..50u32 {
                let (host, site) = if (u + i) % 2 == 0 {
                    ("a.example.test", "A")
                } else {
                    ("b.frps.test", "B")
                };
                let req = format!("GET /u{u}/r{i} HTTP/1.1\r\nHost: {host}\r\n\r\n");
                conn.get_mut()
                    .write_all(req.as_bytes())
                    .await
                    .expect("write");
                assert_eq!(
                    read_response(&mut conn).await,
                    format!("site {site} /u{u}/r{i}\n")
                );
            }
        }));
    }
    for u in users {
        tokio::time::timeout(std::time::Duration::from_secs(120), u)
            .await
            .expect("clients finish in time")
            .expect("client");
    }
    assert!(
        slow_closed.await.expect("slow"),
        "a never-ending head kept its connection"
    );
    for c in s.clients {
        c.stop().await;
    }
    s.server.stop().await;
}

/// Sends `bytes` on a fresh connection to the vhost port and returns what
/// comes back until the server closes.
/// The location is chosen on the path the site will see: encoded,
/// doubled-slash and dot-segment spellings of /api reach the /api proxy.
async fn spellings_of_a_location_reach_it(v: u16) {
    for path in [
        "/%61pi/items",
        "//api/items",
        "/./api/items",
        "/x/../api/items",
        "/%2e/api/items",
    ] {
        let body = curl(v, "shop.example.test", path, &["--path-as-is"])
            .await
            .2;
        assert!(body.starts_with("site B "), "{path}: {body}");
    }
}

/// Names beyond RFC 1123's lengths get 400 before routing (30,000 labels
/// under a wildcard route, a 64-byte label, 254 bytes); 253 bytes is a
/// name, routed by its wildcard.
async fn names_beyond_rfc_1123_are_refused(v: u16) {
    let label = "a".repeat(63);
    for host in [
        format!("{}x.wild.example.test", "a.".repeat(30_000)),
        format!("{label}a.wild.example.test"),
        format!(
            "{label}.{label}.{label}.{}.wild.example.test",
            "c".repeat(44)
        ),
        "a..wild.example.test".to_owned(),
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = raw_answer(v, req.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{}: {answer:?}",
            host.len()
        );
    }
    // 253 bytes is a name, routed by its wildcard.
    let name = format!(
        "{label}.{label}.{label}.{}.wild.example.test",
        "c".repeat(43)
    );
    assert_eq!(name.len(), 253);
    let (code, _, body) = curl(v, &name, "/long", &[]).await;
    assert_eq!((code, body.as_str()), (200, "site B /long\n"));
}

async fn raw_answer(vhost: u16, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", vhost))
        .await
        .expect("connect");
    let _ = c.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP CONNECT proxy of its own, as a local service would run one: it
/// answers any CONNECT with 200 and connects to `target`.
async fn connect_proxy(target: SocketAddr) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((user, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut user = BufReader::new(user);
                let mut first = String::new();
                if user.read_line(&mut first).await.is_err() || !first.starts_with("CONNECT ") {
                    return;
                }
                loop {
                    let mut line = String::new();
                    if user.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let Ok(mut up) = TcpStream::connect(target).await else {
                    return;
                };
                let mut user = user.into_inner();
                let reply = b"HTTP/1.1 200 Connection Established\r\nX-Local-Proxy: yes\r\n\r\n";
                if user.write_all(reply).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut user, &mut up).await;
                }
            });
        }
    });
    port
}

/// `tcpmuxPassthrough = true`: the CONNECT is answered by the local
/// service (its own CONNECT proxy here), not by frps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcpmux_passthrough_lets_the_local_proxy_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_a, pa, _) = nginx_site(dir.path(), "A");
    let local_proxy = connect_proxy(SocketAddr::from(([127, 0, 0, 1], pa))).await;
    let mux = free_port();
    let server = TestServer::start(&format!(
        "{TOKEN}tcpmuxHTTPConnectPort = {mux}\ntcpmuxPassthrough = true\n"
    ))
    .await;
    let mut client = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}[[proxies]]\nname = \"p\"\ntype = \"tcpmux\"\nlocalPort = {local_proxy}\n\
             customDomains = [\"p.example.test\"]\n"
        ),
    );
    client.proxy_addr("p").await;
    let proxy = format!("http://127.0.0.1:{mux}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "-v", "--max-time", "10", "-p", "-x", &proxy])
            .arg("http://p.example.test/pass")
            .output()
            .expect("curl")
    })
    .await
    .expect("curl");
    let (body, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}");
    assert_eq!(body, "site A /pass\n");
    // The CONNECT answer came from the local proxy, through frps.
    assert!(
        err.to_ascii_lowercase().contains("x-local-proxy: yes"),
        "{err}"
    );
    client.stop().await;
    server.stop().await;
}

/// `vhostHTTPPort` may be `bindPort`: HTTP requests there are routed by
/// Host, while frpc logs in on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_shares_bind_port_with_frpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_a, pa, _) = nginx_site(dir.path(), "A");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let certs = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    let server = TestServer::start_on(listener, certs, &format!("{TOKEN}vhostHTTPPort = {port}\n"));
    let mut client = TestClient::start(
        server.addr,
        &format!(
            "{TOKEN}{}",
            http_proxy("a", pa, "customDomains = [\"a.example.test\"]\n")
        ),
    );
    client.proxy_addr("a").await;
    assert_eq!(
        curl(port, "a.example.test", "/shared", &[]).await.2,
        "site A /shared\n"
    );
    assert_eq!(curl(port, "nobody.example.test", "/", &[]).await.0, 404);
    client.stop().await;
    server.stop().await;
}

/// A 1 GiB download and a 1 GiB upload through the vhost: frps and frpc
/// (real processes, so their memory can be read) stay within a few
/// buffers — under 32 MiB of growth each — while the bodies stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_each_way_holds_no_more_than_a_few_buffers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_a, pa, files) = nginx_site(dir.path(), "A");
    // Sparse: nginx reads zeros, the disk holds nothing.
    let big = std::fs::File::create(files.join("gig.bin")).expect("create");
    big.set_len(1 << 30).expect("size");
    let vhost = free_port();
    let (mut frps, port) = spawn_frps(dir.path(), &format!("{TOKEN}vhostHTTPPort = {vhost}\n"));
    let mut frpc = spawn_frpc(
        dir.path(),
        port,
        &format!(
            "{TOKEN}{}",
            http_proxy("a", pa, "customDomains = [\"a.example.test\"]\n")
        ),
    );
    frpc.wait_line("proxy started", WAIT);
    let pids = (frps.child.id(), frpc.child.id());
    let base = (e2e::raw::rss_kib(pids.0), e2e::raw::rss_kib(pids.1));
    let peak = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let watch = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = (e2e::raw::rss_kib(pids.0), e2e::raw::rss_kib(pids.1));
                {
                    let mut p = peak.lock().expect("peak");
                    *p = (p.0.max(now.0), p.1.max(now.1));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    let down = curl(
        vhost,
        "a.example.test",
        "/files/gig.bin",
        &["-o", "/dev/null"],
    )
    .await;
    assert_eq!(down.0, 200);
    let (status, _, _) = curl(
        vhost,
        "a.example.test",
        "/files/gig-up.bin",
        &["-T", files.join("gig.bin").to_str().expect("path")],
    )
    .await;
    assert!(status == 201 || status == 204, "PUT answered {status}");
    let stored = std::fs::metadata(files.join("gig-up.bin"))
        .expect("stored")
        .len();
    assert_eq!(stored, 1 << 30, "upload arrived whole");
    watch.abort();
    let (ps, pc) = *peak.lock().expect("peak");
    let (gs, gc) = (ps.saturating_sub(base.0), pc.saturating_sub(base.1));
    eprintln!("frps +{gs} KiB, frpc +{gc} KiB");
    assert!(gs < 32 * 1024, "frps grew by {gs} KiB");
    assert!(gc < 32 * 1024, "frpc grew by {gc} KiB");
    for p in [&mut frps, &mut frpc] {
        let _ = p.child.kill();
    }
}

/// A forwarder to `target` that counts the connections it accepts.
async fn counting_forwarder(target: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut user, _)) = l.accept().await {
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut up) = TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = tokio::io::copy_bidirectional(&mut user, &mut up).await;
                }
            });
        }
    });
    (port, count)
}

/// Requests from one user connection after another reuse the kept-alive
/// connection to the local service once each response has been read
/// through: bodies with a length, and HEAD answers, whose body is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_the_local_service_are_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_site, port, files) = nginx_site(dir.path(), "A");
    std::fs::write(files.join("f.txt"), "file body\n").expect("file");
    let (forwarder, accepted) = counting_forwarder(port).await;
    let vhost = free_port();
    let server = TestServer::start(&format!("{TOKEN}vhostHTTPPort = {vhost}\n")).await;
    let proxy = http_proxy("a", forwarder, "customDomains = [\"a.example.test\"]\n");
    let mut client = TestClient::start(server.addr, &format!("{TOKEN}{proxy}"));
    client.proxy_addr("a").await;
    for i in 0..30 {
        let (status, _, body) = match i % 3 {
            0 => curl(vhost, "a.example.test", &format!("/r{i}"), &[]).await,
            1 => curl(vhost, "a.example.test", "/files/f.txt", &["-I"]).await,
            _ => curl(vhost, "a.example.test", "/files/f.txt", &[]).await,
        };
        assert_eq!(status, 200, "request {i}");
        let want = ["site A /r", "", "file body\n"][i % 3];
        assert!(body.starts_with(want), "request {i}: {body:?}");
    }
    // One connection serves them all; a response still being read when
    // the next request came may have needed a second.
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        n <= 2,
        "30 requests opened {n} connections to the local service"
    );
    client.stop().await;
    server.stop().await;
}

/// A local service that answers the first request of each connection and
/// then reads on without answering.
async fn answers_once_service() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                let mut line = String::new();
                while s.read_line(&mut line).await.is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfirst\n";
                if s.get_mut().write_all(ok).await.is_err() {
                    return;
                }
                let mut sink = [0u8; 1024];
                while s.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            });
        }
    });
    addr
}

/// vhostHTTPTimeout holds for a request sent over a kept-alive connection
/// to the local service as it does over a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_local_connection_that_goes_silent_gets_504() {
    let once = answers_once_service().await;
    let vhost = free_port();
    let server = TestServer::start(&format!(
        "{TOKEN}vhostHTTPPort = {vhost}\nvhostHTTPTimeout = 2\n"
    ))
    .await;
    let proxy = http_proxy(
        "once",
        once.port(),
        "customDomains = [\"once.example.test\"]\n",
    );
    let mut client = TestClient::start(server.addr, &format!("{TOKEN}{proxy}"));
    client.proxy_addr("once").await;
    let (status, _, body) = curl(vhost, "once.example.test", "/", &[]).await;
    assert_eq!((status, body.as_str()), (200, "first\n"));
    // The pooled connection takes this one, and never answers.
    let started = std::time::Instant::now();
    let (status, _, _) = curl(vhost, "once.example.test", "/", &[]).await;
    assert_eq!(status, 504, "after {:?}", started.elapsed());
    // A new connection for the next request answers again.
    assert_eq!(curl(vhost, "once.example.test", "/", &[]).await.0, 200);
    client.stop().await;
    server.stop().await;
}

/// WebSockets count like any connection: with `maxStreamsPerClient = 4`
/// (the control stream is one), 3 of 8 upgrades are taken and the rest get
/// 503; their bytes and open
/// connections show in frps's API while they run; and when the client
/// closes the proxy (a reload without it), the upgraded connections end.
#[test]
fn websockets_hold_their_stream_permit_and_are_metered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_port = free_port();
    let server_py = write_file(
        dir.path(),
        "ws_server.py",
        &format!(
            "import asyncio, websockets\n\
             async def echo(ws):\n    async for m in ws:\n        await ws.send(m)\n\
             async def main():\n    async with websockets.serve(echo, '127.0.0.1', {ws_port}, max_size=None):\n        print('ready', flush=True)\n        await asyncio.Future()\n\
             asyncio.run(main())\n"
        ),
    );
    let mut c = Command::new("/usr/bin/python3");
    c.arg(&server_py);
    let mut ws = Proc::spawn(c);
    ws.wait_line("ready", WAIT);
    let vhost = free_port();
    let web = free_port();
    let (_frps, port) = spawn_frps(
        dir.path(),
        &format!(
            "{TOKEN}vhostHTTPPort = {vhost}\ntransport.maxStreamsPerClient = 4\n\
             webServer.port = {web}\nwebServer.addr = \"127.0.0.1\"\n"
        ),
    );
    let admin = free_port();
    let proxy = http_proxy("ws", ws_port, "customDomains = [\"ws.example.test\"]\n");
    let frpc_text = |proxies: &str| format!("{TOKEN}webServer.port = {admin}\n{proxies}");
    let mut frpc = spawn_frpc(dir.path(), port, &frpc_text(&proxy));
    frpc.wait_line("proxy started", WAIT);
    let go = dir.path().join("go");
    let client_py = write_file(dir.path(), "ws_client.py", &ws_client(vhost, web, &go));
    let mut c = Command::new("/usr/bin/python3");
    c.arg(&client_py);
    let mut user = Proc::spawn(c);
    let opened = user.wait_line("open ", WAIT);
    assert_eq!(opened, "open 3 refused 5", "{}", user.output());
    assert!(user.output().contains("refused 503"), "{}", user.output());
    let meters = user.wait_line("conns ", WAIT);
    let figures: Vec<u64> = meters
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(figures[0], 3, "{meters}");
    assert!(figures[1] >= 300_000 && figures[2] >= 300_000, "{meters}");
    // The proxy goes away: its upgraded connections with it.
    write_file(
        dir.path(),
        "frpc.toml",
        &format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {port}\n{}",
            frpc_text("")
        ),
    );
    let (code, body) = e2e::web::curl(admin, &[], "/api/reload");
    assert_eq!(code, 200, "{body}");
    eventually_closed(web);
    std::fs::write(&go, "").expect("go on");
    assert_eq!(user.wait_line("alive ", WAIT), "alive 0");
}

/// A Python websockets client: 8 connections to ws.example.test, 100 KB
/// each way on those taken, the API's figures for proxy "ws", then (once
/// `go` exists) whether each still carries a message.
fn ws_client(vhost: u16, web: u16, go: &std::path::Path) -> String {
    format!(
            "import asyncio, json, os, sys, urllib.request, websockets\n\
             async def main():\n    socks = []\n    refused = 0\n\
             \x20   for i in range(8):\n        try:\n            socks.append(await websockets.connect('ws://ws.example.test:{vhost}/', host='127.0.0.1', port={vhost}, max_size=None))\n\
             \x20       except websockets.exceptions.InvalidStatusCode as e:\n            refused += 1\n            print('refused', e.status_code, flush=True)\n\
             \x20   for s in socks:\n        await s.send(os.urandom(100000))\n        assert len(await s.recv()) == 100000\n\
             \x20   print('open', len(socks), 'refused', refused, flush=True)\n\
             \x20   api = json.load(urllib.request.urlopen('http://127.0.0.1:{web}/api/proxy/http'))\n\
             \x20   p = [p for p in api['proxies'] if p['name'] == 'ws'][0]\n\
             \x20   print('conns', p['curConns'], 'in', p['todayTrafficIn'], 'out', p['todayTrafficOut'], flush=True)\n\
             \x20   for _ in range(600):\n        if os.path.exists('{go}'):\n            break\n        await asyncio.sleep(0.05)\n\
             \x20   alive = 0\n\
             \x20   for s in socks:\n        try:\n            await asyncio.wait_for(s.send(b'y'), 5)\n            await asyncio.wait_for(s.recv(), 5)\n            alive += 1\n        except Exception:\n            pass\n\
             \x20   print('alive', alive, flush=True)\n\
             asyncio.run(main())\n",
            go = go.display()
        )
}

/// Waits until frps's API lists no open connection for proxy "ws".
fn eventually_closed(web: u16) {
    e2e::services::eventually("the proxy's connections closed", || {
        let (_, body) = e2e::web::curl(web, &[], "/api/proxy/http");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["proxies"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == "ws"))
            .is_none_or(|p| p["curConns"] == 0)
    });
}

/// Idle connections on the public ports cannot take what logins need:
/// frps limited to 600 descriptors, 700 idle connections from one address
/// to vhostHTTPPort and 100 to the web server. frps holds at most its
/// per-address caps (256 and 32), and a frpc still logs in and serves.
#[test]
fn idle_public_connections_cannot_starve_logins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, vhost, web) = (free_port(), free_port(), free_port());
    let cfg = write_file(
        dir.path(),
        "frps.toml",
        &format!(
            "bindAddr = \"127.0.0.1\"\nbindPort = {port}\n{TOKEN}vhostHTTPPort = {vhost}\n\
             webServer.port = {web}\nwebServer.addr = \"127.0.0.1\"\n"
        ),
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(format!(
        "ulimit -n 600 && exec {} -c {}",
        bin("frps").display(),
        cfg.display()
    ));
    let mut frps = Proc::spawn(cmd);
    frps.wait_line("frps listening", WAIT);
    let pid = frps.child.id();
    let idle = raw::fd_count(pid);
    let mut held = Vec::new();
    for (to, n) in [(vhost, 700), (web, 100)] {
        for _ in 0..n {
            held.push(std::net::TcpStream::connect(("127.0.0.1", to)).expect("connect"));
        }
    }
    // Those beyond the caps are closed at once; the rest are kept (for the
    // head timeout, 30 s: all of this test). Every connection has been
    // accepted or closed once a later one is answered.
    let (code, _) = e2e::web::curl(web, &[], "/healthz");
    assert_eq!(code, 0, "the web server's address is full");
    let now = raw::fd_count(pid);
    assert!(
        now <= idle + vhost::PER_ADDRESS + WEB_PER_ADDRESS + 8,
        "frps holds {now} descriptors ({idle} idle)"
    );
    let echo = e2e::services::echo_thread();
    let mut frpc = spawn_frpc(
        dir.path(),
        port,
        &format!("{TOKEN}{}", tcp_proxy("after", echo, 0)),
    );
    let public = port_from_line(&frpc.wait_line("proxy started", WAIT));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", public)).expect("connect");
    std::io::Write::write_all(&mut s, b"still serving").expect("write");
    let mut back = [0u8; 13];
    std::io::Read::read_exact(&mut s, &mut back).expect("echo");
    assert_eq!(&back, b"still serving");
    drop(held);
}

mod vhost {
    /// frps's per-address cap on each virtual host port.
    pub const PER_ADDRESS: usize = 256;
}
/// The web servers' per-address cap.
const WEB_PER_ADDRESS: usize = 32;
