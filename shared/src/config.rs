//! frp-compatible TOML configuration for frps and frpc.
//!
//! Key names follow frp (camelCase) so existing TCP-proxy configs work as
//! they are. Parsing rejects unknown keys; a separate validation step checks
//! values and cross-field rules and fills derived values. Every error names
//! the file and the offending key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::auth::Token;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LogConfig {
    /// "console" (stderr) or a file path.
    pub to: String,
    pub level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            to: "console".into(),
            level: LogLevel::Info,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AuthConfig {
    /// Only "token" is supported.
    pub method: String,
    pub token: Token,
    /// Read the token from this file instead (keeps it out of configs
    /// checked into version control). Surrounding whitespace is ignored.
    pub token_file: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            method: "token".into(),
            token: Token::default(),
            token_file: String::new(),
        }
    }
}

/// One `allowPorts` entry: `{ start = 2000, end = 3000 }` or `{ single = 3001 }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single: Option<u16>,
}

impl PortRange {
    fn bounds(&self) -> Result<(u16, u16), String> {
        match (self.start, self.end, self.single) {
            (None, None, Some(p)) if p > 0 => Ok((p, p)),
            (Some(s), Some(e), None) if s > 0 && s <= e => Ok((s, e)),
            (Some(s), Some(e), None) => Err(format!("start {s} must be between 1 and end {e}")),
            (None, None, Some(_)) => Err("single must be between 1 and 65535".into()),
            _ => Err("give either { start, end } or { single }".into()),
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.bounds().is_ok_and(|(s, e)| (s..=e).contains(&port))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServerConfig {
    pub bind_addr: String,
    pub bind_port: u16,
    /// Address the proxies' remote ports listen on; empty means `bindAddr`.
    pub proxy_bind_addr: String,
    pub auth: AuthConfig,
    /// Ports clients may ask for; empty allows every port.
    pub allow_ports: Vec<PortRange>,
    pub log: LogConfig,
    /// Most ports one client may hold at once; 0 = no limit.
    pub max_ports_per_client: u32,
    pub transport: ServerTransport,
    /// Directory of the config file (for paths that default next to it).
    #[serde(skip)]
    pub config_dir: PathBuf,
}

/// `transport.*` of frps.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServerTransport {
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
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            tcp_keepalive: DEFAULT_TCP_KEEPALIVE,
            login_timeout: 10,
            max_pending_logins: 256,
            max_streams_per_client: crate::mux::DEFAULT_MAX_STREAMS,
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
            "" => self.config_dir.clone(),
            d => PathBuf::from(d),
        };
        (
            dir.join("frps_selfsigned.crt"),
            dir.join("frps_selfsigned.key"),
        )
    }
}

/// Bytes of receive buffer for `maxBufferMB` (0: a quarter of the memory
/// this process may use: physical memory, or the cgroup's `memory.max`
/// when that is lower; 4 GiB of it where neither can be read).
pub fn buffer_budget(mb: u64) -> usize {
    if mb > 0 {
        return usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    }
    let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    // "max" (no limit) does not parse and is skipped.
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let usable = match (physical, cgroup) {
        (Some(p), Some(c)) => p.min(c),
        (p, c) => p.or(c).unwrap_or(4 << 30),
    };
    usize::try_from(usable / 4).unwrap_or(usize::MAX)
}

pub const DEFAULT_HEARTBEAT_INTERVAL: i64 = 30;
pub const DEFAULT_HEARTBEAT_TIMEOUT: i64 = 90;
/// frp's default.
pub const DEFAULT_TCP_KEEPALIVE: i64 = 7200;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind_addr: "0.0.0.0".into(),
            bind_port: 7000,
            proxy_bind_addr: String::new(),
            auth: AuthConfig::default(),
            allow_ports: Vec::new(),
            log: LogConfig::default(),
            max_ports_per_client: 0,
            transport: ServerTransport::default(),
            config_dir: PathBuf::from("."),
        }
    }
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: ServerConfig = parse_file(path)?;
        cfg.config_dir = config_dir(path);
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let path = PathBuf::from("<inline>");
        let mut cfg: ServerConfig = parse_str(text, &path)?;
        cfg.validate()
            .map_err(|message| ConfigError::Invalid { path, message })?;
        Ok(cfg)
    }

    /// Checks values and fills derived ones.
    pub fn validate(&mut self) -> Result<(), String> {
        if self.bind_addr.trim().is_empty() {
            return Err("bindAddr must not be empty".into());
        }
        if self.bind_port == 0 {
            return Err("bindPort must be between 1 and 65535".into());
        }
        if self.proxy_bind_addr.trim().is_empty() {
            self.proxy_bind_addr = self.bind_addr.clone();
        }
        check_auth(&mut self.auth)?;
        for (i, r) in self.allow_ports.iter().enumerate() {
            r.bounds().map_err(|e| format!("allowPorts[{i}]: {e}"))?;
        }
        let t = &self.transport;
        if t.login_timeout == 0 {
            return Err("transport.loginTimeout must be at least 1 second".into());
        }
        if t.max_pending_logins == 0 {
            return Err("transport.maxPendingLogins must be at least 1".into());
        }
        if t.max_streams_per_client == 0 {
            return Err("transport.maxStreamsPerClient must be at least 1".into());
        }
        both_or_neither(&t.tls.cert_file, &t.tls.key_file)?;
        Ok(())
    }

    pub fn port_allowed(&self, port: u16) -> bool {
        self.allow_ports.is_empty() || self.allow_ports.iter().any(|r| r.contains(port))
    }
}

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
    pub proxies: Vec<ProxyConfig>,
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
            proxies: Vec::new(),
            config_dir: PathBuf::from("."),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxyConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub proxy_type: String,
    // frp spells it localIP, which camelCase would not produce.
    #[serde(default = "default_local_ip", rename = "localIP")]
    pub local_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    /// 0 lets the server choose.
    #[serde(default)]
    pub remote_port: u16,
}

