//! `type = "udp"`: one work stream carries all datagrams of the proxy, each
//! framed with the user's address (`wire::udp`). Every user address gets a
//! socket of its own towards the local service (a *mapping*), so the local
//! service sees one peer per user and its answers go back to the right one.
//!
//! Bounds: at most `udpMaxMappings` mappings (datagrams from further users
//! are dropped and counted until one expires); a mapping expires after
//! `udpIdleTimeout` without a datagram either way; answers wait in a queue
//! of [`REPLY_QUEUE`] datagrams and are dropped (and counted) when the
//! tunnel is slower than that.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use config::{SudpProxy, UdpProxy};
use futures::future::BoxFuture;
use futures::FutureExt;
use net::logging::Field;
use net::stats::{Metered, Meters, OpenGuard};
use net::tunnel::Tunnel;
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};
use wire::message::{ProxySpec, StartWork, UdpSpec};
use wire::udp::{self, Datagram};

use super::{Agreed, ClientProxy};

/// Answers from the local service waiting for the tunnel.
const REPLY_QUEUE: usize = 256;

/// Answers written to the tunnel together, up to this many bytes.
const BATCH: usize = 64 * 1024;

/// A udp proxy, or an sudp one (the same work streams: one per visitor).
pub(super) struct Udp {
    name: String,
    spec: ProxySpec,
    local: String,
    max_mappings: usize,
    idle: Duration,
    max: usize,
}

impl Udp {
    pub fn new(cfg: &UdpProxy, agreed: Agreed) -> Self {
        let spec = ProxySpec::Udp(UdpSpec {
            remote_port: cfg.remote_port,
        });
        let (mappings, idle) = (cfg.udp_max_mappings, cfg.idle_timeout());
        Udp::of(&cfg.name, cfg.local_addr(), spec, (mappings, idle), agreed)
    }

    /// `type = "sudp"`: the owner's side, with the spec frps is sent.
    pub fn private(cfg: &SudpProxy, spec: ProxySpec, agreed: Agreed) -> Self {
        let idle = Duration::from_secs(cfg.udp_idle_timeout);
        let limits = (cfg.udp_max_mappings, idle);
        Udp::of(&cfg.name, cfg.local_addr(), spec, limits, agreed)
    }

    fn of(
        name: &str,
        local: String,
        spec: ProxySpec,
        (max_mappings, idle): (usize, Duration),
        agreed: Agreed,
    ) -> Self {
        Udp {
            name: name.to_owned(),
            spec,
            local,
            max_mappings,
            idle,
            max: agreed.udp_packet_size,
        }
    }
}

impl ClientProxy for Udp {
    fn spec(&self) -> ProxySpec {
        self.spec.clone()
    }

    fn serve(
        self: Arc<Self>,
        work: Metered<Tunnel>,
        _header: StartWork,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let span = info_span!("udp", proxy = %Field(&self.name));
        // Counted by datagram payload, and a connection per user address
        // (its mapping), not per work stream.
        let (work, meters, _) = work.into_parts();
        async move {
            match self.run(work, meters, stop).await {
                Ok(()) => debug!("udp stream ended"),
                Err(e) => debug!("udp stream ended: {e}"),
            }
        }
        .instrument(span)
        .boxed()
    }
}

/// One user address's socket towards the local service.
struct Mapping {
    sock: Arc<UdpSocket>,
    generation: u64,
    /// Milliseconds since `Forwarder::epoch` of the last datagram either way.
    last: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
    _open: OpenGuard,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The state of one UDP work stream.
struct Forwarder {
    proxy: Arc<Udp>,
    local: SocketAddr,
    meters: Meters,
    maps: HashMap<SocketAddr, Mapping>,
    generation: u64,
    epoch: Instant,
    replies: mpsc::Sender<(SocketAddr, Bytes)>,
    expired: mpsc::UnboundedSender<(SocketAddr, u64)>,
    /// When the mappings were last said to be full, and datagrams dropped
    /// for it since.
    full: (Option<Instant>, u64),
}

/// Full mappings are warned at most this often (any sender can keep them
/// full).
const FULL_WARN_EVERY: Duration = Duration::from_secs(60);

impl Udp {
    async fn run(
        self: Arc<Self>,
        work: Tunnel,
        meters: Meters,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        let local = tokio::net::lookup_host(&self.local)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{} has no address", self.local)))?;
        let (mut rd, mut wr) = tokio::io::split(work);
        let (replies, mut reply_rx) = mpsc::channel(REPLY_QUEUE);
        // At most one message per mapping, and mappings are bounded.
        let (expired, mut expired_rx) = mpsc::unbounded_channel();
        let mut f = Forwarder {
            proxy: self,
            local,
            meters,
            maps: HashMap::new(),
            generation: 0,
            epoch: Instant::now(),
            replies,
            expired,
            full: (None, 0),
        };
        let mut inbuf = BytesMut::with_capacity(8 * 1024);
        let mut out = BytesMut::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                n = rd.read_buf(&mut inbuf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                    while let Some(d) = udp::decode(&mut inbuf).map_err(std::io::Error::other)? {
                        f.deliver(d).await;
                    }
                }
                Some((peer, data)) = reply_rx.recv() => {
                    send_replies(&mut wr, &mut out, peer, data, &mut reply_rx).await?;
                }
                Some((peer, generation)) = expired_rx.recv() => {
                    if f.maps.get(&peer).is_some_and(|m| m.generation == generation) {
                        f.maps.remove(&peer);
                        debug!(%peer, "udp mapping expired");
                    }
                }
            }
        }
    }
}

