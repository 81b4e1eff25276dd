//! The setups under test: how each one is started, where its public ports
//! are, which of its processes count for memory, and how everything it
//! started is stopped again (on drop, on error and on Ctrl-C / SIGTERM).

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::{free_port, write_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a setup may take to carry its first echo.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// Work connections frpc keeps open in advance with `tcpMux = false` (frps
/// keeps at most `transport.maxPoolCount`, 5 by default, per client).
const POOL_COUNT: u32 = 5;
/// socat's transfer buffer (`-b`); its default of 8 KiB would make the bare
/// relay look slower than it is.
const SOCAT_BUFFER: &str = "262144";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// The client talks to the service itself.
    Direct,
    /// client → socat → socat → service: the copying any tunnel does, with no
    /// protocol at all.
    Socat,
    /// rathole 0.5.0, plain TCP transport, a service per local service.
    Rathole,
    /// frps + frpc with their defaults: TLS, trust on first use, yamux.
    Ours,
    /// frps + frpc with `transport.tcpMux = false`: a TCP (TLS) connection
    /// per forwarded connection, `POOL_COUNT` of them opened in advance.
    OursNoMux,
    /// frps + frpc with `transport.tls.enable = false`, like rathole's plain
    /// TCP transport: the same work as rathole, and what TLS costs.
    OursNoTls,
    /// frps + an frpc with stcp (and sudp) proxies + a second frpc whose
    /// visitors users connect to: a private service, through frps. rathole
    /// has no equivalent.
    OursStcp,
    /// The same with xtcp: the two frpc meet through frps (STUN: coturn on
    /// loopback) and carry each connection over their own QUIC session.
    OursXtcp,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Direct,
        Kind::Socat,
        Kind::Rathole,
        Kind::Ours,
        Kind::OursNoMux,
        Kind::OursNoTls,
        Kind::OursStcp,
        Kind::OursXtcp,
    ];

    /// A private service (through visitors): compared with our own tcp
    /// proxy, since rathole has nothing like it.
    pub fn private(self) -> bool {
        matches!(self, Kind::OursStcp | Kind::OursXtcp)
    }

    /// Name for `BENCH_SETUPS`.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Socat => "socat",
            Kind::Rathole => "rathole",
            Kind::Ours => "ours",
            Kind::OursNoMux => "nomux",
            Kind::OursNoTls => "notls",
            Kind::OursStcp => "stcp",
            Kind::OursXtcp => "xtcp",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Socat => "socat ×2",
            Kind::Rathole => "rathole",
            Kind::Ours => "ours",
            Kind::OursNoMux => "ours, tcpMux=false",
            Kind::OursNoTls => "ours, TLS off",
            Kind::OursStcp => "ours, stcp via a visitor",
            Kind::OursXtcp => "ours, xtcp (P2P)",
        }
    }
}

/// The programs the setups run.
pub struct Tools {
    pub frps: PathBuf,
    pub frpc: PathBuf,
    pub rathole: PathBuf,
}

impl Tools {
    /// frps and frpc next to this example (target/release/examples/bench →
    /// target/release/), rathole where `make bench` installs it
    /// (target/bench-tools/bin/, or `$BENCH_RATHOLE`).
    pub fn locate() -> Result<Tools> {
        let exe = std::env::current_exe().context("path of the bench executable")?;
        let release = exe
            .parent()
            .and_then(Path::parent)
            .context("bench executable is not in target/<profile>/examples")?;
        let rathole = match std::env::var_os("BENCH_RATHOLE") {
            Some(p) => PathBuf::from(p),
            None => release
                .parent()
                .context("no target directory")?
                .join("bench-tools/bin/rathole"),
        };
        let tools = Tools {
            frps: release.join("frps"),
            frpc: release.join("frpc"),
            rathole,
        };
        for path in [&tools.frps, &tools.frpc, &tools.rathole] {
            if !path.exists() {
                bail!("{} not found: run `make bench`", path.display());
            }
        }
        for tool in ["iperf3", "socat"] {
            let ok = Command::new(tool)
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            if !ok {
                bail!("{tool} not found: run `make bench` (it installs it)");
            }
        }
        Ok(tools)
    }
}

