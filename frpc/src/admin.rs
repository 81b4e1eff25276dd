//! frpc's admin API (`webServer.*`), with frp's paths and shapes:
//! `/healthz`, `GET /api/status`, `GET /api/reload`, `POST /api/stop`,
//! `GET` and `PUT /api/config`, `GET /api/proxy/{name}/config`; and ours:
//! `GET /api/liveness` (the connection as the heartbeat sees it) and
//! `GET /metrics` (Prometheus). The admin UI, one page from the binary, is
//! at `/static/` (`/` sends browsers there, as frp).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use config::WebServerConfig;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use net::web::TlsAcceptor;
use net::web::{json, text, WebRequest, WebResponse};
use prometheus::{
    Counter, Encoder, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::{ConfigRefused, Controller};
use crate::state::ConnState;
use crate::ProxyStatus;

pub(crate) async fn serve(
    ctl: Arc<Controller>,
    listener: TcpListener,
    cfg: WebServerConfig,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let auth = net::web::Credentials::new(&cfg);
    let guard = net::web::Guard {
        changing_gets: &["/api/reload"],
        literal_host_when_open: true,
    };
    net::web::serve(listener, auth, guard, tls, stop, move |req| {
        let ctl = ctl.clone();
        async move { route(&ctl, req).await }
    })
    .await
}

async fn route(ctl: &Arc<Controller>, req: WebRequest) -> WebResponse {
    let get = req.method == Method::GET;
    if let Some(name) = proxy_config_path(&req.path) {
        return match name {
            _ if !get => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            Some(name) => proxy_config(ctl, &name),
            None => text(StatusCode::BAD_REQUEST, "the proxy name is not UTF-8\n"),
        };
    }
    match req.path.as_str() {
        "/healthz" => text(StatusCode::OK, ""),
        "/" if get => redirect("/static/"),
        "/static/" | "/static/index.html" if get => ui(),
        "/api/status" if get => json(StatusCode::OK, &status(ctl)),
        "/api/liveness" if get => json(StatusCode::OK, &ctl.liveness()),
        // Reading files happens off the runtime: a multiplexed frpc's
        // tunnel runs on its one thread.
        "/api/reload" if get => match ctl.reload_off_runtime().await {
            Ok(_) => text(StatusCode::OK, ""),
            Err(e) => refused(e),
        },
        "/api/stop" if req.method == Method::POST => {
            // Answer first, then stop (as frp).
            let ctl = ctl.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                ctl.stop();
            });
            text(StatusCode::OK, "")
        }
        "/api/config" if get => match ctl.config_text() {
            Ok(t) => text(StatusCode::OK, t),
            Err(e) => refused(e),
        },
        "/api/config" if req.method == Method::PUT => put_config(ctl, &req).await,
        "/metrics" if get => metrics(ctl),
        "/api/status" | "/api/liveness" | "/api/reload" | "/api/stop" | "/api/config"
        | "/metrics" => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// The admin UI (HTML, CSS and script in one file, nothing fetched from
/// elsewhere).
const UI: &str = include_str!("admin/ui.html");

/// The page. It runs only its own script and style (a nonce per answer:
/// even a name that slipped through as HTML could not run), reaches only
/// this server, and no other site may frame it: a framed page is of this
/// origin, so a click lured onto its Reload button would pass the
/// same-origin checks.
fn ui() -> WebResponse {
    let nonce = net::util::random_id();
    let page = UI
        .replacen("<style>", &format!("<style nonce=\"{nonce}\">"), 1)
        .replacen("<script>", &format!("<script nonce=\"{nonce}\">"), 1);
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'none'"
    );
    let Ok(csp) = HeaderValue::try_from(csp) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "no page\n");
    };
    let mut r = net::web::respond(StatusCode::OK, "text/html; charset=utf-8", page);
    let h = r.headers_mut();
    h.insert("content-security-policy", csp);
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

fn redirect(to: &'static str) -> WebResponse {
    let mut r = text(StatusCode::MOVED_PERMANENTLY, "");
    r.headers_mut()
        .insert(hyper::header::LOCATION, HeaderValue::from_static(to));
    r
}

