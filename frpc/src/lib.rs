//! frpc: keeps one multiplexed connection to frps, registers the configured
//! proxies, and carries each forwarded connection to its local service.
//!
//! [`run`] takes the shutdown token and an optional event channel, so tests
//! drive the real client in-process and learn when proxies are up without
//! reading logs. Layout: `supervisor` (reconnects) → `session` (one
//! connection: `connector` dials, `login` proves, then the control loop) →
//! `work` (a work stream) → `proxy` (one module per kind).

mod backoff;
mod connector;
mod events;
mod login;
mod pool;
mod proxy;
mod session;
mod supervisor;
mod work;

use anyhow::Result;
use config::ClientConfig;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use events::{Event, Events};

/// Runs the client until `shutdown` is cancelled (Ok) or the first login
/// fails with `loginFailExit = true` (Err).
pub async fn run(config: ClientConfig, shutdown: CancellationToken, events: Events) -> Result<()> {
    supervisor::Supervisor::new(config, events)?
        .run(shutdown)
        .await
}
