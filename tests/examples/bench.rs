//! `make bench`: the same workloads, in one run, through a direct loopback
//! connection, a bare two-hop socat relay, rathole 0.5.0 and our tunnel (with
//! defaults, and with `transport.tcpMux = false` when frpc accepts it).
//! Writes `bench/results.md` and prints it with the targets we set.
//!
//! Workloads (all on 127.0.0.1): iperf3 throughput (1 and 8 streams, both
//! ways), 64-byte request/response through an echo service (latency on one
//! connection, alone and beside a bulk stream of the same tunnel, request
//! rate on 64), connection rate, 10,000 idle connections
//! (open time, survivors, memory) and a SHA-256-checked bulk transfer.
//!
//! Missed targets are reported, not fatal: the exit status is non-zero only
//! when the harness breaks, a setup fails to start or integrity fails.
//!
//! Subsets, for profiling or a quick look: `BENCH_SETUPS=ours,rathole`
//! (keys: direct, socat, rathole, ours, nomux, notls),
//! `BENCH_WORKLOADS=iperf,rate` (integrity, iperf, latency, fairness, rate,
//! conns, udp, scale), `BENCH_RESULTS=path` to write the table elsewhere.
//!
//! Layout: `bench/setups.rs` (starting and stopping each setup),
//! `bench/workloads.rs` (the echo service and one function per workload),
//! `bench/report.rs` (results, the markdown table, the targets).

#[path = "bench/report.rs"]
mod report;
#[path = "bench/setups.rs"]
mod setups;
#[path = "bench/workloads.rs"]
mod workloads;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use report::{SetupResult, Status};
use setups::{Kind, Running, Tools};
use workloads::IperfCase;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        tokio::spawn(stop_on_signal());
        match run().await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("bench: {e:#}");
                ExitCode::FAILURE
            }
        }
    });
    // Connections still held by tasks must not keep the run alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// On Ctrl-C or SIGTERM, kill every process started so far and exit.
async fn stop_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    setups::kill_all();
    eprintln!("bench: interrupted");
    std::process::exit(130);
}

async fn run() -> Result<ExitCode> {
    let started = Instant::now();
    let fd_note = raise_fd_limit();
    let tools = Tools::locate()?;
    let machine = report::machine(&tools) + &fd_note;
    eprintln!("{machine}");

    // BENCH_SETUPS=rathole,ours,notls (see Kind::key) runs only those.
    let only = std::env::var("BENCH_SETUPS").unwrap_or_default();
    let chosen = |k: Kind| only.is_empty() || only.split(',').any(|o| k.key() == o.trim());
    let mut results = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|&k| chosen(k)) {
        let t = Instant::now();
        eprintln!("== {}", kind.label());
        let result = bench_setup(kind, &tools).await?;
        eprintln!("   ({:.0} s)", t.elapsed().as_secs_f64());
        results.push(result);
    }

    let md = report::render(&machine, &results, started.elapsed());
    // BENCH_RESULTS=path writes elsewhere (`make profile` does, so that a
    // partial run does not replace the table).
    let out = std::env::var_os("BENCH_RESULTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results.md"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(out.parent().context("results directory")?)?;
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    println!("{md}");
    println!("(written to {})", out.display());

    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.kind.label())
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "bench: FAILED (failed to start or integrity): {}",
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Raises the file descriptor limit (the children inherit it) and picks how
/// many connections the scale test holds; returns a line for the report.
///
/// A connection held through rathole costs its server and its client two
/// descriptors each (public side and data channel; data channel and local
/// side), and the same in frps with `tcpMux = false`; this harness holds the
/// client end and the echo service's end. Root may raise the hard limit
/// (with CAP_SYS_RESOURCE); otherwise the soft limit goes up to the hard one,
/// and when that is below 2 × 10,000 the test holds fewer connections, so
/// that every setup can hold them all (`BENCH_SCALE_CONNS` overrides).
fn raise_fd_limit() -> String {
    use rlimit::Resource;
    const MARGIN: u64 = 400;
    let want = 2 * workloads::SCALE_WANTED as u64 + 10 * MARGIN;
    if rlimit::setrlimit(Resource::NOFILE, want, want).is_err() {
        let _ = rlimit::increase_nofile_limit(want);
    }
    let soft = rlimit::getrlimit(Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let fits = (soft.saturating_sub(MARGIN) / 2 / 500 * 500) as usize;
    let conns = std::env::var("BENCH_SCALE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(fits.min(workloads::SCALE_WANTED));
    workloads::set_scale_conns(conns);
    if conns < workloads::SCALE_WANTED {
        format!(
            "- File descriptors: limit {soft}, not raisable here, so the scale test holds \
             {conns} connections instead of {}: rathole's server and client (and frps \
             with tcpMux=false) need two descriptors per connection\n",
            workloads::SCALE_WANTED
        )
    } else {
        format!("- File descriptors: limit {soft}\n")
    }
}

/// Starts `kind` with its own iperf3 server and echo service, runs every
/// workload through it and stops it.
async fn bench_setup(kind: Kind, tools: &Tools) -> Result<SetupResult> {
    let mut result = SetupResult::new(kind);
    if kind == Kind::OursNoMux {
        if let Err(why) = setups::nomux_available(tools) {
            eprintln!("   not available: {why}");
            result.status = Status::NotAvailable(why);
            return Ok(result);
        }
    }
    let dir = tempfile::tempdir()?;
    let echo = workloads::echo_server().await?;
    let udp_echo = workloads::udp_echo_server().await?;
    let (_iperf_server, iperf) = setups::iperf_server(dir.path()).await?;
    let mut running = match setups::start(kind, tools, iperf, echo.addr, udp_echo.addr).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("   failed to start: {e:#}");
            result.status = Status::FailedToStart(format!("{e:#}"));
            return Ok(result);
        }
    };
    run_workloads(&running, &mut result).await;
    if let Err(e) = running.ensure_running() {
        result.problems.push(format!("{e:#}"));
    }
    Ok(result)
}

