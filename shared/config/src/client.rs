//! frpc's settings.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::diag::{self, Problems, Source};
use crate::proxy::{self, ProxyConfig};
use crate::{
    both_or_neither, check_auth, normalize_fingerprint, secs, AuthConfig, ConfigError, LogConfig,
    WebServerConfig, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_TCP_KEEPALIVE,
    DEFAULT_UDP_PACKET_SIZE,
};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClientConfig {
    pub server_addr: String,
    pub server_port: u16,
    pub user: String,
    /// Exit when the first login fails instead of retrying.
    pub login_fail_exit: bool,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub transport: ClientTransport,
    /// Largest UDP datagram carried (frp's `udpPacketSize`); larger ones
    /// are dropped and counted, never truncated.
    pub udp_packet_size: usize,
    /// The admin API (`frpc status`, `reload`, `stop`, `/metrics`).
    pub web_server: WebServerConfig,
    /// Read separately, one entry at a time (see `proxy`).
    #[serde(skip_deserializing)]
    pub proxies: Vec<ProxyConfig>,
    #[serde(rename = "proxies", skip_serializing)]
    raw_proxies: Option<IgnoredAny>,
    /// Directory of the config file (for paths that default next to it).
    #[serde(skip)]
    pub config_dir: PathBuf,
}

/// `transport.*` of frpc.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClientTransport {
    /// Send a Ping after this many seconds with nothing received. ≤ 0
    /// disables (but frpc still beats if the server would otherwise reap it).
    pub heartbeat_interval: i64,
    /// Declare the connection dead after this many seconds with nothing
    /// received. ≤ 0 disables (for debugging).
    pub heartbeat_timeout: i64,
    /// TCP keepalive idle time in seconds; ≤ 0 disables.
    pub tcp_keepalive: i64,
    /// First reconnect delay in seconds; doubles per failed attempt.
    pub reconnect_initial_delay: f64,
    /// Cap on the reconnect delay, in seconds.
    pub reconnect_max_delay: f64,
    /// true: every forwarded connection is a yamux stream on the one
    /// connection. false: each gets its own TCP (TLS) connection to frps.
    pub tcp_mux: bool,
    /// With `tcpMux = false`: work connections opened in advance.
    pub pool_count: usize,
    /// MiB of receive windows the session may hold (what stalled local
    /// services could make frpc buffer); streams beyond it are refused.
    /// 0 = a quarter of usable memory ([`buffer_budget`]).
    #[serde(rename = "maxBufferMB")]
    pub max_buffer_mb: u64,
    pub tls: ClientTls,
}

/// `transport.tls.*` of frpc.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClientTls {
    pub enable: bool,
    /// Name to verify the server certificate against (CA mode); empty = serverAddr.
    pub server_name: String,
    /// Verify the server by this CA (PEM).
    pub trusted_ca_file: String,
    /// Or pin the server certificate's SHA-256 fingerprint (hex, `:` allowed).
    pub server_fingerprint: String,
    /// Trust on first use: fingerprints remembered here; empty = next to the config.
    pub known_hosts_file: String,
    /// Skip verification entirely. Dangerous; logged loudly.
    pub insecure_skip_verify: bool,
    /// Client certificate and key for servers that require mutual TLS.
    pub cert_file: String,
    pub key_file: String,
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls {
            enable: true,
            server_name: String::new(),
            trusted_ca_file: String::new(),
            server_fingerprint: String::new(),
            known_hosts_file: String::new(),
            insecure_skip_verify: false,
            cert_file: String::new(),
            key_file: String::new(),
        }
    }
}

impl Default for ClientTransport {
    fn default() -> Self {
        ClientTransport {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            tcp_keepalive: DEFAULT_TCP_KEEPALIVE,
            reconnect_initial_delay: 1.0,
            reconnect_max_delay: 20.0,
            tcp_mux: true,
            pool_count: 0,
            max_buffer_mb: 0,
            tls: ClientTls::default(),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server_addr: "127.0.0.1".into(),
            server_port: 7000,
            user: String::new(),
            login_fail_exit: true,
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            transport: ClientTransport::default(),
            udp_packet_size: DEFAULT_UDP_PACKET_SIZE,
            web_server: WebServerConfig::default(),
            proxies: Vec::new(),
            raw_proxies: None,
            config_dir: PathBuf::from("."),
        }
    }
}

impl ClientConfig {
    /// Where trust-on-first-use fingerprints are kept.
    pub fn known_hosts_path(&self) -> PathBuf {
        match self.transport.tls.known_hosts_file.as_str() {
            "" => self.config_dir.join("frpc_known_servers"),
            f => PathBuf::from(f),
        }
    }

    pub fn heartbeat_interval(&self) -> Option<Duration> {
        secs(self.transport.heartbeat_interval)
    }

    pub fn heartbeat_timeout(&self) -> Option<Duration> {
        secs(self.transport.heartbeat_timeout)
    }

    pub fn tcp_keepalive(&self) -> Option<Duration> {
        secs(self.transport.tcp_keepalive)
    }

    /// First and largest reconnect delay (validated positive and finite).
    pub fn reconnect_delays(&self) -> (Duration, Duration) {
        let t = &self.transport;
        (
            Duration::from_secs_f64(t.reconnect_initial_delay),
            Duration::from_secs_f64(t.reconnect_max_delay),
        )
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        diag::load(path)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        diag::parse(text, Path::new("<inline>"))
    }

