//! `transport.tcpMux = false`: every forwarded connection gets its own TCP
//! (TLS) connection to frps instead of a yamux stream. `poolCount` of them
//! are opened in advance; each one used is replaced at once, and frps asks
//! for more with ReqWorkConn when it runs dry.

use std::sync::Arc;

use anyhow::Result;
use net::framed;
use net::transport::BoxIo;
use net::tunnel::Tunnel;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wire::message::{StartWork, WorkHeader};

use crate::connector::{Connector, Purpose};
use crate::proxy::ProxyManager;
use crate::{login, work};

/// Work connections being opened or waiting idle for a user connection, at
/// most, beyond `poolCount`: what a server (or an impostor) asking for
/// work connections without using them can make frpc hold. More requests
/// are not dropped: they wait (as a count) for one of these to be used.
pub(crate) const MAX_PENDING_EXTRA: usize = 64;

/// Bound on opening a work connection (TCP, TLS, proof).
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Requested connections remembered beyond that, at most (a count, so it
/// costs nothing; it only keeps the sum from growing without end).
const MAX_OWED: u64 = 1 << 20;

/// Work connections frps asked for and not yet started.
#[derive(Default)]
pub(crate) struct Requests {
    /// (to refill the pool, asked for by frps)
    owed: std::sync::Mutex<(u64, u64)>,
    wake: Notify,
}

impl Requests {
    /// frps asked for `n` more (ReqWorkConn).
    pub fn add(&self, n: u32) {
        let mut owed = self.lock();
        owed.1 = (owed.1 + u64::from(n)).min(MAX_OWED);
        drop(owed);
        self.wake.notify_one();
    }

    fn add_pooled(&self, n: u64) {
        let mut owed = self.lock();
        owed.0 = (owed.0 + n).min(MAX_OWED);
        drop(owed);
        self.wake.notify_one();
    }

    /// Takes one owed connection: Some(pooled?) or None.
    fn take(&self) -> Option<bool> {
        let mut owed = self.lock();
        if owed.0 > 0 {
            owed.0 -= 1;
            Some(true)
        } else if owed.1 > 0 {
            owed.1 -= 1;
            Some(false)
        } else {
            None
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct Pool {
    /// Permits for connections being opened or idle (see
    /// `MAX_PENDING_EXTRA`).
    pub pending: Arc<Semaphore>,
    pub requests: Arc<Requests>,
    pub connector: Arc<Connector>,
    pub run_id: String,
    pub proxies: Arc<ProxyManager>,
    /// Cancelled with the session: idle and busy work connections close.
    pub stop: CancellationToken,
}

/// Keeps the pool filled and opens what frps asks for, never more than
/// the pending limit at once, until the session stops.
pub(crate) async fn run(pool: Arc<Pool>) {
    pool.requests
        .add_pooled(pool.connector.config.transport.pool_count as u64);
    loop {
        let permit = tokio::select! {
            _ = pool.stop.cancelled() => return,
            p = pool.pending.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let pooled = loop {
            if let Some(pooled) = pool.requests.take() {
                break pooled;
            }
            tokio::select! {
                _ = pool.stop.cancelled() => return,
                _ = pool.requests.wake.notified() => {}
            }
        };
        tokio::spawn(one(pool.clone(), pooled, permit));
    }
}

/// One work connection: open it, wait for a user connection, serve it.
/// A pooled one is replaced as soon as it is taken. (Boxed: it spawns its
/// own replacement, and a recursive `async fn` has no nameable type.)
fn one(
    pool: Arc<Pool>,
    pooled: bool,
    permit: OwnedSemaphorePermit,
) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(serve_one(pool, pooled, permit))
}

async fn serve_one(pool: Arc<Pool>, pooled: bool, permit: OwnedSemaphorePermit) {
    let mut io = tokio::select! {
        _ = pool.stop.cancelled() => return,
        r = tokio::time::timeout(OPEN_TIMEOUT, open(&pool)) => match r {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                warn!("cannot open a work connection: {e:#}");
                return;
            }
            Err(_) => {
                warn!("cannot open a work connection: no answer within {OPEN_TIMEOUT:?}");
                return;
            }
        },
    };
    let header: StartWork = tokio::select! {
        _ = pool.stop.cancelled() => return,
        r = framed::read_message(&mut io) => match r {
            Ok(Some(WorkHeader::Start(h))) => h,
            Ok(None) => return,
            Err(e) => {
                debug!("work connection ended while idle: {e}");
                return;
            }
        },
    };
    // In use now: no longer pending.
    drop(permit);
    if pooled {
        pool.requests.add_pooled(1);
    }
    work::serve(Tunnel::Conn(io), header, &pool.proxies).await;
}

async fn open(pool: &Pool) -> Result<BoxIo> {
    let mut dialed = pool.connector.dial(Purpose::Work).await?;
    login::work_conn(
        &pool.connector.config,
        &mut dialed.io,
        &dialed.binding,
        &pool.run_id,
    )
    .await?;
    Ok(dialed.io)
}
