//! Dialing frps, the one way: TCP, socket options, TLS and trust — for the
//! control connection and for every work connection (`tcpMux = false`).

use std::sync::Arc;

use anyhow::{Context, Result};
use config::ClientConfig;
use net::activity::{Activity, Metered};
use net::tls::{pretty_fingerprint, Trusted};
use net::transport::{Binding, BoxIo, ClientSide};
use tracing::warn;

pub(crate) struct Connector {
    pub config: Arc<ClientConfig>,
    side: ClientSide,
    /// `transport.proxyURL` (or `http_proxy`).
    proxy: Option<crate::dial::ProxyUrl>,
    /// `dnsServer`, or the system's resolver.
    dns: crate::dial::Resolver,
}

/// A connection to frps, TLS done, nothing sent yet.
pub(crate) struct Dialed {
    pub io: BoxIo,
    /// Binds login proofs to this TLS session.
    pub binding: Binding,
    /// Bytes and the last time anything was received (the heartbeat's clock).
    pub activity: Arc<Activity>,
    /// SHA-256 of the server's certificate, with TLS on.
    pub fingerprint: Option<String>,
}

/// What a connection is for: the control connection has the heartbeat's
/// `TCP_USER_TIMEOUT` and reports how the server was trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Control,
    Work,
}

impl Connector {
    pub fn new(config: Arc<ClientConfig>) -> Result<Self> {
        let side = ClientSide::new(&config).context("setting up TLS")?;
        if !side.tls_enabled() {
            warn!(
                "TLS is off (transport.tls.enable = false): the tunnel's traffic is not encrypted"
            );
        }
        let proxy = crate::dial::proxy_of(&config)?;
        if let Some(p) = &proxy {
            tracing::info!("reaching frps through proxy {p}");
        }
        let dns = crate::dial::Resolver::new(&config)?;
        Ok(Connector {
            config,
            side,
            proxy,
            dns,
        })
    }

    /// `serverAddr:serverPort`, for messages.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.config.server_addr, self.config.server_port)
    }

    pub async fn dial(&self, purpose: Purpose) -> Result<Dialed> {
        let cfg = &self.config;
        let addr = self.addr();
        let tcp = crate::dial::connect(cfg, self.proxy.as_ref(), &self.dns)
            .await
            .with_context(|| format!("cannot connect to server {addr}"))?;
        // Control messages and interactive sessions (SSH) are latency bound.
        tcp.set_nodelay(true).ok();
        let user_timeout = match purpose {
            Purpose::Control => cfg.heartbeat_timeout(),
            Purpose::Work => None,
        };
        net::sockopt::tune(&tcp, cfg.tcp_keepalive(), user_timeout);
        let activity = Activity::new();
        let conn = self
            .side
            .connect(Metered::new(tcp, activity.clone()))
            .await
            .with_context(|| format!("server {addr}"))?;
        if purpose == Purpose::Control {
            self.report_trust(&addr, conn.trusted);
        }
        Ok(Dialed {
            io: conn.io,
            binding: conn.binding,
            activity,
            fingerprint: conn.fingerprint,
        })
    }

    fn report_trust(&self, addr: &str, trusted: Trusted) {
        match trusted {
            Trusted::FirstUse(fp) => warn!(
                "trusting server {addr} on first use: certificate fingerprint {}; remembered in {} \
                 and enforced from now on",
                pretty_fingerprint(&fp),
                self.config.known_hosts_path().display()
            ),
            Trusted::Unverified if self.side.tls_enabled() => warn!(
                "NOT verifying the server's TLS certificate (transport.tls.insecureSkipVerify = true): \
                 anyone in the path can impersonate the server"
            ),
            _ => {}
        }
    }
}
