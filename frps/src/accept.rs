//! A new connection from a client, the one way in: TCP options, TLS, and
//! the first byte, which tells a multiplexed control connection (a yamux
//! header) from a work connection of a `tcpMux = false` client (its
//! marker). Both then prove themselves in `login` under one deadline.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use mux::{self, Mode};
use net::activity::{Activity, Metered};
use net::logging::Field;
use net::transport::{classify, FirstBytes, HandshakeError, Prefixed};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};
use wire::message::WORK_CONN_MARKER;

use crate::pending::Slot;
use crate::{login, session, Server};

pub(crate) async fn handle(
    server: Arc<Server>,
    tcp: TcpStream,
    peer: SocketAddr,
    close: CancellationToken,
    slot: Slot,
) {
    let span = info_span!("client", %peer);
    let taken = slot.taken.clone();
    // One deadline from accept: telling a login from a virtual host's user
    // on a shared port is part of the time a login has.
    let deadline = tokio::time::Instant::now() + server.config.login_timeout();
    let connection = async move {
        match shared_port(&server, &tcp, deadline).await {
            Shared::Http(vhost) => {
                drop(slot);
                crate::vhost::http::place(vhost, tcp, peer).await
            }
            Shared::Https(ctx) => {
                drop(slot);
                crate::vhost::https::carry_home(ctx, tcp, peer).await
            }
            Shared::No => {
                if let Err(e) = serve(server, tcp, close, slot, deadline).await {
                    warn!("{e:#}");
                }
            }
        }
    };
    // A slot is only ever taken before the login succeeds (the slot is
    // given back then), so this never ends a session.
    let or_taken = async move {
        tokio::select! {
            () = connection => {}
            () = taken.cancelled() => {
                debug!("closed before logging in: a newcomer took its slot (transport.maxPendingLogins)");
            }
        }
    };
    or_taken.instrument(span).await
}

/// Who a connection to `bindPort` is for, when virtual hosts share it.
enum Shared {
    Http(Arc<crate::vhost::http::Vhost>),
    /// The proxy its ClientHello named (already looked up).
    Https(crate::vhost::BackendRef),
    No,
}

/// Tells users of virtual hosts that share `bindPort` from clients by their
/// first bytes: an HTTP request, or a ClientHello naming a routed domain
/// (frpc's names none, or frps's own). Nothing is consumed.
async fn shared_port(server: &Server, tcp: &TcpStream, deadline: tokio::time::Instant) -> Shared {
    let cfg = &server.config;
    let http = server.vhosts.shared_http.get();
    let https = cfg.vhost_https_port != 0 && cfg.vhost_https_port == cfg.bind_port;
    if http.is_none() && !https {
        return Shared::No;
    }
    let mut first = [0u8; 4];
    let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await else {
        return Shared::No;
    };
    match (classify(&first[..n]), http) {
        (FirstBytes::Http, Some(vhost)) => Shared::Http(vhost.clone()),
        (FirstBytes::Tls, _) if https => {
            let hello = crate::vhost::https::hello(tcp);
            let by = deadline.min(tokio::time::Instant::now() + crate::vhost::https::HELLO_TIMEOUT);
            match tokio::time::timeout_at(by, hello).await {
                // frpc's hello is a login whatever name it carries.
                Ok(Ok(hello)) if !hello.frpc => hello
                    .name
                    .and_then(|name| server.vhosts.https.lookup(&name))
                    .map_or(Shared::No, Shared::Https),
                _ => Shared::No,
            }
        }
        _ => Shared::No,
    }
}

async fn serve(
    server: Arc<Server>,
    tcp: TcpStream,
    close: CancellationToken,
    slot: Slot,
    deadline: tokio::time::Instant,
) -> Result<()> {
    // Control messages and interactive sessions (SSH) are latency bound.
    tcp.set_nodelay(true).ok();
    let peer = tcp.peer_addr()?;
    let transport = &server.config.transport;
    let cfg = &server.config;
    net::sockopt::tune(&tcp, cfg.tcp_keepalive(), cfg.heartbeat_timeout());
    let activity = Activity::new();
    let io = Metered::new(tcp, activity.clone());

    // TLS and login share the deadline set at accept: a connection that
    // has not proven itself by then is closed.
    let login_timeout = cfg.login_timeout();
    let Some((io, binding, first)) = handshake(&server, io, deadline, login_timeout).await? else {
        return Ok(());
    };
    let from = login::Source {
        ip: peer.ip(),
        deadline,
    };
    if first == WORK_CONN_MARKER {
        return login::work_conn(&server, io, &binding, from).await;
    }
    let io = Prefixed::new(first, io);
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
    let login = login::control(&server, &mut session.incoming, &binding, from);
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
            server.records.login_failed("timeout");
            bail!("rejected: login did not complete within {login_timeout:?}");
        }
    };
    drop(slot);
    session.opener.trust();
    // Run ids identify a client's sessions to each other; they are not
    // shown at info, where logs are often shared.
    debug!(run_id = %Field(&client.run_id), "session run id");
    let span = info_span!("session", user = %Field(&client.user));
    session::run(
        server.clone(),
        session,
        ctrl,
        client,
        (activity, peer),
        close,
    )
    .instrument(span)
    .await
}

/// TLS (or plain, where allowed) and the first byte, which tells a
/// multiplexed session (a yamux header, version 0) from a work connection
/// of a non-multiplexed client (its marker). None: closed without a word.
async fn handshake(
    server: &Server,
    io: Metered<TcpStream>,
    deadline: tokio::time::Instant,
    login_timeout: std::time::Duration,
) -> Result<Option<(net::transport::BoxIo, net::transport::Binding, u8)>> {
    let (mut io, binding) =
        match tokio::time::timeout_at(deadline, server.transport.accept(io)).await {
            Ok(Ok(v)) => v,
            Ok(Err(HandshakeError::Silent)) => {
                debug!("connection closed without sending anything");
                return Ok(None);
            }
            Ok(Err(e)) => {
                server.records.login_failed("handshake");
                bail!("rejected: {e}")
            }
            Err(_) => {
                server.records.login_failed("timeout");
                bail!("rejected: no handshake within {login_timeout:?}")
            }
        };
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, io.read_exact(&mut first)).await {
        Ok(Ok(_)) => Ok(Some((io, binding, first[0]))),
        Ok(Err(e)) => bail!("rejected: {e}"),
        Err(_) => bail!("rejected: nothing sent within {login_timeout:?}"),
    }
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
