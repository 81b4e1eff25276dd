//! A work stream from frps: read its header, hand it to its proxy.

use std::sync::Arc;
use std::time::Duration;

use mux::MuxStream;
use net::framed;
use net::logging::Field;
use net::tunnel::Tunnel;
use tracing::warn;
use wire::message::{StartWork, WorkHeader};

use crate::proxy::ProxyManager;

/// Bound on reading the header.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn handle(mut stream: MuxStream, proxies: Arc<ProxyManager>) {
    let header = match tokio::time::timeout(STEP_TIMEOUT, framed::read_message(&mut stream)).await {
        Ok(Ok(Some(WorkHeader::Start(h)))) => h,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn!("bad work stream header: {e}");
            return;
        }
        Err(_) => {
            warn!("work stream sent no header within {STEP_TIMEOUT:?}");
            return;
        }
    };
    serve(Tunnel::Mux(stream), header, &proxies).await
}

/// Delivers a work stream to the proxy its header names; it ends with the
/// session, or sooner when a reload closes its proxy.
pub(crate) async fn serve(work: Tunnel, header: StartWork, proxies: &ProxyManager) {
    let name = header.proxy_name.clone();
    match proxies.serve(work, header) {
        Some(fut) => fut.await,
        None => warn!(
            proxy = %Field(&name),
            "server forwarded a connection for a proxy this client does not have"
        ),
    }
}
