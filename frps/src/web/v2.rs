//! frp's dashboard API v2 (frp 0.70), beside v1: the same records, in
//! frp's `{code, msg, data}` envelope, with frp's paging, filters, sorting
//! and field names. Names in paths are percent-decoded after the path is
//! split, as frp's `UseEncodedPath` router does, so `my%20proxy%2F%C3%BC`
//! is the proxy "my proxy/ü". Facts we do not keep (a client's version and
//! wire protocol, encryption, compression, bandwidth limits and groups,
//! which frps does not build) are frp's zero values.

use std::collections::{BTreeMap, HashMap};

use hyper::{Method, StatusCode};
use net::web::{json, text, WebRequest, WebResponse};
use serde::Serialize;
use tracing::info;
use wire::message::ProxySpec;

use super::{client_key, find_client, find_proxy, proxies, server_info, shown_name, unix};
use crate::records::{today, ClientRecord, ProxyRecord, DAYS};
use crate::Server;

/// frp's paging: page 1 of 50 items unless asked, at most 200 a page.
const DEFAULT_PAGE_SIZE: i64 = 50;
pub(crate) const MAX_PAGE_SIZE: i64 = 200;
/// The types a `type` filter may name (frp's; we have the first five).
const PROXY_TYPES: [&str; 8] = [
    "tcp", "udp", "http", "https", "tcpmux", "stcp", "xtcp", "sudp",
];
const PRUNE_OFFLINE_PROXIES: &str = "offline_proxies";

/// Why a request fails: its HTTP status (also the envelope's `code`) and
/// frp's message.
struct Failure(StatusCode, String);

fn bad(msg: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, msg.into())
}

type Answer = Result<WebResponse, Failure>;

#[derive(Serialize)]
struct Envelope<'a, T> {
    code: u16,
    msg: &'a str,
    data: T,
}

fn ok<T: Serialize>(data: T) -> Answer {
    let code = StatusCode::OK.as_u16();
    Ok(json(
        StatusCode::OK,
        &Envelope {
            code,
            msg: "success",
            data,
        },
    ))
}

fn failed(Failure(status, msg): Failure) -> WebResponse {
    let code = status.as_u16();
    json(
        status,
        &Envelope {
            code,
            msg: &msg,
            data: (),
        },
    )
}

/// The v2 paths, names still percent-encoded.
enum Endpoint<'a> {
    Users,
    SystemInfo,
    Prune,
    Clients,
    Client(&'a str),
    Proxies,
    Proxy(&'a str),
    Traffic(&'a str),
}

/// The endpoint of `segments` (after `/api/v2/`) and its method.
fn endpoint<'a>(segments: &[&'a str]) -> Option<(Method, Endpoint<'a>)> {
    let get = |e| Some((Method::GET, e));
    match *segments {
        ["users"] => get(Endpoint::Users),
        ["system", "info"] => get(Endpoint::SystemInfo),
        ["system", "prune"] => Some((Method::POST, Endpoint::Prune)),
        ["clients"] => get(Endpoint::Clients),
        ["clients", key] if !key.is_empty() => get(Endpoint::Client(key)),
        ["proxies"] => get(Endpoint::Proxies),
        ["proxies", name] if !name.is_empty() => get(Endpoint::Proxy(name)),
        ["proxies", name, "traffic"] if !name.is_empty() => get(Endpoint::Traffic(name)),
        _ => None,
    }
}

