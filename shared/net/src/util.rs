//! Small helpers used by both binaries.

use rand::RngCore;

/// A random id, hex encoded (16 bytes of entropy).
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// This machine's host name, or "unknown".
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Raise the soft open-files limit to the hard limit: every tunnelled
/// connection costs two descriptors on each side, and distributions default
/// the soft limit to 1024. Returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// Cancels `token` on SIGINT or SIGTERM, so both binaries close their
/// listeners and exit 0.
pub async fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    tracing::info!("{name} received, shutting down");
    token.cancel();
}

/// How many threads a binary's runtime runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// One worker: the work is one client's (frpc over one multiplexed
    /// connection), or only accepting and handing over (frps's main
    /// runtime, whose clients run on [`crate::workers::Workers`]). See
    /// `workers.rs` for why one thread beats work stealing there, and why
    /// it is still tokio's work-stealing runtime, of one worker.
    One,
    /// tokio's work-stealing runtime, a worker per core.
    PerCore,
}

/// The binaries' runtime, with threads named after the program so that
/// `top -H`, `perf` and flamegraphs tell frps from frpc.
pub fn runtime(program: &str, threads: Threads) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads == Threads::One {
        b.worker_threads(1);
    }
    b.enable_all()
        .thread_name(format!("{program}-worker"))
        .build()
}
