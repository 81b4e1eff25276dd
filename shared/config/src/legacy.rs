//! frp's legacy INI format (a file with a `[common]` section): read into
//! the same tree as the current formats, each key renamed to its current
//! spelling (the mapping is frp's `pkg/config/legacy/conversion.go`), so
//! everything after — keys not built yet, typed settings, validation, and
//! `frpc convert` writing TOML — is shared.
//!
//! INI is line-based and small; the reader is written here rather than
//! taken from a crate because every key must keep its line for messages,
//! and frp's dialect (go-ini with inline comments off, `key` alone meaning
//! true) is narrow.

use crate::diag::Found;
use crate::doc::{At, Key, Node, Value};

/// Old key → current dotted path.
type Renames = &'static [(&'static str, &'static str)];

/// Whose file it is: the two sides have different `[common]` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// frp decides by the presence of a `[common]` section.
pub fn is_legacy(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "[common]")
}

struct Section {
    name: String,
    at: At,
    keys: Vec<(String, String, At)>,
}

fn sections(text: &str, file: u16, found: &mut Vec<Found>) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = At {
            file,
            line: i as u32 + 1,
            col: (raw.len() - raw.trim_start().len()) as u32 + 1,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Section {
                name: name.trim().to_owned(),
                at,
                keys: Vec::new(),
            });
            continue;
        }
        let Some(section) = out.last_mut() else {
            found.push(Found::error(Some(at), "a key before any [section]"));
            continue;
        };
        let (key, value) = match line.find(['=', ':']) {
            Some(i) => (line[..i].trim(), unquote(line[i + 1..].trim())),
            // go-ini's boolean keys: `tcp_mux` alone means true.
            None => (line, "true"),
        };
        section.keys.push((key.to_owned(), value.to_owned(), at));
    }
    out
}

fn unquote(v: &str) -> &str {
    for q in ["\"\"\"", "\"", "'", "`"] {
        if v.len() >= 2 * q.len() && v.starts_with(q) && v.ends_with(q) {
            return &v[q.len()..v.len() - q.len()];
        }
    }
    v
}

/// The tree of a legacy file, in the current keys, with one note saying
/// the format is deprecated and how to convert.
pub(crate) fn parse(text: &str, side: Side, file: u16, found: &mut Vec<Found>) -> Node {
    let all = sections(text, file, found);
    let mut root = Node::map(At {
        file,
        line: 1,
        col: 1,
    });
    let program = match side {
        Side::Client => "frpc",
        Side::Server => "frps",
    };
    if let Some(common) = all.iter().find(|s| s.name == "common") {
        found.push(Found::unsupported(
            Some(common.at),
            format!("the INI format is deprecated (as in frp); `{program} convert -c <this file>` prints it as TOML"),
        ));
        common_keys(common, side, &mut root, found);
    }
    match side {
        Side::Client => proxies(&all, &mut root, found),
        Side::Server => plugins(&all, &mut root, found),
    }
    root
}

/// The proxy sections of an included legacy file (no `[common]`).
pub(crate) fn parse_proxies(text: &str, file: u16, found: &mut Vec<Found>) -> Node {
    let all = sections(text, file, found);
    let mut root = Node::map(At {
        file,
        line: 1,
        col: 1,
    });
    proxies(&all, &mut root, found);
    root
}

/// `[common]`'s keys, by their current names.
fn common_keys(common: &Section, side: Side, root: &mut Node, found: &mut Vec<Found>) {
    let (table, prefixes): (Renames, Renames) = match side {
        Side::Client => (
            CLIENT,
            &[
                ("meta_", "metadatas"),
                ("oidc_additional_", "auth.oidc.additionalEndpointParams"),
            ],
        ),
        Side::Server => (SERVER, &[]),
    };
    let mut scopes = Vec::new();
    let mut tls = (false, Vec::new());
    for (key, value, at) in &common.keys {
        if value.is_empty() {
            continue;
        }
        match key.as_str() {
            "authenticate_heartbeats" | "authenticate_new_work_conns" => {
                if value == "true" {
                    let scope = if key == "authenticate_heartbeats" {
                        "HeartBeats"
                    } else {
                        "NewWorkConns"
                    };
                    scopes.push(Node::new(Value::Str(scope.into()), *at));
                }
            }
            "allow_ports" => put(root, "allowPorts", allow_ports(value, *at, found), *at),
            "dashboard_tls_mode" => tls.0 = value == "true",
            "dashboard_tls_cert_file" => tls.1.push(("webServer.tls.certFile", value, *at)),
            "dashboard_tls_key_file" => tls.1.push(("webServer.tls.keyFile", value, *at)),
            "log_way" => {}
            k => match rename(k, table, prefixes) {
                Some(path) => put(root, &path, scalar(k, value, *at), *at),
                None => unknown(k, *at, table, found),
            },
        }
    }
    if !scopes.is_empty() {
        let at = scopes[0].at;
        put(
            root,
            "auth.additionalScopes",
            Node::new(Value::Seq(scopes), at),
            at,
        );
    }
    if tls.0 {
        for (path, value, at) in tls.1 {
            put(root, path, Node::new(Value::Plain(value.clone()), at), at);
        }
    }
}

