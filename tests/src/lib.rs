//! Helpers for the end-to-end tests: the real server and client, run either
//! in-process through their `run` functions or as the built binaries.
//!
//! Everything listens on 127.0.0.1 with ports chosen by the kernel, and tests
//! wait on events or log lines, never on sleeps.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use frpc::Event;

pub mod netns;
pub mod raw;
pub mod services;
pub mod sites;
pub mod sshd;
pub mod stun;
pub mod web;
pub mod wire_samples;

pub use sites::{nginx_site, tls_site};

/// Generous upper bound for anything a test waits for; reaching it is a failure.
pub const WAIT: Duration = Duration::from_secs(30);

/// A frps running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Holds the self-signed certificate; kept so a restart reuses it.
    pub dir: Arc<tempfile::TempDir>,
    /// Live figures (byte counters per proxy and client).
    pub stats: frps::Stats,
}

impl TestServer {
    /// Starts frps with `extra` TOML appended to a loopback base config.
    pub async fn start(extra: &str) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind frps");
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start_on(listener, dir, extra)
    }

    /// Starts frps on `listener`, keeping its certificate in `dir`.
    pub fn start_on(listener: TcpListener, dir: Arc<tempfile::TempDir>, extra: &str) -> TestServer {
        let addr = listener.local_addr().expect("addr");
        let text = format!(
            "bindAddr = \"127.0.0.1\"\nbindPort = {}\ntransport.tls.selfSignedDir = \"{}\"\n{extra}",
            addr.port(),
            dir.path().display()
        );
        let config = ServerConfig::from_toml(&text).expect("server config");
        let shutdown = CancellationToken::new();
        let stats = frps::Stats::default();
        let task = tokio::spawn(frps::run_with_stats(
            config,
            listener,
            shutdown.clone(),
            stats.clone(),
        ));
        TestServer {
            addr,
            shutdown,
            task,
            dir,
            stats,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("frps task").expect("frps run");
    }
}

/// A frpc running in this process, with its event stream.
pub struct TestClient {
    pub events: mpsc::UnboundedReceiver<Event>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Holds the client's known-servers file (trust on first use).
    pub dir: tempfile::TempDir,
}

impl TestClient {
    /// Starts frpc against `server` with `extra` TOML (auth, proxies…).
    pub fn start(server: SocketAddr, extra: &str) -> TestClient {
        let dir = tempfile::tempdir().expect("tempdir");
        // Trust on first use writes next to the config unless told where.
        let known = if extra.contains("knownHostsFile") {
            String::new()
        } else {
            format!(
                "transport.tls.knownHostsFile = \"{}\"\n",
                dir.path().join("known_servers").display()
            )
        };
        let text = format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {}\n{known}{extra}",
            server.port()
        );
        let config = ClientConfig::from_toml(&text).expect("client config");
        let (tx, events) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(frpc::run(config, shutdown.clone(), frpc::Events::new(tx)));
        TestClient {
            events,
            shutdown,
            task,
            dir,
        }
    }

    /// Next event, failing the test after [`WAIT`].
    pub async fn next_event(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("timed out waiting for a client event")
            .expect("client stopped sending events")
    }

    /// Waits for proxy `name` to start and returns its loopback address.
    pub async fn proxy_addr(&mut self, name: &str) -> SocketAddr {
        loop {
            match self.next_event().await {
                Event::ProxyStarted {
                    name: n,
                    remote_addr,
                } if n == name => {
                    let port: u16 = remote_addr
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .expect("port in remote address");
                    return SocketAddr::from(([127, 0, 0, 1], port));
                }
                Event::ProxyFailed { name: n, error } if n == name => {
                    panic!("proxy {name} failed: {error}")
                }
                _ => {}
            }
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("frpc task").expect("frpc run");
    }
}

/// TOML for one tcp proxy.
pub fn tcp_proxy(name: &str, local: SocketAddr, remote_port: u16) -> String {
    format!(
        "[[proxies]]\nname = \"{name}\"\ntype = \"tcp\"\nlocalIP = \"{}\"\nlocalPort = {}\nremotePort = {remote_port}\n",
        local.ip(),
        local.port()
    )
}

/// TOML for one udp proxy.
pub fn udp_proxy(name: &str, local: SocketAddr, remote_port: u16, extra: &str) -> String {
    format!(
        "[[proxies]]\nname = \"{name}\"\ntype = \"udp\"\nlocalIP = \"{}\"\nlocalPort = {}\nremotePort = {remote_port}\n{extra}",
        local.ip(),
        local.port()
    )
}

/// An echo service on 127.0.0.1: echoes until EOF, then half-closes.
pub async fn spawn_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Sends `msg` on `stream` and half-closes while reading everything the
/// peer sends back (both at once, so large messages cannot deadlock).
pub async fn exchange(mut stream: tokio::net::TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let (mut r, mut w) = stream.split();
    let (wrote, got) = tokio::join!(
        async {
            w.write_all(msg).await?;
            w.shutdown().await
        },
        async {
            let mut v = Vec::new();
            r.read_to_end(&mut v).await.map(|_| v)
        }
    );
    wrote?;
    got
}

