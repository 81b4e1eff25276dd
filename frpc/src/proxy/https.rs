//! `type = "https"`: frps routes TLS connections to this proxy by the
//! server name in their ClientHello; each arrives as one work stream and is
//! carried, TLS untouched, to the local HTTPS service.

use std::sync::Arc;

use config::HttpsProxy;
use futures::future::BoxFuture;
use futures::FutureExt;
use net::logging::Escaped;
use net::stats::Meters;
use net::tunnel::Tunnel;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};
use wire::message::{HttpsSpec, ProxySpec, StartWork};

use super::tcp::dial_and_carry;
use super::ClientProxy;

pub(super) struct Https {
    cfg: HttpsProxy,
    local: String,
}

impl Https {
    pub fn new(cfg: HttpsProxy) -> Self {
        let local = cfg.local_addr();
        Https { cfg, local }
    }
}

impl ClientProxy for Https {
    fn spec(&self) -> ProxySpec {
        ProxySpec::Https(HttpsSpec {
            custom_domains: self.cfg.custom_domains.clone(),
            subdomain: self.cfg.subdomain.clone(),
        })
    }

    fn serve(
        self: Arc<Self>,
        work: Tunnel,
        header: StartWork,
        meters: Meters,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let span = info_span!("conn", proxy = %Escaped(&self.cfg.name), src = %header.src);
        async move { dial_and_carry(&self.local, work, meters, stop).await }
            .instrument(span)
            .boxed()
    }
}
