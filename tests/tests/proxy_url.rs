//! `transport.proxyURL`: frpc reaches frps through a real HTTP CONNECT proxy
//! (tinyproxy) and a real SOCKS5 proxy (microsocks), both on loopback with
//! a user and password; a wrong password is a clear login failure.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::services::{banner, eventually, greeting};
use e2e::{bin, free_port, spawn_frps, write_file, Proc, WAIT};

fn require(tool: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: `.ci/install-deps` installs it (make test runs it)"
    );
}

/// tinyproxy on a free port, allowing CONNECT only to `frps_port`.
fn tinyproxy(dir: &Path, frps_port: u16) -> (Proc, u16) {
    require("/usr/bin/tinyproxy");
    let port = free_port();
    let conf = write_file(
        dir,
        "tinyproxy.conf",
        &format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogLevel Connect\nAllow 127.0.0.1\n\
             BasicAuth frpuser frppass\nConnectPort {frps_port}\n"
        ),
    );
    let mut cmd = Command::new("/usr/bin/tinyproxy");
    cmd.arg("-d").arg("-c").arg(conf);
    let p = Proc::spawn(cmd);
    eventually("tinyproxy listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (p, port)
}

fn microsocks() -> (Proc, u16) {
    require("/usr/bin/microsocks");
    let port = free_port();
    let mut cmd = Command::new("/usr/bin/microsocks");
    cmd.args([
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-u",
        "frpuser",
        "-P",
        "frppass",
    ]);
    let p = Proc::spawn(cmd);
    eventually("microsocks listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (p, port)
}

fn frpc(dir: &Path, frps_port: u16, proxy_url: &str, service_port: u16, remote: u16) -> Proc {
    let cfg = write_file(
        dir,
        "frpc.toml",
        &format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {frps_port}\nauth.token = \"t\"\n\
             transport.proxyURL = \"{proxy_url}\"\n\
             [[proxies]]\nname = \"svc\"\ntype = \"tcp\"\nlocalPort = {service_port}\nremotePort = {remote}\n"
        ),
    );
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c").arg(cfg);
    Proc::spawn(cmd)
}

/// The tunnel works through the proxy, the proxy saw frpc's connection to
/// frps, and a wrong password fails the login with the proxy's answer.
fn through(
    proxy: &mut Proc,
    scheme: &str,
    proxy_port: u16,
    frps_port: u16,
    saw: &str,
    refused: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = banner("through the proxy\n");
    let remote = free_port();
    let url = format!("{scheme}://frpuser:frppass@127.0.0.1:{proxy_port}");
    let mut client = frpc(dir.path(), frps_port, &url, service.port(), remote);
    client.wait_line("proxy started", WAIT);
    assert_eq!(greeting(remote).as_deref(), Some("through the proxy\n"));
    proxy.wait_line(saw, WAIT);
    drop(client);

    let bad = format!("{scheme}://frpuser:wrong@127.0.0.1:{proxy_port}");
    let mut client = frpc(dir.path(), frps_port, &bad, service.port(), free_port());
    assert_eq!(
        client.wait_exit(Duration::from_secs(30)),
        Some(1),
        "{}",
        client.output()
    );
    let said = client.output();
    assert!(
        said.contains(refused) && said.contains(&format!("through proxy 127.0.0.1:{proxy_port}")),
        "{said}"
    );
}

#[test]
fn frpc_reaches_frps_through_an_http_connect_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, frps_port) = spawn_frps(dir.path(), "auth.token = \"t\"\n");
    let (mut proxy, port) = tinyproxy(dir.path(), frps_port);
    let saw = format!("CONNECT 127.0.0.1:{frps_port}");
    through(
        &mut proxy,
        "http",
        port,
        frps_port,
        &saw,
        "HTTP CONNECT refused: 40", /* tinyproxy answers 401 */
    );
}

#[test]
fn frpc_reaches_frps_through_a_socks5_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, frps_port) = spawn_frps(dir.path(), "auth.token = \"t\"\n");
    let (mut proxy, port) = microsocks();
    let saw = format!("connected to 127.0.0.1:{frps_port}");
    through(&mut proxy, "socks5", port, frps_port, &saw, "SOCKS5");
}
