//! The HTTP virtual host port (`vhostHTTPPort`): hyper serves the users;
//! each request is routed by its Host (case-insensitive, port ignored,
//! wildcards) and the longest matching location prefix, checked for basic
//! auth, given the forwarding headers and the proxy's header changes, and
//! sent over a fresh tunnel stream to the local web service with hyper's
//! client. Bodies stream both ways with hyper's backpressure (no request
//! or response is held whole), and `Upgrade` (WebSocket…) is carried
//! through once both sides agree.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Frame, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use net::tunnel::Tunnel;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wire::message::HttpSpec;

use super::{candidates, normalize};
use crate::proxy::{open_work, ProxyCtx};
use crate::Server;

pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// Time a user has to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a request head; more gets 431 (hyper itself stops reading
/// a head at a few hundred KiB).
const MAX_HEAD: usize = 64 * 1024;

/// One http proxy as the router holds it.
pub(crate) struct HttpRoute {
    pub ctx: ProxyCtx,
    pub spec: HttpSpec,
    /// Keep-alive connections to the local service (each over its own
    /// tunnel stream) waiting for the next request, at most [`IDLE_PER_ROUTE`].
    pub idle: Mutex<Vec<Sender>>,
}

type Sender = hyper::client::conn::http1::SendRequest<Incoming>;

/// Idle keep-alive connections kept per http proxy: each holds one stream
/// of the client's `maxStreamsPerClient`.
const IDLE_PER_ROUTE: usize = 128;

impl HttpRoute {
    pub fn new(ctx: ProxyCtx, spec: HttpSpec) -> Arc<HttpRoute> {
        Arc::new(HttpRoute {
            ctx,
            spec,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Sender>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept-alive connection that can take a request now.
    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle();
        while let Some(s) = idle.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    /// Pools `sender`, whose last response has been read through. Its
    /// connection is usually ready for the next request at once; when
    /// hyper has not got that far yet, a task waits for it.
    fn keep(self: &Arc<Self>, mut sender: Sender) {
        if sender.is_ready() {
            return self.pool(sender);
        }
        let route = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                route.pool(sender);
            }
        });
    }

    fn pool(&self, sender: Sender) {
        let mut idle = self.idle();
        if idle.len() < IDLE_PER_ROUTE && !self.ctx.stop.is_cancelled() {
            idle.push(sender);
        }
    }
}

/// A response body from a kept-alive connection that hands the connection
/// back to its route's pool once the body has been read to its end (a body
/// dropped before that closes the connection: its rest is unread).
struct Pooling {
    body: Incoming,
    back: Option<(Sender, Arc<HttpRoute>)>,
}

impl Pooling {
    fn new(body: Incoming, sender: Sender, route: Arc<HttpRoute>) -> Pooling {
        let mut p = Pooling {
            body,
            back: Some((sender, route)),
        };
        // An empty body may never be polled.
        if p.body.is_end_stream() {
            p.release();
        }
        p
    }

    fn release(&mut self) {
        if let Some((sender, route)) = self.back.take() {
            route.keep(sender);
        }
    }
}

