//! Proxy kinds on the client: what frps is told about a proxy, and what a
//! work stream for it is delivered to. One module per kind; [`build`] is the
//! one place that dispatches on the kind. Adding a kind: a module here with
//! a type implementing [`ClientProxy`], and one arm in [`build`].

mod tcp;
mod udp;
mod xtcp;

pub(crate) use xtcp::P2pSettings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{ClientConfig, HttpProxy, ProxyConfig};
use futures::future::BoxFuture;
use net::logging::Field;
use net::stats::{Metered, Meters, Traffic, TrafficSnapshot};
use net::tunnel::Tunnel;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wire::message::{
    Control, HttpSpec, HttpsSpec, NewProxy, PrivateSpec, ProxyKind, ProxyOpts, ProxySpec,
    StartWork, TcpSpec, TcpmuxSpec,
};

/// A configured proxy, ready to register and to serve work streams.
pub(crate) trait ClientProxy: Send + Sync {
    /// What frps needs to know to serve it.
    fn spec(&self) -> ProxySpec;
    /// Carries one work stream (a user connection, or all of a UDP
    /// proxy's datagrams) to the local service. The stream comes metered
    /// (its proxy's and the client's counters): what crosses it is counted
    /// whatever the kind does with it.
    fn serve(
        self: Arc<Self>,
        work: Metered<Tunnel>,
        header: StartWork,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

/// Limits a session agreed with the server that kinds may need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Agreed {
    /// The smaller of ours and the server's `udpPacketSize`.
    pub udp_packet_size: usize,
    /// The kinds the server serves.
    pub kinds: ServerKinds,
}

impl Default for Agreed {
    fn default() -> Self {
        Agreed {
            udp_packet_size: config::DEFAULT_UDP_PACKET_SIZE,
            kinds: ServerKinds::of(
                wire::message::PROTOCOL_VERSION,
                &wire::caps::Caps::of_peer(4, &[]),
            ),
        }
    }
}

/// The proxy kinds a server serves, from the protocol version and the
/// capabilities it agreed to, so that a proxy it has no kind for is told
/// so here instead of being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerKinds {
    version: u16,
    /// Bit `k as u8` for each kind served.
    served: u32,
}

impl ServerKinds {
    pub fn of(version: u16, caps: &wire::caps::Caps) -> Self {
        let served = ProxyKind::ALL
            .iter()
            .filter(|k| caps.has(&wire::caps::proxy(**k)))
            .fold(0, |bits, k| bits | 1 << *k as u8);
        ServerKinds { version, served }
    }

    /// Why a proxy of `kind` cannot be registered with this server.
    pub fn refuses(&self, kind: ProxyKind) -> Option<String> {
        (self.served & 1 << kind as u8 == 0).then(|| {
            format!(
                "frps speaks protocol {} and serves no {kind} proxies: upgrade frps",
                self.version
            )
        })
    }
}

/// The one match on the kind. `user` is this client's (a private proxy's
/// verifier covers it).
fn build(
    cfg: &ProxyConfig,
    agreed: Agreed,
    (user, p2p): (&str, &Arc<P2pSettings>),
) -> Arc<dyn ClientProxy> {
    let private = |name: &str, secret: &str, allow_users: &[String]| PrivateSpec {
        verifier: wire::auth::visit_verifier(secret, user, name),
        allow_users: allow_users.to_vec(),
    };
    match cfg {
        ProxyConfig::Tcp(p) => {
            let spec = ProxySpec::Tcp(TcpSpec {
                remote_port: p.remote_port,
            });
            Arc::new(tcp::Forward::new(&p.name, p.local_addr(), spec))
        }
        ProxyConfig::Udp(p) => Arc::new(udp::Udp::new(p, agreed)),
        ProxyConfig::Https(p) => {
            let spec = ProxySpec::Https(HttpsSpec {
                custom_domains: p.custom_domains.clone(),
                subdomain: p.subdomain.clone(),
            });
            Arc::new(tcp::Forward::new(&p.name, p.local_addr(), spec))
        }
        ProxyConfig::Http(p) => Arc::new(tcp::Forward::new(&p.name, p.local_addr(), http_spec(p))),
        ProxyConfig::Tcpmux(p) => {
            let spec = ProxySpec::Tcpmux(TcpmuxSpec {
                custom_domains: p.custom_domains.clone(),
                subdomain: p.subdomain.clone(),
                http_user: p.http_user.clone(),
                http_password: p.http_password.clone(),
                route_by_http_user: p.route_by_http_user.clone(),
            });
            Arc::new(tcp::Forward::new(&p.name, p.local_addr(), spec))
        }
        ProxyConfig::Stcp(p) => {
            let spec = ProxySpec::Stcp(private(&p.name, &p.secret_key, &p.allow_users));
            Arc::new(tcp::Forward::new(&p.name, p.local_addr(), spec))
        }
        ProxyConfig::Sudp(p) => {
            let spec = ProxySpec::Sudp(private(&p.name, &p.secret_key, &p.allow_users));
            Arc::new(udp::Udp::private(p, spec, agreed))
        }
        ProxyConfig::Xtcp(p) => {
            let spec = ProxySpec::Xtcp(private(&p.name, &p.secret_key, &p.allow_users));
            Arc::new(xtcp::Xtcp::new(p, spec, p2p.clone()))
        }
    }
}

