//! frps's settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Found, Problems};
use crate::doc::Node;
use crate::format::Format;
use crate::load::{self, Loader};
use crate::{
    both_or_neither, check_auth, secs, AuthConfig, ConfigError, LogConfig, PortRange,
    WebServerConfig, DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_MAX_STREAMS, DEFAULT_TCP_KEEPALIVE,
    DEFAULT_UDP_PACKET_SIZE,
};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServerConfig {
    pub bind_addr: String,
    pub bind_port: u16,
    /// frp keeps NAT analysis data of xtcp visits this many hours; frps
    /// keeps none beyond a visit (its rendezvous is between the two frpc),
    /// so the key is read and changes nothing.
    pub nathole_analysis_data_reserve_hours: u64,
    /// Address the proxies' remote ports listen on; empty means `bindAddr`.
    pub proxy_bind_addr: String,
    pub auth: AuthConfig,
    /// Ports clients may ask for; empty allows every port.
    pub allow_ports: Vec<PortRange>,
    pub log: LogConfig,
    /// Most ports one client may hold at once; 0 = no limit.
    pub max_ports_per_client: u32,
    /// Most proxies of any kind one client may hold at once (ours; frp has
    /// no such bound): what one token holder can make frps keep. 0 = no
    /// limit.
    pub max_proxies_per_client: u32,
    pub transport: ServerTransport,
    /// Largest UDP datagram carried (frp's `udpPacketSize`); larger ones
    /// are dropped and counted, never truncated.
    pub udp_packet_size: usize,
    /// Port for `type = "http"` proxies, routed by Host and path; 0 = off.
    #[serde(rename = "vhostHTTPPort")]
    pub vhost_http_port: u16,
    /// Seconds to wait for the local service's response head (504 after).
    #[serde(rename = "vhostHTTPTimeout")]
    pub vhost_http_timeout: u64,
    /// HTML file sent with 404 for unknown hosts; empty = a built-in page.
    #[serde(rename = "custom404Page")]
    pub custom_404_page: String,
    /// Port for `type = "tcpmux"` proxies: users open with an HTTP CONNECT
    /// naming the host; 0 = off.
    #[serde(rename = "tcpmuxHTTPConnectPort")]
    pub tcpmux_http_connect_port: u16,
    /// true: the CONNECT request is passed on to the local service (itself
    /// an HTTP proxy) instead of being answered by frps.
    pub tcpmux_passthrough: bool,
    /// Port for `type = "https"` proxies, routed by the ClientHello's name
    /// (SNI); 0 = off.
    #[serde(rename = "vhostHTTPSPort")]
    pub vhost_https_port: u16,
    /// The domain `subdomain` proxies live under (`web` → `web.<this>`).
    pub sub_domain_host: String,
    /// The dashboard, its JSON API and `/metrics`.
    pub web_server: WebServerConfig,
    /// Serve Prometheus metrics at `/metrics` on the web server.
    pub enable_prometheus: bool,
    /// Where the web server keeps each proxy's daily traffic across
    /// restarts; empty = `frps_traffic.redb` next to this file.
    pub traffic_history_file: String,
    /// Send clients the reason a proxy was refused (true, as frp); false:
    /// only that it was, the reason in frps's log.
    pub detailed_errors_to_client: bool,
    /// Seconds a user connection waits for a work connection from frpc
    /// (`tcpMux = false`) before it is closed.
    pub user_conn_timeout: u64,
    /// Directory of the config file (for paths that default next to it;
    /// empty without a file: see `state`).
    #[serde(skip)]
    pub config_dir: PathBuf,
    /// What the file asks for that is not built yet, one line each.
    #[serde(skip)]
    pub notes: Vec<Diagnostic>,
}

