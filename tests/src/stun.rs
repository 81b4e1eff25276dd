//! A real STUN server for the P2P tests: coturn's `turnserver` in
//! STUN-only mode. It counts as started once coturn's own STUN client
//! (`turnutils_stunclient`) gets its answer: coturn logs its start before
//! every listener thread serves, and on loopback another process may take
//! the port between choosing and binding it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{free_udp_port, Proc};

pub const TURNSERVER: &str = "/usr/bin/turnserver";
pub const STUNCLIENT: &str = "/usr/bin/turnutils_stunclient";

pub fn require_coturn() {
    for p in [TURNSERVER, STUNCLIENT] {
        assert!(
            Path::new(p).exists(),
            "{p} not found: this test needs coturn (`.ci/install-deps` installs it)"
        );
    }
}

/// A command run inside network namespace `netns`, or here.
fn within(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, program]);
            cmd
        }
        None => Command::new(program),
    }
}

/// Whether a STUN binding request to `ip:port` (from `netns`) is answered.
pub fn answers(netns: Option<&str>, ip: &str, port: u16) -> bool {
    let mut cmd = within(netns, "timeout");
    cmd.args(["0.5", STUNCLIENT, "-p", &port.to_string(), ip]);
    cmd.output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("addr"))
}

/// coturn on `ips` at `port` (inside `netns` when given), once it answers
/// on the first of `ips`; Err with its log when it does not within `wait`.
pub fn coturn(
    dir: &Path,
    netns: Option<&str>,
    ips: &[&str],
    port: u16,
    wait: Duration,
) -> Result<Proc, String> {
    require_coturn();
    let mut cmd = within(netns, TURNSERVER);
    cmd.current_dir(dir).arg("-n");
    for ip in ips {
        cmd.arg(format!("--listening-ip={ip}"));
    }
    cmd.args([
        &format!("--listening-port={port}"),
        "--stun-only",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--log-file=stdout",
        "--simple-log",
        &format!(
            "--pidfile={}",
            dir.join(format!("turnserver-{port}.pid")).display()
        ),
    ]);
    let mut p = Proc::spawn(cmd);
    let deadline = Instant::now() + wait;
    loop {
        if answers(netns, ips[0], port) {
            return Ok(p);
        }
        let exited = p.child.try_wait().ok().flatten().is_some();
        if exited || Instant::now() > deadline {
            let _ = p.child.kill();
            return Err(format!(
                "coturn on {}:{port} did not answer STUN (exited: {exited}); log:\n{}",
                ips[0],
                p.output()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// coturn on a free 127.0.0.1 port: it and the port.
pub fn coturn_on_loopback(dir: &Path) -> (Proc, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_udp_port();
        match coturn(dir, None, &["127.0.0.1"], port, Duration::from_secs(10)) {
            Ok(p) => return (p, port),
            Err(e) => last = e,
        }
    }
    panic!("no STUN server in 5 tries; the last: {last}");
}