// ---------------------------------------------------------------------------
// Processes

/// Every process started and not yet stopped, for the signal handler.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every process still running (with the children socat forked).
/// Called on Ctrl-C / SIGTERM, before exiting.
pub fn kill_all() {
    let pids = match LIVE.lock() {
        Ok(live) => live.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for pid in pids {
        kill_children(pid);
        kill(pid);
    }
}

fn kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Kills the direct children of `pid` (socat forks one per connection), found
/// by their parent id in /proc.
fn kill_children(pid: u32) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            kill(child);
        }
    }
}

/// A child process with its output in a log file; killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).context("creating a log file")?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().context("log file")?)
            .stderr(out)
            // Both rathole and ours log per connection at info.
            .env("RUST_LOG", "warn");
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        if let Ok(mut live) = LIVE.lock() {
            live.push(child.id());
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the end of its log, if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("try_wait")? {
            bail!(
                "{} exited ({status}); end of its log:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill_children(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|&p| p != self.child.id());
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// An iperf3 server on 127.0.0.1: the "local service" for throughput.
pub async fn iperf_server(dir: &Path) -> Result<(Proc, SocketAddr)> {
    let port = free_port();
    let mut cmd = Command::new("iperf3");
    cmd.args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()]);
    let mut proc = Proc::spawn("iperf3-server", cmd, dir)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_LIMIT;
    // A bare connect is enough: the server logs the aborted test and goes on.
    while TcpStream::connect(addr).await.is_err() {
        proc.ensure_running()?;
        if Instant::now() > deadline {
            bail!("iperf3 server did not listen on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((proc, addr))
}

// ---------------------------------------------------------------------------
// Setups

/// A started setup. Dropping it stops all its processes.
pub struct Running {
    /// Public side of the iperf3 server.
    pub iperf: SocketAddr,
    /// Public side of the echo service.
    pub echo: SocketAddr,
    /// Public side of the UDP echo service, where the setup carries UDP.
    pub udp: Option<SocketAddr>,
    /// (server, client) process ids whose memory the scale test reports.
    pub mem: Option<(u32, u32)>,
    procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Fails if any process of the setup has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.procs.iter_mut().try_for_each(Proc::ensure_running)
    }
}

/// Whether frpc accepts `transport.tcpMux = false` (the variant is being
/// built while this harness is written); Err holds frpc's complaint.
pub fn nomux_available(tools: &Tools) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cfg = write_file(
        dir.path(),
        "frpc.toml",
        &format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = 7000\n{}\n{}",
            nomux_keys(),
            proxy("probe", 1, 2)
        ),
    );
    let out = Command::new(&tools.frpc)
        .arg("verify")
        .arg("-c")
        .arg(&cfg)
        .output()
        .map_err(|e| format!("running frpc verify: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn nomux_keys() -> String {
    format!("transport.tcpMux = false\ntransport.poolCount = {POOL_COUNT}\n")
}

/// Starts `kind` in front of the iperf3 server and the echo service and waits
/// until an echo passes through it. Ports are picked free and then handed to
/// the programs, so another program may grab one first: a failed start is
/// retried.
pub async fn start(
    kind: Kind,
    tools: &Tools,
    iperf: SocketAddr,
    echo: SocketAddr,
    udp: SocketAddr,
) -> Result<Running> {
    let mut last = None;
    for _ in 0..3 {
        let attempt = match kind {
            Kind::Direct => start_direct(iperf, echo, udp),
            Kind::Socat => start_socat(iperf, echo),
            Kind::Rathole => start_rathole(tools, iperf, echo, udp),
            Kind::Ours => start_ours(tools, iperf, echo, udp, ""),
            Kind::OursNoMux => start_ours(tools, iperf, echo, udp, &nomux_keys()),
            Kind::OursNoTls => {
                start_ours(tools, iperf, echo, udp, "transport.tls.enable = false\n")
            }
            Kind::OursStcp => start_private(tools, iperf, echo, Some(udp)),
            Kind::OursXtcp => start_private(tools, iperf, echo, None),
        };
        match attempt {
            Ok(mut running) => match wait_ready(&mut running).await {
                Ok(()) => return Ok(running),
                Err(e) => last = Some(e),
            },
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
}

fn running(iperf: SocketAddr, echo: SocketAddr, dir: tempfile::TempDir) -> Running {
    Running {
        iperf,
        echo,
        udp: None,
        mem: None,
        procs: Vec::new(),
        _dir: dir,
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn start_direct(iperf: SocketAddr, echo: SocketAddr, udp: SocketAddr) -> Result<Running> {
    let mut r = running(iperf, echo, tempfile::tempdir()?);
    r.udp = Some(udp);
    Ok(r)
}

/// Two socat relays in a row per service, with large buffers and
/// TCP_NODELAY like the tunnels.
fn start_socat(iperf: SocketAddr, echo: SocketAddr) -> Result<Running> {
    let mut r = running(iperf, echo, tempfile::tempdir()?);
    let mut relay = |name: &str, listen: u16, to: u16| -> Result<()> {
        let mut cmd = Command::new("socat");
        cmd.args([
            "-b",
            SOCAT_BUFFER,
            &format!("TCP-LISTEN:{listen},bind=127.0.0.1,reuseaddr,fork,backlog=4096,nodelay"),
            &format!("TCP:127.0.0.1:{to},nodelay"),
        ]);
        r.procs.push(Proc::spawn(name, cmd, r._dir.path())?);
        Ok(())
    };
    let (iperf_mid, iperf_pub) = (free_port(), free_port());
    relay("socat-iperf-2", iperf_mid, iperf.port())?;
    relay("socat-iperf-1", iperf_pub, iperf_mid)?;
    let (echo_mid, echo_pub) = (free_port(), free_port());
    relay("socat-echo-2", echo_mid, echo.port())?;
    relay("socat-echo-1", echo_pub, echo_mid)?;
    r.iperf = local(iperf_pub);
    r.echo = local(echo_pub);
    Ok(r)
}

fn start_rathole(
    tools: &Tools,
    iperf: SocketAddr,
    echo: SocketAddr,
    udp: SocketAddr,
) -> Result<Running> {
    let mut r = running(iperf, echo, tempfile::tempdir()?);
    let dir = r._dir.path().to_path_buf();
    let token = net::util::random_id();
    let (control, iperf_pub, echo_pub) = (free_port(), free_port(), free_port());
    let udp_pub = free_port();
    let server = write_file(
        &dir,
        "server.toml",
        &format!(
            "[server]\nbind_addr = \"127.0.0.1:{control}\"\n\n\
             [server.services.iperf]\ntoken = \"{token}\"\nbind_addr = \"127.0.0.1:{iperf_pub}\"\n\n\
             [server.services.echo]\ntoken = \"{token}\"\nbind_addr = \"127.0.0.1:{echo_pub}\"\n\n\
             [server.services.udp]\ntype = \"udp\"\ntoken = \"{token}\"\nbind_addr = \"127.0.0.1:{udp_pub}\"\n"
        ),
    );
    let client = write_file(
        &dir,
        "client.toml",
        &format!(
            "[client]\nremote_addr = \"127.0.0.1:{control}\"\n\n\
             [client.services.iperf]\ntoken = \"{token}\"\nlocal_addr = \"{iperf}\"\n\n\
             [client.services.echo]\ntoken = \"{token}\"\nlocal_addr = \"{echo}\"\n\n\
             [client.services.udp]\ntype = \"udp\"\ntoken = \"{token}\"\nlocal_addr = \"{udp}\"\n"
        ),
    );
    let mut cmd = Command::new(&tools.rathole);
    cmd.arg("-s").arg(&server);
    let server = Proc::spawn("rathole-server", cmd, &dir)?;
    let mut cmd = Command::new(&tools.rathole);
    cmd.arg("-c").arg(&client);
    let client = Proc::spawn("rathole-client", cmd, &dir)?;
    r.mem = Some((server.pid(), client.pid()));
    r.procs = vec![client, server];
    r.iperf = local(iperf_pub);
    r.echo = local(echo_pub);
    r.udp = Some(local(udp_pub));
    Ok(r)
}

fn proxy(name: &str, local_port: u16, remote_port: u16) -> String {
    format!(
        "[[proxies]]\nname = \"{name}\"\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\n\
         localPort = {local_port}\nremotePort = {remote_port}\n"
    )
}

/// frps and frpc, each with a fresh directory (so frpc trusts frps on first
/// use every run); `extra` goes into frpc's config.
fn start_ours(
    tools: &Tools,
    iperf: SocketAddr,
    echo: SocketAddr,
    udp: SocketAddr,
    extra: &str,
) -> Result<Running> {
    let mut r = running(iperf, echo, tempfile::tempdir()?);
    let dir = r._dir.path().to_path_buf();
    let token = net::util::random_id();
    let (bind, iperf_pub, echo_pub) = (free_port(), free_port(), free_port());
    let udp_pub = free_port();
    let frpc_cfg = write_file(
        &dir,
        "frpc.toml",
        &format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {bind}\nauth.token = \"{token}\"\n\
             log.level = \"warn\"\ntransport.tls.knownHostsFile = \"{}\"\n{extra}\n{}\n{}\n{}",
            dir.join("known").display(),
            proxy("iperf", iperf.port(), iperf_pub),
            proxy("echo", echo.port(), echo_pub),
            proxy("udp", udp.port(), udp_pub).replace("type = \"tcp\"", "type = \"udp\""),
        ),
    );
    let server = listening_frps(tools, &dir, bind, &token)?;
    let mut cmd = Command::new(&tools.frpc);
    cmd.arg("-c").arg(&frpc_cfg);
    let client = Proc::spawn("frpc", cmd, &dir)?;
    r.mem = Some((server.pid(), client.pid()));
    r.procs = vec![client, server];
    r.iperf = local(iperf_pub);
    r.echo = local(echo_pub);
    r.udp = Some(local(udp_pub));
    Ok(r)
}

/// frps, an frpc serving `iperf` and `echo` privately (and `udp` over
/// sudp), and an frpc whose visitors are the ports users connect to: stcp
/// when `udp` is given, otherwise xtcp, with coturn on loopback as the
/// STUN server.
fn start_private(
    tools: &Tools,
    iperf: SocketAddr,
    echo: SocketAddr,
    udp: Option<SocketAddr>,
) -> Result<Running> {
    let mut r = running(iperf, echo, tempfile::tempdir()?);
    let dir = r._dir.path().to_path_buf();
    let token = net::util::random_id();
    let bind = free_port();
    let (iperf_pub, echo_pub, udp_pub) = (free_port(), free_port(), free_port());
    let (kind, stun) = match udp {
        Some(_) => ("stcp", None),
        None => ("xtcp", Some(stun_server(&dir)?)),
    };
    let stun_line = stun.as_ref().map_or(String::new(), |(_, port)| {
        format!("natHoleStunServer = \"127.0.0.1:{port}\"\n")
    });
    let common = |known: &str| {
        format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {bind}\nauth.token = \"{token}\"\n\
             log.level = \"warn\"\ntransport.tls.knownHostsFile = \"{}\"\n{stun_line}",
            dir.join(known).display()
        )
    };
    let private = |name: &str, kind: &str, port: u16| {
        format!(
            "[[proxies]]\nname = \"{name}\"\ntype = \"{kind}\"\nsecretKey = \"{token}\"\n\
             localPort = {port}\n"
        )
    };
    let visitor = |name: &str, kind: &str, port: u16| {
        format!(
            "[[visitors]]\nname = \"{name}-v\"\ntype = \"{kind}\"\nserverName = \"{name}\"\n\
             secretKey = \"{token}\"\nbindPort = {port}\n"
        )
    };
    let mut owner = vec![
        common("known-owner"),
        private("iperf", kind, iperf.port()),
        private("echo", kind, echo.port()),
    ];
    let mut visitors = vec![
        common("known-visitor"),
        visitor("iperf", kind, iperf_pub),
        visitor("echo", kind, echo_pub),
    ];
    if let Some(udp) = udp {
        owner.push(private("udp", "sudp", udp.port()));
        visitors.push(visitor("udp", "sudp", udp_pub));
        r.udp = Some(local(udp_pub));
    }
    let owner_cfg = write_file(&dir, "owner.toml", &owner.concat());
    let visitor_cfg = write_file(&dir, "visitor.toml", &visitors.concat());
    let server = listening_frps(tools, &dir, bind, &token)?;
    let mut cmd = Command::new(&tools.frpc);
    cmd.arg("-c").arg(&owner_cfg);
    let owner = Proc::spawn("frpc-owner", cmd, &dir)?;
    let mut cmd = Command::new(&tools.frpc);
    cmd.arg("-c").arg(&visitor_cfg);
    let visitor = Proc::spawn("frpc-visitor", cmd, &dir)?;
    r.mem = Some((server.pid(), owner.pid()));
    r.procs = vec![visitor, owner, server];
    r.procs.extend(stun.map(|(p, _)| p));
    r.iperf = local(iperf_pub);
    r.echo = local(echo_pub);
    Ok(r)
}

/// coturn as a STUN server on a free loopback port, once it answers.
fn stun_server(dir: &Path) -> Result<(Proc, u16)> {
    let port = e2e::free_udp_port();
    let mut cmd = Command::new(e2e::stun::TURNSERVER);
    cmd.args([
        "-n",
        "--listening-ip=127.0.0.1",
        &format!("--listening-port={port}"),
        "--stun-only",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--log-file=stdout",
        "--simple-log",
        &format!("--pidfile={}", dir.join("turnserver.pid").display()),
    ]);
    let mut p = Proc::spawn("coturn", cmd, dir)?;
    let deadline = Instant::now() + READY_LIMIT;
    while !e2e::stun::answers(None, "127.0.0.1", port) {
        p.ensure_running()?;
        if Instant::now() > deadline {
            bail!("coturn did not answer STUN on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((p, port))
}

/// frps on `bind` with `token`, once it listens (frpc gives up if its
/// first login fails, so it starts after this).
fn listening_frps(tools: &Tools, dir: &Path, bind: u16, token: &str) -> Result<Proc> {
    let frps_cfg = write_file(
        dir,
        "frps.toml",
        &format!(
            "bindAddr = \"127.0.0.1\"\nbindPort = {bind}\nauth.token = \"{token}\"\n\
             log.level = \"warn\"\ntransport.tls.selfSignedDir = \"{}\"\n",
            dir.display()
        ),
    );
    let mut cmd = Command::new(&tools.frps);
    cmd.arg("-c").arg(&frps_cfg);
    let mut server = Proc::spawn("frps", cmd, dir)?;
    let deadline = Instant::now() + READY_LIMIT;
    while std::net::TcpStream::connect(local(bind)).is_err() {
        server.ensure_running()?;
        if Instant::now() > deadline {
            bail!("frps did not listen on port {bind}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(server)
}

/// Polls until a message echoes through the setup's public echo port. (The
/// iperf3 service of rathole may come up a moment later; the iperf3 runs
/// retry a failed start.)
async fn wait_ready(r: &mut Running) -> Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        r.ensure_running()?;
        if echo_once(r.echo).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no echo through {} within {READY_LIMIT:?}", r.echo);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn echo_once(addr: SocketAddr) -> Result<()> {
    let probe = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ready?").await?;
        let mut back = [0u8; 6];
        s.read_exact(&mut back).await?;
        anyhow::ensure!(&back == b"ready?", "echo returned other bytes");
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(1), probe)
        .await
        .context("echo probe timed out")?
}
