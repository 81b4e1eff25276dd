//! tracing setup from the `log.*` config keys.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open log file {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid log.level {level:?}: {source}")]
    Level {
        level: String,
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides
/// `log.level` so a single run can be traced without editing the config.
pub fn init(cfg: &LogConfig) -> Result<(), LogError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).map_err(|source| LogError::Level { level: v, source })?
        }
        _ => EnvFilter::try_new(cfg.level.as_str()).map_err(|source| LogError::Level {
            level: cfg.level.as_str().to_owned(),
            source,
        })?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if cfg.to == "console" || cfg.to.is_empty() {
        use std::io::IsTerminal;
        let ansi = std::io::stderr().is_terminal();
        builder
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .try_init()
            .ok();
    } else {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.to)
            .map_err(|source| LogError::Open {
                path: cfg.to.clone(),
                source,
            })?;
        builder
            .with_writer(Mutex::new(file))
            .with_ansi(false)
            .try_init()
            .ok();
    }
    Ok(())
}

/// The common tail of both binaries' `main`: set up logging and the
/// open-files limit, run, and turn the outcome into an exit status with the
/// whole cause chain printed.
pub fn run_main<E: std::fmt::Display>(
    program: &str,
    log: &LogConfig,
    run: impl FnOnce() -> Result<(), E>,
) -> std::process::ExitCode {
    if let Err(e) = init(log) {
        eprintln!("{program}: {e}");
        return std::process::ExitCode::FAILURE;
    }
    crate::util::raise_fd_limit();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{program}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