/// `transport.*` of frps.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServerTransport {
    /// false: clients must not multiplex (`transport.tcpMux = false` on
    /// frpc too, as frp requires them to match); a multiplexing client is
    /// refused at login with that said.
    pub tcp_mux: bool,
    /// frp's multiplexer keepalive: here frps's heartbeat timeout does that
    /// job; accepted for frp's files and otherwise unused by frps.
    pub tcp_mux_keepalive_interval: i64,
    /// Seconds without any data from a client before it is declared dead
    /// and its ports freed. ≤ 0 disables the check (for debugging).
    pub heartbeat_timeout: i64,
    /// TCP keepalive idle time in seconds on client connections; ≤ 0 disables.
    pub tcp_keepalive: i64,
    /// Seconds a new connection has to finish TLS and login.
    pub login_timeout: u64,
    /// Connections allowed in the TLS/login phase at once; more are closed
    /// at once, so a flood cannot exhaust memory or descriptors.
    pub max_pending_logins: usize,
    /// Concurrent multiplexed streams per client (user connections).
    pub max_streams_per_client: usize,
    /// Idle pre-opened work connections kept per client (`tcpMux = false`).
    pub max_pool_count: usize,
    /// MiB of receive windows all client sessions together may hold (what
    /// stalled readers could make frps buffer); a user connection that
    /// does not fit is refused. 0 = a quarter of usable memory
    /// ([`buffer_budget`]).
    #[serde(rename = "maxBufferMB")]
    pub max_buffer_mb: u64,
    pub tls: ServerTls,
}

impl Default for ServerTransport {
    fn default() -> Self {
        ServerTransport {
            tcp_mux: true,
            tcp_mux_keepalive_interval: 30,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            tcp_keepalive: DEFAULT_TCP_KEEPALIVE,
            login_timeout: 10,
            max_pending_logins: 256,
            max_streams_per_client: DEFAULT_MAX_STREAMS,
            max_pool_count: 5,
            max_buffer_mb: 0,
            tls: ServerTls::default(),
        }
    }
}

/// `transport.tls.*` of frps. TLS is always offered.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServerTls {
    /// Refuse clients that do not use TLS.
    pub force: bool,
    /// Certificate chain and key (PEM). Empty: a self-signed certificate.
    pub cert_file: String,
    pub key_file: String,
    /// Require client certificates signed by this CA (mutual TLS).
    pub trusted_ca_file: String,
    /// Where the self-signed certificate is kept; empty = next to the config.
    pub self_signed_dir: String,
}

impl ServerConfig {
    /// Paths of the self-signed certificate and key.
    pub fn self_signed_paths(&self) -> (PathBuf, PathBuf) {
        let dir = match self.transport.tls.self_signed_dir.as_str() {
            "" => crate::state::state_dir(&self.config_dir, "frps_selfsigned.crt"),
            d => PathBuf::from(d),
        };
        (
            dir.join("frps_selfsigned.crt"),
            dir.join("frps_selfsigned.key"),
        )
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind_addr: "0.0.0.0".into(),
            bind_port: 7000,
            nathole_analysis_data_reserve_hours: 168,
            proxy_bind_addr: String::new(),
            auth: AuthConfig::default(),
            allow_ports: Vec::new(),
            log: LogConfig::default(),
            max_ports_per_client: 0,
            max_proxies_per_client: 10_000,
            transport: ServerTransport::default(),
            udp_packet_size: DEFAULT_UDP_PACKET_SIZE,
            vhost_http_port: 0,
            vhost_http_timeout: 60,
            custom_404_page: String::new(),
            tcpmux_http_connect_port: 0,
            tcpmux_passthrough: false,
            vhost_https_port: 0,
            sub_domain_host: String::new(),
            web_server: WebServerConfig::default(),
            enable_prometheus: false,
            traffic_history_file: String::new(),
            detailed_errors_to_client: true,
            user_conn_timeout: 10,
            config_dir: PathBuf::new(),
            notes: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// The traffic history file (`trafficHistoryFile`).
    pub fn traffic_history_path(&self) -> PathBuf {
        match self.traffic_history_file.as_str() {
            "" => crate::state::state_dir(&self.config_dir, "frps_traffic.redb")
                .join("frps_traffic.redb"),
            f => PathBuf::from(f),
        }
    }

    pub fn heartbeat_timeout(&self) -> Option<Duration> {
        secs(self.transport.heartbeat_timeout)
    }

    pub fn tcp_keepalive(&self) -> Option<Duration> {
        secs(self.transport.tcp_keepalive)
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.transport.login_timeout)
    }

