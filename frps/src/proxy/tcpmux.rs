//! `type = "tcpmux"` (`multiplexer = "httpconnect"`): the proxy claims
//! names on the server's tcpmux port (`vhost::tcpmux`), where users open
//! with `CONNECT name:port`.

use std::sync::Arc;

use net::logging::Field;
use tracing::info;
use wire::message::{ProxyError, TcpmuxSpec};

use super::ProxyCtx;
use crate::vhost::tcpmux::TcpmuxRoute;

pub(super) async fn start(spec: &TcpmuxSpec, ctx: ProxyCtx) -> Result<String, ProxyError> {
    let cfg = &ctx.server.config;
    if cfg.tcpmux_http_connect_port == 0 {
        return Err(ProxyError::Refused(
            "tcpmux proxies are off on this server (tcpmuxHTTPConnectPort is 0)".into(),
        ));
    }
    let names = super::https::names(&spec.custom_domains, &spec.subdomain, &cfg.sub_domain_host)?;
    let routes = ctx.server.vhosts.tcpmux.clone();
    let route = Arc::new(TcpmuxRoute {
        backend: Arc::new(ctx.clone()),
        spec: spec.clone(),
    });
    routes
        .add(&names, &["/".to_string()], &route)
        .map_err(|taken| {
            ProxyError::Refused(format!("domain {taken} is already taken by another proxy"))
        })?;
    info!(
        proxy = %Field(&ctx.name),
        names = %Field(&names.join(", ")),
        "tcpmux names routed"
    );
    let stop = ctx.stop.clone();
    ctx.tasks.spawn(async move {
        stop.cancelled().await;
        routes.remove(&route);
    });
    Ok(format!("{}:{}", names[0], cfg.tcpmux_http_connect_port))
}
