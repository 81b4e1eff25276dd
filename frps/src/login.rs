//! Proofs, the one way: every connection gets a fresh nonce in the
//! server's hello, and the client's proof (an HMAC of the token over it,
//! bound to the TLS session) comes back in a `Login` on a control
//! connection or a `NewWorkConn` on a work connection.

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use mux::MuxStream;
use net::framed::{self, ControlStream};
use net::logging::Field;
use net::transport::BoxIo;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};
use wire::auth::{self, Purpose};
use wire::caps::Caps;
use wire::codec::MessageCodec;
use wire::message::{
    Control, Frame, Hello, Login, LoginAccepted, LoginError, LoginResp, NewWorkConn,
    OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

use crate::Server;

type HelloStream = Framed<MuxStream, MessageCodec<Hello>>;

/// Where a connection comes from and by when it must have proven itself.
#[derive(Clone, Copy)]
pub(crate) struct Source {
    pub ip: std::net::IpAddr,
    pub deadline: tokio::time::Instant,
}

impl Source {
    /// Counts a failed proof, and holds its answer as long as the address
    /// has earned (`penalty`).
    async fn penalise(self, server: &Server) {
        let wait = server.penalties.failed(self.ip);
        crate::penalty::serve_wait(wait, self.deadline).await;
    }
}

/// The client as established by a successful login.
pub(crate) struct Client {
    pub user: String,
    pub run_id: String,
    pub tcp_mux: bool,
    /// As frpc reports it (for the dashboard; not trusted for anything).
    pub hostname: String,
    /// frp's clientID and client metadatas, as frpc sent them (bounded by
    /// login), for the API.
    pub client_id: String,
    pub metas: std::collections::BTreeMap<String, String>,
    /// The protocol version agreed at hello, and what the client can do.
    pub version: u16,
    pub caps: Caps,
    /// The nonce this login proved, which the session's visit proofs
    /// cover too.
    pub nonce: [u8; wire::message::NONCE_LEN],
}

/// Runs the login handshake. `Ok(None)` means the client was turned away
/// (and told why) or left before finishing.
pub(crate) async fn control(
    server: &Server,
    incoming: &mut tokio::sync::mpsc::UnboundedReceiver<MuxStream>,
    binding: &[u8; 32],
    from: Source,
) -> Result<Option<(ControlStream<MuxStream>, Client)>> {
    let Some(stream) = incoming.recv().await else {
        return Ok(None);
    };
    // Streams beyond the control stream are refused at once, so an
    // unauthenticated peer cannot make us hold buffers for them.
    let hello = Framed::new(stream, MessageCodec::<Hello>::new());
    let handshake = handshake(server, hello, binding, from);
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
    from: Source,
) -> Result<Option<(ControlStream<MuxStream>, Client)>> {
    let Some(version) = agree_version(server, &mut ctrl).await? else {
        return Ok(None);
    };

    let nonce = auth::new_nonce();
    ctrl.send(Hello::Server { version, nonce })
        .await
        .context("sending ServerHello")?;

    let login = match ctrl.next().await {
        Some(Ok(Hello::Login(login))) => login,
        Some(Ok(other)) => bail!("expected Login, got {}", other.kind()),
        Some(Err(e)) => return Err(anyhow!(e).context("reading Login")),
        None => return Ok(None),
    };
    if !server.live().token.verify(
        Purpose::Login,
        &nonce,
        binding,
        &login.run_id,
        &login.user,
        &login.proof,
    ) {
        warn!(
            user = %Field(&login.user),
            hostname = %Field(&login.hostname),
            "login rejected: invalid token"
        );
        server.records.login_failed("invalid_token");
        from.penalise(server).await;
        reject(&mut ctrl, LoginError::InvalidToken).await;
        return Ok(None);
    }

    if login.version != version {
        let why = format!(
            "Login says protocol {} after the hello agreed on {version}",
            login.version
        );
        warn!(user = %Field(&login.user), "login rejected: {why}");
        server.records.login_failed("version");
        reject(&mut ctrl, LoginError::Other(why)).await;
        return Ok(None);
    }
    if let Some(why) = oversized(&login) {
        warn!(user = %Field(&login.user), "login rejected: {why}");
        server.records.login_failed("oversized");
        reject(&mut ctrl, LoginError::Other(why)).await;
        return Ok(None);
    }
    if login.tcp_mux && !server.config.transport.tcp_mux {
        let err = LoginError::Other(
            "this server has transport.tcpMux = false; set transport.tcpMux = false in frpc too"
                .into(),
        );
        warn!(user = %Field(&login.user), "login rejected: the client multiplexes and transport.tcpMux is false here");
        server.records.login_failed("tcp_mux");
        reject(&mut ctrl, err).await;
        return Ok(None);
    }
    accept(server, ctrl, login, nonce).await.map(Some)
}

/// Reads the ClientHello and agrees on the lower of the two versions, as
/// long as we still speak it (a newer client speaks ours, an older one its
/// own); from then on `ctrl` reads and writes in that version. None: the
/// client was turned away (and told why) or left.
async fn agree_version(server: &Server, ctrl: &mut HelloStream) -> Result<Option<u16>> {
    let offered = match ctrl.next().await {
        Some(Ok(Hello::Client { version })) => version,
        Some(Ok(other)) => bail!("expected ClientHello, got {}", other.kind()),
        Some(Err(e)) => return Err(anyhow!(e).context("reading ClientHello")),
        None => return Ok(None),
    };
    if offered < OLDEST_PROTOCOL_VERSION {
        let err = LoginError::VersionMismatch {
            client: offered,
            server: PROTOCOL_VERSION,
        };
        warn!("login rejected: {err} (this frps speaks {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION})");
        server.records.login_failed("version");
        reject(ctrl, err).await;
        return Ok(None);
    }
    let version = offered.min(PROTOCOL_VERSION);
    ctrl.codec_mut().set_version(version);
    Ok(Some(version))
}

/// Tells a client whose proof checked out that it is in, with its run id
/// (a new one on its first login) and our heartbeat timeout; from here on
/// the stream carries control messages.
async fn accept(
    server: &Server,
    mut ctrl: HelloStream,
    login: Login,
    nonce: [u8; wire::message::NONCE_LEN],
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
            caps: wire::caps::ours(),
        }),
    }))
    .await
    .context("sending LoginResp")?;
    info!(
        hostname = %Field(&login.hostname),
        os = %Field(&login.os),
        arch = %Field(&login.arch),
        protocol = login.version,
        "login accepted"
    );
    let version = ctrl.codec().version();
    let client = Client {
        caps: Caps::of_peer(version, &login.caps),
        version,
        user: login.user,
        run_id,
        tcp_mux: login.tcp_mux,
        client_id: login.client_id,
        metas: login.metas,
        hostname: login.hostname,
        nonce,
    };
    debug!(protocol = version, caps = ?client.caps, "client capabilities");
    // Bytes the client sent after its login stay buffered for the control codec.
    Ok((
        ctrl.map_codec(|_| MessageCodec::<Control>::for_version(version)),
        client,
    ))
}

