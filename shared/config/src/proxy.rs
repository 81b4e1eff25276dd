//! `[[proxies]]` entries: one struct per kind, each rejecting unknown keys.
//!
//! serde's `flatten` does not combine with `deny_unknown_fields`, and
//! internally tagged enums do not reject unknown keys, so an entry is read
//! in two steps: as a plain table to learn its `type`, then as that kind's
//! struct. The keys every kind has are written once, in `proxy_kind!`.
//! Adding a kind: a struct through the macro, a variant of [`ProxyConfig`],
//! and one arm in [`parse_entry`].

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::message::ProxyKind;

use crate::diag::{Diagnostic, Problems, Source};

/// Kinds frp has that are not built yet: named in the error, so a config
/// written for frp fails clearly rather than as an unknown word.
const LATER: &[&str] = &["stcp", "sudp", "xtcp"];

/// A proxy as configured, per kind. Serialized flat with its `type`, as
/// frp writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ProxyConfig {
    Tcp(TcpProxy),
    Udp(UdpProxy),
    Https(HttpsProxy),
    Http(HttpProxy),
    Tcpmux(TcpmuxProxy),
}

macro_rules! proxy_kind {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
        pub struct $name {
            pub name: String,
            // frp spells it localIP, which camelCase would not produce.
            #[serde(rename = "localIP")]
            pub local_ip: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub local_port: Option<u16>,
            /// false: the proxy stays in the file but is not started.
            pub enabled: bool,
            /// Free key/value pairs (frp sends them to server plugins).
            pub metadatas: std::collections::BTreeMap<String, String>,
            /// Free key/value pairs (frp shows them on its dashboard).
            pub annotations: std::collections::BTreeMap<String, String>,
            /// frp's per-proxy `transport.*` we accept.
            pub transport: ProxyTransport,
            $(
                $(#[$fdoc])*
                pub $field: $ty,
            )*
        }

        impl $name {
            /// The local service's address (validation guarantees the port).
            pub fn local_addr(&self) -> String {
                join_host_port(&self.local_ip, self.local_port.unwrap_or_default())
            }
        }
    };
}

proxy_kind!(
    /// `type = "tcp"`: a public TCP port on frps.
    TcpProxy {
        /// 0 lets the server choose.
        remote_port: u16,
    }
);

impl Default for TcpProxy {
    fn default() -> Self {
        TcpProxy {
            name: String::new(),
            local_ip: DEFAULT_LOCAL_IP.into(),
            local_port: None,
            enabled: true,
            metadatas: Default::default(),
            annotations: Default::default(),
            transport: ProxyTransport::default(),
            remote_port: 0,
        }
    }
}

proxy_kind!(
    /// `type = "udp"`: a public UDP port on frps; each user address gets a
    /// socket of its own towards the local service, so answers find their
    /// way back.
    UdpProxy {
        /// 0 lets the server choose.
        remote_port: u16,
        /// Seconds without a datagram either way after which a user's
        /// mapping (and its socket) is dropped. frp uses a fixed 30.
        udp_idle_timeout: u64,
        /// Most user addresses mapped at once; datagrams from further
        /// addresses are dropped (and counted) until one expires.
        udp_max_mappings: usize,
    }
);

impl Default for UdpProxy {
    fn default() -> Self {
        UdpProxy {
            name: String::new(),
            local_ip: DEFAULT_LOCAL_IP.into(),
            local_port: None,
            enabled: true,
            metadatas: Default::default(),
            annotations: Default::default(),
            transport: ProxyTransport::default(),
            remote_port: 0,
            udp_idle_timeout: 30,
            udp_max_mappings: 1024,
        }
    }
}

proxy_kind!(
    /// `type = "https"`: TLS connections to frps's `vhostHTTPSPort` whose
    /// ClientHello names one of these domains are passed through, untouched,
    /// to the local service.
    HttpsProxy {
        /// Full names; `*.example.com` matches every name under it.
        custom_domains: Vec<String>,
        /// A name under the server's `subDomainHost` (`web` →
        /// `web.example.com`).
        subdomain: String,
    }
);

