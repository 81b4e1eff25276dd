//! frp-compatible TOML configuration for frps and frpc: file format in,
//! validated, typed settings out.
//!
//! Key names follow frp (camelCase) so existing configs work as they are.
//! Unknown keys are errors; a second step checks values and cross-field
//! rules and fills derived values. Every problem names the file, the line
//! and the key, and all problems of a file are reported at once (`diag`).

mod client;
mod diag;
mod proxy;
mod server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::{ClientConfig, ClientTls, ClientTransport};
pub use diag::Diagnostic;
use diag::Problems;
pub use proxy::{
    join_host_port, HeaderOps, HttpProxy, HttpsProxy, ProxyConfig, ProxyTransport, TcpProxy,
    TcpmuxProxy, UdpProxy,
};
pub use server::{ServerConfig, ServerTls, ServerTransport};
pub use wire::auth::Token;

/// Default of `maxStreamsPerClient`; the multiplexer has the same figure as
/// its own default, kept here so config does not depend on the mux layer.
pub const DEFAULT_MAX_STREAMS: usize = 16 * 1024;

/// frp's default `udpPacketSize`: an Ethernet MTU.
pub const DEFAULT_UDP_PACKET_SIZE: usize = 1500;

pub const DEFAULT_HEARTBEAT_INTERVAL: i64 = 30;
pub const DEFAULT_HEARTBEAT_TIMEOUT: i64 = 90;
/// frp's default.
pub const DEFAULT_TCP_KEEPALIVE: i64 = 7200;

/// Normalises a user-written fingerprint: case and `:` separators ignored.
pub fn normalize_fingerprint(s: &str) -> String {
    s.chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", show(path, errors))]
    Invalid {
        path: PathBuf,
        /// In file order.
        errors: Vec<Diagnostic>,
    },
}

/// `path:line: message`, one line per problem.
fn show(path: &Path, errors: &[Diagnostic]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|d| match d.line {
            Some(l) => format!("{}:{l}: {}", path.display(), d.message),
            None => format!("{}: {}", path.display(), d.message),
        })
        .collect();
    lines.join("\n")
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
    /// With a file: a new file each day (the old one renamed
    /// `<to>.YYYYMMDD`), and files older than this many days removed; 0 =
    /// one file, never rotated.
    pub max_days: u32,
    /// No colours on the console even when it is a terminal.
    pub disable_print_color: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            to: "console".into(),
            level: LogLevel::Info,
            max_days: 3,
            disable_print_color: false,
        }
    }
}

/// `webServer.*`: frps's dashboard and API, frpc's admin API. Off while
/// `port` is 0.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WebServerConfig {
    pub addr: String,
    pub port: u16,
    /// Basic auth on everything but `/healthz` (both set, or neither).
    pub user: String,
    pub password: String,
    /// Serve HTTPS with this certificate and key (PEM).
    pub tls: WebServerTls,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WebServerTls {
    pub cert_file: String,
    pub key_file: String,
}

impl Default for WebServerConfig {
    fn default() -> Self {
        WebServerConfig {
            addr: "127.0.0.1".into(),
            port: 0,
            user: String::new(),
            password: String::new(),
            tls: WebServerTls::default(),
        }
    }
}

impl WebServerConfig {
    pub fn enabled(&self) -> bool {
        self.port != 0
    }

    /// Only `webServer.*` of the file at `path`, whatever else it holds:
    /// `frpc status`, `reload` and `stop` must reach the running client
    /// even when the file has since been broken (the running client then
    /// says what is wrong with it).
    pub fn read_from(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file(path)?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            errors: vec![Diagnostic {
                line: None,
                message,
            }],
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        match table.get("webServer") {
            None => Ok(WebServerConfig::default()),
            Some(v) => WebServerConfig::deserialize(v.clone())
                .map_err(|e| invalid(format!("webServer: {}", e.message()))),
        }
    }

