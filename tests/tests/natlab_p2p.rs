//! The P2P lab: xtcp between two LANs, each behind its own NAT router,
//! with frps and a real STUN server (coturn) on the public side, all in
//! network namespaces each test creates:
//!
//! ```text
//!   lan-a 192.168.81.2 ── router-a ── 10.78.1.2 ─┐           ┌─ 10.78.2.2 ── router-b ── lan-b 192.168.82.2
//!   sshd, frpc (proxy)    MASQUERADE   10.78.1.1 public 10.78.2.1   MASQUERADE  frpc (visitor), ssh
//!                                      frps, coturn
//! ```
//!
//! The routers are home routers: MASQUERADE out of the WAN (which keeps a
//! flow's source port, so a mapping does not depend on where it goes), no
//! new connection in from the WAN, and nothing to the router itself (a
//! datagram to the router that no rule drops would leave a conntrack entry
//! that takes the port the LAN host's own flow needs). The public side
//! routes between the two WANs and knows nothing of the LANs. Each router
//! counts the UDP it forwards to and from the other router (the direct
//! path) and the TCP it forwards to and from frps.
//!
//! Real OpenSSH runs from lan-b to lan-a over the P2P session; with
//! `MASQUERADE --random-fully` on router-b (a symmetric NAT) no punch gets
//! through and the `fallbackTo` stcp visitor carries the same SSH session
//! through frps; a P2P path whose UDP router-a drops is declared dead, the
//! next session falls back, and once the path is back P2P takes over.
//! Skipped (loudly) without root, `ip` and `iptables`, as the NAT lab is.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::netns::{self, remove_stale, skip, wire, Netns};
use e2e::sshd::{keygen, require_openssh, ssh_run, sshd_config, SSHD};
use e2e::{bin, pattern, sha256, write_file, Proc, WAIT};

const PUB_A: &str = "10.78.1.1";
const RA_WAN: &str = "10.78.1.2";
const PUB_B: &str = "10.78.2.1";
const RB_WAN: &str = "10.78.2.2";
const FRPS_PORT: u16 = 7000;
const WEB_PORT: u16 = 7500;
const STUN_PORT: u16 = 3478;
/// The lab's LAN host has its own network stack: sshd on 22, as in frp's
/// recipe.
const SSHD_PORT: u16 = 22;
const VISITOR_PORT: u16 = 6000;
const TOKEN: &str = "p2p-lab";

/// frp's README recipe for xtcp, unchanged: the proxy on machine B…
const XTCP_PROXY: &str = r#"
[[proxies]]
name = "p2p_ssh"
type = "xtcp"
secretKey = "abcdefg"
localIP = "127.0.0.1"
localPort = 22
"#;

/// …and the visitor on machine C.
const XTCP_VISITOR: &str = r#"
[[visitors]]
name = "p2p_ssh_visitor"
type = "xtcp"
serverName = "p2p_ssh"
secretKey = "abcdefg"
bindAddr = "127.0.0.1"
bindPort = 6000
# when automatic tunnel persistence is required, set it to true
keepTunnelOpen = false
"#;

/// The stcp proxy and visitor the xtcp visitor falls back to.
const STCP_PROXY: &str = r#"
[[proxies]]
name = "stcp_ssh"
type = "stcp"
secretKey = "abcdefg"
localIP = "127.0.0.1"
localPort = 22
"#;
const STCP_VISITOR: &str = r#"
[[visitors]]
name = "stcp-visitor"
type = "stcp"
serverName = "stcp_ssh"
secretKey = "abcdefg"
bindPort = -1
"#;

/// The recipe with an stcp fallback: the lines after [`XTCP_VISITOR`]
/// (and `extra`) add to its table.
fn with_fallback(extra: &str) -> (String, String) {
    (
        format!("{XTCP_PROXY}{STCP_PROXY}"),
        format!(
            "{STCP_VISITOR}{XTCP_VISITOR}fallbackTo = \"stcp-visitor\"\n\
             fallbackTimeoutMs = 3000\n{extra}"
        ),
    )
}