fn http_spec(p: &HttpProxy) -> ProxySpec {
    let pairs = |h: &config::HeaderOps| {
        h.set
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    ProxySpec::Http(HttpSpec {
        custom_domains: p.custom_domains.clone(),
        subdomain: p.subdomain.clone(),
        locations: p.locations.clone(),
        http_user: p.http_user.clone(),
        http_password: p.http_password.clone(),
        host_header_rewrite: p.host_header_rewrite.clone(),
        request_headers: pairs(&p.request_headers),
        response_headers: pairs(&p.response_headers),
        route_by_http_user: p.route_by_http_user.clone(),
    })
}

/// Where a proxy stands, as frp's admin API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not registered yet: no session, or its answer has not come.
    WaitStart,
    Running,
    StartError,
    /// Configured, but it needs what is not built yet.
    NotSupported,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::WaitStart => "wait start",
            Phase::Running => "running",
            Phase::StartError => "start error",
            Phase::NotSupported => "not supported",
        }
    }
}

/// One proxy's status, for the admin API and `frpc status`.
#[derive(Debug, Clone)]
pub struct ProxyStatus {
    pub name: String,
    pub kind: &'static str,
    pub phase: Phase,
    pub err: String,
    pub local_addr: String,
    /// As frps reports it ("0.0.0.0:6000", "www.example.com:80").
    pub remote_addr: String,
    /// What the proxy carried since it was configured (a proxy, not a
    /// visitor or one not started).
    pub traffic: Option<TrafficSnapshot>,
}

struct Entry {
    cfg: ProxyConfig,
    proxy: Arc<dyn ClientProxy>,
    traffic: Arc<Traffic>,
    /// Ends this proxy's connections: a child of the session's token,
    /// cancelled on its own when a reload removes or changes the proxy.
    stop: CancellationToken,
    phase: Phase,
    err: String,
    remote_addr: String,
    /// When frps last refused it (a retry is due [`RETRY_AFTER`] later).
    failed_at: Option<Instant>,
}

/// How long after frps refused a proxy (its port in use, its name taken)
/// it is registered again, as frp does.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The session the proxy set is registered with: what a change must be
/// told to, and what new proxies' connections end with.
struct Attached {
    agreed: Agreed,
    close: CancellationToken,
    control: UnboundedSender<Control>,
}

/// What a reload changed, by proxy name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

struct Inner {
    entries: HashMap<String, Entry>,
    /// Names in file order.
    order: Vec<String>,
    session: Option<Attached>,
    /// Configured but not started (a kind or key not built yet).
    not_started: Vec<config::NotStarted>,
    /// This client's user.
    user: String,
    /// What xtcp proxies make their sessions with.
    p2p: Arc<P2pSettings>,
}

/// The client's proxy set, kept across sessions and reloads: registrations
/// for frps, the kind that serves each work stream, and each proxy's
/// status. A reload changes only what differs ([`ProxyManager::apply`]):
/// unchanged proxies keep their open connections.
pub(crate) struct ProxyManager {
    inner: Mutex<Inner>,
    /// All of the client's proxies together.
    traffic: Arc<Traffic>,
}

