//! `make demo`: the real frps and frpc binaries on loopback, exposing a small
//! local service, so a newcomer sees a working tunnel in one command.

use std::io::{IsTerminal, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use e2e::{bin, free_port, write_file};

const GREETING: &str = "Hello from the LAN side, through the tunnel!";

fn main() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("demo-run");
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;

    let local = spawn_service()?;

    let bind_port = free_port();
    let remote_port = free_port();
    let token = net::util::random_id();
    let frps_cfg = write_file(
        &dir,
        "frps.toml",
        &format!(
            "bindAddr = \"127.0.0.1\"\nbindPort = {bind_port}\nauth.token = \"{token}\"\nlog.to = \"{}\"\n",
            dir.join("frps.log").display()
        ),
    );
    let frpc_cfg = write_file(
        &dir,
        "frpc.toml",
        &format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {bind_port}\nauth.token = \"{token}\"\nlog.to = \"{}\"\n\n\
             [[proxies]]\nname = \"hello\"\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\nlocalPort = {}\nremotePort = {remote_port}\n",
            dir.join("frpc.log").display(),
            local.port()
        ),
    );

    let mut frps = Guard(Command::new(bin("frps")).arg("-c").arg(&frps_cfg).spawn()?);
    // frpc gives up at once if frps is not listening yet (loginFailExit
    // defaults to true), so start it only once frps takes connections.
    wait_for(
        "frps did not start listening",
        &mut [&mut frps],
        &dir,
        20,
        || TcpStream::connect(("127.0.0.1", bind_port)).ok(),
    )?;
    let mut frpc = Guard(Command::new(bin("frpc")).arg("-c").arg(&frpc_cfg).spawn()?);

    // Wait until a request through the public port gets the greeting.
    let answer = wait_for(
        "the tunnel did not come up",
        &mut [&mut frps, &mut frpc],
        &dir,
        50,
        || fetch(remote_port).filter(|a| a.contains(GREETING)),
    )?;

    report(
        bind_port,
        remote_port,
        local.port(),
        &frps_cfg,
        &frpc_cfg,
        &dir,
        &answer,
    );
    wait_or_stop(frps, frpc)
}

fn fetch(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Polls `ready` every `every_ms` until it gives a value; fails with `what`
/// after 30 s, or at once when one of `procs` has exited.
fn wait_for<T>(
    what: &str,
    procs: &mut [&mut Guard],
    logs: &Path,
    every_ms: u64,
    mut ready: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        for p in procs.iter_mut() {
            if let Some(status) = p.0.try_wait()? {
                anyhow::bail!(
                    "a process exited early ({status}); see the logs in {}",
                    logs.display()
                );
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("{what}; see the logs in {}", logs.display());
        }
        std::thread::sleep(Duration::from_millis(every_ms));
    }
}

/// Kills the child when the demo ends for any reason.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The "LAN" service: answers every request with a greeting.
fn spawn_service() -> anyhow::Result<std::net::SocketAddr> {
    let service = TcpListener::bind("127.0.0.1:0")?;
    let local = service.local_addr()?;
    std::thread::spawn(move || {
        for mut conn in service.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let body = format!("{GREETING}\n");
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });

    Ok(local)
}

/// What runs where, and what came through the tunnel.
fn report(
    bind_port: u16,
    remote_port: u16,
    local_port: u16,
    frps_cfg: &Path,
    frpc_cfg: &Path,
    dir: &Path,
    answer: &str,
) {
    println!();
    println!(
        "  frps (public side)  listens for frpc on 127.0.0.1:{bind_port}   config: {}",
        frps_cfg.display()
    );
    println!(
        "  frpc (LAN side)     exposes 127.0.0.1:{} as public port {remote_port}   config: {}",
        local_port,
        frpc_cfg.display()
    );
    println!();
    println!("  Fetched through the tunnel from 127.0.0.1:{remote_port}:");
    for line in answer.lines() {
        println!("    | {line}");
    }
    println!();
    println!("  Try it yourself:  curl http://127.0.0.1:{remote_port}/");
    println!("  Logs: {}/frps.log and frpc.log", dir.display());
}

/// With a terminal, runs until Ctrl-C (which reaches frps and frpc too).
fn wait_or_stop(mut frps: Guard, mut frpc: Guard) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() {
        println!("  Press Ctrl-C to stop.");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(tokio::signal::ctrl_c())?;
        // Ctrl-C reached frps and frpc too (same process group); they exit 0.
        let frpc_status = frpc.0.wait()?;
        let frps_status = frps.0.wait()?;
        println!("\n  stopped: frpc {frpc_status}, frps {frps_status}");
    } else {
        println!("  (no terminal: stopping now)");
    }
    Ok(())
}
