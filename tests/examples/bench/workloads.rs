//! The workloads, each run against a setup's public ports, and the echo
//! service they talk to. Every workload has a time limit: a setup that
//! stalls shows up as an error or as failures, never as a hung run.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// Length of each iperf3 run, in seconds.
pub const IPERF_SECS: u64 = 5;
/// Round trips measured for the single-connection latency (after a warm-up).
const ROUND_TRIPS: usize = 20_000;
const WARMUP_TRIPS: usize = 1_000;
/// Connections and duration of the request-rate test.
const RATE_CONNS: usize = 64;
pub const RATE_DURATION: Duration = Duration::from_secs(3);
/// Workers and duration of the connection-rate test.
const CONN_WORKERS: usize = 8;
pub const CONN_DURATION: Duration = Duration::from_secs(5);
/// Connections the scale test should hold open at once (see
/// [`scale_conns`]), how many are being opened at a time, and how long they
/// stay idle.
pub const SCALE_WANTED: usize = 10_000;
static SCALE_CONNS: OnceLock<usize> = OnceLock::new();
pub const SCALE_IN_FLIGHT: usize = 128;
pub const SCALE_IDLE: Duration = Duration::from_secs(10);
/// Phase limits of the scale test: opening all, and echoing on all again.
const SCALE_PHASE_LIMIT: Duration = Duration::from_secs(120);
/// Bytes sent (and echoed back) by the integrity test.
pub const INTEGRITY_BYTES: u64 = 256 << 20;
/// Limit for any single connect / round trip inside a workload.
const OP_LIMIT: Duration = Duration::from_secs(20);

/// Connections the scale test holds: [`SCALE_WANTED`] unless the file
/// descriptor limit made `main` choose fewer.
pub fn scale_conns() -> usize {
    *SCALE_CONNS.get().unwrap_or(&SCALE_WANTED)
}

pub fn set_scale_conns(n: usize) {
    let _ = SCALE_CONNS.set(n);
}

// ---------------------------------------------------------------------------
// Echo service

/// The echo service on 127.0.0.1: every byte read is written back. Dropping
/// it stops the listener and every connection.
pub struct EchoServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn echo_server() -> Result<EchoServer> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    // Direct connections arrive SCALE_IN_FLIGHT at a time: a deep backlog.
    let listener = socket.listen(4096)?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        conns.spawn(echo_conn(stream));
                    }
                    // Out of descriptors, most likely: let connections close.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    Ok(EchoServer { addr, task })
}

async fn echo_conn(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = timeout(OP_LIMIT, TcpStream::connect(addr))
        .await
        .context("connect timed out")?
        .context("connect")?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes `msg` and reads it back.
async fn round_trip(stream: &mut TcpStream, msg: &[u8], back: &mut [u8]) -> Result<()> {
    stream.write_all(msg).await?;
    stream.read_exact(back).await?;
    ensure!(back == msg, "echo returned other bytes");
    Ok(())
}

fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * pct / 100).min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------
// 1. Throughput (iperf3)

/// One iperf3 run: the client connects to `public`, the iperf3 server behind
/// it is the local service. `reverse`: the service sends (`-R`).
#[derive(Clone, Copy)]
pub struct IperfCase {
    pub streams: u32,
    pub reverse: bool,
}

impl IperfCase {
    pub const ALL: [IperfCase; 4] = [
        IperfCase {
            streams: 1,
            reverse: false,
        },
        IperfCase {
            streams: 1,
            reverse: true,
        },
        IperfCase {
            streams: 8,
            reverse: false,
        },
        IperfCase {
            streams: 8,
            reverse: true,
        },
    ];

    pub fn label(self) -> String {
        let arrow = if self.reverse { "←" } else { "→" };
        let what = if self.streams == 1 {
            "1 stream".to_string()
        } else {
            format!("{} streams", self.streams)
        };
        format!("iperf3 {what} {arrow} (Gbit/s)")
    }
}

