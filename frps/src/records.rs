//! The server's table of clients and proxies: every client and proxy seen,
//! online or not (the most recent offline ones, bounded), each proxy's
//! traffic in daily buckets for 7 days, and server-wide counts of failed
//! logins and replaced sessions. A proxy is kept here once: its name's
//! claim (unique per user, as in frp), the live handle of a running proxy
//! and its owning session, and the record the dashboard, its API and
//! `/metrics` show. Fed by the sessions; read by `web`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use net::activity::Activity;
use net::stats::Traffic;
use tokio_util::sync::CancellationToken;
use wire::message::{ProxyKind, ProxySpec};

use crate::registry::SessionKey;

/// Offline clients and proxies kept for the dashboard; the oldest go first.
pub(crate) const MAX_OFFLINE: usize = 1024;
/// Days of traffic kept per proxy (as frp).
pub(crate) const DAYS: usize = 7;

/// One client, online or not.
#[derive(Clone)]
pub(crate) struct ClientRecord {
    pub user: String,
    pub run_id: String,
    pub hostname: String,
    /// frp's clientID and client metadatas from the last login.
    pub client_id: String,
    pub metas: std::collections::BTreeMap<String, String>,
    /// The protocol version of its last session.
    pub protocol: u16,
    pub addr: SocketAddr,
    pub first_connected: SystemTime,
    pub last_connected: SystemTime,
    pub disconnected: Option<SystemTime>,
    /// Receive clock of the live session (the heartbeat's).
    pub activity: Option<Arc<Activity>>,
    /// Heartbeats received in the live session.
    pub beats: Arc<AtomicU64>,
    /// The round trip frpc measured for its last answered beat, in µs
    /// (0: not yet), as its Ping reports it.
    pub rtt_us: Arc<AtomicU64>,
    /// Times a newer login of this client replaced its session.
    pub replaced: u64,
    /// Ends the live session (the API's disconnect).
    pub close: Option<CancellationToken>,
    /// The live session's id (the registry's).
    session: u64,
}

impl ClientRecord {
    pub fn online(&self) -> bool {
        self.disconnected.is_none()
    }
}

/// Bytes in (users → client) and out, per day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Daily {
    /// (day number since the epoch, in, out), newest last, at most [`DAYS`].
    pub days: VecDeque<(u64, u64, u64)>,
}

impl Daily {
    fn add(&mut self, day: u64, inb: u64, outb: u64) {
        match self.days.back_mut() {
            Some(d) if d.0 == day => {
                d.1 += inb;
                d.2 += outb;
            }
            _ => {
                self.days.push_back((day, inb, outb));
                while self.days.len() > DAYS {
                    self.days.pop_front();
                }
            }
        }
    }

    /// In and out for the `DAYS` days up to `today`, today first (frp's
    /// order), zero for days without traffic.
    pub fn series(&self, today: u64) -> (Vec<u64>, Vec<u64>) {
        (0..DAYS as u64)
            .map(|back| {
                let day = today.saturating_sub(back);
                self.days
                    .iter()
                    .find(|d| d.0 == day)
                    .map_or((0, 0), |d| (d.1, d.2))
            })
            .unzip()
    }
}

/// One proxy, online or not.
#[derive(Clone)]
pub(crate) struct ProxyRecord {
    pub user: String,
    /// The run id of the session that registered it (its client is
    /// `(user, run_id)`).
    pub run_id: String,
    pub name: String,
    pub spec: ProxySpec,
    /// The proxy's `metadatas` and `annotations` (bounded at registration).
    pub metadatas: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub traffic: Arc<Traffic>,
    pub started: SystemTime,
    pub closed: Option<SystemTime>,
    pub daily: Daily,
    /// `traffic` as already counted into `daily`.
    counted: (u64, u64),
    /// Everything this name carried before its current registration.
    pub earlier_total: (u64, u64),
    /// While a session holds the name: that session and, once started,
    /// the proxy itself.
    live: Option<Live>,
    /// Started at least once (a name claimed by a proxy that failed to
    /// start is no record to show).
    shown: bool,
}

