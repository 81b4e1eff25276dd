//! frp-compatible configuration for frps and frpc: TOML, YAML, JSON (and
//! frp's legacy INI) in, validated, typed settings out.
//!
//! Key names follow frp (camelCase) so existing configs work as they are.
//! Every format is read into one tree that remembers positions (`doc`,
//! `format`); frp's keys of features not built yet are recognised and
//! named (`compat`); unknown keys are errors with a did-you-mean; a second
//! step checks values and cross-field rules. Every problem names the file,
//! line, column and key, and all problems of a file are reported at once
//! (`diag`).

mod client;
mod compat;
pub mod convert;
mod de;
mod diag;
pub mod doc;
pub mod format;
pub mod legacy;
mod load;
mod proxy;
mod server;
pub mod state;
pub mod template;
mod visitor;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::{ClientConfig, ClientTls, ClientTransport, NotStarted};
use diag::Problems;
pub use diag::{Diagnostic, Level};
pub use format::Format;
pub use load::Trust;
pub use proxy::{
    join_host_port, labels_within_bounds, HeaderOps, HttpProxy, HttpsProxy, Labels, NatTraversal,
    ProxyConfig, ProxyTransport, StcpProxy, SudpProxy, TcpProxy, TcpmuxProxy, UdpProxy, XtcpProxy,
};
pub use server::{ServerConfig, ServerTls, ServerTransport};
pub use visitor::{VisitorConfig, XtcpOptions};
pub use wire::auth::Token;

/// The legacy INI reader and `convert` on text, for the fuzz targets in
/// `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::doc::{At, Node};
    use crate::legacy::Side;

    /// The tree of a legacy INI file (the main one, file 0) and each
    /// problem found: where, what, and whether it stops the file.
    pub fn legacy(text: &str, side: Side) -> (Node, Vec<(Option<At>, String, crate::Level)>) {
        let mut found = Vec::new();
        let tree = crate::legacy::parse(text, side, 0, &mut found);
        let found = found
            .into_iter()
            .map(|f| (f.at, f.message, f.level))
            .collect();
        (tree, found)
    }

    /// The TOML `convert` writes for `tree`.
    pub fn to_toml(tree: &Node, side: Side) -> String {
        crate::convert::tree_to_toml(tree, side)
    }
}

/// Default of `maxStreamsPerClient`; the multiplexer has the same figure as
/// its own default, kept here so config does not depend on the mux layer.
pub const DEFAULT_MAX_STREAMS: usize = 16 * 1024;

/// frp's default `udpPacketSize`: an Ethernet MTU.
pub const DEFAULT_UDP_PACKET_SIZE: usize = 1500;

/// Longest proxy or visitor name (and visitor `serverName` / `serverUser`),
/// in bytes: a name is in every registration, log line and status row,
/// and a registration must fit one message.
pub const MAX_NAME_LEN: usize = 256;

/// The problem with name `value` of key `key`, if it is too long.
pub(crate) fn name_too_long(key: &str, value: &str) -> Option<String> {
    (value.len() > MAX_NAME_LEN)
        .then(|| format!("{key} is {} bytes; at most {MAX_NAME_LEN}", value.len()))
}

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

/// `file:line:column: message`, one line per problem, and how many.
fn show(_path: &Path, errors: &[Diagnostic]) -> String {
    let mut lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let n = errors.iter().filter(|d| d.level == Level::Error).count();
    if errors.len() > 1 {
        lines.push(match n {
            1 => "1 error".to_owned(),
            n => format!("{n} errors"),
        });
    }
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
        load::section(path, "webServer", &["assetsDir", "pprofEnable"])
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
    /// Where to read the token from instead (frp's spelling):
    /// `tokenSource.type = "file"` with `tokenSource.file.path`, or
    /// `"exec"` (a command's output; only with `--allow-unsafe
    /// TokenSourceExec`, as frp).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_source: Option<TokenSource>,
    /// Our older spelling of `tokenSource.type = "file"`, kept working.
    pub token_file: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            method: "token".into(),
            token: Token::default(),
            token_source: None,
            token_file: String::new(),
        }
    }
}

