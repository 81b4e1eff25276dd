//! Results per setup, the markdown report and the targets we set.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::setups::{Kind, Tools};
use crate::workloads::{
    ConnRate, Integrity, IperfCase, Latency, Scale, UdpRate, INTEGRITY_BYTES, IPERF_SECS, UDP_SIZES,
};

/// A workload's result: None when it was not run for this setup.
pub type Outcome<T> = Option<Result<T, String>>;

pub enum Status {
    Ran,
    NotAvailable(String),
    FailedToStart(String),
}

/// CPU time the setup's server and client used (user + system), per unit of
/// work; None without such processes (direct, socat).
#[derive(Default)]
pub struct CpuCost {
    /// Milliseconds per GiB, iperf3 single stream each way.
    pub per_gib_up: Option<f64>,
    pub per_gib_down: Option<f64>,
    /// Microseconds per request of the 64-connection request-rate test.
    pub per_request: Option<f64>,
    /// Microseconds per connection of the connection-rate test.
    pub per_conn: Option<f64>,
}

/// Everything measured for one setup.
pub struct SetupResult {
    pub kind: Kind,
    pub status: Status,
    pub iperf: Vec<(IperfCase, Result<f64, String>)>,
    pub latency: Outcome<Latency>,
    /// The same, beside a bulk stream of the same client.
    pub latency_bulk: Outcome<Latency>,
    pub rate: Outcome<f64>,
    pub conns: Outcome<ConnRate>,
    pub scale: Outcome<Scale>,
    pub integrity: Outcome<Integrity>,
    /// Per datagram size.
    pub udp: Vec<(usize, Result<UdpRate, String>)>,
    pub cpu: CpuCost,
    /// Errors and oddities, listed under the table.
    pub problems: Vec<String>,
}

impl SetupResult {
    pub fn new(kind: Kind) -> SetupResult {
        SetupResult {
            kind,
            status: Status::Ran,
            iperf: Vec::new(),
            latency: None,
            latency_bulk: None,
            rate: None,
            conns: None,
            scale: None,
            integrity: None,
            udp: Vec::new(),
            cpu: CpuCost::default(),
            problems: Vec::new(),
        }
    }

    /// Lost or changed data, or the check could not run (not run at all,
    /// with `BENCH_WORKLOADS` leaving it out, is no failure).
    pub fn integrity_failed(&self) -> bool {
        matches!(self.status, Status::Ran)
            && self
                .integrity
                .as_ref()
                .is_some_and(|r| !matches!(r, Ok(i) if i.ok))
    }

    /// Failed to start, or lost or changed data: the run exits non-zero.
    pub fn failed(&self) -> bool {
        matches!(self.status, Status::FailedToStart(_)) || self.integrity_failed()
    }

    fn iperf_gbps(&self, streams: u32, reverse: bool) -> Option<f64> {
        self.iperf
            .iter()
            .find(|(c, _)| c.streams == streams && c.reverse == reverse)
            .and_then(|(_, r)| r.as_ref().ok().copied())
    }
}

/// The figure for `res` of a row.
enum Fig {
    Num(f64),
    Text(String),
}

fn fig<T>(outcome: &Outcome<T>, f: impl Fn(&T) -> Option<f64>) -> Fig {
    match outcome {
        None => Fig::Text("—".into()),
        Some(Err(_)) => Fig::Text("error".into()),
        Some(Ok(v)) => f(v).map_or(Fig::Text("n/a".into()), Fig::Num),
    }
}

fn cpu_fig(v: Option<f64>) -> Fig {
    v.map_or(Fig::Text("n/a".into()), Fig::Num)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a? + b?)
}

/// A table row: how to read its figure, how many decimals, and which way is
/// better (None: no ratio).
struct Row {
    label: String,
    decimals: usize,
    lower_is_better: Option<bool>,
    get: Box<dyn Fn(&SetupResult) -> Fig>,
}

fn row(
    label: impl Into<String>,
    decimals: usize,
    lower_is_better: Option<bool>,
    get: impl Fn(&SetupResult) -> Fig + 'static,
) -> Row {
    Row {
        label: label.into(),
        decimals,
        lower_is_better,
        get: Box::new(get),
    }
}

fn rows() -> Vec<Row> {
    let mut rows = iperf_rows();
    rows.extend(request_rows());
    rows.extend(udp_rows());
    rows.extend(scale_and_cpu_rows());
    rows
}

