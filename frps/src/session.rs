//! A logged-in client: its proxies, registrations and heartbeats, until
//! the client goes away or a reconnect replaces it.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use mux::{self, MuxStream};
use net::activity::Activity;
use net::framed::{self, ControlReader, ControlStream, ControlWriter};
use net::logging::Field;
use net::stats::{Meters, Traffic};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use wire::codec::CodecError;
use wire::heartbeat::{Beat, Pacer};
use wire::message::{Control, Frame, NewProxy, NewProxyResp, Pong, ProxyError};

use crate::login::Client;
use crate::pool::{Pool, WorkQueue, WorkSource};
use crate::proxy::{self, Proxy, ProxyCtx, StreamBudget};
use crate::records::{self, Online};
use crate::registry::{SessionHandle, SessionKey};
use crate::Server;

/// How long a new login waits for the session it replaces to close its
/// proxies (and free their ports) before going on without it.
const REPLACE_WAIT: Duration = Duration::from_secs(5);

/// How long the end of a client's connection waits for the multiplexer to
/// say why it ended: it has, or is about to, once its streams report it.
const MUX_END_WAIT: Duration = Duration::from_secs(1);

/// How long an answer waits for a client that reads nothing, when the
/// heartbeat check is off (frp's default heartbeatTimeout).
const ANSWER_PATIENCE: Duration = Duration::from_secs(90);

/// A logged-in client: its proxies and what they share, served by
/// [`ClientSession::run`] until the client goes away.
/// Refusals a session remembers to log repeats quietly; beyond, it
/// forgets them all (and logs the next of each again).
const MAX_REMEMBERED_REFUSALS: usize = 10_000;

struct ClientSession {
    server: Arc<Server>,
    client: Client,
    key: SessionKey,
    id: u64,
    mux: mux::Session,
    writer: ControlWriter,
    work: WorkSource,
    proxies: HashMap<String, Proxy>,
    /// Shared by all proxies of the client (`transport.maxStreamsPerClient`).
    budget: StreamBudget,
    traffic: Arc<Traffic>,
    close: CancellationToken,
    tasks: TaskTracker,
    /// Heartbeats received (for the dashboard and `/metrics`).
    beats: Arc<AtomicU64>,
    /// The client's round trip as its last beat reported it.
    rtt_us: Arc<AtomicU64>,
    /// This login replaced an earlier session of the same client.
    replaced: bool,
    /// The last refusal of each proxy name, so frpc's retries of the same
    /// refusal (every 30 s) are logged once ([`MAX_REMEMBERED_REFUSALS`]).
    refused: HashMap<String, String>,
    /// Where the streams a visitor client opens go (None for a client
    /// without visitors, whose extra streams are refused).
    visitors: Option<crate::visit::Visitors>,
    /// Fires `SessionHandle::ended` when the session is dropped, which
    /// `end` does last (and an aborted session too).
    _ended: DropGuard,
}

pub(crate) async fn run(
    server: Arc<Server>,
    mux: mux::Session,
    ctrl: ControlStream<MuxStream>,
    client: Client,
    (activity, peer): (Arc<Activity>, std::net::SocketAddr),
    close: CancellationToken,
) -> Result<()> {
    let (reader, writer) = framed::split_control(ctrl);
    let mut session = ClientSession::register(server, mux, writer, client, close).await;
    session.visitors = Some(crate::visit::Visitors {
        server: session.server.clone(),
        user: session.client.user.clone(),
        nonce: session.client.nonce,
        peer,
        budget: session.budget.clone(),
        stop: session.close.clone(),
        tasks: session.tasks.clone(),
        last_refusal: Arc::default(),
    });
    session.server.records.client_online(
        &session.key,
        Online {
            session: session.id,
            hostname: session.client.hostname.clone(),
            client_id: session.client.client_id.clone(),
            metas: session.client.metas.clone(),
            protocol: session.client.version,
            addr: peer,
            activity: activity.clone(),
            beats: session.beats.clone(),
            rtt_us: session.rtt_us.clone(),
            close: session.close.clone(),
        },
        session.replaced,
    );
    let pacer = Pacer::new(None, session.server.config.heartbeat_timeout());
    let result = session.control_loop(reader, &activity, pacer).await;
    session.end(result).await;
    Ok(())
}