impl Default for HttpsProxy {
    fn default() -> Self {
        HttpsProxy {
            name: String::new(),
            local_ip: DEFAULT_LOCAL_IP.into(),
            local_port: None,
            enabled: true,
            metadatas: Default::default(),
            annotations: Default::default(),
            transport: ProxyTransport::default(),
            custom_domains: Vec::new(),
            subdomain: String::new(),
        }
    }
}

/// frp's per-proxy `transport.useEncryption` / `useCompression`. The tunnel
/// is TLS already, so encryption adds nothing (accepted, noted at debug);
/// compression is not done (accepted, noted at start).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ProxyTransport {
    pub use_encryption: bool,
    pub use_compression: bool,
}

/// `requestHeaders` / `responseHeaders`: `set.Name = "value"` (frp's only
/// operation).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderOps {
    pub set: std::collections::BTreeMap<String, String>,
}

proxy_kind!(
    /// `type = "http"`: requests to frps's `vhostHTTPPort` whose Host is one
    /// of these domains (and whose path starts with one of `locations`)
    /// are forwarded to the local web service.
    HttpProxy {
        /// Full names; `*.example.com` matches every name under it.
        custom_domains: Vec<String>,
        /// A name under the server's `subDomainHost`.
        subdomain: String,
        /// Path prefixes served by this proxy; empty = every path ("/").
        /// The longest matching prefix wins across proxies.
        locations: Vec<String>,
        /// Basic auth asked of users (both set, or neither).
        #[serde(rename = "httpUser")]
        http_user: String,
        #[serde(rename = "httpPassword")]
        http_password: String,
        /// Host header sent to the local service instead of the user's.
        host_header_rewrite: String,
        /// Headers set on requests (`requestHeaders.set.X-From = "frp"`).
        request_headers: HeaderOps,
        /// Headers set on responses.
        response_headers: HeaderOps,
        /// Only requests whose basic-auth user is this one reach this
        /// proxy (others may share the name); empty = anyone.
        #[serde(rename = "routeByHTTPUser")]
        route_by_http_user: String,
    }
);

impl Default for HttpProxy {
    fn default() -> Self {
        HttpProxy {
            name: String::new(),
            local_ip: DEFAULT_LOCAL_IP.into(),
            local_port: None,
            enabled: true,
            metadatas: Default::default(),
            annotations: Default::default(),
            transport: ProxyTransport::default(),
            custom_domains: Vec::new(),
            subdomain: String::new(),
            locations: Vec::new(),
            http_user: String::new(),
            http_password: String::new(),
            host_header_rewrite: String::new(),
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            route_by_http_user: String::new(),
        }
    }
}

proxy_kind!(
    /// `type = "tcpmux"`: TCP connections to frps's `tcpmuxHTTPConnectPort`
    /// that open with `CONNECT <one of these names>:<port>` are carried to
    /// the local service.
    TcpmuxProxy {
        /// Only "httpconnect" exists (as in frp).
        multiplexer: String,
        custom_domains: Vec<String>,
        subdomain: String,
        /// `Proxy-Authorization` asked of users (both set, or neither).
        #[serde(rename = "httpUser")]
        http_user: String,
        #[serde(rename = "httpPassword")]
        http_password: String,
        /// Only connections whose Proxy-Authorization user is this one;
        /// empty = anyone.
        #[serde(rename = "routeByHTTPUser")]
        route_by_http_user: String,
    }
);

impl Default for TcpmuxProxy {
    fn default() -> Self {
        TcpmuxProxy {
            name: String::new(),
            local_ip: DEFAULT_LOCAL_IP.into(),
            local_port: None,
            enabled: true,
            metadatas: Default::default(),
            annotations: Default::default(),
            transport: ProxyTransport::default(),
            multiplexer: "httpconnect".into(),
            custom_domains: Vec::new(),
            subdomain: String::new(),
            http_user: String::new(),
            http_password: String::new(),
            route_by_http_user: String::new(),
        }
    }
}

impl UdpProxy {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.udp_idle_timeout)
    }
}