/// A proxy name held by a session.
#[derive(Clone)]
struct Live {
    /// The owning session (the registry's id).
    session: u64,
    kind: ProxyKind,
    /// The running proxy, as the virtual hosts see it (set once started):
    /// what looking a proxy up by name (visitors, groups) reaches.
    backend: Option<crate::vhost::BackendRef>,
}

/// Live figures of one proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyStats {
    pub user: String,
    pub name: String,
    pub kind: ProxyKind,
    pub traffic: net::stats::TrafficSnapshot,
}

impl ProxyRecord {
    pub fn online(&self) -> bool {
        self.closed.is_none()
    }

    /// Bytes in and out since the record began.
    pub fn total(&self) -> (u64, u64) {
        let t = self.traffic.snapshot();
        (
            self.earlier_total.0 + t.into_tunnel,
            self.earlier_total.1 + t.out_of_tunnel,
        )
    }

    /// Moves what `traffic` carried since the last fold into today.
    fn fold(&mut self, today: u64) {
        let t = self.traffic.snapshot();
        let (inb, outb) = (t.into_tunnel, t.out_of_tunnel);
        let delta = (
            inb.saturating_sub(self.counted.0),
            outb.saturating_sub(self.counted.1),
        );
        self.counted = (inb, outb);
        self.daily.add(today, delta.0, delta.1);
    }
}

#[derive(Default)]
struct Inner {
    clients: HashMap<SessionKey, ClientRecord>,
    proxies: HashMap<(String, String), ProxyRecord>,
    login_failures: BTreeMap<&'static str, u64>,
    sessions_replaced: u64,
    /// Days read from the history file for proxies not registered since.
    stored: HashMap<(String, String), Daily>,
}

#[derive(Default)]
pub(crate) struct Records(Mutex<Inner>);

/// Days since the epoch (UTC).
pub(crate) fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// What a logged-in session reports of itself.
pub(crate) struct Online {
    pub session: u64,
    pub hostname: String,
    pub client_id: String,
    pub metas: std::collections::BTreeMap<String, String>,
    pub protocol: u16,
    pub addr: SocketAddr,
    pub activity: Arc<Activity>,
    pub beats: Arc<AtomicU64>,
    pub rtt_us: Arc<AtomicU64>,
    pub close: CancellationToken,
}

impl Records {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn client_online(&self, key: &SessionKey, s: Online, replaced: bool) {
        let mut inner = self.lock();
        if replaced {
            inner.sessions_replaced += 1;
        }
        let now = SystemTime::now();
        let rec = inner
            .clients
            .entry(key.clone())
            .or_insert_with(|| ClientRecord {
                user: key.0.clone(),
                run_id: key.1.clone(),
                hostname: String::new(),
                client_id: String::new(),
                metas: Default::default(),
                protocol: s.protocol,
                addr: s.addr,
                first_connected: now,
                last_connected: now,
                disconnected: None,
                activity: None,
                beats: Arc::default(),
                rtt_us: Arc::default(),
                replaced: 0,
                close: None,
                session: s.session,
            });
        rec.replaced += u64::from(replaced);
        rec.hostname = s.hostname;
        rec.client_id = s.client_id;
        rec.metas = s.metas;
        rec.protocol = s.protocol;
        rec.addr = s.addr;
        rec.last_connected = now;
        rec.disconnected = None;
        rec.activity = Some(s.activity);
        rec.beats = s.beats;
        rec.rtt_us = s.rtt_us;
        rec.close = Some(s.close);
        rec.session = s.session;
    }

    /// Session `session` ended (a replaced session's end leaves its
    /// successor's record alone).
    pub fn client_offline(&self, key: &SessionKey, session: u64) {
        let mut inner = self.lock();
        if let Some(rec) = inner.clients.get_mut(key) {
            if rec.session == session {
                rec.disconnected = Some(SystemTime::now());
                rec.activity = None;
                rec.close = None;
            }
        }
        trim(&mut inner.clients, |c| c.online(), |c| c.disconnected);
    }

