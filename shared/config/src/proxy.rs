//! `[[proxies]]` entries: one struct per kind, each rejecting unknown keys.
//!
//! serde's `flatten` does not combine with `deny_unknown_fields`, and
//! internally tagged enums do not reject unknown keys, so an entry is read
//! in two steps: as a plain table to learn its `type`, then as that kind's
//! struct. The keys every kind has are written once, in `proxy_kind!`.
//! Adding a kind: a struct through the macro, a variant of [`ProxyConfig`],
//! and one arm in [`parse_entry`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::message::ProxyKind;

use crate::compat::LATER_TYPES;
use crate::diag::{Found, Problems};
use crate::doc::Node;

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

/// A proxy's `metadatas` or `annotations`.
pub type Labels = std::collections::BTreeMap<String, String>;

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
            pub metadatas: Labels,
            /// Free key/value pairs (frp shows them on its dashboard).
            pub annotations: Labels,
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

    /// Keeps the proxy configured but not started (`start` leaves it out).
    pub(crate) fn set_enabled(&mut self, enabled: bool) {
        match self {
            ProxyConfig::Tcp(p) => p.enabled = enabled,
            ProxyConfig::Udp(p) => p.enabled = enabled,
            ProxyConfig::Https(p) => p.enabled = enabled,
            ProxyConfig::Http(p) => p.enabled = enabled,
            ProxyConfig::Tcpmux(p) => p.enabled = enabled,
        }
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

    /// `metadatas` and `annotations`, as frps is told them.
    pub fn labels(&self) -> (&Labels, &Labels) {
        match self {
            ProxyConfig::Tcp(p) => (&p.metadatas, &p.annotations),
            ProxyConfig::Udp(p) => (&p.metadatas, &p.annotations),
            ProxyConfig::Https(p) => (&p.metadatas, &p.annotations),
            ProxyConfig::Http(p) => (&p.metadatas, &p.annotations),
            ProxyConfig::Tcpmux(p) => (&p.metadatas, &p.annotations),
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
        let (metadatas, annotations) = self.labels();
        for (key, labels) in [("metadatas", metadatas), ("annotations", annotations)] {
            if !labels_within_bounds(labels) {
                p.key(
                    key,
                    format!(
                        "{key}: at most {} entries of at most {} bytes each",
                        wire::message::MAX_METAS,
                        wire::message::MAX_META_LEN
                    ),
                );
            }
        }
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

/// How an entry was read.
pub(crate) enum Parsed {
    Ok(Box<ProxyConfig>),
    /// It has errors (reported).
    Bad,
    /// A kind or plugin not built yet (said): not started, not checked;
    /// why, for the status.
    Skipped(String),
}

/// How messages name entry `i`: `proxy "ssh"`, or `proxies[3]` without a
/// name.
pub(crate) fn who(i: usize, name: &str) -> String {
    match name {
        "" => format!("proxies[{i}]"),
        n => format!("proxy \"{}\"", n.escape_debug()),
    }
}

const SUPPORTED: &str = "supported: \"tcp\", \"udp\", \"http\", \"https\", \"tcpmux\"";

/// Reads entry `i` as its kind's struct, collecting every key that is
/// unknown or has a bad value.
pub(crate) fn parse_entry(node: &Node, i: usize, found: &mut Vec<Found>) -> Parsed {
    let name = node.get("name").and_then(Node::as_str).unwrap_or("");
    let who = who(i, name);
    let mut entry = node.clone();
    let kind = match entry.take("type") {
        Some((_, t)) => match t.as_str() {
            Some(t) => t.to_owned(),
            None => {
                found.push(Found::error(
                    Some(t.at),
                    format!("{who}: type must be a string, not {}", t.value),
                ));
                return Parsed::Bad;
            }
        },
        None => {
            found.push(Found::error(
                Some(node.at),
                format!("{who}: type is required ({SUPPORTED})"),
            ));
            return Parsed::Bad;
        }
    };
    let type_at = node.find_key("type");
    if LATER_TYPES.contains(&kind.as_str()) {
        let reason = format!("type \"{kind}\" is not supported yet");
        found.push(Found::unsupported(
            type_at,
            format!("{who}: {reason}; it is not started"),
        ));
        return Parsed::Skipped(reason);
    }
    if let Err(reason) = crate::compat::proxy(&mut entry, &who, found) {
        return Parsed::Skipped(reason);
    }
    let read = match kind.as_str() {
        "tcp" => read::<TcpProxy>(&entry, ProxyConfig::Tcp),
        "udp" => read::<UdpProxy>(&entry, ProxyConfig::Udp),
        "https" => read::<HttpsProxy>(&entry, ProxyConfig::Https),
        "http" => read::<HttpProxy>(&entry, ProxyConfig::Http),
        "tcpmux" => read::<TcpmuxProxy>(&entry, ProxyConfig::Tcpmux),
        other => {
            found.push(Found::error(
                type_at,
                format!("{who}: type {:?} is not a proxy type ({SUPPORTED})", other),
            ));
            return Parsed::Bad;
        }
    };
    match read {
        (Some(cfg), errors) if errors.is_empty() => Parsed::Ok(Box::new(cfg)),
        (_, errors) => {
            found.extend(
                errors
                    .into_iter()
                    .map(|e| Found::error(e.at, format!("{who}: {}", e.describe()))),
            );
            Parsed::Bad
        }
    }
}

fn read<T: serde::de::DeserializeOwned>(
    entry: &Node,
    wrap: fn(T) -> ProxyConfig,
) -> (Option<ProxyConfig>, Vec<crate::de::Error>) {
    let (v, errors) = crate::de::read_all::<T>(entry);
    (v.map(wrap), errors)
}

/// Whether a proxy's metadatas or annotations are within what frps keeps
/// (the bounds of a login's metadatas).
pub fn labels_within_bounds<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> bool {
    let mut n = 0;
    labels.into_iter().all(|(k, v)| {
        n += 1;
        n <= wire::message::MAX_METAS
            && k.len() <= wire::message::MAX_META_LEN
            && v.len() <= wire::message::MAX_META_LEN
    })
}
