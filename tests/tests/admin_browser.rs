//! frpc's admin UI in a real browser: Debian's Chromium, driven by
//! playwright-core (tests/browser/admin_ui.mjs), against real frps and
//! frpc. The page lists the proxies (one named with HTML, quotes and
//! non-ASCII, shown as text), shows one's config, saves an edited config
//! and reloads it (the added proxy runs), shows why a broken one is
//! refused (nothing changes), and cannot be framed by another origin. It
//! saves target/admin-ui.png.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use e2e::services::*;
use e2e::*;

const TOKEN: &str = "auth.token = \"browser\"\n";
/// HTML if it were ever written as HTML, and a name that needs
/// percent-encoding in a URL.
const ODD: &str = "<img src=x onerror=\"document.body.dataset.pwned=1\">\"josé\" my proxy/ü";

/// A site of another origin (its own loopback port) whose page frames
/// `target`; its URL.
fn framing_site(target: String) -> String {
    let html = format!("<html><body><iframe src=\"{target}\"></iframe></body></html>");
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = s.read(&mut head);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/")
}

#[test]
fn admin_ui_lists_proxies_and_saves_and_reloads_an_edited_config_in_chromium() {
    let browser_dir = browser_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, frps_port) = spawn_frps(dir.path(), TOKEN);
    let echo = echo_thread();
    let admin = free_port();
    let odd_toml = ODD.replace('"', "\\\"");
    let mut frpc = spawn_frpc(
        dir.path(),
        frps_port,
        &format!(
            "{TOKEN}webServer.port = {admin}\nwebServer.user = \"ops\"\nwebServer.password = \"pw\"\n{}{}",
            tcp_proxy("ssh-box", echo, 0),
            tcp_proxy(&odd_toml, echo, 0)
        ),
    );
    frpc.wait_line("proxy started", WAIT);
    frpc.wait_line("proxy started", WAIT);
    let cfg = dir.path().join("frpc.toml");

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/admin-ui.png");
    let out = Command::new("node")
        .current_dir(&browser_dir)
        .env("ADD_TOML", tcp_proxy("added", echo, 0))
        .env("BROKEN_TOML", "bogus = 1\n")
        .env(
            "ATTACKER_URL",
            framing_site(format!("http://127.0.0.1:{admin}/static/")),
        )
        .arg("admin_ui.mjs")
        .arg(format!("http://127.0.0.1:{admin}/"))
        .args(["ops", "pw", ODD])
        .arg(&shot)
        .output()
        .expect("run node");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}\nfrpc:\n{}", frpc.output());
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    assert!(
        said.contains("framed by another origin: chrome-error:"),
        "{said}"
    );

    // The good save is on disk; the broken one never reached it.
    let file = std::fs::read_to_string(&cfg).expect("config");
    assert!(
        file.contains("\"added\"") && !file.contains("bogus"),
        "{file}"
    );
    let (code, body) = e2e::web::curl(admin, &["-u", "ops:pw"], "/api/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let names: Vec<&str> = status["tcp"]
        .as_array()
        .expect("tcp proxies")
        .iter()
        .filter(|p| p["status"] == "running")
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{body}");
    for want in ["added", "ssh-box", ODD] {
        assert!(names.contains(&want), "{want} is not running: {body}");
    }
}