impl ClientSession {
    /// Enters the session in the registry, retiring the one it replaces.
    async fn register(
        server: Arc<Server>,
        mux: mux::Session,
        writer: ControlWriter,
        client: Client,
        close: CancellationToken,
    ) -> ClientSession {
        let id = server.registry.next_session_id();
        let tasks = TaskTracker::new();
        let ended = CancellationToken::new();
        let traffic = Arc::new(Traffic::default());
        // Non-multiplexed clients send work connections; they queue here.
        let queue = (!client.tcp_mux).then(|| {
            Arc::new(WorkQueue::new(
                server.config.transport.max_pool_count.max(1),
                server.config.user_conn_timeout(),
            ))
        });
        let handle = SessionHandle {
            id,
            close: close.clone(),
            ended: ended.clone(),
            work: queue.clone(),
            traffic: traffic.clone(),
        };
        // A client that reconnects with its run id replaces its old session
        // at once, and its ports are free again before it re-registers
        // them. Sessions are keyed by user and run id: nobody replaces
        // another user's session.
        let key = (client.user.clone(), client.run_id.clone());
        let old = server.registry.insert_session(&key, handle);
        let replaced = old.is_some();
        if let Some(old) = old {
            info!("replacing the previous session of this client");
            old.close.cancel();
            // Until the old session has released its names and ports, a
            // re-registration would find them taken.
            if tokio::time::timeout(REPLACE_WAIT, old.ended.cancelled())
                .await
                .is_err()
            {
                warn!("the previous session did not close within {REPLACE_WAIT:?}; going on");
            }
        }
        info!("client logged in");
        let work = match queue {
            None => WorkSource::Mux(mux.opener.clone()),
            Some(q) => WorkSource::Pool(Arc::new(Pool::new(q, writer.clone(), close.clone()))),
        };
        // The control stream takes one of the client's streams.
        let streams = server.config.transport.max_streams_per_client;
        ClientSession {
            budget: StreamBudget::new(streams.saturating_sub(1).max(1)),
            server,
            client,
            key,
            id,
            mux,
            writer,
            work,
            proxies: HashMap::new(),
            traffic,
            close,
            tasks,
            beats: Arc::default(),
            rtt_us: Arc::default(),
            replaced,
            refused: HashMap::new(),
            visitors: None,
            _ended: ended.drop_guard(),
        }
    }

    /// Closes every proxy and waits for their connections to end.
    async fn end(mut self, result: Result<()>) {
        self.close.cancel();
        for (name, proxy) in self.proxies.drain() {
            proxy.stop();
            self.server
                .records
                .proxy_closed(&self.client.user, &name, self.id);
        }
        self.server.records.client_offline(&self.key, self.id);
        self.tasks.close();
        self.tasks.wait().await;
        self.server.registry.remove_session(&self.key, self.id);
        match &result {
            Ok(()) => info!("client disconnected; its proxies are closed"),
            Err(e) => warn!("client session ended: {e:#}; its proxies are closed"),
        }
    }

