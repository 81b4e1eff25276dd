//! Where a proxy gets the connection to carry a user connection to frpc:
//! a new yamux stream, or (`tcpMux = false` on the client) a separate work
//! connection the client opened in advance or on request.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use shared::auth::Purpose;
use shared::framed::{self, ControlWriter};
use shared::mux::Opener;
use shared::protocol::{Message, NewWorkConn, PROTOCOL_VERSION};
use shared::relay::Work;
use shared::transport::BoxIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Mutex};
use tracing::debug;

use crate::Server;

/// How long a user connection waits for the client to deliver a work
/// connection it was asked for.
const WORK_CONN_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(crate) enum WorkSource {
    Mux(Opener),
    Pool(Arc<Pool>),
}

pub(crate) struct Pool {
    idle: Mutex<mpsc::Receiver<BoxIo>>,
    ctrl: ControlWriter,
}

impl Pool {
    pub fn new(idle: mpsc::Receiver<BoxIo>, ctrl: ControlWriter) -> Self {
        Pool {
            idle: Mutex::new(idle),
            ctrl,
        }
    }
}

impl WorkSource {
    /// A connection to frpc for one user connection.
    pub async fn get(&self) -> Result<Work> {
        match self {
            WorkSource::Mux(opener) => Ok(Work::Mux(opener.open().await?)),
            WorkSource::Pool(pool) => {
                let mut idle = pool.idle.lock().await;
                if let Ok(io) = idle.try_recv() {
                    return Ok(Work::Conn(io));
                }
                // Pool empty: ask for one and wait for it.
                pool.ctrl.try_send(Message::ReqWorkConn { count: 1 })?;
                match tokio::time::timeout(WORK_CONN_WAIT, idle.recv()).await {
                    Ok(Some(io)) => Ok(Work::Conn(io)),
                    Ok(None) => bail!("client session ended"),
                    Err(_) => bail!("client sent no work connection within {WORK_CONN_WAIT:?}"),
                }
            }
        }
    }
}

/// A new connection that announced itself as a work connection: prove it,
/// then queue it with its session.
pub(crate) async fn accept_work_conn(
    server: &Server,
    mut io: BoxIo,
    binding: &[u8; 32],
    deadline: tokio::time::Instant,
) -> Result<()> {
    let nonce = shared::auth::new_nonce();
    let hello = Message::ServerHello {
        version: PROTOCOL_VERSION,
        nonce,
    };
    let exchange = async {
        framed::write_message(&mut io, &hello).await?;
        io.flush().await?;
        framed::read_message(&mut io).await
    };
    let msg = match tokio::time::timeout_at(deadline, exchange).await {
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => bail!("rejected work connection: {e}"),
        Err(_) => bail!("rejected work connection: no NewWorkConn in time"),
    };
    let Message::NewWorkConn(NewWorkConn {
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
        .config
        .auth
        .token
        .verify(Purpose::WorkConn, &nonce, binding, &run_id, &user, &proof)
    {
        bail!("rejected work connection: invalid token");
    }
    let Some((owner, queue)) = server.registry.work_queue(&run_id) else {
        bail!("rejected work connection: no non-multiplexed session with that run id");
    };
    if owner != user {
        bail!("rejected work connection: session belongs to another user");
    }
    if queue.try_send(io).is_err() {
        debug!("work connection pool is full (transport.maxPoolCount); closing the extra one");
    }
    Ok(())
}