/// Keeps `outcome` of `workload` for the table, noting an error in the
/// problems list.
fn record<T>(result: &mut SetupResult, workload: &str, outcome: Result<T>) -> Result<T, String> {
    outcome.map_err(|e| {
        eprintln!("   {workload}: error: {e:#}");
        result.problems.push(format!("{workload}: {e:#}"));
        format!("{e:#}")
    })
}

/// Whether `workload` is to run: `BENCH_WORKLOADS=iperf,rate` (integrity,
/// iperf, latency, fairness, rate, conns, udp, scale) runs only those, e.g.
/// to profile one.
fn wanted(workload: &str) -> bool {
    let only = std::env::var("BENCH_WORKLOADS").unwrap_or_default();
    only.is_empty() || only.split(',').any(|w| w.trim() == workload)
}

async fn run_workloads(running: &Running, result: &mut SetupResult) {
    // Integrity first: a lossy setup is FAILED whatever its speed.
    if wanted("integrity") {
        integrity(running, result).await;
    }
    if wanted("iperf") {
        iperf(running, result).await;
    }
    if wanted("latency") {
        let latency = workloads::latency(running.echo).await;
        if let Ok(l) = &latency {
            eprintln!("   latency: p50 {:?}, p99 {:?}", l.p50, l.p99);
        }
        result.latency = Some(record(result, "latency", latency));
    }
    if wanted("fairness") {
        let lat = workloads::latency_beside_bulk(running.iperf, running.echo).await;
        if let Ok(l) = &lat {
            eprintln!("   latency beside bulk: p50 {:?}, p99 {:?}", l.p50, l.p99);
        }
        result.latency_bulk = Some(record(result, "latency beside bulk", lat));
    }
    if wanted("rate") {
        request_rate(running, result).await;
    }
    if wanted("conns") {
        conn_rate(running, result).await;
    }
    if wanted("udp") {
        udp(running, result).await;
    }
    // socat forks a process per connection: 20,000 processes would be
    // near this machine's pid limit and measure fork, not relaying.
    // A private setup's scale would measure the visitor's frpc as well; its
    // rows are the per-connection workloads.
    if !(result.kind == Kind::Socat || result.kind.private()) && wanted("scale") {
        scale(running, result).await;
    }
}

