//! frps: accepts frpc connections, authenticates them, and exposes their
//! proxies on public ports.
//!
//! The caller binds the listener and owns the shutdown token, so tests run
//! the real server in-process on `127.0.0.1:0`.

mod proxy;
mod registry;
mod session;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use shared::config::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use registry::Registry;

/// How long shutdown waits for sessions to wind down before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct Server {
    pub config: ServerConfig,
    pub registry: Registry,
}

/// Serves frpc connections from `listener` until `shutdown` is cancelled.
pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    if config.auth.token.is_empty() {
        warn!("auth.token is empty: any client that can reach this port may expose services");
    }
    let server = Arc::new(Server {
        config,
        registry: Registry::default(),
    });
    let sessions = TaskTracker::new();
    info!(addr = %listener.local_addr()?, "frps listening for clients");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let server = server.clone();
                    let close = shutdown.child_token();
                    sessions.spawn(session::handle(server, tcp, peer, close));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    info!("shutting down");
    sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait())
        .await
        .is_err()
    {
        warn!("some sessions did not finish within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}