/// Throughput in Gbit/s as measured by the receiving side. A run that fails
/// within two seconds (service not up yet behind the tunnel) is retried.
pub async fn iperf(public: SocketAddr, case: IperfCase) -> Result<f64> {
    let mut tries = 0;
    loop {
        tries += 1;
        let started = Instant::now();
        match iperf_once(public, case).await {
            Ok(bps) => return Ok(bps / 1e9),
            Err(e) if tries < 3 && started.elapsed() < Duration::from_secs(2) => {
                eprintln!("    iperf3 failed at once ({e:#}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn iperf_once(public: SocketAddr, case: IperfCase) -> Result<f64> {
    let mut cmd = tokio::process::Command::new("iperf3");
    cmd.args(["-c", "127.0.0.1", "-p", &public.port().to_string()])
        .args(["-t", &IPERF_SECS.to_string()])
        .args(["-P", &case.streams.to_string()])
        .args(["-J", "--connect-timeout", "5000"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if case.reverse {
        cmd.arg("-R");
    }
    let out = timeout(Duration::from_secs(IPERF_SECS + 30), cmd.output())
        .await
        .context("iperf3 timed out")?
        .context("running iperf3")?;
    parse_iperf(&String::from_utf8_lossy(&out.stdout))
}

/// `end.sum_received.bits_per_second` from iperf3's JSON output.
fn parse_iperf(json: &str) -> Result<f64> {
    if let Some(at) = json.find("\"error\":") {
        let msg = json[at..].lines().next().unwrap_or_default();
        bail!("iperf3 {}", msg.replace('\t', " "));
    }
    let at = json
        .rfind("\"sum_received\"")
        .context("no sum_received in iperf3's output")?;
    let key = "\"bits_per_second\":";
    let rest = &json[at..];
    let value = rest.find(key).context("no bits_per_second")? + key.len();
    let number: String = rest[value..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        .collect();
    number
        .parse()
        .with_context(|| format!("bad bits_per_second {number:?}"))
}

// ---------------------------------------------------------------------------
// 2. Request/response, 64-byte messages

pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
}

/// One connection, `ROUND_TRIPS` sequential round trips.
pub async fn latency(public: SocketAddr) -> Result<Latency> {
    timeout(Duration::from_secs(120), round_trips(public, ROUND_TRIPS))
        .await
        .context("latency test timed out")?
}

/// How long round trips are timed beside a bulk transfer (which runs a
/// second longer on each side).
const BESIDE_BULK: Duration = Duration::from_secs(3);

/// 64 B round trips through `echo` for [`BESIDE_BULK`] while one iperf3
/// stream runs from the service to the user through `bulk` (the same
/// tunnel): what a small frame waits behind a bulk stream of the same
/// client.
pub async fn latency_beside_bulk(bulk: SocketAddr, echo: SocketAddr) -> Result<Latency> {
    let case = IperfCase {
        streams: 1,
        reverse: true,
    };
    let iperf = tokio::spawn(iperf_once(bulk, case));
    // Let the transfer reach its pace first.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut stream = connect(echo).await?;
    let (mut msg, mut back) = ([0u8; 64], [0u8; 64]);
    let mut samples = Vec::new();
    let until = Instant::now() + BESIDE_BULK;
    while Instant::now() < until {
        msg[..8].copy_from_slice(&(samples.len() as u64).to_le_bytes());
        let t = Instant::now();
        let trip = timeout(
            Duration::from_secs(IPERF_SECS),
            round_trip(&mut stream, &msg, &mut back),
        );
        trip.await
            .context("a round trip outlasted the bulk transfer")??;
        samples.push(t.elapsed());
    }
    iperf
        .await
        .context("iperf3 task")?
        .context("the bulk transfer")?;
    if samples.len() < 20 {
        bail!("only {} round trips in {BESIDE_BULK:?}", samples.len());
    }
    samples.sort();
    Ok(Latency {
        p50: percentile(&samples, 50),
        p99: percentile(&samples, 99),
    })
}

async fn round_trips(public: SocketAddr, n: usize) -> Result<Latency> {
    let mut stream = connect(public).await?;
    let mut msg = [0u8; 64];
    let mut back = [0u8; 64];
    for i in 0..WARMUP_TRIPS.min(n / 4) {
        msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
        round_trip(&mut stream, &msg, &mut back).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let t = Instant::now();
        round_trip(&mut stream, &msg, &mut back).await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok(Latency {
        p50: percentile(&samples, 50),
        p99: percentile(&samples, 99),
    })
}

/// Requests per second over `RATE_CONNS` connections, each with one request
/// in flight, for `RATE_DURATION`.
pub async fn request_rate(public: SocketAddr) -> Result<f64> {
    let run = async {
        let mut streams = Vec::with_capacity(RATE_CONNS);
        for _ in 0..RATE_CONNS {
            let mut s = connect(public).await?;
            round_trip(&mut s, &[1; 64], &mut [0; 64]).await?;
            streams.push(s);
        }
        let start = Instant::now();
        let deadline = start + RATE_DURATION;
        let mut workers = JoinSet::new();
        for mut s in streams {
            workers.spawn(async move {
                let (msg, mut back) = ([7u8; 64], [0u8; 64]);
                let mut done = 0u64;
                while Instant::now() < deadline {
                    timeout(OP_LIMIT, round_trip(&mut s, &msg, &mut back))
                        .await
                        .context("round trip timed out")??;
                    done += 1;
                }
                anyhow::Ok(done)
            });
        }
        let mut total = 0;
        while let Some(done) = workers.join_next().await {
            total += done.context("worker panicked")??;
        }
        Ok(total as f64 / start.elapsed().as_secs_f64())
    };
    timeout(RATE_DURATION + Duration::from_secs(60), run)
        .await
        .context("request-rate test timed out")?
}

// ---------------------------------------------------------------------------
// 3. Connection rate

pub struct ConnRate {
    pub per_sec: f64,
    pub p99: Duration,
    pub failures: u64,
}

/// `CONN_WORKERS` workers each connect, send 32 bytes, read the echo and
/// close, again and again for `CONN_DURATION`.
pub async fn conn_rate(public: SocketAddr) -> Result<ConnRate> {
    let start = Instant::now();
    let deadline = start + CONN_DURATION;
    let mut workers = JoinSet::new();
    for _ in 0..CONN_WORKERS {
        workers.spawn(async move {
            let (mut samples, mut failures) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                let one = async {
                    let mut s = connect(public).await?;
                    round_trip(&mut s, &[3; 32], &mut [0; 32]).await
                };
                match timeout(OP_LIMIT, one).await {
                    Ok(Ok(())) => samples.push(t.elapsed()),
                    _ => failures += 1,
                }
            }
            (samples, failures)
        });
    }
    let (mut samples, mut failures) = (Vec::new(), 0);
    while let Some(worker) = workers.join_next().await {
        let (s, f) = worker.context("worker panicked")?;
        samples.extend(s);
        failures += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    samples.sort();
    Ok(ConnRate {
        per_sec: samples.len() as f64 / elapsed,
        p99: percentile(&samples, 99),
        failures,
    })
}

// ---------------------------------------------------------------------------
// 4. Scale: many idle connections

pub struct Scale {
    /// Time until every connection was open and had echoed once.
    pub open: Duration,
    pub opened: usize,
    /// Up to three distinct reasons connections failed to open.
    pub errors: Vec<String>,
    /// Connections that echoed again after the idle time.
    pub alive: usize,
    /// VmRSS of server + client before the first connection, in KiB.
    pub rss_at_rest: Option<u64>,
    /// Highest VmRSS seen while the connections were open, in KiB.
    pub rss_server: Option<u64>,
    pub rss_client: Option<u64>,
}

/// Opens [`scale_conns`] connections through `public` (`SCALE_IN_FLIGHT` at a
/// time; a connection counts as open once a message has echoed through it),
/// keeps them idle for `SCALE_IDLE` while sampling the memory of `mem`
/// (server, client), then makes each echo once more.
pub async fn scale(public: SocketAddr, mem: Option<(u32, u32)>) -> Result<Scale> {
    let rss_at_rest =
        mem.and_then(|(server, client)| Some(vm_rss_kib(server)? + vm_rss_kib(client)?));
    let start = Instant::now();
    let conns = scale_conns();
    let mut streams = Vec::with_capacity(conns);
    let mut opening = JoinSet::new();
    let in_flight = Arc::new(Semaphore::new(SCALE_IN_FLIGHT));
    let mut errors = Vec::new();
    let mut collect = |done: Result<Result<TcpStream, String>, tokio::task::JoinError>| match done
        .map_err(|e| e.to_string())
        .and_then(|r| r)
    {
        Ok(s) => streams.push(s),
        Err(e) if errors.len() < 3 && !errors.contains(&e) => errors.push(e),
        Err(_) => {}
    };
    let open_all = async {
        for i in 0..conns {
            let permit = in_flight.clone().acquire_owned().await?;
            opening.spawn(async move {
                let _permit = permit;
                let one = async {
                    let mut s = connect(public).await.context("connect")?;
                    round_trip(&mut s, &(i as u64).to_le_bytes(), &mut [0; 8])
                        .await
                        .context("first echo")?;
                    anyhow::Ok(s)
                };
                match timeout(OP_LIMIT, one).await {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(_) => Err(format!("no echo within {OP_LIMIT:?}")),
                }
            });
            while let Some(done) = opening.try_join_next() {
                collect(done);
            }
        }
        while let Some(done) = opening.join_next().await {
            collect(done);
        }
        anyhow::Ok(())
    };
    // Past the limit, connections still opening count as failures.
    if let Ok(result) = timeout(SCALE_PHASE_LIMIT, open_all).await {
        result?;
    }
    let open = start.elapsed();
    opening.abort_all();
    let opened = streams.len();

    let (rss_server, rss_client) = idle_sampling(mem).await;
    let alive = echo_all_again(&mut streams).await;
    Ok(Scale {
        open,
        opened,
        errors,
        alive,
        rss_at_rest,
        rss_server,
        rss_client,
    })
}

/// Waits out [`SCALE_IDLE`], sampling the highest VmRSS of (server, client).
async fn idle_sampling(mem: Option<(u32, u32)>) -> (Option<u64>, Option<u64>) {
    let (mut rss_server, mut rss_client) = (None, None);
    let idle_until = Instant::now() + SCALE_IDLE;
    loop {
        if let Some((server, client)) = mem {
            rss_server = rss_server.max(vm_rss_kib(server));
            rss_client = rss_client.max(vm_rss_kib(client));
        }
        if Instant::now() >= idle_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    (rss_server, rss_client)
}

/// Makes every connection echo once more; returns how many did.
async fn echo_all_again(streams: &mut [TcpStream]) -> usize {
    let echo_all = futures::stream::iter(streams.iter_mut().enumerate())
        .map(|(i, s)| async move {
            let msg = (i as u64 ^ 0xA5A5).to_le_bytes();
            matches!(
                timeout(OP_LIMIT, round_trip(s, &msg, &mut [0; 8])).await,
                Ok(Ok(()))
            )
        })
        .buffer_unordered(256)
        .filter(|ok| std::future::ready(*ok))
        .count();
    timeout(SCALE_PHASE_LIMIT, echo_all).await.unwrap_or(0)
}

/// Resident memory of a process (VmRSS in /proc/PID/status), in KiB.
fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) a process has used, in seconds, from
/// /proc/PID/stat (fields 14 and 15, in USER_HZ = 100 ticks per second).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "pid (comm)" start at field 3 (state).
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

// ---------------------------------------------------------------------------
// 5. Integrity

pub struct Integrity {
    pub ok: bool,
    pub elapsed: Duration,
    /// What went wrong, when not ok.
    pub detail: String,
}

/// Sends `INTEGRITY_BYTES` of pseudo-random data through the echo service
/// while reading the echo back, and compares the SHA-256 of both: the bytes
/// cross the setup once each way. The reader stops at the expected length (no
/// half-close needed); missing bytes end in a timeout or early EOF.
pub async fn integrity(public: SocketAddr) -> Result<Integrity> {
    let start = Instant::now();
    let stream = connect(public).await?;
    let (mut rx, mut tx) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut hash = Sha256::new();
        let mut chunk = vec![0u8; 1 << 20];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut sent = 0;
        while sent < INTEGRITY_BYTES {
            for word in chunk.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                word.copy_from_slice(&x.to_le_bytes());
            }
            hash.update(&chunk);
            tx.write_all(&chunk).await?;
            sent += chunk.len() as u64;
        }
        anyhow::Ok((hex::encode(hash.finalize()), tx))
    });
    let reader = async {
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        while got < INTEGRITY_BYTES {
            let want = buf.len().min((INTEGRITY_BYTES - got) as usize);
            let n = rx.read(&mut buf[..want]).await?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            got += n as u64;
        }
        anyhow::Ok((hex::encode(hash.finalize()), got))
    };
    let limit = Duration::from_secs(120);
    let (received, got) = match timeout(limit, reader).await {
        Ok(r) => r.context("reading the echo")?,
        Err(_) => {
            writer.abort();
            return Ok(Integrity {
                ok: false,
                elapsed: start.elapsed(),
                detail: format!("echo incomplete after {limit:?}"),
            });
        }
    };
    let elapsed = start.elapsed();
    let (sent, _tx) = timeout(Duration::from_secs(10), writer)
        .await
        .context("writer did not finish")?
        .context("writer panicked")?
        .context("writing")?;
    let ok = got == INTEGRITY_BYTES && sent == received;
    Ok(Integrity {
        ok,
        elapsed,
        detail: if ok {
            String::new()
        } else {
            format!(
                "sent {INTEGRITY_BYTES} bytes, sha256 {sent}; got {got} bytes, sha256 {received}"
            )
        },
    })
}

// ---------------------------------------------------------------------------
// 7. UDP request/response

/// Users sending at once, how long, and how long one waits for its answer
/// before counting the datagram lost.
pub const UDP_USERS: usize = 16;
pub const UDP_DURATION: Duration = Duration::from_secs(3);
pub const UDP_WAIT: Duration = Duration::from_millis(200);
/// Datagram sizes measured.
pub const UDP_SIZES: [usize; 2] = [64, 1400];

/// A UDP echo service on 127.0.0.1; dropping it stops it.
pub struct UdpEcho {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn udp_echo_server() -> Result<UdpEcho> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], peer).await;
        }
    });
    Ok(UdpEcho { addr, task })
}

