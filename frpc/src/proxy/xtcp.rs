//! `type = "xtcp"`: the proxy's side of a peer-to-peer session. A work
//! stream for it is a visitor's rendezvous (frps admitted the visit): this
//! side reads the visitor's [`Offer`], gathers its own candidates, answers
//! with them and its QUIC certificate's fingerprint, punches, and then
//! serves the QUIC connection the visitor opens: each QUIC stream, after
//! the session's token, is one user connection to the local service. The
//! work stream ends once the path is up (or not): frps carries only the
//! rendezvous.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::future::BoxFuture;
use futures::FutureExt;
use net::framed;
use net::logging::Field;
use net::stats::{Metered, Meters};
use net::tunnel::Tunnel;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};
use wire::message::{ProxySpec, Rendezvous, RendezvousAnswer, StartWork};

use super::ClientProxy;
use crate::p2p::{candidates, punch, quic, TOKEN_LEN};

/// How long the visitor's offer may take to arrive.
const OFFER_WAIT: Duration = Duration::from_secs(10);
/// The visitor's QUIC handshake, after the punch got through.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(5);
/// Bound on dialing the local service.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy's side needs for its sessions.
pub(crate) struct P2pSettings {
    pub stun_server: String,
    pub liveness: quic::Liveness,
}

impl P2pSettings {
    pub fn of(config: &config::ClientConfig) -> Self {
        P2pSettings {
            stun_server: config.nat_hole_stun_server.clone(),
            liveness: quic::Liveness::of(config),
        }
    }
}

pub(super) struct Xtcp {
    name: String,
    local: String,
    spec: ProxySpec,
    assisted: bool,
    p2p: Arc<P2pSettings>,
}

impl Xtcp {
    pub fn new(cfg: &config::XtcpProxy, spec: ProxySpec, p2p: Arc<P2pSettings>) -> Self {
        Xtcp {
            name: cfg.name.clone(),
            local: cfg.local_addr(),
            spec,
            assisted: !cfg.nat_traversal.disable_assisted_addrs,
            p2p,
        }
    }
}

impl ClientProxy for Xtcp {
    fn spec(&self) -> ProxySpec {
        self.spec.clone()
    }

    fn serve(
        self: Arc<Self>,
        work: Metered<Tunnel>,
        header: StartWork,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let span = info_span!("xtcp", proxy = %Field(&self.name), visitor = %header.src);
        async move {
            if let Err(e) = self.session(work, stop).await {
                warn!("P2P session not made: {e:#}");
            }
        }
        .instrument(span)
        .boxed()
    }
}

impl Xtcp {
    /// The rendezvous on `work` (counted as the proxy's, as frps counts
    /// it), then the session; each of its streams counts as one of the
    /// proxy's connections.
    async fn session(&self, mut work: Metered<Tunnel>, stop: CancellationToken) -> Result<()> {
        let meters = work.meters().clone();
        let offer = match tokio::time::timeout(OFFER_WAIT, framed::read_message(&mut work)).await {
            Ok(Ok(Some(Rendezvous::Offer(o)))) => o,
            Ok(Ok(other)) => bail!("expected the visitor's offer, got {other:?}"),
            Ok(Err(e)) => bail!("rendezvous: {e}"),
            Err(_) => bail!("no offer from the visitor within {OFFER_WAIT:?}"),
        };
        if !offer.within_bounds() {
            bail!("the visitor's offer is beyond its bounds");
        }
        let sock = UdpSocket::bind(("0.0.0.0", 0)).await?;
        let gathered = candidates::gather(&sock, &self.p2p.stun_server, self.assisted).await;
        let tls = quic::server_tls();
        let (ours, (tls, fingerprint)) = match (gathered, tls) {
            (Ok(c), Ok(t)) => (c, t),
            (Err(e), _) => return refuse(&mut work, format!("{e:#}")).await,
            (_, Err(e)) => return refuse(&mut work, format!("QUIC certificate: {e}")).await,
        };
        let answer = RendezvousAnswer {
            result: Ok((ours.clone(), fingerprint)),
        };
        framed::write_message(&mut work, &Rendezvous::Answer(answer)).await?;
        work.flush().await?;
        let wait = Duration::from_millis(offer.timeout_ms.into());
        let deadline = tokio::time::Instant::now() + wait;
        let peer = punch::punch(&sock, &offer.candidates, &offer.token, deadline).await?;
        drop(work);
        let ep = quic::server(sock, tls, self.p2p.liveness)?;
        let conn = match tokio::time::timeout(HANDSHAKE_WAIT, ep.accept()).await {
            Ok(Some(incoming)) => incoming.await.context("QUIC handshake")?,
            _ => bail!("the visitor did not open QUIC within {HANDSHAKE_WAIT:?}"),
        };
        info!(%peer, candidates = ?ours, "P2P session up");
        self.serve_streams(conn, offer.token, meters, stop).await;
        ep.close(0u32.into(), b"done");
        Ok(())
    }

    /// Each QUIC stream that starts with the session's token is one user
    /// connection, until the connection ends.
    async fn serve_streams(
        &self,
        conn: quinn::Connection,
        token: [u8; TOKEN_LEN],
        meters: Meters,
        stop: CancellationToken,
    ) {
        loop {
            let (send, recv) = tokio::select! {
                _ = stop.cancelled() => return conn.close(0u32.into(), b"proxy closed"),
                s = conn.accept_bi() => match s {
                    Ok(s) => s,
                    Err(e) => return info!("P2P session ended: {e}"),
                },
            };
            let (local, meters, stop) = (self.local.clone(), meters.clone(), stop.clone());
            tokio::spawn(async move {
                match carry(&local, send, recv, token, &meters, &stop).await {
                    Ok(()) => debug!("P2P stream closed"),
                    Err(e) => debug!("P2P stream ended: {e:#}"),
                }
            });
        }
    }
}

async fn refuse(work: &mut Metered<Tunnel>, why: String) -> Result<()> {
    let answer = RendezvousAnswer {
        result: Err(why.clone()),
    };
    framed::write_message(work, &Rendezvous::Answer(answer)).await?;
    work.flush().await?;
    bail!("{why}")
}

/// One user connection: the token, then bytes both ways with the local
/// service.
async fn carry(
    local: &str,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    token: [u8; TOKEN_LEN],
    meters: &Meters,
    stop: &CancellationToken,
) -> Result<()> {
    let mut got = [0u8; TOKEN_LEN];
    recv.read_exact(&mut got).await?;
    if got != token {
        bail!("a stream without the session's token");
    }
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(local))
        .await
        .map_err(|_| anyhow::anyhow!("local service {local} did not answer"))?
        .with_context(|| format!("local service {local} unreachable"))?;
    tcp.set_nodelay(true).ok();
    let _open = meters.open();
    let (mut tcp, mut peer) = (tcp, tokio::io::join(recv, send));
    tokio::select! {
        _ = stop.cancelled() => {}
        r = net::relay::relay_counted(&mut tcp, &mut peer, meters) => { r?; }
    }
    Ok(())
}
