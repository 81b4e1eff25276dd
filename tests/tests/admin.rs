//! frpc's admin API and commands against real frps and frpc processes:
//! `frpc reload` (and SIGHUP) changes only what changed — an SSH session
//! through an unchanged proxy keeps running, a changed proxy comes back on
//! its port, an invalid file is refused with every error; `frpc status`;
//! the API's endpoints with basic auth, read with curl; `/metrics` read by
//! the Prometheus project's own Python parser; `frpc stop`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::services::*;
use e2e::sshd::{current_user, keygen, require_openssh, spawn_sshd, ssh_command};
use e2e::web::{curl, prometheus_samples};
use e2e::*;

const TOKEN: &str = "auth.token = \"admin-test\"\n";

fn tcp(name: &str, local: SocketAddr, remote: u16) -> String {
    tcp_proxy(name, local, remote)
}

/// The frpc config file: server, admin API, then `proxies`.
fn client_config(frps: u16, admin: u16, web_extra: &str, proxies: &str) -> String {
    format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {frps}\n{TOKEN}webServer.port = {admin}\n{web_extra}{proxies}"
    )
}

/// `frpc SUBCOMMAND -c cfg`.
fn frpc(sub: &str, cfg: &Path) -> Output {
    Command::new(bin("frpc"))
        .arg(sub)
        .arg("-c")
        .arg(cfg)
        .output()
        .expect("run frpc")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An interactive `ssh … cat`: what is written comes back line by line.
struct SshSession {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl SshSession {
    fn open(key: &Path, port: u16) -> SshSession {
        let mut cmd = ssh_command(key);
        cmd.arg("-p")
            .arg(port.to_string())
            .arg(format!("{}@127.0.0.1", current_user()))
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn ssh");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        SshSession { child, out }
    }

    /// Sends `line` and reads it back.
    fn echo(&mut self, line: &str) -> String {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to ssh");
        stdin.flush().expect("flush");
        let mut back = String::new();
        self.out.read_line(&mut back).expect("read from ssh");
        back.trim_end().to_owned()
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    frps: Proc,
    frps_port: u16,
    frpc: Proc,
    admin: u16,
}

/// frps, and frpc with the admin API and `proxies`, every proxy started.
fn rig(web_extra: &str, proxies: &str, started: usize) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let (frps, frps_port) = spawn_frps(dir.path(), TOKEN);
    let admin = free_port();
    let cfg = write_file(
        dir.path(),
        "frpc.toml",
        &client_config(frps_port, admin, web_extra, proxies),
    );
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c").arg(&cfg);
    let mut frpc = Proc::spawn(cmd);
    for _ in 0..started {
        frpc.wait_line("proxy started", WAIT);
    }
    Rig {
        _dir: dir,
        cfg,
        frps,
        frps_port,
        frpc,
        admin,
    }
}

impl Rig {
    fn rewrite(&self, web_extra: &str, proxies: &str) {
        std::fs::write(
            &self.cfg,
            client_config(self.frps_port, self.admin, web_extra, proxies),
        )
        .expect("rewrite config");
    }

    fn status(&self) -> String {
        let out = frpc("status", &self.cfg);
        assert!(out.status.success(), "frpc status: {}", text(&out));
        text(&out)
    }

    /// The port frps opened for proxy `name`, from frpc's log.
    fn port_of(&mut self, name: &str) -> u16 {
        let needle = format!("proxy={name} ");
        let line = self
            .frpc
            .log
            .iter()
            .rev()
            .find(|l| l.contains("proxy started") && l.contains(&needle))
            .cloned()
            .unwrap_or_else(|| panic!("no start of {name}:\n{}", self.frpc.output()));
        port_from_line(&line)
    }
}

/// The status table's row for proxy `name`.
fn row<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn reload_changes_only_what_changed_and_keeps_ssh_sessions() {
    require_openssh();
    let keys = tempfile::tempdir().expect("tempdir");
    let (host_key, user_key) = (keys.path().join("host"), keys.path().join("user"));
    keygen(&host_key);
    keygen(&user_key);
    let authorized = keys.path().join("authorized_keys");
    std::fs::copy(user_key.with_extension("pub"), &authorized).expect("authorized_keys");
    let (_sshd, sshd_port) = spawn_sshd(keys.path(), &host_key, &authorized);
    let sshd = SocketAddr::from(([127, 0, 0, 1], sshd_port));
    let (a, b) = (banner("A\n"), banner("B\n"));
    let (old_port, new_port) = (free_port(), free_port());

    let ssh_proxy = tcp("ssh", sshd, 0);
    let mut r = rig("", &format!("{ssh_proxy}{}", tcp("old", a, old_port)), 2);
    let mut session = SshSession::open(&user_key, r.port_of("ssh"));
    assert_eq!(session.echo("before"), "before");
    assert_eq!(greeting(old_port).as_deref(), Some("A\n"));

    // Remove one proxy, add another: the SSH session does not notice.
    r.rewrite("", &format!("{ssh_proxy}{}", tcp("new", a, new_port)));
    let out = frpc("reload", &r.cfg);
    assert!(out.status.success(), "frpc reload: {}", text(&out));
    assert_eq!(session.echo("after add and remove"), "after add and remove");
    eventually("the removed proxy's port closes", || {
        greeting(old_port).is_none()
    });
    eventually("the added proxy answers", || {
        greeting(new_port).as_deref() == Some("A\n")
    });

    // Change a proxy: it closes and comes back on the same port.
    r.rewrite("", &format!("{ssh_proxy}{}", tcp("new", b, new_port)));
    let out = frpc("reload", &r.cfg);
    assert!(out.status.success(), "frpc reload: {}", text(&out));
    eventually("the changed proxy answers anew", || {
        greeting(new_port).as_deref() == Some("B\n")
    });
    assert_eq!(session.echo("after change"), "after change");

    // An invalid file is refused with every error, and nothing changes.
    let broken = format!(
        "{ssh_proxy}[[proxies]]\nname = \"new\"\ntype = \"tcp\"\nlocalPort = 0\nremotePort = {new_port}\n"
    );
    r.rewrite("bogus = 1\n", &broken);
    let out = frpc("reload", &r.cfg);
    let said = text(&out);
    assert!(!out.status.success(), "a broken file was accepted: {said}");
    assert!(said.contains("running config stays"), "{said}");
    assert!(
        said.contains("localPort must be between 1 and 65535"),
        "{said}"
    );
    assert!(said.contains("unknown key `bogus`"), "{said}");
    assert_eq!(greeting(new_port).as_deref(), Some("B\n"));
    assert_eq!(
        session.echo("after a refused reload"),
        "after a refused reload"
    );

    // SIGHUP reloads too.
    r.rewrite(
        "",
        &format!("{ssh_proxy}{}{}", tcp("new", b, new_port), tcp("hup", a, 0)),
    );
    r.frpc.signal("HUP");
    r.frpc.wait_line("config reloaded", WAIT);
    eventually("frpc status shows the proxy SIGHUP added", || {
        row(&r.status(), "hup").is_some_and(|l| l.contains("running"))
    });
    let status = r.status();
    assert!(
        row(&status, "ssh").is_some_and(|l| l.contains("running")),
        "{status}"
    );
    assert!(row(&status, "old").is_none(), "{status}");
    assert_eq!(session.echo("at the end"), "at the end");
    // frps saw each change as a close and a registration, never the ssh proxy.
    let frps_log = r.frps.output();
    assert!(
        !frps_log.contains("proxy closed by client proxy=ssh"),
        "{frps_log}"
    );
}

#[test]
fn admin_api_answers_as_frp_does_with_liveness_and_metrics() {
    let web = "webServer.user = \"admin\"\nwebServer.password = \"s3cret\"\n";
    let a = banner("A\n");
    let mut r = rig(web, &tcp("web", a, 0), 1);
    let port = r.port_of("web");
    let auth = ["-u", "admin:s3cret"];

    assert_eq!(curl(r.admin, &[], "/healthz").0, 200);
    let (code, _) = curl(r.admin, &["-u", "admin:wrong"], "/api/status");
    assert_eq!(code, 401);
    let (code, body) = curl(r.admin, &auth, "/api/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let web_proxy = &status["tcp"][0];
    assert_eq!(web_proxy["name"], "web", "{body}");
    assert_eq!(web_proxy["status"], "running", "{body}");
    assert_eq!(web_proxy["local_addr"], a.to_string(), "{body}");
    assert_eq!(
        web_proxy["remote_addr"],
        format!("127.0.0.1:{port}"),
        "{body}"
    );

    // Liveness: connected, and the certificate frps says it has.
    let (_, body) = curl(r.admin, &auth, "/api/liveness");
    let live: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(live["state"], "connected", "{body}");
    let fp = live["server_fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    let logged = r.frps.wait_line("fingerprint (SHA-256)", WAIT);
    assert!(
        logged.contains(&fp),
        "frps logged another certificate than {fp}: {logged}"
    );

    // The config file: read, a broken upload refused, a good one written.
    let (code, body) = curl(r.admin, &auth, "/api/config");
    assert_eq!(
        (code, body.as_str()),
        (200, std::fs::read_to_string(&r.cfg).expect("cfg").as_str())
    );
    refused_uploads_leave_the_file(&r);
    let next = client_config(
        r.frps_port,
        r.admin,
        web,
        &format!("{}{}", tcp("web", a, 0), tcp("more", a, 0)),
    );
    let (code, body) = curl(
        r.admin,
        &["-u", "admin:s3cret", "-X", "PUT", "--data-binary", &next],
        "/api/config",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(std::fs::read_to_string(&r.cfg).expect("cfg"), next);
    assert_eq!(curl(r.admin, &auth, "/api/reload").0, 200);
    eventually("the uploaded proxy runs", || {
        row(&r.status(), "more").is_some_and(|l| l.contains("running"))
    });
    assert_eq!(greeting(port).as_deref(), Some("A\n"));

    // /metrics, as Prometheus would read it.
    let (code, body) = curl(r.admin, &auth, "/metrics");
    assert_eq!(code, 200);
    check_metrics(&prometheus_samples(&body));

    // frpc stop: it answers, then exits cleanly.
    let out = frpc("stop", &r.cfg);
    assert!(out.status.success(), "frpc stop: {}", text(&out));
    assert_eq!(r.frpc.wait_exit(WAIT), Some(0), "{}", r.frpc.output());
}

/// A config upload that would not load, and one over the 1 MiB bound, are
/// refused and leave the file on disk as it was.
fn refused_uploads_leave_the_file(r: &Rig) {
    let before = std::fs::read_to_string(&r.cfg).expect("cfg");
    let (code, body) = curl(
        r.admin,
        &[
            "-u",
            "admin:s3cret",
            "-X",
            "PUT",
            "--data-binary",
            "serverPort = 0\nnope = 1\n",
        ],
        "/api/config",
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("serverPort") && body.contains("nope"),
        "{body}"
    );
    assert_eq!(std::fs::read_to_string(&r.cfg).expect("cfg"), before);
    // A body over the 1 MiB bound is refused unread.
    let huge = r._dir.path().join("huge");
    std::fs::write(&huge, vec![b'#'; 2 << 20]).expect("huge");
    let upload = format!("@{}", huge.display());
    // Without `Expect: 100-continue`, whose 1 s wait a loaded machine can
    // outlast (curl then reports the 100 as the status).
    let (code, _) = curl(
        r.admin,
        &[
            "-u",
            "admin:s3cret",
            "-X",
            "PUT",
            "-H",
            "Expect:",
            "--data-binary",
            &upload,
        ],
        "/api/config",
    );
    assert_eq!(code, 413);
    assert_eq!(std::fs::read_to_string(&r.cfg).expect("cfg"), before);
}

/// frpc's /metrics after [`admin_api_answers_as_frp_does_with_liveness_and_metrics`]:
/// connected, two tcp proxies running, and each proxy's traffic — "web"
/// has sent its two-byte banner to its one user and received nothing;
/// "more" has carried nothing.
fn check_metrics(samples: &str) {
    for want in [
        "frp_client_connected{} 1.0",
        "frp_client_proxy_counts{status=running,type=tcp} 2.0",
        "frp_client_outages_total{} 0.0",
    ] {
        assert!(
            samples.lines().any(|l| l == want),
            "{want} missing:\n{samples}"
        );
    }
    assert!(
        samples.contains("process_resident_memory_bytes{}"),
        "{samples}"
    );
    let value = |series: &str| -> f64 {
        let line = samples
            .lines()
            .find(|l| l.starts_with(&format!("{series} ")))
            .unwrap_or_else(|| panic!("{series} missing:\n{samples}"));
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("value")
    };
    for (series, want) in [
        (
            "frp_client_proxy_from_local_bytes_total{name=web,type=tcp}",
            2.0,
        ),
        (
            "frp_client_proxy_to_local_bytes_total{name=web,type=tcp}",
            0.0,
        ),
        (
            "frp_client_proxy_from_local_bytes_total{name=more,type=tcp}",
            0.0,
        ),
        ("frp_client_proxy_connections{name=more,type=tcp}", 0.0),
    ] {
        assert_eq!(value(series), want, "{series}:\n{samples}");
    }
}

#[test]
fn commands_say_plainly_when_the_admin_api_is_off_or_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let off = write_file(dir.path(), "off.toml", "serverPort = 7000\n");
    for sub in ["status", "reload", "stop"] {
        let out = frpc(sub, &off);
        assert!(!out.status.success());
        let said = text(&out);
        assert!(said.contains("webServer.port is not set"), "{sub}: {said}");
        // Each subcommand by its own name (status used to say "liveness").
        assert!(
            said.contains("frpc status, reload and stop"),
            "{sub}: {said}"
        );
        assert!(!said.contains("liveness"), "{sub}: {said}");
    }
    let down = write_file(
        dir.path(),
        "down.toml",
        &format!("serverPort = 7000\nwebServer.port = {}\n", free_port()),
    );
    let out = frpc("status", &down);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot reach the admin API"),
        "{}",
        text(&out)
    );
}

#[test]
fn admin_api_over_tls_with_its_own_certificate() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = e2e::sites::self_signed(certs.path(), "localhost", "IP:127.0.0.1");
    let web = format!(
        "webServer.tls.certFile = \"{}\"\nwebServer.tls.keyFile = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let r = rig(&web, &tcp("web", banner("A\n"), 0), 1);
    let url = format!("https://127.0.0.1:{}/api/status", r.admin);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&cert)
        .arg(&url)
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("\"name\":\"web\""), "{body}");
    // Plain HTTP gets no answer from a TLS port.
    assert_ne!(curl(r.admin, &[], "/healthz").0, 200);
    // frpc status and reload speak TLS to it, trusting exactly the
    // certificate the config names.
    let out = frpc("status", &r.cfg);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("web"), "{}", text(&out));
    let out = frpc("reload", &r.cfg);
    assert!(out.status.success(), "{}", text(&out));
    // A config naming another certificate is not fooled by the server's.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let (other, _) = e2e::sites::self_signed(elsewhere.path(), "localhost", "IP:127.0.0.1");
    let cfg = std::fs::read_to_string(&r.cfg).expect("config");
    let cfg = cfg.replace(&cert.display().to_string(), &other.display().to_string());
    let wrong = write_file(elsewhere.path(), "other.toml", &cfg);
    let said = text(&frpc("status", &wrong));
    assert!(said.contains("presents another certificate"), "{said}");
}