/// Answers a request whose path is under `/api/v2/`.
pub(super) fn route(server: &Server, req: &WebRequest) -> WebResponse {
    let segments: Vec<&str> = req.path.split('/').skip(3).collect();
    let Some((method, at)) = endpoint(&segments) else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    if req.method != method {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
        if let Ok(allow) = hyper::header::HeaderValue::from_str(method.as_str()) {
            r.headers_mut().insert(hyper::header::ALLOW, allow);
        }
        return r;
    }
    let q = Query::parse(&req.query);
    let (key, name) = ("client key", "proxy name");
    let answer = match at {
        Endpoint::Users => users(server, &q),
        Endpoint::SystemInfo => system_info(server),
        Endpoint::Prune => prune(server, &q),
        Endpoint::Clients => clients(server, &q),
        Endpoint::Client(raw) => path_param(raw, key).and_then(|k| client(server, &k)),
        Endpoint::Proxies => proxy_list(server, &q),
        Endpoint::Proxy(raw) => path_param(raw, name).and_then(|n| proxy(server, &n)),
        Endpoint::Traffic(raw) => path_param(raw, name).and_then(|n| traffic(server, &n)),
    };
    answer.unwrap_or_else(failed)
}

/// One path segment, percent-decoded; a broken escape or a name that is
/// not UTF-8 (no name is) is refused as frp refuses a broken escape.
fn path_param(raw: &str, label: &str) -> Result<String, Failure> {
    let invalid = || bad(format!("invalid {label}"));
    if !escapes_valid(raw) {
        return Err(invalid());
    }
    String::from_utf8(crate::vhost::http::percent_decode(raw.as_bytes())).map_err(|_| invalid())
}

/// Every `%` is followed by two hex digits.
fn escapes_valid(raw: &str) -> bool {
    let b = raw.as_bytes();
    let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
    (0..b.len()).all(|i| b[i] != b'%' || (hex(i + 1) && hex(i + 2)))
}

/// A query string read as Go's `url.ParseQuery` reads it: `+` is a space,
/// pairs with a broken escape or a `;` are dropped, the first value of a
/// key is the one used.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Query {
        let unescape = |s: &str| {
            let spaced = s.replace('+', " ");
            escapes_valid(&spaced)
                .then(|| crate::vhost::http::percent_decode(spaced.as_bytes()))
                .and_then(|b| String::from_utf8(b).ok())
        };
        let pairs = raw
            .split('&')
            .filter(|kv| !kv.is_empty() && !kv.contains(';'))
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                Some((unescape(k)?, unescape(v)?))
            })
            .collect();
        Query(pairs)
    }

    /// The value of `key` when it is given, even empty (`user=`).
    fn given(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, empty when not given.
    fn get(&self, key: &str) -> &str {
        self.given(key).unwrap_or_default()
    }

    /// `q`, lowercased: matched case-insensitively.
    fn search(&self) -> String {
        self.get("q").to_lowercase()
    }
}

/// Whether any of `values` contains `q` (already lowercased), ignoring case.
fn matches<'a>(q: &str, values: impl IntoIterator<Item = &'a str>) -> bool {
    values.into_iter().any(|v| v.to_lowercase().contains(q))
}

struct Paging {
    page: i64,
    size: i64,
}

