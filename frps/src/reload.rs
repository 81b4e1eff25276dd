//! What frps can change without dropping a tunnel (SIGHUP): `auth.token`
//! (and `tokenFile`), `allowPorts`, `maxPortsPerClient`, `log.level` and
//! the web server's `user`/`password`. Every other key needs a restart;
//! a reload that changes one says which. frp cannot reload frps at all
//! (frp #1546).

use std::sync::Arc;

use config::{PortRange, ServerConfig, Token};
use tracing::{info, warn};

use crate::Server;

/// The settings a reload may change, read where they are used.
pub(crate) struct Live {
    pub token: Token,
    pub allow_ports: Vec<PortRange>,
    pub max_ports_per_client: u32,
}

impl Live {
    pub fn of(cfg: &ServerConfig) -> Arc<Live> {
        Arc::new(Live {
            token: cfg.auth.token.clone(),
            allow_ports: cfg.allow_ports.clone(),
            max_ports_per_client: cfg.max_ports_per_client,
        })
    }

    pub fn port_allowed(&self, port: u16) -> bool {
        self.allow_ports.is_empty() || self.allow_ports.iter().any(|r| r.contains(port))
    }
}

/// Dotted keys a reload applies.
const RELOADABLE: &[&str] = &[
    "auth.token",
    "auth.tokenFile",
    "allowPorts",
    "maxPortsPerClient",
    "log.level",
    "webServer.user",
    "webServer.password",
];

/// Applies what can change now; returns the keys that changed but need a
/// restart.
pub(crate) fn apply(server: &Server, new: &ServerConfig) -> Vec<String> {
    *server.live.write().unwrap_or_else(|p| p.into_inner()) = Live::of(new);
    server.web_auth.set(&new.web_server);
    if !net::logging::set_level(new.log.level) {
        warn!("log.level not changed (RUST_LOG, or no logger to change)");
    }
    let restart = changed_keys(&server.config, new)
        .into_iter()
        .filter(|k| !RELOADABLE.contains(&k.as_str()))
        .collect::<Vec<_>>();
    if new.auth.token.is_empty() {
        warn!("auth.token is empty: any client that can reach this port may expose services");
    }
    info!(
        "config reloaded: auth.token, allowPorts, maxPortsPerClient, log.level and webServer \
         credentials now as in the file"
    );
    if !restart.is_empty() {
        warn!(
            "reload: {} changed; that takes effect when frps restarts",
            restart.join(", ")
        );
    }
    restart
}

/// Keys whose values differ, as dotted paths (one table level deep).
fn changed_keys(old: &ServerConfig, new: &ServerConfig) -> Vec<String> {
    let table = |c: &ServerConfig| toml::Table::try_from(c).unwrap_or_default();
    let (a, b) = (table(old), table(new));
    let mut out = Vec::new();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                let mut inner: Vec<&String> = x.keys().chain(y.keys()).collect();
                inner.sort();
                inner.dedup();
                out.extend(
                    inner
                        .into_iter()
                        .filter(|i| x.get(*i) != y.get(*i))
                        .map(|i| format!("{k}.{i}")),
                );
            }
            (x, y) if x != y => out.push(k.clone()),
            _ => {}
        }
    }
    out
}