/// frps as a process on a port chosen here, so it can come back on it.
fn frps_on(dir: &Path, port: u16) -> Proc {
    let cfg = write_file(
        dir,
        "frps.toml",
        &format!("bindAddr = \"127.0.0.1\"\nbindPort = {port}\n{TOKEN}"),
    );
    let mut cmd = Command::new(bin("frps"));
    cmd.arg("-c").arg(cfg);
    let mut p = Proc::spawn(cmd);
    p.wait_line("frps listening for clients", WAIT);
    p
}

#[test]
fn liveness_shows_an_outage_the_backoff_and_the_reconnect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frps_port = free_port();
    let frps = frps_on(dir.path(), frps_port);
    let admin = free_port();
    let cfg = write_file(
        dir.path(),
        "frpc.toml",
        &format!(
            "{}transport.heartbeatInterval = 1\n{}",
            client_config(frps_port, admin, "", ""),
            tcp("web", banner("A\n"), 0)
        ),
    );
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c").arg(&cfg);
    let mut client = Proc::spawn(cmd);
    client.wait_line("proxy started", WAIT);
    let live = || -> serde_json::Value {
        serde_json::from_str(&curl(admin, &[], "/api/liveness").1).unwrap_or_default()
    };
    eventually("a beat's round trip is known", || {
        live()["rtt_ms"].as_f64() > Some(0.0)
    });

    drop(frps);
    eventually("the outage shows, with the backoff", || {
        let l = live();
        l["state"] == "reconnecting"
            && l["outages"] == 1
            && l["backoff_seconds"].as_f64() > Some(0.0)
    });
    let samples = prometheus_samples(&curl(admin, &[], "/metrics").1);
    assert!(
        samples.lines().any(|l| l == "frp_client_connected{} 0.0"),
        "{samples}"
    );
    assert!(
        samples
            .lines()
            .any(|l| l == "frp_client_outages_total{} 1.0"),
        "{samples}"
    );

    let _frps = frps_on(dir.path(), frps_port);
    eventually("back, counted as a reconnect", || {
        let l = live();
        l["state"] == "connected"
            && l["reconnects"] == 1
            && l["outage_seconds_total"].as_f64() > Some(0.0)
    });
    let status = text(&frpc("status", &cfg));
    assert!(
        status.contains("connected") && status.contains("reconnects 1"),
        "{status}"
    );
}

