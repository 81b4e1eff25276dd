//! `frpc convert` / `frps convert`: a config file (frp's legacy INI above
//! all, but any format) written out as TOML with frp's current keys.
//!
//! INI values carry no types, so each is given the type our settings have
//! for that key (taken from the defaults, serialized); keys of features not
//! built yet keep what their text looks like. Everything the file says is
//! kept, supported or not, so the result also works with frp itself.

use std::path::Path;

use crate::doc::{Node, Value};
use crate::legacy::Side;
use crate::proxy::{default_of, ProxyConfig, TcpProxy};
use crate::{ClientConfig, ConfigError, ServerConfig};

/// Tables whose values are free strings (header values, metadata).
const STRING_MAPS: &[&str] = &[
    "metadatas",
    "annotations",
    "set",
    "additionalEndpointParams",
];

/// The file at `path` as TOML text.
pub fn to_toml(path: &Path, side: Side) -> Result<String, ConfigError> {
    let tree = crate::load::tree(path, side)?;
    Ok(format!(
        "# Converted from {} by {} convert.\n\n{}",
        path.display(),
        match side {
            Side::Client => "frpc",
            Side::Server => "frps",
        },
        tree_to_toml(&tree, side)
    ))
}

/// A file's tree as TOML text.
pub(crate) fn tree_to_toml(tree: &Node, side: Side) -> String {
    let common = match side {
        Side::Client => toml::Value::try_from(ClientConfig::default()),
        Side::Server => toml::Value::try_from(ServerConfig::default()),
    }
    .ok();
    let mut out = toml::Table::new();
    for (key, node) in tree.entries() {
        let typed = match key.name.as_str() {
            "proxies" => proxies(node),
            _ => typed(
                node,
                common.as_ref().and_then(|c| c.get(&key.name)),
                &key.name,
            ),
        };
        if let Some(v) = typed {
            out.insert(key.name.clone(), v);
        }
    }
    toml::to_string_pretty(&out).unwrap_or_default()
}

/// Each proxy with the types of its kind.
fn proxies(node: &Node) -> Option<toml::Value> {
    let Value::Seq(items) = &node.value else {
        return node.to_toml();
    };
    let entries = items
        .iter()
        .filter_map(|entry| {
            let kind = entry.get("type").and_then(Node::as_str).unwrap_or("");
            let default = default_of(kind).unwrap_or_else(|| ProxyConfig::Tcp(TcpProxy::default()));
            let default = toml::Value::try_from(default).ok();
            typed(entry, default.as_ref(), "")
        })
        .collect();
    Some(toml::Value::Array(entries))
}

/// frp's string keys among those we do not build, whose values may look
/// like numbers (`groupKey = 123456` in INI is a string to frp).
const UNBUILT_STRINGS: &[&str] = &[
    "group",
    "groupKey",
    "path",
    "bandwidthLimit",
    "bandwidthLimitMode",
    "proxyProtocolVersion",
    "secretKey",
    "serverName",
    "serverUser",
    "bindAddr",
];

/// `node` as TOML, each plain scalar given the type `like` has there.
fn typed(node: &Node, like: Option<&toml::Value>, key: &str) -> Option<toml::Value> {
    match &node.value {
        Value::Plain(s) => match like {
            Some(toml::Value::String(_)) => Some(toml::Value::String(s.clone())),
            Some(toml::Value::Boolean(_)) => s
                .parse()
                .ok()
                .map(toml::Value::Boolean)
                .or_else(|| node.to_toml()),
            Some(toml::Value::Integer(_)) => s
                .parse()
                .ok()
                .map(toml::Value::Integer)
                .or_else(|| node.to_toml()),
            Some(toml::Value::Float(_)) => s
                .parse()
                .ok()
                .map(toml::Value::Float)
                .or_else(|| node.to_toml()),
            _ if STRING_MAPS.contains(&key) => Some(toml::Value::String(s.clone())),
            // A key we do not build: frp's type, not the text's look
            // (`groupKey = 123456` is a string to frp).
            None if UNBUILT_STRINGS.contains(&key) => Some(toml::Value::String(s.clone())),
            _ => node.to_toml(),
        },
        Value::Seq(items) => Some(toml::Value::Array(
            items
                .iter()
                .filter_map(|i| match (&i.value, like) {
                    (Value::Plain(s), Some(toml::Value::Array(_))) => {
                        Some(toml::Value::String(s.clone()))
                    }
                    _ => typed(i, None, ""),
                })
                .collect(),
        )),
        Value::Map(entries) => Some(toml::Value::Table(
            entries
                .iter()
                .filter_map(|(k, v)| {
                    // Under a string map every value is a string (its key
                    // passed down says so).
                    let (inner, inner_key) = match STRING_MAPS.contains(&key) {
                        true => (None, key),
                        false => (like.and_then(|l| l.get(&k.name)), k.name.as_str()),
                    };
                    Some((k.name.clone(), typed(v, inner, inner_key)?))
                })
                .collect(),
        )),
        _ => node.to_toml(),
    }
}
