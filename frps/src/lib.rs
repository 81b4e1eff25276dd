//! frps: accepts frpc connections, authenticates them, and exposes their
//! proxies on public ports.
//!
//! The caller binds the listener and owns the shutdown token, so tests run
//! the real server in-process on `127.0.0.1:0`.

mod accept;
mod history;
mod login;
mod penalty;
mod pending;
mod pool;
mod proxy;
mod records;
mod registry;
mod reload;
mod session;
mod vhost;
mod visit;
mod web;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use anyhow::Result;
use config::ServerConfig;
use mux::MemoryBudget;
use net::tls::pretty_fingerprint;
use net::transport::ServerSide;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use records::ProxyStats;
pub use registry::ClientStats;
use registry::Registry;

/// What reads a user's first bytes on the virtual host ports, for the fuzz
/// targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::vhost::http::{
        basic_auth_user, read_head, routing_path, serve_io, text, Body, FirstRequest, Head, Routed,
        Routes, PEEK_HEAD,
    };
    pub use crate::vhost::https::{parse as client_hello, Hello};
    pub use crate::vhost::tcpmux::connect_route;
    pub use crate::vhost::timer::ConnTimer;
    pub use crate::vhost::{host_name, Router, MAX_LABEL, MAX_NAME};
}

/// How long shutdown waits for sessions to wind down before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Descriptors kept for sessions, listeners and files beyond pending
/// logins, out of the public ports' reach.
const FD_RESERVE: usize = 256;

pub(crate) struct Server {
    pub config: ServerConfig,
    /// Receive memory all client sessions share (`transport.maxBufferMB`).
    pub budget: Arc<MemoryBudget>,
    pub registry: Arc<Registry>,
    /// Clients and proxies as the dashboard shows them.
    pub records: records::Records,
    /// Failed proofs per source address (`penalty`).
    pub penalties: penalty::Penalties,
    /// Wrong visit secrets per source address, counted apart from logins:
    /// a visitor with a wrong secret never slows the logins of its address.
    pub visit_penalties: penalty::Penalties,
    /// Connections to `bindPort` still logging in (`pending`).
    pub pending: Arc<pending::Pending>,
    /// Where their daily traffic survives restarts (with the web server).
    pub history: Option<history::HistoryStore>,
    /// The settings a reload may change (the rest of `config` stays as
    /// started).
    pub live: std::sync::RwLock<Arc<reload::Live>>,
    /// The web server's credentials (reloadable).
    pub web_auth: Arc<net::web::Credentials>,
    pub transport: ServerSide,
    /// The virtual hosts' routers.
    pub vhosts: vhost::Vhosts,
    /// The threads clients are placed on (`net::workers`), one per core.
    pub workers: Arc<net::workers::Pool>,
    /// Descriptors users' connections may hold together: virtual host and
    /// web server connections and tcp proxies' users (three quarters of a
    /// share of the descriptor limit: `net::gate::fd_share`).
    pub public: net::gate::Share,
    /// Descriptors tcp and udp proxies' ports may hold (the last quarter of
    /// that share), so users cannot keep proxies from starting, nor
    /// proxies take the users' part.
    pub ports: net::gate::Share,
}

/// A handle on a running server from outside: its live figures (tests),
/// and reloading its settings (SIGHUP).
#[derive(Clone, Default)]
pub struct Stats(
    Arc<Registry>,
    Arc<std::sync::OnceLock<std::sync::Weak<Server>>>,
);

impl Stats {
    /// Applies what `new` changes of the settings a running server can
    /// change (`auth.token`, `allowPorts`, `maxPortsPerClient`,
    /// `log.level`, webServer credentials); returns the changed keys that
    /// need a restart. Err when the server is not running.
    pub fn reload(&self, new: &ServerConfig) -> Result<Vec<String>> {
        let server = self.1.get().and_then(std::sync::Weak::upgrade);
        let server = server.context("the server is not running")?;
        Ok(reload::apply(&server, new))
    }

    /// Every registered proxy, with its byte counters as of now.
    pub fn proxies(&self) -> Vec<ProxyStats> {
        let server = self.1.get().and_then(std::sync::Weak::upgrade);
        server.map_or_else(Vec::new, |s| s.records.proxy_stats())
    }

    /// Every logged-in client, with its byte counters as of now.
    pub fn clients(&self) -> Vec<ClientStats> {
        self.0.client_stats()
    }
}

