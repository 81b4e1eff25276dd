//! `type = "tcp"`: a public listener whose connections are carried to frpc
//! as work streams.

use std::net::SocketAddr;
use std::time::Duration;

use net::gate::Gate;
use net::logging::Field;
use net::tunnel::Local;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info_span, warn, Instrument};
use wire::message::{ProxyError, TcpSpec};

use super::ports::{self, Bound};
use super::{open_work, ProxyCtx};

pub(super) async fn start(spec: &TcpSpec, ctx: ProxyCtx) -> Result<SocketAddr, ProxyError> {
    let listener = ports::bind_tcp(&ctx.server, spec.remote_port).await?;
    let addr = listener
        .port
        .local_addr()
        .map_err(|e| ProxyError::Bind(e.to_string()))?;
    let span = info_span!("proxy", name = %Field(&ctx.name), %addr);
    ctx.tasks
        .clone()
        .spawn(accept_loop(listener, addr, ctx).instrument(span));
    Ok(addr)
}

async fn accept_loop(listener: Bound<TcpListener>, addr: SocketAddr, ctx: ProxyCtx) {
    // Users' connections take their descriptors from the users' share,
    // with no cap per address (as frp: a whole office behind one NAT
    // address, or a load test, may use one tcp proxy).
    let gate = Gate::any_address(&ctx.server.public);
    loop {
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            accepted = listener.port.accept() => match accepted {
                Ok((user, src)) => {
                    let span = info_span!("conn", %src);
                    let pass = match gate.admit(src.ip()) {
                        Ok(pass) => pass,
                        Err(why) => {
                            debug!(%src, "closed at once: {why}");
                            continue;
                        }
                    };
                    let Ok(permit) = ctx.budget.permits.clone().try_acquire_owned() else {
                        warn!(
                            %src,
                            "client already has {} connections open (transport.maxStreamsPerClient); \
                             closing this one",
                            ctx.budget.max
                        );
                        continue;
                    };
                    // The address the user reached (for PROXY protocol),
                    // not the wildcard the listener is bound to.
                    let dst = user.local_addr().unwrap_or(addr);
                    let serve = serve_user(user, src, dst, ctx.clone(), permit);
                    ctx.tasks.spawn(async move {
                        let _pass = pass;
                        serve.await
                    }.instrument(span));
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    // The port is free before the proxy counts as released (`Proxy::close`).
    drop(listener);
    drop(ctx);
}

pub(crate) async fn serve_user(
    user: TcpStream,
    src: SocketAddr,
    dst: SocketAddr,
    ctx: ProxyCtx,
    // Held for the life of the work stream.
    _permit: OwnedSemaphorePermit,
) {
    user.set_nodelay(true).ok();
    let work = match open_work(&ctx, src, dst).await {
        Ok(w) => w,
        Err(e) => {
            warn!("{e:#}");
            return;
        }
    };
    tokio::select! {
        _ = ctx.stop.cancelled() => debug!("closed because the proxy stopped"),
        r = work.carry(Local::Tcp(user)) => match r {
            Ok(c) => debug!(up = c.into_tunnel, down = c.out_of_tunnel, "connection closed"),
            Err(e) => debug!("connection ended: {e}"),
        }
    }
}
