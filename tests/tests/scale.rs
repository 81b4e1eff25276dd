//! The scale frp users have: hundreds of proxies per frpc, written as one
//! range template, through real frps and frpc processes.

use e2e::services::{banner, eventually, greeting};
use e2e::web::curl;
use e2e::{free_port, spawn_frps, write_file, Proc};
use std::process::Command;

const RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

fn running(status: &serde_json::Value, kind: &str) -> usize {
    status[kind]
        .as_array()
        .map_or(0, |a| a.iter().filter(|p| p["status"] == "running").count())
}

/// frpc (token "t", admin API on `admin`) whose proxies are `entry`, a
/// template over `$n`, once for each number of `range`.
fn frpc_from_range(dir: &std::path::Path, port: u16, admin: u16, range: &str, entry: &str) -> Proc {
    let text = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {port}\nauth.token = \"t\"\n\
         webServer.port = {admin}\n\
         {{{{- range $_, $n := parseNumberRange \"{range}\" }}}}\n{entry}{{{{- end }}}}\n"
    );
    let cfg = write_file(dir, "frpc.toml", &text);
    let mut cmd = Command::new(e2e::bin("frpc"));
    cmd.arg("-c").arg(&cfg);
    Proc::spawn(cmd)
}

/// 500 tcp and 500 http proxies from one range block: frpc logs in with all
/// of them at once, every one starts, and the first, a middle and the last
/// of each kind serve.
#[test]
fn a_thousand_proxies_from_one_template_all_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vhost = free_port();
    let (_frps, port) = spawn_frps(
        dir.path(),
        &format!("auth.token = \"t\"\nvhostHTTPPort = {vhost}\n"),
    );
    let service = banner(RESPONSE);
    let admin = free_port();
    let lp = service.port();
    let frpc = frpc_from_range(
        dir.path(),
        port,
        admin,
        "1-500",
        &format!(
            "[[proxies]]\nname = \"tcp-{{{{ $n }}}}\"\ntype = \"tcp\"\nlocalPort = {lp}\n\
             [[proxies]]\nname = \"web-{{{{ $n }}}}\"\ntype = \"http\"\nlocalPort = {lp}\n\
             customDomains = [\"web-{{{{ $n }}}}.example.test\"]\n"
        ),
    );
    let mut status = serde_json::Value::Null;
    eventually("1,000 proxies running", || {
        let (code, body) = curl(admin, &[], "/api/status");
        status = serde_json::from_str(&body).unwrap_or_default();
        code == 200 && running(&status, "tcp") == 500 && running(&status, "http") == 500
    });
    let tcp = status["tcp"].as_array().expect("tcp proxies");
    for n in [1, 250, 500] {
        let name = format!("tcp-{n}");
        let p = tcp.iter().find(|p| p["name"] == name).expect("listed");
        let remote = p["remote_addr"].as_str().expect("remote_addr");
        let port: u16 = remote
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        assert_eq!(greeting(port).as_deref(), Some(RESPONSE), "{name}");
        let host = format!("Host: web-{n}.example.test");
        let (code, body) = curl(vhost, &["-H", &host], "/");
        assert_eq!((code, body.as_str()), (200, "ok\n"), "web-{n}");
    }
    drop(frpc);
}

/// frps (token "t") in a shell whose descriptor limit is `nofile`.
fn frps_with_descriptors(dir: &std::path::Path, nofile: u32, extra: &str) -> (Proc, u16) {
    let port = free_port();
    let cfg = write_file(
        dir,
        "frps.toml",
        &format!("bindAddr = \"127.0.0.1\"\nbindPort = {port}\nauth.token = \"t\"\n{extra}"),
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(format!(
        "ulimit -n {nofile} && exec {} -c {}",
        e2e::bin("frps").display(),
        cfg.display()
    ));
    let mut frps = Proc::spawn(cmd);
    frps.wait_line("frps listening", e2e::WAIT);
    (frps, port)
}

/// frps at 600 descriptors: one client's 300 tcp proxies and 300
/// connections of their users get the public side's share and no more (the
/// ports beyond it are refused with the reason, the connections beyond it
/// closed), and another client still logs in and is told the same.
#[test]
fn a_clients_ports_and_users_leave_descriptors_for_logins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let (frps, port) = frps_with_descriptors(
        dir.path(),
        600,
        &format!("webServer.port = {web}\nenablePrometheus = true\n"),
    );
    let service = banner(RESPONSE);
    let admin = free_port();
    let a_dir = tempfile::tempdir().expect("tempdir");
    let _a = frpc_from_range(
        a_dir.path(),
        port,
        admin,
        "1-300",
        &format!(
            "[[proxies]]\nname = \"tcp-{{{{ $n }}}}\"\ntype = \"tcp\"\nlocalPort = {}\n",
            service.port()
        ),
    );
    let mut status = serde_json::Value::Null;
    eventually("every proxy answered", || {
        let (code, body) = curl(admin, &[], "/api/status");
        status = serde_json::from_str(&body).unwrap_or_default();
        let answered = status["tcp"].as_array().map_or(0, |a| {
            a.iter().filter(|p| p["status"] != "wait start").count()
        });
        code == 200 && answered == 300
    });
    let tcp = status["tcp"].as_array().expect("tcp proxies");
    let started = running(&status, "tcp");
    assert!(
        (1..300).contains(&started),
        "{started} of 300 ports started"
    );
    let refused = tcp
        .iter()
        .find(|p| p["status"] == "start error")
        .expect("a refusal");
    assert!(
        refused["err"].as_str().unwrap_or("").contains("ulimit -n"),
        "{refused}"
    );
    let first = tcp
        .iter()
        .find(|p| p["status"] == "running")
        .expect("one running");
    let public: u16 = first["remote_addr"]
        .as_str()
        .and_then(|r| r.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("port");
    // The ports took what the share holds: these users find none left.
    let held: Vec<_> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", public)).ok())
        .collect();
    let pid = frps.child.id();
    eventually("frps closed the connections beyond its share", || {
        e2e::raw::fd_count(pid) < 600 - 256
    });
    let mut b = e2e::spawn_frpc(
        dir.path(),
        port,
        &format!(
            "auth.token = \"t\"\n{}",
            e2e::tcp_proxy("after", service, 0)
        ),
    );
    let line = b.wait_line("ulimit -n", e2e::WAIT);
    assert!(line.contains("after"), "{line}");
    let metrics = e2e::web::prometheus_samples(&curl(web, &[], "/metrics").1);
    for share in ["connections", "ports"] {
        let refused = metrics
            .lines()
            .find(|l| l.starts_with(&format!("frp_server_refused_total{{share={share}}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert!(refused.is_some_and(|n| n > 0.0), "{share}:\n{metrics}");
    }
    drop(held);
}
