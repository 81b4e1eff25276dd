//! `[[proxies]]` entries: one struct per kind, each rejecting unknown keys.
//!
//! serde's `flatten` does not combine with `deny_unknown_fields`, and
//! internally tagged enums do not reject unknown keys, so an entry is read
//! in two steps: as a plain table to learn its `type`, then as that kind's
//! struct. The keys every kind has are written once, in `proxy_kind!`.
//! Adding a kind: its struct through `proxy_kind!` (each key with its
//! default), its checks (`OwnChecks`), and one line in `proxy_kinds!`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::message::ProxyKind;

use crate::compat::LATER_TYPES;
use crate::diag::{Found, Problems};
use crate::doc::Node;

/// A proxy's `metadatas` or `annotations`.
pub type Labels = std::collections::BTreeMap<String, String>;

/// The keys every kind has, borrowed from any of them.
pub struct Common<'a> {
    pub name: &'a str,
    pub local_ip: &'a str,
    pub local_port: Option<u16>,
    pub enabled: bool,
    pub metadatas: &'a Labels,
    pub annotations: &'a Labels,
    pub transport: &'a ProxyTransport,
}

/// What [`ProxyConfig`] asks of each kind's struct; `proxy_kind!` writes it.
pub trait Kind {
    fn kind(&self) -> ProxyKind;
    fn common(&self) -> Common<'_>;
    fn set_enabled(&mut self, enabled: bool);
}

/// A kind's struct: the common keys, then its own, each with its default.
macro_rules! proxy_kind {
    ($(#[$doc:meta])* $name:ident: $kind:ident {
        $($(#[$fdoc:meta])* $field:ident : $ty:ty = $default:expr),* $(,)?
    }) => {
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

        impl Default for $name {
            fn default() -> Self {
                $name {
                    name: String::new(),
                    local_ip: DEFAULT_LOCAL_IP.into(),
                    local_port: None,
                    enabled: true,
                    metadatas: Labels::new(),
                    annotations: Labels::new(),
                    transport: ProxyTransport::default(),
                    $($field: $default,)*
                }
            }
        }

        impl $name {
            /// The local service's address (validation guarantees the port).
            pub fn local_addr(&self) -> String {
                join_host_port(&self.local_ip, self.local_port.unwrap_or_default())
            }
        }

        impl Kind for $name {
            fn kind(&self) -> ProxyKind {
                ProxyKind::$kind
            }

            fn common(&self) -> Common<'_> {
                Common {
                    name: &self.name,
                    local_ip: &self.local_ip,
                    local_port: self.local_port,
                    enabled: self.enabled,
                    metadatas: &self.metadatas,
                    annotations: &self.annotations,
                    transport: &self.transport,
                }
            }

            fn set_enabled(&mut self, enabled: bool) {
                self.enabled = enabled;
            }
        }
    };
}

/// Every kind: its `ProxyConfig` variant, its struct and its `type`. The
/// enum, the one dispatch to a kind's struct, reading an entry of a
/// `type` and the list of types all come from here.
macro_rules! proxy_kinds {
    ($($variant:ident($ty:ident) = $type_name:literal),* $(,)?) => {
        /// A proxy as configured, per kind. Serialized flat with its
        /// `type`, as frp writes it.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        pub enum ProxyConfig {
            $($variant($ty),)*
        }

        impl ProxyConfig {
            /// The one match on the kind.
            pub fn as_kind(&self) -> &dyn Kind {
                match self {
                    $(ProxyConfig::$variant(p) => p,)*
                }
            }

            fn as_kind_mut(&mut self) -> &mut dyn Kind {
                match self {
                    $(ProxyConfig::$variant(p) => p,)*
                }
            }

            /// The kind's checks of its own keys.
            fn check_own(&self, p: &mut Problems<'_>) {
                match self {
                    $(ProxyConfig::$variant(k) => OwnChecks::check_own(k, p),)*
                }
            }
        }

        /// Every proxy `type` we build.
        pub const TYPES: &[&str] = &[$($type_name),*];

        /// Reads `entry` as the struct of `type_name`; None for a type we
        /// do not build.
        fn read_kind(
            type_name: &str,
            entry: &Node,
        ) -> Option<(Option<ProxyConfig>, Vec<crate::de::Error>)> {
            match type_name {
                $($type_name => Some(read::<$ty>(entry, ProxyConfig::$variant)),)*
                _ => None,
            }
        }

        /// A proxy of `type_name` with every default (None: not built).
        pub fn default_of(type_name: &str) -> Option<ProxyConfig> {
            match type_name {
                $($type_name => Some(ProxyConfig::$variant($ty::default())),)*
                _ => None,
            }
        }
    };
}

