//! A TCP proxy: a public listener whose connections are carried to frpc as
//! work streams.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::pool::WorkSource;
use rand::seq::SliceRandom;
use shared::framed;
use shared::logging::Escaped;
use shared::protocol::{Message, NewProxy, ProxyError, StartWork};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, warn, Instrument};

use crate::Server;

/// How many random ports from `allowPorts` to try for `remotePort = 0`.
const PICK_ATTEMPTS: usize = 64;

pub(crate) struct Proxy {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Proxy {
    /// Closes the listener and every connection of this proxy.
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
    permits: Arc<Semaphore>,
    max: usize,
}

impl StreamBudget {
    pub fn new(max: usize) -> Self {
        StreamBudget {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

pub(crate) async fn start(
    server: &Arc<Server>,
    req: &NewProxy,
    work: WorkSource,
    budget: StreamBudget,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> Result<Proxy, ProxyError> {
    let listener = bind(server, req.remote_port).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| ProxyError::Bind(e.to_string()))?;
    let span = info_span!("proxy", name = %Escaped(&req.name), %addr);
    tasks.spawn(
        accept_loop(
            listener,
            req.name.clone(),
            work,
            budget,
            stop.clone(),
            tasks.clone(),
        )
        .instrument(span),
    );
    Ok(Proxy { addr, stop })
}

async fn bind(server: &Server, port: u16) -> Result<TcpListener, ProxyError> {
    let cfg = &server.config;
    let host = cfg.proxy_bind_addr.as_str();
    if port != 0 {
        if !cfg.port_allowed(port) {
            return Err(ProxyError::PortNotAllowed(port));
        }
        return TcpListener::bind((host, port))
            .await
            .map_err(|e| bind_error(port, e));
    }
    if cfg.allow_ports.is_empty() {
        return TcpListener::bind((host, 0))
            .await
            .map_err(|e| bind_error(0, e));
    }
    // Let the server pick among the allowed ports, as frp does.
    let mut candidates: Vec<u16> = (1..=u16::MAX).filter(|p| cfg.port_allowed(*p)).collect();
    candidates.shuffle(&mut rand::thread_rng());
    for p in candidates.into_iter().take(PICK_ATTEMPTS) {
        match TcpListener::bind((host, p)).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(bind_error(p, e)),
        }
    }
    Err(ProxyError::Bind("no free port among allowPorts".into()))
}

fn bind_error(port: u16, e: io::Error) -> ProxyError {
    match e.kind() {
        io::ErrorKind::AddrInUse => ProxyError::PortInUse(port),
        _ => ProxyError::Bind(format!("port {port}: {e}")),
    }
}

async fn accept_loop(
    listener: TcpListener,
    name: String,
    work: WorkSource,
    budget: StreamBudget,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((user, src)) => {
                    let span = info_span!("conn", %src);
                    let Ok(permit) = budget.permits.clone().try_acquire_owned() else {
                        warn!(
                            %src,
                            "client already has {} connections open (transport.maxStreamsPerClient); \
                             closing this one",
                            budget.max
                        );
                        continue;
                    };
                    tasks.spawn(
                        serve_user(user, src, name.clone(), work.clone(), stop.clone(), permit).instrument(span),
                    );
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    // Dropping the listener here frees the port.
}

async fn serve_user(
    user: TcpStream,
    src: SocketAddr,
    name: String,
    work: WorkSource,
    stop: CancellationToken,
    // Held for the life of the work stream.
    _permit: OwnedSemaphorePermit,
) {
    user.set_nodelay(true).ok();
    let mut work = match work.get().await {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot get a work connection to the client: {e:#}");
            return;
        }
    };
    let header = Message::StartWork(StartWork {
        proxy_name: name,
        src_addr: src.to_string(),
    });
    // The header makes the stream visible to frpc; user bytes follow it
    // without waiting for an answer, so no round trip is spent.
    if let Err(e) = framed::write_message(&mut work, &header).await {
        warn!("cannot start a work stream: {e}");
        return;
    }
    if let Err(e) = work.flush().await {
        warn!("cannot start a work stream: {e}");
        return;
    }
    tokio::select! {
        _ = stop.cancelled() => debug!("closed because the proxy stopped"),
        r = work.relay(user) => match r {
            Ok((up, down)) => debug!(up, down, "connection closed"),
            Err(e) => debug!("connection ended: {e}"),
        }
    }
}
