//! frpc: keeps one multiplexed connection to frps, registers the configured
//! proxies, and carries each forwarded connection to its local service.
//!
//! [`run`] takes the shutdown token and an optional event channel, so tests
//! drive the real client in-process and learn when proxies are up without
//! reading logs. Layout: `supervisor` (reconnects) → `session` (one
//! connection: `connector` dials, `login` proves, then the control loop) →
//! `work` (a work stream) → `proxy` (one module per kind). Beside them:
//! `control` (reload, status, stop; the proxy set outlives sessions),
//! `state` (liveness), `admin` (the admin API) and `cli` (`frpc status`…).

mod admin;
mod backoff;
pub mod cli;
mod connector;
pub mod control;
mod dial;
mod events;
mod login;
mod p2p;
mod pool;
mod proxy;
pub mod quick;
mod session;
pub mod state;
mod supervisor;
mod visitor;
mod work;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use config::ClientConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use control::Controller;
pub use events::{Event, Events};
pub use proxy::{oversized_registrations, Changes, Phase, ProxyStatus};

/// Runs the client until `shutdown` is cancelled (Ok) or the first login
/// fails with `loginFailExit = true` (Err).
pub async fn run(config: ClientConfig, shutdown: CancellationToken, events: Events) -> Result<()> {
    Client::new(config, None, shutdown).run(events, None).await
}

/// A client with its controller, which reloads and reports on it while it
/// runs (the admin API, SIGHUP, tests).
pub struct Client {
    config: ClientConfig,
    controller: Arc<Controller>,
    shutdown: CancellationToken,
}

impl Client {
    /// `path` is the config file reloads read (None: reload is refused).
    pub fn new(config: ClientConfig, path: Option<PathBuf>, shutdown: CancellationToken) -> Self {
        let controller = Controller::new(&config, path, shutdown.clone());
        Client {
            config,
            controller,
            shutdown,
        }
    }

    pub fn controller(&self) -> Arc<Controller> {
        self.controller.clone()
    }

    /// Runs until shutdown (or a failed first login with `loginFailExit`),
    /// serving the admin API on `admin` when given.
    pub async fn run(self, events: Events, admin: Option<TcpListener>) -> Result<()> {
        if let Some(listener) = admin {
            let web = self.config.web_server.clone();
            let tls = net::web::acceptor(&web).context("webServer.tls")?;
            tracing::info!(
                addr = %listener.local_addr()?,
                "admin API listening (frpc status, reload, stop)"
            );
            tokio::spawn(admin::serve(
                self.controller.clone(),
                listener,
                web,
                tls,
                self.shutdown.clone(),
            ));
        }
        // Visitors listen from the start, connected or not.
        self.controller.visitors.start(&self.shutdown);
        supervisor::Supervisor::new(self.config, self.controller, events)?
            .run(self.shutdown)
            .await
    }
}