/// frp's `ValueSource`: where a secret comes from.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TokenSource {
    /// "file" or "exec".
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecSource>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FileSource {
    pub path: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ExecSource {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<ExecEnv>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ExecEnv {
    pub name: String,
    pub value: String,
}

static ALLOW_TOKEN_EXEC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--allow-unsafe TokenSourceExec`: lets `auth.tokenSource.type = "exec"`
/// run its command (off by default, as in frp: a config file should not
/// run programs unless the person starting the binary says so).
pub fn allow_token_exec(allow: bool) {
    ALLOW_TOKEN_EXEC.store(allow, std::sync::atomic::Ordering::Relaxed);
}

/// frp's `--allow-unsafe` names (both binaries take the flag): each one
/// known is allowed; an unknown one is an error naming those there are.
pub fn allow_unsafe(features: &[String]) -> Result<(), String> {
    for f in features {
        match f.as_str() {
            "TokenSourceExec" => allow_token_exec(true),
            other => {
                return Err(format!(
                    "--allow-unsafe {other:?}: unknown (known: TokenSourceExec)"
                ))
            }
        }
    }
    Ok(())
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

/// Checks the auth section and reads `auth.tokenSource` (or our
/// `auth.tokenFile`) into the token.
fn check_auth(auth: &mut AuthConfig, p: &mut Problems<'_>, trust: load::Trust) {
    match auth.method.as_str() {
        "token" => {}
        // frp's other method: recognised, and refused rather than run on
        // tokens the file did not ask for.
        "oidc" => p.key(
            "auth.method",
            "auth.method \"oidc\" is not supported yet: OIDC login is not built (use \"token\")",
        ),
        other => p.key(
            "auth.method",
            format!("auth.method {other:?} is not a method (supported: \"token\")"),
        ),
    }
    let (key, source) = match (&auth.token_source, auth.token_file.as_str()) {
        (None, "") => return,
        (Some(_), f) if !f.is_empty() => {
            return p.key(
                "auth.tokenFile",
                "set auth.tokenSource or auth.tokenFile, not both",
            )
        }
        (Some(s), _) => ("auth.tokenSource", s.clone()),
        (None, f) => (
            "auth.tokenFile",
            TokenSource {
                kind: "file".into(),
                file: Some(FileSource { path: f.into() }),
                exec: None,
            },
        ),
    };
    if !auth.token.is_empty() {
        return p.key(key, format!("set auth.token or {key}, not both"));
    }
    let exec = source.kind == "exec";
    match trust {
        load::Trust::Upload if exec => {
            return p.key(
                key,
                format!("{key}: a config sent to the admin API may not run a command (type \"exec\"); edit the file on the host"),
            )
        }
        // Its file would become the token frpc proves to whatever server
        // the upload names: not chosen through the API either.
        load::Trust::Upload if !source.kind.is_empty() => {
            return p.key(
                key,
                format!("{key}: a config sent to the admin API may not name a token file; edit the file on the host"),
            )
        }
        load::Trust::Upload => return,
        load::Trust::Reload if exec => return,
        _ => {}
    }
    match resolve_token(&source) {
        Err(e) => p.key(key, format!("{key}: {e}")),
        Ok(token) if token.is_empty() => p.key(key, format!("{key}: the token read is empty")),
        Ok(token) => auth.token = Token::new(token),
    }
}

/// The token a source gives, trimmed (as frp).
fn resolve_token(source: &TokenSource) -> Result<String, String> {
    match (source.kind.as_str(), &source.file, &source.exec) {
        ("file", Some(f), _) if !f.path.is_empty() => read_token_file(&f.path),
        ("file", _, _) => Err("type \"file\" needs file.path".into()),
        ("exec", _, Some(x)) if !x.command.is_empty() => {
            if !ALLOW_TOKEN_EXEC.load(std::sync::atomic::Ordering::Relaxed) {
                return Err("type \"exec\" runs a command, which is off unless the binary is started with --allow-unsafe TokenSourceExec".into());
            }
            if let Some(bad) = x
                .env
                .iter()
                .find(|e| e.name.is_empty() || e.name.contains('='))
            {
                return Err(format!(
                    "exec.env name {:?} is not a variable name",
                    bad.name
                ));
            }
            let mut cmd = std::process::Command::new(&x.command);
            cmd.args(&x.args)
                .envs(x.env.iter().map(|e| (&e.name, &e.value)));
            run_for_token(cmd, &x.command)
        }
        ("exec", _, _) => Err("type \"exec\" needs exec.command".into()),
        (other, _, _) => Err(format!(
            "type {other:?} is not a token source (supported: \"file\", \"exec\")"
        )),
    }
}

/// A token file's text, trimmed; at most 64 KiB is read (a token is a
/// line, and `/dev/zero` must not take the memory).
fn read_token_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut text = String::new();
    file.take(64 << 10)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(text.trim().to_owned())
}

/// How long a token command may run before it is killed.
pub const TOKEN_EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a token command: its stdout (64 KiB at most), or why not; killed
/// after [`TOKEN_EXEC_TIMEOUT`].
fn run_for_token(mut cmd: std::process::Command, name: &str) -> Result<String, String> {
    use std::io::Read;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(s) = stdout {
            let _ = s.take(64 << 10).read_to_end(&mut out);
        }
        out
    });
    let deadline = std::time::Instant::now() + TOKEN_EXEC_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{name} did not finish within {}s; killed",
                    TOKEN_EXEC_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for {name}: {e}")),
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{name} exited with {status}"));
    }
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
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
    fn proxy_labels_are_bounded_as_frps_bounds_them() {
        let many: String = (0..33)
            .map(|i| format!("annotations.k{i} = \"v\"\n"))
            .collect();
        let proxy = "[[proxies]]\nname = \"p\"\ntype = \"tcp\"\nlocalPort = 22\n";
        let e = client_err(&format!("{proxy}{many}"));
        assert!(e.contains("annotations: at most 32 entries"), "{e}");
        let long = format!("{proxy}metadatas.k = \"{}\"\n", "v".repeat(257));
        assert!(client_err(&long).contains("metadatas: at most 32 entries"));
        let fine: String = (0..32)
            .map(|i| format!("annotations.k{i} = \"v\"\n"))
            .collect();
        ClientConfig::from_toml(&format!("{proxy}{fine}")).expect("32 are fine");
    }

    #[test]
    fn names_are_bounded() {
        let long = "n".repeat(MAX_NAME_LEN + 1);
        let proxy = |name: &str| {
            format!("[[proxies]]\nname = \"{name}\"\ntype = \"tcp\"\nlocalPort = 22\n")
        };
        let e = client_err(&proxy(&long));
        assert!(e.contains("name is 257 bytes; at most 256"), "{e}");
        ClientConfig::from_toml(&proxy(&long[1..])).expect("256 bytes are fine");
        // The message names the entry without repeating all of it.
        let huge = client_err(&proxy(&"n".repeat(70_000)));
        assert!(
            huge.contains("name is 70000 bytes") && huge.len() < 1000,
            "{}",
            huge.len()
        );
        let visitor = |name: &str, server: &str| {
            format!(
                "[[visitors]]\nname = \"{name}\"\ntype = \"stcp\"\nserverName = \"{server}\"\n\
                 secretKey = \"k\"\nbindPort = 6000\n"
            )
        };
        assert!(client_err(&visitor(&long, "ssh")).contains("name is 257 bytes"));
        assert!(client_err(&visitor("v", &long)).contains("serverName is 257 bytes"));
        ClientConfig::from_toml(&visitor(&long[1..], &long[1..])).expect("256 bytes are fine");
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
    fn admin_api_without_credentials_listens_on_loopback_only() {
        let e = client_err("webServer.addr = '0.0.0.0'\nwebServer.port = 7400\n");
        assert!(
            e.contains("webServer.addr") && e.contains("webServer.user"),
            "{e}"
        );
        for ok in [
            "webServer.addr = '127.0.0.1'\nwebServer.port = 7400\n",
            "webServer.addr = '::1'\nwebServer.port = 7400\n",
            "webServer.addr = 'localhost'\nwebServer.port = 7400\n",
            "webServer.addr = '0.0.0.0'\nwebServer.port = 7400\nwebServer.user = 'a'\nwebServer.password = 'b'\n",
            "webServer.addr = '0.0.0.0'\n",
        ] {
            ClientConfig::from_toml(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        // frps's dashboard is meant to be reached from elsewhere.
        ServerConfig::from_toml("webServer.port = 7500\n").expect("frps");
    }

    #[test]
    fn a_proxy_asking_for_the_proxy_protocol_is_not_started() {
        let c = ClientConfig::from_toml(
            "[[proxies]]\nname='pp'\ntype='tcp'\nlocalPort=22\ntransport.proxyProtocolVersion='v2'\n\
             [[proxies]]\nname='plain'\ntype='tcp'\nlocalPort=22\n",
        )
        .expect("loads, without that proxy");
        let names: Vec<&str> = c.proxies.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["plain"]);
        let notes: Vec<String> = c.notes.iter().map(|n| n.to_string()).collect();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("\"pp\"") && n.contains("PROXY protocol")),
            "{notes:?}"
        );
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

    /// frp's stcp and sudp keys, on proxies and visitors, with frp's rules
    /// (a visitor needs serverName and bindPort; a negative bindPort is no
    /// listener, for stcp only).
    #[test]
    fn private_proxies_and_their_visitors() {
        let c = ClientConfig::from_toml(
            "user='alice'\n\
             [[proxies]]\nname='ssh'\ntype='stcp'\nsecretKey='k'\nlocalPort=22\nallowUsers=['bob']\n\
             [[proxies]]\nname='dns'\ntype='sudp'\nsecretKey='k'\nlocalPort=53\n\
             [[visitors]]\nname='ssh-v'\ntype='stcp'\nserverName='ssh'\nsecretKey='k'\nbindPort=6000\n\
             [[visitors]]\nname='fb'\ntype='stcp'\nserverUser='carol'\nserverName='ssh'\nbindPort=-1\n",
        )
        .expect("stcp and sudp");
        let ProxyConfig::Stcp(p) = &c.proxies[0] else {
            panic!("an stcp proxy");
        };
        assert_eq!(
            (p.secret_key.as_str(), p.allow_users.as_slice()),
            ("k", &["bob".to_owned()][..])
        );
        assert!(matches!(c.proxies[1], ProxyConfig::Sudp(_)));
        let v = &c.visitors[0];
        assert_eq!(
            (v.kind(), v.bind().as_deref(), v.target_user("alice")),
            (
                wire::message::ProxyKind::Stcp,
                Some("127.0.0.1:6000"),
                "alice"
            )
        );
        assert_eq!(
            (c.visitors[1].bind(), c.visitors[1].target_user("alice")),
            (None, "carol")
        );
        let e = client_err("[[visitors]]\nname='v'\ntype='stcp'\nserverName='s'\n");
        assert!(e.contains("bindPort is required"), "{e}");
        let e = client_err("[[visitors]]\nname='v'\ntype='stcp'\nbindPort=1\n");
        assert!(e.contains("serverName is required"), "{e}");
        let e = client_err("[[visitors]]\nname='v'\ntype='sudp'\nserverName='s'\nbindPort=-1\n");
        assert!(e.contains("stcp only"), "{e}");
        let e = client_err(
            "[[visitors]]\nname='v'\ntype='stcp'\nserverName='s'\nbindPort=1\nbindPrt=2\n",
        );
        assert!(e.contains("bindPrt"), "{e}");
        let e = client_err(
            "[[visitors]]\nname='v'\ntype='stcp'\nserverName='s'\nbindPort=1\n\
             [[visitors]]\nname='v'\ntype='sudp'\nserverName='s'\nbindPort=2\n",
        );
        assert!(e.contains("duplicate visitor name"), "{e}");
        let e = client_err("[[visitors]]\nname='v'\ntype='tcp'\nserverName='s'\nbindPort=1\n");
        assert!(e.contains("not a visitor type"), "{e}");
        let many: Vec<String> = (0..65).map(|i| format!("'u{i}'")).collect();
        let e = client_err(&format!(
            "[[proxies]]\nname='s'\ntype='stcp'\nlocalPort=22\nallowUsers=[{}]\n",
            many.join(",")
        ));
        assert!(e.contains("allowUsers: at most 64"), "{e}");
        // `start` applies to visitors too.
        let c = ClientConfig::from_toml(
            "start=['a']\n[[visitors]]\nname='a'\ntype='stcp'\nserverName='s'\nbindPort=1\n\
             [[visitors]]\nname='b'\ntype='stcp'\nserverName='s'\nbindPort=2\n",
        )
        .expect("start");
        assert_eq!(
            (c.visitors[0].enabled, c.visitors[1].enabled),
            (true, false)
        );
    }

    /// xtcp's keys with frp's defaults; only xtcp visitors have them, its
    /// fallbackTo names an stcp visitor, and frp's kcp is named.
    #[test]
    fn xtcp_proxies_and_visitors_with_frps_keys() {
        let c = ClientConfig::from_toml(
            "[[proxies]]\nname='p'\ntype='xtcp'\nsecretKey='k'\nlocalPort=22\n\
             natTraversal.disableAssistedAddrs=true\n\
             [[visitors]]\nname='fb'\ntype='stcp'\nserverName='s'\nbindPort=-1\n\
             [[visitors]]\nname='x'\ntype='xtcp'\nserverName='p'\nbindPort=7\nfallbackTo='fb'\n",
        )
        .expect("xtcp");
        let ProxyConfig::Xtcp(p) = &c.proxies[0] else {
            panic!("an xtcp proxy");
        };
        assert!(p.nat_traversal.disable_assisted_addrs);
        assert_eq!(c.nat_hole_stun_server, "stun.easyvoip.com:3478");
        let x = c.visitors[1].xtcp();
        assert_eq!(
            (
                x.protocol.as_str(),
                x.keep_tunnel_open,
                x.max_retries_an_hour,
                x.min_retry_interval
            ),
            ("quic", false, 8, 90)
        );
        assert_eq!(
            (x.fallback_to.as_str(), x.fallback_timeout_ms),
            ("fb", 1000)
        );
        let xtcp = |extra: &str| {
            client_err(&format!(
                "[[visitors]]\nname='x'\ntype='xtcp'\nserverName='p'\nbindPort=7\n{extra}"
            ))
        };
        assert!(xtcp("protocol='kcp'\n").contains("\"kcp\" is not supported yet"));
        assert!(xtcp("fallbackTo='nope'\n").contains("no such visitor"));
        assert!(xtcp("fallbackTimeoutMs=0\n").contains("between 1 and 60000"));
        let e = client_err(
            "[[visitors]]\nname='v'\ntype='stcp'\nserverName='s'\nbindPort=1\nkeepTunnelOpen=true\n",
        );
        assert!(
            e.contains("keepTunnelOpen is a key of xtcp visitors only"),
            "{e}"
        );
        let e = client_err("[[proxies]]\nname='t'\ntype='tcp'\nlocalPort=1\nnatTraversal.disableAssistedAddrs=true\n");
        assert!(e.contains("natTraversal"), "{e}");
    }

    #[test]
    fn bad_values_say_where() {
        let e = client_err("[[proxies]]\nname='ssh'\ntype='tcp'\nlocalPort=0\n");
        assert!(
            e.contains("proxy \"ssh\"") && e.contains("localPort"),
            "{e}"
        );
        let e = client_err("[[proxies]]\nname='ssh'\ntype='tcp'\n");
        assert!(e.contains("localPort is required"), "{e}");
        let e = client_err(
            "[[proxies]]\nname='a'\ntype='tcp'\nlocalPort=1\n[[proxies]]\nname='a'\ntype='tcp'\nlocalPort=2\n",
        );
        assert!(
            e.contains(":6:1: proxy \"a\"") && e.contains("duplicate"),
            "{e}"
        );
        let c = ClientConfig::from_toml(
            "[[proxies]]\nname='w'\ntype='tcp'\nlocalPort=80\n[proxies.plugin]\ntype='socks5'\n",
        )
        .expect("a plugin not built yet is said, not an error");
        assert!(c.proxies.is_empty());
        let note = c.notes.iter().map(ToString::to_string).collect::<String>();
        assert!(
            note.contains(
                "proxy \"w\": plugin \"socks5\" is not supported yet; the proxy is not started"
            ),
            "{note}"
        );
        let c = ClientConfig::from_toml(
            "[[proxies]]\nname='w'\ntype='tcp'\nlocalPort=80\n[proxies.plugin]\ntype='socks5'\n\
             [[proxies]]\nname='p'\ntype='tcp'\nlocalPort=80\ntransport.proxyProtocolVersion='v2'\n\
             [[visitors]]\nname='v'\ntype='stcp'\nserverName='w'\nbindPort=-1\n[visitors.plugin]\ntype='virtual_net'\n",
        )
        .expect("said, not an error");
        let listed: Vec<_> = c
            .not_started
            .iter()
            .map(|n| (n.name.as_str(), n.kind, n.visitor, n.reason.as_str()))
            .collect();
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert_eq!(
            listed[0],
            (
                "v",
                "stcp",
                true,
                "visitor plugin \"virtual_net\" is not supported yet"
            )
        );
        assert_eq!(
            listed[1],
            ("w", "tcp", false, "plugin \"socks5\" is not supported yet")
        );
        assert_eq!((listed[2].0, listed[2].1), ("p", "tcp"));
        assert!(listed[2].3.contains("proxyProtocolVersion"), "{listed:?}");
        let e = client_err("[[proxies]]\nname='w'\ntype='htp'\nlocalPort=80\n");
        assert!(
            e.contains("\"htp\"") && e.contains("not a proxy type"),
            "{e}"
        );
        let e = client_err("auth.method = 'oidc'\n");
        assert!(
            e.contains("<inline>:1:6: auth.method \"oidc\" is not supported yet"),
            "{e}"
        );
        let e = ServerConfig::from_toml("auth.method = 'oidc'\n")
            .expect_err("frps refuses OIDC rather than accept tokens")
            .to_string();
        assert!(e.contains("not supported yet"), "{e}");
        let e = client_err("auth.method = 'password'\n");
        assert!(e.contains("is not a method"), "{e}");
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
            [
                Some(1),
                Some(2),
                Some(4),
                Some(9),
                Some(10),
                Some(15),
                Some(18)
            ],
            "{e}"
        );
        let text = e.to_string();
        for want in [
            "<inline>:1:1: unknown key `serverAdr`; did you mean `serverAddr`?",
            "<inline>:2:1: serverPort must be between 1 and 65535",
            "<inline>:4:9: log.level: unknown variant `loud`",
            "<inline>:9:13: proxy \"a\": localPort: invalid type",
            "<inline>:10:1: proxy \"a\": unknown key `bogus`",
            "<inline>:15:1: proxy \"b\": localPort must be between 1 and 65535",
            "<inline>:18:1: proxy \"a\": duplicate proxy name",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        // serverPort = 0 is a value problem: found in the same run as the
        // unknown key beside it (the bad keys are taken out, the rest checked).
        let e = client_err("serverPort = 0\nuser = 'u'\nudpPacketSize = 0\n");
        assert!(
            e.contains("<inline>:1:1: serverPort") && e.contains("<inline>:3:1: udpPacketSize"),
            "{e}"
        );
    }
}
