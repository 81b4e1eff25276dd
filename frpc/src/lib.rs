//! frpc: keeps one multiplexed connection to frps, registers the configured
//! proxies, and carries each forwarded connection to its local service.
//!
//! [`run`] takes the shutdown token and an optional event channel, so tests
//! drive the real client in-process and learn when proxies are up without
//! reading logs.

mod backoff;
mod control;
mod work;

use std::time::{Duration, Instant};

use anyhow::Result;
use shared::config::ClientConfig;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use backoff::Backoff;

/// What the client reports to an observer (tests, and the demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    LoggedIn { run_id: String },
    ProxyStarted { name: String, remote_addr: String },
    ProxyFailed { name: String, error: String },
    SessionLost { reason: String },
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

/// First retry after about this long; doubles from there.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(20);
/// A session that lasted this long was healthy: start the backoff afresh.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

/// Runs the client until `shutdown` is cancelled (Ok) or the first login
/// fails with `loginFailExit = true` (Err).
pub async fn run(config: ClientConfig, shutdown: CancellationToken, events: Events) -> Result<()> {
    let mut run_id = String::new();
    let mut logged_in_once = false;
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = control::connect(&config, &run_id) => r,
        };
        match outcome {
            Ok(session) => {
                logged_in_once = true;
                run_id = session.run_id().to_owned();
                events.emit(Event::LoggedIn {
                    run_id: run_id.clone(),
                });
                match session.run(&config, &shutdown, &events).await {
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
            }
            Err(e) if !logged_in_once && config.login_fail_exit => {
                return Err(e.context("login to server failed (loginFailExit = true)"));
            }
            Err(e) => warn!("login to server failed: {e:#}"),
        }
        let delay = backoff.next_delay();
        info!("reconnecting in {:.1}s", delay.as_secs_f64());
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