impl ProxyManager {
    pub fn new(config: &ClientConfig) -> Self {
        let m = ProxyManager {
            inner: Mutex::new(Inner {
                user: config.user.clone(),
                p2p: Arc::new(P2pSettings::of(config)),
                entries: HashMap::new(),
                order: Vec::new(),
                session: None,
                not_started: Vec::new(),
            }),
            traffic: Arc::new(Traffic::default()),
        };
        m.apply(&config.proxies);
        m.not_started(&config.not_started);
        m
    }

    /// What the config names but cannot start, for the statuses.
    pub fn not_started(&self, list: &[config::NotStarted]) {
        self.lock().not_started = list.to_vec();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent: poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// A new session: every proxy is rebuilt for what it agreed and
    /// registered anew. Returns the registrations, in file order; changes
    /// from now on go to `control`.
    pub fn attach(
        &self,
        agreed: Agreed,
        close: &CancellationToken,
        control: UnboundedSender<Control>,
    ) -> Vec<NewProxy> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for e in inner.entries.values_mut() {
            e.proxy = build(&e.cfg, agreed, (&inner.user, &inner.p2p));
            e.stop = close.child_token();
            (e.phase, e.err, e.remote_addr) = (Phase::WaitStart, String::new(), String::new());
            e.failed_at = None;
        }
        inner.session = Some(Attached {
            agreed,
            close: close.clone(),
            control,
        });
        for e in inner.entries.values_mut() {
            if let Some(why) = unsendable(agreed, e) {
                (e.phase, e.err) = (Phase::StartError, why);
            }
        }
        let inner = &*inner;
        inner
            .order
            .iter()
            .filter_map(|n| inner.entries.get(n))
            .filter(|e| e.phase == Phase::WaitStart)
            .map(registration)
            .collect()
    }

    /// The session ended: every proxy waits for the next one.
    pub fn detach(&self) {
        let mut inner = self.lock();
        inner.session = None;
        for e in inner.entries.values_mut() {
            (e.phase, e.remote_addr) = (Phase::WaitStart, String::new());
        }
    }

    /// Makes the set what `wanted` says: removed proxies close (with their
    /// connections), changed ones close and register again, added ones
    /// register, and the rest are left alone.
    pub fn apply(&self, wanted: &[ProxyConfig]) -> Changes {
        // `enabled = false`: configured, not started.
        let wanted: Vec<&ProxyConfig> = wanted.iter().filter(|c| c.enabled()).collect();
        for c in &wanted {
            if c.transport().use_compression {
                info!(
                    proxy = %Field(c.name()),
                    "transport.useCompression is not supported yet; the proxy runs uncompressed"
                );
            }
            if c.transport().use_encryption {
                debug!(proxy = %Field(c.name()), "transport.useEncryption: the tunnel is TLS already");
            }
        }
        let mut inner = self.lock();
        let mut changes = Changes::default();
        let keep: HashMap<&str, &ProxyConfig> = wanted.iter().map(|c| (c.name(), *c)).collect();
        let gone: Vec<String> = inner
            .order
            .iter()
            .filter(|n| !keep.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            inner.close(&name);
            changes.removed.push(name);
        }
        for &cfg in &wanted {
            let name = cfg.name().to_owned();
            match inner.entries.get(&name) {
                Some(e) if e.cfg == *cfg => continue,
                Some(_) => {
                    inner.close(&name);
                    changes.changed.push(name.clone());
                }
                None => changes.added.push(name.clone()),
            }
            inner.open(cfg.clone());
        }
        inner.order = wanted.iter().map(|c| c.name().to_owned()).collect();
        changes
    }

    /// frps's answer to a registration. False when it is the refusal the
    /// proxy had before (a retry that failed again, not news).
    pub fn registered(&self, name: &str, result: Result<String, String>) -> bool {
        let mut inner = self.lock();
        let Some(e) = inner.entries.get_mut(name) else {
            return true;
        };
        match result {
            Ok(addr) => {
                (e.phase, e.err, e.remote_addr) = (Phase::Running, String::new(), addr);
                e.failed_at = None;
                true
            }
            Err(err) => {
                let news = err != e.err;
                (e.phase, e.err, e.remote_addr) = (Phase::StartError, err, String::new());
                e.failed_at = Some(Instant::now());
                news
            }
        }
    }

