//! Where a proxy gets the connection to carry a user connection to frpc:
//! a new yamux stream, or (`tcpMux = false` on the client) a separate work
//! connection the client opened in advance or on request.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use mux::Opener;
use net::framed::ControlWriter;
use net::transport::BoxIo;
use net::tunnel::Tunnel;
use std::collections::VecDeque;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use wire::message::Control;

#[derive(Clone)]
pub(crate) enum WorkSource {
    Mux(Opener),
    Pool(Arc<Pool>),
}

/// Work connections of one non-multiplexed client: idle ones wait here for
/// a user connection, and user connections wait here (each on its own
/// oneshot, with no lock held) for a work connection they asked for.
pub(crate) struct WorkQueue {
    inner: std::sync::Mutex<Queued>,
    max_idle: usize,
    /// How long a user connection waits for the client to deliver a work
    /// connection it was asked for (`userConnTimeout`).
    wait: Duration,
}

#[derive(Default)]
struct Queued {
    idle: VecDeque<BoxIo>,
    waiting: VecDeque<oneshot::Sender<BoxIo>>,
}

impl WorkQueue {
    pub fn new(max_idle: usize, wait: Duration) -> Self {
        WorkQueue {
            inner: std::sync::Mutex::new(Queued::default()),
            max_idle,
            wait,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        // Every update is a single push or pop: a panic cannot leave it torn.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A work connection arrived: to the longest-waiting user connection,
    /// else into the idle pool (closed if the pool is full).
    pub fn offer(&self, mut io: BoxIo) {
        let mut q = self.lock();
        while let Some(waiter) = q.waiting.pop_front() {
            match waiter.send(io) {
                Ok(()) => return,
                // That user connection gave up; try the next.
                Err(back) => io = back,
            }
        }
        if q.idle.len() < self.max_idle {
            q.idle.push_back(io);
        } else {
            debug!("work connection pool is full (transport.maxPoolCount); closing the extra one");
        }
    }

    /// An idle connection now, or a place in line for the next one.
    fn take_or_wait(&self) -> Result<BoxIo, oneshot::Receiver<BoxIo>> {
        let mut q = self.lock();
        if let Some(io) = q.idle.pop_front() {
            return Ok(io);
        }
        q.waiting.retain(|w| !w.is_closed());
        let (tx, rx) = oneshot::channel();
        q.waiting.push_back(tx);
        Err(rx)
    }
}

pub(crate) struct Pool {
    queue: Arc<WorkQueue>,
    asks: Arc<Asks>,
}

/// Work connections owed to waiting user connections, asked for in batches:
/// one `ReqWorkConn{count}` in the control queue at a time, however many
/// users arrive at once (a message per user filled the 64-deep queue under
/// a burst, and the users beyond it failed at once).
#[derive(Default)]
struct Asks {
    owed: AtomicU32,
    wake: Notify,
}

impl Pool {
    /// The pool of a session; its asking task ends with `close`.
    pub fn new(queue: Arc<WorkQueue>, ctrl: ControlWriter, close: CancellationToken) -> Self {
        let asks = Arc::new(Asks::default());
        tokio::spawn(ask(asks.clone(), ctrl, close));
        Pool { queue, asks }
    }
}

/// Sends what is owed, waiting for room in the control queue (this task
/// waits, never the control loop).
async fn ask(asks: Arc<Asks>, ctrl: ControlWriter, close: CancellationToken) {
    loop {
        tokio::select! {
            _ = close.cancelled() => return,
            _ = asks.wake.notified() => {}
        }
        let count = asks.owed.swap(0, Ordering::AcqRel);
        if count > 0 && ctrl.send(Control::ReqWorkConn { count }).await.is_err() {
            return;
        }
    }
}

impl WorkSource {
    /// A connection to frpc for one user connection.
    pub async fn get(&self) -> Result<Tunnel> {
        match self {
            WorkSource::Mux(opener) => Ok(Tunnel::Mux(opener.open().await?)),
            WorkSource::Pool(pool) => {
                let rx = match pool.queue.take_or_wait() {
                    Ok(io) => return Ok(Tunnel::Conn(io)),
                    Err(rx) => rx,
                };
                // Pool empty: ask for one and wait for it.
                pool.asks.owed.fetch_add(1, Ordering::AcqRel);
                pool.asks.wake.notify_one();
                let wait = pool.queue.wait;
                match tokio::time::timeout(wait, rx).await {
                    Ok(Ok(io)) => Ok(Tunnel::Conn(io)),
                    Ok(Err(_)) => bail!("client session ended"),
                    Err(_) => {
                        bail!("client sent no work connection within {wait:?} (userConnTimeout)")
                    }
                }
            }
        }
    }
}
