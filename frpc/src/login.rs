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
use wire::codec::{CodecError, MessageCodec};
use wire::message::{
    Control, Frame, Hello, Login, LoginAccepted, NewWorkConn, NONCE_LEN, PROTOCOL_VERSION,
    WORK_CONN_MARKER,
};

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

/// The login exchange on a fresh control stream; from its end on, the
/// stream carries control messages.
pub(crate) async fn control(
    config: &ClientConfig,
    stream: MuxStream,
    binding: &Binding,
    run_id: &str,
    addr: &str,
) -> Result<(ControlStream<MuxStream>, LoginAccepted)> {
    let mut ctrl = Framed::new(stream, MessageCodec::<Hello>::new());
    ctrl.send(Hello::Client {
        version: PROTOCOL_VERSION,
    })
    .await
    .context("sending ClientHello")?;
    let gone = || anyhow!("server {addr} closed the connection during login");
    let nonce = match ctrl.next().await {
        Some(Ok(Hello::Server { nonce, .. })) => nonce,
        Some(Ok(Hello::LoginResp(resp))) => match resp.result {
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
    ctrl.send(Hello::Login(Login {
        version: PROTOCOL_VERSION,
        hostname: net::util::hostname(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        proof: proof(config, Purpose::Login, &nonce, binding, run_id),
        user: config.user.clone(),
        run_id: run_id.to_owned(),
        tcp_mux: config.transport.tcp_mux,
        client_id: config.client_id.clone(),
        metas: config.metadatas.clone(),
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
    // Bytes after the LoginResp stay buffered for the control codec.
    Ok((ctrl.map_codec(|_| MessageCodec::<Control>::new()), accepted))
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
