//! HTTP through a virtual host, the way each setup's users would build it,
//! all in front of the same nginx backend on 127.0.0.1:
//!
//! - **direct**: the load generator to the backend;
//! - **ours, vhost**: frps `vhostHTTPPort` → frpc → backend (one hop does
//!   the HTTP and the tunnel);
//! - **nginx + rathole**: nginx on the public side (`proxy_pass`, upstream
//!   keep-alive) to a rathole TCP tunnel to the backend — rathole has no
//!   HTTP vhosts, so this is what its users run;
//! - **nginx + ours, tcp**: the same nginx in front of our TCP tunnel.
//!
//! Load: `wrk` (Debian), 2 threads, 64 connections, 5 s, small responses,
//! in 3 rounds per setup taken in turns (medians reported); then one 256
//! MiB download with curl. CPU per request counts every
//! process in the path (frps, frpc, rathole's two, the front nginx), not
//! the backend or the load generator, which all setups share. `make
//! bench` runs it and writes bench/http.md (`HTTPBENCH_RESULTS=path`
//! elsewhere). About two minutes.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::{free_port, write_file};

const HOST: &str = "bench.test";
const BIG_MIB: usize = 256;

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &mut Command, procs: &mut Procs) -> Result<u32> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id();
    procs.0.push(child);
    Ok(pid)
}

fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// nginx with `body` as its http block, as one process (`master_process
/// off`: killing it leaves no orphaned worker); returns its pid.
fn nginx(dir: &Path, name: &str, http: &str, procs: &mut Procs) -> Result<u32> {
    let root = dir.join(name);
    std::fs::create_dir_all(&root)?;
    let conf = format!(
        "user root;\nmaster_process off;\ndaemon off;\nerror_log stderr crit;\npid {r}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n client_body_temp_path {r}/b;\n\
         proxy_temp_path {r}/p; fastcgi_temp_path {r}/f; uwsgi_temp_path {r}/u; scgi_temp_path {r}/s;\n{http}\n}}\n",
        r = root.display()
    );
    let file = write_file(&root, "nginx.conf", &conf);
    spawn(
        Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(&root),
        procs,
    )
}

/// Pids of `pid` and its children (nginx workers).
fn with_children(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if ppid == Some(pid) {
                out.push(p);
            }
        }
    }
    out
}

/// User + system CPU seconds of these processes.
fn cpu(pids: &[u32]) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let (u, k): (f64, f64) = (rest.get(11)?.parse().ok()?, rest.get(12)?.parse().ok()?);
            Some((u + k) / tick)
        })
        .sum()
}

/// A setup under test: where to send requests, and whose CPU counts.
struct Setup {
    label: &'static str,
    port: u16,
    path_pids: Vec<u32>,
    _procs: Procs,
}

#[derive(Default)]
struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: Option<f64>,
    download_mib_s: f64,
}

