//! `[[visitors]]` entries: the other end of a private proxy. A visitor
//! listens on this machine (`bindAddr:bindPort`) and carries each
//! connection (stcp) or datagram flow (sudp) through frps to the private
//! proxy `serverName` of `serverUser`, proving its `secretKey`.
//!
//! The three kinds share their keys, so they are one struct with the kind
//! read from `type`; xtcp's own keys are options that only an xtcp visitor
//! may set ([`VisitorConfig::xtcp`] gives them with frp's defaults).

use serde::{Deserialize, Serialize};
use wire::message::ProxyKind;

use crate::compat::LATER_TYPES;
use crate::diag::{Found, Problems};
use crate::doc::Node;
use crate::proxy::ProxyTransport;

/// A visitor as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct VisitorConfig {
    pub name: String,
    /// "stcp" or "sudp" (read from `type`).
    #[serde(rename = "type")]
    pub kind_name: String,
    /// The private proxy's secret.
    pub secret_key: String,
    /// The user the proxy belongs to; empty: this client's own user.
    pub server_user: String,
    /// The private proxy's name.
    pub server_name: String,
    pub bind_addr: String,
    /// Where this visitor listens. frp's meaning: required; a negative
    /// port opens no listener (the visitor only takes connections other
    /// visitors hand it, as an xtcp visitor's `fallbackTo`).
    pub bind_port: i32,
    /// false: configured but not started.
    pub enabled: bool,
    /// frp's `transport.useEncryption` / `useCompression`, accepted as on
    /// proxies.
    pub transport: ProxyTransport,
    /// xtcp: "quic" (frp's "kcp" is not built).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// xtcp: make the P2P session at start and keep it up, not on the
    /// first connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_tunnel_open: Option<bool>,
    /// xtcp: at most this many tries to make a session per hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries_an_hour: Option<u32>,
    /// xtcp: seconds after a failed try before the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_retry_interval: Option<u64>,
    /// xtcp: the stcp visitor that carries connections while there is no
    /// P2P session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_to: Option<String>,
    /// xtcp: how long punching may take before falling back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_timeout_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_traversal: Option<crate::proxy::NatTraversal>,
}

/// An xtcp visitor's own keys, with frp's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XtcpOptions {
    pub protocol: String,
    pub keep_tunnel_open: bool,
    pub max_retries_an_hour: u32,
    pub min_retry_interval: u64,
    pub fallback_to: String,
    pub fallback_timeout_ms: u32,
    pub nat_traversal: crate::proxy::NatTraversal,
}

impl Default for VisitorConfig {
    fn default() -> Self {
        VisitorConfig {
            name: String::new(),
            kind_name: String::new(),
            secret_key: String::new(),
            server_user: String::new(),
            server_name: String::new(),
            bind_addr: "127.0.0.1".into(),
            bind_port: 0,
            enabled: true,
            transport: ProxyTransport::default(),
            protocol: None,
            keep_tunnel_open: None,
            max_retries_an_hour: None,
            min_retry_interval: None,
            fallback_to: None,
            fallback_timeout_ms: None,
            nat_traversal: None,
        }
    }
}

/// Visitor types we build.
pub const VISITOR_TYPES: &[&str] = &["stcp", "sudp", "xtcp"];

impl VisitorConfig {
    pub fn kind(&self) -> ProxyKind {
        match self.kind_name.as_str() {
            "sudp" => ProxyKind::Sudp,
            "xtcp" => ProxyKind::Xtcp,
            _ => ProxyKind::Stcp,
        }
    }

    /// The proxy's user: `serverUser`, or `own` (this client's user).
    pub fn target_user<'a>(&'a self, own: &'a str) -> &'a str {
        match self.server_user.as_str() {
            "" => own,
            u => u,
        }
    }

    /// xtcp's keys with frp's defaults.
    pub fn xtcp(&self) -> XtcpOptions {
        XtcpOptions {
            protocol: self.protocol.clone().unwrap_or_else(|| "quic".into()),
            keep_tunnel_open: self.keep_tunnel_open.unwrap_or(false),
            max_retries_an_hour: self.max_retries_an_hour.unwrap_or(8),
            min_retry_interval: self.min_retry_interval.unwrap_or(90),
            fallback_to: self.fallback_to.clone().unwrap_or_default(),
            fallback_timeout_ms: self.fallback_timeout_ms.unwrap_or(1000),
            nat_traversal: self.nat_traversal.clone().unwrap_or_default(),
        }
    }

