//! Connecting, logging in, and running one session on the control stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use shared::config::{ClientConfig, ProxyConfig};
use shared::framed::{self, ControlStream};
use shared::mux::{self, Mode, MuxStream};
use shared::protocol::{Login, Message, NewProxy, NewProxyResp, ProxyType, PROTOCOL_VERSION};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};

use crate::{work, Event, Events};

/// Connecting and logging in must finish within this long.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A logged-in session. Dropping it closes the connection.
pub(crate) struct Session {
    run_id: String,
    ctrl: ControlStream<MuxStream>,
    mux: mux::Session,
    close: CancellationToken,
    _guard: DropGuard,
}

pub(crate) async fn connect(config: &ClientConfig, run_id: &str) -> Result<Session> {
    tokio::time::timeout(LOGIN_TIMEOUT, connect_inner(config, run_id))
        .await
        .map_err(|_| anyhow!("no answer from server within {LOGIN_TIMEOUT:?}"))?
}

async fn connect_inner(config: &ClientConfig, run_id: &str) -> Result<Session> {
    let addr = format!("{}:{}", config.server_addr, config.server_port);
    let tcp = TcpStream::connect((config.server_addr.as_str(), config.server_port))
        .await
        .with_context(|| format!("cannot connect to server {addr}"))?;
    tcp.set_nodelay(true).ok();
    let close = CancellationToken::new();
    let guard = close.clone().drop_guard();
    let mux = mux::start(
        tcp,
        Mode::Client,
        mux::yamux_config(mux::DEFAULT_MAX_STREAMS),
        close.clone(),
    );
    let stream = mux
        .opener
        .open()
        .await
        .context("opening the control stream")?;
    let mut ctrl = framed::control(stream);

    ctrl.send(Message::ClientHello {
        version: PROTOCOL_VERSION,
    })
    .await
    .context("sending ClientHello")?;
    let nonce = match ctrl.next().await {
        Some(Ok(Message::ServerHello { nonce, .. })) => nonce,
        Some(Ok(Message::LoginResp(resp))) => match resp.result {
            Err(e) => bail!("login rejected: {e}"),
            Ok(_) => bail!("server accepted a login that was never sent"),
        },
        Some(Ok(other)) => bail!("protocol error: expected ServerHello, got {}", other.kind()),
        Some(Err(e)) => {
            return Err(anyhow!(e).context(format!("{addr} does not speak this protocol")))
        }
        None => bail!("server {addr} closed the connection during login"),
    };

    let user = config.user.clone();
    ctrl.send(Message::Login(Login {
        version: PROTOCOL_VERSION,
        hostname: shared::util::hostname(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        proof: config.auth.token.prove(&nonce, run_id, &user),
        user,
        run_id: run_id.to_owned(),
    }))
    .await
    .context("sending Login")?;
    let accepted = match ctrl.next().await {
        Some(Ok(Message::LoginResp(resp))) => {
            resp.result.map_err(|e| anyhow!("login rejected: {e}"))?
        }
        Some(Ok(other)) => bail!("protocol error: expected LoginResp, got {}", other.kind()),
        Some(Err(e)) => return Err(anyhow!(e).context("reading LoginResp")),
        None => bail!("server {addr} closed the connection during login"),
    };
    info!(server = %addr, run_id = %accepted.run_id, "logged in to server");
    Ok(Session {
        run_id: accepted.run_id,
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

    /// Registers every proxy and serves work streams. Returns Ok on shutdown,
    /// Err when the connection is lost.
    pub async fn run(
        mut self,
        config: &ClientConfig,
        shutdown: &CancellationToken,
        events: &Events,
    ) -> Result<()> {
        for p in &config.proxies {
            self.ctrl
                .feed(Message::NewProxy(NewProxy {
                    name: p.name.clone(),
                    proxy_type: ProxyType::Tcp,
                    remote_port: p.remote_port,
                }))
                .await
                .context("registering proxies")?;
        }
        self.ctrl.flush().await.context("registering proxies")?;

        let proxies: Arc<HashMap<String, ProxyConfig>> = Arc::new(
            config
                .proxies
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect(),
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.close.cancel();
                    // Let the driver send its goodbye so frps frees the ports now.
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.mux.driver).await;
                    return Ok(());
                }
                msg = self.ctrl.next() => match msg {
                    Some(Ok(Message::NewProxyResp(resp))) => proxy_registered(resp, events),
                    Some(Ok(Message::Pong(pong))) => debug!(seq = pong.seq, "pong"),
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

fn proxy_registered(resp: NewProxyResp, events: &Events) {
    match resp.result {
        Ok(remote_addr) => {
            let port = remote_addr.rsplit(':').next().unwrap_or_default();
            info!(proxy = %resp.name, remote = %remote_addr, "proxy started: reachable on server port {port}");
            events.emit(Event::ProxyStarted {
                name: resp.name,
                remote_addr,
            });
        }
        Err(e) => {
            warn!(proxy = %resp.name, "proxy failed to start: {e}");
            events.emit(Event::ProxyFailed {
                name: resp.name,
                error: e.to_string(),
            });
        }
    }
}