fn unknown(key: &str, at: At, table: &[(&str, &str)], found: &mut Vec<Found>) {
    let names: Vec<&str> = table.iter().map(|(k, _)| *k).collect();
    found.push(Found::error(
        Some(at),
        format!(
            "unknown key `{}`{}",
            key.escape_debug(),
            crate::de::did_you_mean(key, &names)
        ),
    ));
}

/// A key's current path: from the table, or a prefixed map entry.
fn rename(key: &str, table: &[(&str, &str)], prefixes: &[(&str, &str)]) -> Option<String> {
    if let Some((_, to)) = table.iter().find(|(k, _)| *k == key) {
        return Some((*to).to_owned());
    }
    prefixes.iter().find_map(|(p, to)| {
        key.strip_prefix(p)
            .filter(|rest| !rest.is_empty())
            .map(|rest| format!("{to}.{rest}"))
    })
}

/// Keys whose values are comma-separated lists.
const LISTS: &[&str] = &[
    "start",
    "includes",
    "custom_domains",
    "locations",
    "allow_users",
    "ops",
];

fn scalar(key: &str, value: &str, at: At) -> Node {
    if LISTS.contains(&key) {
        let items = value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| Node::new(Value::Plain(v.to_owned()), at))
            .collect();
        return Node::new(Value::Seq(items), at);
    }
    Node::new(Value::Plain(value.to_owned()), at)
}

/// "2000-3000,3001" as frp's allowPorts entries.
fn allow_ports(value: &str, at: At, found: &mut Vec<Found>) -> Node {
    let mut items = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut entry = Node::map(at);
        let key = |k: &str| Key { name: k.into(), at };
        match part.split_once('-') {
            Some((lo, hi)) => {
                entry.set(key("start"), Node::new(Value::Plain(lo.trim().into()), at));
                entry.set(key("end"), Node::new(Value::Plain(hi.trim().into()), at));
            }
            None if part.parse::<u16>().is_ok() => {
                entry.set(key("single"), Node::new(Value::Plain(part.into()), at))
            }
            None => {
                found.push(Found::error(
                    Some(at),
                    format!("allow_ports: {part:?} is not a port or a range"),
                ));
                continue;
            }
        }
        items.push(entry);
    }
    Node::new(Value::Seq(items), at)
}

/// Sets dotted `path` under `root`, making the tables on the way.
fn put(root: &mut Node, path: &str, value: Node, at: At) {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.set(
                Key {
                    name: part.into(),
                    at,
                },
                value,
            );
            return;
        }
        if node.get(part).is_none() {
            node.set(
                Key {
                    name: part.into(),
                    at,
                },
                Node::map(at),
            );
        }
        node = match node.get_mut(part) {
            Some(n) => n,
            None => return,
        };
    }
}

