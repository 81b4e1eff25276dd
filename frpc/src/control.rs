//! Connecting, logging in, and running one session on the control stream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use config::ClientConfig;
use futures::{SinkExt, StreamExt};
use mux::{self, MemoryBudget, Mode, MuxStream};
use net::activity::{Activity, Metered};
use net::framed::{self, ControlStream};
use net::logging::Escaped;
use net::tls::{pretty_fingerprint, Trusted};
use net::transport::ClientSide;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};
use wire::auth::Purpose;
use wire::codec::CodecError;
use wire::codec::MessageCodec;
use wire::heartbeat::{self, Beat, Pacer};
use wire::message::{
    Control, Frame, Hello, Login, LoginAccepted, NewProxyResp, Ping, PROTOCOL_VERSION,
};

use crate::pool::{self, Pool};
use crate::proxy::{Agreed, ProxyManager};
use crate::{work, Event, Events};

/// Connecting and logging in must finish within this long.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A logged-in session. Dropping it closes the connection.
pub(crate) struct Session {
    run_id: String,
    /// The server's heartbeat timeout, from its LoginResp.
    server_timeout: Option<Duration>,
    /// The server's `udpPacketSize`, from its LoginResp.
    server_udp_packet_size: usize,
    activity: std::sync::Arc<Activity>,
    ctrl: ControlStream<MuxStream>,
    mux: mux::Session,
    close: CancellationToken,
    _guard: DropGuard,
}

pub(crate) async fn connect(
    config: &ClientConfig,
    side: &ClientSide,
    run_id: &str,
    budget: &Arc<MemoryBudget>,
) -> Result<Session> {
    tokio::time::timeout(LOGIN_TIMEOUT, connect_inner(config, side, run_id, budget))
        .await
        .map_err(|_| anyhow!("no answer from server within {LOGIN_TIMEOUT:?}"))?
}

async fn connect_inner(
    config: &ClientConfig,
    side: &ClientSide,
    run_id: &str,
    budget: &Arc<MemoryBudget>,
) -> Result<Session> {
    let addr = format!("{}:{}", config.server_addr, config.server_port);
    let tcp = TcpStream::connect((config.server_addr.as_str(), config.server_port))
        .await
        .with_context(|| format!("cannot connect to server {addr}"))?;
    tcp.set_nodelay(true).ok();
    let t = &config.transport;
    net::sockopt::tune(
        &tcp,
        heartbeat::secs(t.tcp_keepalive),
        heartbeat::secs(t.heartbeat_timeout),
    );
    let activity = Activity::new();
    let io = Metered::new(tcp, activity.clone());
    let (io, binding, trusted) = side
        .connect(io)
        .await
        .with_context(|| format!("server {addr}"))?;
    match trusted {
        Trusted::FirstUse(fp) => warn!(
            "trusting server {addr} on first use: certificate fingerprint {}; remembered in {} \
             and enforced from now on",
            pretty_fingerprint(&fp),
            config.known_hosts_path().display()
        ),
        Trusted::Unverified if side.tls_enabled() => warn!(
            "NOT verifying the server's TLS certificate (transport.tls.insecureSkipVerify = true): \
             anyone in the path can impersonate the server"
        ),
        _ => {}
    }
    let close = CancellationToken::new();
    let guard = close.clone().drop_guard();
    let mux = mux::start(
        io,
        Mode::Client,
        mux::MuxConfig::new(mux::CLIENT_MAX_STREAMS).with_budget(budget.clone()),
        close.clone(),
    );
    let (ctrl, accepted) = match login(config, &mux, &binding, run_id, &addr).await {
        Ok(v) => v,
        Err(e) => {
            // The connection itself may know better why it ended (a TLS
            // alert such as "certificate required", a reset…).
            close.cancel();
            return Err(
                match tokio::time::timeout(Duration::from_secs(1), mux.driver).await {
                    Ok(Ok(Err(cause))) => e.context(format!("connection failed: {cause}")),
                    _ => e,
                },
            );
        }
    };
    info!(server = %addr, "logged in to server");
    debug!(run_id = %Escaped(&accepted.run_id), "session run id");
    Ok(Session {
        run_id: accepted.run_id,
        server_udp_packet_size: accepted.udp_packet_size as usize,
        server_timeout: (accepted.heartbeat_timeout > 0)
            .then(|| Duration::from_secs(accepted.heartbeat_timeout.into())),
        activity,
        ctrl,
        mux,
        close,
        _guard: guard,
    })
}

