//! One client connection: login on the control stream, then serve proxy
//! registrations and heartbeats until the client goes away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use mux::{self, Mode, MuxStream};
use net::activity::{Activity, Metered};
use net::framed::{self, ControlReader, ControlStream, ControlWriter};
use net::logging::Escaped;
use net::stats::{Meters, Traffic};
use net::transport::{HandshakeError, Prefixed};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::Framed;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};
use wire::auth;
use wire::auth::Purpose;
use wire::codec::MessageCodec;
use wire::heartbeat::{self, Beat, Pacer};
use wire::message::WORK_CONN_MARKER;
use wire::message::{
    Control, Frame, Hello, Login, LoginAccepted, LoginError, LoginResp, NewProxy, NewProxyResp,
    Pong, ProxyError, PROTOCOL_VERSION,
};

use crate::pool::{Pool, WorkQueue, WorkSource};
use crate::proxy::{self, Proxy, ProxyCtx, StreamBudget};
use crate::registry::{SessionHandle, SessionKey};
use crate::Server;

/// The client as established by a successful login.
struct Client {
    user: String,
    run_id: String,
    tcp_mux: bool,
}

pub(crate) async fn handle(
    server: Arc<Server>,
    tcp: TcpStream,
    peer: SocketAddr,
    close: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let span = info_span!("client", %peer);
    async move {
        if let Err(e) = serve(server, tcp, close, permit).await {
            warn!("{e:#}");
        }
    }
    .instrument(span)
    .await
}

async fn serve(
    server: Arc<Server>,
    tcp: TcpStream,
    close: CancellationToken,
    permit: OwnedSemaphorePermit,
) -> Result<()> {
    // Control messages and interactive sessions (SSH) are latency bound.
    tcp.set_nodelay(true).ok();
    let transport = &server.config.transport;
    let timeout = heartbeat::secs(transport.heartbeat_timeout);
    net::sockopt::tune(&tcp, heartbeat::secs(transport.tcp_keepalive), timeout);
    let activity = Activity::new();
    let io = Metered::new(tcp, activity.clone());

    // TLS and login share one deadline: a connection that has not proven
    // itself by then is closed.
    let login_timeout = Duration::from_secs(transport.login_timeout);
    let deadline = tokio::time::Instant::now() + login_timeout;
    let (mut io, binding) =
        match tokio::time::timeout_at(deadline, server.transport.accept(io)).await {
            Ok(Ok(v)) => v,
            Ok(Err(HandshakeError::Silent)) => {
                debug!("connection closed without sending anything");
                return Ok(());
            }
            Ok(Err(e)) => bail!("rejected: {e}"),
            Err(_) => bail!("rejected: no handshake within {login_timeout:?}"),
        };
    // A multiplexed session starts with a yamux header (version 0); a work
    // connection of a non-multiplexed client with its marker.
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, io.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => bail!("rejected: {e}"),
        Err(_) => bail!("rejected: nothing sent within {login_timeout:?}"),
    }
    if first[0] == WORK_CONN_MARKER {
        return crate::pool::accept_work_conn(&server, io, &binding, deadline).await;
    }
    let io = Prefixed::new(first[0], io);
    let mut session = mux::start(
        io,
        Mode::Server,
        // Headroom over our own limit (proxy::StreamBudget), which refuses
        // user connections before they become streams. Until login the
        // peer gets a few streams and a small reply queue (mux::untrusted).
        mux::MuxConfig::new(mux::with_headroom(transport.max_streams_per_client))
            .with_budget(server.budget.clone())
            .untrusted(),
        close.clone(),
    );
    let login = login(&server, &mut session.incoming, &binding);
    let login = tokio::time::timeout_at(deadline, login).await;
    let (ctrl, client) = match login {
        Ok(Ok(Some(v))) => v,
        // Rejected (and told why), or the connection broke: say how.
        Ok(Ok(None)) => return end_unauthenticated(session, &close, deadline, None).await,
        Ok(Err(e)) => {
            let e = e.context("login failed");
            return end_unauthenticated(session, &close, deadline, Some(e)).await;
        }
        Err(_) => {
            session.driver.abort();
            bail!("rejected: login did not complete within {login_timeout:?}");
        }
    };
    drop(permit);
    session.opener.trust();
    // Run ids identify a client's sessions to each other; they are not
    // shown at info, where logs are often shared.
    debug!(run_id = %Escaped(&client.run_id), "session run id");
    let span = info_span!("session", user = %Escaped(&client.user));
    run_session(server.clone(), session, ctrl, client, activity, close)
        .instrument(span)
        .await
}

