//! xtcp on loopback, with real parts: a real STUN server (coturn) tells each
//! frpc its address, frps carries only the rendezvous, and real OpenSSH
//! runs over the peer-to-peer QUIC session; frps's counters for the proxy
//! stay at the rendezvous's few bytes while megabytes cross. When no
//! session can be made (here: a STUN server that does not answer), the
//! `fallbackTo` stcp visitor carries the same SSH session through frps.
//! (The P2P lab, `natlab_p2p.rs`, runs the same through two NAT routers.)

use std::path::Path;
use std::process::Output;

use e2e::sshd::{keygen, require_openssh, spawn_sshd, ssh_run};
use e2e::web::curl;
use e2e::*;

const TOKEN: &str = "auth.token = \"xtcp-e2e\"\n";

fn frpc_at(dir: &Path, frps: u16, body: &str) -> Proc {
    spawn_frpc(dir, frps, &format!("{TOKEN}{body}"))
}

fn ssh(key: &Path, port: u16, remote: &str, stdin: Option<&[u8]>) -> Output {
    ssh_run(None, key, port, remote, stdin)
}

struct Sshd {
    _proc: Proc,
    port: u16,
    key: std::path::PathBuf,
}

fn sshd(dir: &Path) -> Sshd {
    require_openssh();
    let (host_key, user_key) = (dir.join("host_key"), dir.join("id"));
    keygen(&host_key);
    keygen(&user_key);
    let authorized = dir.join("authorized_keys");
    std::fs::copy(user_key.with_extension("pub"), &authorized).expect("authorized_keys");
    let (proc, port) = spawn_sshd(dir, &host_key, &authorized);
    Sshd {
        _proc: proc,
        port,
        key: user_key,
    }
}

#[test]
fn ssh_runs_peer_to_peer_and_frps_carries_only_the_rendezvous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = sshd(dir.path());
    let (_stun, stun_port) = e2e::stun::coturn_on_loopback(dir.path());
    let web = free_port();
    let (_frps, port) = spawn_frps(
        dir.path(),
        &format!("{TOKEN}webServer.port = {web}\nwebServer.user = \"ops\"\nwebServer.password = \"pw\"\n"),
    );
    let stun = format!("natHoleStunServer = \"127.0.0.1:{stun_port}\"\n");
    let owner_dir = tempfile::tempdir().expect("tempdir");
    let mut owner = frpc_at(
        owner_dir.path(),
        port,
        &format!(
            "{stun}[[proxies]]\nname = \"p2p_ssh\"\ntype = \"xtcp\"\nsecretKey = \"abcdefg\"\n\
             localPort = {}\n",
            server.port
        ),
    );
    owner.wait_line("private proxy started", WAIT);
    let bind = free_port();
    let visitor_dir = tempfile::tempdir().expect("tempdir");
    let mut visitor = frpc_at(
        visitor_dir.path(),
        port,
        &format!(
            "{stun}[[visitors]]\nname = \"p2p_ssh_visitor\"\ntype = \"xtcp\"\n\
             serverName = \"p2p_ssh\"\nsecretKey = \"abcdefg\"\nbindAddr = \"127.0.0.1\"\n\
             bindPort = {bind}\nfallbackTimeoutMs = 3000\n"
        ),
    );
    visitor.wait_line("logged in to server", WAIT);

    let out = ssh(&server.key, bind, "echo p2p-$((6*7))", None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "p2p-42",
        "ssh: {}\nvisitor: {}\nowner: {}",
        String::from_utf8_lossy(&out.stderr),
        visitor.output(),
        owner.output()
    );
    visitor.wait_line("P2P session up", WAIT);
    owner.wait_line("P2P session up", WAIT);
    // 4 MiB up through the session, hashed on the far side.
    let data = pattern(4 << 20, 11);
    let out = ssh(&server.key, bind, "sha256sum", Some(&data));
    let hash = String::from_utf8_lossy(&out.stdout);
    assert!(hash.starts_with(&sha256(&data)), "{hash}");
    // frps carried the rendezvous only.
    let (_, body) = curl(web, &["-u", "ops:pw"], "/api/proxy/xtcp");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let row = &v["proxies"][0];
    assert_eq!(row["name"], "p2p_ssh", "{body}");
    let carried = row["todayTrafficIn"].as_u64().unwrap_or(u64::MAX)
        + row["todayTrafficOut"].as_u64().unwrap_or(u64::MAX);
    assert!(carried < 16 << 10, "frps carried {carried} bytes: {body}");
}

#[test]
fn without_a_session_the_fallback_stcp_visitor_carries_ssh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = sshd(dir.path());
    let (_frps, port) = spawn_frps(dir.path(), TOKEN);
    // Nothing answers STUN here: no P2P session can be made.
    let stun = format!("natHoleStunServer = \"127.0.0.1:{}\"\n", free_udp_port());
    let owner_dir = tempfile::tempdir().expect("tempdir");
    let mut owner = frpc_at(
        owner_dir.path(),
        port,
        &format!(
            "{stun}[[proxies]]\nname = \"p2p_ssh\"\ntype = \"xtcp\"\nsecretKey = \"abcdefg\"\n\
             localPort = {0}\n[[proxies]]\nname = \"stcp_ssh\"\ntype = \"stcp\"\n\
             secretKey = \"abcdefg\"\nlocalPort = {0}\n",
            server.port
        ),
    );
    owner.wait_line("private proxy started", WAIT);
    owner.wait_line("private proxy started", WAIT);
    let bind = free_port();
    let visitor_dir = tempfile::tempdir().expect("tempdir");
    let mut visitor = frpc_at(
        visitor_dir.path(),
        port,
        &format!(
            "{stun}[[visitors]]\nname = \"stcp-visitor\"\ntype = \"stcp\"\nserverName = \"stcp_ssh\"\n\
             secretKey = \"abcdefg\"\nbindPort = -1\n\
             [[visitors]]\nname = \"p2p_ssh_visitor\"\ntype = \"xtcp\"\nserverName = \"p2p_ssh\"\n\
             secretKey = \"abcdefg\"\nbindPort = {bind}\nfallbackTo = \"stcp-visitor\"\n\
             fallbackTimeoutMs = 500\n"
        ),
    );
    visitor.wait_line("logged in to server", WAIT);
    let out = ssh(&server.key, bind, "echo fallback-$((6*7))", None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "fallback-42",
        "ssh: {}\nvisitor: {}",
        String::from_utf8_lossy(&out.stderr),
        visitor.output()
    );
    visitor.wait_line("P2P session not made", WAIT);
}