/// A port that nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

/// Reads until EOF.
pub async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).await.expect("read to end");
    v
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

// ---------------------------------------------------------------------------
// Binaries

/// Path of a workspace binary (`frps`, `frpc`), built by `cargo build`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/e2e-… → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (`cargo build --workspace`, which `make test` does)",
        path.display()
    );
    path
}

/// frps and frpc keep what they write (known servers, a self-signed
/// certificate) in `$STATE_DIRECTORY` when no config folder holds it; without
/// this a test run as root would share `/var/lib/frp-rs` with every other
/// test, and a port reused by another test's server would look like a changed
/// certificate. The command's own folder, else its config file's.
fn keep_state_in_the_test(cmd: &mut Command) {
    let ours = Path::new(cmd.get_program())
        .file_name()
        .is_some_and(|n| n == "frps" || n == "frpc");
    if !ours || cmd.get_envs().any(|(k, _)| k == "STATE_DIRECTORY") {
        return;
    }
    let config = cmd
        .get_args()
        .skip_while(|a| *a != "-c" && *a != "--config")
        .nth(1)
        .and_then(|c| Path::new(c).parent().map(Path::to_path_buf));
    let dir = cmd
        .get_current_dir()
        .map(Path::to_path_buf)
        .or(config)
        .expect("give frps/frpc a folder for its state: current_dir, -c or STATE_DIRECTORY");
    cmd.env("STATE_DIRECTORY", dir);
}

/// A child process whose stderr lines are collected; killed on drop.
pub struct Proc {
    pub child: Child,
    lines: std_mpsc::Receiver<String>,
    pub log: Vec<String>,
    /// Lines [`Proc::output`] took into `log` that no wait has looked at.
    unseen: std::collections::VecDeque<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        keep_state_in_the_test(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        let mut child = cmd.spawn().expect("spawn");
        let (tx, lines) = std_mpsc::channel();
        for pipe in [
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            child,
            lines,
            log: Vec::new(),
            unseen: Default::default(),
        }
    }

    /// The next line not looked at yet (in `log` from then on), or None
    /// after `timeout`.
    fn next_line(&mut self, timeout: Duration) -> Option<String> {
        if let Some(line) = self.unseen.pop_front() {
            return Some(line);
        }
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.log.push(line.clone());
        Some(line)
    }

    /// Waits for a line containing `needle`; panics with the log so far after `timeout`.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!(
                    "no line containing {needle:?} within {timeout:?}; output so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The first line containing one of `needles`, or None after `timeout`.
    pub fn first_of(&mut self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next_line(left)?;
            if needles.iter().any(|n| line.contains(n)) {
                return Some(line);
            }
        }
    }

    /// Collects output until the process exits and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Drain what is left.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return status.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "process still running after {timeout:?}; output:\n{}",
                    self.log.join("\n")
                );
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(20)) {
                self.log.push(line);
            }
        }
    }

    /// The output so far, with what the process wrote until it has been
    /// quiet for a moment (a failing test shows the lines that explain it).
    pub fn output(&mut self) -> String {
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            match self.lines.recv_timeout(Duration::from_millis(300)) {
                Ok(line) => {
                    self.log.push(line.clone());
                    self.unseen.push_back(line);
                }
                Err(_) => break,
            }
        }
        self.log.join("\n")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Port number from a frpc line "proxy started: reachable on server port N".
pub fn port_from_line(line: &str) -> u16 {
    line.split("server port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// A free loopback port for a server process to bind (tiny race with other
/// processes is accepted; the server reports a bind error if it loses it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A free loopback UDP port (the same small race as [`free_port`]).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

/// Starts the frps binary on a free loopback port; returns it and its port.
pub fn spawn_frps(dir: &Path, extra: &str) -> (Proc, u16) {
    for _ in 0..5 {
        let port = free_port();
        let cfg = write_file(
            dir,
            "frps.toml",
            &format!("bindAddr = \"127.0.0.1\"\nbindPort = {port}\n{extra}"),
        );
        let mut cmd = Command::new(bin("frps"));
        cmd.arg("-c").arg(&cfg);
        let mut p = Proc::spawn(cmd);
        // Either it listens, or it lost the port race and exits.
        let deadline = Instant::now() + WAIT;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (p, port);
            }
            if p.child.try_wait().expect("try_wait").is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "frps did not start: {}",
                p.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = p.wait_exit(WAIT);
    }
    panic!("frps could not bind a free port in 5 attempts");
}

/// Starts the frpc binary with a config file written to `dir`.
pub fn spawn_frpc(dir: &Path, server_port: u16, extra: &str) -> Proc {
    let cfg = write_file(
        dir,
        "frpc.toml",
        &format!("serverAddr = \"127.0.0.1\"\nserverPort = {server_port}\n{extra}"),
    );
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c").arg(&cfg);
    Proc::spawn(cmd)
}

/// tests/browser, checked to have playwright-core and Debian's Chromium
/// (`.ci/install-deps` installs both; `make test` runs it).
pub fn browser_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "needs Chromium and playwright-core: `.ci/install-deps` installs both (make test runs it)"
    );
    dir
}