    /// The xtcp keys this visitor sets.
    fn xtcp_keys_set(&self) -> Vec<&'static str> {
        [
            ("protocol", self.protocol.is_some()),
            ("keepTunnelOpen", self.keep_tunnel_open.is_some()),
            ("maxRetriesAnHour", self.max_retries_an_hour.is_some()),
            ("minRetryInterval", self.min_retry_interval.is_some()),
            ("fallbackTo", self.fallback_to.is_some()),
            ("fallbackTimeoutMs", self.fallback_timeout_ms.is_some()),
            ("natTraversal", self.nat_traversal.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }

    /// Where it listens (None: `bindPort` < 0, no listener).
    pub fn bind(&self) -> Option<String> {
        let port = u16::try_from(self.bind_port).ok()?;
        Some(crate::proxy::join_host_port(&self.bind_addr, port))
    }

    fn check(&self, p: &mut Problems<'_>) {
        if self.name.trim().is_empty() {
            p.key("name", "name must not be empty");
        }
        if self.server_name.trim().is_empty() {
            p.key("serverName", "serverName is required");
        }
        for (key, value) in [
            ("name", &self.name),
            ("serverName", &self.server_name),
            ("serverUser", &self.server_user),
        ] {
            if let Some(why) = crate::name_too_long(key, value) {
                p.key(key, why);
            }
        }
        match self.bind_port {
            0 => p.key("bindPort", "bindPort is required"),
            1..=65535 => {}
            n if n < 0 => {}
            n => p.key(
                "bindPort",
                format!("bindPort must be between 1 and 65535 (or negative: no listener), got {n}"),
            ),
        }
        if self.bind_port < 0 && self.kind() == ProxyKind::Sudp {
            p.key(
                "bindPort",
                "an sudp visitor needs a bindPort (a negative one is for stcp only)",
            );
        }
        if self.bind_addr.trim().is_empty() {
            p.key("bindAddr", "bindAddr must not be empty");
        }
        if self.kind() != ProxyKind::Xtcp {
            for key in self.xtcp_keys_set() {
                p.key(key, format!("{key} is a key of xtcp visitors only"));
            }
            return;
        }
        let x = self.xtcp();
        match x.protocol.as_str() {
            "quic" => {}
            "kcp" => p.key(
                "protocol",
                "protocol \"kcp\" is not supported yet; xtcp runs over \"quic\"",
            ),
            other => p.key(
                "protocol",
                format!("protocol {other:?}: xtcp runs over \"quic\" (or frp's \"kcp\")"),
            ),
        }
        if x.fallback_timeout_ms == 0 || x.fallback_timeout_ms > 60_000 {
            p.key(
                "fallbackTimeoutMs",
                "fallbackTimeoutMs must be between 1 and 60000",
            );
        }
    }
}

/// How messages name visitor `i`.
fn who(i: usize, name: &str) -> String {
    match name {
        "" => format!("visitors[{i}]"),
        n => format!("visitor \"{}\"", crate::proxy::shown(n)),
    }
}

/// A visitor entry as read: its config, or why it is not started.
pub(crate) enum Parsed {
    Ok(Box<VisitorConfig>),
    Bad,
    Skipped(String),
}

/// Reads visitor entry `i`, collecting every unknown key and bad value.
pub(crate) fn parse_entry(node: &Node, i: usize, found: &mut Vec<Found>) -> Parsed {
    let name = node.get("name").and_then(Node::as_str).unwrap_or("");
    let who = who(i, name);
    let kind = node.get("type").and_then(Node::as_str).unwrap_or("");
    let type_at = node.find_key("type").or(Some(node.at));
    if LATER_TYPES.contains(&kind) {
        let reason = format!("visitors of type \"{kind}\" are not supported yet");
        found.push(Found::unsupported(
            type_at,
            format!("{who}: {reason}; it is not started"),
        ));
        return Parsed::Skipped(reason);
    }
    if !VISITOR_TYPES.contains(&kind) {
        found.push(Found::error(
            type_at,
            format!(
                "{who}: type {:?} is not a visitor type (supported: \"stcp\", \"sudp\")",
                kind
            ),
        ));
        return Parsed::Bad;
    }
    let mut entry = node.clone();
    if let Err(reason) = crate::compat::visitor(&mut entry, &who, found) {
        return Parsed::Skipped(reason);
    }
    match crate::de::read_all::<VisitorConfig>(&entry) {
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

/// Checks each visitor and that names are unique among visitors.
pub(crate) fn check_all(entries: &[(usize, Node, Option<VisitorConfig>)], p: &mut Problems<'_>) {
    let mut names = std::collections::HashSet::new();
    for (i, node, cfg) in entries {
        let Some(cfg) = cfg else { continue };
        let mut at = p.within(node, who(*i, &cfg.name));
        if !cfg.name.trim().is_empty() && !names.insert(cfg.name.as_str()) {
            at.key("name", format!("duplicate visitor name {:?}", cfg.name));
        }
        cfg.check(&mut at);
        let to = cfg.xtcp().fallback_to;
        if cfg.kind() == ProxyKind::Xtcp && !to.is_empty() {
            let target = entries
                .iter()
                .filter_map(|(_, _, v)| v.as_ref())
                .find(|v| v.name == to);
            match target {
                Some(v) if v.kind() == ProxyKind::Stcp => {}
                Some(_) => at.key(
                    "fallbackTo",
                    format!("fallbackTo {to:?} is not an stcp visitor"),
                ),
                None => at.key("fallbackTo", format!("fallbackTo {to:?}: no such visitor")),
            }
        }
        p.merge(at);
    }
}