    pub(crate) fn check(&self, p: &mut Problems<'_>) {
        if self.user.is_empty() != self.password.is_empty() {
            p.key(
                "webServer.user",
                "webServer.user and webServer.password go together",
            );
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            p.key(
                "webServer.tls.certFile",
                "webServer.tls.certFile and webServer.tls.keyFile go together",
            );
        }
        if self.enabled() && self.addr.trim().is_empty() {
            p.key("webServer.addr", "webServer.addr must not be empty");
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
    pub(crate) fn bounds(&self) -> Result<(u16, u16), String> {
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

/// Checks the auth section and reads `auth.tokenFile` into the token.
fn check_auth(auth: &mut AuthConfig, p: &mut Problems<'_>) {
    if auth.method != "token" {
        p.key(
            "auth.method",
            format!(
                "auth.method {:?} is not supported (supported: \"token\")",
                auth.method
            ),
        );
    }
    if auth.token_file.is_empty() {
        return;
    }
    if !auth.token.is_empty() {
        p.key(
            "auth.tokenFile",
            "set auth.token or auth.tokenFile, not both",
        );
        return;
    }
    match std::fs::read_to_string(&auth.token_file) {
        Err(e) => p.key(
            "auth.tokenFile",
            format!("auth.tokenFile {}: {e}", auth.token_file),
        ),
        Ok(text) => {
            auth.token = Token::new(text.trim());
            if auth.token.is_empty() {
                p.key(
                    "auth.tokenFile",
                    format!("auth.tokenFile {} is empty", auth.token_file),
                );
            }
        }
    }
}

fn both_or_neither(cert: &str, key: &str, p: &mut Problems<'_>) {
    if cert.is_empty() != key.is_empty() {
        p.key(
            "transport.tls.certFile",
            "transport.tls.certFile and transport.tls.keyFile go together",
        );
    }
}

/// The directory a config file lives in ("." for a bare file name).
fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A seconds setting where ≤ 0 means off.
fn secs(v: i64) -> Option<Duration> {
    u64::try_from(v)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
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
        let ProxyConfig::Tcp(p) = &c.proxies[0] else {
            panic!("a tcp proxy: {:?}", c.proxies[0]);
        };
        assert_eq!(
            (p.local_addr().as_str(), p.remote_port),
            ("127.0.0.1:22", 0)
        );
        let c = ClientConfig::from_toml(
            "[[proxies]]\nname='a'\ntype='tcp'\nlocalIP='10.0.0.2'\nlocalPort=22\n",
        )
        .expect("frp's localIP key");
        let ProxyConfig::Tcp(p) = &c.proxies[0] else {
            panic!("a tcp proxy");
        };
        assert_eq!(p.local_addr(), "10.0.0.2:22");
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
        let e = client_err("[[proxies]]\nname='w'\ntype='stcp'\nlocalPort=80\n");
        assert!(
            e.contains("\"stcp\"") && e.contains("not supported yet"),
            "{e}"
        );
        let e = client_err("[[proxies]]\nname='w'\ntype='htp'\nlocalPort=80\n");
        assert!(
            e.contains("\"htp\"") && e.contains("not a proxy type"),
            "{e}"
        );
        let e = client_err("[[proxies]]\nname='w'\nlocalPort=80\n");
        assert!(e.contains("type is required"), "{e}");
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

    #[test]
    fn udp_proxies_have_their_own_keys() {
        let c = ClientConfig::from_toml(
            "[[proxies]]\nname='dns'\ntype='udp'\nlocalPort=53\nremotePort=6053\nudpIdleTimeout=5\n",
        )
        .expect("udp");
        let ProxyConfig::Udp(u) = &c.proxies[0] else {
            panic!("a udp proxy");
        };
        assert_eq!(
            (u.remote_port, u.udp_idle_timeout, u.udp_max_mappings),
            (6053, 5, 1024)
        );
        assert_eq!(c.udp_packet_size, 1500);
        // A udp-only key on a tcp proxy is unknown there.
        let e = client_err("[[proxies]]\nname='s'\ntype='tcp'\nlocalPort=22\nudpIdleTimeout=5\n");
        assert!(e.contains("udpIdleTimeout"), "{e}");
    }

    /// `verify` sees every problem of a file in one run, each with its line,
    /// in file order: common keys, entries, and values.
    #[test]
    fn all_errors_at_once_with_lines_in_file_order() {
        let text = "\
serverAdr = 'x'
serverPort = 0
[log]
level = 'loud'

[[proxies]]
name = 'a'
type = 'tcp'
localPort = 'ssh'
bogus = 1

[[proxies]]
name = 'b'
type = 'udp'
localPort = 0

[[proxies]]
name = 'a'
type = 'tcp'
localPort = 22
";
        let e = ClientConfig::from_toml(text).expect_err("bad");
        let ConfigError::Invalid { errors, .. } = &e else {
            panic!("{e}");
        };
        let lines: Vec<_> = errors.iter().map(|d| d.line).collect();
        assert_eq!(
            lines,
            [Some(1), Some(4), Some(9), Some(10), Some(15), Some(18)],
            "{e}"
        );
        let text = e.to_string();
        for want in [
            "<inline>:1: unknown field `serverAdr`",
            "<inline>:4: unknown variant `loud`",
            "<inline>:9: proxies[0] (name \"a\"): invalid type",
            "<inline>:10: proxies[0] (name \"a\"): unknown field `bogus`",
            "<inline>:15: proxies[1] (name \"b\"): localPort must be between 1 and 65535",
            "<inline>:18: proxies[2] (name \"a\"): duplicate proxy name",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        // serverPort = 0 is a value problem; it is found once the keys parse.
        let e = client_err("serverPort = 0\nuser = 'u'\nudpPacketSize = 0\n");
        assert!(
            e.contains("<inline>:1: serverPort") && e.contains("<inline>:3: udpPacketSize"),
            "{e}"
        );
    }
}
