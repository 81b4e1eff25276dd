//! Virtual hosts: public ports shared by many proxies, each connection
//! routed by the name it asks for. The router is shared by every client's
//! proxies; a name belongs to one proxy at a time.

pub(crate) mod backends;
pub(crate) mod http;
pub(crate) mod https;
pub(crate) mod tcpmux;
pub(crate) mod timer;

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use net::gate::Gate;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, warn, Instrument};

/// What a virtual host needs of the proxy a name routes to. The proxy
/// module provides it (`proxy::ProxyCtx`); virtual hosts know nothing else
/// of proxies.
pub(crate) trait Backend: Send + Sync {
    /// A tunnel to the proxy's client with its header sent, counting on the
    /// proxy's meters.
    fn open(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> futures::future::BoxFuture<'_, anyhow::Result<net::stats::Metered<net::tunnel::Tunnel>>>;
    /// One of the client's streams (`maxStreamsPerClient`); Err(that
    /// maximum) when all are open.
    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, usize>;
    /// Cancelled when the proxy closes.
    fn stop(&self) -> &CancellationToken;
    /// Work that must end before the proxy counts as closed.
    fn tasks(&self) -> &TaskTracker;
    /// The worker thread of the proxy's client (`net::workers`).
    fn home(&self) -> &tokio::runtime::Handle;
    /// Carries a whole user connection to the client, as a tcp proxy does
    /// (https passes TLS through), holding `permit` while it lasts.
    fn carry_tcp(
        &self,
        tcp: TcpStream,
        src: SocketAddr,
        dst: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> futures::future::BoxFuture<'static, ()>;
}

/// A route's proxy.
pub(crate) type BackendRef = Arc<dyn Backend>;

/// The routers of the virtual host ports, shared by every client's
/// proxies, and the HTTP virtual host when it shares `bindPort`.
#[derive(Default)]
pub(crate) struct Vhosts {
    /// Names claimed by `type = "https"` proxies on `vhostHTTPSPort`.
    pub https: Arc<https::Routes>,
    /// (name, location) pairs claimed by `type = "http"` proxies on
    /// `vhostHTTPPort`.
    pub http: Arc<http::Routes<http::HttpRoute>>,
    /// Names claimed by `type = "tcpmux"` proxies on `tcpmuxHTTPConnectPort`.
    pub tcpmux: Arc<tcpmux::Routes>,
    /// The HTTP virtual host, when it shares `bindPort` (set at start).
    pub shared_http: std::sync::OnceLock<Arc<http::Vhost>>,
}

/// Connections one source address may hold on one virtual host port.
pub(crate) const PER_ADDRESS: usize = 256;

/// Accepts users on a virtual host port until `stop`, each connection in a
/// task of its own (`kind` names the port in logs), as far as `gate`
/// admits them: beyond it a connection is closed at once.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    kind: &'static str,
    gate: Arc<Gate>,
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
                    let pass = match gate.admit(peer.ip()) {
                        Ok(pass) => pass,
                        Err(why) => {
                            debug!(%peer, "{kind} virtual host port: closed at once: {why}");
                            continue;
                        }
                    };
                    let span = info_span!("vhost", kind, %peer);
                    let conn = on_conn(tcp, peer);
                    tasks.spawn(async move {
                        let _pass = pass;
                        conn.await
                    }.instrument(span));
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

/// A host name as routing uses it: lower case, without a `:port` or a
/// trailing dot, and within RFC 1123's lengths (253 in all, 63 per label,
/// so at most 127 labels); None for anything else, which no route can
/// match. Every name a user sends goes through here before routing, so
/// routing a request costs at most this many bytes hashed per label.
pub fn host_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let name = match name.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|c| c.is_ascii_digit()) => {
            port.parse::<u16>().ok()?;
            h
        }
        _ => name,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels_ok = name
        .split('.')
        .all(|l| !l.is_empty() && l.len() <= MAX_LABEL);
    (name.len() <= MAX_NAME && labels_ok).then(|| name.to_ascii_lowercase())
}

/// RFC 1123: a whole name, one label.
pub const MAX_NAME: usize = 253;
pub const MAX_LABEL: usize = 63;