/// The login exchange on a fresh control stream.
async fn login(
    config: &ClientConfig,
    mux: &mux::Session,
    binding: &[u8; 32],
    run_id: &str,
    addr: &str,
) -> Result<(ControlStream<MuxStream>, LoginAccepted)> {
    let stream = mux
        .opener
        .open()
        .await
        .context("opening the control stream")?;
    let mut ctrl = Framed::new(stream, MessageCodec::<Hello>::new());

    ctrl.send(Hello::Client {
        version: PROTOCOL_VERSION,
    })
    .await
    .context("sending ClientHello")?;
    let nonce = match ctrl.next().await {
        Some(Ok(Hello::Server { nonce, .. })) => nonce,
        Some(Ok(Hello::LoginResp(resp))) => match resp.result {
            Err(e) => bail!("login rejected: {}", Escaped(&e.to_string())),
            Ok(_) => bail!("server accepted a login that was never sent"),
        },
        Some(Ok(other)) => bail!("protocol error: expected ServerHello, got {}", other.kind()),
        Some(Err(CodecError::Io(e))) if mux::is_session_gone(&e) => {
            bail!("server {addr} closed the connection during login")
        }
        Some(Err(e)) => {
            return Err(anyhow!(e).context(format!("{addr} does not speak this protocol")))
        }
        None => bail!("server {addr} closed the connection during login"),
    };

    let user = config.user.clone();
    ctrl.send(Hello::Login(Login {
        version: PROTOCOL_VERSION,
        hostname: net::util::hostname(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        proof: config
            .auth
            .token
            .prove(Purpose::Login, &nonce, binding, run_id, &user),
        user,
        run_id: run_id.to_owned(),
        tcp_mux: config.transport.tcp_mux,
    }))
    .await
    .context("sending Login")?;
    let accepted = match ctrl.next().await {
        Some(Ok(Hello::LoginResp(resp))) => resp
            .result
            .map_err(|e| anyhow!("login rejected: {}", Escaped(&e.to_string())))?,
        Some(Ok(other)) => bail!("protocol error: expected LoginResp, got {}", other.kind()),
        Some(Err(CodecError::Io(e))) if mux::is_session_gone(&e) => {
            bail!("server {addr} closed the connection during login")
        }
        Some(Err(e)) => return Err(anyhow!(e).context("reading LoginResp")),
        None => bail!("server {addr} closed the connection during login"),
    };
    // Bytes after the LoginResp stay buffered for the control codec.
    Ok((ctrl.map_codec(|_| MessageCodec::<Control>::new()), accepted))
}

impl Session {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The heartbeat for this session: the configured interval, lowered if
    /// needed to stay well inside both sides' timeouts. Logs the first time
    /// it has to lower it (`warned` remembers across reconnects).
    fn pacer(&self, config: &ClientConfig, warned: &mut bool) -> Pacer {
        let t = &config.transport;
        let interval = heartbeat::secs(t.heartbeat_interval);
        let timeout = heartbeat::secs(t.heartbeat_timeout);
        let (agreed, lowered) = heartbeat::agree_interval(interval, timeout, self.server_timeout);
        if lowered && !*warned {
            *warned = true;
            let fmt = |d: Option<Duration>| {
                d.map_or("off".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()))
            };
            info!(
                "heartbeat interval set to {} (configured {}): at most a third of the smaller of \
                 this client's heartbeatTimeout ({}) and the server's ({})",
                fmt(agreed),
                fmt(interval),
                fmt(timeout),
                fmt(self.server_timeout)
            );
        }
        Pacer::new(agreed, timeout)
    }

    /// Registers every proxy and serves work streams. Returns Ok on shutdown,
    /// Err when the connection is lost or declared dead.
    pub async fn run(
        mut self,
        config: &Arc<ClientConfig>,
        side: &Arc<ClientSide>,
        shutdown: &CancellationToken,
        events: &Events,
        warned: &mut bool,
    ) -> Result<()> {
        let agreed = Agreed {
            udp_packet_size: config.udp_packet_size.min(self.server_udp_packet_size),
        };
        let proxies = Arc::new(ProxyManager::new(config, agreed));
        for p in proxies.registrations() {
            self.ctrl
                .feed(Control::NewProxy(p))
                .await
                .context("registering proxies")?;
        }
        self.ctrl.flush().await.context("registering proxies")?;

        let mut pacer = self.pacer(config, warned);
        let activity = self.activity.clone();
        let (mut reader, writer) = framed::split_control(self.ctrl);
        // Without multiplexing, work connections come from a pool.
        let pool_requests = if config.transport.tcp_mux {
            None
        } else {
            let requests = Arc::new(pool::Requests::default());
            let pool = Arc::new(Pool {
                pending: Arc::new(tokio::sync::Semaphore::new(
                    config.transport.pool_count + pool::MAX_PENDING_EXTRA,
                )),
                requests: requests.clone(),
                config: config.clone(),
                side: side.clone(),
                run_id: self.run_id.clone(),
                proxies: proxies.clone(),
                stop: self.close.child_token(),
            });
            tokio::spawn(pool::run(pool));
            Some(requests)
        };
        let mut beats = BeatStats::new(&activity);
        loop {
            let wake = pacer
                .next_wake(activity.last_recv())
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
            tokio::select! {
                _ = shutdown.cancelled() => {
                    drop(writer);
                    self.close.cancel();
                    // Let the driver send its goodbye so frps frees the ports now.
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.mux.driver).await;
                    return Ok(());
                }
                _ = tokio::time::sleep_until(wake) => match pacer.poll(Instant::now(), activity.last_recv()) {
                    Beat::Wait => {}
                    Beat::Ping => {
                        let ping = beats.next_ping(&activity, proxies.len());
                        let seq = ping.seq;
                        // Never wait: a stuck link must not stop the timeout check.
                        if writer.try_send(Control::Ping(ping)).is_err() {
                            debug!(seq, "control queue full; ping not sent");
                        } else {
                            debug!(seq, "ping");
                            events.emit(Event::PingSent { seq });
                        }
                    }
                    Beat::Dead(silence) => {
                        let timeout = pacer.timeout().map_or(0.0, |t| t.as_secs_f64());
                        warn!(
                            "no data from server for {:.1}s (heartbeatTimeout {timeout}s): connection declared dead",
                            silence.as_secs_f64()
                        );
                        bail!("connection declared dead after {:.1}s of silence", silence.as_secs_f64());
                    }
                },
                msg = reader.next() => match msg {
                    Some(Ok(Control::NewProxyResp(resp))) => proxy_registered(resp, events),
                    Some(Ok(Control::Pong(pong))) => beats.pong(pong.seq),
                    Some(Ok(Control::ReqWorkConn { count })) => match &pool_requests {
                        Some(requests) => requests.add(count),
                        None => bail!("protocol error: server asked for work connections in multiplexed mode"),
                    },
                    Some(Ok(other)) => bail!("protocol error: unexpected {} from server", other.kind()),
                    Some(Err(e)) => return Err(anyhow!(e).context("control stream")),
                    None => bail!("server closed the connection"),
                },
                stream = self.mux.incoming.recv() => match stream {
                    Some(stream) => {
                        tokio::spawn(work::handle(stream, proxies.clone(), self.close.child_token()));
                    }
                    None => bail!("connection closed"),
                },
            }
        }
    }
}

