//! The small HTTP servers of `webServer.*` — frps's dashboard and API,
//! frpc's admin API — on hyper: optional TLS, basic auth on everything but
//! `/healthz`, request bodies read whole up to [`MAX_BODY`], and bounded
//! head size and time. What each path answers is the caller's handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use config::WebServerConfig;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
pub use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::tls::{self, TlsError};

/// Largest request body taken (an uploaded config file).
pub const MAX_BODY: usize = 1 << 20;
/// Time a client has to send a request head, and to send its body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the listen queue.
const MAX_CONNECTIONS: usize = 256;
/// Connections one source address may hold; more are closed at once, so
/// one address cannot keep the others waiting.
pub const PER_ADDRESS: usize = 32;

/// A request as handlers see it: the body already read.
#[derive(Debug)]
pub struct WebRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl WebRequest {
    /// The value of `key` in the query string (no percent-decoding: the
    /// API's parameters are plain words).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

pub type WebResponse = Response<Full<Bytes>>;

/// A response with `body` of type `kind`.
pub fn respond(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> WebResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

/// A JSON response.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> WebResponse {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> WebResponse {
    respond(status, "text/plain; charset=utf-8", body)
}

/// The TLS side of `cfg`, when it has a certificate.
pub fn acceptor(cfg: &WebServerConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    if cfg.tls.cert_file.is_empty() {
        return Ok(None);
    }
    let certs = tls::load_certs(std::path::Path::new(&cfg.tls.cert_file))?;
    let key = tls::load_key(std::path::Path::new(&cfg.tls.key_file))?;
    let mut config = (*tls::server_config(certs, key, None)?).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// The basic-auth credentials asked of every request but `/healthz`;
/// replaceable while the server runs (frps's reload).
pub struct Credentials(std::sync::RwLock<Option<String>>);

impl Credentials {
    pub fn new(cfg: &WebServerConfig) -> Arc<Credentials> {
        let c = Arc::new(Credentials(std::sync::RwLock::new(None)));
        c.set(cfg);
        c
    }

    /// Takes `webServer.user`/`password` from `cfg` (no user: no auth).
    pub fn set(&self, cfg: &WebServerConfig) {
        let want = (!cfg.user.is_empty()).then(|| basic_auth(&cfg.user, &cfg.password));
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = want;
    }

    fn admits(&self, given: Option<&[u8]>) -> bool {
        match &*self.0.read().unwrap_or_else(|p| p.into_inner()) {
            None => true,
            Some(want) => given.is_some_and(|g| same_bytes(g, want.as_bytes())),
        }
    }

    fn open(&self) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).is_none()
    }
}

/// Equality whose time does not depend on where the bytes differ.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// What the server takes from browsers, beyond basic auth.
#[derive(Clone, Copy)]
pub struct Guard {
    /// GET paths that change state (frp's `GET /api/reload`): held to the
    /// same-origin rule as every other method but GET and HEAD.
    pub changing_gets: &'static [&'static str],
    /// Without credentials, answer only to a Host that is an IP address or
    /// `localhost` (frpc's admin API, which hands out the token).
    pub literal_host_when_open: bool,
}

/// Why a browser's request is refused before it is served, if it is:
/// - without credentials, a Host that is a name other than `localhost` (a
///   page whose name was re-pointed at 127.0.0.1 — DNS rebinding — would
///   otherwise read answers as its own origin);
/// - a request that changes state sent by a page of another origin
///   (`Sec-Fetch-Site` other than same-origin or none, or an `Origin` that
///   is not this server; browsers send `Origin` with every form post).
///
/// Programs (frp's CLI, curl, Prometheus) send neither header and pass.
fn foreign(req: &Request<Incoming>, open: bool, guard: Guard) -> Option<&'static str> {
    let headers = req.headers();
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = value("host").unwrap_or_default();
    if open && guard.literal_host_when_open && !host.is_empty() && !literal_host(host) {
        return Some(
            "without webServer.user this server answers only to an IP address or localhost",
        );
    }
    let method = req.method();
    let reads = (method == Method::GET || method == Method::HEAD)
        && !guard.changing_gets.contains(&req.uri().path());
    if reads {
        return None;
    }
    if value("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none") {
        return Some("a page of another site may not change this server's state");
    }
    if let Some(origin) = value("origin") {
        let bare = origin.split_once("://").map_or("", |(_, rest)| rest);
        if !bare.eq_ignore_ascii_case(host) {
            return Some("a page of another origin may not change this server's state");
        }
    }
    None
}