    async fn control_loop(
        &mut self,
        mut reader: ControlReader<MuxStream>,
        activity: &Activity,
        mut pacer: Pacer,
    ) -> Result<()> {
        loop {
            // Far future when the check is off: the branch then never fires.
            let wake = pacer
                .next_wake(activity.last_recv())
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400 * 365));
            tokio::select! {
                _ = self.close.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(wake) => {
                    if let Beat::Dead(silence) = pacer.poll(tokio::time::Instant::now(), activity.last_recv()) {
                        bail!(
                            "no data from the client for {:.1}s (heartbeatTimeout {}s): declared dead",
                            silence.as_secs_f64(),
                            pacer.timeout().map_or(0, |t| t.as_secs())
                        );
                    }
                }
                msg = reader.next() => match msg {
                    None => return self.mux_end().await,
                    Some(Err(CodecError::Io(e))) if mux::is_session_gone(&e) => {
                        return self.mux_end().await
                    }
                    Some(Err(e)) => return Err(anyhow!(e).context("control stream")),
                    Some(Ok(msg)) => self.on_message(msg).await?,
                },
                stream = self.mux.incoming.recv() => match stream {
                    // After the control stream, a client opens only
                    // visitor streams, and only when it says it has them.
                    Some(stream) => match &self.visitors {
                        Some(v) if self.client.caps.has(wire::caps::VISITORS) => v.take(stream),
                        _ => drop(stream),
                    },
                    None => return self.mux_end().await,
                },
            }
        }
    }

    /// Why the client's connection ended, once its multiplexed session
    /// (or the control stream with it) has: Ok when the client said
    /// goodbye, an error when the connection broke off (a killed frpc, a
    /// reset) — the same whichever of the two ends the loop saw first.
    async fn mux_end(&mut self) -> Result<()> {
        let ended = tokio::time::timeout(MUX_END_WAIT, &mut self.mux.driver).await;
        if self.mux.opener.peer_said_goodbye() {
            return Ok(());
        }
        match ended {
            // TLS's way of saying the same as a bare close.
            Ok(Ok(Err(mux::MuxError::Io(e)))) if e.kind() == ErrorKind::UnexpectedEof => {
                bail!("connection lost: closed without a goodbye")
            }
            Ok(Ok(Err(e))) => Err(anyhow!(e).context("connection lost")),
            Ok(_) => bail!("connection lost: closed without a goodbye"),
            // Only the control stream closed; the session is ended here.
            Err(_) => Ok(()),
        }
    }

    async fn on_message(&mut self, msg: Control) -> Result<()> {
        match msg {
            Control::NewProxy(req) => {
                let resp = self.new_proxy(req).await;
                self.answer(Control::NewProxyResp(resp)).await?;
            }
            Control::CloseProxy { name } => {
                if let Some(proxy) = self.proxies.remove(&name) {
                    // A registration right behind this (a reload changing
                    // the proxy) finds its port and names free.
                    // Its handle in the table goes first: the proxy is
                    // closed once nothing holds it.
                    self.server
                        .records
                        .proxy_closed(&self.client.user, &name, self.id);
                    proxy.close().await;
                    info!(proxy = %Field(&name), "proxy closed by client");
                }
            }
            Control::Ping(ping) => {
                records::beat(&self.beats, &self.rtt_us, ping.rtt_us);
                debug!(
                    seq = ping.seq,
                    proxies = ping.proxies,
                    bytes_in = ping.bytes_in,
                    bytes_out = ping.bytes_out,
                    "ping"
                );
                // Never wait here: if the link is stuck, the timeout branch
                // must still run.
                if self
                    .writer
                    .try_send(Control::Pong(Pong { seq: ping.seq }))
                    .is_err()
                {
                    debug!("control queue full; pong dropped");
                }
            }
            other => bail!("unexpected {} on the control stream", other.kind()),
        }
        Ok(())
    }

    /// Waits for room to answer: a client registering hundreds of proxies
    /// at once is busy, not broken, and its next request waits behind the
    /// answer. A client that stops reading altogether is ended once it has
    /// taken no answer for heartbeatTimeout, the same silence that ends a
    /// client sending nothing.
    async fn answer(&self, msg: Control) -> Result<()> {
        let patience = self
            .server
            .config
            .heartbeat_timeout()
            .unwrap_or(ANSWER_PATIENCE);
        match tokio::time::timeout(patience, self.writer.send(msg)).await {
            Ok(sent) => sent.context("control stream"),
            Err(_) => bail!(
                "the client took no answer on its control stream for {}s: ended",
                patience.as_secs()
            ),
        }
    }

    /// Why `req` is refused before its name is looked at: the client's
    /// limits, or labels beyond their bounds.
    fn refusal(&self, req: &NewProxy) -> Option<ProxyError> {
        let limit = self.server.live().max_ports_per_client;
        let most = self.server.config.max_proxies_per_client as usize;
        if limit > 0 && self.proxies.len() >= limit as usize {
            Some(ProxyError::TooManyPorts(limit))
        } else if most > 0 && self.proxies.len() >= most {
            Some(ProxyError::Refused(format!(
                "the client already has {most} proxies (maxProxiesPerClient on the server)"
            )))
        } else if !labels_fit(&req.opts) {
            Some(ProxyError::Refused(format!(
                "metadatas and annotations: at most {} entries of at most {} bytes each",
                wire::message::MAX_METAS,
                wire::message::MAX_META_LEN
            )))
        } else {
            None
        }
    }

    async fn new_proxy(&mut self, req: NewProxy) -> NewProxyResp {
        let name = req.name.clone();
        let kind = req.spec.kind();
        let traffic = Arc::new(Traffic::default());
        let user = self.client.user.clone();
        let result = if let Some(refused) = self.refusal(&req) {
            Err(refused)
        } else if self.proxies.contains_key(&name)
            || !self
                .server
                .records
                .claim_proxy(&self.key, self.id, &name, kind)
        {
            Err(ProxyError::DuplicateName)
        } else {
            let (held, released) = proxy::held();
            let ctx = ProxyCtx {
                server: self.server.clone(),
                name: name.clone(),
                work: self.work.clone(),
                budget: self.budget.clone(),
                meters: proxy::Metering::new(Meters::new(vec![
                    traffic.clone(),
                    self.traffic.clone(),
                ])),
                stop: self.close.child_token(),
                tasks: self.tasks.clone(),
                home: tokio::runtime::Handle::current(),
                _held: held,
            };
            let handle: crate::vhost::BackendRef = Arc::new(ctx.clone());
            match proxy::start(&req.spec, ctx, released).await {
                Ok(proxy) => {
                    let addr = proxy.endpoint.clone();
                    info!(proxy = %Field(&name), %kind, remote = %addr, "proxy started");
                    let records = &self.server.records;
                    records.proxy_started(&self.key, &req, &addr, traffic, handle);
                    self.proxies.insert(name.clone(), proxy);
                    Ok(addr)
                }
                Err(e) => {
                    drop(handle);
                    self.server.records.proxy_closed(&user, &name, self.id);
                    Err(e)
                }
            }
        };
        match &result {
            Ok(_) => {
                self.refused.remove(&name);
            }
            Err(e) => {
                let said = e.to_string();
                if self.refused.get(&name) == Some(&said) {
                    debug!(proxy = %Field(&name), %kind, "proxy rejected again: {said}");
                } else {
                    warn!(proxy = %Field(&name), %kind, "proxy rejected: {said}");
                    if self.refused.len() >= MAX_REMEMBERED_REFUSALS {
                        self.refused.clear();
                    }
                    self.refused.insert(name.clone(), said);
                }
            }
        }
        let result = result.map_err(|e| match self.server.config.detailed_errors_to_client {
            true => e,
            false => ProxyError::Refused("refused by the server (its log says why)".into()),
        });
        NewProxyResp { name, result }
    }
}

/// A proxy's metadatas and annotations are within what frps keeps (the
/// bounds of a login's metadatas).
fn labels_fit(o: &wire::message::ProxyOpts) -> bool {
    [&o.metas, &o.annotations]
        .iter()
        .all(|l| config::labels_within_bounds(l.iter().map(|(k, v)| (k, v))))
}
