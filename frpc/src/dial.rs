//! The TCP connection to frps, as frp's `transport.*` asks: names resolved
//! by `dnsServer` (or the system), from `connectServerLocalIP`, through
//! `proxyURL` (HTTP CONNECT or SOCKS5, or the `http_proxy` environment
//! variable, as frp), within `dialServerTimeout`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use config::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest HTTP CONNECT reply head read from a proxy.
const MAX_REPLY: usize = 8 * 1024;

/// A proxy between frpc and frps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyUrl {
    socks5: bool,
    host: String,
    port: u16,
    auth: Option<(String, String)>,
}

impl ProxyUrl {
    /// `http://[user:pass@]host:port` or `socks5://…`; `None` for "".
    pub(crate) fn parse(url: &str) -> Result<Option<ProxyUrl>> {
        if url.is_empty() {
            return Ok(None);
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| anyhow!("proxy URL {url:?} has no scheme (http:// or socks5://)"))?;
        let socks5 = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "socks5" | "socks5h" => true,
            other => bail!("proxy URL scheme {other:?} is not supported (http, socks5)"),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((u.to_owned(), p.to_owned())), hp)
            }
            None => (None, rest),
        };
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("proxy URL {url:?} has no port"))?;
        let port = port
            .parse()
            .with_context(|| format!("proxy URL {url:?}: bad port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Some(ProxyUrl {
            socks5,
            host,
            port,
            auth,
        }))
    }
}

impl std::fmt::Display for ProxyUrl {
    /// Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.socks5 { "socks5" } else { "http" };
        let host = config::join_host_port(&self.host, self.port);
        match &self.auth {
            Some((user, _)) => write!(f, "{scheme}://{user}@{host}"),
            None => write!(f, "{scheme}://{host}"),
        }
    }
}

/// The proxy frpc goes through: `transport.proxyURL`, else `http_proxy`.
pub(crate) fn proxy_of(cfg: &ClientConfig) -> Result<Option<ProxyUrl>> {
    match cfg.transport.proxy_url.as_str() {
        "" => ProxyUrl::parse(&std::env::var("http_proxy").unwrap_or_default())
            .context("the http_proxy environment variable"),
        url => ProxyUrl::parse(url).context("transport.proxyURL"),
    }
}

/// Names to addresses: the system's resolver, or `dnsServer`'s.
pub(crate) enum Resolver {
    System,
    Server(Box<hickory_resolver::TokioResolver>, SocketAddr),
}

impl Resolver {
    pub(crate) fn new(cfg: &ClientConfig) -> Result<Resolver> {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let Some(server) = cfg.dns_server() else {
            return Ok(Resolver::System);
        };
        let mut ns = NameServerConfig::udp_and_tcp(server.ip());
        for c in &mut ns.connections {
            c.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let resolver = hickory_resolver::TokioResolver::builder_with_config(
            config,
            TokioRuntimeProvider::default(),
        )
        .build()
        .context("dnsServer")?;
        Ok(Resolver::Server(Box::new(resolver), server))
    }

    async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match self {
            Resolver::System => Ok(tokio::net::lookup_host((host, port))
                .await
                .with_context(|| format!("cannot resolve {host}"))?
                .collect()),
            Resolver::Server(r, server) => Ok(r
                .lookup_ip(host)
                .await
                .with_context(|| format!("cannot resolve {host} with dnsServer {server}"))?
                .iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()),
        }
    }
}