    /// Seconds a user connection waits for a work connection.
    pub fn user_conn_timeout(&self) -> Duration {
        Duration::from_secs(self.user_conn_timeout)
    }

    /// The file at `path`, in the format its name says (TOML, YAML,
    /// JSON; frp's legacy INI when it has a `[common]` section).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load::load(path)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        load::parse(text, Path::new("<inline>"), Some(Format::Toml))
    }

    /// `text` in `format`, for tests and tools.
    pub fn from_text(text: &str, format: Format) -> Result<Self, ConfigError> {
        load::parse(text, Path::new("<inline>"), Some(format))
    }

    /// Checks values and fills derived ones.
    fn check(&mut self, p: &mut Problems<'_>) {
        if self.bind_addr.trim().is_empty() {
            p.key("bindAddr", "bindAddr must not be empty");
        }
        if self.bind_port == 0 {
            p.key("bindPort", "bindPort must be between 1 and 65535");
        }
        if self.proxy_bind_addr.trim().is_empty() {
            self.proxy_bind_addr = self.bind_addr.clone();
        }
        self.web_server.check(p);
        if self.udp_packet_size == 0 || self.udp_packet_size > wire::udp::MAX_PAYLOAD {
            p.key(
                "udpPacketSize",
                format!(
                    "udpPacketSize must be between 1 and {}",
                    wire::udp::MAX_PAYLOAD
                ),
            );
        }
        if self.vhost_http_timeout == 0 {
            p.key(
                "vhostHTTPTimeout",
                "vhostHTTPTimeout must be at least 1 second",
            );
        }
        if !self.custom_404_page.is_empty() && std::fs::metadata(&self.custom_404_page).is_err() {
            p.key(
                "custom404Page",
                format!("custom404Page {} cannot be read", self.custom_404_page),
            );
        }
        if self.sub_domain_host.starts_with('.') || self.sub_domain_host.contains('*') {
            p.key(
                "subDomainHost",
                "subDomainHost is a domain such as example.com (no leading dot or wildcard)",
            );
        }
        check_auth(&mut self.auth, p, crate::load::Trust::Operator);
        for (i, r) in self.allow_ports.iter().enumerate() {
            if let Err(e) = r.bounds() {
                p.key("allowPorts", format!("allowPorts[{i}]: {e}"));
            }
        }
        let t = &self.transport;
        if t.login_timeout == 0 {
            p.key(
                "transport.loginTimeout",
                "transport.loginTimeout must be at least 1 second",
            );
        }
        if t.max_pending_logins == 0 {
            p.key(
                "transport.maxPendingLogins",
                "transport.maxPendingLogins must be at least 1",
            );
        }
        if self.user_conn_timeout == 0 {
            p.key(
                "userConnTimeout",
                "userConnTimeout must be at least 1 second",
            );
        }
        if t.max_streams_per_client == 0 {
            p.key(
                "transport.maxStreamsPerClient",
                "transport.maxStreamsPerClient must be at least 1",
            );
        }
        both_or_neither(&t.tls.cert_file, &t.tls.key_file, p);
    }

    pub fn port_allowed(&self, port: u16) -> bool {
        self.allow_ports.is_empty() || self.allow_ports.iter().any(|r| r.contains(port))
    }
}

impl load::Settings for ServerConfig {
    const SIDE: crate::legacy::Side = crate::legacy::Side::Server;

    fn read(mut root: Node, _loader: &mut Loader, found: &mut Vec<Found>) -> Option<Self> {
        crate::compat::server(&mut root, found);
        let (cfg, errors) = crate::de::read_all::<ServerConfig>(&root);
        found.extend(errors.into_iter().map(|e| Found::error(e.at, e.describe())));
        let mut cfg = cfg?;
        let mut problems = Problems::new(&root);
        cfg.check(&mut problems);
        found.extend(problems.found);
        Some(cfg)
    }

    fn set_dir(&mut self, dir: PathBuf) {
        self.config_dir = dir;
    }

    fn notes_mut(&mut self) -> &mut Vec<Diagnostic> {
        &mut self.notes
    }
}