proxy_kinds! {
    Tcp(TcpProxy) = "tcp",
    Udp(UdpProxy) = "udp",
    Https(HttpsProxy) = "https",
    Http(HttpProxy) = "http",
    Tcpmux(TcpmuxProxy) = "tcpmux",
    Stcp(StcpProxy) = "stcp",
    Sudp(SudpProxy) = "sudp",
    Xtcp(XtcpProxy) = "xtcp",
}

/// A kind's checks of its own keys (the common ones are checked for every
/// kind); none unless it says.
trait OwnChecks {
    fn check_own(&self, _p: &mut Problems<'_>) {}
}

proxy_kind!(
    /// `type = "tcp"`: a public TCP port on frps.
    TcpProxy: Tcp {
        /// 0 lets the server choose.
        remote_port: u16 = 0,
    }
);

impl OwnChecks for TcpProxy {}

proxy_kind!(
    /// `type = "udp"`: a public UDP port on frps; each user address gets a
    /// socket of its own towards the local service, so answers find their
    /// way back.
    UdpProxy: Udp {
        /// 0 lets the server choose.
        remote_port: u16 = 0,
        /// Seconds without a datagram either way after which a user's
        /// mapping (and its socket) is dropped. frp uses a fixed 30.
        udp_idle_timeout: u64 = 30,
        /// Most user addresses mapped at once; datagrams from further
        /// addresses are dropped (and counted) until one expires.
        udp_max_mappings: usize = 1024,
    }
);

impl OwnChecks for UdpProxy {
    fn check_own(&self, p: &mut Problems<'_>) {
        check_udp(self.udp_idle_timeout, self.udp_max_mappings, p);
    }
}

proxy_kind!(
    /// `type = "https"`: TLS connections to frps's `vhostHTTPSPort` whose
    /// ClientHello names one of these domains are passed through, untouched,
    /// to the local service.
    HttpsProxy: Https {
        /// Full names; `*.example.com` matches every name under it.
        custom_domains: Vec<String> = Vec::new(),
        /// A name under the server's `subDomainHost` (`web` →
        /// `web.example.com`).
        subdomain: String = String::new(),
    }
);

impl OwnChecks for HttpsProxy {
    fn check_own(&self, p: &mut Problems<'_>) {
        check_names(&self.custom_domains, &self.subdomain, p);
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
    HttpProxy: Http {
        /// Full names; `*.example.com` matches every name under it.
        custom_domains: Vec<String> = Vec::new(),
        /// A name under the server's `subDomainHost`.
        subdomain: String = String::new(),
        /// Path prefixes served by this proxy; empty = every path ("/").
        /// The longest matching prefix wins across proxies.
        locations: Vec<String> = Vec::new(),
        /// Basic auth asked of users (both set, or neither).
        #[serde(rename = "httpUser")]
        http_user: String = String::new(),
        #[serde(rename = "httpPassword")]
        http_password: String = String::new(),
        /// Host header sent to the local service instead of the user's.
        host_header_rewrite: String = String::new(),
        /// Headers set on requests (`requestHeaders.set.X-From = "frp"`).
        request_headers: HeaderOps = HeaderOps::default(),
        /// Headers set on responses.
        response_headers: HeaderOps = HeaderOps::default(),
        /// Only requests whose basic-auth user is this one reach this
        /// proxy (others may share the name); empty = anyone.
        #[serde(rename = "routeByHTTPUser")]
        route_by_http_user: String = String::new(),
    }
);

impl OwnChecks for HttpProxy {
    fn check_own(&self, p: &mut Problems<'_>) {
        check_names(&self.custom_domains, &self.subdomain, p);
        if self.http_user.is_empty() != self.http_password.is_empty() {
            p.key("httpUser", "httpUser and httpPassword go together");
        }
        if self.locations.iter().any(|l| !l.starts_with('/')) {
            p.key("locations", "every location is a path starting with /");
        }
    }
}

proxy_kind!(
    /// `type = "tcpmux"`: TCP connections to frps's `tcpmuxHTTPConnectPort`
    /// that open with `CONNECT <one of these names>:<port>` are carried to
    /// the local service.
    TcpmuxProxy: Tcpmux {
        /// Only "httpconnect" exists (as in frp).
        multiplexer: String = "httpconnect".into(),
        custom_domains: Vec<String> = Vec::new(),
        subdomain: String = String::new(),
        /// `Proxy-Authorization` asked of users (both set, or neither).
        #[serde(rename = "httpUser")]
        http_user: String = String::new(),
        #[serde(rename = "httpPassword")]
        http_password: String = String::new(),
        /// Only connections whose Proxy-Authorization user is this one;
        /// empty = anyone.
        #[serde(rename = "routeByHTTPUser")]
        route_by_http_user: String = String::new(),
    }
);

impl OwnChecks for TcpmuxProxy {
    fn check_own(&self, p: &mut Problems<'_>) {
        check_names(&self.custom_domains, &self.subdomain, p);
        if self.multiplexer != "httpconnect" {
            p.key(
                "multiplexer",
                format!(
                    "multiplexer {:?} is not supported (supported: \"httpconnect\")",
                    self.multiplexer
                ),
            );
        }
        if self.http_user.is_empty() != self.http_password.is_empty() {
            p.key("httpUser", "httpUser and httpPassword go together");
        }
    }
}

proxy_kind!(
    /// `type = "stcp"`: a private TCP service: no public port; visitors
    /// (`[[visitors]]` of type stcp on another frpc) that know `secretKey`
    /// reach it through frps.
    StcpProxy: Stcp {
        /// Shared with the visitors; it never crosses the wire.
        secret_key: String = String::new(),
        /// Users whose visitors may connect; empty: this client's own user
        /// only; `"*"`: every user.
        allow_users: Vec<String> = Vec::new(),
    }
);

impl OwnChecks for StcpProxy {
    fn check_own(&self, p: &mut Problems<'_>) {
        check_allow_users(&self.allow_users, p);
    }
}

proxy_kind!(
    /// `type = "sudp"`: a private UDP service, reached only through sudp
    /// visitors that know `secretKey`.
    SudpProxy: Sudp {
        secret_key: String = String::new(),
        allow_users: Vec<String> = Vec::new(),
        /// As udp's: a visitor's user address mapping expires after this
        /// many idle seconds.
        udp_idle_timeout: u64 = 30,
        /// Most user addresses mapped at once, per visitor.
        udp_max_mappings: usize = 1024,
    }
);

impl OwnChecks for SudpProxy {
    fn check_own(&self, p: &mut Problems<'_>) {
        check_allow_users(&self.allow_users, p);
        check_udp(self.udp_idle_timeout, self.udp_max_mappings, p);
    }
}

proxy_kind!(
    /// `type = "xtcp"`: a private TCP service reached peer to peer: its
    /// xtcp visitors meet it through frps, punch through both NATs and
    /// carry their connections over QUIC directly.
    XtcpProxy: Xtcp {
        secret_key: String = String::new(),
        allow_users: Vec<String> = Vec::new(),
        nat_traversal: NatTraversal = NatTraversal::default(),
    }
);

impl OwnChecks for XtcpProxy {
    fn check_own(&self, p: &mut Problems<'_>) {
        check_allow_users(&self.allow_users, p);
    }
}

/// xtcp's `natTraversal.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct NatTraversal {
    /// Offer only the address the STUN server saw, not this machine's own
    /// (frp's "assisted addresses").
    pub disable_assisted_addrs: bool,
}

/// frps keeps at most this many `allowUsers` of at most this length.
fn check_allow_users(users: &[String], p: &mut Problems<'_>) {
    let (most, longest) = (wire::message::MAX_ALLOW_USERS, wire::message::MAX_META_LEN);
    if users.len() > most || users.iter().any(|u| u.len() > longest) {
        p.key(
            "allowUsers",
            format!("allowUsers: at most {most} users of at most {longest} bytes each"),
        );
    }
}

fn check_udp(idle_timeout: u64, max_mappings: usize, p: &mut Problems<'_>) {
    if idle_timeout == 0 {
        p.key("udpIdleTimeout", "udpIdleTimeout must be at least 1 second");
    }
    if max_mappings == 0 {
        p.key("udpMaxMappings", "udpMaxMappings must be at least 1");
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
        self.as_kind().common().name
    }

    pub fn kind(&self) -> ProxyKind {
        self.as_kind().kind()
    }

    /// `enabled` (false: configured but not started).
    pub fn enabled(&self) -> bool {
        self.as_kind().common().enabled
    }

    /// Keeps the proxy configured but not started (`start` leaves it out).
    pub(crate) fn set_enabled(&mut self, enabled: bool) {
        self.as_kind_mut().set_enabled(enabled);
    }

    /// `transport.useEncryption` / `useCompression`.
    pub fn transport(&self) -> &ProxyTransport {
        self.as_kind().common().transport
    }

    /// `metadatas` and `annotations`, as frps is told them.
    pub fn labels(&self) -> (&Labels, &Labels) {
        let c = self.as_kind().common();
        (c.metadatas, c.annotations)
    }

    /// The local service's address.
    pub fn local_addr(&self) -> String {
        let c = self.as_kind().common();
        join_host_port(c.local_ip, c.local_port.unwrap_or_default())
    }

    /// Checks values; the caller checks names across entries.
    pub(crate) fn check(&self, p: &mut Problems<'_>) {
        let c = self.as_kind().common();
        for (key, labels) in [("metadatas", c.metadatas), ("annotations", c.annotations)] {
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
        if c.name.trim().is_empty() {
            p.key("name", "name must not be empty");
        }
        if let Some(why) = crate::name_too_long("name", c.name) {
            p.key("name", why);
        }
        if c.local_ip.trim().is_empty() {
            p.key("localIP", "localIP must not be empty");
        }
        match c.local_port {
            None => p.key("localPort", "localPort is required"),
            Some(0) => p.key("localPort", "localPort must be between 1 and 65535, got 0"),
            Some(_) => {}
        }
        self.check_own(p);
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
        n => format!("proxy \"{}\"", shown(n)),
    }
}

/// A name for a message: escaped, and cut after 64 characters (a name
/// too long is an error of its own; its message need not repeat it all).
pub(crate) fn shown(name: &str) -> String {
    let mut cut: String = name.chars().take(64).collect();
    let more = cut.len() < name.len();
    cut = cut.escape_debug().to_string();
    if more {
        cut.push('…');
    }
    cut
}

/// "supported: "tcp", "udp", …", for messages.
fn supported() -> String {
    let quoted: Vec<String> = TYPES.iter().map(|t| format!("{t:?}")).collect();
    format!("supported: {}", quoted.join(", "))
}

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
                format!("{who}: type is required ({})", supported()),
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
    let Some(read) = read_kind(&kind, &entry) else {
        found.push(Found::error(
            type_at,
            format!(
                "{who}: type {:?} is not a proxy type ({})",
                kind,
                supported()
            ),
        ));
        return Parsed::Bad;
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