/// A TCP connection to `host:port` (frps), as the config says.
pub(crate) async fn connect(
    cfg: &ClientConfig,
    proxy: Option<&ProxyUrl>,
    dns: &Resolver,
) -> Result<TcpStream> {
    let limit = Duration::from_secs(cfg.transport.dial_server_timeout.max(1));
    let (host, port) = (cfg.server_addr.as_str(), cfg.server_port);
    let local = local_ip(cfg)?;
    let dial = async {
        match proxy {
            None => tcp(dns, host, port, local).await,
            Some(p) => {
                let tcp = tcp(dns, &p.host, p.port, local)
                    .await
                    .with_context(|| format!("proxy {}:{}", p.host, p.port))?;
                match p.socks5 {
                    true => socks5(tcp, p, host, port).await,
                    false => http_connect(tcp, p, host, port).await,
                }
                .with_context(|| format!("through proxy {}:{}", p.host, p.port))
            }
        }
    };
    tokio::time::timeout(limit, dial)
        .await
        .map_err(|_| anyhow!("no connection within {limit:?} (transport.dialServerTimeout)"))?
}

fn local_ip(cfg: &ClientConfig) -> Result<Option<IpAddr>> {
    match cfg.transport.connect_server_local_ip.as_str() {
        "" => Ok(None),
        ip => ip
            .parse()
            .map(Some)
            .with_context(|| format!("transport.connectServerLocalIP {ip:?} is not an IP address")),
    }
}

/// TCP to the first address of `host` that answers, from `local`.
async fn tcp(dns: &Resolver, host: &str, port: u16, local: Option<IpAddr>) -> Result<TcpStream> {
    let mut addrs = dns.lookup(host, port).await?;
    addrs.retain(|a| local.is_none_or(|l| l.is_ipv4() == a.is_ipv4()));
    let mut last = anyhow!("{host} has no address of the family of connectServerLocalIP");
    for addr in addrs {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }?;
        if let Some(ip) = local {
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("cannot bind connectServerLocalIP {ip}"))?;
        }
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = anyhow!(e).context(format!("cannot connect to {addr}")),
        }
    }
    Err(last)
}

async fn socks5(tcp: TcpStream, p: &ProxyUrl, host: &str, port: u16) -> Result<TcpStream> {
    use tokio_socks::tcp::Socks5Stream;
    let stream = match &p.auth {
        Some((user, pass)) => {
            Socks5Stream::connect_with_password_and_socket(tcp, (host, port), user, pass).await
        }
        None => Socks5Stream::connect_with_socket(tcp, (host, port)).await,
    }
    .context("SOCKS5")?;
    Ok(stream.into_inner())
}

async fn http_connect(
    mut tcp: TcpStream,
    p: &ProxyUrl,
    host: &str,
    port: u16,
) -> Result<TcpStream> {
    let target = config::join_host_port(host, port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, pass)) = &p.auth {
        let auth = net::web::basic_auth(user, pass);
        req.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await?;
    // Byte by byte up to the blank line: frps speaks first after TLS starts,
    // so nothing of the tunnel may be read here.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_REPLY {
            bail!("the proxy's reply head is over {MAX_REPLY} bytes");
        }
        let b = tcp
            .read_u8()
            .await
            .context("the proxy closed before answering")?;
        head.push(b);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut reply = httparse::Response::new(&mut headers);
    reply
        .parse(&head)
        .context("the proxy's reply is not HTTP")?;
    match reply.code {
        Some(200) => Ok(tcp),
        Some(code) => bail!(
            "HTTP CONNECT refused: {code} {}",
            net::logging::Escaped(reply.reason.unwrap_or(""))
        ),
        None => bail!("the proxy's reply has no status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = ProxyUrl::parse("http://u:p@127.0.0.1:3128")
            .expect("ok")
            .expect("some");
        assert_eq!(
            p,
            ProxyUrl {
                socks5: false,
                host: "127.0.0.1".into(),
                port: 3128,
                auth: Some(("u".into(), "p".into()))
            }
        );
        let p = ProxyUrl::parse("socks5://[::1]:1080/")
            .expect("ok")
            .expect("some");
        assert_eq!((p.socks5, p.host.as_str(), p.auth), (true, "::1", None));
        assert!(ProxyUrl::parse("").expect("ok").is_none());
        assert!(ProxyUrl::parse("ntlm://h:1").is_err());
        assert!(ProxyUrl::parse("http://h").is_err());
    }
}
