//! frps's web server (`webServer.*`): frp's JSON API with its paths and
//! field names, so scripts written for frp keep working, what users asked
//! frp for on top (each client's address and liveness, disconnecting a
//! client), and Prometheus `/metrics` (`enablePrometheus`) with frp's
//! names plus the liveness the heartbeat measures. frp's API v2
//! (`/api/v2/...`) is in `v2`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use net::web::{json, text, WebRequest, WebResponse};
use serde::Serialize;
use serde_json::{json as j, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use wire::message::ProxySpec;

use crate::records::{today, ClientRecord, ProxyRecord};
use crate::Server;

mod metrics;
mod v2;

/// The dashboard page (HTML, CSS and script in one file).
const DASHBOARD: &str = include_str!("web/dashboard.html");

fn redirect(to: &'static str) -> WebResponse {
    let mut r = text(StatusCode::MOVED_PERMANENTLY, "");
    r.headers_mut().insert(
        hyper::header::LOCATION,
        hyper::header::HeaderValue::from_static(to),
    );
    r
}

pub(crate) async fn serve(server: Arc<Server>, listener: TcpListener, stop: CancellationToken) {
    let cfg = server.config.web_server.clone();
    let tls = match net::web::acceptor(&cfg) {
        Ok(t) => t,
        Err(e) => return tracing::error!("webServer.tls: {e}; the web server is off"),
    };
    // Daily traffic lands in the day it was carried.
    let ticker = server.clone();
    let ticking = stop.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = ticking.cancelled() => return,
                _ = every.tick() => ticker.save_history(),
            }
        }
    });
    let guard = net::web::Guard {
        changing_gets: &[],
        literal_host_when_open: false,
    };
    net::web::serve(
        listener,
        server.web_auth.clone(),
        guard,
        tls,
        stop,
        move |req| {
            let server = server.clone();
            async move { route(&server, req) }
        },
    )
    .await
}