/// Lower case, without a `:port` or a trailing dot (names as configured;
/// those a user sends go through [`host_name`]).
pub(crate) fn normalize(name: &str) -> String {
    let name = name.trim();
    let name = match name.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => name,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Exact names and `*.suffix` wildcards (kept by their suffix, so a lookup
/// tries the suffixes of the name it has, as slices, without building any).
/// Lookups hash every candidate before taking the lock: what runs under it
/// is one probe and compare per label.
pub(crate) struct Names<V> {
    hasher: RandomState,
    tables: Mutex<Tables<V>>,
}

struct Tables<V> {
    exact: HashTable<(String, V)>,
    wild: HashTable<(String, V)>,
}

/// The tables under the lock, for changes.
pub(crate) struct Editor<'a, V> {
    hasher: &'a RandomState,
    tables: &'a mut Tables<V>,
}

impl<V> Names<V> {
    pub fn new() -> Self {
        Names {
            hasher: RandomState::new(),
            tables: Mutex::new(Tables {
                exact: HashTable::new(),
                wild: HashTable::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables<V>> {
        // Each change is one insert or remove: poisoned tables are consistent.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn change<T>(&self, f: impl FnOnce(&mut Editor<'_, V>) -> T) -> T {
        let mut tables = self.lock();
        f(&mut Editor {
            hasher: &self.hasher,
            tables: &mut tables,
        })
    }

    /// `find`'s first answer for the names that may serve `host` (from
    /// [`host_name`], so at most 127 labels), most specific first: itself,
    /// then the wildcards above it (`a.b.c` → `a.b.c`, `*.b.c`, `*.c`).
    pub fn first_match<T>(&self, host: &str, mut find: impl FnMut(&V) -> Option<T>) -> Option<T> {
        let exact = self.hasher.hash_one(host);
        let mut parents: Vec<(&str, u64)> = Vec::new();
        let mut rest = host;
        while let Some((_, parent)) = rest.split_once('.') {
            parents.push((parent, self.hasher.hash_one(parent)));
            rest = parent;
        }
        let tables = self.lock();
        fn hit<'t, V>(t: &'t HashTable<(String, V)>, name: &str, hash: u64) -> Option<&'t V> {
            t.find(hash, |(k, _)| k == name).map(|(_, v)| v)
        }
        if let Some(found) = hit(&tables.exact, host, exact).and_then(&mut find) {
            return Some(found);
        }
        parents
            .into_iter()
            .find_map(|(name, hash)| hit(&tables.wild, name, hash).and_then(&mut find))
    }
}

impl<V> Editor<'_, V> {
    /// The table and key a configured (normalized) name is kept under.
    fn place<'n>(&mut self, name: &'n str) -> (&mut HashTable<(String, V)>, &'n str, u64) {
        let (table, key) = match name.strip_prefix("*.") {
            Some(suffix) => (&mut self.tables.wild, suffix),
            None => (&mut self.tables.exact, name),
        };
        (table, key, self.hasher.hash_one(key))
    }

    pub fn get(&mut self, name: &str) -> Option<&V> {
        let (table, key, hash) = self.place(name);
        table.find(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn entry(&mut self, name: &str) -> &mut V
    where
        V: Default,
    {
        let hasher = self.hasher;
        let (table, key, hash) = self.place(name);
        let entry = table.entry(hash, |(k, _)| k == key, |(k, _)| hasher.hash_one(k));
        &mut entry
            .or_insert_with(|| (key.to_owned(), V::default()))
            .into_mut()
            .1
    }

    pub fn insert(&mut self, name: &str, value: V)
    where
        V: Default,
    {
        *self.entry(name) = value
    }

    pub fn remove(&mut self, name: &str) {
        let (table, key, hash) = self.place(name);
        if let Ok(found) = table.find_entry(hash, |(k, _)| k == key) {
            found.remove();
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        self.tables.exact.retain(|(_, v)| keep(v));
        self.tables.wild.retain(|(_, v)| keep(v));
    }
}

/// Names to routes: exact names, and `*.example.com` wildcards where the
/// most specific one wins (`a.b.example.com` tries `*.b.example.com`
/// before `*.example.com`).
pub struct Router<T> {
    names: Names<Option<T>>,
}

impl<T: Clone> Default for Router<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> Router<T> {
    pub fn new() -> Self {
        Router {
            names: Names::new(),
        }
    }

    /// Claims every one of `names` for `route`, or none: Err names the
    /// first one that is taken.
    pub fn add(&self, names: &[String], route: T) -> Result<(), String> {
        let names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        self.names.change(|table| {
            if let Some(taken) = names.iter().find(|n| table.get(n).is_some()) {
                return Err(taken.clone());
            }
            for n in &names {
                table.insert(n, Some(route.clone()));
            }
            Ok(())
        })
    }

    pub fn remove(&self, names: &[String]) {
        self.names.change(|table| {
            for n in names {
                table.remove(&normalize(n));
            }
        })
    }

    /// The route for `host` as a user sent it (case-insensitive, a port or
    /// trailing dot ignored; None for a name that is not one).
    pub fn lookup(&self, host: &str) -> Option<T> {
        let host = host_name(host)?;
        self.names.first_match(&host, |r| r.clone())
    }
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

    #[test]
    fn names_beyond_rfc_1123_lengths_route_nowhere() {
        let r = Router::new();
        r.add(&["*.example.com".into()], 1).expect("add");
        let label = "a".repeat(63);
        let long = format!("{label}.{label}.{label}.{}.example.com", "b".repeat(49));
        assert_eq!(long.len(), 253);
        assert_eq!(r.lookup(&long), Some(1));
        assert_eq!(r.lookup(&format!("{long}.:80")), Some(1));
        assert_eq!(r.lookup(&format!("c{long}")), None, "254 bytes");
        assert_eq!(
            r.lookup(&format!("{}a.example.com", label)),
            None,
            "64-byte label"
        );
        assert_eq!(r.lookup("a..example.com"), None, "empty label");
        assert_eq!(
            r.lookup(&format!("{}example.com", "a.".repeat(40_000))),
            None
        );
        assert_eq!(
            host_name("A.Example.COM.:8080").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(host_name(""), None);
        assert_eq!(host_name("a.example.com:99999"), None, "not a port");
        assert_eq!(
            host_name(&format!("a.example.com:{}", "9".repeat(60_000))),
            None
        );
    }
}
