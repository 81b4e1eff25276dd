//! The NAT lab: frps and frpc as real processes in three network namespaces
//! (client, NAT router, server) created by each test, so the tunnel crosses a
//! real MASQUERADE router whose conntrack entries expire after a few seconds
//! of idleness and which drops every packet it has no state for. See "How to
//! prove it" in docs/liveness.md.
//!
//! Only addresses inside the namespaces the tests create are used. Needs
//! root, `ip` (iproute2) and `iptables`; without them the tests print
//! `NATLAB SKIPPED: <reason>` and pass, except under CI (`CI=true`), where
//! they fail.
//!
//! The echo service (client namespace) and the user connections (server
//! namespace, the public side) are this test binary itself, re-run inside a
//! namespace with `--exact natlab::<helper> --include-ignored`: the ignored helper
//! tests below do nothing unless their environment variable is set.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::netns::{self, kill_inside, remove_stale, run, skip};
use e2e::{bin, port_from_line, write_file, Proc, WAIT};

// Addresses exist only inside the lab's namespaces, so every test uses the
// same ones without clashing.
const CLIENT_IP: &str = "10.77.1.2";
const NAT_CLIENT_IP: &str = "10.77.1.1";
const NAT_SERVER_IP: &str = "10.77.2.1";
const SERVER_IP: &str = "10.77.2.2";
/// Interfaces: client `c0` <-> `n0` nat `n1` <-> `s0` server.
const NAT_CLIENT_IF: &str = "n0";
const NAT_SERVER_IF: &str = "n1";
const FRPS_PORT: u16 = 7000;
const ECHO_PORT: u16 = 9000;
/// Conntrack timeout of established TCP flows in the NAT, in seconds.
const NAT_TIMEOUT_S: u64 = 4;
const TOKEN: &str = "natlab";

const ECHO_ENV: &str = "NATLAB_ECHO_ADDR";
const PROBE_ENV: &str = "NATLAB_PROBE_ADDR";
const PROBE_MODE_ENV: &str = "NATLAB_PROBE_MODE";
const PROBE_TIMEOUT_ENV: &str = "NATLAB_PROBE_TIMEOUT_MS";
const PROBE_IDLE_ENV: &str = "NATLAB_PROBE_IDLE_MS";

/// How long a probe waits for an echo before calling it lost.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Helper processes (this binary, re-run inside a namespace)

/// Exits when the test process that started us is gone, so a killed test run
/// leaves no helper behind.
fn exit_when_orphaned() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(3);
        }
    });
}

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// The lab's local service: echoes each connection until EOF, then
/// half-closes. Runs until killed.
#[test]
#[ignore = "helper process of the NAT lab; does nothing unless NATLAB_ECHO_ADDR is set"]
fn echo_server_helper() {
    let Ok(addr) = std::env::var(ECHO_ENV) else {
        return;
    };
    exit_when_orphaned();
    let listener = TcpListener::bind(&addr).expect("bind the echo service");
    println!("NATLAB ECHO LISTENING {addr}");
    for conn in listener.incoming() {
        let Ok(mut sock) = conn else { continue };
        std::thread::spawn(move || {
            let Ok(mut reader) = sock.try_clone() else {
                return;
            };
            let _ = std::io::copy(&mut reader, &mut sock);
            let _ = sock.shutdown(Shutdown::Write);
        });
    }
}

/// Sends one message on `sock` and reads its echo, within `timeout`.
fn echo_on(sock: &mut TcpStream, timeout: Duration, round: u32) -> Result<Duration, String> {
    let msg = format!("natlab probe {} round {round}\n", std::process::id()).into_bytes();
    let start = Instant::now();
    sock.set_write_timeout(Some(timeout))
        .map_err(|e| format!("set timeout: {e}"))?;
    sock.write_all(&msg).map_err(|e| format!("write: {e}"))?;
    let mut got = vec![0u8; msg.len()];
    let mut n = 0;
    while n < got.len() {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("timed out ({n} of {} bytes back)", got.len()));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| format!("set timeout: {e}"))?;
        match sock.read(&mut got[n..]) {
            Ok(0) => return Err(format!("EOF after {n} of {} bytes", got.len())),
            Ok(k) => n += k,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "timed out after {:.1}s ({n} of {} bytes back)",
                    start.elapsed().as_secs_f64(),
                    got.len()
                ))
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if got == msg {
        Ok(start.elapsed())
    } else {
        Err("echo differs from what was sent".into())
    }
}

