//! Visitors: the other end of a private proxy (`stcp`, `sudp`). Each one
//! listens on this machine from the start, whether or not frps is reached
//! yet; each user connection (stcp) or datagram flow (sudp) becomes a
//! stream this client opens on its own connection to frps ([`Link`]),
//! whose head ([`wire::message::Visit`]) names the proxy and proves its
//! secret over the session's nonce. One module per kind; [`run`] is the
//! one match on the kind.
//!
//! Reloads change visitors as they change proxies: an unchanged visitor
//! keeps its listener and its connections.

mod stcp;
mod sudp;
mod xtcp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use config::VisitorConfig;
use mux::MuxStream;
use net::framed;
use net::logging::{Escaped, Field};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};
use wire::message::{Frame, OpenVisit, Visit, NONCE_LEN};

use crate::proxy::{Changes, Phase, ProxyStatus};

/// How long frps has to answer a visit.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The session visitors open their streams on.
pub(crate) struct Link {
    pub opener: mux::Opener,
    pub nonce: [u8; NONCE_LEN],
    /// frps takes visitor streams (capability `visitors`).
    pub served: bool,
    pub version: u16,
}

/// What every visitor shares: the current link and this client's user.
#[derive(Clone)]
struct Shared {
    link: watch::Receiver<Option<Arc<Link>>>,
    user: String,
    /// frpc's `udpPacketSize`: larger datagrams are dropped at the visitor.
    udp_packet_size: usize,
    /// xtcp: `natHoleStunServer` and the P2P session's liveness.
    stun_server: String,
    liveness: crate::p2p::quic::Liveness,
    /// The visitors that take connections handed to them (an xtcp
    /// visitor's `fallbackTo`), by name.
    handoffs: Handoffs,
}

/// Where each running stcp visitor takes handed-over connections.
type Handoffs = Arc<Mutex<HashMap<String, tokio::sync::mpsc::Sender<tokio::net::TcpStream>>>>;

/// Connections waiting for the visitor they were handed to.
const HANDOFF_QUEUE: usize = 64;

impl Shared {
    /// Hands `tcp` to the visitor `name`; false when it is not running or
    /// has [`HANDOFF_QUEUE`] connections waiting already.
    fn hand_over(&self, name: &str, tcp: tokio::net::TcpStream) -> bool {
        let to = self
            .handoffs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        to.is_some_and(|tx| tx.try_send(tcp).is_ok())
    }

    /// The connections handed to visitor `name`, from now until it stops.
    fn take_handoffs(&self, name: &str) -> HandoffGuard {
        let (tx, rx) = tokio::sync::mpsc::channel(HANDOFF_QUEUE);
        self.handoffs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), tx);
        HandoffGuard {
            rx,
            name: name.to_owned(),
            handoffs: self.handoffs.clone(),
        }
    }
}

/// A visitor's handed-over connections; it stops taking them when dropped.
struct HandoffGuard {
    rx: tokio::sync::mpsc::Receiver<tokio::net::TcpStream>,
    name: String,
    handoffs: Handoffs,
}

