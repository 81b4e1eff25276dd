//! Keeps the client connected: one session at a time, reconnecting with
//! exponential backoff and jitter after a loss, presenting the run id so
//! frps retires the old session at once (`docs/liveness.md`, Recovery).
//! Failover over several servers will go here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use config::ClientConfig;
use mux::MemoryBudget;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::connector::Connector;
use crate::control::Controller;
use crate::session::{self, Attached, Session};
use crate::{Backoff, Event, Events};

/// A session that lasted this long was healthy: the next outage starts the
/// backoff afresh instead of where the last one left it.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

pub(crate) struct Supervisor {
    connector: Arc<Connector>,
    /// The proxy set and liveness record, kept across sessions.
    controller: Arc<Controller>,
    /// Shared by this client's sessions: a session being replaced still
    /// holds its streams' windows until they close.
    budget: Arc<MemoryBudget>,
    backoff: Backoff,
    events: Events,
    run_id: String,
    logged_in_once: bool,
    interval_warned: bool,
    /// When the last session was lost, and attempts since then.
    lost_at: Option<Instant>,
    attempts: u32,
}

impl Supervisor {
    pub fn new(config: ClientConfig, controller: Arc<Controller>, events: Events) -> Result<Self> {
        let t = &config.transport;
        let (first, max) = config.reconnect_delays();
        let backoff = Backoff::new(first, max);
        let budget = MemoryBudget::new(config::buffer_budget(t.max_buffer_mb));
        // frp's clientID names the client across restarts: as our run id, the
        // session a restarted frpc opens replaces the one it left behind,
        // and frps's API and dashboard show the same key.
        let run_id = config.client_id.clone();
        Ok(Supervisor {
            connector: Arc::new(Connector::new(Arc::new(config))?),
            controller,
            budget,
            backoff,
            events,
            run_id,
            logged_in_once: false,
            interval_warned: false,
            lost_at: None,
            attempts: 0,
        })
    }

    /// Runs until `shutdown` is cancelled (Ok) or the first login fails
    /// with `loginFailExit = true` (Err).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = session::connect(&self.connector, &self.run_id, &self.budget) => r,
            };
            match outcome {
                Ok(session) => {
                    if self.serve(session, &shutdown).await {
                        return Ok(());
                    }
                }
                Err(e) if !self.logged_in_once && self.connector.config.login_fail_exit => {
                    return Err(e.context("login to server failed (loginFailExit = true)"));
                }
                Err(e) => warn!("login to server failed: {e:#}"),
            }
            self.attempts += 1;
            let delay = self.backoff.next_delay();
            self.controller.liveness.backoff(delay);
            info!(
                "reconnecting in {:.1}s (attempt {})",
                delay.as_secs_f64(),
                self.attempts
            );
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Runs one logged-in session; true when it ended by shutdown.
    async fn serve(&mut self, session: Session, shutdown: &CancellationToken) -> bool {
        self.logged_in_once = true;
        self.run_id = session.run_id().to_owned();
        if let Some(lost_at) = self.lost_at.take() {
            let attempts = self.attempts;
            info!(
                "reconnected after an outage of {:.1}s ({attempts} attempt{})",
                lost_at.elapsed().as_secs_f64(),
                if attempts == 1 { "" } else { "s" }
            );
        }
        self.events.emit(Event::LoggedIn {
            run_id: self.run_id.clone(),
        });
        let liveness = &self.controller.liveness;
        liveness.connected(session.activity(), session.fingerprint());
        let started = Instant::now();
        let attached = Attached {
            proxies: &self.controller.proxies,
            visitors: &self.controller.visitors,
            liveness,
            events: &self.events,
        };
        let result = session
            .run(
                &self.connector,
                shutdown,
                &attached,
                &mut self.interval_warned,
            )
            .await;
        if let Err(e) = result {
            liveness.lost();
            warn!("connection to server lost: {e:#}");
            self.events.emit(Event::SessionLost {
                reason: format!("{e:#}"),
            });
        } else {
            return true;
        }
        if started.elapsed() >= HEALTHY_SESSION {
            self.backoff.reset();
        }
        self.lost_at = Some(Instant::now());
        self.attempts = 0;
        false
    }
}