const DEFAULT_LOCAL_IP: &str = "127.0.0.1";

/// `host:port`, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl ProxyConfig {
    pub fn name(&self) -> &str {
        match self {
            ProxyConfig::Tcp(p) => &p.name,
            ProxyConfig::Udp(p) => &p.name,
            ProxyConfig::Https(p) => &p.name,
            ProxyConfig::Http(p) => &p.name,
            ProxyConfig::Tcpmux(p) => &p.name,
        }
    }

    pub fn kind(&self) -> ProxyKind {
        match self {
            ProxyConfig::Tcp(_) => ProxyKind::Tcp,
            ProxyConfig::Udp(_) => ProxyKind::Udp,
            ProxyConfig::Https(_) => ProxyKind::Https,
            ProxyConfig::Http(_) => ProxyKind::Http,
            ProxyConfig::Tcpmux(_) => ProxyKind::Tcpmux,
        }
    }

    /// `enabled` (false: configured but not started).
    pub fn enabled(&self) -> bool {
        self.base().0
    }

    /// `transport.useEncryption` / `useCompression`.
    pub fn transport(&self) -> &ProxyTransport {
        self.base().1
    }

    fn base(&self) -> (bool, &ProxyTransport) {
        match self {
            ProxyConfig::Tcp(p) => (p.enabled, &p.transport),
            ProxyConfig::Udp(p) => (p.enabled, &p.transport),
            ProxyConfig::Https(p) => (p.enabled, &p.transport),
            ProxyConfig::Http(p) => (p.enabled, &p.transport),
            ProxyConfig::Tcpmux(p) => (p.enabled, &p.transport),
        }
    }

    /// The local service's address.
    pub fn local_addr(&self) -> String {
        let (_, ip, port) = self.common();
        join_host_port(ip, port.unwrap_or_default())
    }

    /// The keys every kind has: name, local IP and local port.
    fn common(&self) -> (&str, &str, Option<u16>) {
        match self {
            ProxyConfig::Tcp(p) => (&p.name, &p.local_ip, p.local_port),
            ProxyConfig::Udp(p) => (&p.name, &p.local_ip, p.local_port),
            ProxyConfig::Https(p) => (&p.name, &p.local_ip, p.local_port),
            ProxyConfig::Http(p) => (&p.name, &p.local_ip, p.local_port),
            ProxyConfig::Tcpmux(p) => (&p.name, &p.local_ip, p.local_port),
        }
    }

    /// Checks values; the caller checks names across entries.
    pub(crate) fn check(&self, p: &mut Problems<'_>) {
        let (name, local_ip, local_port) = self.common();
        if name.trim().is_empty() {
            p.key("name", "name must not be empty");
        }
        if local_ip.trim().is_empty() {
            p.key("localIP", "localIP must not be empty");
        }
        match local_port {
            None => p.key("localPort", "localPort is required"),
            Some(0) => p.key("localPort", "localPort must be between 1 and 65535, got 0"),
            Some(_) => {}
        }
        match self {
            ProxyConfig::Https(h) => check_names(&h.custom_domains, &h.subdomain, p),
            ProxyConfig::Http(h) => {
                check_names(&h.custom_domains, &h.subdomain, p);
                if h.http_user.is_empty() != h.http_password.is_empty() {
                    p.key("httpUser", "httpUser and httpPassword go together");
                }
                if h.locations.iter().any(|l| !l.starts_with('/')) {
                    p.key("locations", "every location is a path starting with /");
                }
            }
            ProxyConfig::Tcpmux(t) => {
                check_names(&t.custom_domains, &t.subdomain, p);
                if t.multiplexer != "httpconnect" {
                    p.key(
                        "multiplexer",
                        format!(
                            "multiplexer {:?} is not supported (supported: \"httpconnect\")",
                            t.multiplexer
                        ),
                    );
                }
                if t.http_user.is_empty() != t.http_password.is_empty() {
                    p.key("httpUser", "httpUser and httpPassword go together");
                }
            }
            _ => {}
        }
        if let ProxyConfig::Udp(u) = self {
            if u.udp_idle_timeout == 0 {
                p.key("udpIdleTimeout", "udpIdleTimeout must be at least 1 second");
            }
            if u.udp_max_mappings == 0 {
                p.key("udpMaxMappings", "udpMaxMappings must be at least 1");
            }
        }
    }
}