fn paging(q: &Query) -> Result<Paging, Failure> {
    let positive = |name: &str, default: i64| match q.get(name) {
        "" => Ok(default),
        raw => match raw.parse::<i64>() {
            Ok(v) if v >= 1 => Ok(v),
            _ => Err(bad(format!("{name} must be a positive integer"))),
        },
    };
    let page = positive("page", 1)?;
    let size = positive("pageSize", DEFAULT_PAGE_SIZE)?;
    if size > MAX_PAGE_SIZE {
        return Err(bad(format!(
            "pageSize must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    if page > i64::MAX / size {
        return Err(bad("page is too large"));
    }
    Ok(Paging { page, size })
}

/// frp's `V2PageResp`.
#[derive(Serialize)]
struct Page<T> {
    total: usize,
    page: i64,
    #[serde(rename = "pageSize")]
    page_size: i64,
    items: Vec<T>,
}

fn page<T>(items: Vec<T>, p: &Paging) -> Page<T> {
    let total = items.len();
    let start = usize::try_from((p.page - 1) * p.size).unwrap_or(usize::MAX);
    let size = usize::try_from(p.size).unwrap_or(usize::MAX);
    Page {
        total,
        page: p.page,
        page_size: p.size,
        items: items.into_iter().skip(start).take(size).collect(),
    }
}

/// `status=all|online|offline` (or none).
fn status_filter(q: &Query) -> Result<Option<bool>, Failure> {
    match q.get("status").to_lowercase().as_str() {
        "" | "all" => Ok(None),
        "online" => Ok(Some(true)),
        "offline" => Ok(Some(false)),
        _ => Err(bad("status must be one of all, online, offline")),
    }
}

fn system_info(server: &Server) -> Answer {
    let info = server_info(server);
    ok(serde_json::json!({
        "version": info.version,
        "config": {
            "bindPort": info.bind_port,
            "vhostHTTPPort": info.vhost_http_port,
            "vhostHTTPSPort": info.vhost_https_port,
            "tcpmuxHTTPConnectPort": info.tcpmux_http_connect_port,
            "kcpBindPort": info.kcp_bind_port,
            "quicBindPort": info.quic_bind_port,
            "subdomainHost": info.subdomain_host,
            "maxPoolCount": info.max_pool_count,
            "maxPortsPerClient": info.max_ports_per_client,
            "heartbeatTimeout": info.heartbeat_timeout,
            "allowPortsStr": info.allow_ports_str,
            "tlsForce": info.tls_force,
        },
        "status": {
            "totalTrafficIn": info.total_traffic_in,
            "totalTrafficOut": info.total_traffic_out,
            "curConns": info.cur_conns,
            "clientCounts": info.client_counts,
            "proxyTypeCount": info.proxy_type_count,
        },
    }))
}

/// frp prunes offline proxies only (`type=offline_proxies`); offline
/// clients stay listed.
fn prune(server: &Server, q: &Query) -> Answer {
    match q.get("type").to_lowercase().as_str() {
        "" => return Err(bad("type is required")),
        PRUNE_OFFLINE_PROXIES => {}
        _ => return Err(bad(format!("type must be one of {PRUNE_OFFLINE_PROXIES}"))),
    }
    let (cleared, total) = server.records.remove_offline_proxies();
    info!("web API: {cleared} offline proxies forgotten");
    ok(serde_json::json!({
        "type": PRUNE_OFFLINE_PROXIES, "cleared": cleared, "total": total,
    }))
}

/// frp's `V2UserResp`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User {
    user: String,
    client_count: usize,
    proxy_count: usize,
}

fn users(server: &Server, q: &Query) -> Answer {
    let paging = paging(q)?;
    let mut by_user: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for c in server.records.clients() {
        by_user.entry(c.user).or_default().0 += 1;
    }
    for p in proxies(server) {
        by_user.entry(p.user).or_default().1 += 1;
    }
    let search = q.search();
    let items = by_user
        .into_iter()
        .filter(|(user, _)| matches(&search, [user.as_str()]))
        .map(|(user, (client_count, proxy_count))| User {
            user,
            client_count,
            proxy_count,
        })
        .collect();
    ok(page(items, &paging))
}

/// frp's client id: the `clientID` it logged in with, else its run id.
fn client_id(c: &ClientRecord) -> &str {
    match c.client_id.as_str() {
        "" => &c.run_id,
        id => id,
    }
}

/// frp's `ClientInfoResp` (its `version` and `wireProtocol` are frp's
/// and left out when empty, as frp does).
#[derive(Serialize)]
struct ClientInfo {
    key: String,
    user: String,
    #[serde(rename = "clientID")]
    client_id: String,
    #[serde(rename = "runID")]
    run_id: String,
    hostname: String,
    #[serde(rename = "clientIP")]
    client_ip: String,
    #[serde(rename = "firstConnectedAt")]
    first_connected_at: u64,
    #[serde(rename = "lastConnectedAt")]
    last_connected_at: u64,
    #[serde(rename = "disconnectedAt", skip_serializing_if = "Option::is_none")]
    disconnected_at: Option<u64>,
    online: bool,
}

fn client_info(c: &ClientRecord) -> ClientInfo {
    ClientInfo {
        key: client_key(c),
        user: c.user.clone(),
        client_id: client_id(c).to_owned(),
        run_id: c.run_id.clone(),
        hostname: c.hostname.clone(),
        client_ip: c.addr.ip().to_string(),
        first_connected_at: unix(c.first_connected),
        last_connected_at: unix(c.last_connected),
        disconnected_at: c.disconnected.map(unix),
        online: c.online(),
    }
}

fn clients(server: &Server, q: &Query) -> Answer {
    let paging = paging(q)?;
    let status = status_filter(q)?;
    let (user, id, run_id) = (q.given("user"), q.get("clientID"), q.get("runID"));
    let search = q.search();
    let mut items: Vec<ClientInfo> = server
        .records
        .clients()
        .iter()
        .filter(|c| user.is_none_or(|u| c.user == u))
        .filter(|c| id.is_empty() || client_id(c) == id)
        .filter(|c| run_id.is_empty() || c.run_id == run_id)
        .filter(|c| status.is_none_or(|online| c.online() == online))
        .map(client_info)
        .filter(|c| {
            let fields = [&c.key, &c.user, &c.client_id, &c.run_id, &c.hostname];
            let ip = c.client_ip.as_str();
            matches(&search, fields.into_iter().map(String::as_str).chain([ip]))
        })
        .collect();
    items.sort_by(|a, b| (&a.user, &a.client_id, &a.key).cmp(&(&b.user, &b.client_id, &b.key)));
    ok(page(items, &paging))
}

/// frp's `V2ClientDetailResp`: the client and a summary of its proxies.
#[derive(Serialize)]
struct ClientDetail {
    #[serde(flatten)]
    info: ClientInfo,
    status: ClientStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientStatus {
    phase: &'static str,
    cur_conns: u64,
    proxy_count: usize,
}

fn client(server: &Server, key: &str) -> Answer {
    let Some(c) = find_client(server, key) else {
        let msg = format!("client {key} not found");
        return Err(Failure(StatusCode::NOT_FOUND, msg));
    };
    let theirs: Vec<ProxyRecord> = proxies(server)
        .into_iter()
        .filter(|p| p.user == c.user && p.run_id == c.run_id)
        .collect();
    ok(ClientDetail {
        info: client_info(&c),
        status: ClientStatus {
            phase: if c.online() { "online" } else { "offline" },
            cur_conns: theirs.iter().map(cur_conns).sum(),
            proxy_count: theirs.len(),
        },
    })
}

fn cur_conns(p: &ProxyRecord) -> u64 {
    if p.online() {
        p.traffic.snapshot().open
    } else {
        0
    }
}

/// frp's `V2ProxyResp`.
#[derive(Serialize)]
struct ProxyItem {
    name: String,
    user: String,
    #[serde(rename = "clientID")]
    client_id: String,
    spec: Spec,
    status: ProxyStatus,
}

/// frp's `V2ProxySpec`: the type, and a block named by it.
#[derive(Serialize)]
struct Spec {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    block: BTreeMap<&'static str, Block>,
}

/// frp's per-type spec blocks in one: each type fills its own fields,
/// and empty ones are left out, as frp leaves them out. An offline
/// proxy's block is empty, as frp's is: the spec is of a running proxy.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Block {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadatas: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<Transport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancer: Option<LoadBalancer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_port: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    custom_domains: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    subdomain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    locations: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    host_header_rewrite: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    multiplexer: String,
    #[serde(rename = "routeByHTTPUser", skip_serializing_if = "String::is_empty")]
    route_by_http_user: String,
    /// Private proxies' (their secret is never known here, so never shown).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allow_users: Vec<String>,
}

/// frps does not build frp's encryption, compression or bandwidth limits
/// (the tunnel is TLS; the config keys are noted as not supported), so
/// these are frp's zero values.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Transport {
    use_encryption: bool,
    use_compression: bool,
    bandwidth_limit: String,
    bandwidth_limit_mode: String,
}

/// Load-balancing groups are not built: no group.
#[derive(Serialize, Default)]
struct LoadBalancer {
    group: String,
}

fn block(p: &ProxyRecord) -> Block {
    if !p.online() {
        return Block::default();
    }
    let mut b = Block {
        annotations: p.annotations.clone(),
        metadatas: p.metadatas.clone(),
        transport: Some(Transport::default()),
        load_balancer: Some(LoadBalancer::default()),
        ..Block::default()
    };
    match &p.spec {
        ProxySpec::Tcp(s) => b.remote_port = Some(s.remote_port),
        ProxySpec::Udp(s) => b.remote_port = Some(s.remote_port),
        ProxySpec::Https(s) => {
            (b.custom_domains, b.subdomain) = (s.custom_domains.clone(), s.subdomain.clone());
        }
        ProxySpec::Http(s) => {
            (b.custom_domains, b.subdomain) = (s.custom_domains.clone(), s.subdomain.clone());
            b.locations = s.locations.clone();
            b.host_header_rewrite = s.host_header_rewrite.clone();
        }
        ProxySpec::Tcpmux(s) => {
            (b.custom_domains, b.subdomain) = (s.custom_domains.clone(), s.subdomain.clone());
            b.multiplexer = "httpconnect".into();
            b.route_by_http_user = s.route_by_http_user.clone();
        }
        ProxySpec::Stcp(s) | ProxySpec::Sudp(s) | ProxySpec::Xtcp(s) => {
            b.allow_users = s.allow_users.clone()
        }
    }
    b
}

/// frp's `V2ProxyStatusResp` (times in Unix seconds, left out when never).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProxyStatus {
    phase: &'static str,
    today_traffic_in: u64,
    today_traffic_out: u64,
    cur_conns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_start_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_close_at: Option<u64>,
}