    /// Claims `name` for `key`'s session `session`; false when a session
    /// holds it already. What the name carried before stays with it.
    pub fn claim_proxy(&self, key: &SessionKey, session: u64, name: &str, kind: ProxyKind) -> bool {
        let mut inner = self.lock();
        let id = (key.0.clone(), name.to_owned());
        let live = Some(Live {
            session,
            kind,
            backend: None,
        });
        match inner.proxies.get_mut(&id) {
            Some(p) if p.live.is_some() => false,
            Some(p) => {
                p.live = live;
                true
            }
            None => {
                let daily = inner.stored.remove(&id).unwrap_or_default();
                inner.proxies.insert(
                    id,
                    ProxyRecord {
                        user: key.0.clone(),
                        run_id: key.1.clone(),
                        name: name.to_owned(),
                        spec: ProxySpec::Tcp(wire::message::TcpSpec { remote_port: 0 }),
                        metadatas: BTreeMap::new(),
                        annotations: BTreeMap::new(),
                        traffic: Arc::default(),
                        started: SystemTime::now(),
                        closed: Some(SystemTime::now()),
                        daily,
                        counted: (0, 0),
                        earlier_total: (0, 0),
                        live,
                        shown: false,
                    },
                );
                true
            }
        }
    }

    /// A claimed proxy started: `endpoint` is where users reach it (a port
    /// frps chose fills in `remotePort = 0`, as frp shows it).
    pub fn proxy_started(
        &self,
        key: &SessionKey,
        req: &wire::message::NewProxy,
        endpoint: &str,
        traffic: Arc<Traffic>,
        backend: crate::vhost::BackendRef,
    ) {
        let mut spec = req.spec.clone();
        let chosen = endpoint.rsplit(':').next().and_then(|p| p.parse().ok());
        match (&mut spec, chosen) {
            (ProxySpec::Tcp(s), Some(p)) if s.remote_port == 0 => s.remote_port = p,
            (ProxySpec::Udp(s), Some(p)) if s.remote_port == 0 => s.remote_port = p,
            _ => {}
        }
        let mut inner = self.lock();
        let Some(p) = inner.proxies.get_mut(&(key.0.clone(), req.name.clone())) else {
            return;
        };
        if p.shown {
            p.fold(today());
            p.earlier_total = p.total();
        }
        p.run_id = key.1.clone();
        p.spec = spec;
        p.metadatas = req.opts.metas.iter().cloned().collect();
        p.annotations = req.opts.annotations.iter().cloned().collect();
        p.traffic = traffic;
        p.counted = (0, 0);
        p.started = SystemTime::now();
        p.closed = None;
        p.shown = true;
        if let Some(live) = &mut p.live {
            live.backend = Some(backend);
        }
    }

    /// The name is free again: session `session`'s proxy closed, or never
    /// started. A name another session holds by now is left to it.
    pub fn proxy_closed(&self, user: &str, name: &str, session: u64) {
        let mut inner = self.lock();
        let id = (user.to_owned(), name.to_owned());
        let Some(p) = inner.proxies.get_mut(&id) else {
            return;
        };
        if p.live.as_ref().is_some_and(|l| l.session != session) {
            return;
        }
        p.live = None;
        if !p.shown {
            let p = inner.proxies.remove(&id).expect("just seen");
            if !p.daily.days.is_empty() {
                inner.stored.insert(id, p.daily);
            }
            return;
        }
        if p.closed.is_none() {
            p.fold(today());
            p.closed = Some(SystemTime::now());
        }
        trim(
            &mut inner.proxies,
            |p| p.online() || p.live.is_some(),
            |p| p.closed,
        );
    }

