//! Private proxies end to end, with real parts: an stcp proxy in front of a
//! real OpenSSH server and an sudp proxy in front of dnsmasq, run by one
//! frpc; another frpc (another user) reaches them only through its
//! visitors, with the real `ssh` and `dig`. Wrong secrets, users outside
//! `allowUsers` and unknown names are refused with a clear error on the
//! visitor's side and a line in frps's log; frps's API lists the proxies
//! without their secret; reload adds and removes visitors.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e::services::{banner, eventually, greeting};
use e2e::sshd::{current_user, keygen, require_openssh, spawn_sshd, ssh_command};
use e2e::web::curl;
use e2e::*;

const TOKEN: &str = "auth.token = \"private-e2e\"\n";
const SECRET: &str = "s3cr3t-of-the-ssh-proxy";

/// Writes `dir/frpc.toml` for `user`, with frpc's admin API on `admin`.
fn frpc_config(dir: &Path, frps: u16, user: &str, admin: u16, body: &str) -> PathBuf {
    write_file(
        dir,
        "frpc.toml",
        &format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {frps}\nuser = \"{user}\"\n{TOKEN}\
             webServer.port = {admin}\n{body}"
        ),
    )
}

fn start_frpc(cfg: &Path) -> Proc {
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c").arg(cfg);
    Proc::spawn(cmd)
}

fn frpc(sub: &str, cfg: &Path) -> String {
    let out = Command::new(bin("frpc"))
        .arg(sub)
        .arg("-c")
        .arg(cfg)
        .output()
        .expect("run frpc");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn visitor(name: &str, kind: &str, server: (&str, &str), secret: &str, port: u16) -> String {
    format!(
        "[[visitors]]\nname = \"{name}\"\ntype = \"{kind}\"\nserverUser = \"{}\"\n\
         serverName = \"{}\"\nsecretKey = \"{secret}\"\nbindPort = {port}\n",
        server.0, server.1
    )
}

fn ssh(key: &Path, port: u16, remote: &str) -> Output {
    let mut cmd = ssh_command(key);
    cmd.arg("-p")
        .arg(port.to_string())
        .arg(format!("{}@127.0.0.1", current_user()))
        .arg(remote);
    cmd.output().expect("run ssh")
}

fn dig(port: u16, name: &str) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string()])
        .args(["+short", "+tries=3", "+time=2", name])
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What a visitor's port gives a user whose visit frps refuses: the
/// connection closes without a byte.
fn refused_at(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("visitor listens");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "a refused visit carried {got:?}");
}