/// The routers' NAT.
#[derive(Clone, Copy, PartialEq)]
enum Nat {
    /// A flow keeps its source port: one mapping whatever the destination.
    Cone,
    /// `--random-fully`: each destination gets its own random port.
    Symmetric,
}

struct Lab {
    public: Netns,
    ra: Netns,
    rb: Netns,
    la: Netns,
    lb: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(tag: &str, nat_b: Nat) -> Option<Lab> {
        if let Some(reason) = netns::unavailable() {
            return skip(&reason);
        }
        let prefix = format!("nl-{tag}-");
        remove_stale(&prefix);
        let name = |role: &str| format!("{prefix}{}-{role}", std::process::id());
        let public = match Netns::add(name("pub")) {
            Ok(ns) => ns,
            Err(e) => return skip(&format!("cannot create a network namespace: {e}")),
        };
        let add = |role: &str| Netns::add(name(role)).unwrap_or_else(|e| panic!("P2P lab: {e}"));
        let lab = Lab {
            public,
            ra: add("ra"),
            rb: add("rb"),
            la: add("la"),
            lb: add("lb"),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        wire(
            &lab.public,
            "pa",
            &format!("{PUB_A}/24"),
            &lab.ra,
            "wan",
            &format!("{RA_WAN}/24"),
        );
        wire(
            &lab.public,
            "pb",
            &format!("{PUB_B}/24"),
            &lab.rb,
            "wan",
            &format!("{RB_WAN}/24"),
        );
        wire(
            &lab.ra,
            "lan",
            "192.168.81.1/24",
            &lab.la,
            "eth",
            "192.168.81.2/24",
        );
        wire(
            &lab.rb,
            "lan",
            "192.168.82.1/24",
            &lab.lb,
            "eth",
            "192.168.82.2/24",
        );
        lab.public.must(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        lab.la
            .ip(&["route", "add", "default", "via", "192.168.81.1"]);
        lab.lb
            .ip(&["route", "add", "default", "via", "192.168.82.1"]);
        router(&lab.ra, PUB_A, RB_WAN, Nat::Cone);
        router(&lab.rb, PUB_B, RA_WAN, nat_b);
        Some(lab)
    }

    fn dir(&self, name: &str) -> std::path::PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).expect("lab dir");
        d
    }
}

