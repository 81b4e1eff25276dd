//! Thread per core: a pool of single-threaded tokio runtimes, each on a
//! thread of its own, that frps places each client on (with everything the
//! client's session spawns, and the users routed to it).
//!
//! Why not tokio's work-stealing runtime: a small request through a tunnel
//! is a chain of short tasks (the user's connection, the tunnel's reader,
//! the stream), each waking the next. With work stealing, each wake may
//! hand the next task to another worker: a cross-thread wakeup, a context
//! switch, the connection's state moving between caches. Measured on the
//! vhost path (docs/performance.md), those were ~30 % of frps's CPU per
//! request. Keeping one client's work on one thread removes them, the way
//! nginx's workers and pingora's no-steal mode do; different clients still
//! run on different cores.
//!
//! Anything may still be used from any worker (a stream of a client on
//! another thread works, it is only slower): placement is about speed, not
//! correctness.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::{Handle, Runtime};

/// The workers' owner: their threads end when it is dropped (so a task
/// holding the [`Pool`] cannot keep them alive).
pub struct Workers {
    pool: Arc<Pool>,
    runtimes: Vec<Runtime>,
}

/// Where things are placed; shared by whatever places them.
pub struct Pool {
    slots: Vec<Slot>,
}

struct Slot {
    handle: Handle,
    load: Arc<AtomicUsize>,
}

/// A worker chosen for something long-lived (a client's session): counts
/// towards the worker's load until dropped.
pub struct Placement {
    handle: Handle,
    load: Arc<AtomicUsize>,
}

impl Placement {
    /// The worker's runtime, to spawn on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        self.load.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// `n` workers (at least one), their threads named `<program>-worker-<i>`.
    pub fn start(program: &str, n: usize) -> io::Result<Workers> {
        let mut slots = Vec::new();
        let mut runtimes = Vec::new();
        for i in 0..n.max(1) {
            // A work-stealing runtime of one worker rather than a
            // current-thread one: with nothing to steal it is a single
            // thread, and it keeps tokio's "LIFO slot" (a task woken by the
            // running one runs next), so a request goes through its hops
            // back to back. Measured: +15 % requests per second over a
            // current-thread runtime at the same CPU (docs/performance.md).
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .thread_name(format!("{program}-worker-{i}"))
                .build()?;
            slots.push(Slot {
                handle: rt.handle().clone(),
                load: Arc::new(AtomicUsize::new(0)),
            });
            runtimes.push(rt);
        }
        Ok(Workers {
            pool: Arc::new(Pool { slots }),
            runtimes,
        })
    }

    /// One worker per core the process may use.
    pub fn per_core(program: &str) -> io::Result<Workers> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Workers::start(program, n)
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Tasks still running are dropped, not awaited: the owner has
        // already given them their grace period. (Without blocking, so
        // that this may run inside another runtime.)
        for rt in self.runtimes.drain(..) {
            rt.shutdown_background();
        }
    }
}

impl Pool {
    /// The worker with the fewest placements, which this one joins.
    pub fn place(&self) -> Placement {
        let slot = self
            .slots
            .iter()
            .min_by_key(|s| s.load.load(Ordering::Relaxed))
            .expect("at least one worker");
        slot.load.fetch_add(1, Ordering::Relaxed);
        Placement {
            handle: slot.handle.clone(),
            load: slot.load.clone(),
        }
    }
}

/// Runs `f` with `tcp` on the runtime of `to`: tokio ties a socket to the
/// runtime that registered it, so it is taken off this one and registered
/// there. If the socket cannot be moved, it stays and `f` runs here.
pub async fn move_to<F, Fut>(to: Handle, tcp: tokio::net::TcpStream, f: F)
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument;
    let std = match tcp.into_std() {
        Ok(s) => s,
        Err(e) => return tracing::debug!("cannot move a connection between workers: {e}"),
    };
    let span = tracing::Span::current();
    let moved = to.spawn(
        async move {
            match tokio::net::TcpStream::from_std(std) {
                Ok(tcp) => f(tcp).await,
                Err(e) => tracing::debug!("cannot register a moved connection: {e}"),
            }
        }
        .instrument(span),
    );
    // Awaited so that whoever tracks this task tracks the connection.
    let _ = moved.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn loads(pool: &Pool) -> Vec<usize> {
        let load = |s: &Slot| s.load.load(Ordering::Relaxed);
        pool.slots.iter().map(load).collect()
    }

    #[test]
    fn placements_go_to_the_least_loaded_worker() {
        let owner = Workers::start("t", 2).expect("workers");
        let w = owner.pool();
        let a = w.place();
        let b = w.place();
        assert_eq!(loads(w), vec![1, 1]);
        drop(a);
        let _c = w.place();
        assert_eq!(loads(w), vec![1, 1], "the freed worker is chosen again");
        drop(b);
    }

    #[tokio::test]
    async fn a_connection_moved_to_a_worker_is_served_there() {
        let owner = Workers::start("t", 1).expect("workers");
        let w = owner.pool().clone();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let mut user = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (tcp, _) = l.accept().await.expect("accept");
        let (seen, ran_on) = std::sync::mpsc::channel();
        let place = w.place();
        let served = tokio::spawn(async move {
            move_to(place.handle().clone(), tcp, move |mut tcp| async move {
                let _ = seen.send(std::thread::current().name().map(str::to_owned));
                let mut b = [0u8; 4];
                tcp.read_exact(&mut b).await.expect("read");
                tcp.write_all(&b).await.expect("write");
            })
            .await
        });
        user.write_all(b"ping").await.expect("write");
        let mut b = [0u8; 4];
        user.read_exact(&mut b).await.expect("read");
        assert_eq!(&b, b"ping");
        served.await.expect("served");
        let name = ran_on.recv().expect("ran");
        assert_eq!(name.as_deref(), Some("t-worker-0"));
        drop(owner);
    }
}
