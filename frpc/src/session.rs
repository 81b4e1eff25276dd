//! One session: connect and log in (through `connector` and `login`),
//! register the proxies, then serve the control stream — heartbeats,
//! answers, work-connection requests — and the work streams frps opens,
//! until the connection is lost or the client shuts down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use config::ClientConfig;
use futures::StreamExt;
use mux::{self, MemoryBudget, Mode, MuxStream};
use net::activity::Activity;
use net::framed::{self, ControlReader, ControlStream, ControlWriter};
use net::logging::{Escaped, Field};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};
use wire::heartbeat::{self, Beat, Pacer};
use wire::message::{Control, Frame, NewProxyResp, Ping};

use crate::connector::{Connector, Purpose};
use crate::pool::{self, Pool, Requests};
use crate::proxy::{Agreed, ProxyManager, RETRY_AFTER};
use crate::state::Liveness;
use crate::{login, work, Event, Events};

/// Connecting and logging in must finish within this long.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A logged-in session. Dropping it closes the connection.
pub(crate) struct Session {
    run_id: String,
    /// The proxy kinds frps serves (by the version and capabilities agreed).
    kinds: crate::proxy::ServerKinds,
    /// The protocol version agreed, whether frps takes visitor streams,
    /// and the nonce their proofs cover.
    version: u16,
    visitors_served: bool,
    nonce: [u8; wire::message::NONCE_LEN],
    /// The server's heartbeat timeout, from its LoginResp.
    server_timeout: Option<Duration>,
    /// The server's `udpPacketSize`, from its LoginResp.
    server_udp_packet_size: usize,
    activity: std::sync::Arc<Activity>,
    /// SHA-256 of the server's certificate, with TLS on.
    fingerprint: Option<String>,
    ctrl: ControlStream<MuxStream>,
    mux: mux::Session,
    close: CancellationToken,
    _guard: DropGuard,
}

pub(crate) async fn connect(
    connector: &Connector,
    run_id: &str,
    budget: &Arc<MemoryBudget>,
) -> Result<Session> {
    // Each connection offers our version first: an frps upgraded while
    // we were away gets it.
    let newest = wire::message::PROTOCOL_VERSION;
    let login = async {
        match connect_inner(connector, run_id, budget, newest).await {
            Err(e) => match e.downcast_ref::<login::SpeaksOlder>() {
                // An frps from before version agreement: ask again in its
                // version, at once.
                Some(login::SpeaksOlder(version)) => {
                    info!(
                        server = %connector.addr(),
                        "frps speaks protocol {version} (this frpc {newest}): speaking {version} to it"
                    );
                    connect_inner(connector, run_id, budget, *version).await
                }
                None => Err(e),
            },
            ok => ok,
        }
    };
    tokio::time::timeout(LOGIN_TIMEOUT, login)
        .await
        .map_err(|_| anyhow!("no answer from server within {LOGIN_TIMEOUT:?}"))?
}