fn route(server: &Server, req: WebRequest) -> WebResponse {
    if req.path.starts_with("/api/v2/") {
        return v2::route(server, &req);
    }
    // Each segment percent-decoded after the split: a name may hold a `/`
    // (`my%20proxy%2F%C3%BC` is the proxy "my proxy/ü").
    let decoded: Vec<String> = req
        .path
        .trim_start_matches('/')
        .split('/')
        .map(|seg| {
            String::from_utf8_lossy(&crate::vhost::http::percent_decode(seg.as_bytes()))
                .into_owned()
        })
        .collect();
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let get = req.method == Method::GET;
    match (req.method.clone(), parts.as_slice()) {
        (_, ["healthz"]) => text(StatusCode::OK, ""),
        // The dashboard: one page from the binary (nothing fetched at run
        // time), reading the API below. `/` sends browsers there, as frp.
        (_, [""]) if get => redirect("/static/"),
        (_, ["static", ""] | ["static", "index.html"]) if get => {
            net::web::respond(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD)
        }
        (_, ["metrics"]) if get && server.config.enable_prometheus => metrics::render(server),
        (_, ["api", "serverinfo"]) if get => json(StatusCode::OK, &server_info(server)),
        (_, ["api", "proxy", kind]) if get => {
            let ids = v2::client_ids(server);
            let list: Vec<Value> = proxies(server)
                .iter()
                .filter(|p| p.spec.kind().as_str() == *kind)
                .map(|p| proxy_json(p, &ids))
                .collect();
            json(StatusCode::OK, &j!({ "proxies": list }))
        }
        (_, ["api", "proxy", kind, name]) if get => one_proxy(server, name, Some(kind)),
        (_, ["api", "proxies", name]) if get => one_proxy(server, name, None),
        (_, ["api", "traffic", name]) if get => traffic(server, name),
        (Method::DELETE, ["api", "proxies"]) => match req.param("status") {
            Some("offline") => {
                let (n, _) = server.records.remove_offline_proxies();
                info!("web API: {n} offline proxies forgotten");
                json(StatusCode::OK, &j!({}))
            }
            _ => text(
                StatusCode::BAD_REQUEST,
                "status=offline is the only filter\n",
            ),
        },
        (_, ["api", "clients"]) if get => {
            let list: Vec<Value> = server.records.clients().iter().map(client_json).collect();
            json(StatusCode::OK, &list)
        }
        (_, ["api", "clients", key]) if get => match find_client(server, key) {
            Some(c) => json(StatusCode::OK, &client_json(&c)),
            None => text(StatusCode::NOT_FOUND, "no such client\n"),
        },
        (Method::DELETE, ["api", "clients", key]) => disconnect(server, key),
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// frp's `ServerInfoResp`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerInfo {
    version: &'static str,
    bind_port: u16,
    #[serde(rename = "vhostHTTPPort")]
    vhost_http_port: u16,
    #[serde(rename = "vhostHTTPSPort")]
    vhost_https_port: u16,
    #[serde(rename = "tcpmuxHTTPConnectPort")]
    tcpmux_http_connect_port: u16,
    #[serde(rename = "kcpBindPort")]
    kcp_bind_port: u16,
    #[serde(rename = "quicBindPort")]
    quic_bind_port: u16,
    subdomain_host: String,
    max_pool_count: usize,
    max_ports_per_client: u32,
    heartbeat_timeout: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    allow_ports_str: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_force: bool,
    total_traffic_in: u64,
    total_traffic_out: u64,
    cur_conns: u64,
    client_counts: usize,
    #[serde(rename = "proxyTypeCount")]
    proxy_type_count: BTreeMap<&'static str, u64>,
}

fn server_info(server: &Server) -> ServerInfo {
    let cfg = &server.config;
    let proxies = proxies(server);
    let mut by_type = BTreeMap::new();
    let (mut inb, mut outb, mut conns) = (0, 0, 0);
    for p in &proxies {
        let (i, o) = p.total();
        (inb, outb) = (inb + i, outb + o);
        if p.online() {
            *by_type.entry(p.spec.kind().as_str()).or_default() += 1;
            conns += p.traffic.snapshot().open;
        }
    }
    let allow: Vec<String> = cfg
        .allow_ports
        .iter()
        .map(|r| match (r.single, r.start, r.end) {
            (Some(s), _, _) => s.to_string(),
            (None, Some(a), Some(b)) => format!("{a}-{b}"),
            _ => String::new(),
        })
        .collect();
    ServerInfo {
        version: env!("CARGO_PKG_VERSION"),
        bind_port: cfg.bind_port,
        vhost_http_port: cfg.vhost_http_port,
        vhost_https_port: cfg.vhost_https_port,
        tcpmux_http_connect_port: cfg.tcpmux_http_connect_port,
        kcp_bind_port: 0,
        quic_bind_port: 0,
        subdomain_host: cfg.sub_domain_host.clone(),
        max_pool_count: cfg.transport.max_pool_count,
        max_ports_per_client: cfg.max_ports_per_client,
        heartbeat_timeout: cfg.transport.heartbeat_timeout,
        allow_ports_str: allow.join(","),
        tls_force: cfg.transport.tls.force,
        total_traffic_in: inb,
        total_traffic_out: outb,
        cur_conns: conns,
        client_counts: server
            .records
            .clients()
            .iter()
            .filter(|c| c.online())
            .count(),
        proxy_type_count: by_type,
    }
}

fn proxies(server: &Server) -> Vec<ProxyRecord> {
    server.records.proxies()
}

/// The name frp shows: `user.name` when the client has a user.
pub(crate) fn shown_name(p: &ProxyRecord) -> String {
    match p.user.as_str() {
        "" => p.name.clone(),
        u => format!("{u}.{}", p.name),
    }
}

/// frp's `conf` of a proxy: what the server knows of it, camelCase.
fn conf(p: &ProxyRecord) -> Value {
    let mut v = match &p.spec {
        ProxySpec::Tcp(s) => j!({ "remotePort": s.remote_port }),
        ProxySpec::Udp(s) => j!({ "remotePort": s.remote_port }),
        ProxySpec::Https(s) => j!({ "customDomains": s.custom_domains, "subdomain": s.subdomain }),
        ProxySpec::Http(s) => j!({
            "customDomains": s.custom_domains, "subdomain": s.subdomain,
            "locations": s.locations, "hostHeaderRewrite": s.host_header_rewrite,
            "routeByHTTPUser": s.route_by_http_user,
        }),
        ProxySpec::Tcpmux(s) => j!({
            "customDomains": s.custom_domains, "subdomain": s.subdomain,
            "multiplexer": "httpconnect", "routeByHTTPUser": s.route_by_http_user,
        }),
        // The secret is never known here; its verifier is not shown.
        ProxySpec::Stcp(s) | ProxySpec::Sudp(s) | ProxySpec::Xtcp(s) => {
            j!({ "allowUsers": s.allow_users })
        }
    };
    v["name"] = j!(shown_name(p));
    v["type"] = j!(p.spec.kind().as_str());
    // As frp: left out when empty.
    if !p.annotations.is_empty() {
        v["annotations"] = j!(p.annotations);
    }
    if !p.metadatas.is_empty() {
        v["metadatas"] = j!(p.metadatas);
    }
    v
}

/// frp's `ProxyStatsInfo`; `ids` gives its client's frp client id.
fn proxy_json(p: &ProxyRecord, ids: &std::collections::HashMap<(String, String), String>) -> Value {
    let (ins, outs) = p.daily.series(today());
    j!({
        "name": shown_name(p),
        "conf": conf(p),
        "user": p.user,
        "clientID": ids.get(&(p.user.clone(), p.run_id.clone())).unwrap_or(&p.run_id),
        "todayTrafficIn": ins[0],
        "todayTrafficOut": outs[0],
        "curConns": if p.online() { p.traffic.snapshot().open } else { 0 },
        "lastStartTime": clock(Some(p.started)),
        "lastCloseTime": clock(p.closed),
        "status": if p.online() { "online" } else { "offline" },
    })
}

fn find_proxy(server: &Server, name: &str) -> Option<ProxyRecord> {
    proxies(server).into_iter().find(|p| shown_name(p) == name)
}

fn one_proxy(server: &Server, name: &str, kind: Option<&str>) -> WebResponse {
    match find_proxy(server, name) {
        Some(p) if kind.is_none_or(|k| k == p.spec.kind().as_str()) => {
            json(StatusCode::OK, &proxy_json(&p, &v2::client_ids(server)))
        }
        _ => text(StatusCode::NOT_FOUND, "no proxy info found\n"),
    }
}

/// frp's `GetProxyTrafficResp`: 7 days, today first.
fn traffic(server: &Server, name: &str) -> WebResponse {
    match find_proxy(server, name) {
        Some(p) => {
            let (ins, outs) = p.daily.series(today());
            json(
                StatusCode::OK,
                &j!({ "name": name, "trafficIn": ins, "trafficOut": outs }),
            )
        }
        None => text(StatusCode::NOT_FOUND, "no proxy info found\n"),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// frp's `ClientInfoResp`, with the client's address and liveness.
fn client_json(c: &ClientRecord) -> Value {
    let last = c
        .activity
        .as_ref()
        .map(|a| a.last_recv().elapsed().as_secs_f64());
    j!({
        "key": client_key(c),
        "user": c.user,
        "clientID": c.client_id,
        "metas": c.metas,
        "runID": c.run_id,
        "hostname": c.hostname,
        "protocolVersion": c.protocol,
        "clientIP": c.addr.ip().to_string(),
        "clientAddr": c.addr.to_string(),
        "firstConnectedAt": unix(c.first_connected),
        "lastConnectedAt": unix(c.last_connected),
        "disconnectedAt": c.disconnected.map(unix),
        "online": c.online(),
        "lastReceivedSecs": last,
        "beatsReceived": c.beats.load(std::sync::atomic::Ordering::Relaxed),
        "heartbeatRttMs": rtt_ms(c),
        "sessionsReplaced": c.replaced,
    })
}

/// The round trip the client's last beat reported, in ms.
pub(crate) fn rtt_ms(c: &ClientRecord) -> Option<f64> {
    let us = c.rtt_us.load(std::sync::atomic::Ordering::Relaxed);
    (c.online() && us > 0).then(|| us as f64 / 1000.0)
}

/// A client's key in the API: its run id, under its user when it has one
/// (a run id alone is not unique: sessions are one per user and run id).
fn client_key(c: &ClientRecord) -> String {
    match c.user.as_str() {
        "" => c.run_id.clone(),
        user => format!("{user}.{}", c.run_id),
    }
}

/// The client `key` names; a bare run id only when one client has it.
fn find_client(server: &Server, key: &str) -> Option<ClientRecord> {
    let clients = server.records.clients();
    if let Some(c) = clients.iter().find(|c| client_key(c) == key) {
        return Some(c.clone());
    }
    let mut by_run_id = clients.into_iter().filter(|c| c.run_id == key);
    match (by_run_id.next(), by_run_id.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// Ends a client's session (frp users asked for it: #3991, #4347). The
/// client reconnects unless it is stopped; its proxies close meanwhile.
fn disconnect(server: &Server, key: &str) -> WebResponse {
    match find_client(server, key).and_then(|c| c.close) {
        Some(close) => {
            info!(run_id = %net::logging::Field(key), "web API: client disconnected");
            close.cancel();
            json(StatusCode::OK, &j!({}))
        }
        None => text(StatusCode::NOT_FOUND, "no such online client\n"),
    }
}

/// `MM-DD hh:mm:ss` (UTC), frp's layout; empty for never.
fn clock(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    let secs = unix(t);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (_, month, day) = civil(days as i64);
    format!(
        "{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// civil_from_days).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::civil;

    #[test]
    fn days_to_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_788), (2026, 12, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }
}
