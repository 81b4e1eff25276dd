//! The multiplexer decision, measured: our implementation of the yamux wire
//! protocol against the yamux crate (0.13 and 0.14, the releases the
//! design named) and tokio-yamux (a separate, tokio-native implementation),
//! each with its default settings, over one TCP connection on loopback, on
//! the same workloads. Every stream is echoed by the far side, so bytes go
//! both ways.
//!
//! `make bench` runs it after the tunnel benchmark and writes
//! bench/mux.md; `MUXBENCH_RESULTS=path` writes elsewhere,
//! `MUXBENCH_IMPLS=ours,yamux-0.14` runs only those, `MUXBENCH_THREADS=1`
//! uses a one-thread runtime. About two minutes (tokio-yamux's stalls wait
//! out their time limit).

use std::future::poll_fn;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use tokio_util::sync::CancellationToken;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type BoxIo = Box<dyn Io>;

/// Opens a stream of the client session.
type Opener = Arc<dyn Fn() -> BoxFuture<'static, io::Result<BoxIo>> + Send + Sync>;

/// Bytes each way of the single-stream test, per stream of the 8-stream one.
const BULK: usize = 256 << 20;
const PARALLEL: usize = 8;
const PARALLEL_BYTES: usize = 32 << 20;
const ROUND_TRIPS: usize = 20_000;
const OPENS: usize = 4_000;
const OPEN_WORKERS: usize = 8;
/// Any one workload of one implementation must finish within this.
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Ours,
    Yamux013,
    Yamux014,
    TokioYamux,
}

impl Impl {
    const ALL: [Impl; 4] = [Impl::Ours, Impl::Yamux013, Impl::Yamux014, Impl::TokioYamux];

    fn label(self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::Yamux013 => "yamux 0.13",
            Impl::Yamux014 => "yamux 0.14",
            Impl::TokioYamux => "tokio-yamux 0.3",
        }
    }
}

/// Echoes one stream until its peer half-closes, then half-closes.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(s: S) {
    let (mut r, mut w) = tokio::io::split(s);
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

/// A session of `which` over a fresh loopback TCP pair: the server side
/// echoes every stream; returns how to open client streams.
async fn setup(which: Impl, stop: CancellationToken) -> Result<Opener> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let (c, s) = tokio::join!(TcpStream::connect(l.local_addr()?), l.accept());
    let (c, s) = (c?, s?.0);
    c.set_nodelay(true)?;
    s.set_nodelay(true)?;
    Ok(match which {
        Impl::Ours => ours(c, s, stop),
        Impl::Yamux013 => yamux_013(c, s),
        Impl::Yamux014 => yamux_014(c, s),
        Impl::TokioYamux => tokio_yamux(c, s),
    })
}

fn ours(c: TcpStream, s: TcpStream, stop: CancellationToken) -> Opener {
    let cfg = || mux::MuxConfig::new(64 * 1024);
    let client = mux::start(c, mux::Mode::Client, cfg(), stop.clone());
    let mut server = mux::start(s, mux::Mode::Server, cfg(), stop);
    tokio::spawn(async move {
        while let Some(st) = server.incoming.recv().await {
            tokio::spawn(echo(st));
        }
    });
    let opener = client.opener.clone();
    std::mem::forget(client.incoming);
    Arc::new(move || {
        let o = opener.clone();
        async move { Ok(Box::new(o.open().await.map_err(io::Error::other)?) as BoxIo) }.boxed()
    })
}

