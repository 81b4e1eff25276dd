//! The tcpmux port (`tcpmuxHTTPConnectPort`): each connection opens with an
//! HTTP `CONNECT host:port`, answered by hyper; the host picks the
//! `type = "tcpmux"` proxy, `Proxy-Authorization` is checked when the proxy
//! asks for it, and after `200` the connection is carried raw to the local
//! service. With `tcpmuxPassthrough` the CONNECT itself goes to the local
//! service (an HTTP proxy there) and its answer comes back.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use wire::message::TcpmuxSpec;

use super::http::{text, Body, Routed};
use super::BackendRef;
use crate::Server;

/// One tcpmux proxy as the router holds it.
pub(crate) struct TcpmuxRoute {
    pub backend: BackendRef,
    pub spec: TcpmuxSpec,
}

impl Routed for TcpmuxRoute {
    fn route_user(&self) -> &str {
        &self.spec.route_by_http_user
    }
}

/// The http router, every route at location "/".
pub(crate) type Routes = super::http::Routes<TcpmuxRoute>;

pub(crate) async fn serve(server: Arc<Server>, listener: TcpListener, stop: CancellationToken) {
    let gate = net::gate::Gate::new(&server.public, super::PER_ADDRESS);
    super::accept_loop(listener, stop, "tcpmux", gate, move |tcp, peer| {
        place(server.clone(), tcp, peer)
    })
    .await
}

/// Serves a user connection on the worker thread of the client its
/// CONNECT is for, as the http port does (`http::place`): the relay after
/// `200` runs there for the connection's whole life.
async fn place(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr) {
    let routes = server.vhosts.tcpmux.clone();
    let home = move |first: &super::http::FirstRequest| {
        let route = routes.lookup(&first.target, "/", "")?;
        Some(route.backend.home().clone())
    };
    let serve = move |tcp, left| connection(server, tcp, peer, left);
    super::http::place_by_first_request(tcp, home, serve).await
}

async fn connection(
    server: Arc<Server>,
    tcp: TcpStream,
    peer: SocketAddr,
    left: std::time::Duration,
) {
    let timer = super::timer::ConnTimer::new();
    super::http::serve_users(tcp, peer, timer, left, move |peer, local, req| {
        let server = server.clone();
        async move { handle(&server, peer, local, req).await }
    })
    .await
}

async fn handle(
    server: &Server,
    peer: SocketAddr,
    local: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let route = match connect_route(&server.vhosts.tcpmux, &req) {
        Ok(route) => route,
        Err((status, why)) => return text(status, why),
    };
    if !authorized(&route.spec, &req) {
        let mut r = text(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "407 Proxy Authentication Required\n",
        );
        r.headers_mut().insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Restricted\""),
        );
        return r;
    }
    let Ok(permit) = route.backend.permit() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n");
    };
    let tunnel = match route.backend.open(peer, local).await {
        Ok(t) => t,
        Err(e) => {
            debug!("{e:#}");
            return text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
        }
    };
    let hold = super::http::Hold::new(&*route.backend, permit);
    if server.config.tcpmux_passthrough {
        return super::http::relay_request(tunnel, req, hold, None, None).await;
    }
    let user = hyper::upgrade::on(&mut req);
    hold.spawn(async move {
        let Ok(user) = user.await else {
            return debug!("CONNECT was not followed through");
        };
        let (mut u, mut t) = (TokioIo::new(user), tunnel);
        if let Err(e) = tokio::io::copy_bidirectional(&mut u, &mut t).await {
            debug!("tcpmux connection ended: {e}")
        }
    });
    Response::new(Empty::new().map_err(|never| match never {}).boxed())
}

/// The route in `routes` that a user's CONNECT asks for (by its target's
/// host and its `Proxy-Authorization` user), or the status and text that
/// refuse it: 405 to another method, 400 to a target that is not a host
/// name, 404 to one no proxy serves.
pub fn connect_route<R: Routed, B>(
    routes: &super::http::Routes<R>,
    req: &Request<B>,
) -> Result<Arc<R>, (StatusCode, &'static str)> {
    if req.method() != Method::CONNECT {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "405 only CONNECT is served here\n",
        ));
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .unwrap_or_default();
    let Some(name) = super::host_name(&host) else {
        return Err((StatusCode::BAD_REQUEST, "400 not a host name\n"));
    };
    let user = super::http::basic_auth_user(req.headers().get(header::PROXY_AUTHORIZATION))
        .unwrap_or_default();
    routes
        .lookup_name(&name, "/", &user)
        .ok_or((StatusCode::NOT_FOUND, "404 no tcpmux proxy for this host\n"))
}

fn authorized(spec: &TcpmuxSpec, req: &Request<Incoming>) -> bool {
    super::http::basic_auth_ok(
        &spec.http_user,
        &spec.http_password,
        req.headers().get(header::PROXY_AUTHORIZATION),
    )
}
