//! Proving ourselves to frps, the one way: the server's hello brings a
//! nonce, and the proof (an HMAC of the token over it, bound to the TLS
//! session) goes back in a `Login` on the control connection or a
//! `NewWorkConn` on a work connection.

use anyhow::{anyhow, bail, Context, Result};
use config::ClientConfig;
use futures::{SinkExt, StreamExt};
use mux::MuxStream;
use net::framed::{self, ControlStream};
use net::logging::Escaped;
use net::transport::{Binding, BoxIo};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Framed;
use wire::auth::Purpose;
use wire::caps::Caps;
use wire::codec::{CodecError, MessageCodec};
use wire::message::{
    Control, Frame, Hello, Login, LoginAccepted, LoginError, NewWorkConn, NONCE_LEN,
    OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION, WORK_CONN_MARKER,
};

/// frps refused our version and speaks this older one, which we speak too:
/// log in again offering it (an frps before protocol 5 does not agree on a
/// version; it refuses any other than its own).
#[derive(Debug, thiserror::Error)]
#[error("frps speaks protocol {0}")]
pub(crate) struct SpeaksOlder(pub u16);

/// What a login agreed on.
pub(crate) struct LoggedIn {
    pub ctrl: ControlStream<MuxStream>,
    pub accepted: LoginAccepted,
    /// The protocol version both sides speak from now on.
    pub version: u16,
    /// What frps can do.
    pub caps: Caps,
    /// The server's nonce this login proved; visit proofs cover it too.
    pub nonce: [u8; wire::message::NONCE_LEN],
}

fn proof(
    config: &ClientConfig,
    purpose: Purpose,
    nonce: &[u8; NONCE_LEN],
    binding: &Binding,
    run_id: &str,
) -> [u8; 32] {
    config
        .auth
        .token
        .prove(purpose, nonce, binding, run_id, &config.user)
}

/// The login exchange on a fresh control stream, offering protocol
/// `offer`; from its end on, the stream carries control messages.
pub(crate) async fn control(
    config: &ClientConfig,
    stream: MuxStream,
    binding: &Binding,
    run_id: &str,
    addr: &str,
    offer: u16,
) -> Result<LoggedIn> {
    let mut ctrl = Framed::new(stream, MessageCodec::<Hello>::for_version(offer));
    ctrl.send(Hello::Client { version: offer })
        .await
        .context("sending ClientHello")?;
    let gone = || anyhow!("server {addr} closed the connection during login");
    let (version, nonce) = match ctrl.next().await {
        Some(Ok(Hello::Server { version, nonce })) => (agreed(version, addr)?, nonce),
        Some(Ok(Hello::LoginResp(resp))) => match resp.result {
            Err(LoginError::VersionMismatch { server, .. })
                if (OLDEST_PROTOCOL_VERSION..offer).contains(&server) =>
            {
                return Err(SpeaksOlder(server).into())
            }
            Err(e) => bail!("login rejected: {}", Escaped(&e.to_string())),
            Ok(_) => bail!("server accepted a login that was never sent"),
        },
        Some(Ok(other)) => bail!("protocol error: expected ServerHello, got {}", other.kind()),
        Some(Err(CodecError::Io(e))) if mux::is_session_gone(&e) => return Err(gone()),
        Some(Err(e)) => {
            return Err(anyhow!(e).context(format!("{addr} does not speak this protocol")))
        }
        None => return Err(gone()),
    };
    ctrl.codec_mut().set_version(version);
    ctrl.send(Hello::Login(Login {
        version,
        hostname: net::util::hostname(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        proof: proof(config, Purpose::Login, &nonce, binding, run_id),
        user: config.user.clone(),
        run_id: run_id.to_owned(),
        tcp_mux: config.transport.tcp_mux,
        client_id: config.client_id.clone(),
        metas: config.metadatas.clone(),
        caps: wire::caps::ours(),
    }))
    .await
    .context("sending Login")?;
    let accepted = match ctrl.next().await {
        Some(Ok(Hello::LoginResp(resp))) => resp
            .result
            .map_err(|e| anyhow!("login rejected: {}", Escaped(&e.to_string())))?,
        Some(Ok(other)) => bail!("protocol error: expected LoginResp, got {}", other.kind()),
        Some(Err(CodecError::Io(e))) if mux::is_session_gone(&e) => return Err(gone()),
        Some(Err(e)) => return Err(anyhow!(e).context("reading LoginResp")),
        None => return Err(gone()),
    };
    if version < 4 && !(config.client_id.is_empty() && config.metadatas.is_empty()) {
        tracing::info!("frps speaks protocol {version}, which carries no clientID or metadatas: they are not sent");
    }
    let caps = Caps::of_peer(version, &accepted.caps);
    // Bytes after the LoginResp stay buffered for the control codec.
    let ctrl = ctrl.map_codec(|_| MessageCodec::<Control>::for_version(version));
    Ok(LoggedIn {
        ctrl,
        accepted,
        version,
        caps,
        nonce,
    })
}

/// The version frps chose, if we speak it.
fn agreed(version: u16, addr: &str) -> Result<u16> {
    if (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Ok(version);
    }
    bail!(
        "server {addr} answered with protocol {version}; this frpc speaks \
         {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}: upgrade the older of the two"
    )
}

/// Joins a fresh work connection to session `run_id`.
pub(crate) async fn work_conn(
    config: &ClientConfig,
    io: &mut BoxIo,
    binding: &Binding,
    run_id: &str,
) -> Result<()> {
    io.write_all(&[WORK_CONN_MARKER]).await?;
    io.flush().await?;
    let nonce = match framed::read_message(io).await? {
        Some(Hello::Server { nonce, .. }) => nonce,
        Some(other) => bail!("expected ServerHello, got {}", other.kind()),
        None => bail!("server closed the work connection"),
    };
    let hello = Hello::NewWorkConn(NewWorkConn {
        run_id: run_id.to_owned(),
        user: config.user.clone(),
        proof: proof(config, Purpose::WorkConn, &nonce, binding, run_id),
    });
    framed::write_message(io, &hello).await?;
    io.flush().await?;
    Ok(())
}