fn default_local_ip() -> String {
    "127.0.0.1".into()
}

impl ProxyConfig {
    /// The validated local port (validation guarantees it is set).
    pub fn local_addr(&self) -> String {
        let port = self.local_port.unwrap_or_default();
        if self.local_ip.contains(':') {
            format!("[{}]:{port}", self.local_ip)
        } else {
            format!("{}:{port}", self.local_ip)
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

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: ClientConfig = parse_file(path)?;
        cfg.config_dir = config_dir(path);
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let path = PathBuf::from("<inline>");
        let mut cfg: ClientConfig = parse_str(text, &path)?;
        cfg.validate()
            .map_err(|message| ConfigError::Invalid { path, message })?;
        Ok(cfg)
    }

    pub fn validate(&mut self) -> Result<(), String> {
        if self.server_addr.trim().is_empty() {
            return Err("serverAddr must not be empty".into());
        }
        if self.server_port == 0 {
            return Err("serverPort must be between 1 and 65535".into());
        }
        check_auth(&mut self.auth)?;
        let t = &self.transport;
        if !(t.reconnect_initial_delay > 0.0 && t.reconnect_initial_delay.is_finite()) {
            return Err(
                "transport.reconnectInitialDelay must be a positive number of seconds".into(),
            );
        }
        if !(t.reconnect_max_delay >= t.reconnect_initial_delay
            && t.reconnect_max_delay.is_finite())
        {
            return Err(
                "transport.reconnectMaxDelay must be at least transport.reconnectInitialDelay"
                    .into(),
            );
        }
        let tls = &self.transport.tls;
        both_or_neither(&tls.cert_file, &tls.key_file)?;
        let modes = [
            !tls.trusted_ca_file.is_empty(),
            !tls.server_fingerprint.is_empty(),
            tls.insecure_skip_verify,
        ];
        if modes.iter().filter(|m| **m).count() > 1 {
            return Err(
                "transport.tls: choose one of trustedCaFile, serverFingerprint and \
                        insecureSkipVerify"
                    .into(),
            );
        }
        if !tls.server_fingerprint.is_empty() {
            let fp = crate::tls::normalize_fingerprint(&tls.server_fingerprint);
            if fp.len() != 64 || !fp.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "transport.tls.serverFingerprint {:?} is not a SHA-256 fingerprint (64 hex digits, `:` allowed)",
                    tls.server_fingerprint
                ));
            }
        }
        let mut names = HashSet::new();
        for (i, p) in self.proxies.iter().enumerate() {
            let at = format!("proxies[{i}] (name {:?})", p.name);
            if p.name.trim().is_empty() {
                return Err(format!("proxies[{i}]: name must not be empty"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(format!("{at}: duplicate proxy name {:?}", p.name));
            }
            if p.proxy_type != "tcp" {
                return Err(format!(
                    "{at}: type {:?} is not supported (supported: \"tcp\")",
                    p.proxy_type
                ));
            }
            if p.local_ip.trim().is_empty() {
                return Err(format!("{at}: localIP must not be empty"));
            }
            match p.local_port {
                None => return Err(format!("{at}: localPort is required")),
                Some(0) => {
                    return Err(format!(
                        "{at}: localPort must be between 1 and 65535, got 0"
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Checks the auth section and reads `auth.tokenFile` into the token.
fn check_auth(auth: &mut AuthConfig) -> Result<(), String> {
    if auth.method != "token" {
        return Err(format!(
            "auth.method {:?} is not supported (supported: \"token\")",
            auth.method
        ));
    }
    if !auth.token_file.is_empty() {
        if !auth.token.is_empty() {
            return Err("set auth.token or auth.tokenFile, not both".into());
        }
        let text = std::fs::read_to_string(&auth.token_file)
            .map_err(|e| format!("auth.tokenFile {}: {e}", auth.token_file))?;
        auth.token = Token::new(text.trim());
        if auth.token.is_empty() {
            return Err(format!("auth.tokenFile {} is empty", auth.token_file));
        }
    }
    Ok(())
}

fn both_or_neither(cert: &str, key: &str) -> Result<(), String> {
    if cert.is_empty() != key.is_empty() {
        return Err("transport.tls.certFile and transport.tls.keyFile go together".into());
    }
    Ok(())
}

/// The directory a config file lives in ("." for a bare file name).
fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn parse_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_str(&text, path)
}

fn parse_str<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_err(text: &str) -> String {
        ClientConfig::from_toml(text)
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn defaults() {
        let s = ServerConfig::from_toml("").expect("empty server config");
        assert_eq!((s.bind_addr.as_str(), s.bind_port), ("0.0.0.0", 7000));
        assert_eq!(s.proxy_bind_addr, "0.0.0.0");
        let c = ClientConfig::from_toml("[[proxies]]\nname='a'\ntype='tcp'\nlocalPort=22\n")
            .expect("client");
        assert_eq!(c.server_port, 7000);
        assert!(c.login_fail_exit);
        assert_eq!(c.proxies[0].local_addr(), "127.0.0.1:22");
        assert_eq!(c.proxies[0].remote_port, 0);
        let c = ClientConfig::from_toml(
            "[[proxies]]\nname='a'\ntype='tcp'\nlocalIP='10.0.0.2'\nlocalPort=22\n",
        )
        .expect("frp's localIP key");
        assert_eq!(c.proxies[0].local_addr(), "10.0.0.2:22");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = client_err("serverAdr = 'x'\n");
        assert!(e.contains("serverAdr") && e.contains("<inline>"), "{e}");
        let e = client_err("[[proxies]]\nname='a'\ntype='tcp'\nlocalPort=22\nremotePrt=1\n");
        assert!(e.contains("remotePrt"), "{e}");
        let e = ServerConfig::from_toml("[auth]\ntokn='x'\n")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("tokn"), "{e}");
    }

    #[test]
    fn bad_values_say_where() {
        let e = client_err("[[proxies]]\nname='ssh'\ntype='tcp'\nlocalPort=0\n");
        assert!(e.contains("proxies[0]") && e.contains("localPort"), "{e}");
        let e = client_err("[[proxies]]\nname='ssh'\ntype='tcp'\n");
        assert!(e.contains("localPort is required"), "{e}");
        let e = client_err(
            "[[proxies]]\nname='a'\ntype='tcp'\nlocalPort=1\n[[proxies]]\nname='a'\ntype='tcp'\nlocalPort=2\n",
        );
        assert!(e.contains("proxies[1]") && e.contains("duplicate"), "{e}");
        let e = client_err("[[proxies]]\nname='w'\ntype='http'\nlocalPort=80\n");
        assert!(e.contains("\"http\"") && e.contains("not supported"), "{e}");
        let e = client_err("serverPort = 70000\n");
        assert!(e.contains("serverPort") || e.contains("70000"), "{e}");
        let e = client_err("[log]\nlevel = 'loud'\n");
        assert!(e.contains("loud"), "{e}");
    }

    #[test]
    fn token_file() {
        let dir = std::env::temp_dir().join(format!("frp-rs-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").expect("write");
        let c = ClientConfig::from_toml(&format!(
            "auth.tokenFile = {:?}\n",
            file.display().to_string()
        ))
        .expect("tokenFile");
        assert_eq!(c.auth.token, Token::new("s3cret"), "read and trimmed");
        let e = client_err(&format!(
            "auth.token = 'x'\nauth.tokenFile = {:?}\n",
            file.display().to_string()
        ));
        assert!(e.contains("not both"), "{e}");
        let e = client_err("auth.tokenFile = '/nonexistent/token'\n");
        assert!(
            e.contains("auth.tokenFile") && e.contains("/nonexistent/token"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tls_choices_are_checked() {
        let e = client_err("transport.tls.serverFingerprint = 'abc'\n");
        assert!(e.contains("serverFingerprint"), "{e}");
        let e = client_err(
            "transport.tls.insecureSkipVerify = true\ntransport.tls.trustedCaFile = 'ca.pem'\n",
        );
        assert!(e.contains("choose one"), "{e}");
        let e = client_err("transport.tls.certFile = 'c.pem'\n");
        assert!(e.contains("go together"), "{e}");
        let ok = format!(
            "transport.tls.serverFingerprint = '{}'\n",
            "AB:".repeat(31) + "AB"
        );
        ClientConfig::from_toml(&ok).expect("a well-formed fingerprint");
    }

    #[test]
    fn allow_ports() {
        let s = ServerConfig::from_toml(
            "allowPorts = [{ start = 2000, end = 3000 }, { single = 3001 }]\n",
        )
        .expect("server");
        assert!(s.port_allowed(2000) && s.port_allowed(3000) && s.port_allowed(3001));
        assert!(!s.port_allowed(1999) && !s.port_allowed(3002));
        let e = ServerConfig::from_toml("allowPorts = [{ start = 3000, end = 2000 }]\n")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("allowPorts[0]"), "{e}");
        let e = ServerConfig::from_toml("allowPorts = [{ start = 3000 }]\n")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("allowPorts[0]"), "{e}");
    }
}
