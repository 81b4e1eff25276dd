//! Arbitrary bytes, in arbitrary read sizes, as a user connection to the
//! tcpmux port: hyper's HTTP/1.1 server as frps sets it up (`serve_io`:
//! head size and time bounds, upgrades) over an in-memory pipe, each
//! request answered by frps's CONNECT routing (`tcpmux::connect_route`:
//! method, target host, `host_name`, `Proxy-Authorization` user, lookup)
//! against a fixed table; a routed CONNECT is answered 200 and the rest of
//! the connection read raw, as the relay would. The clock is paused, so
//! timeouts pass as soon as nothing else can happen.
//!
//! Properties: no panic; every answer agrees with a plain model of the
//! routing; what goes back to the user is a sequence of whole HTTP/1.1
//! responses (nothing after a 200 to a CONNECT); the connection ends soon
//! after the user's side closes.
#![no_main]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use frps::fuzzing::{basic_auth_user, connect_route, serve_io, text, Body, ConnTimer};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Statuses frps or hyper may answer a tcpmux user with.
const ANSWERS: &[u16] = &[200, 400, 404, 405, 408, 413, 414, 431, 500, 501, 505];

fn answer(
    routes: &frps::fuzzing::Routes<common::Route>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let got = connect_route(routes, &req);
    // The model: only CONNECT, to a host name, routed by name and user.
    let want = if req.method() != Method::CONNECT {
        Err(StatusCode::METHOD_NOT_ALLOWED)
    } else {
        let host = req
            .uri()
            .authority()
            .map(|a| a.host().to_owned())
            .unwrap_or_default();
        let user =
            basic_auth_user(req.headers().get(header::PROXY_AUTHORIZATION)).unwrap_or_default();
        match common::check_name(&host) {
            None => Err(StatusCode::BAD_REQUEST),
            Some(n) => common::model(common::TCPMUX, &n, "/", &user).ok_or(StatusCode::NOT_FOUND),
        }
    };
    let got_id = got.as_ref().map(|r| r.id).map_err(|(status, _)| *status);
    assert_eq!(got_id, want, "{} {}", req.method(), req.uri());
    match got {
        Err((status, why)) => text(status, why),
        Ok(_) => {
            // As the relay: take the connection once hyper gives it up.
            let user = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(u) = user.await {
                    let mut u = TokioIo::new(u);
                    let mut sink = [0u8; 4096];
                    while let Ok(n) = u.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
            });
            Response::new(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )
        }
    }
}

/// What went back to the user: whole responses, one after another (to
/// the requests that reached frps, `methods`, then perhaps hyper's own
/// answer to a bad request); after a 200 to a CONNECT (the tunnel) nothing
/// more.
fn check_answers(mut out: &[u8], methods: &[Method]) {
    let mut i = 0;
    while !out.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(out) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "not a whole response: {other:?} in {:?}",
                String::from_utf8_lossy(out)
            ),
        };
        let code = resp.code.expect("a status");
        assert!(ANSWERS.contains(&code), "status {code}");
        let len = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| {
                std::str::from_utf8(h.value)
                    .expect("ascii")
                    .parse::<usize>()
                    .expect("a length")
            });
        if code == 200 {
            assert_eq!(len.unwrap_or(0), 0, "a body after a 200 to a CONNECT");
            assert_eq!(out.len(), n, "bytes after a 200 to a CONNECT");
            return;
        }
        let len = match methods.get(i) {
            Some(&Method::HEAD) => 0,
            _ => len.expect("answers say their length"),
        };
        assert!(out.len() >= n + len, "a body cut short");
        out = &out[n + len..];
        i += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, wire)) = data.split_first() else {
        return;
    };
    let routes = Arc::new(common::routes(common::TCPMUX));
    let methods = Arc::new(Mutex::new(Vec::new()));
    let seen = methods.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (mut user, ours) = tokio::io::duplex(1 << 16);
        let peer: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        let local: SocketAddr = "192.0.2.1:5002".parse().expect("addr");
        let server = tokio::spawn(serve_io(
            ours,
            peer,
            local,
            ConnTimer::new(),
            Duration::from_secs(30),
            move |_, _, req| {
                let routes = routes.clone();
                seen.lock().expect("lock").push(req.method().clone());
                async move { answer(&routes, req) }
            },
        ));
        let cut = 1 + usize::from(knobs) * 17;
        let (mut r, mut w) = tokio::io::split(&mut user);
        let feed = async {
            for piece in wire.chunks(cut) {
                if w.write_all(piece).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let _ = w.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out).await;
            out
        };
        let done =
            tokio::time::timeout(Duration::from_secs(120), async { tokio::join!(feed, read) })
                .await;
        let ((), out) = done.expect("the connection ends once the user's side has closed");
        check_answers(&out, &methods.lock().expect("lock"));
        let ended = tokio::time::timeout(Duration::from_secs(120), server).await;
        assert!(
            ended.expect("the server task ends").is_ok(),
            "the server task panicked"
        );
    });
});