/// The traffic history file, when the web server is on; a file that cannot
/// be opened leaves the history in memory (with a warning).
fn open_history(config: &ServerConfig) -> Option<history::HistoryStore> {
    if !config.web_server.enabled() {
        return None;
    }
    let path = config.traffic_history_path();
    match history::HistoryStore::open(&path) {
        Ok(h) => Some(h),
        Err(e) => {
            warn!(
                "traffic history file {}: {e}; traffic history is kept in memory only \
                 (set trafficHistoryFile to a writable path to keep it)",
                path.display()
            );
            None
        }
    }
}

impl Server {
    /// The settings in force now (a reload may replace them).
    pub(crate) fn live(&self) -> Arc<reload::Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes every proxy's daily traffic to the history file.
    pub(crate) fn save_history(&self) {
        let days = self.records.tick();
        if let Some(h) = &self.history {
            if let Err(e) = h.save(&days) {
                warn!("cannot write the traffic history: {e}");
            }
        }
    }
}

/// The dashboard's API and `/metrics` on `webServer.addr:port`, when set.
async fn start_web(server: &Arc<Server>, shutdown: &CancellationToken) -> Result<()> {
    let web = &server.config.web_server;
    if !web.enabled() {
        return Ok(());
    }
    let listener = TcpListener::bind((web.addr.as_str(), web.port))
        .await
        .with_context(|| format!("cannot listen on webServer {}:{}", web.addr, web.port))?;
    info!(addr = %listener.local_addr()?, "web server: frp's API (/api/…), /healthz{}",
        if server.config.enable_prometheus { ", /metrics" } else { "" });
    if web.user.is_empty() && web.addr != "127.0.0.1" && web.addr != "::1" {
        warn!("webServer has no user/password and listens beyond loopback: anyone who reaches it can read it");
    }
    tokio::spawn(web::serve(server.clone(), listener, shutdown.clone()));
    Ok(())
}

/// Serves frpc connections from `listener` until `shutdown` is cancelled.
pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    run_with_stats(config, listener, shutdown, Stats::default()).await
}

/// [`run`], with its figures kept in `stats`.
pub async fn run_with_stats(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    stats: Stats,
) -> Result<()> {
    let transport = ServerSide::new(&config).context("setting up TLS")?;
    say_how_it_starts(&config, &transport);
    // Connections still in TLS/login: a flood of silent or junk connections
    // is turned away here instead of piling up.
    let pending = pending::Pending::new(config.transport.max_pending_logins);
    // What the public ports may hold, so that they can never take the
    // descriptors logins and tunnels need.
    let share = net::gate::fd_share(config.transport.max_pending_logins + FD_RESERVE);
    let ports = share / 4;
    let budget = MemoryBudget::new(config::buffer_budget(config.transport.max_buffer_mb));
    info!(
        "receive buffers of all sessions capped at {} MiB (transport.maxBufferMB)",
        budget.total() >> 20
    );
    let history = open_history(&config);
    let records = records::Records::default();
    if let Some(h) = &history {
        match h.load() {
            Ok(days) => records.restore(days),
            Err(e) => warn!("cannot read the traffic history: {e}; starting it afresh"),
        }
    }
    let live = std::sync::RwLock::new(reload::Live::of(&config));
    // Dropped (its threads ended) when this function returns or is dropped.
    let workers = net::workers::Workers::per_core("frps").context("starting worker threads")?;
    let web_auth = net::web::Credentials::new(&config.web_server);
    let server = Arc::new(Server {
        budget,
        config,
        registry: stats.0.clone(),
        records,
        penalties: penalty::Penalties::default(),
        visit_penalties: penalty::Penalties::default(),
        pending,
        history,
        live,
        web_auth,
        transport,
        vhosts: vhost::Vhosts::default(),
        workers: workers.pool().clone(),
        public: net::gate::Share::new(share - ports),
        ports: net::gate::Share::new(ports),
    });
    let _ = stats.1.set(Arc::downgrade(&server));
    start_vhosts(&server, &shutdown).await?;
    start_web(&server, &shutdown).await?;
    info!(addr = %listener.local_addr()?, "frps listening for clients");
    let sessions = accept_clients(&server, &listener, &shutdown).await;
    drop(listener);
    info!("shutting down");
    sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait())
        .await
        .is_err()
    {
        warn!("some sessions did not finish within {SHUTDOWN_GRACE:?}");
    }
    server.save_history();
    Ok(())
}

