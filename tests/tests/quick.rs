//! One proxy from the command line, no file, as frp's users type it:
//! `frpc tcp -s host:port -t TOKEN -l 22 -r 6000 -n ssh`, and `frpc http -d`.

use std::process::Command;

use e2e::services::{banner, greeting};
use e2e::web::curl;
use e2e::{bin, free_port, nginx_site, spawn_frps, Proc, WAIT};

/// `frpc <args>` run in `dir` (where trust on first use keeps its file).
fn frpc(dir: &std::path::Path, args: &[String]) -> Proc {
    let mut cmd = Command::new(bin("frpc"));
    cmd.args(args).current_dir(dir);
    Proc::spawn(cmd)
}

#[test]
fn a_tcp_proxy_from_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), "auth.token = \"tok\"\n");
    let service = banner("quick tcp\n");
    let remote = free_port();
    let args: Vec<String> = [
        "tcp",
        "-s",
        &format!("127.0.0.1:{port}"),
        "-t",
        "tok",
        "-l",
        &service.port().to_string(),
        "-r",
        &remote.to_string(),
        "-n",
        "ssh",
    ]
    .map(String::from)
    .to_vec();
    let mut client = frpc(dir.path(), &args);
    client.wait_line("proxy started", WAIT);
    assert_eq!(greeting(remote).as_deref(), Some("quick tcp\n"));

    // The same checks as a file: a missing local port is named.
    let out = Command::new(bin("frpc"))
        .args(["tcp", "-s", "127.0.0.1", "-P", &port.to_string(), "-n", "x"])
        .current_dir(dir.path())
        .env("STATE_DIRECTORY", dir.path())
        .output()
        .expect("frpc");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("proxy \"x\": localPort is required"),
        "{said}"
    );
}

#[test]
fn an_http_proxy_from_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vhost = free_port();
    let (_frps, port) = spawn_frps(dir.path(), &format!("vhostHTTPPort = {vhost}\n"));
    let (_site, site_port, _) = nginx_site(dir.path(), "quick");
    let args: Vec<String> = [
        "http",
        "-s",
        "127.0.0.1",
        "-P",
        &port.to_string(),
        "-d",
        "quick.example.com",
        "-l",
        &site_port.to_string(),
        "-n",
        "web",
    ]
    .map(String::from)
    .to_vec();
    let mut client = frpc(dir.path(), &args);
    client.wait_line("proxy started", WAIT);
    let (code, body) = curl(vhost, &["-H", "Host: quick.example.com"], "/hello");
    assert_eq!((code, body.as_str()), (200, "site quick /hello\n"));
}

#[test]
fn a_udp_proxy_from_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), "");
    let echo = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = echo.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let remote = free_port();
    let args: Vec<String> = [
        "udp",
        "-s",
        "127.0.0.1",
        "-P",
        &port.to_string(),
        "-l",
        &local.to_string(),
        "-r",
        &remote.to_string(),
        "-n",
        "echo",
    ]
    .map(String::from)
    .to_vec();
    let mut client = frpc(dir.path(), &args);
    client.wait_line("proxy started", WAIT);
    let user = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    user.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    // Datagrams may be lost before the tunnel's stream is open: a few tries.
    let answer = (0..20).find_map(|_| {
        user.send_to(b"ping", ("127.0.0.1", remote)).ok()?;
        let (n, _) = user.recv_from(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    });
    assert_eq!(answer.as_deref(), Some(&b"ping"[..]));
}

/// frp's `frpc stcp` and `frpc stcp visitor`: a private proxy and its
/// visitor, each from flags.
#[test]
fn an_stcp_proxy_and_its_visitor_from_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), "auth.token = \"tok\"\n");
    let service = banner("quick stcp\n");
    let server = format!("127.0.0.1:{port}");
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let owner_dir = tempfile::tempdir().expect("tempdir");
    let local = service.port().to_string();
    let mut owner = frpc(
        owner_dir.path(),
        &args(&[
            "stcp",
            "-s",
            &server,
            "-t",
            "tok",
            "-l",
            &local,
            "-n",
            "secret_ssh",
            "--sk",
            "abc",
        ]),
    );
    owner.wait_line("private proxy started", WAIT);
    let bind = free_port().to_string();
    let visitor_dir = tempfile::tempdir().expect("tempdir");
    let mut visitor = frpc(
        visitor_dir.path(),
        &args(&[
            "stcp",
            "visitor",
            "-s",
            &server,
            "-t",
            "tok",
            "-n",
            "v",
            "--server_name",
            "secret_ssh",
            "--sk",
            "abc",
            "--bind_port",
            &bind,
        ]),
    );
    visitor.wait_line("logged in to server", WAIT);
    assert_eq!(
        greeting(bind.parse().expect("port")).as_deref(),
        Some("quick stcp\n")
    );
}

/// frp's `frpc xtcp` and `frpc xtcp visitor`: the proxy registers on frps
/// and the visitor listens. (From flags the STUN server is frp's default,
/// on the Internet, so no session is made here; `xtcp.rs` and
/// `natlab_p2p.rs` carry SSH over xtcp.)
#[test]
fn an_xtcp_proxy_and_its_visitor_from_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let (_frps, port) = spawn_frps(
        dir.path(),
        &format!("auth.token = \"tok\"\nwebServer.port = {web}\n"),
    );
    let server = format!("127.0.0.1:{port}");
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let owner_dir = tempfile::tempdir().expect("tempdir");
    let mut owner = frpc(
        owner_dir.path(),
        &args(&[
            "xtcp",
            "-s",
            &server,
            "-t",
            "tok",
            "-l",
            "22",
            "-n",
            "p2p_ssh",
            "--sk",
            "abc",
            "--allow_users",
            "*",
        ]),
    );
    owner.wait_line("private proxy started", WAIT);
    let (_, body) = curl(web, &[], "/api/proxy/xtcp");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["proxies"][0]["name"], "p2p_ssh", "{body}");
    assert_eq!(v["proxies"][0]["conf"]["allowUsers"][0], "*", "{body}");
    let bind = free_port().to_string();
    let visitor_dir = tempfile::tempdir().expect("tempdir");
    let mut visitor = frpc(
        visitor_dir.path(),
        &args(&[
            "xtcp",
            "visitor",
            "-s",
            &server,
            "-t",
            "tok",
            "-n",
            "v",
            "--server_name",
            "p2p_ssh",
            "--sk",
            "abc",
            "--bind_port",
            &bind,
        ]),
    );
    let line = visitor.wait_line("xtcp visitor listening", WAIT);
    assert!(line.contains(&format!("127.0.0.1:{bind}")), "{line}");
    visitor.wait_line("logged in to server", WAIT);
}