pub struct UdpRate {
    /// Answered round trips per second, all users together.
    pub per_sec: f64,
    /// Share of datagrams without an answer within [`UDP_WAIT`], in percent.
    pub lost_pct: f64,
}

/// [`UDP_USERS`] sockets each send a datagram of `size` bytes and wait for
/// its echo (a sequence number in it tells late answers apart), for
/// [`UDP_DURATION`].
pub async fn udp_rate(public: SocketAddr, size: usize) -> Result<UdpRate> {
    let start = Instant::now();
    let deadline = start + UDP_DURATION;
    let mut users = JoinSet::new();
    for u in 0..UDP_USERS {
        users.spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            let (mut ok, mut lost) = (0u64, 0u64);
            let mut msg = vec![u as u8; size.max(8)];
            let mut back = vec![0u8; 65536];
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                msg[..8].copy_from_slice(&seq.to_be_bytes());
                sock.send_to(&msg[..size.max(8)], public).await?;
                let until = Instant::now() + UDP_WAIT;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    match timeout(left, sock.recv_from(&mut back)).await {
                        Ok(Ok((n, _))) if n >= 8 && back[..8] == msg[..8] => {
                            ok += 1;
                            break;
                        }
                        // A late answer to an earlier datagram: keep waiting.
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => {
                            lost += 1;
                            break;
                        }
                    }
                }
            }
            anyhow::Ok((ok, lost))
        });
    }
    let (mut ok, mut lost) = (0u64, 0u64);
    while let Some(r) = timeout(UDP_DURATION + Duration::from_secs(30), users.join_next())
        .await
        .context("udp test timed out")?
    {
        let (o, l) = r.context("udp user panicked")??;
        ok += o;
        lost += l;
    }
    ensure!(ok > 0, "no datagram was answered");
    Ok(UdpRate {
        per_sec: ok as f64 / start.elapsed().as_secs_f64(),
        lost_pct: 100.0 * lost as f64 / (ok + lost) as f64,
    })
}