/// What a person starting frps should know: an open door, the certificate
/// to pin, mutual TLS.
fn say_how_it_starts(config: &ServerConfig, transport: &ServerSide) {
    if config.auth.token.is_empty() {
        warn!("auth.token is empty: any client that can reach this port may expose services");
    }
    if let Some(path) = &transport.generated {
        info!(
            "generated a self-signed TLS certificate: {}",
            path.display()
        );
    }
    info!(
        "TLS certificate fingerprint (SHA-256); to pin it, put this line in frpc's config: \
         transport.tls.serverFingerprint = \"{}\"",
        pretty_fingerprint(&transport.fingerprint)
    );
    if !config.transport.tls.trusted_ca_file.is_empty() && !config.transport.tls.force {
        info!(
            "transport.tls.trustedCaFile is set: clients must use TLS with a certificate from that \
             CA; plain TCP is refused (as with transport.tls.force = true)"
        );
    }
}

/// Accepts client connections until `shutdown`; each one holds a slot of
/// `server.pending` until it has logged in. Returns the sessions' tasks.
async fn accept_clients(
    server: &Arc<Server>,
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> TaskTracker {
    let sessions = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return sessions,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let slot = match server.pending.admit(peer.ip()) {
                        Ok(slot) => slot,
                        Err(refused) => {
                            say_refused(&refused, peer);
                            continue;
                        }
                    };
                    // The client, and all its session spawns, lives on one
                    // worker thread (net::workers says why).
                    let placed = server.workers.place();
                    let to = placed.handle().clone();
                    let server = server.clone();
                    let close = shutdown.child_token();
                    sessions.spawn(net::workers::move_to(to, tcp, move |tcp| async move {
                        let _placed = placed;
                        accept::handle(server, tcp, peer, close, slot).await
                    }));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn say_refused(refused: &pending::Refused, peer: std::net::SocketAddr) {
    let text = "too many connections still logging in (transport.maxPendingLogins); \
                closing new ones that cannot fairly take a slot (counted in /metrics)";
    if refused.say {
        warn!(%peer, "{text}");
    } else {
        tracing::debug!(%peer, "{text}");
    }
}

/// The virtual host ports, when configured: HTTP by Host and path, HTTPS by
/// SNI, tcpmux by HTTP CONNECT. A port that cannot be bound is an error at
/// start, as in frp.
async fn start_vhosts(server: &Arc<Server>, shutdown: &CancellationToken) -> Result<()> {
    let cfg = &server.config;
    if cfg.vhost_http_port != 0 {
        let page = match cfg.custom_404_page.as_str() {
            "" => bytes::Bytes::from_static(vhost::http::NOT_FOUND_PAGE.as_bytes()),
            path => std::fs::read(path)
                .with_context(|| format!("reading custom404Page {path}"))?
                .into(),
        };
        let vhost = vhost::http::Vhost::new(server.clone(), page);
        if cfg.vhost_http_port == cfg.bind_port {
            info!("http virtual hosts share bindPort: HTTP requests there are routed by Host");
            let _ = server.vhosts.shared_http.set(vhost);
        } else {
            let l = TcpListener::bind((cfg.proxy_bind_addr.as_str(), cfg.vhost_http_port))
                .await
                .with_context(|| {
                    format!("cannot listen on vhostHTTPPort {}", cfg.vhost_http_port)
                })?;
            info!(addr = %l.local_addr()?, "http virtual hosts: routed by Host and path");
            tokio::spawn(vhost::http::serve(vhost, l, shutdown.child_token()));
        }
    }
    if cfg.vhost_https_port != 0 && cfg.vhost_https_port == cfg.bind_port {
        info!(
            "https virtual hosts share bindPort: ClientHellos naming a routed domain go to its proxy"
        );
    } else if cfg.vhost_https_port != 0 {
        let l = TcpListener::bind((cfg.proxy_bind_addr.as_str(), cfg.vhost_https_port))
            .await
            .with_context(|| format!("cannot listen on vhostHTTPSPort {}", cfg.vhost_https_port))?;
        info!(addr = %l.local_addr()?, "https virtual hosts: routed by the TLS server name (SNI)");
        tokio::spawn(vhost::https::serve(
            server.clone(),
            l,
            shutdown.child_token(),
        ));
    }
    if server.config.tcpmux_http_connect_port != 0 {
        let cfg = &server.config;
        let port = cfg.tcpmux_http_connect_port;
        let l = TcpListener::bind((cfg.proxy_bind_addr.as_str(), port))
            .await
            .with_context(|| format!("cannot listen on tcpmuxHTTPConnectPort {port}"))?;
        info!(addr = %l.local_addr()?, "tcpmux: connections routed by HTTP CONNECT");
        tokio::spawn(vhost::tcpmux::serve(
            server.clone(),
            l,
            shutdown.child_token(),
        ));
    }
    Ok(())
}
