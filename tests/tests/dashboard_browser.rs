//! frps's dashboard in a real browser: Debian's Chromium, driven by
//! playwright-core (tests/browser/dashboard.mjs), against real frps and
//! frpc with traffic through a proxy; it checks the cards, the client, the
//! proxy with its annotations and its 7-day chart, and saves
//! target/dashboard.png.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use e2e::services::*;
use e2e::*;

const TOKEN: &str = "auth.token = \"browser\"\n";
/// A proxy name that needs percent-encoding in every URL.
const EXTRA: &str = "my proxy/ü";
/// An annotation of ssh-box that must be shown as text, not markup.
const OWNER: &str = "<b>ops</b> & team";

#[test]
fn dashboard_shows_a_running_tunnel_in_chromium() {
    let browser_dir = browser_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let (_frps, frps_port) = spawn_frps(
        dir.path(),
        &format!("{TOKEN}webServer.port = {web}\nwebServer.user = \"ops\"\nwebServer.password = \"pw\"\n"),
    );
    let echo = echo_thread();
    // Beats every second: the page shows the round trip they report.
    let mut frpc = spawn_frpc(
        dir.path(),
        frps_port,
        &format!(
            "{TOKEN}transport.heartbeatInterval = 1\n{}annotations.\"frp.io/owner\" = \"{OWNER}\"\n{}\
             [[proxies]]\nname = \"private-db\"\ntype = \"stcp\"\nsecretKey = \"k\"\n\
             localPort = {}\nallowUsers = [\"bob\", \"carol\"]\n",
            tcp_proxy("ssh-box", echo, 0),
            tcp_proxy(EXTRA, echo, 0),
            echo.port()
        ),
    );
    let port = port_from_line(&frpc.wait_line("proxy=ssh-box", WAIT));
    // A name that needs percent-encoding is found by the API.
    let (code, body) = e2e::web::curl(web, &["-u", "ops:pw"], "/api/traffic/my%20proxy%2F%C3%BC");
    assert_eq!(code, 200, "{body}");
    // 256 KiB each way through the tunnel.
    let mut user = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let data = pattern(256 << 10, 3);
    user.write_all(&data).expect("write");
    let mut back = vec![0u8; data.len()];
    user.read_exact(&mut back).expect("read");
    drop(user);

    let deadline = std::time::Instant::now() + WAIT;
    let rtt = || {
        let (_, body) = e2e::web::curl(web, &["-u", "ops:pw"], "/api/clients");
        let clients: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        clients[0]["heartbeatRttMs"].as_f64()
    };
    while rtt().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no round trip reported"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png");
    let out = Command::new("node")
        .env("EXTRA_PROXY", EXTRA)
        .env("ANNOTATION", format!("frp.io/owner: {OWNER}"))
        .env("PRIVATE_PROXY", "private-db")
        .env("PRIVATE_USERS", "bob, carol")
        .current_dir(&browser_dir)
        .arg("dashboard.mjs")
        .arg(format!("http://127.0.0.1:{web}/"))
        .args(["ops", "pw", "ssh-box", hostname.trim()])
        .arg(&shot)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shot.exists(), "no screenshot at {}", shot.display());
}