#[test]
fn frp_proxy_keys_enabled_transport_metadatas_and_annotations() {
    let a = banner("A\n");
    let with = |b_enabled: bool| {
        format!(
            "{}enabled = true\ntransport.useEncryption = true\ntransport.useCompression = true\n\
             metadatas.owner = \"ops\"\nannotations.note = \"kept\"\n{}enabled = {b_enabled}\n",
            tcp("on", a, 0),
            tcp("off", a, 0)
        )
    };
    let mut r = rig("", &with(false), 1);
    // Said at start (the rig has read the log up to the proxy's start).
    let log = r.frpc.output();
    let said =
        |l: &str| l.contains("useCompression is not supported yet") && l.contains("proxy=on");
    assert!(log.lines().any(said), "{log}");
    let status = r.status();
    assert!(
        row(&status, "on").is_some_and(|l| l.contains("running")),
        "{status}"
    );
    assert!(
        row(&status, "off").is_none(),
        "a disabled proxy started: {status}"
    );
    // Enabling it is a reload away.
    r.rewrite("", &with(true));
    let out = frpc("reload", &r.cfg);
    assert!(out.status.success(), "{}", text(&out));
    eventually("the enabled proxy runs", || {
        row(&r.status(), "off").is_some_and(|l| l.contains("running"))
    });
}