impl hyper::body::Body for Pooling {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// What the router needs of a route besides its identity.
pub(crate) trait Routed {
    /// `routeByHTTPUser`: the one basic-auth user it serves (empty = all).
    fn route_user(&self) -> &str;
}

impl Routed for HttpRoute {
    fn route_user(&self) -> &str {
        &self.spec.route_by_http_user
    }
}

/// Per name: (location prefix, proxy) pairs.
type ByName<R> = HashMap<String, Vec<(String, Arc<R>)>>;

/// Host → (location prefix, user → proxy). A (name, location, user)
/// triple belongs to one proxy at a time. Also the tcpmux port's router
/// (every route at location "/").
pub(crate) struct Routes<R> {
    map: Mutex<ByName<R>>,
}

impl<R> Default for Routes<R> {
    fn default() -> Self {
        Routes {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<R: Routed> Routes<R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByName<R>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims every (name, location) for `route` (and its
    /// `routeByHTTPUser`), or none; Err names the first pair taken.
    pub fn add(
        &self,
        names: &[String],
        locations: &[String],
        route: &Arc<R>,
    ) -> Result<(), String> {
        let mut map = self.lock();
        let names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        let user = route.route_user();
        for n in &names {
            let taken = map.get(n).into_iter().flatten();
            let same = |(l, r): &&(String, Arc<R>)| locations.contains(l) && r.route_user() == user;
            if let Some((l, _)) = taken.into_iter().find(same) {
                return Err(format!("{n} (location {l})"));
            }
        }
        for n in names {
            let entry = map.entry(n).or_default();
            for l in locations {
                entry.push((l.clone(), route.clone()));
            }
        }
        Ok(())
    }

    pub fn remove(&self, route: &Arc<R>) {
        let mut map = self.lock();
        map.retain(|_, v| {
            v.retain(|(_, r)| !Arc::ptr_eq(r, route));
            !v.is_empty()
        });
    }

    /// The proxy for `host`, `path` and the request's basic-auth `user`:
    /// the most specific name that has a matching location, there the
    /// longest location, and among those a proxy routed by this user
    /// (`routeByHTTPUser`) before one for everybody.
    pub fn lookup(&self, host: &str, path: &str, user: &str) -> Option<Arc<R>> {
        let map = self.lock();
        candidates(host).iter().find_map(|c| {
            map.get(c)?
                .iter()
                .filter(|(l, r)| {
                    let by = r.route_user();
                    path.starts_with(l.as_str()) && (by.is_empty() || by == user)
                })
                .max_by_key(|(l, r)| (l.len(), !r.route_user().is_empty()))
                .map(|(_, r)| r.clone())
        })
    }
}

/// What every request needs besides its route.
pub(crate) struct Vhost {
    server: Arc<Server>,
    not_found: Bytes,
    timeout: Duration,
}

impl Vhost {
    pub fn new(server: Arc<Server>, not_found: Bytes) -> Arc<Vhost> {
        let timeout = Duration::from_secs(server.config.vhost_http_timeout);
        Arc::new(Vhost {
            server,
            not_found,
            timeout,
        })
    }
}

pub(crate) async fn serve(vhost: Arc<Vhost>, listener: TcpListener, stop: CancellationToken) {
    super::accept_loop(listener, stop, "http", move |tcp, peer| {
        connection(vhost.clone(), tcp, peer)
    })
    .await
}

/// Serves the requests of one user connection.
pub(crate) async fn connection(vhost: Arc<Vhost>, tcp: TcpStream, peer: SocketAddr) {
    serve_users(tcp, peer, move |peer, local, req| {
        let vhost = vhost.clone();
        async move { handle(&vhost, peer, local, req).await }
    })
    .await
}

/// Bytes of a request head, about as sent.
fn head_size(req: &Request<Incoming>) -> usize {
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    // The request target as sent (origin form), without formatting it.
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let authority = req.uri().authority().map_or(0, |a| a.as_str().len());
    target + authority + headers
}

/// HTTP/1.1 (with upgrades) on one user connection, `handle(peer, local,
/// request)` answering each request; heads are bounded in size and time.
pub(crate) async fn serve_users<F, Fut>(tcp: TcpStream, peer: SocketAddr, handle: F)
where
    F: Fn(SocketAddr, SocketAddr, Request<Incoming>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    tcp.set_nodelay(true).ok();
    let local = tcp.local_addr().unwrap_or(peer);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        // hyper's read buffer bounds what a head can cost; this is the
        // stated limit users see.
        let answer = (head_size(&req) <= MAX_HEAD).then(|| handle(peer, local, req));
        async move {
            Ok::<_, Infallible>(match answer {
                Some(a) => a.await,
                None => {
                    let mut r = text(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "431 Request Header Fields Too Large\n",
                    );
                    // The rest of what it sent is not worth reading.
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    r
                }
            })
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        debug!("connection ended: {e}");
    }
}

async fn handle(
    vhost: &Vhost,
    peer: SocketAddr,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let user = basic_auth_user(req.headers().get(header::AUTHORIZATION)).unwrap_or_default();
    let Some(route) = vhost
        .server
        .http_routes
        .lookup(&host, req.uri().path(), &user)
    else {
        return page(StatusCode::NOT_FOUND, vhost.not_found.clone(), "text/html");
    };
    if !authorized(&route.spec, &req) {
        let mut r = text(StatusCode::UNAUTHORIZED, "401 Unauthorized\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Restricted\""),
        );
        return r;
    }
    forward(vhost, &route, peer, local, host, req).await
}

/// Basic auth, when the proxy asks for it.
fn authorized(spec: &HttpSpec, req: &Request<Incoming>) -> bool {
    basic_auth_ok(
        &spec.http_user,
        &spec.http_password,
        req.headers().get(header::AUTHORIZATION),
    )
}

/// The user name of a basic-auth header value.
pub(crate) fn basic_auth_user(given: Option<&HeaderValue>) -> Option<String> {
    let encoded = given?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.as_str(), |(u, _)| u)
            .to_owned(),
    )
}

/// Whether `given` (an `Authorization` or `Proxy-Authorization` value)
/// carries `user`:`password`; true when no user is asked for.
pub(crate) fn basic_auth_ok(user: &str, password: &str, given: Option<&HeaderValue>) -> bool {
    if user.is_empty() {
        return true;
    }
    let want = net::web::basic_auth(user, password);
    let want = want.trim_start_matches("Basic ");
    given
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|got| got.trim() == want)
}