    /// The running proxy `user` calls `name`, as a virtual host would reach
    /// it, and what it was registered with (visitors look private proxies
    /// up here).
    pub fn running(&self, user: &str, name: &str) -> Option<(crate::vhost::BackendRef, ProxySpec)> {
        let inner = self.lock();
        let p = inner.proxies.get(&(user.to_owned(), name.to_owned()))?;
        let backend = p.live.as_ref()?.backend.clone()?;
        Some((backend, p.spec.clone()))
    }

    /// Every proxy a session holds, with its live counters, by user and
    /// name.
    pub fn proxy_stats(&self) -> Vec<ProxyStats> {
        let inner = self.lock();
        let mut out: Vec<_> = inner
            .proxies
            .values()
            .filter_map(|p| {
                let live = p.live.as_ref()?;
                Some(ProxyStats {
                    user: p.user.clone(),
                    name: p.name.clone(),
                    kind: live.kind,
                    traffic: p.traffic.snapshot(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.user, &a.name).cmp(&(&b.user, &b.name)));
        out
    }

    /// Whether session `session` holds proxy `name` of `user`.
    #[cfg(test)]
    fn held_by(&self, user: &str, name: &str) -> Option<u64> {
        let inner = self.lock();
        let p = inner.proxies.get(&(user.to_owned(), name.to_owned()))?;
        p.live.as_ref().map(|l| l.session)
    }

    pub fn login_failed(&self, reason: &'static str) {
        *self.lock().login_failures.entry(reason).or_default() += 1;
    }

    /// Every client, online first, then by user and run id.
    pub fn clients(&self) -> Vec<ClientRecord> {
        let mut out: Vec<_> = self.lock().clients.values().cloned().collect();
        out.sort_by(|a, b| {
            (!a.online(), &a.user, &a.run_id).cmp(&(!b.online(), &b.user, &b.run_id))
        });
        out
    }

    /// Every proxy, its daily traffic brought up to date, by name.
    pub fn proxies(&self) -> Vec<ProxyRecord> {
        let mut inner = self.lock();
        let today = today();
        for p in inner.proxies.values_mut().filter(|p| p.online()) {
            p.fold(today);
        }
        let mut out: Vec<_> = inner
            .proxies
            .values()
            .filter(|p| p.shown)
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.name, &a.user).cmp(&(&b.name, &b.user)));
        out
    }

    /// Forgets offline proxies; returns how many, and how many proxies
    /// were known before.
    pub fn remove_offline_proxies(&self) -> (usize, usize) {
        let mut inner = self.lock();
        let before = inner.proxies.values().filter(|p| p.shown).count();
        inner.proxies.retain(|_, p| p.online() || p.live.is_some());
        let after = inner.proxies.values().filter(|p| p.shown).count();
        (before - after, before)
    }

    pub fn login_failures(&self) -> BTreeMap<&'static str, u64> {
        self.lock().login_failures.clone()
    }

    pub fn sessions_replaced(&self) -> u64 {
        self.lock().sessions_replaced
    }

    /// Brings daily traffic up to date (called every minute, so a day's
    /// bytes land in that day) and returns every known proxy's days, for
    /// the history file.
    pub fn tick(&self) -> Vec<((String, String), Daily)> {
        let today = today();
        let mut inner = self.lock();
        for p in inner.proxies.values_mut().filter(|p| p.online()) {
            p.fold(today);
        }
        inner
            .proxies
            .iter()
            .filter(|(_, p)| p.shown)
            .map(|(k, p)| (k.clone(), p.daily.clone()))
            .collect()
    }

    /// The history read at start.
    pub fn restore(&self, stored: HashMap<(String, String), Daily>) {
        self.lock().stored = stored;
    }
}

