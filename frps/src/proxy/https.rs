//! `type = "https"`: no port of its own; the proxy claims names on the
//! server's HTTPS virtual host port (`vhost::https`), which routes each
//! connection by its ClientHello and carries it like a TCP connection.

use net::logging::{Escaped, Field};
use tracing::info;
use wire::message::{HttpsSpec, ProxyError};

use super::ProxyCtx;

/// The names a proxy claims: its custom domains and its subdomain under
/// `subDomainHost`; never empty.
pub(super) fn names(
    custom_domains: &[String],
    subdomain: &str,
    sub_domain_host: &str,
) -> Result<Vec<String>, ProxyError> {
    let refuse = |why: String| Err(ProxyError::Refused(why));
    let host = crate::vhost::normalize(sub_domain_host);
    for domain in custom_domains {
        let d = crate::vhost::normalize(domain);
        let bare = d.strip_prefix("*.").unwrap_or(&d);
        if crate::vhost::host_name(bare).is_none() {
            return refuse(format!(
                "custom domain \"{}\" is not a host name",
                Escaped(domain)
            ));
        }
        // subDomainHost's names are handed out by `subdomain` (as frp).
        if !host.is_empty() && (d == host || d.ends_with(&format!(".{host}"))) {
            return refuse(format!(
                "custom domain {} should not belong to subdomain host {host}: use subdomain",
                Escaped(domain)
            ));
        }
    }
    let mut names = custom_domains.to_vec();
    if !subdomain.is_empty() {
        if sub_domain_host.is_empty() {
            return refuse("subdomain needs subDomainHost on the server, which is not set".into());
        }
        if subdomain.contains(['.', '*']) {
            return refuse("'.' and '*' are not supported in subdomain".into());
        }
        let name = format!("{subdomain}.{sub_domain_host}");
        if crate::vhost::host_name(&name).is_none() {
            return refuse(format!(
                "subdomain \"{}\" makes no host name",
                Escaped(subdomain)
            ));
        }
        names.push(name);
    }
    if names.is_empty() {
        return Err(ProxyError::Refused("set customDomains or subdomain".into()));
    }
    Ok(names)
}

pub(super) async fn start(spec: &HttpsSpec, ctx: ProxyCtx) -> Result<String, ProxyError> {
    let cfg = &ctx.server.config;
    if cfg.vhost_https_port == 0 {
        return Err(ProxyError::Refused(
            "https proxies are off on this server (vhostHTTPSPort is 0)".into(),
        ));
    }
    let names = names(&spec.custom_domains, &spec.subdomain, &cfg.sub_domain_host)?;
    let first = names[0].clone();
    let routes = ctx.server.vhosts.https.clone();
    routes
        .add(&names, std::sync::Arc::new(ctx.clone()))
        .map_err(|taken| {
            ProxyError::Refused(format!("domain {taken} is already taken by another proxy"))
        })?;
    info!(
        proxy = %Field(&ctx.name),
        names = %Field(&names.join(", ")),
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