async fn forward(
    vhost: &Vhost,
    route: &Arc<HttpRoute>,
    peer: SocketAddr,
    local: SocketAddr,
    host: String,
    mut req: Request<Incoming>,
) -> Response<Body> {
    prepare_request(&route.spec, peer, &host, req.headers_mut());
    let plain = !wants_upgrade(&req);
    // A kept-alive connection first; a request it did not take (it closed
    // meanwhile) goes on a fresh one.
    if plain {
        while let Some(mut sender) = route.take_idle() {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let route = route.clone();
                    return finish(&route, resp.map(|b| Pooling::new(b, sender, route.clone())));
                }
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => return text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
                },
            }
        }
    }
    let Ok(permit) = route.ctx.budget.permits.clone().try_acquire_owned() else {
        warn!(
            "client already has {} connections open (transport.maxStreamsPerClient)",
            route.ctx.budget.max
        );
        return text(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n");
    };
    let tunnel = match open_work(&route.ctx, peer, local).await {
        Ok(t) => t,
        Err(e) => {
            warn!("{e:#}");
            return text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
        }
    };
    let stop = route.ctx.stop.clone();
    let keep = plain.then(|| route.clone());
    let resp = relay_request(tunnel, req, permit, stop, Some(vhost.timeout), keep).await;
    finish(route, resp)
}

/// The proxy's response headers.
fn finish<B>(route: &HttpRoute, resp: Response<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let mut resp = resp.map(|b| b.boxed());
    for (k, v) in &route.spec.response_headers {
        set(resp.headers_mut(), k, v);
    }
    resp
}

/// Sends `req` to the local service over `tunnel` with hyper's client and
/// returns its answer (502 when it fails, 504 after `timeout` without a
/// response head). An upgrade both sides agree to (101, or 2xx to a
/// CONNECT) is spliced raw. `permit` is held while the tunnel is in use.
pub(crate) async fn relay_request(
    tunnel: Tunnel,
    mut req: Request<Incoming>,
    permit: OwnedSemaphorePermit,
    stop: CancellationToken,
    timeout: Option<Duration>,
    keep: Option<Arc<HttpRoute>>,
) -> Response<Body> {
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tunnel)).await
    {
        Ok(v) => v,
        Err(e) => {
            debug!("local service: {e}");
            return text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
        }
    };
    tokio::spawn(async move {
        let _permit = permit;
        tokio::select! {
            _ = stop.cancelled() => {}
            r = conn.with_upgrades() => if let Err(e) = r { debug!("local service connection: {e}") },
        }
    });
    let connect = req.method() == hyper::Method::CONNECT;
    let user_upgrade = (connect || wants_upgrade(&req)).then(|| hyper::upgrade::on(&mut req));
    let answer = sender.send_request(req);
    let answer = match timeout {
        Some(t) => tokio::time::timeout(t, answer).await,
        None => Ok(answer.await),
    };
    let mut resp = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            debug!("local service: {e}");
            return text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
        }
        Err(_) => return text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"),
    };
    let upgraded =
        resp.status() == StatusCode::SWITCHING_PROTOCOLS || (connect && resp.status().is_success());
    if let (true, Some(user)) = (upgraded, user_upgrade) {
        let backend = hyper::upgrade::on(&mut resp);
        tokio::spawn(splice_upgrade(user, backend));
    } else if let Some(route) = keep {
        return resp.map(|b| Pooling::new(b, sender, route).boxed());
    }
    resp.map(|b| b.boxed())
}

/// The forwarding headers and the proxy's own changes.
fn prepare_request(spec: &HttpSpec, peer: SocketAddr, host: &str, h: &mut hyper::HeaderMap) {
    let ip = peer.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    set(h, "X-Forwarded-For", &xff);
    set(h, "X-Real-IP", &ip);
    set(h, "X-Forwarded-Host", host);
    set(h, "X-Forwarded-Proto", "http");
    if !spec.host_header_rewrite.is_empty() {
        set(h, "Host", &spec.host_header_rewrite);
    }
    for (k, v) in &spec.request_headers {
        set(h, k, v);
    }
}

fn set(h: &mut hyper::HeaderMap, name: &str, value: &str) {
    match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
        (Ok(n), Ok(v)) => {
            h.insert(n, v);
        }
        _ => debug!("header {name:?} not set: not a valid name or value"),
    }
}

fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(header::UPGRADE)
}

/// Both sides agreed to switch protocols: carry the raw bytes both ways.
async fn splice_upgrade(user: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade) {
    let (Ok(user), Ok(backend)) = tokio::join!(user, backend) else {
        return debug!("upgrade did not complete");
    };
    let (mut u, mut b) = (TokioIo::new(user), TokioIo::new(backend));
    if let Err(e) = tokio::io::copy_bidirectional(&mut u, &mut b).await {
        debug!("upgraded connection ended: {e}");
    }
}

fn page(status: StatusCode, body: Bytes, kind: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    page(
        status,
        Bytes::from_static(body.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

/// The built-in page for unknown hosts.
pub(crate) const NOT_FOUND_PAGE: &str =
    "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\
<body><h1>404 Not Found</h1><p>No site is published under this name here.</p></body></html>\n";