/// `ids` maps a client (user, run id) to frp's client id.
fn proxy_item(p: &ProxyRecord, ids: &HashMap<(String, String), String>) -> ProxyItem {
    let (ins, outs) = p.daily.series(today());
    let kind = p.spec.kind().as_str();
    let owner = (p.user.clone(), p.run_id.clone());
    ProxyItem {
        name: shown_name(p),
        user: p.user.clone(),
        client_id: ids.get(&owner).unwrap_or(&p.run_id).clone(),
        spec: Spec {
            kind,
            block: BTreeMap::from([(kind, block(p))]),
        },
        status: ProxyStatus {
            phase: if p.online() { "online" } else { "offline" },
            today_traffic_in: ins[0],
            today_traffic_out: outs[0],
            cur_conns: cur_conns(p),
            last_start_at: Some(unix(p.started)),
            last_close_at: p.closed.map(unix),
        },
    }
}

/// Each client's frp client id (its clientID, or its run id), by (user,
/// run id).
pub(crate) fn client_ids(server: &Server) -> HashMap<(String, String), String> {
    let clients = server.records.clients();
    let id = |c: &ClientRecord| ((c.user.clone(), c.run_id.clone()), client_id(c).to_owned());
    clients.iter().map(id).collect()
}

/// What `q` is matched against: frp's fields of the proxy and its spec.
fn searched(p: &ProxyItem) -> Vec<String> {
    let mut v = vec![
        p.name.clone(),
        p.spec.kind.to_owned(),
        p.user.clone(),
        p.client_id.clone(),
        p.status.phase.to_owned(),
    ];
    for b in p.spec.block.values() {
        v.extend(b.remote_port.map(|port| port.to_string()));
        v.extend(b.custom_domains.iter().cloned());
        v.push(b.subdomain.clone());
    }
    v
}

