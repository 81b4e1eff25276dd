//! One forwarded user connection: read the work header, dial the local
//! service, relay both ways.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shared::config::ProxyConfig;
use shared::framed;
use shared::logging::Escaped;
use shared::mux::MuxStream;
use shared::protocol::{Message, StartWork};
use shared::relay::Work;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

/// Bound on reading the header and on dialing the local service.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn handle(
    mut stream: MuxStream,
    proxies: Arc<HashMap<String, ProxyConfig>>,
    stop: CancellationToken,
) {
    let header = match tokio::time::timeout(STEP_TIMEOUT, framed::read_message(&mut stream)).await {
        Ok(Ok(Some(Message::StartWork(h)))) => h,
        Ok(Ok(Some(other))) => {
            warn!(
                "work stream began with {} instead of StartWork",
                other.kind()
            );
            return;
        }
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
    serve(Work::Mux(stream), header, &proxies, stop).await
}

/// Dials the proxy's local service and relays `stream` to it.
pub(crate) async fn serve(
    work: Work,
    header: StartWork,
    proxies: &HashMap<String, ProxyConfig>,
    stop: CancellationToken,
) {
    let Some(proxy) = proxies.get(&header.proxy_name) else {
        warn!(proxy = %Escaped(&header.proxy_name), "server forwarded a connection for a proxy this client does not have");
        return;
    };
    let local = proxy.local_addr();
    let span = info_span!("conn", proxy = %proxy.name, src = %Escaped(&header.src_addr));
    async move {
        let tcp = match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(&local)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                warn!(local = %local, "local service unreachable, closing the user connection: {e}");
                return;
            }
            Err(_) => {
                warn!(local = %local, "local service did not answer within {STEP_TIMEOUT:?}, closing the user connection");
                return;
            }
        };
        tcp.set_nodelay(true).ok();
        tokio::select! {
            _ = stop.cancelled() => debug!("closed with the session"),
            r = work.relay(tcp) => match r {
                Ok((up, down)) => debug!(down, up, "connection closed"),
                Err(e) => debug!("connection ended: {e}"),
            }
        }
    }
    .instrument(span)
    .await
}
