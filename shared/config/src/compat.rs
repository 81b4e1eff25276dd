//! frp's keys for features frp-rs has not built yet: recognised, taken out
//! of the tree before the typed read, and each said once — "proxy
//! \"p2p_tcp\": type \"xtcp\" is not supported yet" — instead of failing as
//! an unknown key. Keys that are truly unknown stay errors (with a
//! did-you-mean, `de`).
//!
//! Most are notes: the rest of the file runs. A few are errors, because
//! running without them would quietly weaken what the file asks for:
//! frps's server plugins (which may refuse logins and proxies); and
//! `auth.method = "oidc"`, which `check_auth` refuses with the same words.

use crate::diag::Found;
use crate::doc::{Node, Value};

/// What a recognised key does here.
enum Treat {
    /// Not built: said once, ignored; the text says what that means.
    Later(&'static str),
    /// Not built, and ignoring it would weaken security: an error (the
    /// whole sentence).
    Refuse(&'static str),
    /// Means nothing for frp-rs (a knob of frp's internals): accepted
    /// without a word.
    Quiet,
}

/// Keys of frpc's common part.
const CLIENT: &[(&str, Treat)] = &[
    ("auth.oidc", Treat::Later("")),
    ("auth.additionalScopes", Treat::Later("every connection to frps is inside the authenticated session or proves the token itself")),
    ("featureGates", Treat::Later("")),
    ("virtualNet", Treat::Later("")),
    ("store", Treat::Later("")),
    ("webServer.assetsDir", Treat::Later("the admin pages are built in")),
    ("webServer.pprofEnable", Treat::Later("")),
    ("transport.quic", Treat::Later("frpc connects over TCP")),
    ("transport.wireProtocol", Treat::Quiet),
    ("transport.tls.disableCustomTLSFirstByte", Treat::Quiet),
    ("version", Treat::Quiet),
];

/// Keys of frps.
const SERVER: &[(&str, Treat)] = &[
    ("auth.oidc", Treat::Later("")),
    ("auth.additionalScopes", Treat::Later("every connection from frpc is inside the authenticated session or proves the token itself")),
    ("kcpBindPort", Treat::Later("frps listens on TCP only")),
    ("quicBindPort", Treat::Later("frps listens on TCP only")),
    ("transport.quic", Treat::Later("frps listens on TCP only")),
    ("sshTunnelGateway", Treat::Later("")),
    ("webServer.assetsDir", Treat::Later("the dashboard is built in")),
    ("webServer.pprofEnable", Treat::Later("")),
    ("httpPlugins", Treat::Refuse("server plugins are not supported yet; they may refuse logins and proxies, so frps will not run without the checks they make")),
    ("version", Treat::Quiet),
];

/// Keys of a proxy entry (any kind).
const PROXY: &[(&str, Treat)] = &[
    (
        "loadBalancer",
        Treat::Later("the proxy runs on its own, not in a group"),
    ),
    ("healthCheck", Treat::Later("the proxy runs without one")),
    (
        "transport.bandwidthLimit",
        Treat::Later("the proxy runs unlimited"),
    ),
    (
        "transport.bandwidthLimitMode",
        Treat::Later("the proxy runs unlimited"),
    ),
];

/// Proxy types frp has that are not built yet; such an entry is skipped.
pub(crate) const LATER_TYPES: &[&str] = &[];

/// Takes frp's not-built keys out of frpc's common part.
pub(crate) fn client(root: &mut Node, found: &mut Vec<Found>) {
    sweep(root, CLIENT, "", found);
    transport_protocol(root, found);
}

/// Takes frp's not-built keys out of frps's file.
pub(crate) fn server(root: &mut Node, found: &mut Vec<Found>) {
    sweep(root, SERVER, "", found);
}

/// Takes frp's not-built keys out of one proxy entry; `who` names it.
/// false when the whole entry is for something not built (a plugin), so
/// it is not started.
pub(crate) fn proxy(entry: &mut Node, who: &str, found: &mut Vec<Found>) -> Result<(), String> {
    if let Some((key, plugin)) = entry.take("plugin") {
        let kind = plugin.get("type").and_then(Node::as_str).unwrap_or("?");
        let reason = format!("plugin \"{}\" is not supported yet", kind.escape_debug());
        found.push(Found::unsupported(
            Some(key.at),
            format!("{who}: {reason}; the proxy is not started"),
        ));
        return Err(reason);
    }
    // Not started rather than started without it: a service set up for
    // the PROXY protocol would misread the connection, or take frpc's
    // address for the user's.
    if let Some(at) = present(entry, "transport.proxyProtocolVersion") {
        let reason = "transport.proxyProtocolVersion asks for the PROXY protocol, which is not \
                      supported yet";
        found.push(Found::unsupported(
            Some(at),
            format!(
                "{who}: {reason}; the proxy is not started (its service would see frpc's address \
                 as the user's)"
            ),
        ));
        return Err(reason.into());
    }
    sweep(entry, PROXY, &format!("{who}: "), found);
    Ok(())
}

/// A visitor entry: a plugin (frp's `virtual_net`) is not built, and
/// the visitor would mean nothing without it: not started.
pub(crate) fn visitor(entry: &mut Node, who: &str, found: &mut Vec<Found>) -> Result<(), String> {
    if let Some((key, plugin)) = entry.take("plugin") {
        let kind = plugin.get("type").and_then(Node::as_str).unwrap_or("?");
        let reason = format!(
            "visitor plugin \"{}\" is not supported yet",
            kind.escape_debug()
        );
        found.push(Found::unsupported(
            Some(key.at),
            format!("{who}: {reason}; the visitor is not started"),
        ));
        return Err(reason);
    }
    Ok(())
}

/// `transport.protocol`: only tcp is built (websocket, kcp, quic later).
fn transport_protocol(root: &mut Node, found: &mut Vec<Found>) {
    let Some(p) = root.get("transport").and_then(|t| t.get("protocol")) else {
        return;
    };
    let at = root.find_key("transport.protocol");
    match p.as_str() {
        Some("tcp") => {}
        Some(other) => found.push(Found::unsupported(
            at,
            format!(
                "transport.protocol \"{}\" is not supported yet; frpc connects over tcp",
                other.escape_debug()
            ),
        )),
        None => found.push(Found::error(at, "transport.protocol must be a string")),
    }
    remove(root, "transport.protocol");
}

fn sweep(node: &mut Node, table: &[(&str, Treat)], prefix: &str, found: &mut Vec<Found>) {
    for (key, treat) in table {
        let Some(at) = present(node, key) else {
            continue;
        };
        let off = value_at(node, key).is_some_and(is_off);
        match treat {
            // Written but off (`pprofEnable = false`, `auth.oidc.issuer =
            // ""`): asks for nothing, so nothing to say.
            _ if off => {}
            Treat::Later(then) => found.push(Found::unsupported(
                Some(at),
                match *then {
                    "" => format!("{prefix}{key} is not supported yet"),
                    then => format!("{prefix}{key} is not supported yet; {then}"),
                },
            )),
            Treat::Refuse(why) => {
                found.push(Found::error(Some(at), format!("{prefix}{key}: {why}")))
            }
            Treat::Quiet => {}
        }
        remove(node, key);
    }
}

fn value_at<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    key.split('.').try_fold(node, |n, part| n.get(part))
}

/// false, 0, "", and tables and lists of nothing else.
fn is_off(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Int(i) => *i == 0,
        Value::Float(f) => *f == 0.0,
        Value::Str(s) | Value::Plain(s) => matches!(s.as_str(), "" | "false" | "0"),
        Value::Seq(items) => items.iter().all(is_off),
        Value::Map(m) => m.iter().all(|(_, v)| is_off(v)),
    }
}

/// Where dotted `key` is written, when it is.
fn present(node: &Node, key: &str) -> Option<crate::doc::At> {
    let mut n = node;
    let mut at = None;
    for part in key.split('.') {
        let (k, v) = n.entry(part)?;
        at = Some(k.at);
        n = v;
    }
    at
}

fn remove(node: &mut Node, key: &str) {
    let path: Vec<_> = key
        .split('.')
        .map(|k| crate::doc::Seg::Key(k.to_owned()))
        .collect();
    node.remove(&path);
    // A table left empty by the removal (`[proxies.plugin]`) goes too.
    if let Some((first, _)) = key.split_once('.') {
        if node
            .get(first)
            .is_some_and(|t| matches!(&t.value, Value::Map(m) if m.is_empty()))
        {
            node.take(first);
        }
    }
}
