//! The running client as the admin API, `frpc reload` and SIGHUP see it:
//! proxy statuses, liveness, the config file, reload and stop.
//!
//! A reload reads the file again and applies only the proxies' difference
//! (`ProxyManager::apply`): unchanged proxies keep their connections. A file
//! with errors is refused whole, with every error, and nothing changes.
//! Settings outside `[[proxies]]` (server address, auth, transport…) take
//! effect at the next start; a reload that changes them says which.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use config::{ClientConfig, ProxyConfig, Trust};
use net::logging::Field;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::proxy::{Changes, ProxyManager, ProxyStatus};
use crate::state::{Liveness, LivenessReport};
use crate::visitor::VisitorManager;

/// Why a reload or a config upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigRefused {
    #[error("no config file: this client was started without one")]
    NoFile,
    #[error("cannot read or write {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// Every problem of the file, one per line.
    #[error("{0}")]
    Invalid(String),
}

/// Shared by the admin server, the SIGHUP handler and the supervisor.
pub struct Controller {
    pub(crate) proxies: Arc<ProxyManager>,
    pub(crate) visitors: VisitorManager,
    pub(crate) liveness: Arc<Liveness>,
    path: Option<PathBuf>,
    /// The settings in force (proxies included, as last applied).
    running: Mutex<ClientConfig>,
    shutdown: CancellationToken,
}

impl Controller {
    pub(crate) fn new(
        config: &ClientConfig,
        path: Option<PathBuf>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let server = format!("{}:{}", config.server_addr, config.server_port);
        Arc::new(Controller {
            proxies: Arc::new(ProxyManager::new(config)),
            visitors: VisitorManager::new(config),
            liveness: Liveness::new(server),
            path,
            running: Mutex::new(config.clone()),
            shutdown,
        })
    }

    /// Proxies, then visitors.
    pub fn statuses(&self) -> Vec<ProxyStatus> {
        let mut all = self.proxies.statuses();
        all.extend(self.visitors.statuses());
        all
    }

    pub fn liveness(&self) -> LivenessReport {
        self.liveness.report()
    }

    /// The config of proxy `name` as it runs (last applied; a disabled
    /// proxy or one left out by `start` does not run).
    pub fn proxy_config(&self, name: &str) -> Option<ProxyConfig> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .proxies
            .iter()
            .find(|p| p.enabled() && p.name() == name)
            .cloned()
    }

    /// Stops the client (as SIGTERM does).
    pub fn stop(&self) {
        info!("stop requested through the admin API");
        self.shutdown.cancel();
    }

    fn path(&self) -> Result<&PathBuf, ConfigRefused> {
        self.path.as_ref().ok_or(ConfigRefused::NoFile)
    }

    /// The config file as it is on disk.
    pub fn config_text(&self) -> Result<String, ConfigRefused> {
        let path = self.path()?;
        std::fs::read_to_string(path).map_err(|error| ConfigRefused::Io {
            path: path.display().to_string(),
            error,
        })
    }

    /// Replaces the config file with `text` if it is valid (frp writes
    /// whatever it is sent; a file that would not load is refused here
    /// instead). Does not reload.
    pub fn put_config(&self, text: &str) -> Result<(), ConfigRefused> {
        let path = self.path()?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        parse(text, path, Trust::Upload)?;
        // Whole or not at all: a crash mid-write must not leave half a file.
        let tmp = dir.join(format!(
            ".{}.new",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let io = |error| ConfigRefused::Io {
            path: path.display().to_string(),
            error,
        };
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads the config file again and applies its proxies.
    pub fn reload(&self) -> Result<Changes, ConfigRefused> {
        let path = self.path()?;
        let text = self.config_text()?;
        let new = parse(&text, path, Trust::Reload)?;
        for note in &new.notes {
            warn!("{note}");
        }
        let mut changes = self.proxies.apply(&new.proxies);
        let visitors = self.visitors.apply(&new.visitors);
        changes.added.extend(visitors.added);
        changes.removed.extend(visitors.removed);
        changes.changed.extend(visitors.changed);
        self.proxies.not_started(&new.not_started);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let restart = needs_restart(&running, &new);
        if !restart.is_empty() {
            warn!(
                "reload: {} changed; that takes effect when frpc restarts",
                restart.join(", ")
            );
        }
        running.proxies = new.proxies;
        running.visitors = new.visitors;
        info!(
            added = %Field(&changes.added.join(", ")),
            removed = %Field(&changes.removed.join(", ")),
            changed = %Field(&changes.changed.join(", ")),
            "config reloaded"
        );
        Ok(changes)
    }
}

fn parse(text: &str, path: &std::path::Path, trust: Trust) -> Result<ClientConfig, ConfigRefused> {
    ClientConfig::from_text_as(text, path, trust).map_err(|e| ConfigRefused::Invalid(e.to_string()))
}

/// The settings outside `[[proxies]]` and `[[visitors]]` that differ
/// (top-level keys).
fn needs_restart(old: &ClientConfig, new: &ClientConfig) -> Vec<String> {
    let table = |c: &ClientConfig| {
        let mut c = c.clone();
        c.proxies.clear();
        c.visitors.clear();
        toml::Table::try_from(&c).unwrap_or_default()
    };
    let (a, b) = (table(old), table(new));
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

impl Controller {
    /// [`Controller::reload`] on the blocking pool: reading the file and
    /// running a token command must not stall the runtime, which for a
    /// multiplexed frpc is the one thread its tunnel runs on.
    pub async fn reload_off_runtime(self: &Arc<Self>) -> Result<Changes, ConfigRefused> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.reload())
            .await
            .unwrap_or_else(|e| Err(ConfigRefused::Invalid(format!("reload failed: {e}"))))
    }

    /// [`Controller::put_config`] on the blocking pool, as reload.
    pub async fn put_config_off_runtime(
        self: &Arc<Self>,
        text: String,
    ) -> Result<(), ConfigRefused> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.put_config(&text))
            .await
            .unwrap_or_else(|e| Err(ConfigRefused::Invalid(format!("saving failed: {e}"))))
    }
}
