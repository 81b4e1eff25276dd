//! Virtual hosts: public ports shared by many proxies, each connection
//! routed by the name it asks for. The router is shared by every client's
//! proxies; a name belongs to one proxy at a time.

pub(crate) mod backends;
pub(crate) mod http;
pub(crate) mod https;
pub(crate) mod tcpmux;
pub(crate) mod timer;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info_span, warn, Instrument};

/// Accepts users on a virtual host port until `stop`, each connection in a
/// task of its own (`kind` names the port in logs).
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    kind: &'static str,
    on_conn: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks = TaskTracker::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let span = info_span!("vhost", kind, %peer);
                    tasks.spawn(on_conn(tcp, peer).instrument(span));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!("{kind} virtual host port: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    tasks.close();
}

/// Names to routes: exact names, and `*.example.com` wildcards where the
/// most specific one wins (`a.b.example.com` tries `*.b.example.com`
/// before `*.example.com`).
pub(crate) struct Router<T> {
    routes: Mutex<HashMap<String, T>>,
}

impl<T: Clone> Router<T> {
    pub fn new() -> Self {
        Router {
            routes: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, T>> {
        // Each update is one insert or remove: a poisoned map is consistent.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims every one of `names` for `route`, or none: Err names the
    /// first one that is taken.
    pub fn add(&self, names: &[String], route: T) -> Result<(), String> {
        let mut routes = self.lock();
        let names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        if let Some(taken) = names.iter().find(|n| routes.contains_key(*n)) {
            return Err(taken.clone());
        }
        for n in names {
            routes.insert(n, route.clone());
        }
        Ok(())
    }

    pub fn remove(&self, names: &[String]) {
        let mut routes = self.lock();
        for n in names {
            routes.remove(&normalize(n));
        }
    }

    /// The route for `host` (case-insensitive, a port or trailing dot
    /// ignored).
    pub fn lookup(&self, host: &str) -> Option<T> {
        let routes = self.lock();
        first_match(host, |c| routes.get(c).cloned())
    }
}

/// `find`'s first answer for the names that may serve `host`, most
/// specific first: itself, then the wildcards above it (`a.b.c` → `a.b.c`,
/// `*.b.c`, `*.c`). Wildcard names are only built when the exact one
/// misses (this runs for every request on the vhost port).
pub(crate) fn first_match<T>(host: &str, mut find: impl FnMut(&str) -> Option<T>) -> Option<T> {
    let host = normalize(host);
    if let Some(found) = find(&host) {
        return Some(found);
    }
    let mut wild = String::with_capacity(host.len() + 1);
    let mut rest = host.as_str();
    while let Some((_, parent)) = rest.split_once('.') {
        wild.clear();
        wild.push_str("*.");
        wild.push_str(parent);
        if let Some(found) = find(&wild) {
            return Some(found);
        }
        rest = parent;
    }
    None
}

/// Lower case, without a `:port` or a trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    let name = name.trim();
    let name = match name.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => name,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_most_specific_wildcard() {
        let r = Router::new();
        r.add(&["A.example.com".into()], 1).expect("add");
        r.add(&["*.example.com".into()], 2).expect("add");
        r.add(&["*.b.example.com".into()], 3).expect("add");
        assert_eq!(r.lookup("a.EXAMPLE.com:443"), Some(1));
        assert_eq!(r.lookup("x.example.com."), Some(2));
        assert_eq!(r.lookup("x.b.example.com"), Some(3));
        assert_eq!(r.lookup("example.com"), None);
        assert_eq!(r.lookup("a.example.org"), None);
        // All or nothing, and the taken name is named.
        assert_eq!(
            r.add(&["new.example.com".into(), "a.example.com".into()], 4),
            Err("a.example.com".into())
        );
        assert_eq!(r.lookup("new.example.com"), Some(2));
        r.remove(&["*.example.com".into()]);
        assert_eq!(r.lookup("x.example.com"), None);
    }
}
