//! What the virtual host targets share: a fixed table of routes, a plain
//! model of how a name, path and user pick one of them (exact name first,
//! then the most specific `*.` wildcard above it; there the longest
//! location, a route for this user before one for everybody), and the
//! properties every accepted host name has.
#![allow(dead_code)]

use std::sync::Arc;

use frps::fuzzing::{host_name, Routed, Routes, MAX_LABEL, MAX_NAME};

/// A route as the router holds it: which one, and its `routeByHTTPUser`.
pub struct Route {
    pub id: u8,
    pub user: &'static str,
}

impl Routed for Route {
    fn route_user(&self) -> &str {
        self.user
    }
}

/// Configured names (as an operator writes them), locations, user, id.
pub type Entry = (
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
    u8,
);

/// The http port's proxies.
pub const HTTP: &[Entry] = &[
    (&["web.example.com"], &["/"], "", 1),
    (&["web.example.com"], &["/admin", "/api/"], "", 2),
    (&["web.example.com"], &["/admin"], "alice", 3),
    (&["*.example.com"], &["/"], "", 4),
    (&["*.b.example.com", "Other.Test"], &["/"], "", 5),
    (&["*.b.example.com"], &["/x"], "bob", 6),
    (&["Shop.Test:8080", "dot.test."], &["/", "/shop"], "", 7),
    (&["*.xn--bcher-kva.test", "[::1]"], &["/"], "", 8),
];

/// The tcpmux port's proxies (every one at location "/").
pub const TCPMUX: &[Entry] = &[
    (&["db.example.com"], &["/"], "", 1),
    (&["db.example.com"], &["/"], "alice", 2),
    (&["*.example.com"], &["/"], "", 3),
    (&["*.b.example.com", "Other.Test:5432"], &["/"], "bob", 4),
    (&["ssh.test."], &["/"], "", 5),
];

/// The https port's proxies (one route per name, no users or locations).
pub const HTTPS: &[Entry] = &[
    (&["web.example.com"], &["/"], "", 1),
    (&["*.example.com"], &["/"], "", 2),
    (&["*.b.example.com", "Other.Test"], &["/"], "", 3),
    (&["localhost"], &["/"], "", 4),
];

/// `table` in a router, as frps registers proxies.
pub fn routes(table: &[Entry]) -> Routes<Route> {
    let routes = Routes::default();
    for (names, locations, user, id) in table {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let locations: Vec<String> = locations.iter().map(|l| l.to_string()).collect();
        let route = Arc::new(Route { id: *id, user });
        routes
            .add(&names, &locations, &route)
            .expect("the table claims each (name, location, user) once");
    }
    routes
}

/// A configured name as routing keeps it: wildcard or not, and its key
/// (lower case, no `:port`, no trailing dot; the suffix of a wildcard).
fn key(configured: &str) -> (bool, String) {
    let mut n = configured.trim().to_ascii_lowercase();
    if let Some((h, port)) = n.rsplit_once(':') {
        if port.bytes().all(|c| c.is_ascii_digit()) {
            n = h.to_owned();
        }
    }
    let n = n.trim_end_matches('.').to_owned();
    match n.strip_prefix("*.") {
        Some(suffix) => (true, suffix.to_owned()),
        None => (false, n),
    }
}

/// The route `name` (as [`host_name`] gives it), `path` and `user` pick,
/// worked out the slow way.
pub fn model(table: &[Entry], name: &str, path: &str, user: &str) -> Option<u8> {
    // Most specific first: the name itself, then each wildcard above it.
    let mut candidates = vec![(false, name.to_owned())];
    let mut rest = name;
    while let Some((_, parent)) = rest.split_once('.') {
        candidates.push((true, parent.to_owned()));
        rest = parent;
    }
    for want in candidates {
        let best = table
            .iter()
            .filter(|(names, _, _, _)| names.iter().any(|n| key(n) == want))
            .flat_map(|(_, locations, by, id)| locations.iter().map(move |l| (*l, *by, *id)))
            .filter(|(l, by, _)| path.starts_with(l) && (by.is_empty() || *by == user))
            .max_by_key(|(l, by, _)| (l.len(), !by.is_empty()));
        if let Some((_, _, id)) = best {
            return Some(id);
        }
    }
    None
}

/// What [`host_name`] promises of a name it accepts.
pub fn check_name(raw: &str) -> Option<String> {
    let name = host_name(raw)?;
    assert!(
        name.len() <= MAX_NAME,
        "{raw:?} -> {name:?}: over {MAX_NAME} bytes"
    );
    for label in name.split('.') {
        assert!(
            !label.is_empty() && label.len() <= MAX_LABEL,
            "{raw:?} -> {name:?}: label {label:?}"
        );
    }
    assert!(!name.ends_with('.'), "{raw:?} -> {name:?}");
    assert!(
        !name.bytes().any(|b| b.is_ascii_uppercase()),
        "{raw:?} -> {name:?}: not lower case"
    );
    // A name without a port or surrounding space is its own host name.
    if !name.contains(':') && name.trim() == name {
        assert_eq!(host_name(&name).as_deref(), Some(name.as_str()), "{raw:?}");
    }
    Some(name)
}