#[test]
fn stcp_carries_ssh_and_sudp_carries_dns_through_visitors_only() {
    require_openssh();
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_key, user_key) = (dir.path().join("host_key"), dir.path().join("id"));
    keygen(&host_key);
    keygen(&user_key);
    let authorized = dir.path().join("authorized_keys");
    std::fs::copy(user_key.with_extension("pub"), &authorized).expect("authorized_keys");
    let (_sshd, sshd_port) = spawn_sshd(dir.path(), &host_key, &authorized);
    let (mut dns, dns_port) = e2e::services::dnsmasq("/private.test/10.9.8.7");

    let web = free_port();
    let (mut frps, port) = spawn_frps(
        dir.path(),
        &format!("{TOKEN}webServer.port = {web}\nwebServer.user = \"ops\"\nwebServer.password = \"pw\"\n"),
    );
    let alice_dir = tempfile::tempdir().expect("tempdir");
    let alice = frpc_config(
        alice_dir.path(),
        port,
        "alice",
        free_port(),
        &format!(
            "[[proxies]]\nname = \"ssh\"\ntype = \"stcp\"\nsecretKey = \"{SECRET}\"\n\
             localPort = {sshd_port}\nallowUsers = [\"bob\"]\n\
             [[proxies]]\nname = \"dns\"\ntype = \"sudp\"\nsecretKey = \"d\"\n\
             localPort = {dns_port}\nallowUsers = [\"*\"]\n"
        ),
    );
    let mut owner = start_frpc(&alice);
    owner.wait_line("private proxy started", WAIT);
    owner.wait_line("private proxy started", WAIT);

    let (ssh_port, dns_local, wrong, unknown) =
        (free_port(), free_udp_port(), free_port(), free_port());
    let bob_dir = tempfile::tempdir().expect("tempdir");
    let bob = frpc_config(
        bob_dir.path(),
        port,
        "bob",
        free_port(),
        &[
            visitor("ssh-v", "stcp", ("alice", "ssh"), SECRET, ssh_port),
            visitor("dns-v", "sudp", ("alice", "dns"), "d", dns_local),
            visitor("guess", "stcp", ("alice", "ssh"), "a guess", wrong),
            visitor("nope", "stcp", ("alice", "no-such"), SECRET, unknown),
        ]
        .concat(),
    );
    let mut visitors = start_frpc(&bob);
    visitors.wait_line("logged in to server", WAIT);

    // SSH through the stcp visitor: a command only the remote shell answers,
    // then a megabyte up and its hash back.
    let out = ssh(&user_key, ssh_port, "echo private-$((6*7))");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "private-42",
        "ssh: {}\nfrps: {}\nowner: {}\nvisitor: {}",
        String::from_utf8_lossy(&out.stderr),
        frps.output(),
        owner.output(),
        visitors.output()
    );
    // DNS through the sudp visitor.
    assert_eq!(dig(dns_local, "a.private.test"), "10.9.8.7");
    dns.wait_line("a.private.test", WAIT);

    // A wrong secret and an unknown name: refused, said on both sides.
    refused_at(wrong);
    visitors.wait_line("wrong secretKey", WAIT);
    frps.wait_line("visitor refused: wrong secretKey", WAIT);
    // Every local user can make a visitor fail: a repeat is not logged again.
    refused_at(wrong);
    assert!(
        visitors
            .first_of(&["wrong secretKey"], Duration::from_secs(2))
            .is_none(),
        "a repeated refusal was warned again"
    );
    refused_at(unknown);
    visitors.wait_line("no such proxy", WAIT);
    frps.wait_line("visitor refused: no such proxy", WAIT);

    // A user outside allowUsers, with the right secret.
    let carol_dir = tempfile::tempdir().expect("tempdir");
    let carol_port = free_port();
    let carol = frpc_config(
        carol_dir.path(),
        port,
        "carol",
        free_port(),
        &visitor("ssh-v", "stcp", ("alice", "ssh"), SECRET, carol_port),
    );
    let mut outsider = start_frpc(&carol);
    outsider.wait_line("logged in to server", WAIT);
    refused_at(carol_port);
    outsider.wait_line("not in the proxy's allowUsers", WAIT);
    frps.wait_line(
        "visitor refused: this user is not in the proxy's allowUsers",
        WAIT,
    );

    // frps lists the private proxies as frp does, with their traffic and
    // without their secret (it never had it).
    let (code, stcp) = curl(web, &["-u", "ops:pw"], "/api/proxy/stcp");
    assert_eq!(code, 200, "{stcp}");
    let v: serde_json::Value = serde_json::from_str(&stcp).expect("json");
    let ssh_row = &v["proxies"][0];
    assert_eq!(ssh_row["name"], "alice.ssh", "{stcp}");
    assert_eq!(ssh_row["conf"]["allowUsers"], serde_json::json!(["bob"]));
    assert!(ssh_row["todayTrafficIn"].as_u64() > Some(0), "{stcp}");
    assert!(!stcp.contains(SECRET), "{stcp}");
    let (_, sudp) = curl(web, &["-u", "ops:pw"], "/api/proxy/sudp");
    assert!(sudp.contains("alice.dns"), "{sudp}");

    // `frpc status` lists the visitors.
    let said = frpc("status", &bob);
    for name in ["ssh-v", "dns-v"] {
        let row = said
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{said}"));
        assert!(row.contains("running"), "{said}");
    }
}

/// Reload adds and removes visitors as it does proxies; the proxy's client
/// here uses separate work connections (`tcpMux = false`).
#[test]
fn reload_adds_and_removes_visitors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), TOKEN);
    let hello = banner("hello from a private service\n");
    let owner_dir = tempfile::tempdir().expect("tempdir");
    let owner_cfg = frpc_config(
        owner_dir.path(),
        port,
        "",
        free_port(),
        &format!(
            "transport.tcpMux = false\n[[proxies]]\nname = \"hello\"\ntype = \"stcp\"\n\
             secretKey = \"k\"\nlocalPort = {}\n",
            hello.port()
        ),
    );
    let mut owner = start_frpc(&owner_cfg);
    owner.wait_line("private proxy started", WAIT);

    let (first, second) = (free_port(), free_port());
    let vdir = tempfile::tempdir().expect("tempdir");
    let admin = free_port();
    let body = |port| visitor(&format!("v{port}"), "stcp", ("", "hello"), "k", port);
    let cfg = frpc_config(vdir.path(), port, "", admin, &body(first));
    let mut v = start_frpc(&cfg);
    v.wait_line("logged in to server", WAIT);
    eventually("the first visitor answers", || {
        greeting(first).as_deref() == Some("hello from a private service\n")
    });

    frpc_config(vdir.path(), port, "", admin, &body(second));
    let said = frpc("reload", &cfg);
    assert!(said.contains("reload"), "{said}");
    eventually("the second visitor answers", || {
        greeting(second).as_deref() == Some("hello from a private service\n")
    });
    eventually("the first visitor is gone", || {
        TcpStream::connect(("127.0.0.1", first)).is_err()
    });
    let status = frpc("status", &cfg);
    assert!(
        status.contains(&format!("v{second}")) && !status.contains(&format!("v{first}")),
        "{status}"
    );
    // Without serverUser (and no user of its own) the visitor's remote
    // address is the proxy's name alone.
    let row = status
        .lines()
        .find(|l| l.starts_with(&format!("v{second} ")))
        .expect("listed");
    assert!(
        row.contains(" hello") && !row.contains(".hello"),
        "{status}"
    );
}
