//! frpc's settings.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Found, Problems};
use crate::doc::{Node, Value};
use crate::format::Format;
use crate::load::{self, Loader};
use crate::proxy::{self, ProxyConfig};
use crate::visitor::VisitorConfig;
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
    /// Names this frpc to frps instead of a random run id: the same
    /// clientID is the same client across restarts (its new session
    /// replaces the old one; dashboard, API and `/metrics` keep the key).
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Free key/value pairs sent to frps at login (its API shows them;
    /// frp passes them to server plugins).
    pub metadatas: std::collections::BTreeMap<String, String>,
    /// Only these proxies are started (empty: all that are enabled).
    pub start: Vec<String>,
    /// More files of `[[proxies]]` (globs, relative to this file), in any
    /// format.
    pub includes: Vec<String>,
    /// The DNS server (`ip` or `ip:port`, port 53 by default) that
    /// resolves serverAddr and the proxy URL's host instead of the
    /// system's resolver.
    pub dns_server: String,
    /// The STUN server xtcp peers learn their public address from
    /// (`host:port`).
    pub nat_hole_stun_server: String,
    /// Read separately, one entry at a time (see `proxy`).
    #[serde(skip_deserializing)]
    pub proxies: Vec<ProxyConfig>,
    /// `[[visitors]]`, read one entry at a time (see `visitor`).
    #[serde(skip_deserializing)]
    pub visitors: Vec<VisitorConfig>,
    /// Directory of the config file (for paths that default next to it;
    /// empty without a file: see `state`).
    #[serde(skip)]
    pub config_dir: PathBuf,
    /// What the file asks for that is not built yet, one line each (the
    /// binary logs them at start).
    #[serde(skip)]
    pub notes: Vec<Diagnostic>,
    /// Proxies and visitors the file names that are not started because
    /// they need what is not built yet (`frpc status` lists them).
    #[serde(skip)]
    pub not_started: Vec<NotStarted>,
}

/// A proxy or visitor that is configured but not started, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct NotStarted {
    pub name: String,
    /// frp's type name ("stcp"…), or "unknown".
    pub kind: &'static str,
    pub visitor: bool,
    pub reason: String,
}

/// frp's proxy and visitor types, as the names status groups them by.
const KINDS: [&str; 8] = [
    "tcp", "udp", "http", "https", "tcpmux", "stcp", "sudp", "xtcp",
];

fn kind_of(node: &Node) -> &'static str {
    let kind = node.get("type").and_then(Node::as_str).unwrap_or("");
    KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("unknown")
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
    /// TCP keepalive idle time in seconds on the connection to frps; ≤ 0
    /// disables. Our older spelling `tcpKeepalive` still works.
    #[serde(alias = "tcpKeepalive")]
    pub dial_server_keepalive: i64,
    /// Seconds to wait for the TCP connection to frps (or to the proxy).
    pub dial_server_timeout: u64,
    /// Local address to connect to frps from; empty: the system's choice.
    #[serde(rename = "connectServerLocalIP")]
    pub connect_server_local_ip: String,
    /// Reach frps through this proxy: `http://[user:pass@]host:port` (HTTP
    /// CONNECT) or `socks5://[user:pass@]host:port`. Empty: the
    /// `http_proxy` environment variable, as frp; none when that is unset.
    #[serde(rename = "proxyURL")]
    pub proxy_url: String,
    /// frp's multiplexer keepalive: here the heartbeat does that job, so
    /// when `heartbeatInterval` is not set (≤ 0) with `tcpMux`, this is
    /// the interval of the heartbeat.
    pub tcp_mux_keepalive_interval: i64,
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
            dial_server_keepalive: DEFAULT_TCP_KEEPALIVE,
            dial_server_timeout: 10,
            connect_server_local_ip: String::new(),
            proxy_url: String::new(),
            tcp_mux_keepalive_interval: 30,
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
            client_id: String::new(),
            metadatas: Default::default(),
            start: Vec::new(),
            includes: Vec::new(),
            dns_server: String::new(),
            nat_hole_stun_server: "stun.easyvoip.com:3478".into(),
            proxies: Vec::new(),
            visitors: Vec::new(),
            config_dir: PathBuf::new(),
            notes: Vec::new(),
            not_started: Vec::new(),
        }
    }
}