/// Every section but `[common]` is a proxy or, with `role = visitor`, a
/// visitor; `[range:name]` expands into `name_0`, `name_1`, …
fn proxies(all: &[Section], root: &mut Node, found: &mut Vec<Found>) {
    let mut list = Vec::new();
    let mut visitors = Vec::new();
    for s in all.iter().filter(|s| s.name != "common") {
        let role = s
            .keys
            .iter()
            .find(|(k, _, _)| k == "role")
            .map_or("server", |(_, v, _)| v.as_str());
        let target = match role {
            "server" => &mut list,
            "visitor" => &mut visitors,
            other => {
                found.push(Found::error(
                    Some(s.at),
                    format!(
                        "[{}]: role {other:?} is not \"server\" or \"visitor\"",
                        s.name
                    ),
                ));
                continue;
            }
        };
        match s.name.strip_prefix("range:") {
            Some(prefix) => {
                let room = MAX_PROXIES.saturating_sub(list.len() + visitors.len());
                let target = if role == "visitor" {
                    &mut visitors
                } else {
                    &mut list
                };
                target.extend(expand_range(s, prefix.trim(), room, found))
            }
            None => target.push(entry(s, &s.name, role == "visitor", None, found)),
        }
    }
    let at = root.at;
    if !list.is_empty() {
        root.set(
            Key {
                name: "proxies".into(),
                at,
            },
            Node::new(Value::Seq(list), at),
        );
    }
    if !visitors.is_empty() {
        root.set(
            Key {
                name: "visitors".into(),
                at,
            },
            Node::new(Value::Seq(visitors), at),
        );
    }
}

/// Most proxies all `[range:]` sections of a file expand to together (one
/// range alone may list 65,536 ports; twenty such sections took gigabytes).
pub(crate) const MAX_PROXIES: usize = 10_000;

fn expand_range(s: &Section, prefix: &str, room: usize, found: &mut Vec<Found>) -> Vec<Node> {
    let get = |k: &str| {
        s.keys
            .iter()
            .find(|(key, _, _)| key == k)
            .map(|(_, v, _)| v.clone())
            .unwrap_or_default()
    };
    let ports = |spec: &str| crate::template::number_range(spec);
    match (ports(&get("local_port")), ports(&get("remote_port"))) {
        (Ok(local), _) if local.len() > room => {
            found.push(Found::error(
                Some(s.at),
                format!(
                    "[{}]: the [range:] sections of a file make at most {MAX_PROXIES} proxies in all",
                    s.name
                ),
            ));
            Vec::new()
        }
        (Ok(local), Ok(remote)) if local.len() == remote.len() && !local.is_empty() => local
            .iter()
            .zip(&remote)
            .enumerate()
            .map(|(i, (l, r))| entry(s, &format!("{prefix}_{i}"), false, Some((*l, *r)), found))
            .collect(),
        (Ok(_), Ok(_)) => {
            found.push(Found::error(
                Some(s.at),
                format!(
                    "[{}]: local_port and remote_port must list as many ports",
                    s.name
                ),
            ));
            Vec::new()
        }
        (Err(e), _) | (_, Err(e)) => {
            found.push(Found::error(Some(s.at), format!("[{}]: {e}", s.name)));
            Vec::new()
        }
    }
}

/// One proxy or visitor entry; `ports` replaces local and remote port (range).
fn entry(
    s: &Section,
    name: &str,
    visitor: bool,
    ports: Option<(i64, i64)>,
    found: &mut Vec<Found>,
) -> Node {
    let mut node = Node::map(s.at);
    node.set(
        Key {
            name: "name".into(),
            at: s.at,
        },
        Node::new(Value::Str(name.to_owned()), s.at),
    );
    let table = if visitor { VISITOR } else { PROXY };
    let mut plugin = Node::map(s.at);
    for (key, value, at) in &s.keys {
        let value = match (key.as_str(), ports) {
            ("local_port", Some((l, _))) => l.to_string(),
            ("remote_port", Some((_, r))) => r.to_string(),
            _ => value.clone(),
        };
        if value.is_empty() || key == "role" || key == "name" || key == "health_check_addr" {
            continue;
        }
        if !visitor && key.starts_with("plugin") {
            plugin_key(&mut plugin, key, &value, *at, found);
            continue;
        }
        let prefixes: &[(&str, &str)] = if visitor {
            &[]
        } else {
            &[("meta_", "metadatas"), ("header_", "requestHeaders.set")]
        };
        match rename(key, table, prefixes) {
            Some(path) => put(&mut node, &path, scalar(key, &value, *at), *at),
            None => unknown(key, *at, table, found),
        }
    }
    if !plugin.entries().is_empty() {
        node.set(
            Key {
                name: "plugin".into(),
                at: s.at,
            },
            plugin,
        );
    }
    node
}