/// Keeps at most [`MAX_OFFLINE`] offline entries, dropping the longest gone.
fn trim<K: Clone + std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    online: impl Fn(&V) -> bool,
    gone_at: impl Fn(&V) -> Option<SystemTime>,
) {
    let offline = map.values().filter(|v| !online(v)).count();
    if offline <= MAX_OFFLINE {
        return;
    }
    let mut gone: Vec<(SystemTime, K)> = map
        .iter()
        .filter_map(|(k, v)| gone_at(v).map(|t| (t, k.clone())))
        .collect();
    gone.sort_by_key(|(t, _)| *t);
    for (_, k) in gone.into_iter().take(offline - MAX_OFFLINE) {
        map.remove(&k);
    }
}

/// Beats are counted where they arrive (the control loop), with the
/// round trip they report.
pub(crate) fn beat(counter: &AtomicU64, rtt: &AtomicU64, rtt_us: u32) {
    counter.fetch_add(1, Ordering::Relaxed);
    if rtt_us > 0 {
        rtt.store(u64::from(rtt_us), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio_util::task::TaskTracker;

    /// A proxy handle that is never used to carry anything.
    struct Idle(CancellationToken, TaskTracker);

    impl crate::vhost::Backend for Idle {
        fn open(
            &self,
            _: SocketAddr,
            _: SocketAddr,
        ) -> futures::future::BoxFuture<'_, anyhow::Result<net::stats::Metered<net::tunnel::Tunnel>>>
        {
            Box::pin(async { anyhow::bail!("idle") })
        }
        fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, usize> {
            Err(0)
        }
        fn stop(&self) -> &CancellationToken {
            &self.0
        }
        fn tasks(&self) -> &TaskTracker {
            &self.1
        }
        fn home(&self) -> &tokio::runtime::Handle {
            unreachable!("never placed")
        }
        fn carry_tcp(
            &self,
            _: tokio::net::TcpStream,
            _: SocketAddr,
            _: SocketAddr,
            _: tokio::sync::OwnedSemaphorePermit,
        ) -> futures::future::BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    fn new_proxy(name: &str) -> wire::message::NewProxy {
        wire::message::NewProxy {
            name: name.into(),
            spec: ProxySpec::Tcp(wire::message::TcpSpec { remote_port: 0 }),
            opts: Default::default(),
        }
    }

    /// One entry per proxy: the claim, the live handle and the record.
    #[test]
    fn a_proxy_is_claimed_started_and_released_in_one_entry() {
        let r = Records::default();
        let (a, b) = (
            ("u".to_owned(), "run-a".to_owned()),
            ("u".to_owned(), "run-b".to_owned()),
        );
        assert!(r.claim_proxy(&a, 1, "ssh", ProxyKind::Tcp));
        assert!(
            !r.claim_proxy(&b, 2, "ssh", ProxyKind::Tcp),
            "names are per user"
        );
        assert!(r.proxies().is_empty(), "not shown before it starts");
        assert!(r.running("u", "ssh").is_none());
        let idle = Arc::new(Idle(CancellationToken::new(), TaskTracker::new()));
        r.proxy_started(&a, &new_proxy("ssh"), "0.0.0.0:6000", Arc::default(), idle);
        assert!(r.running("u", "ssh").is_some());
        let shown = r.proxies();
        assert_eq!(shown.len(), 1);
        assert!(matches!(shown[0].spec, ProxySpec::Tcp(ref s) if s.remote_port == 6000));
        assert_eq!(r.proxy_stats().len(), 1);
        // Another session's release leaves the owner's name alone.
        r.proxy_closed("u", "ssh", 2);
        assert_eq!(r.held_by("u", "ssh"), Some(1));
        r.proxy_closed("u", "ssh", 1);
        assert!(r.running("u", "ssh").is_none() && r.proxy_stats().is_empty());
        assert!(!r.proxies()[0].online(), "kept, offline");
        assert!(r.claim_proxy(&b, 2, "ssh", ProxyKind::Tcp), "free again");
        // A claim whose proxy never starts leaves nothing behind.
        assert!(r.claim_proxy(&a, 1, "web", ProxyKind::Http));
        r.proxy_closed("u", "web", 1);
        assert_eq!(r.proxies().len(), 1);
    }
}