/// The yamux crate's `Connection` is driven by whoever polls it: one task
/// owns it, opens streams on request and echoes inbound ones.
macro_rules! yamux_impl {
    ($name:ident, $krate:ident) => {
        fn $name(c: TcpStream, s: TcpStream) -> Opener {
            let mut server = $krate::Connection::new(
                s.compat(),
                $krate::Config::default(),
                $krate::Mode::Server,
            );
            tokio::spawn(async move {
                while let Some(Ok(st)) = poll_fn(|cx| server.poll_next_inbound(cx)).await {
                    tokio::spawn(echo(st.compat()));
                }
            });
            let mut client = $krate::Connection::new(
                c.compat(),
                $krate::Config::default(),
                $krate::Mode::Client,
            );
            type Reply = oneshot::Sender<io::Result<BoxIo>>;
            let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
            tokio::spawn(async move {
                let mut waiting: Option<Reply> = None;
                poll_fn(|cx| loop {
                    if waiting.is_none() {
                        if let Poll::Ready(Some(r)) = rx.poll_recv(cx) {
                            waiting = Some(r);
                        }
                    }
                    if let Some(r) = waiting.take() {
                        match client.poll_new_outbound(cx) {
                            Poll::Ready(res) => {
                                let res = res
                                    .map(|st| Box::new(st.compat()) as BoxIo)
                                    .map_err(io::Error::other);
                                let _ = r.send(res);
                                continue;
                            }
                            Poll::Pending => waiting = Some(r),
                        }
                    }
                    match client.poll_next_inbound(cx) {
                        Poll::Ready(Some(Ok(_))) => continue,
                        Poll::Ready(_) => return Poll::Ready(()),
                        Poll::Pending => return Poll::Pending,
                    }
                })
                .await
            });
            Arc::new(move || {
                let tx = tx.clone();
                async move {
                    let (r, w) = oneshot::channel();
                    tx.send(r)
                        .map_err(|_| io::Error::other("connection gone"))?;
                    w.await.map_err(|_| io::Error::other("connection gone"))?
                }
                .boxed()
            })
        }
    };
}
yamux_impl!(yamux_013, yamux013);
yamux_impl!(yamux_014, yamux014);

fn tokio_yamux(c: TcpStream, s: TcpStream) -> Opener {
    let cfg = tokio_yamux::Config::default();
    let mut server = tokio_yamux::Session::new_server(s, cfg);
    tokio::spawn(async move {
        while let Some(Ok(st)) = server.next().await {
            tokio::spawn(echo(st));
        }
    });
    let mut client = tokio_yamux::Session::new_client(c, cfg);
    let control = client.control();
    // The session makes progress only while polled.
    tokio::spawn(async move { while client.next().await.is_some() {} });
    Arc::new(move || {
        let mut control = control.clone();
        async move {
            let st = control.open_stream().await.map_err(io::Error::other)?;
            Ok(Box::new(st) as BoxIo)
        }
        .boxed()
    })
}

/// Sends `n` bytes and reads the echo at once; returns when all came back.
async fn pump(s: BoxIo, n: usize) -> Result<()> {
    let (mut r, mut w) = tokio::io::split(s);
    let send = async move {
        let buf = vec![0x5au8; 64 * 1024];
        let mut left = n;
        while left > 0 {
            let k = left.min(buf.len());
            w.write_all(&buf[..k]).await?;
            left -= k;
        }
        w.shutdown().await?;
        anyhow::Ok(())
    };
    let recv = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        loop {
            let k = r.read(&mut buf).await?;
            if k == 0 {
                break;
            }
            got += k;
        }
        ensure!(got == n, "echoed {got} of {n} bytes");
        anyhow::Ok(())
    };
    let (a, b) = tokio::join!(send, recv);
    a.and(b)
}

/// MiB per second echoed (each byte crossed the session twice).
async fn bulk(open: &Opener, streams: usize, bytes: usize) -> Result<f64> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let s = open().await?;
        tasks.push(tokio::spawn(pump(s, bytes)));
    }
    for t in tasks {
        t.await??;
    }
    Ok((streams * bytes) as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
}

/// Microseconds per 64-byte round trip on one stream (median).
async fn round_trip(open: &Opener) -> Result<f64> {
    let mut s = open().await?;
    let (msg, mut back) = ([7u8; 64], [0u8; 64]);
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        times.push(t.elapsed());
    }
    times.sort_unstable();
    Ok(times[times.len() / 2].as_secs_f64() * 1e6)
}