/// `plugin = name` and its `plugin_*` parameters, in the current names.
fn plugin_key(plugin: &mut Node, key: &str, value: &str, at: At, found: &mut Vec<Found>) {
    if key == "plugin" {
        return put(
            plugin,
            "type",
            Node::new(Value::Str(value.to_owned()), at),
            at,
        );
    }
    if let Some(h) = key.strip_prefix("plugin_header_") {
        return put(
            plugin,
            &format!("requestHeaders.set.{h}"),
            Node::new(Value::Str(value.to_owned()), at),
            at,
        );
    }
    match rename(key, PLUGIN, &[]) {
        Some(path) => put(
            plugin,
            &path,
            Node::new(Value::Str(value.to_owned()), at),
            at,
        ),
        None => unknown(key, at, PLUGIN, found),
    }
}

/// frps's `[plugin.name]` sections: server plugins (httpPlugins).
fn plugins(all: &[Section], root: &mut Node, found: &mut Vec<Found>) {
    let mut list = Vec::new();
    for s in all.iter().filter(|s| s.name != "common") {
        let Some(name) = s.name.strip_prefix("plugin.") else {
            found.push(Found::error(
                Some(s.at),
                format!(
                    "[{}]: frps's legacy file has only [common] and [plugin.NAME] sections",
                    s.name
                ),
            ));
            continue;
        };
        let mut node = Node::map(s.at);
        put(
            &mut node,
            "name",
            Node::new(Value::Str(name.to_owned()), s.at),
            s.at,
        );
        for (key, value, at) in &s.keys {
            match rename(key, HTTP_PLUGIN, &[]) {
                Some(path) => put(&mut node, &path, scalar(key, value, *at), *at),
                None => unknown(key, *at, HTTP_PLUGIN, found),
            }
        }
        list.push(node);
    }
    if let Some(first) = list.first() {
        let at = first.at;
        root.set(
            Key {
                name: "httpPlugins".into(),
                at,
            },
            Node::new(Value::Seq(list), at),
        );
    }
}

const CLIENT: &[(&str, &str)] = &[
    ("server_addr", "serverAddr"),
    ("server_port", "serverPort"),
    ("nat_hole_stun_server", "natHoleStunServer"),
    ("dial_server_timeout", "transport.dialServerTimeout"),
    ("dial_server_keepalive", "transport.dialServerKeepalive"),
    ("connect_server_local_ip", "transport.connectServerLocalIP"),
    ("http_proxy", "transport.proxyURL"),
    ("log_file", "log.to"),
    ("log_level", "log.level"),
    ("log_max_days", "log.maxDays"),
    ("disable_log_color", "log.disablePrintColor"),
    ("admin_addr", "webServer.addr"),
    ("admin_port", "webServer.port"),
    ("admin_user", "webServer.user"),
    ("admin_pwd", "webServer.password"),
    ("assets_dir", "webServer.assetsDir"),
    ("pprof_enable", "webServer.pprofEnable"),
    ("pool_count", "transport.poolCount"),
    ("tcp_mux", "transport.tcpMux"),
    (
        "tcp_mux_keepalive_interval",
        "transport.tcpMuxKeepaliveInterval",
    ),
    ("user", "user"),
    ("dns_server", "dnsServer"),
    ("login_fail_exit", "loginFailExit"),
    ("start", "start"),
    ("protocol", "transport.protocol"),
    ("quic_keepalive_period", "transport.quic.keepalivePeriod"),
    ("quic_max_idle_timeout", "transport.quic.maxIdleTimeout"),
    (
        "quic_max_incoming_streams",
        "transport.quic.maxIncomingStreams",
    ),
    ("tls_enable", "transport.tls.enable"),
    ("tls_cert_file", "transport.tls.certFile"),
    ("tls_key_file", "transport.tls.keyFile"),
    ("tls_trusted_ca_file", "transport.tls.trustedCaFile"),
    ("tls_server_name", "transport.tls.serverName"),
    (
        "disable_custom_tls_first_byte",
        "transport.tls.disableCustomTLSFirstByte",
    ),
    ("heartbeat_interval", "transport.heartbeatInterval"),
    ("heartbeat_timeout", "transport.heartbeatTimeout"),
    ("udp_packet_size", "udpPacketSize"),
    ("includes", "includes"),
    ("authentication_method", "auth.method"),
    ("token", "auth.token"),
    ("oidc_client_id", "auth.oidc.clientID"),
    ("oidc_client_secret", "auth.oidc.clientSecret"),
    ("oidc_audience", "auth.oidc.audience"),
    ("oidc_scope", "auth.oidc.scope"),
    ("oidc_token_endpoint_url", "auth.oidc.tokenEndpointURL"),
];