/// Serves `html` to every request, from a port of its own (so another
/// origin than the admin API's).
fn attacker_site(html: String) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut head);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    port
}

/// What a page of another origin tries against the admin API.
fn attack_page(admin: u16) -> String {
    format!(
        r##"<html><body data-log=""><iframe name="sink"></iframe>
<form id="f" method="POST" action="http://127.0.0.1:{admin}/api/stop" target="sink"><input name="a" value="b"></form>
<script>
const A = "http://127.0.0.1:{admin}";
const log = (s) => {{ document.body.dataset.log += s + "; "; }};
async function run() {{
  if (location.hash === "#nav") {{ document.title = "done"; return; }}
  await new Promise((ok) => {{ const i = new Image(); i.onload = i.onerror = ok; i.src = A + "/api/reload"; }});
  log("img sent");
  try {{ await fetch(A + "/api/reload", {{ mode: "no-cors" }}); log("no-cors reload sent"); }} catch (e) {{ log("no-cors reload: " + e); }}
  try {{ await fetch(A + "/api/stop", {{ method: "POST", mode: "no-cors", body: "x" }}); log("no-cors stop sent"); }} catch (e) {{ log("no-cors stop: " + e); }}
  try {{ const r = await fetch(A + "/api/config"); log("config read: " + r.status); }} catch (e) {{ log("config unreadable"); }}
  await new Promise((ok) => {{ document.querySelector("iframe").onload = ok; document.getElementById("f").submit(); setTimeout(ok, 10000); }});
  log("form posted");
  document.title = "done";
}}
run();
</script></body></html>"##
    )
}

