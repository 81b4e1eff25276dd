//! `[[visitors]]` entries: the other end of a private proxy. A visitor
//! listens on this machine (`bindAddr:bindPort`) and carries each
//! connection (stcp) or datagram flow (sudp) through frps to the private
//! proxy `serverName` of `serverUser`, proving its `secretKey`.
//!
//! stcp and sudp visitors have the same keys, so they are one struct with
//! the kind read from `type`; xtcp visitors are named as not built
//! (`compat::LATER_TYPES`).

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
        }
    }
}

/// Visitor types we build.
pub const VISITOR_TYPES: &[&str] = &["stcp", "sudp"];

impl VisitorConfig {
    pub fn kind(&self) -> ProxyKind {
        match self.kind_name.as_str() {
            "sudp" => ProxyKind::Sudp,
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
    }
}

/// How messages name visitor `i`.
fn who(i: usize, name: &str) -> String {
    match name {
        "" => format!("visitors[{i}]"),
        n => format!("visitor \"{}\"", n.escape_debug()),
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
        p.merge(at);
    }
}
