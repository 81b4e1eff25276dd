//! The HTTP virtual host port (`vhostHTTPPort`): hyper serves the users;
//! each request is routed by its host (the target's in absolute form, else
//! Host; case-insensitive, port ignored, wildcards) and the longest
//! matching location prefix, checked for basic auth, given the forwarding
//! headers and the proxy's header changes, and sent over a fresh tunnel
//! stream to the local web service with hyper's client. Bodies stream both
//! ways with hyper's backpressure (no request or response is held whole),
//! and `Upgrade` (WebSocket…) is carried through once both sides agree.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use net::stats::Metered;
use net::tunnel::Tunnel;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wire::message::HttpSpec;

use super::backends::{Pooling, Sender};
use super::timer::{ConnTimer, Deadline};
use super::BackendRef;
use super::{host_name, normalize, Names};
use crate::Server;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Time a user has to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of a first request looked at to place its connection (most
/// heads are far smaller; a larger one is served where it arrived).
pub const PEEK_HEAD: usize = 4096;
/// Most bytes of a request head; more gets 431 (hyper itself stops reading
/// a head at a few hundred KiB).
const MAX_HEAD: usize = 64 * 1024;

/// One http proxy as the router holds it.
pub(crate) struct HttpRoute {
    pub backend: BackendRef,
    pub spec: HttpSpec,
    /// The spec's header changes, parsed once.
    headers: HeaderChanges,
    /// Keep-alive connections to the local service (each over its own
    /// tunnel stream) waiting for the next request, at most [`IDLE_PER_ROUTE`].
    pub idle: Mutex<Vec<Sender>>,
}

/// Idle keep-alive connections kept per http proxy: each holds one stream
/// of the client's `maxStreamsPerClient`.
const IDLE_PER_ROUTE: usize = 128;

/// `hostHeaderRewrite`, `requestHeaders.set`, `responseHeaders.set` as
/// header names and values (the same every request).
struct HeaderChanges {
    host: Option<HeaderValue>,
    request: Vec<(HeaderName, HeaderValue)>,
    response: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderChanges {
    fn new(spec: &HttpSpec) -> HeaderChanges {
        let parse = |list: &[(String, String)]| {
            list.iter()
                .filter_map(
                    |(k, v)| match (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                        (Ok(k), Ok(v)) => Some((k, v)),
                        _ => {
                            warn!("header {k:?} is not set: not a valid header name or value");
                            None
                        }
                    },
                )
                .collect()
        };
        let host = &spec.host_header_rewrite;
        let host = match HeaderValue::try_from(host) {
            _ if host.is_empty() => None,
            Ok(v) => Some(v),
            Err(_) => {
                warn!("hostHeaderRewrite {host:?} is not used: not a valid header value");
                None
            }
        };
        HeaderChanges {
            host,
            request: parse(&spec.request_headers),
            response: parse(&spec.response_headers),
        }
    }
}

impl HttpRoute {
    pub fn new(backend: BackendRef, spec: HttpSpec) -> Arc<HttpRoute> {
        Arc::new(HttpRoute {
            backend,
            headers: HeaderChanges::new(&spec),
            spec,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Sender>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept-alive connection that can take a request now.
    pub(crate) fn take_idle(&self) -> Option<Sender> {
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
    pub(crate) fn keep(self: &Arc<Self>, mut sender: Sender) {
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
        if idle.len() < IDLE_PER_ROUTE && !self.backend.stop().is_cancelled() {
            idle.push(sender);
        }
    }
}

/// What the router needs of a route besides its identity.
pub trait Routed {
    /// `routeByHTTPUser`: the one basic-auth user it serves (empty = all).
    fn route_user(&self) -> &str;
}

impl Routed for HttpRoute {
    fn route_user(&self) -> &str {
        &self.spec.route_by_http_user
    }
}

/// Per name: (location prefix, proxy) pairs.
type Located<R> = Vec<(String, Arc<R>)>;

/// Host → (location prefix, user → proxy). A (name, location, user)
/// triple belongs to one proxy at a time. Also the tcpmux port's router
/// (every route at location "/").
pub struct Routes<R> {
    names: Names<Located<R>>,
}

impl<R> Default for Routes<R> {
    fn default() -> Self {
        Routes {
            names: Names::new(),
        }
    }
}

impl<R: Routed> Routes<R> {
    /// Claims every (name, location) for `route` (and its
    /// `routeByHTTPUser`), or none; Err names the first pair taken.
    pub fn add(
        &self,
        names: &[String],
        locations: &[String],
        route: &Arc<R>,
    ) -> Result<(), String> {
        let names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        let user = route.route_user();
        self.names.change(|table| {
            for n in &names {
                let taken = table.get(n).into_iter().flatten();
                let same =
                    |(l, r): &&(String, Arc<R>)| locations.contains(l) && r.route_user() == user;
                if let Some((l, _)) = taken.into_iter().find(same) {
                    return Err(format!("{n} (location {l})"));
                }
            }
            for n in &names {
                let entry = table.entry(n);
                for l in locations {
                    entry.push((l.clone(), route.clone()));
                }
            }
            Ok(())
        })
    }

    pub fn remove(&self, route: &Arc<R>) {
        self.names.change(|table| {
            table.retain(|v| {
                v.retain(|(_, r)| !Arc::ptr_eq(r, route));
                !v.is_empty()
            })
        })
    }

    /// The proxy for `host` (as a user sent it; None when it is not a
    /// host name), `path` and the request's basic-auth `user`: the most
    /// specific name that has a matching location, there the longest
    /// location, and among those a proxy routed by this user
    /// (`routeByHTTPUser`) before one for everybody.
    pub fn lookup(&self, host: &str, path: &str, user: &str) -> Option<Arc<R>> {
        self.lookup_name(&host_name(host)?, path, user)
    }

    /// [`Routes::lookup`] for a name [`host_name`] already gave.
    pub fn lookup_name(&self, name: &str, path: &str, user: &str) -> Option<Arc<R>> {
        self.names.first_match(name, |located| {
            located
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
    let gate = net::gate::Gate::new(&vhost.server.public, super::PER_ADDRESS);
    super::accept_loop(listener, stop, "http", gate, move |tcp, peer| {
        place(vhost.clone(), tcp, peer)
    })
    .await
}

/// Serves a user connection on the worker thread of the client its first
/// request is for (`net::workers`: one client's work on one thread), or
/// here when that is not known: a head that is not in the first bytes, a
/// host nobody serves. Later requests on the connection are routed one by
/// one as always, wherever their clients run.
pub(crate) async fn place(vhost: Arc<Vhost>, tcp: TcpStream, peer: SocketAddr) {
    let routes = vhost.server.vhosts.http.clone();
    let home = move |first: &FirstRequest| {
        let path = Some(first.target.as_str()).filter(|p| p.starts_with('/'));
        let route = routes.lookup(first.host.as_deref()?, path.unwrap_or("/"), "")?;
        Some(route.backend.home().clone())
    };
    place_by_first_request(tcp, home, move |tcp, left| {
        connection(vhost, tcp, peer, left)
    })
    .await
}

/// The request at the head of a connection, as far as placing it needs.
pub struct FirstRequest {
    /// As sent: a path, or `host:port` for a CONNECT.
    pub target: String,
    pub host: Option<String>,
}

/// Runs `serve` with `tcp` on the worker `home_of` picks for the first
/// request (here when it picks none, or the head cannot be read soon
/// enough); a connection that sends nothing within [`HEADER_TIMEOUT`] is
/// closed, as hyper would close it.
pub(crate) async fn place_by_first_request<H, F, Fut>(tcp: TcpStream, home_of: H, serve: F)
where
    H: FnOnce(&FirstRequest) -> Option<tokio::runtime::Handle>,
    F: FnOnce(TcpStream, Duration) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let began = tokio::time::Instant::now();
    let first = match tokio::time::timeout(HEADER_TIMEOUT, first_request(&tcp)).await {
        Ok(first) => first,
        Err(_) => return debug!("no request within {HEADER_TIMEOUT:?}; closed"),
    };
    // One deadline for the first head, the wait for it included (hyper's
    // own clock starts afresh).
    let left = HEADER_TIMEOUT
        .saturating_sub(began.elapsed())
        .max(Duration::from_secs(1));
    let serve = move |tcp| serve(tcp, left);
    match first.as_ref().and_then(home_of) {
        Some(home) => net::workers::move_to(home, tcp, serve).await,
        None => serve(tcp).await,
    }
}

/// The request at the head of `tcp`, read without taking it off the
/// socket; None if it is not a whole head within the first [`PEEK_HEAD`]
/// bytes and a few milliseconds, or not HTTP (hyper then answers it as
/// usual).
async fn first_request(tcp: &TcpStream) -> Option<FirstRequest> {
    let mut buf = vec![0u8; PEEK_HEAD];
    let mut delay = Duration::from_millis(1);
    for _ in 0..5 {
        let n = tcp.peek(&mut buf).await.ok()?;
        match read_head(&buf[..n]) {
            Head::Whole(first) => return Some(first),
            Head::Partial if n > 0 && n < buf.len() => {}
            _ => return None,
        }
        // peek returns at once while anything is buffered: back off.
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    None
}

/// What the bytes at the head of a connection are.
pub enum Head {
    /// A whole request head: its request.
    Whole(FirstRequest),
    /// The start of one (or nothing yet).
    Partial,
    /// Not HTTP.
    NotHttp,
}

/// The first request head in `bytes`, as [`first_request`] reads what it
/// peeked.
pub fn read_head(bytes: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {
            let host = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::to_owned);
            match req.path {
                Some(target) => Head::Whole(FirstRequest {
                    target: target.to_owned(),
                    host,
                }),
                None => Head::NotHttp,
            }
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(_) => Head::NotHttp,
    }
}

/// Serves the requests of one user connection.
pub(crate) async fn connection(
    vhost: Arc<Vhost>,
    tcp: TcpStream,
    peer: SocketAddr,
    head_time: Duration,
) {
    let timer = ConnTimer::new();
    let own = timer.clone();
    serve_users(tcp, peer, timer, head_time, move |peer, local, req| {
        let (vhost, timer) = (vhost.clone(), own.clone());
        async move { handle(&vhost, &timer, peer, local, req).await }
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
/// request)` answering each request; heads are bounded in size and time
/// (on `timer`, which must be polled by this connection's task only).
pub(crate) async fn serve_users<F, Fut>(
    tcp: TcpStream,
    peer: SocketAddr,
    timer: ConnTimer,
    head_time: Duration,
    handle: F,
) where
    F: Fn(SocketAddr, SocketAddr, Request<Incoming>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    tcp.set_nodelay(true).ok();
    let local = tcp.local_addr().unwrap_or(peer);
    serve_io(tcp, peer, local, timer, head_time, handle).await
}

/// [`serve_users`] on any byte stream, which came in on `local`.
pub async fn serve_io<I, F, Fut>(
    io: I,
    peer: SocketAddr,
    local: SocketAddr,
    timer: ConnTimer,
    head_time: Duration,
    handle: F,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(SocketAddr, SocketAddr, Request<Incoming>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
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
        .timer(timer)
        .header_read_timeout(head_time)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        debug!("connection ended: {e}");
    }
}

async fn handle(
    vhost: &Vhost,
    timer: &ConnTimer,
    peer: SocketAddr,
    local: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let host = request_host(&mut req);
    let Some(name) = host_name(&host) else {
        return text(StatusCode::BAD_REQUEST, "400 not a host name\n");
    };
    let user = basic_auth_user(req.headers().get(header::AUTHORIZATION)).unwrap_or_default();
    let path = routing_path(req.uri().path());
    let Some(route) = vhost.server.vhosts.http.lookup_name(&name, &path, &user) else {
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
    forward(vhost, timer, &route, peer, local, host, req).await
}

/// The host a request is for. A target in absolute form (`GET
/// http://b.example/ HTTP/1.1`) names it, whatever `Host` says (RFC 9112
/// §3.2.2; Go's server, and so frp, does the same); the request then goes
/// on in origin form with that `Host`, so the service sees the name it was
/// routed by. A CONNECT target names it too.
fn request_host(req: &mut Request<Incoming>) -> String {
    let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) else {
        return req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default();
    };
    if req.uri().scheme().is_some() {
        let origin = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<hyper::Uri>();
        if let (Ok(origin), Ok(value)) = (origin, HeaderValue::try_from(authority.as_str())) {
            *req.uri_mut() = origin;
            req.headers_mut().insert(header::HOST, value);
        }
    }
    authority
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
pub fn basic_auth_user(given: Option<&HeaderValue>) -> Option<String> {
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

/// The path as a web service will understand it, for choosing a
/// `locations` entry: percent-decoded, repeated slashes merged, `.` and
/// `..` segments resolved (RFC 3986's remove_dot_segments). Otherwise
/// `/%61dmin`, `//admin` or `/x/../admin` would miss the `/admin`
/// location — and its credentials — and reach the proxy for `/`. The
/// request itself is forwarded as sent. Case is kept, as frp keeps it.
pub fn routing_path(raw: &str) -> String {
    let decoded = percent_decode(raw.as_bytes());
    // Some services (IIS, anything on Windows paths) read `\` as `/`.
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = text.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        // A path ending in a segment that names a folder keeps its slash.
        if i == last && matches!(*seg, "" | "." | "..") && !out.is_empty() {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

pub(crate) fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
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
        .is_some_and(|got| net::web::same_bytes(got.trim().as_bytes(), want.as_bytes()))
}

async fn forward(
    vhost: &Vhost,
    timer: &ConnTimer,
    route: &Arc<HttpRoute>,
    peer: SocketAddr,
    local: SocketAddr,
    host: String,
    mut req: Request<Incoming>,
) -> Response<Body> {
    prepare_request(&route.headers, peer, &host, req.headers_mut());
    let plain = !wants_upgrade(&req);
    // A kept-alive connection first; a request it did not take (it closed
    // meanwhile) goes on a fresh one.
    if plain {
        while let Some(mut sender) = route.take_idle() {
            let deadline = timer.after(vhost.timeout);
            match within(deadline, sender.try_send_request(req)).await {
                Ok(Ok(resp)) => {
                    return finish(route, resp.map(|b| Pooling::new(b, sender, route.clone())));
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(back) => req = back,
                    None => {
                        debug!("local service: {}", e.error());
                        return text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
                    }
                },
                Err(_) => return text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"),
            }
        }
    }
    let permit = match route.backend.permit() {
        Ok(p) => p,
        Err(max) => {
            warn!("client already has {max} connections open (transport.maxStreamsPerClient)");
            return text(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n");
        }
    };
    let tunnel = match route.backend.open(peer, local).await {
        Ok(t) => t,
        Err(e) => {
            warn!("{e:#}");
            return text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
        }
    };
    let keep = plain.then(|| route.clone());
    let deadline = timer.after(vhost.timeout);
    let hold = Hold::new(&*route.backend, permit);
    let resp = relay_request(tunnel, req, hold, Some(deadline), keep).await;
    finish(route, resp)
}

/// What a request's tunnel keeps for as long as it is in use, an upgraded
/// connection's whole life included: its stream permit (maxStreamsPerClient),
/// the proxy's stop, its task tracker (so a closing proxy waits for it) and
/// its meters (on the tunnel itself).
pub(crate) struct Hold {
    permit: Arc<OwnedSemaphorePermit>,
    stop: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl Hold {
    pub fn new(backend: &dyn super::Backend, permit: OwnedSemaphorePermit) -> Hold {
        Hold {
            permit: Arc::new(permit),
            stop: backend.stop().clone(),
            tasks: backend.tasks().clone(),
        }
    }

    /// Runs `work` on the proxy's tracker, holding the permit, until it
    /// ends or the proxy stops.
    pub fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (permit, stop) = (self.permit.clone(), self.stop.clone());
        self.tasks.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = stop.cancelled() => {}
                () = work => {}
            }
        });
    }
}

/// The proxy's response headers.
fn finish<B>(route: &HttpRoute, resp: Response<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let mut resp = resp.map(|b| b.boxed());
    for (k, v) in &route.headers.response {
        resp.headers_mut().insert(k, v.clone());
    }
    resp
}

/// Sends `req` to the local service over `tunnel` with hyper's client and
/// returns its answer (502 when it fails, 504 after `timeout` without a
/// response head). An upgrade both sides agree to (101, or 2xx to a
/// CONNECT) is spliced raw. `permit` is held while the tunnel is in use.
/// With `keep`, the connection goes to that proxy's pool once the response
/// has been read through.
pub(crate) async fn relay_request(
    tunnel: Metered<Tunnel>,
    mut req: Request<Incoming>,
    hold: Hold,
    timeout: Option<Deadline>,
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
    hold.spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!("local service connection: {e}")
        }
    });
    let connect = req.method() == hyper::Method::CONNECT;
    let user_upgrade = (connect || wants_upgrade(&req)).then(|| hyper::upgrade::on(&mut req));
    let answer = sender.send_request(req);
    let answer = match timeout {
        Some(t) => within(t, answer).await,
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
        hold.spawn(splice_upgrade(user, backend));
    } else if let Some(route) = keep {
        return resp.map(|b| Pooling::new(b, sender, route).boxed());
    }
    resp.map(|b| b.boxed())
}

/// `work`'s output, or Err when `deadline` comes first.
async fn within<F: std::future::Future>(deadline: Deadline, work: F) -> Result<F::Output, ()> {
    tokio::select! {
        biased;
        out = work => Ok(out),
        () = deadline => Err(()),
    }
}

/// The forwarding headers and the proxy's own changes.
/// The headers a `Connection` header names are for this hop only (RFC
/// 9110 7.6.1): dropped, and `Connection` keeps only what the next hop
/// needs (`upgrade` for WebSockets, `close`, `keep-alive`). Otherwise a
/// user could list `X-Real-IP` and have the next proxy drop ours.
fn drop_hop_by_hop(h: &mut hyper::HeaderMap) {
    let listed: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if listed.is_empty() {
        return;
    }
    let kept = ["upgrade", "close", "keep-alive"];
    for name in listed.iter().filter(|t| !kept.contains(&t.as_str())) {
        // Never what routing and forwarding stand on.
        if name != "host" {
            h.remove(name.as_str());
        }
    }
    let left: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .filter(|t| kept.contains(t))
        .collect();
    match HeaderValue::try_from(left.join(", ")) {
        Ok(v) if !left.is_empty() => {
            h.insert(header::CONNECTION, v);
        }
        _ => {
            h.remove(header::CONNECTION);
        }
    }
}

fn prepare_request(
    changes: &HeaderChanges,
    peer: SocketAddr,
    host: &str,
    h: &mut hyper::HeaderMap,
) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    static XRI: HeaderName = HeaderName::from_static("x-real-ip");
    static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    drop_hop_by_hop(h);
    // One Host: the one the request was routed by (hyper keeps repeats).
    if let Some(first) = h.get(header::HOST).cloned() {
        h.insert(header::HOST, first);
    }
    let ip = peer.ip().to_string();
    let xff = match h.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::try_from(format!("{prev}, {ip}")),
        None => HeaderValue::try_from(ip.as_str()),
    };
    // An address always makes a valid value; a Host that did not would
    // not have been routed.
    if let Ok(v) = xff {
        h.insert(&XFF, v);
    }
    if let Ok(v) = HeaderValue::try_from(ip) {
        h.insert(&XRI, v);
    }
    if let Ok(v) = HeaderValue::try_from(host) {
        h.insert(&XFH, v);
    }
    h.insert(&XFP, HeaderValue::from_static("http"));
    if let Some(v) = &changes.host {
        h.insert(header::HOST, v.clone());
    }
    for (k, v) in &changes.request {
        h.insert(k, v.clone());
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

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_repeated_hosts_stop_here() {
        let mut h = hyper::HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("web.test"));
        h.append(header::HOST, HeaderValue::from_static("evil.test"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, X-Real-IP, x-secret"),
        );
        h.append(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.append("x-secret", HeaderValue::from_static("s"));
        let changes = HeaderChanges::new(&HttpSpec {
            custom_domains: vec!["web.test".into()],
            subdomain: String::new(),
            locations: Vec::new(),
            http_user: String::new(),
            http_password: String::new(),
            host_header_rewrite: String::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            route_by_http_user: String::new(),
        });
        prepare_request(
            &changes,
            "10.0.0.9:5000".parse().expect("addr"),
            "web.test",
            &mut h,
        );
        let all = |n: &str| {
            h.get_all(n)
                .iter()
                .map(|v| v.to_str().expect("text").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("host"), ["web.test"]);
        assert_eq!(all("connection"), ["upgrade"]);
        assert_eq!(all("upgrade"), ["websocket"]);
        assert!(all("x-secret").is_empty());
        assert_eq!(all("x-real-ip"), ["10.0.0.9"]);
    }

    #[test]
    fn locations_see_the_path_a_service_would() {
        for raw in [
            "/admin",
            "/%61dmin",
            "//admin",
            "/./admin",
            "/x/../admin",
            "/%2e/admin",
            "/a/%2e%2e/admin",
            "/../admin",
            "/\\admin",
            "/%5cadmin",
        ] {
            assert_eq!(routing_path(raw), "/admin", "{raw}");
        }
        assert_eq!(routing_path("/admin/"), "/admin/");
        assert_eq!(routing_path("/admin/x/.."), "/admin/");
        assert_eq!(routing_path("/"), "/");
        assert_eq!(routing_path(""), "/");
        assert_eq!(routing_path("/ADMIN"), "/ADMIN");
        assert_eq!(routing_path("/%zz/%4"), "/%zz/%4");
    }
    use tokio::io::AsyncWriteExt;

    /// What `first_request` makes of `sent` (the connection stays open):
    /// its target and Host.
    async fn first_of(sent: &[u8]) -> Option<(String, Option<String>)> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut user = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (tcp, _) = l.accept().await.expect("accept");
        user.write_all(sent).await.expect("write");
        let first = first_request(&tcp).await;
        // Peeked, not taken: hyper still gets the whole request.
        let mut all = vec![0u8; sent.len()];
        let n = tcp.peek(&mut all).await.expect("peek");
        assert_eq!(&all[..n], sent);
        first.map(|f| (f.target, f.host))
    }

    #[tokio::test]
    async fn the_first_request_is_read_without_taking_it() {
        let got = first_of(b"GET /a/b?c HTTP/1.1\r\nhOsT: Shop.Example:8080\r\n\r\n").await;
        assert_eq!(
            got,
            Some(("/a/b?c".into(), Some("Shop.Example:8080".into())))
        );
        // A CONNECT (the tcpmux port) is placed by its target.
        let got = first_of(b"CONNECT db.example:5432 HTTP/1.1\r\n\r\n").await;
        assert_eq!(got, Some(("db.example:5432".into(), None)));
        // Not whole yet (a few ms of backoff, then given up), not HTTP:
        // served where they arrived.
        assert_eq!(first_of(b"GET / HTTP/1.1\r\nHost: a.exa").await, None);
        assert_eq!(first_of(b"\x16\x03\x01garbage\r\n\r\n").await, None);
    }
}