fn binaries() -> Result<(PathBuf, PathBuf, PathBuf)> {
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .context("target/<profile>/examples")?;
    let rathole = std::env::var_os("BENCH_RATHOLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| release.join("../bench-tools/bin/rathole"));
    let out = (release.join("frps"), release.join("frpc"), rathole);
    for p in [&out.0, &out.1, &out.2] {
        if !p.exists() {
            bail!("{} not found: run `make bench`", p.display());
        }
    }
    Ok(out)
}

/// frps + frpc; `proxy` is frpc's proxy table (with `{backend}` filled in).
fn ours(dir: &Path, extra_frps: &str, proxy: &str, procs: &mut Procs) -> Result<Vec<u32>> {
    let (frps, frpc, _) = binaries()?;
    let bind = free_port();
    let s = write_file(
        dir,
        "frps.toml",
        &format!(
            "bindAddr = \"127.0.0.1\"\nbindPort = {bind}\nauth.token = \"b\"\nlog.level = \"warn\"\n\
             transport.tls.selfSignedDir = \"{}\"\n{extra_frps}",
            dir.display()
        ),
    );
    let c = write_file(
        dir,
        "frpc.toml",
        &format!(
            "serverPort = {bind}\nauth.token = \"b\"\nlog.level = \"warn\"\n\
             transport.tls.knownHostsFile = \"{}\"\n{proxy}",
            dir.join("known").display()
        ),
    );
    let sp = spawn(Command::new(frps).arg("-c").arg(&s), procs)?;
    wait_port(bind)?;
    let cp = spawn(Command::new(frpc).arg("-c").arg(&c), procs)?;
    Ok(vec![sp, cp])
}

fn rathole(dir: &Path, backend: u16, procs: &mut Procs) -> Result<(u16, Vec<u32>)> {
    let (_, _, rathole) = binaries()?;
    let (control, public) = (free_port(), free_port());
    let s = write_file(
        dir,
        "server.toml",
        &format!(
            "[server]\nbind_addr = \"127.0.0.1:{control}\"\n[server.services.web]\ntoken = \"b\"\n\
             bind_addr = \"127.0.0.1:{public}\"\n"
        ),
    );
    let c = write_file(
        dir,
        "client.toml",
        &format!(
            "[client]\nremote_addr = \"127.0.0.1:{control}\"\n[client.services.web]\ntoken = \"b\"\n\
             local_addr = \"127.0.0.1:{backend}\"\n"
        ),
    );
    let sp = spawn(Command::new(&rathole).arg("-s").arg(&s), procs)?;
    wait_port(control)?;
    let cp = spawn(Command::new(&rathole).arg("-c").arg(&c), procs)?;
    Ok((public, vec![sp, cp]))
}

/// nginx in front of `upstream`, as a tunnel user would configure it.
fn front(dir: &Path, upstream: u16, procs: &mut Procs) -> Result<(u16, Vec<u32>)> {
    let port = free_port();
    let pid = nginx(
        dir,
        "front",
        &format!(
            " upstream tunnel {{ server 127.0.0.1:{upstream}; keepalive 64; }}\n\
              server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://tunnel; \
              proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host; \
              proxy_buffering off; }} }}"
        ),
        procs,
    )?;
    wait_port(port)?;
    std::thread::sleep(Duration::from_millis(300));
    Ok((port, with_children(pid)))
}

fn setups(dir: &Path, backend: u16) -> Result<Vec<Setup>> {
    let mut out = Vec::new();
    out.push(Setup {
        label: "direct",
        port: backend,
        path_pids: Vec::new(),
        _procs: Procs(Vec::new()),
    });

    let d = dir.join("vhost");
    std::fs::create_dir_all(&d)?;
    let mut procs = Procs(Vec::new());
    let vhost = free_port();
    let pids = ours(
        &d,
        &format!("vhostHTTPPort = {vhost}\n"),
        &format!("[[proxies]]\nname = \"web\"\ntype = \"http\"\nlocalPort = {backend}\ncustomDomains = [\"{HOST}\"]\n"),
        &mut procs,
    )?;
    wait_port(vhost)?;
    out.push(Setup {
        label: "ours, vhost",
        port: vhost,
        path_pids: pids,
        _procs: procs,
    });

    let d = dir.join("rathole");
    std::fs::create_dir_all(&d)?;
    let mut procs = Procs(Vec::new());
    let (public, mut pids) = rathole(&d, backend, &mut procs)?;
    wait_port(public)?;
    let (port, front_pids) = front(&d, public, &mut procs)?;
    pids.extend(front_pids);
    out.push(Setup {
        label: "nginx + rathole",
        port,
        path_pids: pids,
        _procs: procs,
    });

    let d = dir.join("tcp");
    std::fs::create_dir_all(&d)?;
    let mut procs = Procs(Vec::new());
    let remote = free_port();
    let mut pids = ours(
        &d,
        "",
        &format!("[[proxies]]\nname = \"web\"\ntype = \"tcp\"\nlocalPort = {backend}\nremotePort = {remote}\n"),
        &mut procs,
    )?;
    wait_port(remote)?;
    let (port, front_pids) = front(&d, remote, &mut procs)?;
    pids.extend(front_pids);
    out.push(Setup {
        label: "nginx + ours, tcp",
        port,
        path_pids: pids,
        _procs: procs,
    });
    Ok(out)
}

/// wrk's figures: requests, requests per second, p50 and p99 in ms.
fn wrk(port: u16) -> Result<(f64, f64, f64, f64)> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c64",
            "-d5s",
            "--latency",
            "-H",
            &format!("Host: {HOST}"),
        ])
        .arg(format!("http://127.0.0.1:{port}/small"))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "     50%    1.22ms" in the latency distribution.
    let num = |prefix: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(prefix))?;
        ms(line.split_whitespace().nth(1)?)
    };
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context(format!("no rate in wrk output: {text}"))?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("errors under load: {text}");
    }
    Ok((
        requests,
        rate,
        num("50%").unwrap_or(0.0),
        num("99%").unwrap_or(0.0),
    ))
}