/// Pages of other origins, in Chromium, cannot drive frpc's admin API
/// (no credentials, frp's default): a form POST to /api/stop, GET
/// /api/reload as an image, a no-cors fetch and a navigation, a no-cors
/// POST; a name re-pointed at 127.0.0.1 cannot read the config with the
/// token. frpc keeps running, unreloaded; frp's own commands still work.
#[test]
fn pages_of_other_origins_cannot_drive_the_admin_api() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "needs Chromium and playwright-core: `.ci/install-deps` installs both (make test runs it)"
    );
    let echo = echo_thread();
    let r = rig("", &tcp("one", echo, 0), 1);
    // A second proxy in the file: it starts only if something reloads.
    r.rewrite(
        "",
        &format!("{}{}", tcp("one", echo, 0), tcp("two", echo, 0)),
    );
    let site = attacker_site(attack_page(r.admin));
    let out = Command::new("node")
        .current_dir(&browser_dir)
        .arg("cross_origin.mjs")
        .arg(format!("http://127.0.0.1:{site}/"))
        .arg(r.admin.to_string())
        .output()
        .expect("run node");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("form posted"), "{said}");
    assert!(said.contains("navigation to /api/reload: 403"), "{said}");
    assert!(said.contains("rebinding /api/config: 403"), "{said}");
    assert!(
        !said.contains("admin-test"),
        "the token reached the page: {said}"
    );
    let (code, status) = curl(r.admin, &[], "/api/status");
    assert_eq!(code, 200, "frpc stopped: {said}");
    assert!(
        !status.contains("\"two\""),
        "a page reloaded frpc: {status}"
    );
    // The same by curl: a name as Host, a post from another origin.
    let (code, body) = curl(r.admin, &["-H", "Host: attacker.example"], "/api/config");
    assert_eq!(code, 403, "{body}");
    let evil = ["-d", "a=b", "-H", "Origin: http://attacker.example"];
    assert_eq!(curl(r.admin, &evil, "/api/stop").0, 403);
    // frp's commands are programs, not pages: they still work.
    let out = frpc("reload", &r.cfg);
    assert!(out.status.success(), "frpc reload: {}", text(&out));
    eventually("the reload started two", || {
        curl(r.admin, &[], "/api/status").1.contains("\"two\"")
    });
}

