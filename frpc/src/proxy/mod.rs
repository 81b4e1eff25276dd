//! Proxy kinds on the client: what frps is told about a proxy, and what a
//! work stream for it is delivered to. One module per kind; [`build`] is the
//! one place that dispatches on the kind. Adding a kind: a module here with
//! a type implementing [`ClientProxy`], and one arm in [`build`].

mod tcp;
mod udp;

use std::collections::HashMap;
use std::sync::Arc;

use config::{ClientConfig, HttpProxy, ProxyConfig};
use futures::future::BoxFuture;
use net::stats::{Meters, Traffic};
use net::tunnel::Tunnel;
use tokio_util::sync::CancellationToken;
use wire::message::{
    HttpSpec, HttpsSpec, NewProxy, ProxyOpts, ProxySpec, StartWork, TcpSpec, TcpmuxSpec,
};

/// A configured proxy, ready to register and to serve work streams.
pub(crate) trait ClientProxy: Send + Sync {
    /// What frps needs to know to serve it.
    fn spec(&self) -> ProxySpec;
    /// Carries one work stream (a user connection, or all of a UDP
    /// proxy's datagrams) to the local service.
    fn serve(
        self: Arc<Self>,
        work: Tunnel,
        header: StartWork,
        meters: Meters,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

/// Limits a session agreed with the server that kinds may need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Agreed {
    /// The smaller of ours and the server's `udpPacketSize`.
    pub udp_packet_size: usize,
}

/// The one match on the kind.
fn build(cfg: &ProxyConfig, agreed: Agreed) -> Arc<dyn ClientProxy> {
    match cfg {
        ProxyConfig::Tcp(p) => {
            let spec = ProxySpec::Tcp(TcpSpec {
                remote_port: p.remote_port,
            });
            Arc::new(tcp::Forward::new(&p.name, p.local_addr(), spec))
        }
        ProxyConfig::Udp(p) => Arc::new(udp::Udp::new(p.clone(), agreed)),
        ProxyConfig::Https(p) => {
            let spec = ProxySpec::Https(HttpsSpec {
                custom_domains: p.custom_domains.clone(),
                subdomain: p.subdomain.clone(),
            });
            Arc::new(tcp::Forward::new(&p.name, p.local_addr(), spec))
        }
        ProxyConfig::Http(p) => Arc::new(tcp::Forward::new(&p.name, p.local_addr(), http_spec(p))),
        ProxyConfig::Tcpmux(p) => {
            let spec = ProxySpec::Tcpmux(TcpmuxSpec {
                custom_domains: p.custom_domains.clone(),
                subdomain: p.subdomain.clone(),
                http_user: p.http_user.clone(),
                http_password: p.http_password.clone(),
                route_by_http_user: p.route_by_http_user.clone(),
            });
            Arc::new(tcp::Forward::new(&p.name, p.local_addr(), spec))
        }
    }
}

fn http_spec(p: &HttpProxy) -> ProxySpec {
    let pairs = |h: &config::HeaderOps| {
        h.set
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    ProxySpec::Http(HttpSpec {
        custom_domains: p.custom_domains.clone(),
        subdomain: p.subdomain.clone(),
        locations: p.locations.clone(),
        http_user: p.http_user.clone(),
        http_password: p.http_password.clone(),
        host_header_rewrite: p.host_header_rewrite.clone(),
        request_headers: pairs(&p.request_headers),
        response_headers: pairs(&p.response_headers),
        route_by_http_user: p.route_by_http_user.clone(),
    })
}

struct Entry {
    proxy: Arc<dyn ClientProxy>,
    traffic: Arc<Traffic>,
}

/// The client's proxy set: registrations for frps and the kind that serves
/// each work stream. Reload and the admin API will change it here.
pub(crate) struct ProxyManager {
    entries: HashMap<String, Entry>,
    order: Vec<String>,
    /// All of the client's proxies together.
    traffic: Arc<Traffic>,
}

impl ProxyManager {
    pub fn new(config: &ClientConfig, agreed: Agreed) -> Self {
        let mut entries = HashMap::new();
        let mut order = Vec::new();
        for cfg in &config.proxies {
            let entry = Entry {
                proxy: build(cfg, agreed),
                traffic: Arc::new(Traffic::default()),
            };
            order.push(cfg.name().to_owned());
            entries.insert(cfg.name().to_owned(), entry);
        }
        ProxyManager {
            entries,
            order,
            traffic: Arc::new(Traffic::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// One registration per proxy, in file order.
    pub fn registrations(&self) -> Vec<NewProxy> {
        self.order
            .iter()
            .filter_map(|name| {
                let e = self.entries.get(name)?;
                Some(NewProxy {
                    name: name.clone(),
                    spec: e.proxy.spec(),
                    opts: ProxyOpts::default(),
                })
            })
            .collect()
    }

    /// Hands a work stream to its proxy; None for a proxy we do not have.
    pub fn serve(
        &self,
        work: Tunnel,
        header: StartWork,
        stop: CancellationToken,
    ) -> Option<BoxFuture<'static, ()>> {
        let e = self.entries.get(&header.proxy_name)?;
        let meters = Meters::new(vec![e.traffic.clone(), self.traffic.clone()]);
        Some(e.proxy.clone().serve(work, header, meters, stop))
    }
}