/// An IP address or `localhost`, with an optional port.
fn literal_host(host: &str) -> bool {
    let port_ok = |p: &str| {
        p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(v6) = host.strip_prefix('[') {
        return v6
            .split_once(']')
            .is_some_and(|(ip, rest)| ip.parse::<std::net::Ipv6Addr>().is_ok() && port_ok(rest));
    }
    let (name, rest) = match host.find(':') {
        Some(i) => host.split_at(i),
        None => (host, ""),
    };
    port_ok(rest)
        && (name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Serves `listener` until `stop`, each request answered by `handler`
/// once basic auth (`auth`) has passed.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    auth: Arc<Credentials>,
    guard: Guard,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
    handler: F,
) where
    F: Fn(WebRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = WebResponse> + Send + 'static,
{
    let handler = Arc::new(handler);
    let tasks = TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_address =
        crate::gate::Gate::new(&crate::gate::Share::new(MAX_CONNECTIONS), PER_ADDRESS);
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!("web server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let pass = match per_address.admit(peer.ip()) {
            Ok(pass) => pass,
            Err(why) => {
                debug!(%peer, "web server: closed at once: {why}");
                continue;
            }
        };
        let (handler, auth, tls, stop) = (handler.clone(), auth.clone(), tls.clone(), stop.clone());
        tasks.spawn(async move {
            let _permit = (permit, pass);
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (handler, auth) = (handler.clone(), auth.clone());
                async move { Ok::<_, Infallible>(answer(req, peer, &auth, guard, &*handler).await) }
            });
            let conn = async {
                let http = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(READ_TIMEOUT)
                    .clone();
                let served = match tls {
                    Some(tls) => match tokio::time::timeout(READ_TIMEOUT, tls.accept(tcp)).await {
                        Ok(Ok(s)) => http.serve_connection(TokioIo::new(s), svc).await,
                        _ => return debug!(%peer, "web server: TLS handshake failed"),
                    },
                    None => http.serve_connection(TokioIo::new(tcp), svc).await,
                };
                if let Err(e) = served {
                    debug!(%peer, "web server connection: {e}");
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = conn => {}
            }
        });
    }
    tasks.close();
}

/// The `Authorization` (or `Proxy-Authorization`) value of basic auth for
/// `user`:`password`, as every side writes or expects it.
pub fn basic_auth(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

async fn answer<F, Fut>(
    req: Request<Incoming>,
    peer: SocketAddr,
    auth: &Credentials,
    guard: Guard,
    handler: &F,
) -> WebResponse
where
    F: Fn(WebRequest) -> Fut,
    Fut: Future<Output = WebResponse>,
{
    let path = req.uri().path().to_owned();
    if let Some(why) = foreign(&req, auth.open(), guard) {
        debug!(%peer, "web server: refused: {why}");
        return text(StatusCode::FORBIDDEN, format!("403 {why}\n"));
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if path != "/healthz" && !auth.admits(given) {
        let mut r = text(StatusCode::UNAUTHORIZED, "401 Unauthorized\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Restricted\""),
        );
        return r;
    }
    let query = req.uri().query().unwrap_or_default().to_owned();
    let method = req.method().clone();
    let body = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(READ_TIMEOUT, body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or broken\n",
            )
        }
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "request body too slow\n"),
    };
    handler(WebRequest {
        method,
        path,
        query,
        body,
        peer,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::literal_host;

    #[test]
    fn only_addresses_and_localhost_with_a_numeric_port() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:7400",
            "[::1]",
            "[::1]:7400",
            "LOCALHOST",
            "localhost:1",
        ] {
            assert!(literal_host(ok), "{ok}");
        }
        for bad in [
            "127.0.0.1:7400@evil",
            "localhost:7400, evil.com",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "[::1]evil",
            "localhost:",
            "evil.com",
        ] {
            assert!(!literal_host(bad), "{bad}");
        }
    }
}