/// A connection that did not log in: closed by the login deadline, with
/// the multiplexer's own reason (a protocol error…) in the log if it has
/// one by then.
async fn end_unauthenticated(
    mut session: mux::Session,
    close: &CancellationToken,
    deadline: tokio::time::Instant,
    err: Option<anyhow::Error>,
) -> Result<()> {
    close.cancel();
    let ended = tokio::time::timeout_at(deadline, &mut session.driver).await;
    session.driver.abort();
    let cause = match ended {
        Ok(Ok(Err(e))) => Some(anyhow!(e)),
        _ => None,
    };
    match (err, cause) {
        (Some(e), Some(c)) => Err(e.context(format!("connection: {c}"))),
        (Some(e), None) => Err(e),
        (None, Some(c)) => Err(c.context("rejected")),
        (None, None) => Ok(()),
    }
}

/// How long a new login waits for the session it replaces to close its
/// proxies (and free their ports) before going on without it.
const REPLACE_WAIT: Duration = Duration::from_secs(5);

type HelloStream = Framed<MuxStream, MessageCodec<Hello>>;

/// A logged-in client: its proxies and what they share, served by
/// [`ClientSession::run`] until the client goes away.
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
    /// Fires `SessionHandle::ended` when the session is dropped, which
    /// `end` does last (and an aborted session too).
    _ended: DropGuard,
}

