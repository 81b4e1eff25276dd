//! frp's spellings with their meaning, through the real binaries: frps's
//! `transport.tcpMux` and `detailedErrorsToClient`, frpc's
//! `auth.tokenSource` (file, and exec only with `--allow-unsafe`),
//! `clientID`, `dnsServer` (a real dnsmasq), `transport.connectServerLocalIP`
//! and `transport.dialServerTimeout`.

use std::process::Command;
use std::time::Duration;

use e2e::services::{banner, dnsmasq, eventually, greeting};
use e2e::web::curl;
use e2e::{bin, free_port, spawn_frpc, spawn_frps, write_file, Proc, WAIT};

fn tcp_proxy(local: u16, remote: u16) -> String {
    format!(
        "[[proxies]]\nname = \"svc\"\ntype = \"tcp\"\nlocalPort = {local}\nremotePort = {remote}\n"
    )
}

#[test]
fn frps_without_multiplexing_refuses_multiplexing_clients_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut frps, port) = spawn_frps(dir.path(), "transport.tcpMux = false\n");
    let service = banner("no mux\n");
    let remote = free_port();
    let mut frpc = spawn_frpc(dir.path(), port, &tcp_proxy(service.port(), remote));
    assert_eq!(frpc.wait_exit(WAIT), Some(1), "{}", frpc.output());
    assert!(
        frpc.output()
            .contains("set transport.tcpMux = false in frpc too"),
        "{}",
        frpc.output()
    );
    frps.wait_line("transport.tcpMux is false here", WAIT);

    let extra = format!(
        "transport.tcpMux = false\n{}",
        tcp_proxy(service.port(), remote)
    );
    let mut frpc = spawn_frpc(dir.path(), port, &extra);
    frpc.wait_line("proxy started", WAIT);
    assert_eq!(greeting(remote).as_deref(), Some("no mux\n"));
}

#[test]
fn detailed_errors_to_client_false_keeps_the_reason_on_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = free_port();
    let (mut frps, port) = spawn_frps(
        dir.path(),
        &format!("detailedErrorsToClient = false\nallowPorts = [{{ single = {allowed} }}]\n"),
    );
    let asked = free_port();
    let mut frpc = spawn_frpc(dir.path(), port, &tcp_proxy(free_port(), asked));
    let said = frpc.wait_line("refused by the server", WAIT);
    assert!(!said.contains("allowPorts"), "{said}");
    frps.wait_line(
        &format!("port {asked} is not allowed by the server's allowPorts"),
        WAIT,
    );
}

#[test]
fn token_sources_file_and_exec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), "auth.token = \"from-a-source\"\n");
    let service = banner("token\n");
    let token_file = write_file(dir.path(), "token", "  from-a-source\n");
    let remote = free_port();
    let extra = format!(
        "auth.tokenSource.type = \"file\"\nauth.tokenSource.file.path = {:?}\n{}",
        token_file.display().to_string(),
        tcp_proxy(service.port(), remote)
    );
    let mut frpc = spawn_frpc(dir.path(), port, &extra);
    frpc.wait_line("proxy started", WAIT);
    assert_eq!(greeting(remote).as_deref(), Some("token\n"));
    drop(frpc);

    let exec = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {port}\nauth.tokenSource.type = \"exec\"\n\
         auth.tokenSource.exec.command = \"/bin/echo\"\nauth.tokenSource.exec.args = [\"from-a-source\"]\n{}",
        tcp_proxy(service.port(), remote)
    );
    let cfg = write_file(dir.path(), "exec.toml", &exec);
    let out = Command::new(bin("frpc"))
        .arg("-c")
        .arg(&cfg)
        .arg("verify")
        .output()
        .expect("verify");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exec ran without the flag");
    assert!(said.contains("--allow-unsafe TokenSourceExec"), "{said}");
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c")
        .arg(&cfg)
        .args(["--allow-unsafe", "TokenSourceExec"]);
    let mut frpc = Proc::spawn(cmd);
    frpc.wait_line("proxy started", WAIT);
    assert_eq!(greeting(remote).as_deref(), Some("token\n"));
}

/// clientID is the key frps shows, and a restarted frpc with the same one
/// is the same client; metadatas reach frps's API.
#[test]
fn client_id_and_metadatas_as_frps_sees_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let (_frps, port) = spawn_frps(dir.path(), &format!("webServer.port = {web}\n"));
    let extra = "clientID = \"rack-12\"\nmetadatas.rack = \"b2\"\n";
    for round in 0..2 {
        let mut frpc = spawn_frpc(dir.path(), port, extra);
        frpc.wait_line("logged in", WAIT);
        let mut clients = serde_json::Value::Null;
        eventually("the client online", || {
            let (_, body) = curl(web, &[], "/api/clients");
            clients = serde_json::from_str(&body).unwrap_or_default();
            clients.as_array().is_some_and(|a| {
                a.iter()
                    .any(|c| c["key"] == "rack-12" && c["online"] == true)
            })
        });
        let list = clients.as_array().expect("clients");
        assert_eq!(
            list.len(),
            1,
            "one client across restarts (round {round}): {clients}"
        );
        assert_eq!(list[0]["clientIP"], "127.0.0.1", "{clients}");
        assert_eq!(list[0]["clientID"], "rack-12", "{clients}");
        assert_eq!(list[0]["metas"]["rack"], "b2", "{clients}");
        drop(frpc);
    }
}