/// Sequence numbers, per-beat byte counts and round-trip times.
struct BeatStats {
    seq: u32,
    sent_at: Option<(u32, Instant)>,
    bytes_in: u64,
    bytes_out: u64,
}

impl BeatStats {
    fn new(activity: &Activity) -> Self {
        BeatStats {
            seq: 0,
            sent_at: None,
            bytes_in: activity.bytes_in(),
            bytes_out: activity.bytes_out(),
        }
    }

    fn next_ping(&mut self, activity: &Activity, proxies: usize) -> Ping {
        self.seq = self.seq.wrapping_add(1);
        self.sent_at = Some((self.seq, Instant::now()));
        let (bytes_in, bytes_out) = (activity.bytes_in(), activity.bytes_out());
        let ping = Ping {
            seq: self.seq,
            proxies: proxies as u32,
            bytes_in: bytes_in - self.bytes_in,
            bytes_out: bytes_out - self.bytes_out,
        };
        (self.bytes_in, self.bytes_out) = (bytes_in, bytes_out);
        ping
    }

    fn pong(&mut self, seq: u32) {
        match self.sent_at {
            Some((s, at)) if s == seq => {
                debug!(seq, rtt_ms = at.elapsed().as_secs_f64() * 1000.0, "pong");
            }
            _ => debug!(seq, "late pong"),
        }
    }
}

fn proxy_registered(resp: NewProxyResp, events: &Events) {
    match resp.result {
        Ok(remote_addr) => {
            let port = remote_addr.rsplit(':').next().unwrap_or_default();
            info!(
                proxy = %Escaped(&resp.name),
                remote = %Escaped(&remote_addr),
                "proxy started: reachable on server port {}",
                Escaped(port)
            );
            events.emit(Event::ProxyStarted {
                name: resp.name,
                remote_addr,
            });
        }
        Err(e) => {
            warn!(
                proxy = %Escaped(&resp.name),
                "proxy failed to start: {}",
                Escaped(&e.to_string())
            );
            events.emit(Event::ProxyFailed {
                name: resp.name,
                error: e.to_string(),
            });
        }
    }
}