/// A clientID or metadatas beyond the bounds of `wire::message`.
fn oversized(login: &Login) -> Option<String> {
    use wire::message::{MAX_CLIENT_ID, MAX_METAS, MAX_META_LEN};
    let long = |s: &String| s.len() > MAX_META_LEN;
    if login.client_id.len() > MAX_CLIENT_ID {
        return Some(format!("clientID is longer than {MAX_CLIENT_ID} bytes"));
    }
    if login.metas.len() > MAX_METAS || login.metas.iter().any(|(k, v)| long(k) || long(v)) {
        return Some(format!(
            "metadatas: at most {MAX_METAS} entries of at most {MAX_META_LEN} bytes each"
        ));
    }
    if !wire::caps::within_bounds(&login.caps) {
        let (n, len) = (wire::caps::MAX_CAPS, wire::caps::MAX_CAP_LEN);
        return Some(format!(
            "capabilities: at most {n} of at most {len} bytes each"
        ));
    }
    None
}

async fn reject(ctrl: &mut HelloStream, err: LoginError) {
    // Best effort: the client may already be gone.
    let _ = ctrl
        .send(Hello::LoginResp(LoginResp { result: Err(err) }))
        .await;
    let _ = ctrl.close().await;
}

/// A new connection that announced itself as a work connection: prove it,
/// then queue it with its session.
pub(crate) async fn work_conn(
    server: &Server,
    mut io: BoxIo,
    binding: &[u8; 32],
    from: Source,
) -> Result<()> {
    let deadline = from.deadline;
    let nonce = wire::auth::new_nonce();
    let hello = Hello::Server {
        version: PROTOCOL_VERSION,
        nonce,
    };
    let exchange = async {
        framed::write_message(&mut io, &hello).await?;
        io.flush().await?;
        framed::read_message::<Hello, _>(&mut io).await
    };
    let msg = match tokio::time::timeout_at(deadline, exchange).await {
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => bail!("rejected work connection: {e}"),
        Err(_) => bail!("rejected work connection: no NewWorkConn in time"),
    };
    let Hello::NewWorkConn(NewWorkConn {
        run_id,
        user,
        proof,
    }) = msg
    else {
        bail!(
            "rejected work connection: expected NewWorkConn, got {}",
            msg.kind()
        );
    };
    if !server
        .live()
        .token
        .verify(Purpose::WorkConn, &nonce, binding, &run_id, &user, &proof)
    {
        server.records.login_failed("invalid_token");
        from.penalise(server).await;
        bail!("rejected work connection: invalid token");
    }
    let Some(queue) = server.registry.work_queue(&user, &run_id) else {
        bail!("rejected work connection: no non-multiplexed session of this user with that run id");
    };
    queue.offer(io);
    Ok(())
}