fn proxy_list(server: &Server, q: &Query) -> Answer {
    let paging = paging(q)?;
    let status = status_filter(q)?;
    let kind = q.get("type").to_lowercase();
    if !kind.is_empty() && !PROXY_TYPES.contains(&kind.as_str()) {
        return Err(bad(format!(
            "type must be one of {}",
            PROXY_TYPES.join(", ")
        )));
    }
    let (user, id, search) = (q.given("user"), q.get("clientID"), q.search());
    let ids = client_ids(server);
    let mut items: Vec<ProxyItem> = proxies(server)
        .iter()
        .filter(|p| kind.is_empty() || p.spec.kind().as_str() == kind)
        .filter(|p| status.is_none_or(|online| p.online() == online))
        .map(|p| proxy_item(p, &ids))
        .filter(|p| user.is_none_or(|u| p.user == u))
        .filter(|p| id.is_empty() || p.client_id == id)
        .filter(|p| matches(&search, searched(p).iter().map(String::as_str)))
        .collect();
    items.sort_by(|a, b| (a.spec.kind, &a.name).cmp(&(b.spec.kind, &b.name)));
    ok(page(items, &paging))
}

fn no_proxy() -> Failure {
    Failure(StatusCode::NOT_FOUND, "no proxy info found".into())
}

