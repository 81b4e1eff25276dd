//! frpc: keeps one multiplexed connection to frps, registers the configured
//! proxies, and carries each forwarded connection to its local service.
//!
//! [`run`] takes the shutdown token and an optional event channel, so tests
//! drive the real client in-process and learn when proxies are up without
//! reading logs.

mod backoff;
mod control;
mod pool;
mod proxy;
mod work;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use config::ClientConfig;
use mux::MemoryBudget;
use net::transport::ClientSide;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use backoff::Backoff;

/// What the client reports to an observer (tests, and the demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    LoggedIn {
        run_id: String,
    },
    ProxyStarted {
        name: String,
        remote_addr: String,
    },
    ProxyFailed {
        name: String,
        error: String,
    },
    SessionLost {
        reason: String,
    },
    /// A heartbeat went out (the tests count them).
    PingSent {
        seq: u32,
    },
}

/// Handle to report events through; cheap to clone, silent when unset.
#[derive(Clone, Default)]
pub struct Events(Option<UnboundedSender<Event>>);

impl Events {
    pub fn new(tx: UnboundedSender<Event>) -> Self {
        Events(Some(tx))
    }

    pub(crate) fn emit(&self, e: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }
}

/// A session that lasted this long was healthy: the next outage starts the
/// backoff afresh instead of where the last one left it.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

/// Runs the client until `shutdown` is cancelled (Ok) or the first login
/// fails with `loginFailExit = true` (Err).
pub async fn run(config: ClientConfig, shutdown: CancellationToken, events: Events) -> Result<()> {
    let t = &config.transport;
    let mut backoff = Backoff::new(
        Duration::from_secs_f64(t.reconnect_initial_delay),
        Duration::from_secs_f64(t.reconnect_max_delay),
    );
    let side = Arc::new(ClientSide::new(&config).context("setting up TLS")?);
    let config = Arc::new(config);
    if !side.tls_enabled() {
        warn!("TLS is off (transport.tls.enable = false): the tunnel's traffic is not encrypted");
    }
    // Shared by this client's sessions: a session being replaced still
    // holds its streams' windows until they close.
    let budget = MemoryBudget::new(config::buffer_budget(config.transport.max_buffer_mb));
    let mut run_id = String::new();
    let mut logged_in_once = false;
    let mut interval_warned = false;
    // When the last session was lost, and attempts since then.
    let mut lost_at: Option<Instant> = None;
    let mut attempts: u32 = 0;
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = control::connect(&config, &side, &run_id, &budget) => r,
        };
        match outcome {
            Ok(session) => {
                logged_in_once = true;
                run_id = session.run_id().to_owned();
                if let Some(lost_at) = lost_at.take() {
                    info!(
                        "reconnected after an outage of {:.1}s ({attempts} attempt{})",
                        lost_at.elapsed().as_secs_f64(),
                        if attempts == 1 { "" } else { "s" }
                    );
                }
                events.emit(Event::LoggedIn {
                    run_id: run_id.clone(),
                });
                let started = Instant::now();
                match session
                    .run(&config, &side, &shutdown, &events, &mut interval_warned)
                    .await
                {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        warn!("connection to server lost: {e:#}");
                        events.emit(Event::SessionLost {
                            reason: format!("{e:#}"),
                        });
                    }
                }
                if started.elapsed() >= HEALTHY_SESSION {
                    backoff.reset();
                }
                lost_at = Some(Instant::now());
                attempts = 0;
            }
            Err(e) if !logged_in_once && config.login_fail_exit => {
                return Err(e.context("login to server failed (loginFailExit = true)"));
            }
            Err(e) => warn!("login to server failed: {e:#}"),
        }
        attempts += 1;
        let delay = backoff.next_delay();
        info!(
            "reconnecting in {:.1}s (attempt {attempts})",
            delay.as_secs_f64()
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