/// "1.23ms" / "850.00us" / "1.20s" in milliseconds.
fn ms(v: &str) -> Option<f64> {
    if let Some(x) = v.strip_suffix("us") {
        return x.parse::<f64>().ok().map(|x| x / 1000.0);
    }
    if let Some(x) = v.strip_suffix("ms") {
        return x.parse().ok();
    }
    v.strip_suffix('s')?.parse::<f64>().ok().map(|x| x * 1000.0)
}

fn download(port: u16) -> Result<f64> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{speed_download} %{size_download}",
            "-H",
            &format!("Host: {HOST}"),
        ])
        .arg(format!("http://127.0.0.1:{port}/big"))
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.split_whitespace();
    let speed: f64 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .context("curl speed")?;
    let size: usize = parts
        .next()
        .and_then(|v| v.parse().ok())
        .context("curl size")?;
    if size != BIG_MIB << 20 {
        bail!("downloaded {size} bytes of {}", BIG_MIB << 20);
    }
    Ok(speed / (1 << 20) as f64)
}

/// Rounds of wrk per setup, taken in turns (ours, theirs, ours, …) so a
/// machine that speeds up or slows down during the run favours nobody;
/// each figure is the median of its rounds.
const ROUNDS: usize = 3;

/// One round's figures: (rate, p50, p99, CPU µs per request).
type Round = (f64, f64, f64, Option<f64>);