    /// `text` as if it were the file at `path` (its directory recorded),
    /// for checking a file before it is written.
    pub fn from_toml_at(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: Self = diag::parse(text, path)?;
        diag::Settings::set_dir(&mut cfg, crate::config_dir(path));
        Ok(cfg)
    }

    /// Checks the common keys and fills derived values.
    fn check(&mut self, p: &mut Problems<'_>) {
        if self.server_addr.trim().is_empty() {
            p.key("serverAddr", "serverAddr must not be empty");
        }
        if self.server_port == 0 {
            p.key("serverPort", "serverPort must be between 1 and 65535");
        }
        if self.udp_packet_size == 0 || self.udp_packet_size > wire::udp::MAX_PAYLOAD {
            p.key(
                "udpPacketSize",
                format!(
                    "udpPacketSize must be between 1 and {}",
                    wire::udp::MAX_PAYLOAD
                ),
            );
        }
        check_auth(&mut self.auth, p);
        self.web_server.check(p);
        let t = &self.transport;
        if !(t.reconnect_initial_delay > 0.0 && t.reconnect_initial_delay.is_finite()) {
            p.key(
                "transport.reconnectInitialDelay",
                "transport.reconnectInitialDelay must be a positive number of seconds",
            );
        }
        if !(t.reconnect_max_delay >= t.reconnect_initial_delay
            && t.reconnect_max_delay.is_finite())
        {
            p.key(
                "transport.reconnectMaxDelay",
                "transport.reconnectMaxDelay must be at least transport.reconnectInitialDelay",
            );
        }
        self.check_tls(p);
    }

    fn check_tls(&self, p: &mut Problems<'_>) {
        let tls = &self.transport.tls;
        both_or_neither(&tls.cert_file, &tls.key_file, p);
        let modes = [
            !tls.trusted_ca_file.is_empty(),
            !tls.server_fingerprint.is_empty(),
            tls.insecure_skip_verify,
        ];
        if modes.iter().filter(|m| **m).count() > 1 {
            p.key(
                "transport.tls",
                "transport.tls: choose one of trustedCaFile, serverFingerprint and \
                 insecureSkipVerify",
            );
        }
        if !tls.server_fingerprint.is_empty() {
            let fp = normalize_fingerprint(&tls.server_fingerprint);
            if fp.len() != 64 || !fp.chars().all(|c| c.is_ascii_hexdigit()) {
                p.key(
                    "transport.tls.serverFingerprint",
                    format!(
                        "transport.tls.serverFingerprint {:?} is not a SHA-256 fingerprint (64 hex digits, `:` allowed)",
                        tls.server_fingerprint
                    ),
                );
            }
        }
    }
}

impl diag::Settings for ClientConfig {
    /// The common keys, each proxy entry, then validation.
    fn read(src: &Source<'_>, errors: &mut Vec<diag::Diagnostic>) -> Option<Self> {
        let mut cfg = diag::parse_all::<ClientConfig>(src)
            .map_err(|e| errors.extend(e))
            .ok();
        let proxies = read_proxies(src, errors);
        let mut problems = Problems::new(src);
        if let Some(cfg) = cfg.as_mut() {
            cfg.raw_proxies = None;
            cfg.proxies = proxies.iter().filter_map(|e| e.cfg.clone()).collect();
            cfg.check(&mut problems);
        }
        check_proxies(&proxies, &mut problems);
        errors.extend(problems.found);
        cfg
    }

    fn set_dir(&mut self, dir: PathBuf) {
        self.config_dir = dir;
    }
}

/// The `[[proxies]]` entries, each parsed as its kind, with where it is.
fn read_proxies(src: &Source<'_>, errors: &mut Vec<diag::Diagnostic>) -> Vec<Entry> {
    #[derive(Deserialize)]
    struct Entries {
        #[serde(default)]
        proxies: Vec<toml::Spanned<toml::Table>>,
    }
    let entries = match toml::from_str::<Entries>(src.text()) {
        Ok(e) => e.proxies,
        Err(e) => {
            errors.push(diag::from_toml(src, &e));
            return Vec::new();
        }
    };
    let starts: Vec<usize> = entries.iter().map(|e| e.span().start).collect();
    let ranges = proxy::entry_ranges(&starts, src.text().len());
    let mut out = Vec::new();
    for (i, (entry, range)) in entries.into_iter().zip(ranges).enumerate() {
        let table = entry.into_inner();
        let name = table
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        let cfg = proxy::parse_entry(src, i, table, range.clone())
            .map_err(|e| errors.extend(e))
            .ok();
        out.push(Entry {
            index: i,
            name,
            cfg,
            range,
        });
    }
    out
}

/// A parsed entry, its index in the file and where it is.
struct Entry {
    index: usize,
    name: String,
    /// None when the entry had errors (already reported).
    cfg: Option<ProxyConfig>,
    range: std::ops::Range<usize>,
}

fn check_proxies(proxies: &[Entry], p: &mut Problems<'_>) {
    let mut names = HashSet::new();
    for e in proxies {
        let at = format!("proxies[{}] (name {:?})", e.index, e.name);
        let mut at = p.within(e.range.clone(), at);
        if !e.name.trim().is_empty() && !names.insert(e.name.as_str()) {
            at.key("name", format!("duplicate proxy name {:?}", e.name));
        }
        if let Some(cfg) = &e.cfg {
            cfg.check(&mut at);
        }
        p.merge(at);
    }
}