impl ClientConfig {
    /// Where trust-on-first-use fingerprints are kept.
    pub fn known_hosts_path(&self) -> PathBuf {
        match self.transport.tls.known_hosts_file.as_str() {
            "" => crate::state::state_dir(&self.config_dir, "frpc_known_servers")
                .join("frpc_known_servers"),
            f => PathBuf::from(f),
        }
    }

    /// The heartbeat interval: with `tcpMux`, frp's multiplexer keepalive
    /// interval lowers it (the heartbeat is our keepalive).
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        let t = &self.transport;
        let beat = secs(t.heartbeat_interval)?;
        match (t.tcp_mux, secs(t.tcp_mux_keepalive_interval)) {
            (true, Some(keepalive)) => Some(beat.min(keepalive)),
            _ => Some(beat),
        }
    }

    pub fn heartbeat_timeout(&self) -> Option<Duration> {
        secs(self.transport.heartbeat_timeout)
    }

    pub fn tcp_keepalive(&self) -> Option<Duration> {
        secs(self.transport.dial_server_keepalive)
    }

    /// First and largest reconnect delay (validated positive and finite).
    pub fn reconnect_delays(&self) -> (Duration, Duration) {
        let t = &self.transport;
        (
            Duration::from_secs_f64(t.reconnect_initial_delay),
            Duration::from_secs_f64(t.reconnect_max_delay),
        )
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

    /// `text` as if it were the file at `path` (its format and directory
    /// taken from it), for checking a file before it is written.
    pub fn from_toml_at(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::from_text_as(text, path, load::Trust::Operator)
    }

    /// The file at `path` as far as `trust` goes (see [`load::Trust`]).
    pub fn load_as(path: &Path, trust: load::Trust) -> Result<Self, ConfigError> {
        load::load_as(path, trust)
    }

    /// `text` as if it were the file at `path`, as far as `trust` goes.
    pub fn from_text_as(text: &str, path: &Path, trust: load::Trust) -> Result<Self, ConfigError> {
        let mut cfg: Self = load::parse_as(text, path, None, trust)?;
        load::Settings::set_dir(&mut cfg, crate::config_dir(path));
        Ok(cfg)
    }

    /// Checks the common keys and fills derived values.
    fn check(&mut self, p: &mut Problems<'_>, trust: load::Trust) {
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
        check_auth(&mut self.auth, p, trust);
        self.web_server.check(p);
        self.check_admin_exposure(p);
        self.check_dial(p);
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

    /// frpc's admin API hands out the token and takes a new config: without
    /// credentials it is only served on a loopback address.
    fn check_admin_exposure(&self, p: &mut Problems<'_>) {
        let web = &self.web_server;
        let addr = web.addr.trim();
        let loopback = addr.eq_ignore_ascii_case("localhost")
            || addr
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if web.enabled() && web.user.is_empty() && !loopback {
            p.key(
                "webServer.addr",
                format!(
                    "webServer.addr = \"{addr}\" without webServer.user and webServer.password would let \
                     anyone who reaches it read the token and replace the config: set both, or \
                     listen on 127.0.0.1"
                ),
            );
        }
    }

    /// `dnsServer` as an address (port 53 unless given), as frp reads it.
    pub fn dns_server(&self) -> Option<std::net::SocketAddr> {
        let s = self.dns_server.as_str();
        s.parse()
            .ok()
            .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()))
    }

    /// `connectServerLocalIP` and `proxyURL`, so `verify` catches them.
    fn check_dial(&self, p: &mut Problems<'_>) {
        let t = &self.transport;
        if !t.connect_server_local_ip.is_empty()
            && t.connect_server_local_ip
                .parse::<std::net::IpAddr>()
                .is_err()
        {
            p.key(
                "transport.connectServerLocalIP",
                format!(
                    "transport.connectServerLocalIP {:?} is not an IP address",
                    t.connect_server_local_ip
                ),
            );
        }
        let url = t.proxy_url.to_ascii_lowercase();
        let scheme_ok = ["http://", "socks5://", "socks5h://"]
            .iter()
            .any(|s| url.starts_with(s));
        let has_port = url
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.trim_end_matches('/').parse::<u16>().is_ok());
        let good = url.is_empty() || (scheme_ok && has_port);
        if !good {
            p.key(
                "transport.proxyURL",
                format!("transport.proxyURL {:?} is not http://[user:pass@]host:port or socks5://[user:pass@]host:port", t.proxy_url),
            );
        }
        if !self.dns_server.is_empty() && self.dns_server().is_none() {
            p.key(
                "dnsServer",
                format!(
                    "dnsServer {:?} is not an IP address (with an optional :port)",
                    self.dns_server
                ),
            );
        }
        if self.client_id.len() > wire::message::MAX_CLIENT_ID {
            p.key(
                "clientID",
                format!(
                    "clientID is longer than {} bytes",
                    wire::message::MAX_CLIENT_ID
                ),
            );
        }
        let long = |s: &String| s.len() > wire::message::MAX_META_LEN;
        if self.metadatas.len() > wire::message::MAX_METAS
            || self.metadatas.iter().any(|(k, v)| long(k) || long(v))
        {
            p.key(
                "metadatas",
                format!(
                    "metadatas: at most {} entries of at most {} bytes each",
                    wire::message::MAX_METAS,
                    wire::message::MAX_META_LEN
                ),
            );
        }
        if t.dial_server_timeout == 0 {
            p.key(
                "transport.dialServerTimeout",
                "transport.dialServerTimeout must be at least 1 second",
            );
        }
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