/// One round of wrk against `s`.
fn round(s: &Setup) -> Result<Round> {
    // Warm up: connections in nginx's upstream pool, streams, caches.
    let _ = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-H", &format!("Host: {HOST}")])
        .arg(format!("http://127.0.0.1:{}/small", s.port))
        .status();
    let before = cpu(&s.path_pids);
    let (requests, rate, p50_ms, p99_ms) = wrk(s.port)?;
    let used = cpu(&s.path_pids) - before;
    let cpu_us = (!s.path_pids.is_empty() && requests > 0.0).then(|| used / requests * 1e6);
    Ok((rate, p50_ms, p99_ms, cpu_us))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The median of a setup's rounds, and its download.
fn figures(s: &Setup, rounds: &[Round]) -> Result<Figures> {
    let col = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let cpus: Vec<f64> = rounds.iter().filter_map(|r| r.3).collect();
    Ok(Figures {
        rate: col(|r| r.0),
        p50_ms: col(|r| r.1),
        p99_ms: col(|r| r.2),
        cpu_us: (!cpus.is_empty()).then(|| median(cpus)),
        download_mib_s: download(s.port)?,
    })
}

fn render(results: &[(&str, Result<Figures>)], took: Duration) -> String {
    let get = |i: usize| results.get(i).and_then(|(_, r)| r.as_ref().ok());
    let (ours, rat) = (get(1), get(2));
    let mut md = format!(
        "# HTTP virtual host benchmark\n\nGenerated by `make bench` (tests/examples/httpbench.rs) in {:.0} s, \
         on the machine of bench/results.md, all on 127.0.0.1. wrk: 2 threads, 64 connections, 5 s, a \
         3-byte response, {ROUNDS} rounds per setup taken in turns, each figure the median of its \
         rounds; then a {BIG_MIB} MiB download with curl. CPU per request: every process \
         between wrk and the backend (frps, frpc, rathole's server and client, the front nginx). \
         Ratio: ours, vhost ÷ nginx + rathole (above 1 is better for rates, below 1 for \
         latency and CPU).\n\n| | {} | ours ÷ nginx + rathole |\n|---|{}---:|\n",
        took.as_secs_f64(),
        results.iter().map(|(l, _)| *l).collect::<Vec<_>>().join(" | "),
        "---:|".repeat(results.len()),
    );
    type Get = fn(&Figures) -> Option<f64>;
    let rows: [(&str, Get, usize); 5] = [
        ("requests/s", |f| Some(f.rate), 0),
        ("latency p50 (ms)", |f| Some(f.p50_ms), 2),
        ("latency p99 (ms)", |f| Some(f.p99_ms), 2),
        ("CPU per request (µs)", |f| f.cpu_us, 1),
        ("256 MiB download (MiB/s)", |f| Some(f.download_mib_s), 0),
    ];
    for (label, f, d) in rows {
        let cells: Vec<String> = results
            .iter()
            .map(|(_, r)| match r {
                Ok(x) => f(x).map_or("n/a".into(), |v| format!("{v:.d$}")),
                Err(e) => format!("error: {e:#}"),
            })
            .collect();
        let ratio = match (ours.and_then(f), rat.and_then(f)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => String::new(),
        };
        md += &format!("| {label} | {} | {ratio} |\n", cells.join(" | "));
    }
    let target = |ok: bool| if ok { "met" } else { "**not met**" };
    if let (Some(o), Some(r)) = (ours, rat) {
        let rate = o.rate / r.rate;
        let cpu = o.cpu_us.zip(r.cpu_us).map(|(a, b)| a / b);
        md += &format!(
            "\nTarget: ours, vhost ≥ 1.2× the request rate of nginx + rathole at ≤ 0.8× its \
             CPU per request — rate {rate:.2}× ({}), CPU {} ({}).\n",
            target(rate >= 1.2),
            cpu.map_or("n/a".into(), |c| format!("{c:.2}×")),
            target(cpu.is_some_and(|c| c <= 0.8)),
        );
    }
    md
}

fn main() -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let mut backend_procs = Procs(Vec::new());
    let backend = free_port();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files)?;
    std::fs::write(files.join("big"), vec![0x5au8; BIG_MIB << 20])?;
    nginx(
        dir.path(),
        "backend",
        &format!(
            " server {{ listen 127.0.0.1:{backend} backlog=4096; keepalive_requests 1000000;\n\
               location = /small {{ default_type text/plain; return 200 \"ok\\n\"; }}\n\
               location = /big {{ alias {}/big; }} }}",
            files.display()
        ),
        &mut backend_procs,
    )?;
    wait_port(backend)?;
    let all = setups(dir.path(), backend)?;
    let mut rounds: Vec<Result<Vec<_>>> = all.iter().map(|_| Ok(Vec::new())).collect();
    for n in 0..ROUNDS {
        for (s, done) in all.iter().zip(rounds.iter_mut()) {
            let Ok(list) = done else { continue };
            match round(s) {
                Ok(r) => {
                    eprintln!(
                        "== {} (round {}): {:.0} req/s, p50 {:.2} ms",
                        s.label,
                        n + 1,
                        r.0,
                        r.1
                    );
                    list.push(r);
                }
                Err(e) => *done = Err(e),
            }
        }
    }
    let results: Vec<(&str, Result<Figures>)> = all
        .iter()
        .zip(rounds)
        .map(|(s, r)| (s.label, r.and_then(|r| figures(s, &r))))
        .collect();
    let md = render(&results, started.elapsed());
    let out = std::env::var_os("HTTPBENCH_RESULTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/http.md"),
        PathBuf::from,
    );
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    println!("{md}");
    Ok(())
}
