//! Network namespaces for the lab tests (the NAT labs): created by each
//! test, with only the addresses the test gives them, and deleted with
//! everything still running inside when the test ends. Needs root, `ip`
//! (iproute2) and `iptables`; without them a lab test prints
//! `NATLAB SKIPPED: <reason>` and passes, except under CI (`CI=true`),
//! where it fails.

use std::path::Path;
use std::process::Command;

use crate::Proc;

/// Runs a command; Ok(stdout) on success, Err(description) otherwise.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Why this machine cannot build a lab, if it cannot.
pub fn unavailable() -> Option<String> {
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return Some(format!("needs root (running as uid {uid})")),
        None => return Some("cannot tell whether this runs as root".into()),
    }
    if let Err(e) = run("ip", &["-V"]) {
        return Some(format!("iproute2 not usable: {e}"));
    }
    if let Err(e) = run("iptables", &["--version"]) {
        return Some(format!("iptables not usable: {e}"));
    }
    None
}

/// Skips the test, loudly; under CI a missing lab is a failure.
pub fn skip<T>(reason: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("NATLAB cannot run under CI (which runs as root): {reason}");
    }
    eprintln!("NATLAB SKIPPED: {reason}");
    None
}

/// Kills what still runs inside namespace `ns` (all started by this test,
/// or by an earlier run of it that was killed).
pub fn kill_inside(ns: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]);
        }
    }
}

/// Deletes namespaces named `{prefix}{pid}-…` of an earlier run whose
/// process is gone (a run killed before its Drop); live parallel runs are
/// left alone.
pub fn remove_stale(prefix: &str) {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let stale = match pid {
            Some(pid) => pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists(),
            None => true,
        };
        if stale {
            eprintln!("NATLAB: removing stale namespace {name}");
            kill_inside(name);
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

/// A namespace for test `tag` of this process (`nl-{tag}-{pid}`), or None
/// (after a SKIPPED line) when this machine cannot make one.
pub fn lab_namespace(tag: &str) -> Option<Netns> {
    if let Some(reason) = unavailable() {
        return skip(&reason);
    }
    let prefix = format!("nl-{tag}-");
    remove_stale(&prefix);
    match Netns::add(format!("{prefix}{}", std::process::id())) {
        Ok(ns) => Some(ns),
        Err(e) => skip(&format!("cannot create a network namespace: {e}")),
    }
}

/// One namespace of a lab; deleted, with what runs inside, on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up and no IPv6 (no router
    /// solicitations or DAD on the lab's links: counters see the test's
    /// traffic only).
    pub fn add(name: String) -> Result<Netns, String> {
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        let _ = ns.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        ns.ip(&["link", "set", "lo", "up"]);
        Ok(ns)
    }

    /// Runs `args` inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `args` inside; panics on failure (a lab that is not built).
    pub fn must(&self, args: &[&str]) -> String {
        self.exec(args)
            .unwrap_or_else(|e| panic!("lab namespace {}: {e}", self.name))
    }

    /// `ip -n <ns> args…`; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all).unwrap_or_else(|e| panic!("lab namespace {}: {e}", self.name))
    }

    /// Spawns `program args…` inside, optionally with its own RUST_LOG
    /// (Proc::spawn sets `info` for the `ip` process).
    pub fn spawn(&self, program: &Path, args: &[&str], log: Option<&str>) -> Proc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]);
        if let Some(filter) = log {
            cmd.arg("env").arg(format!("RUST_LOG={filter}"));
        }
        cmd.arg(program).args(args);
        Proc::spawn(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_inside(&self.name);
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A veth pair: `a_if` in `a`, `b_if` in `b`, each with its address (CIDR)
/// and up.
pub fn wire(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_if]);
    b.ip(&["addr", "add", b_addr, "dev", b_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}
