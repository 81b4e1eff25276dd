//! The first bytes of a connection to the HTTP virtual host port (or to a
//! shared bindPort), as frps reads them before hyper takes over: the head
//! peek (`read_head`), the Host it names (`host_name`), the path a
//! location is chosen by (`routing_path`), the basic-auth user
//! (`basic_auth_user`) and the route lookup, against a fixed table of
//! routes and a plain model of the lookup. Also the shared port's
//! first-bytes classifier (`net::transport::classify`).
//!
//! Properties: a head read from a prefix of the bytes agrees with the
//! whole (peeking again as more arrives never changes its mind); a known
//! method's head is classified as HTTP; accepted names are within RFC
//! 1123's lengths, lower case, without a trailing dot; routing paths start
//! with `/` and have no `.`/`..` segments, `//` or `\`; lookups agree with
//! the model.
#![no_main]

mod common;

use frps::fuzzing::{
    basic_auth_user, read_head, routing_path, FirstRequest, Head, Routes, PEEK_HEAD,
};
use hyper::header::HeaderValue;
use libfuzzer_sys::fuzz_target;
use net::transport::{classify, FirstBytes};
use std::sync::OnceLock;

fn table() -> &'static Routes<common::Route> {
    static ROUTES: OnceLock<Routes<common::Route>> = OnceLock::new();
    ROUTES.get_or_init(|| common::routes(common::HTTP))
}

fn same(a: &FirstRequest, b: &FirstRequest) -> bool {
    a.target == b.target && a.host == b.host
}

/// Peeking sees the head grow: what a prefix says must not contradict
/// what the whole says.
fn prefixes_agree(bytes: &[u8], whole: &Head) {
    let step = (bytes.len() / 64).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        match (read_head(&bytes[..cut]), whole) {
            (Head::Partial, _) => {}
            (Head::Whole(a), Head::Whole(b)) => assert!(same(&a, b), "cut at {cut}"),
            (Head::Whole(_), _) => panic!("a whole head at {cut} bytes, but not in all of them"),
            (Head::NotHttp, Head::NotHttp) => {}
            (Head::NotHttp, _) => panic!("not HTTP at {cut} bytes, but HTTP in all of them"),
        }
    }
}

fn check_path(raw: &str) -> String {
    let p = routing_path(raw);
    assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
    assert!(!p.contains("//"), "{raw:?} -> {p:?}");
    assert!(!p.contains('\\'), "{raw:?} -> {p:?}");
    for seg in p.split('/') {
        assert!(seg != "." && seg != "..", "{raw:?} -> {p:?}");
    }
    // Nothing left to decode: routing it again changes nothing.
    if !p.contains('%') {
        assert_eq!(routing_path(&p), p, "{raw:?}");
    }
    p
}

/// Routes `host`, `path` and `user` as the virtual host does and checks
/// the answer against the model.
fn route(host: &str, path: &str, user: &str) {
    let routes = table();
    let found = routes.lookup(host, path, user).map(|r| r.id);
    let want = common::check_name(host).and_then(|n| {
        assert_eq!(
            routes.lookup_name(&n, path, user).map(|r| r.id),
            found,
            "lookup by the checked name"
        );
        common::model(common::HTTP, &n, path, user)
    });
    assert_eq!(found, want, "host {host:?} path {path:?} user {user:?}");
}

/// The `Authorization` value of the head, as hyper would hand it over.
fn authorization(bytes: &[u8]) -> Option<HeaderValue> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(bytes).ok()?;
    let h = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))?;
    HeaderValue::from_bytes(h.value).ok()
}

fn user_of(v: Option<&HeaderValue>) -> String {
    let user = basic_auth_user(v).unwrap_or_default();
    assert!(!user.contains(':'), "{user:?}");
    user
}

const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
];

fuzz_target!(|data: &[u8]| {
    // What one peek can see.
    let peeked = &data[..data.len().min(PEEK_HEAD)];
    let head = read_head(peeked);
    prefixes_agree(peeked, &head);
    if let Head::Whole(first) = &head {
        if METHODS.iter().any(|m| peeked.starts_with(m)) {
            let class = classify(&peeked[..4]);
            assert!(matches!(class, FirstBytes::Http), "{class:?}");
        }
        let user = user_of(authorization(peeked).as_ref());
        // Placing the connection: the raw target when it is a path.
        let raw = Some(first.target.as_str()).filter(|p| p.starts_with('/'));
        if let Some(host) = &first.host {
            route(host, raw.unwrap_or("/"), "");
            route(host, &check_path(&first.target), &user);
        }
        // A CONNECT names its host in the target (the tcpmux port).
        route(&first.target, "/", &user);
    }
    // The same parts on arbitrary text: host, path and a basic-auth
    // credential, one a line.
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or("");
    let path = lines.next().unwrap_or("");
    let cred = lines.next().unwrap_or("");
    let user = match HeaderValue::from_str(&format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cred)
    )) {
        Ok(v) => {
            let user = user_of(Some(&v));
            let want = cred.split_once(':').map_or(cred, |(u, _)| u);
            assert_eq!(user, want, "basic auth of {cred:?}");
            user
        }
        Err(_) => String::new(),
    };
    let path = check_path(path);
    route(host, &path, &user);
});