/// One connection and login, offering protocol `offer`.
async fn connect_inner(
    connector: &Connector,
    run_id: &str,
    budget: &Arc<MemoryBudget>,
    offer: u16,
) -> Result<Session> {
    let addr = connector.addr();
    let dialed = connector.dial(Purpose::Control).await?;
    let close = CancellationToken::new();
    let guard = close.clone().drop_guard();
    let mux = mux::start(
        dialed.io,
        Mode::Client,
        mux::MuxConfig::new(mux::CLIENT_MAX_STREAMS).with_budget(budget.clone()),
        close.clone(),
    );
    let login = async {
        let stream = mux
            .opener
            .open()
            .await
            .context("opening the control stream")?;
        login::control(
            &connector.config,
            stream,
            &dialed.binding,
            run_id,
            &addr,
            offer,
        )
        .await
    };
    let login::LoggedIn {
        ctrl,
        accepted,
        version,
        caps,
        nonce,
    } = match login.await {
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
    if version < wire::message::PROTOCOL_VERSION {
        info!(server = %addr, protocol = version, "logged in to server");
    } else {
        info!(server = %addr, "logged in to server");
    }
    debug!(run_id = %Field(&accepted.run_id), "session run id");
    Ok(Session {
        kinds: crate::proxy::ServerKinds::of(version, &caps),
        version,
        visitors_served: caps.has(wire::caps::VISITORS),
        nonce,
        run_id: accepted.run_id,
        server_udp_packet_size: accepted.udp_packet_size as usize,
        server_timeout: (accepted.heartbeat_timeout > 0)
            .then(|| Duration::from_secs(accepted.heartbeat_timeout.into())),
        activity: dialed.activity,
        fingerprint: dialed.fingerprint,
        ctrl,
        mux,
        close,
        _guard: guard,
    })
}

impl Session {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    pub fn fingerprint(&self) -> Option<String> {
        self.fingerprint.clone()
    }

    /// The heartbeat for this session: the configured interval, lowered if
    /// needed to stay well inside both sides' timeouts. Logs the first time
    /// it has to lower it (`warned` remembers across reconnects).
    fn pacer(&self, config: &ClientConfig, warned: &mut bool) -> Pacer {
        let interval = config.heartbeat_interval();
        let timeout = config.heartbeat_timeout();
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
        connector: &Arc<Connector>,
        shutdown: &CancellationToken,
        client: &Attached<'_>,
        warned: &mut bool,
    ) -> Result<()> {
        let config = &connector.config;
        let agreed = Agreed {
            udp_packet_size: config.udp_packet_size.min(self.server_udp_packet_size),
            kinds: self.kinds,
        };
        let proxies = client.proxies.clone();
        // Reloads send their registrations through `updates` from now on.
        let (tx, updates) = tokio::sync::mpsc::unbounded_channel();
        let registrations = proxies.attach(agreed, &self.close, tx);
        let _detach = Detach(client.proxies, client.visitors);
        client.visitors.attach(crate::visitor::Link {
            opener: self.mux.opener.clone(),
            nonce: self.nonce,
            served: self.visitors_served,
            version: self.version,
        });
        let pacer = self.pacer(config, warned);
        let (reader, writer) = framed::split_control(self.ctrl);
        let initial = registrations.into_iter().map(Control::NewProxy).collect();
        tokio::spawn(forward(
            initial,
            updates,
            writer.clone(),
            self.close.clone(),
        ));
        tokio::spawn(retry_refused(proxies.clone(), self.close.clone()));
        let pool_requests = start_pool(connector, &self.run_id, &proxies, &self.close);
        let mut running = Running {
            beats: BeatStats::new(&self.activity),
            activity: self.activity,
            pacer,
            writer,
            proxies,
            pool_requests,
            events: client.events.clone(),
            liveness: client.liveness.clone(),
        };
        let result = running.serve(reader, &mut self.mux, shutdown).await;
        if result.is_ok() {
            drop(running);
            self.close.cancel();
            // Let the driver send its goodbye so frps frees the ports now.
            let _ = tokio::time::timeout(Duration::from_secs(2), self.mux.driver).await;
        }
        result
    }
}

/// What a session works for, beyond the connection: the client's proxy
/// set, its liveness record and its event channel.
pub(crate) struct Attached<'a> {
    pub proxies: &'a Arc<ProxyManager>,
    pub visitors: &'a crate::visitor::VisitorManager,
    pub liveness: &'a Arc<Liveness>,
    pub events: &'a Events,
}

/// Leaves the proxy set and the visitors waiting for the next session
/// however this one ends.
struct Detach<'a>(&'a ProxyManager, &'a crate::visitor::VisitorManager);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.0.detach();
        self.1.detach();
    }
}

/// Registers again, every [`RETRY_AFTER`], the proxies frps refused (a port
/// in use, a name taken by another client), until the session ends.
async fn retry_refused(proxies: Arc<ProxyManager>, close: CancellationToken) {
    let check = RETRY_AFTER / 6;
    loop {
        tokio::select! {
            _ = close.cancelled() => return,
            _ = tokio::time::sleep(check) => {}
        }
        let n = proxies.retry_refused(RETRY_AFTER);
        if n > 0 {
            debug!("registering {n} refused proxies again");
        }
    }
}

/// Without multiplexing, work connections come from a pool.
fn start_pool(
    connector: &Arc<Connector>,
    run_id: &str,
    proxies: &Arc<ProxyManager>,
    close: &CancellationToken,
) -> Option<Arc<Requests>> {
    let t = &connector.config.transport;
    if t.tcp_mux {
        return None;
    }
    let requests = Arc::new(Requests::default());
    let pool = Arc::new(Pool {
        pending: Arc::new(tokio::sync::Semaphore::new(
            t.pool_count + pool::MAX_PENDING_EXTRA,
        )),
        requests: requests.clone(),
        connector: connector.clone(),
        run_id: run_id.to_owned(),
        proxies: proxies.clone(),
        stop: close.child_token(),
    });
    tokio::spawn(pool::run(pool));
    Some(requests)
}

/// A session after registration: what its loop works with.
struct Running {
    activity: Arc<Activity>,
    pacer: Pacer,
    beats: BeatStats,
    writer: ControlWriter,
    proxies: Arc<ProxyManager>,
    pool_requests: Option<Arc<Requests>>,
    events: Events,
    liveness: Arc<Liveness>,
}

/// Sends the registrations, then those of reloads, in order, from a task
/// of its own: the session loop must keep reading frps's answers while
/// hundreds of registrations wait for room, or both sides would wait on
/// each other.
async fn forward(
    initial: Vec<Control>,
    mut updates: UnboundedReceiver<Control>,
    writer: ControlWriter,
    close: CancellationToken,
) {
    let send_all = async {
        for msg in initial {
            writer.send(msg).await?;
        }
        while let Some(msg) = updates.recv().await {
            writer.send(msg).await?;
        }
        Ok::<_, wire::codec::CodecError>(())
    };
    tokio::select! {
        _ = close.cancelled() => {}
        // A stopped writer ends the session through its reader.
        _ = send_all => {}
    }
}