/// A proxy that accepts and never answers: the dial gives up after
/// dialServerTimeout instead of hanging.
#[test]
fn dial_server_timeout_bounds_a_stalled_connect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let _held = std::thread::spawn(move || {
        let conns: Vec<_> = silent.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(60));
        drop(conns);
    });
    let extra =
        format!("transport.dialServerTimeout = 1\ntransport.proxyURL = \"http://{addr}\"\n");
    let mut frpc = spawn_frpc(dir.path(), free_port(), &extra);
    assert_eq!(
        frpc.wait_exit(Duration::from_secs(20)),
        Some(1),
        "{}",
        frpc.output()
    );
    assert!(
        frpc.output()
            .contains("no connection within 1s (transport.dialServerTimeout)"),
        "{}",
        frpc.output()
    );
}

/// serverAddr is a name only the configured DNS server (dnsmasq) knows.
#[test]
fn dns_server_resolves_the_server_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), "");
    let (mut dns, dns_port) = dnsmasq("/frps.lan.test/127.0.0.1");
    let service = banner("by name\n");
    let remote = free_port();
    let cfg = write_file(
        dir.path(),
        "frpc.toml",
        &format!(
            "serverAddr = \"frps.lan.test\"\nserverPort = {port}\ndnsServer = \"127.0.0.1:{dns_port}\"\n\
             transport.tls.insecureSkipVerify = true\n{}",
            tcp_proxy(service.port(), remote)
        ),
    );
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c").arg(&cfg);
    let mut frpc = Proc::spawn(cmd);
    frpc.wait_line("proxy started", WAIT);
    assert_eq!(greeting(remote).as_deref(), Some("by name\n"));
    dns.wait_line("frps.lan.test", WAIT);
}

/// A reload reads the config and its token file off the runtime: a
/// multiplexed frpc runs its tunnel on one thread, and a token file that
/// is slow to read (here a named pipe nobody writes to yet) must not stall
/// it. The test carries a round trip through the tunnel while frpc waits
/// on the pipe, then writes the token.
#[test]
fn a_slow_token_file_at_reload_does_not_stall_the_tunnel() {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), "auth.token = \"from-a-source\"\n");
    let echo = e2e::services::echo_thread();
    let remote = free_port();
    let pipe = dir.path().join("token-pipe");
    assert!(Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("mkfifo")
        .success());
    let extra = format!(
        "auth.tokenSource.type = \"file\"\nauth.tokenSource.file.path = {:?}\n{}",
        pipe.display().to_string(),
        e2e::tcp_proxy("echo", echo, remote)
    );
    // At start frpc reads the token once (before any tunnel exists).
    let feed = pipe.clone();
    let writer = std::thread::spawn(move || std::fs::write(feed, "from-a-source\n"));
    let mut frpc = spawn_frpc(dir.path(), port, &extra);
    writer.join().expect("writer").expect("write the token");
    frpc.wait_line("proxy started", WAIT);
    let mut user = std::net::TcpStream::connect(("127.0.0.1", remote)).expect("connect");
    user.set_read_timeout(Some(WAIT)).expect("timeout");

    let pid = frpc.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    // Opening the pipe without blocking works once frpc has it open to
    // read: from then on it waits for the token.
    const O_NONBLOCK: i32 = 0o4000;
    let mut held = None;
    eventually("frpc opens the token pipe", || {
        held = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&pipe)
            .ok();
        held.is_some()
    });
    user.write_all(b"while reloading").expect("write");
    let mut back = [0u8; 15];
    user.read_exact(&mut back)
        .expect("a round trip while frpc waits for the token file");
    assert_eq!(&back, b"while reloading");
    let mut w = held.expect("writer");
    w.write_all(b"from-a-source\n").expect("token");
    drop(w);
    frpc.wait_line("config reloaded", WAIT);
}

/// connectServerLocalIP is the address frps sees. Run in a network
/// namespace of the test's own, whose loopback has two addresses: the
/// default source would be frps's own.
#[test]
fn connect_server_local_ip_is_the_address_frps_sees() {
    let Some(ns) = e2e::netns::lab_namespace("lip") else {
        return;
    };
    for a in ["10.79.0.1/32", "10.79.0.2/32"] {
        ns.ip(&["addr", "add", a, "dev", "lo"]);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let frps_cfg = write_file(
        dir.path(),
        "frps.toml",
        "bindAddr = \"10.79.0.1\"\nbindPort = 7000\nwebServer.addr = \"10.79.0.1\"\n\
         webServer.port = 7500\n",
    );
    let mut frps = ns.spawn(
        &bin("frps"),
        &["-c", frps_cfg.to_str().expect("path")],
        None,
    );
    frps.wait_line("frps listening for clients", WAIT);
    let frpc_cfg = write_file(
        dir.path(),
        "frpc.toml",
        "serverAddr = \"10.79.0.1\"\nserverPort = 7000\nclientID = \"rack-12\"\n\
         transport.connectServerLocalIP = \"10.79.0.2\"\n",
    );
    let mut frpc = ns.spawn(
        &bin("frpc"),
        &["-c", frpc_cfg.to_str().expect("path")],
        None,
    );
    frpc.wait_line("logged in", WAIT);
    let body = ns.must(&["curl", "-s", "http://10.79.0.1:7500/api/clients"]);
    let clients: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(clients[0]["clientIP"], "10.79.0.2", "{clients}");
}