impl load::Settings for ClientConfig {
    const SIDE: crate::legacy::Side = crate::legacy::Side::Client;

    /// The common keys, each proxy entry (with those of included files),
    /// then validation.
    fn read(mut root: Node, loader: &mut Loader, found: &mut Vec<Found>) -> Option<Self> {
        let proxies = root.take("proxies").map(|(_, n)| n);
        let visitors = root.take("visitors").map(|(_, n)| n);
        crate::compat::client(&mut root, found);
        let (cfg, errors) = crate::de::read_all::<ClientConfig>(&root);
        found.extend(errors.into_iter().map(|e| Found::error(e.at, e.describe())));
        let mut entries = list(proxies.as_ref(), "proxies", &root, found);
        let mut skipped = list(visitors.as_ref(), "visitors", &root, found);
        if let Some(cfg) = &cfg {
            for (proxies, visitors) in include(&cfg.includes, loader, found) {
                entries.extend(proxies);
                skipped.extend(visitors);
            }
        }
        let (visitors, mut not_started) = read_visitors(&skipped, found);
        let read = read_proxies(&entries, found);
        not_started.extend(read.iter().filter_map(|e| e.not_started.clone()));
        let mut problems = Problems::new(&root);
        check_proxies(&read, &mut problems);
        crate::visitor::check_all(&visitors, &mut problems);
        let cfg = cfg.map(|mut cfg| {
            cfg.proxies = read.iter().filter_map(|e| e.cfg.clone()).collect();
            cfg.visitors = visitors.into_iter().filter_map(|(_, _, v)| v).collect();
            cfg.not_started = not_started;
            cfg.check(&mut problems, loader.trust);
            cfg.apply_start();
            cfg
        });
        found.extend(problems.found);
        cfg
    }

    fn set_dir(&mut self, dir: PathBuf) {
        self.config_dir = dir;
    }

    fn notes_mut(&mut self) -> &mut Vec<Diagnostic> {
        &mut self.notes
    }
}

/// The entries of `[[proxies]]` or `[[visitors]]`.
fn list(node: Option<&Node>, key: &str, root: &Node, found: &mut Vec<Found>) -> Vec<Node> {
    match node.map(|n| &n.value) {
        None => Vec::new(),
        Some(Value::Seq(items)) => items.clone(),
        Some(Value::Null) => Vec::new(),
        Some(other) => {
            found.push(Found::error(
                root.find_key(key),
                format!("{key} must be a list of tables, not {other}"),
            ));
            Vec::new()
        }
    }
}