impl Drop for HandoffGuard {
    fn drop(&mut self) {
        self.handoffs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

impl Shared {
    /// A stream to the proxy `cfg` names, with frps's yes.
    async fn open(&self, cfg: &VisitorConfig) -> Result<MuxStream> {
        // A connection that comes while frpc (re)connects waits for the
        // session, as long as an answer may take.
        let mut rx = self.link.clone();
        let link = match tokio::time::timeout(ANSWER_TIMEOUT, rx.wait_for(Option::is_some)).await {
            Ok(Ok(l)) => l.clone(),
            _ => None,
        };
        let Some(link) = link else {
            bail!("not connected to frps");
        };
        if !link.served {
            bail!(
                "frps speaks protocol {} and serves no visitors: upgrade frps",
                link.version
            );
        }
        let mut stream = link.opener.open().await?;
        let server_user = cfg.target_user(&self.user).to_owned();
        let verifier = wire::auth::visit_verifier(&cfg.secret_key, &server_user, &cfg.server_name);
        let proof = wire::auth::visit_proof(&verifier, &link.nonce, stream.id(), &self.user);
        let open = Visit::Open(OpenVisit {
            server_user,
            server_name: cfg.server_name.clone(),
            kind: cfg.kind(),
            proof,
        });
        framed::write_message(&mut stream, &open).await?;
        stream.flush().await?;
        let answer = tokio::time::timeout(
            ANSWER_TIMEOUT,
            framed::read_message::<Visit, _>(&mut stream),
        )
        .await
        .map_err(|_| anyhow!("frps did not answer within {ANSWER_TIMEOUT:?}"))??;
        match answer {
            Some(Visit::Answer(a)) => match a.result {
                Ok(()) => Ok(stream),
                Err(e) => bail!("frps refused: {}", Escaped(&e.to_string())),
            },
            Some(other) => bail!("protocol error: {} from frps", other.kind()),
            None => bail!("frps closed the stream"),
        }
    }
}

/// A visitor's last warning: each local user connection that fails
/// would repeat it, so a repeat goes to debug and only a change is warned
/// (any local user can make a visitor fail as often as it connects).
#[derive(Default)]
pub(super) struct Said(std::sync::Mutex<String>);

impl Said {
    pub fn warn(&self, what: String) {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if *last == what {
            tracing::debug!("{what} (again)");
        } else {
            warn!("{what}");
            *last = what;
        }
    }

    /// The next failure is news again.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// One running visitor's state, for the statuses.
#[derive(Default)]
struct State {
    phase: Option<Phase>,
    err: String,
}

struct Entry {
    cfg: VisitorConfig,
    stop: CancellationToken,
    state: Arc<Mutex<State>>,
}

/// The client's visitors, kept across sessions and reloads.
pub(crate) struct VisitorManager {
    link: watch::Sender<Option<Arc<Link>>>,
    user: String,
    udp_packet_size: usize,
    stun_server: String,
    liveness: crate::p2p::quic::Liveness,
    handoffs: Handoffs,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    order: Vec<String>,
    /// Set once the client runs: visitors start then (they need the
    /// runtime), and on every reload after.
    running: Option<(tokio::runtime::Handle, CancellationToken)>,
    wanted: Vec<VisitorConfig>,
}

impl VisitorManager {
    pub fn new(config: &config::ClientConfig) -> Self {
        let m = VisitorManager {
            link: watch::channel(None).0,
            user: config.user.clone(),
            udp_packet_size: config.udp_packet_size,
            stun_server: config.nat_hole_stun_server.clone(),
            liveness: crate::p2p::quic::Liveness::of(config),
            handoffs: Arc::default(),
            inner: Mutex::new(Inner::default()),
        };
        m.lock().wanted = config.visitors.clone();
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the configured visitors; they end with `shutdown`.
    pub fn start(&self, shutdown: &CancellationToken) {
        let wanted = {
            let mut inner = self.lock();
            inner.running = Some((tokio::runtime::Handle::current(), shutdown.clone()));
            std::mem::take(&mut inner.wanted)
        };
        self.apply(&wanted);
    }

    /// A session is up: visitors open their streams on it.
    pub fn attach(&self, link: Link) {
        self.link.send_replace(Some(Arc::new(link)));
    }

    pub fn detach(&self) {
        self.link.send_replace(None);
    }

    /// Makes the set what `wanted` says; unchanged visitors are left alone.
    pub fn apply(&self, wanted: &[VisitorConfig]) -> Changes {
        let wanted: Vec<&VisitorConfig> = wanted.iter().filter(|v| v.enabled).collect();
        let mut inner = self.lock();
        let mut changes = Changes::default();
        let Some((handle, shutdown)) = inner.running.clone() else {
            inner.wanted = wanted.into_iter().cloned().collect();
            return changes;
        };
        let keep: HashMap<&str, &VisitorConfig> =
            wanted.iter().map(|v| (v.name.as_str(), *v)).collect();
        let gone: Vec<String> = inner
            .order
            .iter()
            .filter(|n| !keep.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(e) = inner.entries.remove(&name) {
                e.stop.cancel();
            }
            changes.removed.push(name);
        }
        for &cfg in &wanted {
            match inner.entries.get(&cfg.name) {
                Some(e) if e.cfg == *cfg => continue,
                Some(_) => {
                    if let Some(e) = inner.entries.remove(&cfg.name) {
                        e.stop.cancel();
                    }
                    changes.changed.push(cfg.name.clone());
                }
                None => changes.added.push(cfg.name.clone()),
            }
            let entry = Entry {
                cfg: cfg.clone(),
                stop: shutdown.child_token(),
                state: Arc::default(),
            };
            let shared = Shared {
                link: self.link.subscribe(),
                user: self.user.clone(),
                udp_packet_size: self.udp_packet_size,
                stun_server: self.stun_server.clone(),
                liveness: self.liveness,
                handoffs: self.handoffs.clone(),
            };
            let span = info_span!("visitor", name = %Field(&cfg.name), kind = %cfg.kind());
            let task = run(cfg.clone(), shared, entry.state.clone(), entry.stop.clone());
            handle.spawn(task.instrument(span));
            inner.entries.insert(cfg.name.clone(), entry);
        }
        inner.order = wanted.iter().map(|v| v.name.clone()).collect();
        changes
    }

    /// Every visitor's status, in file order.
    pub fn statuses(&self) -> Vec<ProxyStatus> {
        let inner = self.lock();
        let connected = self.link.borrow().is_some();
        inner
            .order
            .iter()
            .filter_map(|n| inner.entries.get(n))
            .map(|e| {
                let state = e.state.lock().unwrap_or_else(|p| p.into_inner());
                let phase = match state.phase {
                    Some(Phase::Running) if !connected => Phase::WaitStart,
                    Some(p) => p,
                    None => Phase::WaitStart,
                };
                ProxyStatus {
                    name: e.cfg.name.clone(),
                    kind: e.cfg.kind().as_str(),
                    phase,
                    err: state.err.clone(),
                    local_addr: e.cfg.bind().unwrap_or_default(),
                    remote_addr: match e.cfg.target_user(&self.user) {
                        "" => e.cfg.server_name.clone(),
                        user => format!("{user}.{}", e.cfg.server_name),
                    },
                    traffic: None,
                }
            })
            .collect()
    }
}

/// Runs one visitor until `stop`: the one match on the kind.
async fn run(
    cfg: VisitorConfig,
    shared: Shared,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    let set = |phase, err: String| {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        (s.phase, s.err) = (Some(phase), err);
    };
    let result = match cfg.kind() {
        wire::message::ProxyKind::Sudp => sudp::run(&cfg, &shared, &set, &stop).await,
        wire::message::ProxyKind::Xtcp => xtcp::run(&cfg, &shared, &set, &stop).await,
        _ => stcp::run(&cfg, &shared, &set, &stop).await,
    };
    if let Err(e) = result {
        warn!("visitor not started: {e:#}");
        set(Phase::StartError, format!("{e:#}"));
        return;
    }
    info!("visitor stopped");
}
