//! Kinds whose work streams are whole connections — `tcp`, and `http` and
//! `https`, where frps does the routing and the HTTP: each stream is carried
//! to a new connection to the local service.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use net::logging::Field;
use net::stats::Metered;
use net::tunnel::{Local, Tunnel};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};
use wire::message::{ProxySpec, StartWork};

use super::ClientProxy;

/// Bound on dialing the local service.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Forward {
    name: String,
    local: String,
    spec: ProxySpec,
}

impl Forward {
    pub fn new(name: &str, local: String, spec: ProxySpec) -> Self {
        Forward {
            name: name.to_owned(),
            local,
            spec,
        }
    }
}

impl ClientProxy for Forward {
    fn spec(&self) -> ProxySpec {
        self.spec.clone()
    }

    fn serve(
        self: Arc<Self>,
        work: Metered<Tunnel>,
        header: StartWork,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let span = info_span!("conn", proxy = %Field(&self.name), src = %header.src);
        async move { dial_and_carry(&self.local, work, stop).await }
            .instrument(span)
            .boxed()
    }
}

/// Dials the local service at `local` and carries `work` to it.
async fn dial_and_carry(local: &str, work: Metered<Tunnel>, stop: CancellationToken) {
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(local)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            warn!(%local, "local service unreachable, closing the user connection: {e}");
            return;
        }
        Err(_) => {
            warn!(%local, "local service did not answer within {DIAL_TIMEOUT:?}, closing the user connection");
            return;
        }
    };
    tcp.set_nodelay(true).ok();
    tokio::select! {
        _ = stop.cancelled() => debug!("closed with the session"),
        r = work.carry(Local::Tcp(tcp)) => match r {
            Ok(c) => debug!(up = c.into_tunnel, down = c.out_of_tunnel, "connection closed"),
            Err(e) => debug!("connection ended: {e}"),
        }
    }
}
