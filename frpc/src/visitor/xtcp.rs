//! xtcp visitors: user connections go over a peer-to-peer QUIC session
//! with the proxy's frpc (`crate::p2p`), made on the first connection (or
//! at start with `keepTunnelOpen`) and made again after it dies. While
//! there is no session and none can be made within `fallbackTimeoutMs`
//! (or `maxRetriesAnHour` / `minRetryInterval` forbid another try), the
//! connection is handed to the visitor `fallbackTo` names (an stcp visitor
//! through frps), or closed when there is none.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use config::VisitorConfig;
use net::framed;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wire::message::{Offer, Rendezvous};

use super::Shared;
use crate::p2p::{candidates, punch, quic, TOKEN_LEN};
use crate::proxy::Phase;

/// The rendezvous answer, after the offer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// The QUIC handshake, after the punch got through.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(5);

/// A live session and what each stream must start with.
#[derive(Clone)]
struct Session {
    conn: quinn::Connection,
    _ep: quinn::Endpoint,
    token: [u8; TOKEN_LEN],
}

struct Xtcp {
    cfg: VisitorConfig,
    shared: Shared,
    session: Mutex<Option<Session>>,
    /// Warnings of failed connections, said once until they change.
    said: super::Said,
    /// When sessions were tried, for `maxRetriesAnHour`, and when the last
    /// try failed, for `minRetryInterval`.
    tries: std::sync::Mutex<(VecDeque<Instant>, Option<Instant>)>,
}

pub(super) async fn run(
    cfg: &VisitorConfig,
    shared: &Shared,
    set: &impl Fn(Phase, String),
    stop: &CancellationToken,
) -> Result<()> {
    let me = Arc::new(Xtcp {
        cfg: cfg.clone(),
        shared: shared.clone(),
        session: Mutex::new(None),
        said: super::Said::default(),
        tries: std::sync::Mutex::new((VecDeque::new(), None)),
    });
    let listener = match cfg.bind() {
        Some(addr) => Some(
            TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        ),
        None => None,
    };
    info!(addr = ?cfg.bind(), "xtcp visitor listening");
    set(Phase::Running, String::new());
    if cfg.xtcp().keep_tunnel_open {
        tokio::spawn(keep_open(me.clone(), stop.clone()));
    }
    let Some(listener) = listener else {
        stop.cancelled().await;
        return Ok(());
    };
    loop {
        let (tcp, from) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (me, stop) = (me.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = me.handle(tcp) => {}
            }
            debug!(%from, "visitor connection closed");
        });
    }
}

