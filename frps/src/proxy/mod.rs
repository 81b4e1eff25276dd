//! Proxy kinds on the server: what a registered proxy serves publicly and
//! how its users reach the client. One module per kind; [`start`] is the
//! one place that dispatches on the kind. Adding a kind: a module here with
//! a `start`, one arm below, and its spec in `wire::message::ProxySpec`.

mod http;
mod https;
mod ports;
mod private;
mod tcp;
mod tcpmux;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use net::framed;
use net::stats::{Metered, Meters};
use net::tunnel::Tunnel;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;
use wire::message::{ProxyError, ProxySpec, StartWork, WorkHeader};

use crate::pool::WorkSource;
use crate::Server;

/// A running proxy, as its session keeps it.
pub(crate) struct Proxy {
    /// Where users reach it: "0.0.0.0:6000", or a name and port.
    pub endpoint: String,
    stop: CancellationToken,
    released: Released,
}

/// How long closing a proxy waits for its port and names to be free.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

impl Proxy {
    /// Closes what the proxy serves and every connection of it.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// [`Proxy::stop`], then waits (briefly) until everything that ran for
    /// it has let go — its listener, its routes, its connections — so a
    /// proxy registered next under the same port or name finds them free
    /// (a reload that changes a proxy closes and registers it at once).
    pub async fn close(mut self) {
        self.stop.cancel();
        if tokio::time::timeout(RELEASE_WAIT, self.released.0.recv())
            .await
            .is_err()
        {
            debug!(endpoint = %self.endpoint, "proxy still winding down after {RELEASE_WAIT:?}");
        }
    }
}

/// Held by everything that runs for one proxy (a clone in each
/// [`ProxyCtx`]); once the last is dropped, [`Released`] knows.
#[derive(Clone)]
pub(crate) struct Held(#[allow(dead_code, reason = "works by being dropped")] mpsc::Sender<()>);

pub(crate) struct Released(mpsc::Receiver<()>);

pub(crate) fn held() -> (Held, Released) {
    let (tx, rx) = mpsc::channel(1);
    (Held(tx), Released(rx))
}

/// The streams a client's proxies may have open at once, shared by all of
/// them (`transport.maxStreamsPerClient`). Enforced here, before a stream
/// is opened, so a user connection over the limit is refused with a clear
/// log line and costs the client nothing.
#[derive(Clone)]
pub(crate) struct StreamBudget {
    pub permits: Arc<Semaphore>,
    pub max: usize,
}

impl StreamBudget {
    pub fn new(max: usize) -> Self {
        StreamBudget {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

/// What every kind gets to run with.
#[derive(Clone)]
pub(crate) struct ProxyCtx {
    pub server: Arc<Server>,
    pub name: String,
    pub work: WorkSource,
    pub budget: StreamBudget,
    /// The proxy's and its client's byte and connection counters.
    pub meters: Metering,
    pub stop: CancellationToken,
    pub tasks: TaskTracker,
    /// The worker thread its client runs on, where its users' connections
    /// are best served (`net::workers`).
    pub home: tokio::runtime::Handle,
    /// Lets [`Proxy::close`] learn when the proxy has let go of everything
    /// (never read: it works by being dropped).
    pub _held: Held,
}

/// Starts the proxy `spec` describes: the one match on the kind.
pub(crate) async fn start(
    spec: &ProxySpec,
    ctx: ProxyCtx,
    released: Released,
) -> Result<Proxy, ProxyError> {
    let stop = ctx.stop.clone();
    let endpoint = match spec {
        ProxySpec::Tcp(s) => tcp::start(s, ctx).await?.to_string(),
        ProxySpec::Udp(s) => udp::start(s, ctx).await?.to_string(),
        ProxySpec::Https(s) => https::start(s, ctx).await?,
        ProxySpec::Http(s) => http::start(s, ctx).await?,
        ProxySpec::Tcpmux(s) => tcpmux::start(s, ctx).await?,
        ProxySpec::Stcp(s) | ProxySpec::Sudp(s) | ProxySpec::Xtcp(s) => private::start(s, ctx)?,
    };
    Ok(Proxy {
        endpoint,
        stop,
        released,
    })
}

/// A proxy as the virtual hosts see it: its own tunnels, budget, stop and
/// tasks.
impl crate::vhost::Backend for ProxyCtx {
    fn open(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> futures::future::BoxFuture<'_, Result<Metered<Tunnel>>> {
        Box::pin(open_work(self, src, dst))
    }

    fn permit(&self) -> std::result::Result<tokio::sync::OwnedSemaphorePermit, usize> {
        self.budget
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.budget.max)
    }

    fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    fn home(&self) -> &tokio::runtime::Handle {
        &self.home
    }

    fn carry_tcp(
        &self,
        tcp: tokio::net::TcpStream,
        src: SocketAddr,
        dst: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tcp::serve_user(tcp, src, dst, self.clone(), permit))
    }
}

/// A proxy's counters, which only [`open_work`] counts on: every tunnel a
/// kind gets comes metered, so no kind can carry bytes uncounted.
#[derive(Clone)]
pub(crate) struct Metering(pub(in crate::proxy) Meters);

impl Metering {
    pub fn new(meters: Meters) -> Self {
        Metering(meters)
    }
}

/// Opens a tunnel to the client and sends its header; the tunnel counts on
/// the proxy's and its client's meters, and as one open connection, for as
/// long as it lives. User bytes may follow at once: the header makes the
/// stream visible to frpc, and no round trip is spent waiting for an answer.
pub(crate) async fn open_work(
    ctx: &ProxyCtx,
    src: SocketAddr,
    dst: SocketAddr,
) -> Result<Metered<Tunnel>> {
    let mut work = ctx
        .work
        .get()
        .await
        .context("cannot get a work connection to the client")?;
    let header = WorkHeader::Start(StartWork {
        proxy_name: ctx.name.clone(),
        src,
        dst,
    });
    framed::write_message(&mut work, &header)
        .await
        .context("cannot start a work stream")?;
    work.flush().await.context("cannot start a work stream")?;
    Ok(Metered::new(work, ctx.meters.0.clone()))
}