/// Streams per second opened, echoed 64 bytes, and closed, by 8 workers.
async fn opens(open: &Opener) -> Result<f64> {
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..OPEN_WORKERS {
        let open = open.clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..OPENS / OPEN_WORKERS {
                let mut s = open().await?;
                let mut back = [0u8; 64];
                s.write_all(&[1u8; 64]).await?;
                s.read_exact(&mut back).await?;
                s.shutdown().await?;
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(OPENS as f64 / start.elapsed().as_secs_f64())
}

/// `MUXBENCH_BULK_KIB` shrinks the single-stream transfer (to look into a
/// slow implementation).
fn bulk_bytes() -> usize {
    std::env::var("MUXBENCH_BULK_KIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(BULK, |k| k << 10)
}

struct Figures {
    which: Impl,
    single: Result<f64>,
    parallel: Result<f64>,
    rtt: Result<f64>,
    opens: Result<f64>,
}

/// Each workload on a session of its own, so one's leftovers cannot slow
/// the next.
async fn measure(which: Impl) -> Figures {
    async fn one<T>(which: Impl, f: impl AsyncFnOnce(&Opener) -> Result<T>) -> Result<T> {
        let stop = CancellationToken::new();
        let open = setup(which, stop.clone()).await?;
        let r = tokio::time::timeout(LIMIT, f(&open))
            .await
            .context("timed out");
        stop.cancel();
        r?
    }
    // MUXBENCH_WORKLOADS=rtt,opens (single, parallel, rtt, opens) runs only those.
    let only = std::env::var("MUXBENCH_WORKLOADS").unwrap_or_default();
    let wanted = |w: &str| only.is_empty() || only.split(',').any(|o| o.trim() == w);
    let skipped = || Err(anyhow::anyhow!("not run"));
    Figures {
        which,
        single: match wanted("single") {
            true => one(which, async |o| bulk(o, 1, bulk_bytes()).await).await,
            false => skipped(),
        },
        parallel: match wanted("parallel") {
            true => one(which, async |o| bulk(o, PARALLEL, PARALLEL_BYTES).await).await,
            false => skipped(),
        },
        rtt: match wanted("rtt") {
            true => one(which, async |o| round_trip(o).await).await,
            false => skipped(),
        },
        opens: match wanted("opens") {
            true => one(which, async |o| opens(o).await).await,
            false => skipped(),
        },
    }
}

fn cell(r: &Result<f64>, ours: &Result<f64>, decimals: usize) -> String {
    match (r, ours) {
        (Ok(v), Ok(o)) if *o > 0.0 => format!("{v:.decimals$} ({:.2}×)", v / o),
        (Ok(v), _) => format!("{v:.decimals$}"),
        (Err(e), _) => format!("error: {e:#}"),
    }
}

fn render(all: &[Figures], took: Duration) -> String {
    let ours = &all[0];
    let mut md = format!(
        "# Multiplexer comparison\n\nGenerated by `make bench` (tests/examples/muxbench.rs) in {:.0} s, \
         on the machine of bench/results.md. One TCP connection on 127.0.0.1, no TLS; the far \
         side echoes every stream, so each byte crosses the session twice. Each implementation \
         with its default settings; a fresh session per workload. In brackets: ÷ ours \
         (above 1 is better for rates, below 1 is better for latency).\n\n\
         | workload | {} |\n|---|{}\n",
        took.as_secs_f64(),
        all.iter().map(|f| f.which.label()).collect::<Vec<_>>().join(" | "),
        "---:|".repeat(all.len()),
    );
    type Get = fn(&Figures) -> &Result<f64>;
    let rows: [(&str, Get, usize); 4] = [
        ("1 stream, 256 MiB echoed (MiB/s)", |f| &f.single, 0),
        ("8 streams × 32 MiB echoed (MiB/s)", |f| &f.parallel, 0),
        ("64 B round trip, 1 stream, p50 (µs)", |f| &f.rtt, 1),
        (
            "open + 64 B echo + close, 8 workers (streams/s)",
            |f| &f.opens,
            0,
        ),
    ];
    for (label, get, d) in rows {
        let cells: Vec<String> = all.iter().map(|f| cell(get(f), get(ours), d)).collect();
        md += &format!("| {label} | {} |\n", cells.join(" | "));
    }
    md
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("MUXBENCH_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(2),
        )
        .enable_all()
        .build()?;
    let started = Instant::now();
    let all = runtime.block_on(async {
        let mut all = Vec::new();
        // MUXBENCH_IMPLS=ours,tokio-yamux-0.3 (labels, spaces as dashes) runs only those.
        let only = std::env::var("MUXBENCH_IMPLS").unwrap_or_default();
        let key = |w: Impl| w.label().replace(' ', "-");
        let chosen = |w: Impl| only.is_empty() || only.split(',').any(|o| o.trim() == key(w));
        for which in Impl::ALL.into_iter().filter(|&w| chosen(w)) {
            eprintln!("== {}", which.label());
            all.push(measure(which).await);
        }
        all
    });
    let md = render(&all, started.elapsed());
    let out = std::env::var_os("MUXBENCH_RESULTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/mux.md"),
        std::path::PathBuf::from,
    );
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    println!("{md}");
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
