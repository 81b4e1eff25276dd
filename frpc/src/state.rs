//! What the client knows of its own connection to frps — state, round
//! trip, silence, outages, backoff, the server's certificate — kept up to
//! date by the supervisor and the session, read by the admin API,
//! `frpc status` and `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use net::activity::Activity;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// Before the first login.
    Connecting,
    Connected,
    /// Lost, and trying again.
    Reconnecting,
}

impl ConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Connected => "connected",
            ConnState::Reconnecting => "reconnecting",
        }
    }
}

struct Live {
    server: String,
    state: ConnState,
    connected_since: Option<SystemTime>,
    /// The session's receive clock (the heartbeat's).
    activity: Option<Arc<Activity>>,
    rtt: Option<Duration>,
    /// Sessions after the first.
    reconnects: u64,
    outages: u64,
    /// Outages that ended.
    outage_total: Duration,
    outage_started: Option<Instant>,
    backoff: Option<Duration>,
    fingerprint: Option<String>,
}

/// Shared, cheap to update; one lock, never held across an await.
pub struct Liveness(Mutex<Live>);

/// A snapshot, as the admin API's `/api/liveness` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LivenessReport {
    pub server: String,
    pub state: ConnState,
    /// Unix seconds.
    pub connected_since: Option<u64>,
    pub rtt_ms: Option<f64>,
    /// Seconds since anything was last received from frps.
    pub last_received_secs: Option<f64>,
    pub reconnects: u64,
    pub outages: u64,
    /// Every outage so far, the current one included.
    pub outage_seconds_total: f64,
    /// The delay before the next attempt, while reconnecting.
    pub backoff_seconds: Option<f64>,
    /// SHA-256 of the server's certificate, hex with colons.
    pub server_fingerprint: Option<String>,
}

impl Liveness {
    pub fn new(server: String) -> Arc<Self> {
        Arc::new(Liveness(Mutex::new(Live {
            server,
            state: ConnState::Connecting,
            connected_since: None,
            activity: None,
            rtt: None,
            reconnects: 0,
            outages: 0,
            outage_total: Duration::ZERO,
            outage_started: None,
            backoff: None,
            fingerprint: None,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session logged in.
    pub(crate) fn connected(&self, activity: Arc<Activity>, fingerprint: Option<String>) {
        let mut l = self.lock();
        if l.state == ConnState::Reconnecting {
            l.reconnects += 1;
        }
        if let Some(at) = l.outage_started.take() {
            l.outage_total += at.elapsed();
        }
        l.state = ConnState::Connected;
        l.connected_since = Some(SystemTime::now());
        l.activity = Some(activity);
        l.fingerprint = fingerprint.map(|f| net::tls::pretty_fingerprint(&f));
        l.backoff = None;
        l.rtt = None;
    }

    /// The session was lost: an outage starts.
    pub(crate) fn lost(&self) {
        let mut l = self.lock();
        l.state = ConnState::Reconnecting;
        l.outages += 1;
        l.outage_started = Some(Instant::now());
        l.connected_since = None;
        l.activity = None;
        l.rtt = None;
    }

    pub(crate) fn backoff(&self, delay: Duration) {
        self.lock().backoff = Some(delay);
    }

    pub(crate) fn rtt(&self, rtt: Duration) {
        self.lock().rtt = Some(rtt);
    }

    pub fn report(&self) -> LivenessReport {
        let l = self.lock();
        let current = l.outage_started.map_or(Duration::ZERO, |at| at.elapsed());
        LivenessReport {
            server: l.server.clone(),
            state: l.state,
            connected_since: l
                .connected_since
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            rtt_ms: l.rtt.map(|d| d.as_secs_f64() * 1000.0),
            last_received_secs: l
                .activity
                .as_ref()
                .map(|a| a.last_recv().elapsed().as_secs_f64()),
            reconnects: l.reconnects,
            outages: l.outages,
            outage_seconds_total: (l.outage_total + current).as_secs_f64(),
            backoff_seconds: l.backoff.map(|d| d.as_secs_f64()),
            server_fingerprint: l.fingerprint.clone(),
        }
    }
}