    /// Registers again, with the attached session, every proxy frps
    /// refused at least `after` ago; returns how many.
    pub fn retry_refused(&self, after: Duration) -> usize {
        let mut inner = self.lock();
        let Some(control) = inner.session.as_ref().map(|s| s.control.clone()) else {
            return 0;
        };
        let now = Instant::now();
        let mut n = 0;
        for e in inner.entries.values_mut() {
            let due = e
                .failed_at
                .is_some_and(|at| now.duration_since(at) >= after);
            if e.phase == Phase::StartError && due {
                // The last error stays shown until the answer comes.
                (e.phase, e.failed_at) = (Phase::WaitStart, None);
                let _ = control.send(Control::NewProxy(registration(e)));
                n += 1;
            }
        }
        n
    }

    /// Every proxy's status, in file order, then those not started.
    pub fn statuses(&self) -> Vec<ProxyStatus> {
        let inner = self.lock();
        let started = inner
            .order
            .iter()
            .filter_map(|n| inner.entries.get(n))
            .map(|e| ProxyStatus {
                name: e.cfg.name().to_owned(),
                kind: e.cfg.kind().as_str(),
                phase: e.phase,
                err: e.err.clone(),
                local_addr: e.cfg.local_addr(),
                remote_addr: e.remote_addr.clone(),
                traffic: Some(e.traffic.snapshot()),
            });
        let not_started = inner.not_started.iter().map(|n| ProxyStatus {
            name: n.name.clone(),
            kind: n.kind,
            phase: Phase::NotSupported,
            err: n.reason.clone(),
            local_addr: String::new(),
            remote_addr: String::new(),
            traffic: None,
        });
        started.chain(not_started).collect()
    }

    /// Hands a work stream to its proxy; None for a proxy we do not have.
    pub fn serve(&self, work: Tunnel, header: StartWork) -> Option<BoxFuture<'static, ()>> {
        let inner = self.lock();
        let e = inner.entries.get(&header.proxy_name)?;
        let meters = Meters::new(vec![e.traffic.clone(), self.traffic.clone()]);
        let (proxy, stop) = (e.proxy.clone(), e.stop.clone());
        drop(inner);
        Some(proxy.serve(Metered::new(work, meters), header, stop))
    }
}

impl Inner {
    /// Closes proxy `name` here and, when a session is attached, at frps.
    fn close(&mut self, name: &str) {
        if let Some(e) = self.entries.remove(name) {
            e.stop.cancel();
            if let Some(s) = &self.session {
                let _ = s.control.send(Control::CloseProxy {
                    name: name.to_owned(),
                });
            }
        }
    }

    /// Adds a proxy and, when a session is attached, registers it.
    fn open(&mut self, cfg: ProxyConfig) {
        let (agreed, stop) = match &self.session {
            Some(s) => (s.agreed, s.close.child_token()),
            // Rebuilt with the session's figures when one attaches.
            None => (Agreed::default(), CancellationToken::new()),
        };
        let mut entry = Entry {
            proxy: build(&cfg, agreed, (&self.user, &self.p2p)),
            cfg,
            traffic: Arc::new(Traffic::default()),
            stop,
            phase: Phase::WaitStart,
            err: String::new(),
            remote_addr: String::new(),
            failed_at: None,
        };
        if let Some(s) = &self.session {
            match unsendable(s.agreed, &entry) {
                Some(why) => (entry.phase, entry.err) = (Phase::StartError, why),
                None => {
                    let _ = s.control.send(Control::NewProxy(registration(&entry)));
                }
            }
        }
        self.entries.insert(entry.cfg.name().to_owned(), entry);
    }
}

/// Why proxy `e` cannot be registered with this server, if it cannot: a
/// kind the server lacks, or a registration one message cannot carry
/// (frps would never see it). Said once, as the proxy's start error.
fn unsendable(agreed: Agreed, e: &Entry) -> Option<String> {
    let why = agreed
        .kinds
        .refuses(e.cfg.kind())
        .or_else(|| oversized(agreed, e))?;
    warn!(proxy = %Field(e.cfg.name()), "proxy not started: {why}");
    Some(why)
}