const SERVER: &[(&str, &str)] = &[
    ("bind_addr", "bindAddr"),
    ("bind_port", "bindPort"),
    ("kcp_bind_port", "kcpBindPort"),
    ("quic_bind_port", "quicBindPort"),
    ("quic_keepalive_period", "transport.quic.keepalivePeriod"),
    ("quic_max_idle_timeout", "transport.quic.maxIdleTimeout"),
    (
        "quic_max_incoming_streams",
        "transport.quic.maxIncomingStreams",
    ),
    ("proxy_bind_addr", "proxyBindAddr"),
    ("vhost_http_port", "vhostHTTPPort"),
    ("vhost_https_port", "vhostHTTPSPort"),
    ("tcpmux_httpconnect_port", "tcpmuxHTTPConnectPort"),
    ("tcpmux_passthrough", "tcpmuxPassthrough"),
    ("vhost_http_timeout", "vhostHTTPTimeout"),
    ("dashboard_addr", "webServer.addr"),
    ("dashboard_port", "webServer.port"),
    ("dashboard_user", "webServer.user"),
    ("dashboard_pwd", "webServer.password"),
    ("enable_prometheus", "enablePrometheus"),
    ("assets_dir", "webServer.assetsDir"),
    ("pprof_enable", "webServer.pprofEnable"),
    ("log_file", "log.to"),
    ("log_level", "log.level"),
    ("log_max_days", "log.maxDays"),
    ("disable_log_color", "log.disablePrintColor"),
    ("detailed_errors_to_client", "detailedErrorsToClient"),
    ("subdomain_host", "subDomainHost"),
    ("tcp_mux", "transport.tcpMux"),
    (
        "tcp_mux_keepalive_interval",
        "transport.tcpMuxKeepaliveInterval",
    ),
    ("tcp_keepalive", "transport.tcpKeepalive"),
    ("custom_404_page", "custom404Page"),
    ("max_pool_count", "transport.maxPoolCount"),
    ("max_ports_per_client", "maxPortsPerClient"),
    ("tls_only", "transport.tls.force"),
    ("tls_cert_file", "transport.tls.certFile"),
    ("tls_key_file", "transport.tls.keyFile"),
    ("tls_trusted_ca_file", "transport.tls.trustedCaFile"),
    ("heartbeat_timeout", "transport.heartbeatTimeout"),
    ("user_conn_timeout", "userConnTimeout"),
    ("udp_packet_size", "udpPacketSize"),
    (
        "nat_hole_analysis_data_reserve_hours",
        "natholeAnalysisDataReserveHours",
    ),
    ("authentication_method", "auth.method"),
    ("token", "auth.token"),
    ("oidc_issuer", "auth.oidc.issuer"),
    ("oidc_audience", "auth.oidc.audience"),
    ("oidc_skip_expiry_check", "auth.oidc.skipExpiryCheck"),
    ("oidc_skip_issuer_check", "auth.oidc.skipIssuerCheck"),
];

const PROXY: &[(&str, &str)] = &[
    ("type", "type"),
    ("local_ip", "localIP"),
    ("local_port", "localPort"),
    ("remote_port", "remotePort"),
    ("use_encryption", "transport.useEncryption"),
    ("use_compression", "transport.useCompression"),
    ("bandwidth_limit", "transport.bandwidthLimit"),
    ("bandwidth_limit_mode", "transport.bandwidthLimitMode"),
    ("proxy_protocol_version", "transport.proxyProtocolVersion"),
    ("group", "loadBalancer.group"),
    ("group_key", "loadBalancer.groupKey"),
    ("health_check_type", "healthCheck.type"),
    ("health_check_timeout_s", "healthCheck.timeoutSeconds"),
    ("health_check_max_failed", "healthCheck.maxFailed"),
    ("health_check_interval_s", "healthCheck.intervalSeconds"),
    ("health_check_url", "healthCheck.path"),
    ("custom_domains", "customDomains"),
    ("subdomain", "subdomain"),
    ("locations", "locations"),
    ("http_user", "httpUser"),
    ("http_pwd", "httpPassword"),
    ("host_header_rewrite", "hostHeaderRewrite"),
    ("route_by_http_user", "routeByHTTPUser"),
    ("multiplexer", "multiplexer"),
    ("sk", "secretKey"),
    ("allow_users", "allowUsers"),
];