/// The proxies and visitors of the files `includes` names (as frp, only
/// those are taken from an included file).
fn include(
    patterns: &[String],
    loader: &mut Loader,
    found: &mut Vec<Found>,
) -> Vec<(Vec<Node>, Vec<Node>)> {
    let mut out = Vec::new();
    let confined = loader.trust == load::Trust::Upload;
    for path in load::expand_includes(patterns, &loader.dir, confined, found) {
        let Some(mut root) = loader.include(&path, found) else {
            continue;
        };
        let proxies = root.take("proxies").map(|(_, n)| n);
        let visitors = root.take("visitors").map(|(_, n)| n);
        for (key, _) in root.entries() {
            found.push(Found::unsupported(
                Some(key.at),
                format!(
                    "{}: only proxies and visitors are read from an included file; `{}` is ignored",
                    path.display(),
                    key.name.escape_debug()
                ),
            ));
        }
        out.push((
            list(proxies.as_ref(), "proxies", &root, found),
            list(visitors.as_ref(), "visitors", &root, found),
        ));
    }
    out
}

/// A visitor entry: its index, where it is, and its config (None when it
/// had errors, reported, or is not built).
type VisitorEntry = (usize, Node, Option<VisitorConfig>);

/// The `[[visitors]]` entries; those of kinds not built yet are named once
/// and listed as not started.
fn read_visitors(nodes: &[Node], found: &mut Vec<Found>) -> (Vec<VisitorEntry>, Vec<NotStarted>) {
    let (mut read, mut not_started) = (Vec::new(), Vec::new());
    for (i, node) in nodes.iter().enumerate() {
        match crate::visitor::parse_entry(node, i, found) {
            crate::visitor::Parsed::Ok(v) => read.push((i, node.clone(), Some(*v))),
            crate::visitor::Parsed::Bad => read.push((i, node.clone(), None)),
            crate::visitor::Parsed::Skipped(reason) => not_started.push(NotStarted {
                name: node
                    .get("name")
                    .and_then(Node::as_str)
                    .unwrap_or("?")
                    .to_owned(),
                kind: kind_of(node),
                visitor: true,
                reason,
            }),
        }
    }
    (read, not_started)
}

/// The `[[proxies]]` entries, each parsed as its kind.
fn read_proxies(nodes: &[Node], found: &mut Vec<Found>) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let name = node
            .get("name")
            .and_then(Node::as_str)
            .unwrap_or("")
            .to_owned();
        let (cfg, not_started) = match proxy::parse_entry(node, i, found) {
            proxy::Parsed::Ok(c) => (Some(*c), None),
            proxy::Parsed::Bad => (None, None),
            proxy::Parsed::Skipped(reason) => (
                None,
                Some(NotStarted {
                    name: name.clone(),
                    kind: kind_of(node),
                    visitor: false,
                    reason,
                }),
            ),
        };
        out.push(Entry {
            index: i,
            name,
            cfg,
            node: node.clone(),
            not_started,
        });
    }
    out
}

/// A parsed entry, its index and where it is.
struct Entry {
    index: usize,
    name: String,
    /// None when the entry had errors (already reported) or is skipped.
    cfg: Option<ProxyConfig>,
    node: Node,
    /// A kind or plugin not built yet (already said), and why: not
    /// checked further.
    not_started: Option<NotStarted>,
}

fn check_proxies(proxies: &[Entry], p: &mut Problems<'_>) {
    let mut names = HashSet::new();
    for e in proxies {
        let mut at = p.within(&e.node, proxy::who(e.index, &e.name));
        if !e.name.trim().is_empty() && !names.insert(e.name.as_str()) && e.not_started.is_none() {
            at.key("name", format!("duplicate proxy name {:?}", e.name));
        }
        if let Some(cfg) = &e.cfg {
            cfg.check(&mut at);
        }
        p.merge(at);
    }
}

impl ClientConfig {
    /// `start`: only the proxies it names run (the others stay configured
    /// but disabled, so a reload or `start` change can bring them up).
    fn apply_start(&mut self) {
        if self.start.is_empty() {
            return;
        }
        for proxy in &mut self.proxies {
            if !self.start.iter().any(|n| n == proxy.name()) {
                proxy.set_enabled(false);
            }
        }
        for visitor in &mut self.visitors {
            if !self.start.contains(&visitor.name) {
                visitor.enabled = false;
            }
        }
    }
}