/// A home router on `r`: default route to `gateway`, MASQUERADE out of
/// `wan`, nothing new in; counts what it forwards to and from `peer_wan`
/// (the other router) over UDP and to and from frps over TCP.
fn router(r: &Netns, gateway: &str, peer_wan: &str, nat: Nat) {
    r.must(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    r.ip(&["route", "add", "default", "via", gateway]);
    let random = if nat == Nat::Symmetric {
        " --random-fully"
    } else {
        ""
    };
    let frps = FRPS_PORT;
    for rule in [
        format!("-t nat -A POSTROUTING -o wan -j MASQUERADE{random}"),
        // Counting rules (no target): the direct path, and frps.
        format!("-A FORWARD -p udp -d {peer_wan} -m comment --comment p2p"),
        format!("-A FORWARD -p udp -s {peer_wan} -m comment --comment p2p"),
        format!("-A FORWARD -p tcp -d {gateway} --dport {frps} -m comment --comment frps"),
        format!("-A FORWARD -p tcp -s {gateway} --sport {frps} -m comment --comment frps"),
        "-A FORWARD -m conntrack --ctstate INVALID -j DROP".into(),
        "-A FORWARD -i wan -m conntrack --ctstate NEW -j DROP".into(),
        "-A INPUT -i wan -j DROP".into(),
    ] {
        let mut args = vec!["iptables"];
        args.extend(rule.split_whitespace());
        r.must(&args);
    }
}

/// Bytes a router forwarded, by the comment of its counting rules.
fn forwarded(r: &Netns, what: &str) -> u64 {
    let table = r.must(&["iptables", "-nvxL", "FORWARD"]);
    let tag = format!("/* {what} */");
    table
        .lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The lab's processes.
struct Run<'a> {
    lab: &'a Lab,
    frps: Proc,
    owner: Proc,
    visitor: Proc,
    _stun: Proc,
    _sshd: Proc,
    key: std::path::PathBuf,
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Owner,
    Visitor,
}

/// frpc's common lines: a fast heartbeat, so a dead P2P path (whose QUIC
/// liveness is the tunnel's) is declared dead within seconds.
fn frpc_head(server: &str) -> String {
    format!(
        "serverAddr = \"{server}\"\nserverPort = {FRPS_PORT}\nauth.token = \"{TOKEN}\"\n\
         loginFailExit = false\nnatHoleStunServer = \"{server}:{STUN_PORT}\"\n\
         transport.heartbeatInterval = 1\ntransport.heartbeatTimeout = 3\n"
    )
}

impl<'a> Run<'a> {
    /// The lab's processes, with the proxies and the visitors of `configs`.
    fn start(lab: &'a Lab, configs: (String, String)) -> Run<'a> {
        require_openssh();
        let stun = e2e::stun::coturn(
            &lab.dir("stun"),
            Some(&lab.public.name),
            &[PUB_A, PUB_B],
            STUN_PORT,
            WAIT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let frps_dir = lab.dir("frps");
        let frps_cfg = write_file(
            &frps_dir,
            "frps.toml",
            &format!(
                "bindAddr = \"0.0.0.0\"\nbindPort = {FRPS_PORT}\nauth.token = \"{TOKEN}\"\n\
                 webServer.addr = \"{PUB_A}\"\nwebServer.port = {WEB_PORT}\n\
                 webServer.user = \"ops\"\nwebServer.password = \"pw\"\n"
            ),
        );
        let mut frps = lab
            .public
            .spawn(&bin("frps"), &["-c", path(&frps_cfg)], None);
        frps.wait_line("frps listening for clients", WAIT);

        let ssh_dir = lab.dir("ssh");
        let (host_key, key) = (ssh_dir.join("host_key"), ssh_dir.join("id"));
        keygen(&host_key);
        keygen(&key);
        let authorized = ssh_dir.join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized).expect("authorized_keys");
        let cfg = sshd_config(
            &ssh_dir,
            &format!("127.0.0.1:{SSHD_PORT}"),
            &host_key,
            &authorized,
        );
        let mut sshd = lab
            .la
            .spawn(Path::new(SSHD), &["-D", "-e", "-f", path(&cfg)], None);
        sshd.wait_line("Server listening on", WAIT);

        let owner_cfg = write_file(
            &lab.dir("owner"),
            "frpc.toml",
            &format!("{}{}", frpc_head(PUB_A), configs.0),
        );
        let owner = lab.la.spawn(&bin("frpc"), &["-c", path(&owner_cfg)], None);
        let visitor_cfg = write_file(
            &lab.dir("visitor"),
            "frpc.toml",
            &format!("{}{}", frpc_head(PUB_B), configs.1),
        );
        let visitor = lab
            .lb
            .spawn(&bin("frpc"), &["-c", path(&visitor_cfg)], None);
        let mut run = Run {
            lab,
            frps,
            owner,
            visitor,
            _stun: stun,
            _sshd: sshd,
            key,
        };
        run.wait(
            Who::Owner,
            "private proxy started: reachable through visitors proxy=p2p_ssh",
        );
        run.wait(Who::Visitor, "logged in to server");
        run
    }

    /// Fails the test with `msg` and every process's log.
    fn fail(&mut self, msg: &str) -> ! {
        for p in [&mut self.frps, &mut self.owner, &mut self.visitor] {
            let _ = p.child.kill();
        }
        panic!(
            "{msg}\n----- frps -----\n{}\n----- owner frpc (lan-a) -----\n{}\n\
             ----- visitor frpc (lan-b) -----\n{}\n-----",
            self.frps.output(),
            self.owner.output(),
            self.visitor.output()
        );
    }

    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.fail(&msg());
        }
    }

    fn wait(&mut self, who: Who, needle: &str) -> String {
        let p = match who {
            Who::Owner => &mut self.owner,
            Who::Visitor => &mut self.visitor,
        };
        match catch_unwind(AssertUnwindSafe(|| p.wait_line(needle, WAIT))) {
            Ok(line) => line,
            Err(_) => self.fail(&format!("{who:?} logged no {needle:?} within {WAIT:?}")),
        }
    }

    /// `remote` over ssh from lan-b through the visitor; its stdout.
    fn ssh(&mut self, remote: &str, stdin: Option<&[u8]>) -> String {
        let out = ssh_run(
            Some(&self.lab.lb.name),
            &self.key,
            VISITOR_PORT,
            remote,
            stdin,
        );
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            self.fail(&format!("ssh {remote:?} failed ({}): {err}", out.status));
        }
        stdout
    }

    /// 4 MiB up to lan-a over ssh, hashed there.
    fn upload(&mut self) {
        let data = pattern(4 << 20, 23);
        let hash = self.ssh("sha256sum", Some(&data));
        let want = sha256(&data);
        self.check(hash.starts_with(&want), || {
            format!("sha256 over ssh: {hash}, want {want}")
        });
    }

    /// What frps counted for proxy `name` of `kind` today, both ways.
    fn frps_carried(&mut self, kind: &str, name: &str) -> u64 {
        let url = format!("http://{PUB_A}:{WEB_PORT}/api/proxy/{kind}");
        let body = self
            .lab
            .public
            .exec(&["curl", "-s", "-u", "ops:pw", &url])
            .unwrap_or_else(|e| e);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let row = v["proxies"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name))
            .cloned();
        match row {
            Some(r) => {
                r["todayTrafficIn"].as_u64().unwrap_or(u64::MAX)
                    + r["todayTrafficOut"].as_u64().unwrap_or(0)
            }
            None => self.fail(&format!("frps lists no {kind} proxy {name}: {body}")),
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn report(test: &str, started: Instant, what: &str) {
    eprintln!(
        "NATLAB {test}: {what} (wall time {:.1}s)",
        started.elapsed().as_secs_f64()
    );
}

/// frp's xtcp recipe, unchanged: SSH from one LAN to the other; the bytes
/// cross the two routers directly, frps sees the rendezvous only.
#[test]
fn ssh_crosses_two_nats_peer_to_peer() {
    let started = Instant::now();
    let Some(lab) = Lab::new("p2p", Nat::Cone) else {
        return;
    };
    let recipe = (XTCP_PROXY.to_owned(), XTCP_VISITOR.to_owned());
    let mut run = Run::start(&lab, recipe);
    let echo = run.ssh("echo p2p-$((6*7))", None);
    run.check(echo == "p2p-42", || format!("ssh echo: {echo:?}"));
    let up = run.wait(Who::Visitor, "P2P session up");
    run.wait(Who::Owner, "P2P session up");
    let (p2p0, frps0) = (forwarded(&lab.ra, "p2p"), forwarded(&lab.ra, "frps"));
    run.upload();
    let (p2p, frps) = (
        forwarded(&lab.ra, "p2p") - p2p0,
        forwarded(&lab.ra, "frps") - frps0,
    );
    run.check(p2p > 4 << 20, || {
        format!("router-a forwarded {p2p} bytes on the direct path for a 4 MiB upload")
    });
    run.check(frps < 64 << 10, || {
        format!("router-a forwarded {frps} bytes to and from frps during a 4 MiB P2P upload")
    });
    let carried = run.frps_carried("xtcp", "p2p_ssh");
    run.check(carried < 16 << 10, || {
        format!("frps counted {carried} bytes for the xtcp proxy")
    });
    let fell_back = run.visitor.output().contains("handed to the fallback");
    run.check(!fell_back, || {
        "a connection went to the fallback visitor".into()
    });
    report(
        "ssh_crosses_two_nats_peer_to_peer",
        started,
        &format!(
            "{up}; 4 MiB upload: {p2p} bytes on the direct path, {frps} to/from frps; \
             frps counted {carried} bytes for the proxy"
        ),
    );
}

/// A symmetric NAT on one side: no punch gets through, and the stcp
/// visitor named in `fallbackTo` carries the same SSH session through frps.
#[test]
fn symmetric_nat_falls_back_to_the_stcp_visitor() {
    let started = Instant::now();
    let Some(lab) = Lab::new("sym", Nat::Symmetric) else {
        return;
    };
    let mut run = Run::start(&lab, with_fallback(""));
    let echo = run.ssh("echo fallback-$((6*7))", None);
    run.check(echo == "fallback-42", || format!("ssh echo: {echo:?}"));
    let why = run.wait(Who::Visitor, "P2P session not made");
    run.upload();
    let carried = run.frps_carried("stcp", "stcp_ssh");
    run.check(carried > 4 << 20, || {
        format!("frps counted {carried} bytes for the fallback stcp proxy")
    });
    let p2p = forwarded(&lab.ra, "p2p");
    run.check(p2p < 64 << 10, || {
        format!("router-a forwarded {p2p} bytes on a direct path that cannot exist")
    });
    report(
        "symmetric_nat_falls_back_to_the_stcp_visitor",
        started,
        &format!(
            "{why}; frps carried {carried} bytes for stcp; direct path: {p2p} bytes of punches"
        ),
    );
}

/// router-a starts dropping the P2P path's UDP: both sides declare the
/// session dead within the heartbeat timeout, the next connection falls
/// back to stcp, and once the path is back a new session carries SSH
/// peer to peer again.
#[test]
fn a_dead_p2p_path_is_declared_dead_and_the_visitor_recovers() {
    let started = Instant::now();
    let Some(lab) = Lab::new("dead", Nat::Cone) else {
        return;
    };
    let mut run = Run::start(&lab, with_fallback("minRetryInterval = 1\n"));
    let echo = run.ssh("echo before", None);
    run.check(echo == "before", || format!("ssh echo: {echo:?}"));
    run.wait(Who::Visitor, "P2P session up");

    let drop_udp = ["iptables", "-I", "FORWARD", "1", "-p", "udp", "-j", "DROP"];
    lab.ra.must(&drop_udp);
    let cut = Instant::now();
    let lost = run.wait(Who::Visitor, "P2P session lost");
    let detected = cut.elapsed().as_secs_f64();
    run.wait(Who::Owner, "P2P session ended");
    // heartbeatTimeout = 3: QUIC's idle timeout.
    run.check(detected < 3.0 + 3.0, || {
        format!("the dead path was declared dead {detected:.1}s after the cut: {lost}")
    });
    let during = run.ssh("echo during", None);
    run.check(during == "during", || {
        format!("ssh during the cut: {during:?}")
    });
    run.wait(Who::Visitor, "P2P session not made");

    lab.ra
        .must(&["iptables", "-D", "FORWARD", "-p", "udp", "-j", "DROP"]);
    // minRetryInterval = 1: the next connection may try again.
    std::thread::sleep(Duration::from_millis(1500));
    let p2p0 = forwarded(&lab.ra, "p2p");
    let after = run.ssh("echo after", None);
    run.check(after == "after", || format!("ssh after the cut: {after:?}"));
    let again = run.wait(Who::Visitor, "P2P session up");
    run.upload();
    let p2p = forwarded(&lab.ra, "p2p") - p2p0;
    run.check(p2p > 4 << 20, || {
        format!("after the path came back router-a forwarded {p2p} bytes directly")
    });
    report(
        "a_dead_p2p_path_is_declared_dead_and_the_visitor_recovers",
        started,
        &format!("declared dead {detected:.1}s after the cut ({lost}); back: {again}"),
    );
}