/// Why the proxy's registration cannot be sent: more than one message holds.
fn oversized(agreed: Agreed, e: &Entry) -> Option<String> {
    let reg = Control::NewProxy(registration(e));
    let len = wire::message::Frame::encode_for(&reg, agreed.kinds.version)
        .map_or(usize::MAX, |b| b.len());
    (len > wire::codec::MAX_FRAME_LEN).then(|| {
        format!(
            "its registration is {len} bytes, more than the {} one message carries: \
             fewer customDomains, locations, headers, allowUsers, annotations \
             or metadatas",
            wire::codec::MAX_FRAME_LEN
        )
    })
}

/// The proxies of `config` that no server could start because their
/// registration is too large, with why, in file order: what `frpc verify`
/// reports before they fail at start.
pub fn oversized_registrations(config: &ClientConfig) -> Vec<(String, String)> {
    let m = ProxyManager::new(config);
    let inner = m.lock();
    let agreed = Agreed::default();
    let oversized = |name: &String| {
        let e = inner.entries.get(name)?;
        oversized(agreed, e).map(|why| (name.clone(), why))
    };
    inner.order.iter().filter_map(oversized).collect()
}

fn registration(e: &Entry) -> NewProxy {
    let (metadatas, annotations) = e.cfg.labels();
    let pairs = |l: &config::Labels| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    NewProxy {
        name: e.cfg.name().to_owned(),
        spec: e.proxy.spec(),
        opts: ProxyOpts {
            metas: pairs(metadatas),
            annotations: pairs(annotations),
            ..ProxyOpts::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server without a kind is not sent that kind's proxies; their
    /// status says which frps they need, and the others register.
    #[test]
    fn proxies_of_a_kind_the_server_lacks_are_not_sent() {
        let config = ClientConfig::from_toml(
            "[[proxies]]\nname = \"ssh\"\ntype = \"tcp\"\nlocalPort = 22\nremotePort = 6000\n\
             [[proxies]]\nname = \"web\"\ntype = \"http\"\nlocalPort = 80\ncustomDomains = [\"a.test\"]\n",
        )
        .expect("config");
        let m = ProxyManager::new(&config);
        let caps = wire::caps::Caps::of_peer(5, &[wire::caps::proxy(ProxyKind::Tcp)]);
        let agreed = Agreed {
            kinds: ServerKinds::of(5, &caps),
            ..Agreed::default()
        };
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let sent = m.attach(agreed, &CancellationToken::new(), tx);
        let names: Vec<&str> = sent.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ssh"]);
        let web = m
            .statuses()
            .into_iter()
            .find(|s| s.name == "web")
            .expect("web listed");
        assert_eq!(web.phase, Phase::StartError);
        assert_eq!(
            web.err,
            "frps speaks protocol 5 and serves no http proxies: upgrade frps"
        );
        // A server of version 4 has the kinds of its day, and no private
        // ones.
        let old = ServerKinds::of(4, &wire::caps::Caps::of_peer(4, &[]));
        assert!(ProxyKind::ALL[..5]
            .iter()
            .all(|k| old.refuses(*k).is_none()));
        assert!(old.refuses(ProxyKind::Stcp).is_some());
    }

    /// A registration one message cannot carry is not sent: the proxy's
    /// status says why, and the others register.
    #[test]
    fn a_registration_too_large_for_one_message_is_a_start_error() {
        let domains: Vec<String> = (0..2000)
            .map(|i| format!("\"host-{i}.example.test\""))
            .collect();
        let config = ClientConfig::from_toml(&format!(
            "[[proxies]]\nname = \"ssh\"\ntype = \"tcp\"\nlocalPort = 22\nremotePort = 6000\n\
             [[proxies]]\nname = \"web\"\ntype = \"http\"\nlocalPort = 80\ncustomDomains = [{}]\n",
            domains.join(",")
        ))
        .expect("config");
        let m = ProxyManager::new(&config);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let sent = m.attach(Agreed::default(), &CancellationToken::new(), tx);
        let names: Vec<&str> = sent.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ssh"]);
        let web = m
            .statuses()
            .into_iter()
            .find(|s| s.name == "web")
            .expect("web listed");
        assert_eq!(web.phase, Phase::StartError);
        assert!(
            web.err.contains("more than the 16384 one message carries"),
            "{}",
            web.err
        );
    }
}
