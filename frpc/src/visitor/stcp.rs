//! stcp visitors: each local TCP connection becomes one visit stream and is
//! carried through frps to the private proxy's local service.

use anyhow::{Context, Result};
use config::VisitorConfig;
use net::stats::Meters;
use net::tunnel::{Local, Tunnel};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{Said, Shared};
use crate::proxy::Phase;

pub(super) async fn run(
    cfg: &VisitorConfig,
    shared: &Shared,
    set: &impl Fn(Phase, String),
    stop: &CancellationToken,
) -> Result<()> {
    // A negative bindPort: no listener, only connections other visitors
    // hand over (an xtcp visitor's fallbackTo).
    let listener = match cfg.bind() {
        Some(addr) => {
            let l = TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            info!(%addr, "stcp visitor listening");
            Some(l)
        }
        None => None,
    };
    let mut handed = shared.take_handoffs(&cfg.name);
    let said = std::sync::Arc::new(Said::default());
    set(Phase::Running, String::new());
    loop {
        let accept = async {
            match &listener {
                Some(l) => l.accept().await.map(|(tcp, from)| (tcp, Some(from))),
                None => std::future::pending().await,
            }
        };
        let (tcp, from) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            Some(tcp) = handed.rx.recv() => (tcp, None),
            r = accept => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (cfg, shared, stop, said) = (cfg.clone(), shared.clone(), stop.clone(), said.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = carry(&cfg, &shared, tcp, &said) => {}
            }
            debug!(?from, "visitor connection closed");
        });
    }
}

async fn carry(cfg: &VisitorConfig, shared: &Shared, tcp: TcpStream, said: &Said) {
    let stream = match shared.open(cfg).await {
        Ok(s) => s,
        Err(e) => {
            said.warn(format!("visitor connection closed: {e:#}"));
            return;
        }
    };
    said.clear();
    tcp.set_nodelay(true).ok();
    match Tunnel::Mux(stream)
        .carry(Local::Tcp(tcp), Meters::default())
        .await
    {
        Ok(c) => debug!(up = c.into_tunnel, down = c.out_of_tunnel, "visit ended"),
        Err(e) => debug!("visit ended: {e}"),
    }
}
