//! Proxy kinds on the server: what a registered proxy serves publicly and
//! how its users reach the client. One module per kind; [`start`] is the
//! one place that dispatches on the kind. Adding a kind: a module here with
//! a `start`, one arm below, and its spec in `wire::message::ProxySpec`.

mod http;
mod https;
mod ports;
mod tcp;
mod tcpmux;
mod udp;

pub(crate) use tcp::serve_user as serve_tcp_user;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use net::framed;
use net::stats::Meters;
use net::tunnel::Tunnel;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::message::{ProxyError, ProxySpec, StartWork, WorkHeader};

use crate::pool::WorkSource;
use crate::Server;

/// A running proxy, as its session keeps it.
pub(crate) struct Proxy {
    /// Where users reach it: "0.0.0.0:6000", or a name and port.
    pub endpoint: String,
    stop: CancellationToken,
}

impl Proxy {
    /// Closes what the proxy serves and every connection of it.
    pub fn stop(&self) {
        self.stop.cancel();
    }
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
    /// The proxy's and its client's byte counters.
    pub meters: Meters,
    pub stop: CancellationToken,
    pub tasks: TaskTracker,
}

/// Starts the proxy `spec` describes: the one match on the kind.
pub(crate) async fn start(spec: &ProxySpec, ctx: ProxyCtx) -> Result<Proxy, ProxyError> {
    let stop = ctx.stop.clone();
    let endpoint = match spec {
        ProxySpec::Tcp(s) => tcp::start(s, ctx).await?.to_string(),
        ProxySpec::Udp(s) => udp::start(s, ctx).await?.to_string(),
        ProxySpec::Https(s) => https::start(s, ctx).await?,
        ProxySpec::Http(s) => http::start(s, ctx).await?,
        ProxySpec::Tcpmux(s) => tcpmux::start(s, ctx).await?,
    };
    Ok(Proxy { endpoint, stop })
}

/// Opens a tunnel to the client and sends its header. User bytes may follow
/// at once: the header makes the stream visible to frpc, and no round trip
/// is spent waiting for an answer.
pub(crate) async fn open_work(ctx: &ProxyCtx, src: SocketAddr, dst: SocketAddr) -> Result<Tunnel> {
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
    Ok(work)
}
