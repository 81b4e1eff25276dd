//! `type = "http"`: no port of its own; the proxy claims (name, location)
//! pairs on the server's HTTP virtual host port (`vhost::http`), which does
//! the HTTP and opens a tunnel stream per request.

use net::logging::Field;
use tracing::info;
use wire::message::{HttpSpec, ProxyError};

use super::ProxyCtx;
use crate::vhost::http::HttpRoute;

pub(super) async fn start(spec: &HttpSpec, ctx: ProxyCtx) -> Result<String, ProxyError> {
    let cfg = &ctx.server.config;
    if cfg.vhost_http_port == 0 {
        return Err(ProxyError::Refused(
            "http proxies are off on this server (vhostHTTPPort is 0)".into(),
        ));
    }
    let names = super::https::names(&spec.custom_domains, &spec.subdomain, &cfg.sub_domain_host)?;
    let locations = if spec.locations.is_empty() {
        vec!["/".to_string()]
    } else {
        spec.locations.clone()
    };
    let routes = ctx.server.vhosts.http.clone();
    let route = HttpRoute::new(std::sync::Arc::new(ctx.clone()), spec.clone());
    routes.add(&names, &locations, &route).map_err(|taken| {
        ProxyError::Refused(format!("domain {taken} is already taken by another proxy"))
    })?;
    info!(
        proxy = %Field(&ctx.name),
        names = %Field(&names.join(", ")),
        locations = %Field(&locations.join(", ")),
        "http names routed"
    );
    let stop = ctx.stop.clone();
    ctx.tasks.spawn(async move {
        stop.cancelled().await;
        routes.remove(&route);
    });
    Ok(format!("{}:{}", names[0], cfg.vhost_http_port))
}
