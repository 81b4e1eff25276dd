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
            Some(want) => given == Some(want.as_bytes()),
        }
    }
}

/// Serves `listener` until `stop`, each request answered by `handler`
/// once basic auth (`auth`) has passed.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    auth: Arc<Credentials>,
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
        let (handler, auth, tls, stop) = (handler.clone(), auth.clone(), tls.clone(), stop.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (handler, auth) = (handler.clone(), auth.clone());
                async move { Ok::<_, Infallible>(answer(req, peer, &auth, &*handler).await) }
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
    handler: &F,
) -> WebResponse
where
    F: Fn(WebRequest) -> Fut,
    Fut: Future<Output = WebResponse>,
{
    let path = req.uri().path().to_owned();
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