/// A config sent to the admin API is checked without trusting it: a token
/// command is refused and never run (even by an frpc that may run one), an
/// include that reaches outside the config's folder is refused without
/// listing or quoting what is there, an included file's problem is not
/// quoted back, and legacy INI `[range:]` sections are bounded in total.
#[test]
fn uploaded_configs_run_nothing_and_quote_no_other_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, frps_port) = spawn_frps(dir.path(), TOKEN);
    let admin = free_port();
    let web = "webServer.user = \"admin\"\nwebServer.password = \"s3cret\"\n";
    let base = client_config(frps_port, admin, web, "");
    let cfg = write_file(dir.path(), "frpc.toml", &base);
    let mut cmd = Command::new(bin("frpc"));
    cmd.args(["--allow-unsafe", "TokenSourceExec", "-c"])
        .arg(&cfg);
    let mut frpc = Proc::spawn(cmd);
    frpc.wait_line("logged in", WAIT);
    let put = |text: &str| {
        curl(
            admin,
            &["-u", "admin:s3cret", "-X", "PUT", "--data-binary", text],
            "/api/config",
        )
    };
    let marker = dir.path().join("ran");
    let exec = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {frps_port}\nwebServer.port = {admin}\n{web}\
         auth.tokenSource.type = \"exec\"\nauth.tokenSource.exec.command = \"/usr/bin/touch\"\n\
         auth.tokenSource.exec.args = [\"{}\"]\n",
        marker.display()
    );
    let (code, body) = put(&exec);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("auth.tokenSource") && body.contains("may not run a command"),
        "{body}"
    );
    assert!(!marker.exists(), "the uploaded token command ran");
    let file_token = format!(
        "{base}auth.tokenSource.type = \"file\"\nauth.tokenSource.file.path = \"/etc/passwd\"\n"
    );
    let (code, body) = put(&file_token.replace("auth.token = \"admin-test\"\n", ""));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("may not name a token file"), "{body}");

    let (code, body) = put(&format!("{base}includes = [\"/etc/*\"]\n"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("outside the config's folder"), "{body}");
    for leak in ["passwd", "hostname", "root:"] {
        assert!(!body.contains(leak), "{leak} in {body}");
    }
    // Refused before any walk: over /usr (a symlink loop in it) the glob
    // would outlast curl's 10 s; so would following a link out of the
    // folder.
    std::os::unix::fs::symlink("/usr", dir.path().join("rootlink")).expect("symlink");
    for walk in [
        "/usr/**/nomatch.toml",
        "../../**/nomatch.toml",
        "**/*.toml",
        "*/*/*.toml",
    ] {
        let (code, body) = put(&format!("{base}includes = [\"{walk}\"]\n"));
        assert_eq!(code, 400, "{walk}: {body}");
        let why = ["outside the config's folder", "`**` is not allowed"];
        assert!(why.iter().any(|w| body.contains(w)), "{body}");
    }

    std::fs::create_dir(dir.path().join("confd")).expect("mkdir");
    write_file(
        &dir.path().join("confd"),
        "secret.toml",
        "password = hunter2-secret\n",
    );
    let (code, body) = put(&format!("{base}includes = [\"confd/*.toml\"]\n"));
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("secret.toml") && !body.contains("hunter2"),
        "{body}"
    );

    let ini = (0..3)
        .map(|i| format!("[range:r{i}]\ntype = tcp\nlocal_port = 1-5000\nremote_port = 1-5000\n"))
        .collect::<String>();
    let (code, body) = put(&format!(
        "[common]\nserver_addr = 127.0.0.1\nserver_port = {frps_port}\n{ini}"
    ));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at most 10000 proxies"), "{body}");
    assert_eq!(std::fs::read_to_string(&cfg).expect("cfg"), base);
}