/// The name in `/api/proxy/{name}/config`, percent-decoded (None when it
/// is not UTF-8); a name may hold a `/` as `%2F`.
fn proxy_config_path(path: &str) -> Option<Option<String>> {
    let raw = path.strip_prefix("/api/proxy/")?.strip_suffix("/config")?;
    if raw.is_empty() || raw.contains('/') {
        return None;
    }
    Some(String::from_utf8(percent_decode(raw.as_bytes())).ok())
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h << 4 | l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// frp's `ProxyDefinition`: name, type, and the whole proxy config under
/// its type (`{"name":"ssh","type":"tcp","tcp":{"localPort":22,…}}`), in
/// frp's field names.
fn proxy_config(ctl: &Controller, name: &str) -> WebResponse {
    match ctl.proxy_config(name) {
        Some(cfg) => {
            let kind = cfg.kind().as_str();
            json(
                StatusCode::OK,
                &serde_json::json!({ "name": cfg.name(), "type": kind, kind: cfg }),
            )
        }
        None => text(StatusCode::NOT_FOUND, format!("proxy {name:?} not found\n")),
    }
}

fn refused(e: ConfigRefused) -> WebResponse {
    let status = match e {
        ConfigRefused::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    text(status, format!("{e}\n"))
}

async fn put_config(ctl: &Arc<Controller>, req: &WebRequest) -> WebResponse {
    if req.body.is_empty() {
        return text(StatusCode::BAD_REQUEST, "body can't be empty\n");
    }
    let Ok(body) = std::str::from_utf8(&req.body) else {
        return text(StatusCode::BAD_REQUEST, "the config is not UTF-8\n");
    };
    match ctl.put_config_off_runtime(body.to_owned()).await {
        Ok(()) => text(StatusCode::OK, ""),
        Err(e) => refused(e),
    }
}

/// frp's `ProxyStatusResp`.
#[derive(Serialize)]
struct ProxyStatusJson {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    err: String,
    local_addr: String,
    plugin: String,
    remote_addr: String,
}

/// Proxies by type, each list sorted by name (frp's `StatusResp`).
fn status(ctl: &Controller) -> BTreeMap<&'static str, Vec<ProxyStatusJson>> {
    let server = ctl.liveness().server;
    let host = server.rsplit_once(':').map_or(server.as_str(), |(h, _)| h);
    let mut out: BTreeMap<&'static str, Vec<ProxyStatusJson>> = BTreeMap::new();
    for s in ctl.statuses() {
        // frp shows a tcp or udp proxy at the server's address.
        let remote_addr = match (s.kind, s.remote_addr.rsplit_once(':')) {
            ("tcp" | "udp", Some((_, port))) => format!("{host}:{port}"),
            _ => s.remote_addr.clone(),
        };
        out.entry(s.kind).or_default().push(ProxyStatusJson {
            name: s.name,
            kind: s.kind,
            status: s.phase.as_str(),
            err: s.err,
            local_addr: s.local_addr,
            plugin: String::new(),
            remote_addr,
        });
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

/// Each proxy's bytes and open connections, labelled by name and type as
/// frps's `frp_server_traffic_*` are: one series per configured proxy.
fn proxy_traffic(r: &Registry, statuses: &[ProxyStatus]) -> prometheus::Result<()> {
    let labels = ["name", "type"];
    let from_local = IntCounterVec::new(
        Opts::new(
            "frp_client_proxy_from_local_bytes_total",
            "Bytes read from the local service and sent to frps",
        ),
        &labels,
    )?;
    let to_local = IntCounterVec::new(
        Opts::new(
            "frp_client_proxy_to_local_bytes_total",
            "Bytes received from frps and written to the local service",
        ),
        &labels,
    )?;
    let open = IntGaugeVec::new(
        Opts::new(
            "frp_client_proxy_connections",
            "Connections (UDP: mappings) open now",
        ),
        &labels,
    )?;
    for s in statuses {
        let Some(t) = s.traffic else { continue };
        let l = [s.name.as_str(), s.kind];
        from_local.with_label_values(&l).inc_by(t.into_tunnel);
        to_local.with_label_values(&l).inc_by(t.out_of_tunnel);
        open.with_label_values(&l).set(t.open as i64);
    }
    r.register(Box::new(from_local))?;
    r.register(Box::new(to_local))?;
    r.register(Box::new(open))
}

/// The client's liveness and proxies as Prometheus metrics, plus the
/// process's own (CPU, memory, descriptors).
fn metrics(ctl: &Controller) -> WebResponse {
    match gather(ctl) {
        Ok(body) => net::web::respond(StatusCode::OK, "text/plain; version=0.0.4", body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn gather(ctl: &Controller) -> prometheus::Result<Vec<u8>> {
    let r = Registry::new();
    let live = ctl.liveness();
    let gauge = |name: &str, help: &str, v: f64| -> prometheus::Result<()> {
        let g = Gauge::new(name, help)?;
        g.set(v);
        r.register(Box::new(g))
    };
    let count = |name: &str, help: &str, v: u64| -> prometheus::Result<()> {
        let g = IntGauge::new(name, help)?;
        g.set(v as i64);
        r.register(Box::new(g))
    };
    let counter = |name: &str, help: &str, v: f64| -> prometheus::Result<()> {
        let c = Counter::new(name, help)?;
        c.inc_by(v);
        r.register(Box::new(c))
    };
    let connected = live.state == ConnState::Connected;
    count(
        "frp_client_connected",
        "1 while logged in to frps, else 0",
        u64::from(connected),
    )?;
    if let Some(rtt) = live.rtt_ms {
        gauge(
            "frp_client_heartbeat_rtt_seconds",
            "Round trip of the last answered heartbeat",
            rtt / 1000.0,
        )?;
    }
    if let Some(s) = live.last_received_secs {
        gauge(
            "frp_client_last_received_seconds",
            "Seconds since anything was received from frps",
            s,
        )?;
    }
    counter(
        "frp_client_reconnects_total",
        "Sessions after the first",
        live.reconnects as f64,
    )?;
    counter(
        "frp_client_outages_total",
        "Times the connection to frps was lost",
        live.outages as f64,
    )?;
    counter(
        "frp_client_outage_seconds_total",
        "Seconds without a connection to frps, the current outage included",
        live.outage_seconds_total,
    )?;
    gauge(
        "frp_client_backoff_seconds",
        "Delay before the next connection attempt (0 when connected)",
        live.backoff_seconds.unwrap_or(0.0),
    )?;
    let proxies = IntGaugeVec::new(
        Opts::new("frp_client_proxy_counts", "Proxies by type and status"),
        &["type", "status"],
    )?;
    let statuses = ctl.statuses();
    for s in &statuses {
        proxies.with_label_values(&[s.kind, s.phase.as_str()]).inc();
    }
    r.register(Box::new(proxies))?;
    proxy_traffic(&r, &statuses)?;
    r.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let mut out = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut out)?;
    Ok(out)
}