async fn udp(running: &Running, result: &mut SetupResult) {
    let Some(public) = running.udp else {
        return;
    };
    for size in workloads::UDP_SIZES {
        let r = workloads::udp_rate(public, size).await;
        if let Ok(u) = &r {
            eprintln!(
                "   udp {size} B: {:.0} req/s, {:.2} % lost",
                u.per_sec, u.lost_pct
            );
        }
        let r = record(result, "udp", r);
        result.udp.push((size, r));
    }
}

/// CPU seconds used by the setup's server and client so far.
fn cpu_now(running: &Running) -> Option<f64> {
    let (s, c) = running.mem?;
    Some(workloads::cpu_secs(s)? + workloads::cpu_secs(c)?)
}

/// CPU seconds used since `before`, per `units`.
fn cpu_per(running: &Running, before: Option<f64>, units: f64) -> Option<f64> {
    Some((cpu_now(running)? - before?) / units)
}

async fn integrity(running: &Running, result: &mut SetupResult) {
    let integrity = workloads::integrity(running.echo).await;
    if let Ok(i) = &integrity {
        eprintln!(
            "   integrity: {} ({:.1} s) {}",
            if i.ok { "OK" } else { "FAILED" },
            i.elapsed.as_secs_f64(),
            i.detail
        );
        if !i.ok {
            result
                .problems
                .push(format!("integrity FAILED: {}", i.detail));
        }
    }
    result.integrity = Some(record(result, "integrity", integrity));
}

async fn iperf(running: &Running, result: &mut SetupResult) {
    for case in IperfCase::ALL {
        let before = cpu_now(running);
        let gbps = workloads::iperf(running.iperf, case).await;
        if let Ok(v) = &gbps {
            eprintln!("   {}: {v:.2}", case.label());
            if case.streams == 1 {
                let gib = v * 1e9 / 8.0 * workloads::IPERF_SECS as f64 / f64::from(1u32 << 30);
                let ms_per_gib = cpu_per(running, before, gib).map(|s| s * 1e3);
                if case.reverse {
                    result.cpu.per_gib_down = ms_per_gib;
                } else {
                    result.cpu.per_gib_up = ms_per_gib;
                }
            }
        }
        let gbps = record(result, &case.label(), gbps);
        result.iperf.push((case, gbps));
    }
}

async fn request_rate(running: &Running, result: &mut SetupResult) {
    let before = cpu_now(running);
    let rate = workloads::request_rate(running.echo).await;
    if let Ok(r) = &rate {
        eprintln!("   64 connections: {r:.0} req/s");
        let requests = r * workloads::RATE_DURATION.as_secs_f64();
        result.cpu.per_request = cpu_per(running, before, requests).map(|s| s * 1e6);
    }
    result.rate = Some(record(result, "request rate", rate));
}

async fn conn_rate(running: &Running, result: &mut SetupResult) {
    let before = cpu_now(running);
    let conns = workloads::conn_rate(running.echo).await;
    if let Ok(c) = &conns {
        let opened = c.per_sec * workloads::CONN_DURATION.as_secs_f64();
        result.cpu.per_conn = cpu_per(running, before, opened).map(|s| s * 1e6);
        eprintln!(
            "   connection rate: {:.0}/s, p99 {:?}, {} failures",
            c.per_sec, c.p99, c.failures
        );
    }
    result.conns = Some(record(result, "connection rate", conns));
}

async fn scale(running: &Running, result: &mut SetupResult) {
    let scale = workloads::scale(running.echo, running.mem).await;
    if let Ok(s) = &scale {
        eprintln!(
            "   scale: {} opened in {:.2} s, {} alive after idle, RSS server {:?} KiB, client {:?} KiB",
            s.opened,
            s.open.as_secs_f64(),
            s.alive,
            s.rss_server,
            s.rss_client
        );
        for e in &s.errors {
            eprintln!("   scale: a connection failed: {e}");
            result
                .problems
                .push(format!("scale: a connection failed: {e}"));
        }
    }
    result.scale = Some(record(result, "scale", scale));
}