/// A proxy frps refused (its port held by another client) is registered
/// again every 30 s, as frp does, and starts once the port is free;
/// meanwhile `frpc status` shows it with frps's error, lists its private
/// proxies and visitors, and those the config names that are not
/// supported yet.
#[test]
fn refused_proxies_are_retried_and_status_lists_every_configured_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), TOKEN);
    let wanted = free_port();
    let a_dir = tempfile::tempdir().expect("tempdir");
    let mut holder = spawn_frpc(
        a_dir.path(),
        port,
        &format!("{TOKEN}{}", tcp("first", banner("first\n"), wanted)),
    );
    holder.wait_line("proxy started", WAIT);
    let admin = free_port();
    let proxies = format!(
        "{}[[proxies]]\nname = \"private\"\ntype = \"stcp\"\nsecretKey = \"s\"\nlocalPort = 22\n\
         [[proxies]]\nname = \"red\\u001b[31mname\"\ntype = \"xtcp\"\nlocalPort = 22\n\
         [[visitors]]\nname = \"to-private\"\ntype = \"stcp\"\nserverName = \"private\"\n\
         secretKey = \"s\"\nbindPort = {}\n\
         [[visitors]]\nname = \"p2p\"\ntype = \"stcp\"\nserverName = \"private\"\nbindPort = -1\n\
         [visitors.plugin]\ntype = \"virtual_net\"\n",
        tcp("second", banner("second\n"), wanted),
        free_port()
    );
    let cfg = write_file(
        dir.path(),
        "frpc.toml",
        &client_config(port, admin, "", &proxies),
    );
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c").arg(&cfg);
    let mut second = Proc::spawn(cmd);
    let line = second.wait_line("proxy failed to start", WAIT);
    assert!(line.contains("trying again every 30 s"), "{line}");
    let said = text(&frpc("status", &cfg));
    let row = |name: &str| {
        said.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{said}"))
            .to_owned()
    };
    assert!(
        row("second").contains("start error") && row("second").contains("in use"),
        "{said}"
    );
    assert!(row("private").contains("running"), "{said}");
    assert!(row("to-private").contains("running"), "{said}");
    assert!(row("p2p").contains("not supported"), "{said}");
    // A name's control characters are shown escaped, never sent raw.
    assert!(!said.contains('\u{1b}'), "{said:?}");
    assert!(said.contains("red\\u{1b}[31mname"), "{said}");
    drop(holder);
    // The retry comes within 30 s of the refusal and a check's period.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = curl(admin, &[], "/api/status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let running = status["tcp"].as_array().is_some_and(|a| {
            a.iter()
                .any(|p| p["name"] == "second" && p["status"] == "running")
        });
        if running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never retried: {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(e2e::services::greeting(wanted).as_deref(), Some("second\n"));
}