/// `keepTunnelOpen`: a session is made at start and again whenever it
/// dies, within the retry limits.
async fn keep_open(me: Arc<Xtcp>, stop: CancellationToken) {
    loop {
        let live = me.session().await;
        let wait = match live {
            Some(s) => tokio::select! {
                _ = stop.cancelled() => return,
                _ = s.conn.closed() => Duration::ZERO,
            },
            None => Duration::from_secs(me.cfg.xtcp().min_retry_interval.max(1)),
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Xtcp {
    async fn handle(&self, tcp: TcpStream) {
        match self.session().await {
            Some(s) => {
                if let Err(e) = carry(&s, tcp).await {
                    debug!("P2P stream ended: {e:#}");
                }
            }
            None => self.fall_back(tcp).await,
        }
    }

    async fn fall_back(&self, tcp: TcpStream) {
        let to = &self.cfg.xtcp().fallback_to;
        if to.is_empty() {
            self.said
                .warn("no P2P session and no fallbackTo: connection closed".into());
            return;
        }
        if !self.shared.hand_over(to, tcp) {
            let to = net::logging::Escaped(to);
            self.said.warn(format!(
                "the fallbackTo visitor {to} is not running or busy: connection closed"
            ));
        } else {
            debug!(fallback = %to, "connection handed to the fallback visitor");
        }
    }

    /// The live session, or a new one when the limits allow a try.
    async fn session(&self) -> Option<Session> {
        let mut current = self.session.lock().await;
        if let Some(s) = current.as_ref() {
            if s.conn.close_reason().is_none() {
                return Some(s.clone());
            }
            *current = None;
        }
        if !self.may_try() {
            return None;
        }
        match self.establish().await {
            Ok(s) => {
                watch(s.conn.clone());
                *current = Some(s.clone());
                Some(s)
            }
            Err(e) => {
                warn!("P2P session not made: {e:#}");
                self.lock_tries().1 = Some(Instant::now());
                None
            }
        }
    }

    fn lock_tries(&self) -> std::sync::MutexGuard<'_, (VecDeque<Instant>, Option<Instant>)> {
        self.tries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `maxRetriesAnHour` tries per hour, none within `minRetryInterval`
    /// seconds of a failed one.
    fn may_try(&self) -> bool {
        let x = self.cfg.xtcp();
        let now = Instant::now();
        let mut tries = self.lock_tries();
        let hour = Duration::from_secs(3600);
        while tries
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) >= hour)
        {
            tries.0.pop_front();
        }
        let rested = tries
            .1
            .is_none_or(|f| now.duration_since(f) >= Duration::from_secs(x.min_retry_interval));
        if tries.0.len() >= x.max_retries_an_hour as usize || !rested {
            debug!("P2P retry limits: not trying now");
            return false;
        }
        tries.0.push_back(now);
        true
    }

    /// Rendezvous through frps, punch, QUIC.
    async fn establish(&self) -> Result<Session> {
        let x = self.cfg.xtcp();
        // Candidates first: without them there is nothing to ask the
        // proxy's frpc for.
        let sock = UdpSocket::bind(("0.0.0.0", 0)).await?;
        let assisted = !x.nat_traversal.disable_assisted_addrs;
        let ours = candidates::gather(&sock, &self.shared.stun_server, assisted).await?;
        let mut rendezvous = self.shared.open(&self.cfg).await?;
        let token: [u8; TOKEN_LEN] = rand::random();
        let offer = Offer {
            candidates: ours,
            token,
            timeout_ms: x.fallback_timeout_ms,
        };
        framed::write_message(&mut rendezvous, &Rendezvous::Offer(offer)).await?;
        rendezvous.flush().await?;
        let answer = tokio::time::timeout(ANSWER_WAIT, framed::read_message(&mut rendezvous))
            .await
            .context("no rendezvous answer from the proxy's frpc")??;
        let (theirs, fingerprint) = match answer {
            Some(Rendezvous::Answer(a)) => a
                .result
                .map_err(|e| anyhow::anyhow!("the proxy's frpc: {}", net::logging::Escaped(&e)))?,
            other => bail!("expected the rendezvous answer, got {other:?}"),
        };
        if theirs.len() > wire::message::MAX_CANDIDATES {
            bail!("the proxy's frpc sent too many candidates");
        }
        let wait = Duration::from_millis(x.fallback_timeout_ms.into());
        let peer = punch::punch(&sock, &theirs, &token, Instant::now() + wait).await?;
        drop(rendezvous);
        let liveness = self.shared.liveness;
        let (ep, conn) = tokio::time::timeout(
            HANDSHAKE_WAIT,
            quic::connect(sock, peer, &fingerprint, liveness),
        )
        .await
        .context("QUIC handshake timed out")??;
        info!(%peer, "P2P session up");
        Ok(Session {
            conn,
            _ep: ep,
            token,
        })
    }
}

/// Logs the session's end, when the path dies or the peer closes it.
fn watch(conn: quinn::Connection) {
    tokio::spawn(async move {
        let why = conn.closed().await;
        warn!("P2P session lost: {why}");
    });
}

async fn carry(s: &Session, mut tcp: TcpStream) -> Result<()> {
    let (mut send, recv) = s.conn.open_bi().await?;
    send.write_all(&s.token).await?;
    tcp.set_nodelay(true).ok();
    let mut peer = tokio::io::join(recv, send);
    net::relay::relay(&mut tcp, &mut peer).await?;
    Ok(())
}