fn outcome(r: Result<Duration, String>) -> String {
    match r {
        Ok(d) => format!("ok in {:.3}s", d.as_secs_f64()),
        Err(e) => format!("fail: {e}"),
    }
}

/// A user of the tunnel, on the public side. Modes (`NATLAB_PROBE_MODE`):
/// `connect` reports `ok`, `refused` or the error; `echo` echoes once on a
/// new connection; `hold` echoes, stays idle for `NATLAB_PROBE_IDLE_MS` and
/// echoes again on the same connection. Prints one `PROBE …` line per step;
/// every step is bounded by `NATLAB_PROBE_TIMEOUT_MS`.
#[test]
#[ignore = "helper process of the NAT lab; does nothing unless NATLAB_PROBE_ADDR is set"]
fn probe_helper() {
    let Ok(addr) = std::env::var(PROBE_ENV) else {
        return;
    };
    exit_when_orphaned();
    let addr: SocketAddr = addr.parse().expect("probe address");
    let mode = std::env::var(PROBE_MODE_ENV).unwrap_or_else(|_| "echo".into());
    let timeout = env_ms(PROBE_TIMEOUT_ENV, 5000);
    let idle = env_ms(PROBE_IDLE_ENV, 0);
    let connect = || TcpStream::connect_timeout(&addr, timeout);
    match mode.as_str() {
        "connect" => match connect() {
            Ok(_) => println!("PROBE connect ok"),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                println!("PROBE connect refused")
            }
            Err(e) => println!("PROBE connect error: {e}"),
        },
        "echo" => match connect() {
            Ok(mut s) => println!("PROBE echo {}", outcome(echo_on(&mut s, timeout, 1))),
            Err(e) => println!("PROBE echo fail: connect: {e}"),
        },
        "hold" => {
            let mut s = match connect() {
                Ok(s) => s,
                Err(e) => {
                    println!("PROBE first fail: connect: {e}");
                    return;
                }
            };
            let first = echo_on(&mut s, timeout, 1);
            let ok = first.is_ok();
            println!("PROBE first {}", outcome(first));
            if ok {
                std::thread::sleep(idle);
                println!("PROBE second {}", outcome(echo_on(&mut s, timeout, 2)));
            }
        }
        other => println!("PROBE fail: unknown mode {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The lab

/// Three namespaces wired client -> NAT -> server; deleted on drop.
struct Lab {
    client: String,
    nat: String,
    server: String,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Builds the lab for test `tag`, or None (after a SKIPPED line) when
    /// this machine cannot.
    fn new(tag: &str) -> Option<Lab> {
        if let Some(reason) = netns::unavailable() {
            return skip(&reason);
        }
        let prefix = format!("nl-{tag}-");
        remove_stale(&prefix);
        let name = |role: &str| format!("{prefix}{}-{role}", std::process::id());
        let client = name("c");
        if let Err(e) = run("ip", &["netns", "add", &client]) {
            return skip(&format!("cannot create a network namespace: {e}"));
        }
        let lab = Lab {
            client,
            nat: name("n"),
            server: name("s"),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        lab.setup();
        Some(lab)
    }

    fn setup(&self) {
        let (c, n, s) = (&self.client, &self.nat, &self.server);
        // `ip -n <ns> <words>`; namespace and interface names have no spaces.
        let ip = |ns: &str, words: &str| {
            let mut args = vec!["-n", ns];
            args.extend(words.split_whitespace());
            if let Err(e) = run("ip", &args) {
                panic!("NAT lab setup: {e}");
            }
        };
        for ns in [n, s] {
            run("ip", &["netns", "add", ns]).unwrap_or_else(|e| panic!("NAT lab setup: {e}"));
        }
        for ns in [c, n, s] {
            // No IPv6 chatter (router solicitations, DAD) on the lab links:
            // the byte counters must see the tunnel only. Best effort.
            let _ = run(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            );
            ip(ns, "link set lo up");
        }
        ip(
            c,
            &format!("link add c0 type veth peer name {NAT_CLIENT_IF} netns {n}"),
        );
        ip(
            n,
            &format!("link add {NAT_SERVER_IF} type veth peer name s0 netns {s}"),
        );
        for (ns, addr, dev) in [
            (c, CLIENT_IP, "c0"),
            (n, NAT_CLIENT_IP, NAT_CLIENT_IF),
            (n, NAT_SERVER_IP, NAT_SERVER_IF),
            (s, SERVER_IP, "s0"),
        ] {
            ip(ns, &format!("addr add {addr}/24 dev {dev}"));
            ip(ns, &format!("link set {dev} up"));
        }
        // The client reaches the server through the NAT; the server has no
        // route back to the client subnet, only to the NAT's own address.
        ip(c, &format!("route add default via {NAT_CLIENT_IP}"));
        self.nat_rules();
    }

    /// The router: MASQUERADE towards the server, and silence (not a RST)
    /// for whatever its conntrack does not know.
    fn nat_rules(&self) {
        self.nat_do(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // Packets without conntrack state are dropped, and what reaches the
        // NAT itself from the server side (an expired mapping) is dropped
        // too: an expired flow yields silence, not a RST.
        for rule in [
            format!("-t nat -A POSTROUTING -o {NAT_SERVER_IF} -j MASQUERADE"),
            "-A FORWARD -m conntrack --ctstate INVALID -j DROP".to_owned(),
            format!("-A INPUT -i {NAT_SERVER_IF} -p tcp -j DROP"),
        ] {
            let mut args = vec!["iptables"];
            args.extend(rule.split_whitespace());
            self.nat_do(&args);
        }
        // Conntrack is loaded now (the rules above); its sysctls are per
        // namespace. No loose pickup: a mid-stream packet cannot re-create
        // an expired mapping.
        self.nat_do(&[
            "sysctl",
            "-qw",
            "net.netfilter.nf_conntrack_tcp_loose=0",
            &format!("net.netfilter.nf_conntrack_tcp_timeout_established={NAT_TIMEOUT_S}"),
        ]);
    }

    /// Runs a command in the NAT namespace; panics on failure.
    fn nat_do(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.nat];
        all.extend_from_slice(args);
        run("ip", &all).unwrap_or_else(|e| panic!("NAT lab: {e}"))
    }

    /// Bytes and packets received plus sent by the NAT's client-side
    /// interface (frames: Ethernet headers included).
    fn nat_client_if_counters(&self) -> (u64, u64) {
        let stat = |name: &str| format!("/sys/class/net/{NAT_CLIENT_IF}/statistics/{name}");
        let (rxb, txb, rxp, txp) = (
            stat("rx_bytes"),
            stat("tx_bytes"),
            stat("rx_packets"),
            stat("tx_packets"),
        );
        let v: Vec<u64> = self
            .nat_do(&["cat", &rxb, &txb, &rxp, &txp])
            .split_whitespace()
            .map(|v| v.parse::<u64>().expect("interface counter"))
            .collect();
        assert_eq!(v.len(), 4, "interface counters: {v:?}");
        (v[0] + v[1], v[2] + v[3])
    }

    /// Spawns `program args…` inside namespace `ns`, optionally with its own
    /// RUST_LOG (Proc::spawn sets `info` for the `ip` process).
    fn spawn(
        &self,
        ns: &str,
        program: &Path,
        args: &[&str],
        envs: &[(&str, String)],
        log: Option<&str>,
    ) -> Proc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        if let Some(filter) = log {
            cmd.arg("env").arg(format!("RUST_LOG={filter}"));
        }
        cmd.arg(program).args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Proc::spawn(cmd)
    }

    /// Runs one of the helper tests of this binary inside namespace `ns`.
    fn helper(&self, ns: &str, test: &str, envs: &[(&str, String)]) -> Proc {
        let exe = std::env::current_exe().expect("current exe");
        // Tests are named by their path inside the binary: `natlab::<test>`.
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let name = format!("{module}::{test}");
        self.spawn(
            ns,
            &exe,
            &["--exact", &name, "--nocapture", "--include-ignored"],
            envs,
            None,
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.client, &self.nat, &self.server] {
            kill_inside(ns);
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

// ---------------------------------------------------------------------------
// A tunnel across the lab

fn frps_toml(heartbeat_timeout: i64, tcp_keepalive: i64) -> String {
    format!(
        "bindAddr = \"{SERVER_IP}\"\nbindPort = {FRPS_PORT}\nproxyBindAddr = \"{SERVER_IP}\"\n\
         auth.token = \"{TOKEN}\"\ntransport.heartbeatTimeout = {heartbeat_timeout}\n\
         transport.tcpKeepalive = {tcp_keepalive}\n"
    )
}

/// frpc config; `transport` holds `transport.*` lines.
fn frpc_toml(transport: &str, remote_port: u16) -> String {
    format!(
        "serverAddr = \"{SERVER_IP}\"\nserverPort = {FRPS_PORT}\nauth.token = \"{TOKEN}\"\n\
         loginFailExit = false\n{transport}\n\
         [[proxies]]\nname = \"echo\"\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\n\
         localPort = {ECHO_PORT}\nremotePort = {remote_port}\n"
    )
}

/// A fixed remote port for the tests that need the same one back; it lives
/// in the lab's server namespace, so it cannot clash with the host.
fn fixed_remote_port() -> u16 {
    20000 + (std::process::id() % 10000) as u16
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Frps,
    Frpc,
}

/// Echo service in the client namespace, frps in the server namespace,
/// frpc in the client namespace exposing the echo service.
struct Tunnel<'a> {
    lab: &'a Lab,
    frps_cfg: PathBuf,
    frpc: Proc,
    frps: Proc,
    /// Output of earlier frps processes (restarts).
    frps_history: String,
    _echo: Proc,
    /// The remote port on the server side.
    port: u16,
}

impl<'a> Tunnel<'a> {
    fn start(
        lab: &'a Lab,
        frps_toml: &str,
        frpc_transport: &str,
        remote_port: u16,
        frpc_log: Option<&str>,
    ) -> Tunnel<'a> {
        let mut echo = lab.helper(
            &lab.client,
            "echo_server_helper",
            &[(ECHO_ENV, format!("127.0.0.1:{ECHO_PORT}"))],
        );
        echo.wait_line("NATLAB ECHO LISTENING", WAIT);

        let frps_cfg = write_file(lab.dir.path(), "frps.toml", frps_toml);
        let mut frps = Self::spawn_frps(lab, &frps_cfg);
        frps.wait_line("frps listening for clients", WAIT);
        let frpc_cfg = write_file(
            lab.dir.path(),
            "frpc.toml",
            &frpc_toml(frpc_transport, remote_port),
        );
        let frpc_cfg = frpc_cfg.to_str().expect("utf-8 path").to_owned();
        let frpc = lab.spawn(&lab.client, &bin("frpc"), &["-c", &frpc_cfg], &[], frpc_log);
        let mut t = Tunnel {
            lab,
            frps_cfg,
            frpc,
            frps,
            frps_history: String::new(),
            _echo: echo,
            port: 0,
        };
        let line = t.wait(Who::Frpc, "proxy started: reachable on server port", WAIT);
        t.port = port_from_line(&line);
        if remote_port != 0 && t.port != remote_port {
            t.fail(&format!(
                "asked for remote port {remote_port}, got {}",
                t.port
            ));
        }
        t
    }

    fn spawn_frps(lab: &Lab, cfg: &Path) -> Proc {
        let cfg = cfg.to_str().expect("utf-8 path");
        lab.spawn(&lab.server, &bin("frps"), &["-c", cfg], &[], None)
    }

    fn proc(&mut self, who: Who) -> &mut Proc {
        match who {
            Who::Frps => &mut self.frps,
            Who::Frpc => &mut self.frpc,
        }
    }

    /// Stops both and fails the test with `msg` and their whole logs.
    fn fail(&mut self, msg: &str) -> ! {
        let frps = dump(&mut self.frps);
        let frpc = dump(&mut self.frpc);
        panic!(
            "{msg}\n----- frps log -----\n{}{frps}\n----- frpc log -----\n{frpc}\n-----",
            self.frps_history
        );
    }

    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.fail(&msg());
        }
    }

    /// Waits for a log line of frps or frpc; fails with both logs.
    fn wait(&mut self, who: Who, needle: &str, timeout: Duration) -> String {
        let p = self.proc(who);
        match catch_unwind(AssertUnwindSafe(|| p.wait_line(needle, timeout))) {
            Ok(line) => line,
            Err(_) => self.fail(&format!(
                "{who:?} logged no line containing {needle:?} within {timeout:?}"
            )),
        }
    }

    /// Starts a probe (see `probe_helper`) in the server namespace against
    /// the remote port.
    fn probe(&self, mode: &str, timeout: Duration, idle: Duration) -> Proc {
        self.lab.helper(
            &self.lab.server,
            "probe_helper",
            &[
                (PROBE_ENV, format!("{SERVER_IP}:{}", self.port)),
                (PROBE_MODE_ENV, mode.to_owned()),
                (PROBE_TIMEOUT_ENV, timeout.as_millis().to_string()),
                (PROBE_IDLE_ENV, idle.as_millis().to_string()),
            ],
        )
    }

    /// Waits for a probe's result line; the probe bounds its own steps, so
    /// not getting one within `bound` is a lab failure.
    fn probe_line(&mut self, probe: &mut Proc, needle: &str, bound: Duration) -> String {
        match catch_unwind(AssertUnwindSafe(|| probe.wait_line(needle, bound))) {
            Ok(line) => line,
            Err(_) => {
                let out = dump(probe);
                self.fail(&format!(
                    "probe printed no {needle:?} within {bound:?}; probe output:\n{out}"
                ))
            }
        }
    }

    /// One echo on a new connection through the tunnel: the probe's line.
    fn echo(&mut self, timeout: Duration) -> String {
        let mut p = self.probe("echo", timeout, Duration::ZERO);
        self.probe_line(&mut p, "PROBE echo", timeout * 2 + WAIT)
    }

    fn assert_echo(&mut self, what: &str) {
        let line = self.echo(ECHO_TIMEOUT);
        self.check(line.contains("PROBE echo ok"), || {
            format!("{what}: echo through the tunnel failed: {line}")
        });
    }

    /// Connect outcome on the remote port: `ok`, `refused` or an error.
    fn connect_outcome(&mut self) -> String {
        let mut p = self.probe("connect", Duration::from_secs(2), Duration::ZERO);
        let line = self.probe_line(&mut p, "PROBE connect", WAIT);
        line.split("PROBE connect ").nth(1).unwrap_or("").to_owned()
    }

    /// Echo, `idle`, echo again on the same connection: both probe lines.
    fn hold(&mut self, idle: Duration) -> (String, String) {
        let mut p = self.probe("hold", ECHO_TIMEOUT, idle);
        let first = self.probe_line(&mut p, "PROBE first", ECHO_TIMEOUT * 2 + WAIT);
        self.check(first.contains("PROBE first ok"), || {
            format!("first echo on the held connection failed: {first}")
        });
        let second = self.probe_line(&mut p, "PROBE second", idle + ECHO_TIMEOUT * 2 + WAIT);
        (first, second)
    }

    fn stop_frps(&mut self) {
        self.frps.signal("TERM");
        let frps = &mut self.frps;
        match catch_unwind(AssertUnwindSafe(|| frps.wait_exit(WAIT))) {
            Ok(code) => eprintln!("NATLAB: frps stopped (exit code {code:?})"),
            Err(_) => self.fail("frps did not exit after SIGTERM"),
        }
    }

    fn restart_frps(&mut self) {
        let mut old = std::mem::replace(&mut self.frps, Self::spawn_frps(self.lab, &self.frps_cfg));
        self.frps_history
            .push_str(&format!("{}\n----- frps restarted -----\n", old.output()));
        drop(old);
        self.wait(Who::Frps, "frps listening for clients", WAIT);
    }
}

/// Kills `p` and returns everything it printed.
fn dump(p: &mut Proc) -> String {
    let _ = p.child.kill();
    let _ = catch_unwind(AssertUnwindSafe(|| p.wait_exit(Duration::from_secs(5))));
    p.output()
}

/// The number of seconds right after `marker` in `line` ("… for 3.0s …").
fn secs_after(line: &str, marker: &str) -> Option<f64> {
    let rest = line.split(marker).nth(1)?;
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    rest[..end].parse().ok()
}

fn report(test: &str, started: Instant, what: &str) {
    eprintln!(
        "NATLAB {test}: {what} (wall time {:.1}s)",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// Cases

/// Beats every second keep the NAT mapping of an idle tunnel alive across
/// three NAT timeouts: a user connection opened before the idle period
/// still echoes after it.
#[test]
fn idle_tunnel_survives_nat_with_heartbeat() {
    let started = Instant::now();
    let Some(lab) = Lab::new("hb") else { return };
    let mut t = Tunnel::start(
        &lab,
        &frps_toml(5, 0),
        "transport.heartbeatInterval = 1\ntransport.heartbeatTimeout = 5\ntransport.tcpKeepalive = 0\n",
        0,
        None,
    );
    let idle = Duration::from_secs(3 * NAT_TIMEOUT_S);
    let (_, second) = t.hold(idle);
    t.check(second.contains("PROBE second ok"), || {
        format!(
            "after {idle:?} idle (NAT timeout {NAT_TIMEOUT_S}s) with heartbeats, the same \
             connection no longer echoes: {second}"
        )
    });
    t.assert_echo("new connection after the idle period");
    report(
        "idle_tunnel_survives_nat_with_heartbeat",
        started,
        &format!("same connection after {idle:?} idle: {second}"),
    );
}

/// The control: without heartbeats or keepalive the NAT forgets the idle
/// tunnel, and from then on nothing crosses it, on the held connection or
/// on a new one. Proves the lab bites.
#[test]
fn idle_tunnel_dies_behind_nat_without_heartbeat() {
    let started = Instant::now();
    let Some(lab) = Lab::new("nohb") else { return };
    let mut t = Tunnel::start(
        &lab,
        &frps_toml(0, 0),
        "transport.heartbeatInterval = 0\ntransport.heartbeatTimeout = 0\ntransport.tcpKeepalive = 0\n",
        0,
        None,
    );
    let idle = Duration::from_secs(3 * NAT_TIMEOUT_S);
    let (_, second) = t.hold(idle);
    t.check(second.contains("PROBE second fail"), || {
        format!(
            "after {idle:?} idle without heartbeats the held connection still echoed, so the \
             NAT lab did not expire the tunnel's mapping: {second}"
        )
    });
    let fresh = t.echo(ECHO_TIMEOUT);
    t.check(fresh.contains("PROBE echo fail"), || {
        format!("a new connection echoed through a tunnel whose NAT mapping expired: {fresh}")
    });
    report(
        "idle_tunnel_dies_behind_nat_without_heartbeat",
        started,
        &format!("held connection: {second}; new connection: {fresh}"),
    );
}

/// The router drops everything: frpc declares the link dead within its
/// timeout, frps reaps the client and frees the port; once the router passes
/// traffic again frpc is back on the same port.
#[test]
fn blackhole_detected_both_sides_then_recovers() {
    let started = Instant::now();
    let Some(lab) = Lab::new("bh") else { return };
    const CLIENT_TIMEOUT: f64 = 3.0;
    const SERVER_TIMEOUT: f64 = 4.0;
    let port = fixed_remote_port();
    let mut t = Tunnel::start(
        &lab,
        &frps_toml(SERVER_TIMEOUT as i64, 0),
        &format!(
            "transport.heartbeatInterval = 1\ntransport.heartbeatTimeout = {CLIENT_TIMEOUT}\n\
             transport.reconnectInitialDelay = 0.5\ntransport.reconnectMaxDelay = 2\n"
        ),
        port,
        None,
    );
    t.assert_echo("before the blackhole");

    lab.nat_do(&["iptables", "-I", "FORWARD", "1", "-j", "DROP"]);
    let blackholed = Instant::now();

    let line = t.wait(Who::Frpc, "connection declared dead", WAIT);
    let frpc_detect = blackholed.elapsed().as_secs_f64();
    let silence = secs_after(&line, "data from server for ");
    t.check(
        silence.is_some_and(|s| (CLIENT_TIMEOUT..=CLIENT_TIMEOUT + 1.0).contains(&s)),
        || {
            format!(
                "frpc's reported silence must be within [{CLIENT_TIMEOUT}, {}]s: {line}",
                CLIENT_TIMEOUT + 1.0
            )
        },
    );
    t.check(frpc_detect <= CLIENT_TIMEOUT + 1.0, || {
        format!("frpc took {frpc_detect:.1}s after the blackhole to declare the link dead")
    });

    let line = t.wait(Who::Frps, "declared dead", WAIT);
    let frps_detect = blackholed.elapsed().as_secs_f64();
    let server_silence = secs_after(&line, "data from the client for ");
    t.check(
        server_silence.is_some_and(|s| (SERVER_TIMEOUT..=SERVER_TIMEOUT + 1.0).contains(&s))
            && line.contains("its proxies are closed"),
        || format!("unexpected frps line: {line}"),
    );
    t.check(frps_detect <= SERVER_TIMEOUT + 1.0, || {
        format!("frps took {frps_detect:.1}s after the blackhole to declare the client dead")
    });

    // The port is free while the blackhole lasts (the listener may close a
    // moment after the log line).
    let deadline = Instant::now() + Duration::from_secs(5);
    let freed = loop {
        let outcome = t.connect_outcome();
        if outcome == "refused" {
            break outcome;
        }
        if Instant::now() > deadline {
            t.fail(&format!(
                "remote port {port} still not free after frps declared the client dead: connect {outcome}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    lab.nat_do(&["iptables", "-D", "FORWARD", "-j", "DROP"]);
    let lifted = Instant::now();
    let line = t.wait(Who::Frpc, "reconnected after an outage", WAIT);
    let line2 = t.wait(Who::Frpc, "proxy started: reachable on server port", WAIT);
    let again = port_from_line(&line2);
    t.check(again == port, || {
        format!("after reconnecting the proxy is on port {again}, not {port}")
    });
    let recovered = lifted.elapsed().as_secs_f64();
    t.assert_echo("after the blackhole was lifted");
    report(
        "blackhole_detected_both_sides_then_recovers",
        started,
        &format!(
            "frpc declared dead {frpc_detect:.1}s after the blackhole (silence {silence:?}s), \
             frps {frps_detect:.1}s (silence {server_silence:?}s), port {port} {freed}; \
             back {recovered:.1}s after lifting: {line}"
        ),
    );
}

/// frps goes away: frpc's reconnect delays grow from the initial delay and
/// stay at the cap (jitter included); frps back with the same config, frpc
/// is back on the same port.
#[test]
fn server_restart_backoff_grows_and_caps() {
    let started = Instant::now();
    let Some(lab) = Lab::new("rs") else { return };
    const INITIAL: f64 = 0.5;
    const MAX: f64 = 2.0;
    let port = fixed_remote_port();
    let mut t = Tunnel::start(
        &lab,
        &frps_toml(90, 7200),
        &format!(
            "transport.heartbeatInterval = 1\ntransport.heartbeatTimeout = 3\n\
             transport.reconnectInitialDelay = {INITIAL}\ntransport.reconnectMaxDelay = {MAX}\n"
        ),
        port,
        None,
    );
    t.assert_echo("before the restart");

    t.stop_frps();
    let mut delays = Vec::new();
    let mut seen_at = Vec::new();
    for _ in 0..5 {
        let line = t.wait(Who::Frpc, "reconnecting in ", WAIT);
        seen_at.push(Instant::now());
        match secs_after(&line, "reconnecting in ") {
            Some(d) => delays.push(d),
            None => t.fail(&format!("no delay in {line:?}")),
        }
    }
    // Printed with one decimal: allow its rounding.
    const ROUNDING: f64 = 0.05;
    for (i, d) in delays.iter().enumerate() {
        let step = (INITIAL * 2f64.powi(i as i32)).min(MAX);
        let low = 0.8 * step - ROUNDING;
        let high = (1.2 * step).min(MAX) + ROUNDING;
        t.check((low..=high).contains(d), || {
            format!(
                "reconnect delay #{} is {d}s, expected within [{low:.2}, {high:.2}] \
                 (step {step}s ±20 %, capped at {MAX}s); all: {delays:?}",
                i + 1
            )
        });
    }
    t.check(delays.iter().all(|d| *d <= MAX), || {
        format!("a delay exceeds the cap {MAX}s: {delays:?}")
    });
    t.check(delays[1] > delays[0] && delays[2] > delays[1], || {
        format!("delays do not grow: {delays:?}")
    });
    t.check(
        delays[3..].iter().all(|d| *d >= 0.8 * MAX - ROUNDING),
        || format!("delays do not reach the cap {MAX}s: {delays:?}"),
    );
    // The announced delays are really waited (attempts fail at once: the
    // server namespace refuses the port).
    for i in 1..seen_at.len() {
        let gap = seen_at[i].duration_since(seen_at[i - 1]).as_secs_f64();
        let announced = delays[i - 1];
        t.check(gap >= announced - 0.1 - ROUNDING, || {
            format!(
                "attempt {} came {gap:.2}s after announcing a {announced}s delay; all: {delays:?}",
                i + 1
            )
        });
    }

    t.restart_frps();
    let line = t.wait(Who::Frpc, "reconnected after an outage", WAIT);
    let line2 = t.wait(Who::Frpc, "proxy started: reachable on server port", WAIT);
    let again = port_from_line(&line2);
    t.check(again == port, || {
        format!("after the restart the proxy is on port {again}, not {port}")
    });
    t.assert_echo("after the restart");
    report(
        "server_restart_backoff_grows_and_caps",
        started,
        &format!("delays {delays:?}; {line}"),
    );
}

/// What an idle tunnel costs on the wire: bytes through the NAT's client
/// side per beat (Ping + Pong + ACKs, with Ethernet/IP/TCP headers).
#[test]
fn idle_bytes_per_hour() {
    let started = Instant::now();
    let Some(lab) = Lab::new("cost") else { return };
    const BEATS: u32 = 2;
    // The multiplexer sends nothing of its own on an idle tunnel, so a short
    // interval costs per beat what the default 30 s does.
    const INTERVAL: u64 = 5;
    // A sanity bound against runaway traffic, not a budget. Measured: about
    // 370 bytes per beat over TLS (Ping, Pong, ACKs).
    const MAX_BYTES_PER_BEAT: f64 = 800.0;
    let mut t = Tunnel::start(
        &lab,
        &frps_toml(40, 7200),
        &format!("transport.heartbeatInterval = {INTERVAL}\ntransport.heartbeatTimeout = 40\n"),
        0,
        // frpc logs each Ping at debug level: beats are counted, not guessed.
        Some("info,frpc=debug"),
    );
    const PING: &str = "ping seq=";
    let beat_wait = Duration::from_secs(INTERVAL + 5);
    // Settle: one beat of an idle tunnel.
    t.wait(Who::Frpc, PING, beat_wait);
    // Window from just after one Ping to just after the BEATS-th next one:
    // exactly BEATS beats, whatever their phase.
    let (bytes0, packets0) = lab.nat_client_if_counters();
    let from = Instant::now();
    for _ in 0..BEATS {
        t.wait(Who::Frpc, PING, beat_wait);
    }
    let (bytes1, packets1) = lab.nat_client_if_counters();
    let secs = from.elapsed().as_secs_f64();
    let bytes = bytes1.saturating_sub(bytes0);
    let packets = packets1.saturating_sub(packets0);
    let per_beat = bytes as f64 / f64::from(BEATS);
    let packets_per_beat = packets as f64 / f64::from(BEATS);
    let per_hour_default = per_beat * 3600.0 / 30.0;
    eprintln!(
        "NATLAB idle cost: {per_beat:.0} bytes per beat (ping+pong incl. TCP/IP), \
         {per_hour_default:.0} bytes/hour at the default 30 s interval \
         ({bytes} bytes, {packets} packets = {packets_per_beat:.1} per beat, in {secs:.1}s \
         for {BEATS} beats; Ethernet headers included)"
    );
    t.check(per_beat > 0.0 && per_beat < MAX_BYTES_PER_BEAT, || {
        format!(
            "{per_beat:.0} bytes per beat is outside (0, {MAX_BYTES_PER_BEAT}): {bytes} bytes, \
             {packets} packets for {BEATS} beats"
        )
    });
    // One beat per interval of silence, not more.
    t.check(secs >= 0.9 * (INTERVAL * u64::from(BEATS)) as f64, || {
        format!("{BEATS} beats in {secs:.1}s with a {INTERVAL} s interval: beats come too fast")
    });
    report(
        "idle_bytes_per_hour",
        started,
        &format!("{per_beat:.0} bytes per beat"),
    );
}