fn iperf_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for case in IperfCase::ALL {
        rows.push(row(case.label(), 2, Some(false), move |r| {
            match r.iperf.iter().find(|(c, _)| c.label() == case.label()) {
                None => Fig::Text("—".into()),
                Some((_, Err(_))) => Fig::Text("error".into()),
                Some((_, Ok(v))) => Fig::Num(*v),
            }
        }));
    }
    rows
}

fn request_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let us = |d: Duration| Some(d.as_secs_f64() * 1e6);
    rows.extend([
        row("echo 64 B, 1 conn, p50 (µs)", 1, Some(true), move |r| {
            fig(&r.latency, |l| us(l.p50))
        }),
        row("echo 64 B, 1 conn, p99 (µs)", 1, Some(true), move |r| {
            fig(&r.latency, |l| us(l.p99))
        }),
        row(
            "echo 64 B beside a bulk stream ←, p50 (µs)",
            1,
            Some(true),
            move |r| fig(&r.latency_bulk, |l| us(l.p50)),
        ),
        row(
            "echo 64 B beside a bulk stream ←, p99 (µs)",
            1,
            Some(true),
            move |r| fig(&r.latency_bulk, |l| us(l.p99)),
        ),
        row("echo 64 B, 64 conns (req/s)", 0, Some(false), |r| {
            fig(&r.rate, |v| Some(*v))
        }),
        row(
            "connect+echo+close, 8 workers (conn/s)",
            0,
            Some(false),
            |r| fig(&r.conns, |c| Some(c.per_sec)),
        ),
        row("connect+echo+close p99 (ms)", 2, Some(true), |r| {
            fig(&r.conns, |c| Some(c.p99.as_secs_f64() * 1e3))
        }),
        row("connect+echo+close failures", 0, None, |r| {
            fig(&r.conns, |c| Some(c.failures as f64))
        }),
    ]);
    rows
}

fn udp_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for size in UDP_SIZES {
        let udp = move |r: &SetupResult, f: fn(&UdpRate) -> f64| match r
            .udp
            .iter()
            .find(|(s, _)| *s == size)
        {
            None => Fig::Text("—".into()),
            Some((_, Err(_))) => Fig::Text("error".into()),
            Some((_, Ok(u))) => Fig::Num(f(u)),
        };
        rows.push(row(
            format!("UDP echo {size} B, 16 users (req/s)"),
            0,
            Some(false),
            move |r| udp(r, |u| u.per_sec),
        ));
        rows.push(row(
            format!("UDP echo {size} B, lost (%)"),
            2,
            None,
            move |r| udp(r, |u| u.lost_pct),
        ));
    }
    rows
}

fn scale_and_cpu_rows() -> Vec<Row> {
    let n = crate::workloads::scale_conns();
    let mut rows = Vec::new();
    rows.extend([
        row(
            format!("{n} conns: time to open all (s)"),
            2,
            Some(true),
            |r| fig(&r.scale, |s| Some(s.open.as_secs_f64())),
        ),
        row(format!("{n} conns: echo again after idle"), 0, None, |r| {
            fig(&r.scale, |s| Some(s.alive as f64))
        }),
        row(format!("{n} conns: RSS server (MiB)"), 1, Some(true), |r| {
            fig(&r.scale, |s| s.rss_server.map(mib))
        }),
        row(format!("{n} conns: RSS client (MiB)"), 1, Some(true), |r| {
            fig(&r.scale, |s| s.rss_client.map(mib))
        }),
        row(
            format!("{n} conns: RSS server+client (MiB)"),
            1,
            Some(true),
            |r| fig(&r.scale, |s| sum(s.rss_server, s.rss_client).map(mib)),
        ),
        row(
            "RSS server+client before opening (MiB)",
            1,
            Some(true),
            |r| fig(&r.scale, |s| s.rss_at_rest.map(mib)),
        ),
        row(
            "server+client CPU per GiB, 1 stream → (ms)",
            0,
            Some(true),
            |r| cpu_fig(r.cpu.per_gib_up),
        ),
        row(
            "server+client CPU per GiB, 1 stream ← (ms)",
            0,
            Some(true),
            |r| cpu_fig(r.cpu.per_gib_down),
        ),
        row(
            "server+client CPU per request, 64 conns (µs)",
            1,
            Some(true),
            |r| cpu_fig(r.cpu.per_request),
        ),
        row(
            "server+client CPU per connection (µs)",
            1,
            Some(true),
            |r| cpu_fig(r.cpu.per_conn),
        ),
        row(
            format!("integrity: {} MiB echoed, SHA-256", INTEGRITY_BYTES >> 20),
            0,
            None,
            |r| match &r.integrity {
                None => Fig::Text("—".into()),
                Some(Ok(i)) if i.ok => Fig::Text(format!("OK ({:.1} s)", i.elapsed.as_secs_f64())),
                Some(_) => Fig::Text("**FAILED**".into()),
            },
        ),
    ]);
    rows
}