/// The names of an http or https proxy.
fn check_names(domains: &[String], subdomain: &str, p: &mut Problems<'_>) {
    if domains.is_empty() && subdomain.trim().is_empty() {
        p.key("customDomains", "set customDomains or subdomain (or both)");
    }
    if domains.iter().any(|d| d.trim().is_empty()) {
        p.key(
            "customDomains",
            "customDomains must not contain an empty name",
        );
    }
    if subdomain.contains('.') || subdomain.contains('*') {
        p.key(
            "subdomain",
            "subdomain is one label, without dots or wildcards",
        );
    }
}

/// Where entry `i` is in the file: from its header (or inline table) to the
/// next entry's.
pub(crate) fn entry_ranges(starts: &[usize], len: usize) -> Vec<Range<usize>> {
    (0..starts.len())
        .map(|i| starts[i]..starts.get(i + 1).copied().unwrap_or(len))
        .collect()
}

/// Reads entry `i` as its kind's struct, collecting every key that is
/// unknown or has a bad value (the key is removed and the entry retried).
pub(crate) fn parse_entry(
    src: &Source<'_>,
    i: usize,
    mut table: toml::Table,
    range: Range<usize>,
) -> Result<ProxyConfig, Vec<Diagnostic>> {
    let name = table
        .get("name")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let at = match &name {
        Some(n) => format!("proxies[{i}] (name {n:?})"),
        None => format!("proxies[{i}]"),
    };
    let root = Problems::new(src);
    let mut p = root.within(range, at);
    let kind = match table.remove("type") {
        Some(toml::Value::String(t)) => t,
        Some(other) => {
            p.key(
                "type",
                format!("type must be a string, not {}", other.type_str()),
            );
            return Err(p.found);
        }
        None => {
            p.key(
                "name",
                "type is required (supported: \"tcp\", \"udp\", \"http\", \"https\", \"tcpmux\")",
            );
            return Err(p.found);
        }
    };
    let parse = |t: toml::Table| match kind.as_str() {
        "tcp" => Some(TcpProxy::deserialize(t).map(ProxyConfig::Tcp)),
        "udp" => Some(UdpProxy::deserialize(t).map(ProxyConfig::Udp)),
        "https" => Some(HttpsProxy::deserialize(t).map(ProxyConfig::Https)),
        "http" => Some(HttpProxy::deserialize(t).map(ProxyConfig::Http)),
        "tcpmux" => Some(TcpmuxProxy::deserialize(t).map(ProxyConfig::Tcpmux)),
        _ => None,
    };
    let Some(whole) = parse(toml::Table::new()) else {
        let t = kind.as_str();
        let why = if LATER.contains(&t) {
            "is not supported yet"
        } else {
            "is not a proxy type"
        };
        p.key(
            "type",
            format!(
                "type {t:?} {why} (supported: \"tcp\", \"udp\", \"http\", \"https\", \"tcpmux\")"
            ),
        );
        return Err(p.found);
    };
    drop(whole);
    // Every key on its own first (all fields have defaults), so each bad
    // key is found and named, whatever serde's message says.
    let mut bad = Vec::new();
    for (k, v) in &table {
        let one = toml::Table::from_iter([(k.clone(), v.clone())]);
        if let Some(Err(e)) = parse(one) {
            p.key(k, e.message().trim_end().replace('\n', " "));
            bad.push(k.clone());
        }
    }
    for k in &bad {
        table.remove(k);
    }
    match parse(table) {
        Some(Ok(cfg)) if p.found.is_empty() => Ok(cfg),
        Some(Err(e)) => {
            p.key("name", e.message().trim_end().replace('\n', " "));
            Err(p.found)
        }
        _ => Err(p.found),
    }
}