async fn run_session(
    server: Arc<Server>,
    mux: mux::Session,
    ctrl: ControlStream<MuxStream>,
    client: Client,
    activity: Arc<Activity>,
    close: CancellationToken,
) -> Result<()> {
    let (reader, writer) = framed::split_control(ctrl);
    let mut session = ClientSession::register(server, mux, writer, client, close).await;
    let transport = &session.server.config.transport;
    let pacer = Pacer::new(None, heartbeat::secs(transport.heartbeat_timeout));
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
        if let Some(old) = server.registry.insert_session(&key, handle) {
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
            Some(q) => WorkSource::Pool(Arc::new(Pool::new(q, writer.clone()))),
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
            _ended: ended.drop_guard(),
        }
    }

    /// Closes every proxy and waits for their connections to end.
    async fn end(mut self, result: Result<()>) {
        self.close.cancel();
        for (name, proxy) in self.proxies.drain() {
            proxy.stop();
            self.server.registry.release_proxy(&self.client.user, &name);
        }
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
                    None => return Ok(()),
                    Some(Err(e)) => return Err(anyhow!(e).context("control stream")),
                    Some(Ok(msg)) => self.on_message(msg).await?,
                },
                stream = self.mux.incoming.recv() => match stream {
                    // Clients never open streams after the control stream; refuse.
                    Some(stream) => drop(stream),
                    None => return Ok(()),
                },
            }
        }
    }

    async fn on_message(&mut self, msg: Control) -> Result<()> {
        match msg {
            Control::NewProxy(req) => {
                let resp = self.new_proxy(req).await;
                // Never wait on the client here (the reaper and the stream
                // drain must keep running): a client that does not read its
                // answers is not a working client.
                if self.writer.try_send(Control::NewProxyResp(resp)).is_err() {
                    bail!("the client does not read its control stream (answers queue full)");
                }
            }
            Control::CloseProxy { name } => {
                if let Some(proxy) = self.proxies.remove(&name) {
                    proxy.stop();
                    self.server.registry.release_proxy(&self.client.user, &name);
                    info!(proxy = %Escaped(&name), "proxy closed by client");
                }
            }
            Control::Ping(ping) => {
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

    async fn new_proxy(&mut self, req: NewProxy) -> NewProxyResp {
        let name = req.name.clone();
        let kind = req.spec.kind();
        let limit = self.server.config.max_ports_per_client;
        let traffic = Arc::new(Traffic::default());
        let user = self.client.user.clone();
        let result = if limit > 0 && self.proxies.len() >= limit as usize {
            Err(ProxyError::TooManyPorts(limit))
        } else if self.proxies.contains_key(&name)
            || !self
                .server
                .registry
                .claim_proxy(&user, &name, kind, traffic.clone())
        {
            Err(ProxyError::DuplicateName)
        } else {
            let ctx = ProxyCtx {
                server: self.server.clone(),
                name: name.clone(),
                work: self.work.clone(),
                budget: self.budget.clone(),
                meters: Meters::new(vec![traffic, self.traffic.clone()]),
                stop: self.close.child_token(),
                tasks: self.tasks.clone(),
            };
            match proxy::start(&req.spec, ctx).await {
                Ok(proxy) => {
                    let addr = proxy.addr.to_string();
                    info!(proxy = %Escaped(&name), %kind, remote = %addr, "proxy started");
                    self.proxies.insert(name.clone(), proxy);
                    Ok(addr)
                }
                Err(e) => {
                    self.server.registry.release_proxy(&user, &name);
                    Err(e)
                }
            }
        };
        if let Err(e) = &result {
            warn!(proxy = %Escaped(&name), %kind, "proxy rejected: {e}");
        }
        NewProxyResp { name, result }
    }
}

/// Runs the login handshake. `Ok(None)` means the client was turned away
/// (and told why) or left before finishing.
async fn login(
    server: &Server,
    incoming: &mut tokio::sync::mpsc::UnboundedReceiver<MuxStream>,
    binding: &[u8; 32],
) -> Result<Option<(ControlStream<MuxStream>, Client)>> {
    let Some(stream) = incoming.recv().await else {
        return Ok(None);
    };
    // Streams beyond the control stream are refused at once, so an
    // unauthenticated peer cannot make us hold buffers for them.
    let hello = Framed::new(stream, MessageCodec::<Hello>::new());
    let handshake = handshake(server, hello, binding);
    tokio::pin!(handshake);
    loop {
        tokio::select! {
            r = &mut handshake => return r,
            extra = incoming.recv() => match extra {
                Some(s) => drop(s),
                None => return handshake.await,
            },
        }
    }
}

async fn handshake(
    server: &Server,
    mut ctrl: HelloStream,
    binding: &[u8; 32],
) -> Result<Option<(ControlStream<MuxStream>, Client)>> {
    let version = match ctrl.next().await {
        Some(Ok(Hello::Client { version })) => version,
        Some(Ok(other)) => bail!("expected ClientHello, got {}", other.kind()),
        Some(Err(e)) => return Err(anyhow!(e).context("reading ClientHello")),
        None => return Ok(None),
    };
    if version != PROTOCOL_VERSION {
        let err = LoginError::VersionMismatch {
            client: version,
            server: PROTOCOL_VERSION,
        };
        warn!("login rejected: {err}");
        reject(&mut ctrl, err).await;
        return Ok(None);
    }

    let nonce = auth::new_nonce();
    ctrl.send(Hello::Server {
        version: PROTOCOL_VERSION,
        nonce,
    })
    .await
    .context("sending ServerHello")?;

    let login = match ctrl.next().await {
        Some(Ok(Hello::Login(login))) => login,
        Some(Ok(other)) => bail!("expected Login, got {}", other.kind()),
        Some(Err(e)) => return Err(anyhow!(e).context("reading Login")),
        None => return Ok(None),
    };
    if !server.config.auth.token.verify(
        Purpose::Login,
        &nonce,
        binding,
        &login.run_id,
        &login.user,
        &login.proof,
    ) {
        warn!(
            user = %Escaped(&login.user),
            hostname = %Escaped(&login.hostname),
            "login rejected: invalid token"
        );
        reject(&mut ctrl, LoginError::InvalidToken).await;
        return Ok(None);
    }

    accept(server, ctrl, login).await.map(Some)
}

/// Tells a client whose proof checked out that it is in, with its run id
/// (a new one on its first login) and our heartbeat timeout; from here on
/// the stream carries control messages.
async fn accept(
    server: &Server,
    mut ctrl: HelloStream,
    login: Login,
) -> Result<(ControlStream<MuxStream>, Client)> {
    let run_id = if login.run_id.is_empty() {
        net::util::random_id()
    } else {
        login.run_id
    };
    let cfg = &server.config;
    ctrl.send(Hello::LoginResp(LoginResp {
        result: Ok(LoginAccepted {
            run_id: run_id.clone(),
            heartbeat_timeout: cfg.transport.heartbeat_timeout.clamp(0, u32::MAX as i64) as u32,
            udp_packet_size: cfg.udp_packet_size as u32,
        }),
    }))
    .await
    .context("sending LoginResp")?;
    info!(
        hostname = %Escaped(&login.hostname),
        os = %Escaped(&login.os),
        arch = %Escaped(&login.arch),
        "login accepted"
    );
    let client = Client {
        user: login.user,
        run_id,
        tcp_mux: login.tcp_mux,
    };
    // Bytes the client sent after its login stay buffered for the control codec.
    Ok((ctrl.map_codec(|_| MessageCodec::<Control>::new()), client))
}

async fn reject(ctrl: &mut HelloStream, err: LoginError) {
    // Best effort: the client may already be gone.
    let _ = ctrl
        .send(Hello::LoginResp(LoginResp { result: Err(err) }))
        .await;
    let _ = ctrl.close().await;
}