const VISITOR: &[(&str, &str)] = &[
    ("type", "type"),
    ("use_encryption", "transport.useEncryption"),
    ("use_compression", "transport.useCompression"),
    ("sk", "secretKey"),
    ("server_user", "serverUser"),
    ("server_name", "serverName"),
    ("bind_addr", "bindAddr"),
    ("bind_port", "bindPort"),
    ("protocol", "protocol"),
    ("keep_tunnel_open", "keepTunnelOpen"),
    ("max_retries_an_hour", "maxRetriesAnHour"),
    ("min_retry_interval", "minRetryInterval"),
    ("fallback_to", "fallbackTo"),
    ("fallback_timeout_ms", "fallbackTimeoutMs"),
];

const PLUGIN: &[(&str, &str)] = &[
    ("plugin_local_addr", "localAddr"),
    ("plugin_host_header_rewrite", "hostHeaderRewrite"),
    ("plugin_http_user", "httpUser"),
    ("plugin_http_passwd", "httpPassword"),
    ("plugin_crt_path", "crtPath"),
    ("plugin_key_path", "keyPath"),
    ("plugin_user", "username"),
    ("plugin_passwd", "password"),
    ("plugin_local_path", "localPath"),
    ("plugin_strip_prefix", "stripPrefix"),
    ("plugin_unix_path", "unixPath"),
];

const HTTP_PLUGIN: &[(&str, &str)] = &[
    ("addr", "addr"),
    ("path", "path"),
    ("ops", "ops"),
    ("tls_verify", "tlsVerify"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_proxies_and_ranges_in_current_names() {
        let ini = "[common]\nserver_addr = 10.0.0.1\nserver_port = 7000\ntoken = 12345678\nmeta_rack = b2\ntcp_mux\n\n[ssh]\ntype = tcp\nlocal_port = 22\nremote_port = 6000\nheader_X-From = frp\n\n[range:web]\ntype = tcp\nlocal_port = 8000-8001\nremote_port = 9000-9001\n";
        let mut found = Vec::new();
        let root = parse(ini, Side::Client, 0, &mut found);
        assert_eq!(found.len(), 1, "only the deprecation note: {found:?}");
        let t = root.to_toml().expect("toml");
        assert_eq!(t["serverAddr"].as_str(), Some("10.0.0.1"));
        assert_eq!(
            t["auth"]["token"].as_integer(),
            Some(12345678),
            "plain; typed by the reader"
        );
        assert_eq!(t["metadatas"]["rack"].as_str(), Some("b2"));
        assert_eq!(t["transport"]["tcpMux"].as_bool(), Some(true));
        let p = t["proxies"].as_array().expect("proxies");
        let names: Vec<_> = p.iter().map(|p| p["name"].as_str().unwrap_or("")).collect();
        assert_eq!(names, ["ssh", "web_0", "web_1"]);
        assert_eq!(p[2]["remotePort"].as_integer(), Some(9001));
        assert_eq!(
            p[0]["requestHeaders"]["set"]["X-From"].as_str(),
            Some("frp")
        );
        assert_eq!(root.find_key("serverPort").map(|a| a.line), Some(3));
    }

    #[test]
    fn unknown_keys_suggest_and_server_sections() {
        let mut found = Vec::new();
        parse("[common]\nserver_adr = x\n", Side::Client, 0, &mut found);
        assert!(
            found
                .iter()
                .any(|f| f.message.contains("did you mean `server_addr`")),
            "{found:?}"
        );
        let mut found = Vec::new();
        let root = parse("[common]\nallow_ports = 2000-3000,3001\n[plugin.auth]\naddr = 127.0.0.1:9000\nops = Login,NewProxy\n", Side::Server, 0, &mut found);
        let t = root.to_toml().expect("toml");
        assert_eq!(t["allowPorts"][0]["end"].as_integer(), Some(3000));
        assert_eq!(t["allowPorts"][1]["single"].as_integer(), Some(3001));
        assert_eq!(t["httpPlugins"][0]["ops"].as_array().map(Vec::len), Some(2));
    }
}