/// Writes `first` and whatever other answers are already waiting.
async fn send_replies(
    wr: &mut WriteHalf<Tunnel>,
    out: &mut BytesMut,
    peer: SocketAddr,
    data: Bytes,
    queue: &mut mpsc::Receiver<(SocketAddr, Bytes)>,
) -> std::io::Result<()> {
    // Cannot fail: answers are at most udpPacketSize ≤ udp::MAX_PAYLOAD.
    let _ = udp::encode(peer, &data, out);
    while out.len() < BATCH {
        let Ok((peer, data)) = queue.try_recv() else {
            break;
        };
        let _ = udp::encode(peer, &data, out);
    }
    wr.write_all(out).await?;
    wr.flush().await?;
    out.clear();
    Ok(())
}

impl Forwarder {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A datagram from a user: sent to the local service from the user's
    /// mapping, made if needed.
    async fn deliver(&mut self, d: Datagram) {
        if d.payload.len() > self.proxy.max {
            self.meters.drop_one();
            debug!(peer = %d.peer, "datagram over udpPacketSize dropped");
            return;
        }
        if !self.maps.contains_key(&d.peer) {
            if self.maps.len() >= self.proxy.max_mappings {
                self.meters.drop_one();
                self.said_full();
                debug!(peer = %d.peer, "udpMaxMappings reached; datagram dropped");
                return;
            }
            match self.map(d.peer).await {
                Ok(m) => {
                    self.maps.insert(d.peer, m);
                }
                Err(e) => {
                    self.meters.drop_one();
                    warn!(local = %self.local, "cannot open a UDP socket to the local service: {e}");
                    return;
                }
            }
        }
        let now = self.now_ms();
        let Some(m) = self.maps.get(&d.peer) else {
            return;
        };
        m.last.store(now, Ordering::Relaxed);
        match m.sock.send(&d.payload).await {
            Ok(_) => self.meters.add(false, d.payload.len()),
            Err(e) => debug!("udp send to the local service failed: {e}"),
        }
    }

    fn said_full(&mut self) {
        let (said, dropped) = &mut self.full;
        *dropped += 1;
        if said.is_none_or(|t| t.elapsed() >= FULL_WARN_EVERY) {
            warn!(
                "udpMaxMappings ({}) reached: datagrams from new senders are dropped until a \
                 mapping expires ({dropped} dropped since the last warning)",
                self.proxy.max_mappings
            );
            (*said, *dropped) = (Some(Instant::now()), 0);
        }
    }

    async fn map(&mut self, peer: SocketAddr) -> std::io::Result<Mapping> {
        let any: SocketAddr = if self.local.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let sock = UdpSocket::bind(any).await?;
        sock.connect(self.local).await?;
        let sock = Arc::new(sock);
        self.generation += 1;
        let last = Arc::new(AtomicU64::new(self.now_ms()));
        let reader = tokio::spawn(read_answers(
            sock.clone(),
            peer,
            self.generation,
            last.clone(),
            self.epoch,
            self.proxy.clone(),
            self.meters.clone(),
            self.replies.clone(),
            self.expired.clone(),
        ));
        debug!(%peer, "udp mapping opened");
        Ok(Mapping {
            sock,
            generation: self.generation,
            last,
            reader,
            _open: self.meters.open(),
        })
    }
}

/// Answers of the local service to one user, until the mapping is idle.
#[allow(clippy::too_many_arguments)]
async fn read_answers(
    sock: Arc<UdpSocket>,
    peer: SocketAddr,
    generation: u64,
    last: Arc<AtomicU64>,
    epoch: Instant,
    proxy: Arc<Udp>,
    meters: Meters,
    replies: mpsc::Sender<(SocketAddr, Bytes)>,
    expired: mpsc::UnboundedSender<(SocketAddr, u64)>,
) {
    let idle = proxy.idle;
    let mut buf = vec![0u8; proxy.max + 1];
    loop {
        let since = epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
        if since >= idle {
            let _ = expired.send((peer, generation));
            return;
        }
        let n = match tokio::time::timeout(idle - since, sock.recv(&mut buf)).await {
            Err(_) => continue,
            // E.g. ECONNREFUSED while the local service is down: keep the
            // mapping, it may come back.
            Ok(Err(e)) => {
                debug!("udp receive from the local service failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Ok(Ok(n)) => n,
        };
        if n > proxy.max {
            meters.drop_one();
            debug!("answer over udpPacketSize dropped");
            continue;
        }
        last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        meters.add(true, n);
        if replies
            .try_send((peer, Bytes::copy_from_slice(&buf[..n])))
            .is_err()
        {
            meters.drop_one();
        }
    }
}