impl Running {
    async fn serve(
        &mut self,
        mut reader: ControlReader<MuxStream>,
        mux: &mut mux::Session,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        loop {
            let wake = self
                .pacer
                .next_wake(self.activity.last_recv())
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(wake) => self.beat()?,
                msg = reader.next() => match msg {
                    Some(Ok(msg)) => self.on_message(msg)?,
                    Some(Err(e)) => return Err(anyhow!(e).context("control stream")),
                    None => bail!("server closed the connection"),
                },
                stream = mux.incoming.recv() => match stream {
                    Some(stream) => {
                        tokio::spawn(work::handle(stream, self.proxies.clone()));
                    }
                    None => bail!("connection closed"),
                },
            }
        }
    }

    /// The heartbeat clock fired: ping, or declare the connection dead.
    fn beat(&mut self) -> Result<()> {
        match self.pacer.poll(Instant::now(), self.activity.last_recv()) {
            Beat::Wait => {}
            Beat::Ping => {
                let ping = self.beats.next_ping(&self.activity, self.proxies.len());
                let seq = ping.seq;
                // Never wait: a stuck link must not stop the timeout check.
                if self.writer.try_send(Control::Ping(ping)).is_err() {
                    debug!(seq, "control queue full; ping not sent");
                } else {
                    debug!(seq, "ping");
                    self.events.emit(Event::PingSent { seq });
                }
            }
            Beat::Dead(silence) => {
                let timeout = self.pacer.timeout().map_or(0.0, |t| t.as_secs_f64());
                warn!(
                    "no data from server for {:.1}s (heartbeatTimeout {timeout}s): connection declared dead",
                    silence.as_secs_f64()
                );
                bail!(
                    "connection declared dead after {:.1}s of silence",
                    silence.as_secs_f64()
                );
            }
        }
        Ok(())
    }

    fn on_message(&mut self, msg: Control) -> Result<()> {
        match msg {
            Control::NewProxyResp(resp) => proxy_registered(resp, &self.proxies, &self.events),
            Control::Pong(pong) => {
                if let Some(rtt) = self.beats.pong(pong.seq) {
                    self.liveness.rtt(rtt);
                }
            }
            Control::ReqWorkConn { count } => match &self.pool_requests {
                Some(requests) => requests.add(count),
                None => {
                    bail!("protocol error: server asked for work connections in multiplexed mode")
                }
            },
            other => bail!("protocol error: unexpected {} from server", other.kind()),
        }
        Ok(())
    }
}

/// Sequence numbers, per-beat byte counts and round-trip times.
struct BeatStats {
    seq: u32,
    /// The last answered beat's round trip, reported in the next Ping.
    rtt: Option<Duration>,
    sent_at: Option<(u32, Instant)>,
    bytes_in: u64,
    bytes_out: u64,
}

impl BeatStats {
    fn new(activity: &Activity) -> Self {
        BeatStats {
            seq: 0,
            rtt: None,
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
            rtt_us: self.rtt.map_or(0, |d| {
                u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1)
            }),
        };
        (self.bytes_in, self.bytes_out) = (bytes_in, bytes_out);
        ping
    }

    /// The round trip of the beat `seq` answers, unless it is late.
    fn pong(&mut self, seq: u32) -> Option<Duration> {
        match self.sent_at {
            Some((s, at)) if s == seq => {
                let rtt = at.elapsed();
                debug!(seq, rtt_ms = rtt.as_secs_f64() * 1000.0, "pong");
                self.rtt = Some(rtt);
                Some(rtt)
            }
            _ => {
                debug!(seq, "late pong");
                None
            }
        }
    }
}

fn proxy_registered(resp: NewProxyResp, proxies: &ProxyManager, events: &Events) {
    let result = resp.result.clone().map_err(|e| e.to_string());
    let news = proxies.registered(&resp.name, result);
    match resp.result {
        // A private proxy has no address: visitors reach it.
        Ok(remote_addr) if remote_addr.is_empty() => {
            info!(proxy = %Field(&resp.name), "private proxy started: reachable through visitors");
            events.emit(Event::ProxyStarted {
                name: resp.name,
                remote_addr,
            });
        }
        Ok(remote_addr) => {
            let port = remote_addr.rsplit(':').next().unwrap_or_default();
            info!(
                proxy = %Field(&resp.name),
                remote = %Field(&remote_addr),
                "proxy started: reachable on server port {}",
                Escaped(port)
            );
            events.emit(Event::ProxyStarted {
                name: resp.name,
                remote_addr,
            });
        }
        Err(e) if !news => debug!(
            proxy = %Field(&resp.name),
            "proxy still refused: {}",
            Escaped(&e.to_string())
        ),
        Err(e) => {
            warn!(
                proxy = %Field(&resp.name),
                "proxy failed to start: {}; trying again every {} s",
                Escaped(&e.to_string()),
                RETRY_AFTER.as_secs()
            );
            events.emit(Event::ProxyFailed {
                name: resp.name,
                error: e.to_string(),
            });
        }
    }
}
