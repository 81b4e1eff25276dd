//! Small local services for the tests, on 127.0.0.1 with threads (for
//! tests that are not async), and polling for a condition.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::WAIT;

/// A service that greets every connection with `line` and closes.
pub fn banner(line: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(line.as_bytes());
        }
    });
    addr
}

/// What a port answers when connected to, or None when nothing listens.
pub fn greeting(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A TCP echo service.
pub fn echo_thread() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Polls `f` until it is true; panics naming `what` after [`WAIT`].
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// dnsmasq on 127.0.0.1 with one `--address` rule (`/name/ip`), on a free
/// port; returns it and its port. It binds the port for TCP too, which
/// another test may hold: another port then.
pub fn dnsmasq(rule: &str) -> (crate::Proc, u16) {
    for _ in 0..10 {
        let port = crate::free_udp_port();
        let mut c = std::process::Command::new("/usr/sbin/dnsmasq");
        c.args([
            "--keep-in-foreground",
            "--log-facility=-",
            "--log-queries",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            &format!("--port={port}"),
            &format!("--address={rule}"),
        ]);
        let mut dns = crate::Proc::spawn(c);
        match dns.first_of(&["started", "Address already in use"], WAIT) {
            Some(line) if line.contains("started") => return (dns, port),
            _ => continue,
        }
    }
    panic!("dnsmasq did not start on any of 10 ports");
}
