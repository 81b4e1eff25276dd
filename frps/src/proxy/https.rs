//! `type = "https"`: no port of its own; the proxy claims names on the
//! server's HTTPS virtual host port (`vhost::https`), which routes each
//! connection by its ClientHello and carries it like a TCP connection.

use net::logging::Escaped;
use tracing::info;
use wire::message::{HttpsSpec, ProxyError};

use super::ProxyCtx;

pub(super) async fn start(spec: &HttpsSpec, ctx: ProxyCtx) -> Result<String, ProxyError> {
    let cfg = &ctx.server.config;
    if cfg.vhost_https_port == 0 {
        return Err(ProxyError::Refused(
            "https proxies are off on this server (vhostHTTPSPort is 0)".into(),
        ));
    }
    let mut names = spec.custom_domains.clone();
    if !spec.subdomain.is_empty() {
        if cfg.sub_domain_host.is_empty() {
            return Err(ProxyError::Refused(
                "subdomain needs subDomainHost on the server, which is not set".into(),
            ));
        }
        names.push(format!("{}.{}", spec.subdomain, cfg.sub_domain_host));
    }
    let Some(first) = names.first().cloned() else {
        return Err(ProxyError::Refused("set customDomains or subdomain".into()));
    };
    let routes = ctx.server.https_routes.clone();
    routes.add(&names, ctx.clone()).map_err(|taken| {
        ProxyError::Refused(format!("domain {taken} is already taken by another proxy"))
    })?;
    info!(
        proxy = %Escaped(&ctx.name),
        names = %Escaped(&names.join(", ")),
        "https names routed"
    );
    // The names are free again as soon as the proxy stops.
    let stop = ctx.stop.clone();
    ctx.tasks.spawn(async move {
        stop.cancelled().await;
        routes.remove(&names);
    });
    Ok(format!("{first}:{}", cfg.vhost_https_port))
}
