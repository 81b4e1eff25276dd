//! SIGHUP to a real frps applies what a running server can change —
//! `allowPorts`, `auth.token`, `webServer` credentials, `log.level` — with
//! its clients and their tunnels left alone, names the keys that need a
//! restart, and refuses a broken file.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::services::*;
use e2e::web::curl;
use e2e::*;

/// frps's file: `ports` allowed, `token`, the web server's password, `extra`.
fn frps_config(
    bind: u16,
    web: u16,
    ports: &[u16],
    token: &str,
    password: &str,
    extra: &str,
) -> String {
    let allow: Vec<String> = ports
        .iter()
        .map(|p| format!("{{ single = {p} }}"))
        .collect();
    format!(
        "bindAddr = \"127.0.0.1\"\nbindPort = {bind}\nauth.token = \"{token}\"\nallowPorts = [{}]\n\
         webServer.port = {web}\nwebServer.user = \"ops\"\nwebServer.password = \"{password}\"\n{extra}",
        allow.join(", ")
    )
}

fn frpc(dir: &Path, name: &str, frps: u16, token: &str, proxy: &str) -> Proc {
    let cfg = write_file(
        dir,
        &format!("{name}.toml"),
        &format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {frps}\nauth.token = \"{token}\"\n{proxy}"
        ),
    );
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c").arg(cfg);
    Proc::spawn(cmd)
}

#[test]
fn sighup_reloads_what_can_change_and_keeps_tunnels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bind, web, p1, p2) = (free_port(), free_port(), free_port(), free_port());
    let service = banner("hello\n");
    let cfg = write_file(
        dir.path(),
        "frps.toml",
        &frps_config(bind, web, &[p1], "one", "pw1", ""),
    );
    let mut cmd = Command::new(bin("frps"));
    cmd.arg("-c").arg(&cfg);
    let mut frps = Proc::spawn(cmd);
    frps.wait_line("frps listening for clients", WAIT);

    let mut a = frpc(dir.path(), "a", bind, "one", &tcp_proxy("p1", service, p1));
    a.wait_line("proxy started", WAIT);
    let mut b = frpc(dir.path(), "b", bind, "one", &tcp_proxy("p2", service, p2));
    let line = b.wait_line("proxy failed to start", WAIT);
    assert!(line.contains("not allowed"), "{line}");
    drop(b);
    assert_eq!(curl(web, &["-u", "ops:pw1"], "/api/serverinfo").0, 200);

    // New port, token, password and level; a vhost port needs a restart.
    let vhost = free_port();
    std::fs::write(
        &cfg,
        frps_config(
            bind,
            web,
            &[p1, p2],
            "two",
            "pw2",
            &format!("log.level = \"debug\"\nvhostHTTPPort = {vhost}\n"),
        ),
    )
    .expect("rewrite");
    frps.signal("HUP");
    frps.wait_line("config reloaded", WAIT);
    let warned = frps.wait_line("takes effect when frps restarts", WAIT);
    assert!(warned.contains("vhostHTTPPort"), "{warned}");
    assert!(
        !warned.contains("allowPorts") && !warned.contains("auth.token"),
        "{warned}"
    );

    // The tunnel that was there stays.
    assert_eq!(greeting(p1).as_deref(), Some("hello\n"));
    assert_eq!(curl(web, &["-u", "ops:pw1"], "/api/serverinfo").0, 401);
    assert_eq!(curl(web, &["-u", "ops:pw2"], "/api/serverinfo").0, 200);
    // The old token is refused now, the new one admitted, the new port allowed.
    let mut old = frpc(
        dir.path(),
        "old",
        bind,
        "one",
        &tcp_proxy("p2", service, p2),
    );
    assert_ne!(old.wait_exit(WAIT), Some(0), "{}", old.output());
    assert!(old.output().contains("invalid token"), "{}", old.output());
    let mut new = frpc(
        dir.path(),
        "new",
        bind,
        "two",
        &tcp_proxy("p2", service, p2),
    );
    new.wait_line("proxy started", WAIT);
    assert_eq!(greeting(p2).as_deref(), Some("hello\n"));
    // log.level = "debug" is in force: the new login's run id is logged.
    frps.wait_line("session run id", WAIT);

    // A broken file changes nothing.
    std::fs::write(&cfg, "bindPort = \"not a port\"\n").expect("break");
    frps.signal("HUP");
    frps.wait_line("reload refused", WAIT);
    assert_eq!(curl(web, &["-u", "ops:pw2"], "/api/serverinfo").0, 200);
    assert_eq!(greeting(p1).as_deref(), Some("hello\n"));
    let lost = a.first_of(&["connection to server lost"], Duration::from_millis(500));
    assert!(lost.is_none(), "{lost:?}");
}