fn cell(res: &SetupResult, row: &Row) -> String {
    match &res.status {
        Status::NotAvailable(_) => return "not available".into(),
        Status::FailedToStart(_) => return "failed to start".into(),
        Status::Ran => {}
    }
    match (row.get)(res) {
        Fig::Num(v) => format!("{v:.*}", row.decimals),
        Fig::Text(t) => t,
    }
}

fn value(res: &SetupResult, row: &Row) -> Option<f64> {
    match (matches!(res.status, Status::Ran), (row.get)(res)) {
        (true, Fig::Num(v)) => Some(v),
        _ => None,
    }
}

fn ratio(ours: &SetupResult, rathole: Option<&SetupResult>, row: &Row) -> String {
    if row.lower_is_better.is_none() {
        return String::new();
    }
    match (value(ours, row), rathole.and_then(|r| value(r, row))) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

// ---------------------------------------------------------------------------
// Machine

/// The machine's description for the report.
pub fn machine(tools: &Tools) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or("unknown".to_string(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let any = |_: &str| true;
    let rathole = output_line(&tools.rathole.display().to_string(), &["--version"], |l| {
        l.starts_with("Build Version")
    });
    let rathole = format!(
        "rathole {} (features server, client: plain TCP transport)",
        rathole.rsplit(' ').next().unwrap_or_default()
    );
    format!(
        "- CPU: {model}, nproc {nproc}\n- Memory: {mem}\n- Kernel: Linux {}\n- {}\n\
         - Peers: {}; {}; {}\n- Load average at start: {}\n- Date: {}\n",
        read("/proc/sys/kernel/osrelease"),
        output_line("rustc", &["--version"], any),
        output_line("iperf3", &["--version"], any),
        output_line("socat", &["-V"], |l| l.contains("socat version")),
        rathole,
        read("/proc/loadavg"),
        output_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"], any),
    )
}

/// The first line `program` prints on stdout that `pick` accepts.
fn output_line(program: &str, args: &[&str], pick: impl Fn(&str) -> bool) -> String {
    let Ok(out) = Command::new(program).args(args).output() else {
        return format!("{program}: not found");
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.trim().is_empty() && pick(l))
        .unwrap_or_default()
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------
// Report

fn find(results: &[SetupResult], kind: Kind) -> Option<&SetupResult> {
    results.iter().find(|r| r.kind == kind)
}

/// The whole report, in markdown.
/// The table: one column per setup, ours with a ratio to rathole.
fn table(results: &[SetupResult]) -> String {
    let mut md = String::new();
    let rathole = find(results, Kind::Rathole);
    let columns: Vec<&SetupResult> = [Kind::Direct, Kind::Socat, Kind::Rathole]
        .map(|k| find(results, k))
        .into_iter()
        .flatten()
        .collect();
    let ours: Vec<&SetupResult> = [
        Kind::Ours,
        Kind::OursNoMux,
        Kind::OursNoTls,
        Kind::OursStcp,
        Kind::OursXtcp,
    ]
    .map(|k| find(results, k))
    .into_iter()
    .flatten()
    .collect();
    let header = |r: &SetupResult| {
        let name = r.kind.label();
        if r.failed() {
            format!("{name} **FAILED**")
        } else {
            name.to_string()
        }
    };
    let mut head = vec!["".to_string()];
    head.extend(columns.iter().map(|r| header(r)));
    // Private services have no rathole equivalent: their ratio is to our
    // own tcp proxy.
    let base = |r: &SetupResult| {
        if r.kind.private() {
            (find(results, Kind::Ours), "÷ ours")
        } else {
            (rathole, "÷ rathole")
        }
    };
    for r in &ours {
        head.push(header(r));
        head.push(base(r).1.into());
    }
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let _ = writeln!(
        md,
        "|{}",
        head.iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for row in rows() {
        let mut line = vec![row.label.clone()];
        line.extend(columns.iter().map(|r| cell(r, &row)));
        for r in &ours {
            line.push(cell(r, &row));
            line.push(ratio(r, base(r).0, &row));
        }
        let _ = writeln!(md, "| {} |", line.join(" | "));
    }
    md
}

/// Errors and oddities of every setup, as a list (empty if none).
fn problems(results: &[SetupResult]) -> String {
    let mut md = String::new();
    let problems: Vec<String> = results
        .iter()
        .flat_map(|r| {
            let mut p = Vec::new();
            match &r.status {
                Status::NotAvailable(why) => {
                    p.push(format!("{} not available: {why}", r.kind.label()))
                }
                Status::FailedToStart(why) => {
                    p.push(format!("{} failed to start: {why}", r.kind.label()))
                }
                Status::Ran => {}
            }
            p.extend(
                r.problems
                    .iter()
                    .map(|e| format!("{}: {e}", r.kind.label())),
            );
            p
        })
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(md, "\n## Problems\n");
        for p in problems {
            let _ = writeln!(md, "- {}", p.replace('\n', "\n  "));
        }
    }
    md
}

pub fn render(machine: &str, results: &[SetupResult], elapsed: Duration) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark: frp-rs vs rathole 0.5.0\n");
    let _ = writeln!(
        md,
        "Generated by `make bench` (tests/examples/bench.rs) in {:.0} s.\n\n{machine}",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "Everything runs on 127.0.0.1 of this machine: the load generator, the \
         iperf3 and echo services and the setup under test share its cores, so \
         figures compare setups with each other, not with a real network. \
         Setups: **direct** (client to service), **socat ×2** (two socat relays \
         in a row, large buffers: the copying any tunnel does, with no protocol), \
         **rathole** 0.5.0 (plain TCP transport), **ours** (frps + frpc with \
         defaults: TLS, trust on first use, yamux streams), **ours, tcpMux=false** (one \
         TLS connection per forwarded connection, pool of pre-opened ones; \
         shown when frpc accepts the key), **ours, TLS off** (plain TCP \
         like rathole's transport: the same work, and what TLS costs), and \
         **ours, stcp via a visitor** (private stcp and sudp proxies reached \
         through a second frpc's visitors, so every byte crosses two tunnels) \
         and **ours, xtcp (P2P)** (the two frpc meet through frps, with coturn \
         on loopback as the STUN server, and carry each connection over their \
         own QUIC session): rathole has no private services, so these two are \
         compared with our own tcp proxy (÷ ours), and their memory and CPU \
         rows leave the visitor's frpc out. \
         → is client to service (iperf3 default), ← is service to client \
         (`-R`); {IPERF_SECS} s per iperf3 run. Ratios are ours ÷ rathole (÷ ours \
         for the private services): above 1 is better for rates, **below 1 is better for latency, time and memory**.\n"
    );
    md.push_str(&table(results));
    let _ = writeln!(
        md,
        "\nScale test: connections open {} at a time, each counted once a message \
         has echoed through it; then all idle {} s; RSS is the highest VmRSS \
         seen meanwhile (n/a for direct: there is no process in between; socat \
         is skipped: it forks a process per connection). CPU rows: user + \
         system time of the server and client processes (/proc/PID/stat) \
         during the workload, divided by the work done (n/a for direct and \
         socat). The integrity test sends pseudo-random data through the echo \
         service and compares the SHA-256 of what came back. UDP rows: {} \
         user sockets each send a datagram to a UDP echo service through the \
         setup and wait up to {} ms for its echo before counting it lost, for \
         {} s (a UDP proxy for ours, a `type = \"udp\"` service for rathole; \
         socat: not set up).\n",
        crate::workloads::SCALE_IN_FLIGHT,
        crate::workloads::SCALE_IDLE.as_secs(),
        crate::workloads::UDP_USERS,
        crate::workloads::UDP_WAIT.as_millis(),
        crate::workloads::UDP_DURATION.as_secs(),
    );
    md.push_str(&targets(results));
    md.push_str(&problems(results));
    md
}

// ---------------------------------------------------------------------------
// Targets

struct Verdict {
    pass: bool,
    detail: String,
}

fn ok_value<T>(outcome: &Outcome<T>, f: impl Fn(&T) -> f64) -> Option<f64> {
    match outcome {
        Some(Ok(v)) => Some(f(v)),
        _ => None,
    }
}

fn ratio_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn show(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}×"))
}

/// Single-stream throughput, both directions, against `base` × `need`.
fn single_stream(ours: &SetupResult, base: &SetupResult, need: f64) -> Verdict {
    let up = ratio_of(ours.iperf_gbps(1, false), base.iperf_gbps(1, false));
    let down = ratio_of(ours.iperf_gbps(1, true), base.iperf_gbps(1, true));
    Verdict {
        pass: up.is_some_and(|r| r >= need) && down.is_some_and(|r| r >= need),
        detail: format!("→ {}, ← {}", show(up), show(down)),
    }
}

fn simple(ratio: Option<f64>, ok: impl Fn(f64) -> bool) -> Verdict {
    Verdict {
        pass: ratio.is_some_and(ok),
        detail: show(ratio),
    }
}

fn scale_target(ours: &SetupResult, rathole: &SetupResult) -> Verdict {
    let get = |r: &SetupResult| match &r.scale {
        Some(Ok(s)) => Some((
            sum(s.rss_server, s.rss_client).map(|k| k as f64),
            s.open.as_secs_f64(),
            s.alive,
        )),
        _ => None,
    };
    let (Some((mem, open, alive)), Some((r_mem, r_open, _))) = (get(ours), get(rathole)) else {
        return Verdict {
            pass: false,
            detail: "no figures".into(),
        };
    };
    let mem = ratio_of(mem, r_mem);
    let open = ratio_of(Some(open), Some(r_open));
    Verdict {
        pass: mem.is_some_and(|m| m <= 0.35)
            && alive == crate::workloads::scale_conns()
            && open.is_some_and(|o| o <= 0.2),
        detail: format!(
            "memory {}, alive {alive}/{}, open time {}",
            show(mem),
            crate::workloads::scale_conns(),
            show(open)
        ),
    }
}

fn targets(results: &[SetupResult]) -> String {
    let (Some(rathole), Some(socat)) = (find(results, Kind::Rathole), find(results, Kind::Socat))
    else {
        return String::new();
    };
    let ours: Vec<&SetupResult> = [Kind::Ours, Kind::OursNoMux, Kind::OursNoTls]
        .map(|k| find(results, k))
        .into_iter()
        .flatten()
        .filter(|r| matches!(r.status, Status::Ran))
        .collect();
    type Check<'a> = Box<dyn Fn(&SetupResult) -> Verdict + 'a>;
    let rate = |r: &SetupResult| ok_value(&r.rate, |v| *v);
    let conns = |r: &SetupResult| ok_value(&r.conns, |c| c.per_sec);
    let p50 = |r: &SetupResult| ok_value(&r.latency, |l| l.p50.as_secs_f64());
    let scale_name = format!(
        "{} connections: server+client memory ≤ 0.35× rathole, all alive, \
         opened in ≤ 1/5 of rathole's time",
        crate::workloads::scale_conns()
    );
    let checks: Vec<(&str, Check<'_>)> = vec![
        (
            "single-stream throughput ≥ 1.5× rathole",
            Box::new(|o| single_stream(o, rathole, 1.5)),
        ),
        (
            "64-connection request rate ≥ 1.5× rathole",
            Box::new(move |o| simple(ratio_of(rate(o), rate(rathole)), |r| r >= 1.5)),
        ),
        (
            "connection rate ≥ 2× rathole",
            Box::new(move |o| simple(ratio_of(conns(o), conns(rathole)), |r| r >= 2.0)),
        ),
        (
            "single-connection p50 latency ≤ 0.8× rathole",
            Box::new(move |o| simple(ratio_of(p50(o), p50(rathole)), |r| r <= 0.8)),
        ),
        (&scale_name, Box::new(|o| scale_target(o, rathole))),
        (
            "single-stream throughput ≥ 70% of the bare two-hop relay (socat ×2)",
            Box::new(|o| single_stream(o, socat, 0.7)),
        ),
    ];
    let mut md = String::from("## Targets (benchmark goals, not assertions)\n\n| target |");
    for o in &ours {
        let _ = write!(md, " {} |", o.kind.label());
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(ours.len()));
    md.push('\n');
    for (name, check) in &checks {
        let _ = write!(md, "| {name} |");
        for o in &ours {
            let v = check(o);
            let word = if v.pass { "PASS" } else { "**FAIL**" };
            let _ = write!(md, " {word} ({}) |", v.detail);
        }
        md.push('\n');
    }
    md
}