/// `GET /api/proxy/{name}/config` is frp's `ProxyDefinition` of a proxy
/// as it runs: name, type, and the whole config under its type in frp's
/// field names. The name is percent-decoded (`%2F` is part of it); a
/// proxy that does not run (disabled, unknown) is 404; the file's next
/// version shows only once reloaded.
#[test]
fn proxy_config_is_the_running_proxy_in_frp_field_names_by_its_encoded_name() {
    let (a, b) = (banner("A\n"), banner("B\n"));
    let site = "[[proxies]]\nname = \"site\"\ntype = \"http\"\nlocalPort = 8080\n\
                customDomains = [\"www.example.com\"]\nlocations = [\"/api\"]\n\
                hostHeaderRewrite = \"inner\"\nrouteByHTTPUser = \"alice\"\n\
                requestHeaders.set.X-From = \"frp\"\n";
    let proxies = |web: SocketAddr| {
        format!(
            "{}{}{site}{}enabled = false\n",
            tcp("web", web, 0),
            tcp("my proxy/ü", a, 0),
            tcp("off", a, 0)
        )
    };
    let r = rig("", &proxies(a), 2);
    let get = |path: &str| -> (u16, serde_json::Value, String) {
        let (code, body) = curl(r.admin, &[], path);
        (code, serde_json::from_str(&body).unwrap_or_default(), body)
    };

    let (code, web, body) = get("/api/proxy/web/config");
    assert_eq!(code, 200, "{body}");
    assert_eq!((&web["name"], &web["type"]), (&"web".into(), &"tcp".into()));
    let tcp_block = &web["tcp"];
    assert_eq!(tcp_block["name"], "web", "{body}");
    assert_eq!(tcp_block["type"], "tcp", "{body}");
    assert_eq!(tcp_block["localIP"], "127.0.0.1", "{body}");
    assert_eq!(tcp_block["localPort"], a.port(), "{body}");
    assert_eq!(tcp_block["remotePort"], 0, "{body}");
    assert_eq!(tcp_block["transport"]["useEncryption"], false, "{body}");
    assert!(web.get("http").is_none(), "{body}");

    let (code, odd, body) = get("/api/proxy/my%20proxy%2F%C3%BC/config");
    assert_eq!(code, 200, "{body}");
    assert_eq!(odd["name"], "my proxy/ü", "{body}");
    assert_eq!(odd["tcp"]["name"], "my proxy/ü", "{body}");

    // Configured, not running (frps has no HTTP port): still its config.
    let (code, http, body) = get("/api/proxy/site/config");
    assert_eq!(code, 200, "{body}");
    let h = &http["http"];
    assert_eq!(h["customDomains"][0], "www.example.com", "{body}");
    assert_eq!(h["locations"][0], "/api", "{body}");
    assert_eq!(h["hostHeaderRewrite"], "inner", "{body}");
    assert_eq!(h["routeByHTTPUser"], "alice", "{body}");
    assert_eq!(h["requestHeaders"]["set"]["X-From"], "frp", "{body}");

    for gone in ["/api/proxy/off/config", "/api/proxy/nope/config"] {
        let (code, _, body) = get(gone);
        assert_eq!(code, 404, "{gone}: {body}");
        assert!(body.contains("not found"), "{body}");
    }
    assert_eq!(get("/api/proxy/%FF/config").0, 400);
    assert_eq!(
        curl(r.admin, &["-X", "POST"], "/api/proxy/web/config").0,
        405
    );

    // The file changed, not yet reloaded: the running config is shown.
    r.rewrite("", &proxies(b));
    assert_eq!(get("/api/proxy/web/config").1["tcp"]["localPort"], a.port());
    assert_eq!(curl(r.admin, &[], "/api/reload").0, 200);
    assert_eq!(get("/api/proxy/web/config").1["tcp"]["localPort"], b.port());
}

/// The admin UI is one page from the binary at `/static/` (`/` redirects
/// there, as frp), runs only its own script and style (a fresh nonce per
/// answer), fetches nothing from elsewhere, and no other site may frame
/// it (a framed page would be same-origin to the API).
#[test]
fn admin_ui_is_one_page_from_the_binary_that_no_other_site_may_frame() {
    let r = rig("", &tcp("web", banner("A\n"), 0), 1);
    let (code, head) = curl(r.admin, &["-i"], "/");
    assert_eq!(code, 301, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("location: /static/"),
        "{head}"
    );
    let page = || {
        let (code, all) = curl(r.admin, &["-i"], "/static/");
        assert_eq!(code, 200, "{all}");
        let (head, body) = all.split_once("\r\n\r\n").expect("head and body");
        let head = head.to_ascii_lowercase();
        let nonce = head
            .split("'nonce-")
            .nth(1)
            .and_then(|n| n.split('\'').next())
            .unwrap_or_else(|| panic!("no nonce: {head}"))
            .to_owned();
        (head, body.to_owned(), nonce)
    };
    let (head, body, nonce) = page();
    for want in [
        "content-type: text/html",
        "x-frame-options: deny",
        "frame-ancestors 'none'",
        "default-src 'none'",
        "connect-src 'self'",
    ] {
        assert!(head.contains(want), "{want} missing: {head}");
    }
    assert!(
        body.contains(&format!("<script nonce=\"{nonce}\">")),
        "{body}"
    );
    assert!(
        body.contains(&format!("<style nonce=\"{nonce}\">")),
        "{body}"
    );
    assert!(!body.contains("://"), "the page names another site");
    assert_ne!(page().2, nonce, "the nonce is the same twice");
}
