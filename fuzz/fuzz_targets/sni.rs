//! The first bytes of a connection to the HTTPS virtual host port (or to a
//! shared bindPort), as frps peeks them: the ClientHello parser
//! (`https::parse`, rustls's `Acceptor` underneath) and the route its
//! server name (SNI) picks, against a fixed table and a plain model.
//!
//! Properties: what a prefix of the bytes says agrees with the whole (a
//! hello arriving in pieces is read as if it came at once: never refused
//! early, never a different name); a server name is printable ASCII within
//! RFC 1123's lengths; routing agrees with the model.
#![no_main]

mod common;

use std::sync::OnceLock;

use frps::fuzzing::{client_hello, Hello, Router};
use libfuzzer_sys::fuzz_target;

/// One TLS record and its header: the most `https::hello` peeks.
const MAX_HELLO: usize = 16 * 1024 + 5;

fn router() -> &'static Router<u8> {
    static ROUTER: OnceLock<Router<u8>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let r = Router::new();
        for (names, _, _, id) in common::HTTPS {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            r.add(&names, *id).expect("each name once");
        }
        r
    })
}

fn same(a: &Hello, b: &Hello) -> bool {
    a.name == b.name && a.frpc == b.frpc
}

fuzz_target!(|data: &[u8]| {
    let bytes = &data[..data.len().min(MAX_HELLO)];
    let whole = client_hello(bytes);
    let step = (bytes.len() / 32).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        match (client_hello(&bytes[..cut]), &whole) {
            (Ok(None), _) => {}
            (Ok(Some(a)), Ok(Some(b))) => assert!(same(&a, b), "cut at {cut}"),
            (Ok(Some(_)), _) => panic!("a whole hello in {cut} bytes, but not in all of them"),
            (Err(_), Err(_)) => {}
            (Err(e), _) => panic!("refused at {cut} bytes ({e}), read in all of them"),
        }
    }
    let Ok(Some(hello)) = whole else { return };
    let Some(name) = hello.name else { return };
    assert!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
        "{name:?}"
    );
    let found = router().lookup(&name);
    let want = common::check_name(&name).and_then(|n| common::model(common::HTTPS, &n, "/", ""));
    assert_eq!(found, want, "{name:?}");
});