fn proxy(server: &Server, name: &str) -> Answer {
    let p = find_proxy(server, name).ok_or_else(no_proxy)?;
    ok(proxy_item(&p, &client_ids(server)))
}

/// frp's `V2ProxyTrafficPointResp`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Point {
    date: String,
    traffic_in: u64,
    traffic_out: u64,
}

/// 7 days of bytes, oldest first, each dated (UTC days, as they are
/// counted).
fn traffic(server: &Server, name: &str) -> Answer {
    let p = find_proxy(server, name).ok_or_else(no_proxy)?;
    let today = today();
    let (ins, outs) = p.daily.series(today);
    let history: Vec<Point> = (0..DAYS)
        .rev()
        .map(|back| Point {
            date: date(today.saturating_sub(back as u64)),
            traffic_in: ins[back],
            traffic_out: outs[back],
        })
        .collect();
    ok(serde_json::json!({
        "name": name, "unit": "bytes", "granularity": "day", "history": history,
    }))
}

/// `YYYY-MM-DD` of a day count since the epoch.
fn date(day: u64) -> String {
    let (y, m, d) = super::civil(day as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_as_go_reads_them() {
        let q = Query::parse("user=&q=a+b%2Bc&bad=%zz&x;y=1&user=second&page");
        assert_eq!(q.given("user"), Some(""));
        assert_eq!(q.get("q"), "a b+c");
        assert_eq!(q.given("bad"), None);
        assert_eq!(q.given("x;y"), None);
        assert_eq!(q.given("page"), Some(""));
        assert_eq!(q.given("missing"), None);
    }

    #[test]
    fn path_names_are_decoded_strictly() {
        let decoded = path_param("my%20proxy%2F%C3%BC", "proxy name").ok();
        assert_eq!(decoded.as_deref(), Some("my proxy/ü"));
        assert_eq!(path_param("a+b", "proxy name").ok().as_deref(), Some("a+b"));
        for broken in ["%zz", "a%2", "%", "%FF"] {
            assert!(path_param(broken, "proxy name").is_err(), "{broken}");
        }
    }

    #[test]
    fn paging_as_frp_pages() {
        let p = |s: &str| {
            paging(&Query::parse(s))
                .map(|p| (p.page, p.size))
                .map_err(|f| f.1)
        };
        assert_eq!(p(""), Ok((1, 50)));
        assert_eq!(p("page=2&pageSize=200"), Ok((2, 200)));
        let refused = |msg: &str| Err(msg.to_owned());
        assert_eq!(p("page=0"), refused("page must be a positive integer"));
        assert_eq!(
            p("pageSize=201"),
            refused("pageSize must be between 1 and 200")
        );
        let huge = format!("page={}&pageSize=2", i64::MAX);
        assert_eq!(p(&huge), refused("page is too large"));
        let items = page((0..5).collect::<Vec<_>>(), &Paging { page: 2, size: 2 });
        assert_eq!((items.total, items.items), (5, vec![2, 3]));
        let beyond = page((0..5).collect::<Vec<_>>(), &Paging { page: 4, size: 2 });
        assert!(beyond.items.is_empty());
    }

    #[test]
    fn dates_of_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_788), "2026-12-01");
    }
}
