//! tracing setup from the `log.*` config keys.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use config::LogConfig;

use crate::logfile::DailyFile;

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
/// Changes the level of the running logger (`log.level` on reload).
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter(level: &str) -> Result<EnvFilter, LogError> {
    EnvFilter::try_new(level).map_err(|source| LogError::Level {
        level: level.to_owned(),
        source,
    })
}

pub fn init(cfg: &LogConfig) -> Result<(), LogError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => filter(&v)?,
        _ => filter(cfg.level.as_str())?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    let base = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_target(false);
    if cfg.to == "console" || cfg.to.is_empty() {
        use std::io::IsTerminal;
        let ansi = std::io::stderr().is_terminal() && !cfg.disable_print_color;
        let layer = layer.with_writer(std::io::stderr).with_ansi(ansi);
        base.with(layer).try_init().ok();
    } else {
        let file =
            DailyFile::open(std::path::Path::new(&cfg.to), cfg.max_days).map_err(|source| {
                LogError::Open {
                    path: cfg.to.clone(),
                    source,
                }
            })?;
        // One log file for the life of the process.
        let file: &'static DailyFile = Box::leak(Box::new(file));
        let layer = layer.with_writer(move || file).with_ansi(false);
        base.with(layer).try_init().ok();
    }
    let _ = LEVEL.set(handle);
    Ok(())
}

/// Sets the running logger's level; false when there is no logger to
/// change (tests) or the level does not parse.
pub fn set_level(level: config::LogLevel) -> bool {
    match (LEVEL.get(), filter(level.as_str())) {
        (Some(h), Ok(f)) => h.reload(f).is_ok(),
        _ => false,
    }
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
            // A log on the console has just said it; a log file is not
            // where whoever started the program looks first.
            let on_console = log.to == "console" || log.to.is_empty();
            if !on_console {
                eprintln!("{program}: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// A string that came from a peer or a config (host name, user, proxy
/// name…), for a log line: control characters (newlines, ESC) are escaped,
/// so no peer can forge a line or recolour a terminal, and it is cut at 128
/// characters.
pub struct Escaped<'a>(pub &'a str);

/// [`Escaped`], for a log field (`proxy = %Field(name)`): one with a space,
/// `=` or `"` (or an empty one) is also quoted, so `proxy="a b"` reads as
/// one field, not two.
pub struct Field<'a>(pub &'a str);

/// Longest peer string a log line shows.
const ESCAPED_MAX: usize = 128;

fn escape(s: &str, quoted: bool, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    use std::fmt::Write;
    if quoted {
        f.write_char('"')?;
    }
    for (i, c) in s.chars().enumerate() {
        if i == ESCAPED_MAX {
            f.write_str("…")?;
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}') {
            write!(f, "{}", c.escape_unicode())?;
        } else if quoted && (c == '"' || c == '\\') {
            write!(f, "\\{c}")?;
        } else {
            f.write_char(c)?;
        }
    }
    if quoted {
        f.write_char('"')?;
    }
    Ok(())
}

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        escape(self.0, false, f)
    }
}

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quoted = self.0.is_empty()
            || self
                .0
                .chars()
                .take(ESCAPED_MAX)
                .any(|c| c.is_whitespace() || c == '=' || c == '"');
        escape(self.0, quoted, f)
    }
}

#[cfg(test)]
mod tests {
    use super::{Escaped, Field};

    #[test]
    fn peer_strings_cannot_break_lines() {
        let s = Escaped("a\nINFO forged\x1b[31m\r").to_string();
        assert_eq!(s, "a\\u{a}INFO forged\\u{1b}[31m\\u{d}");
        assert!(!s.chars().any(char::is_control));
        let long = "x".repeat(500);
        assert_eq!(Escaped(&long).to_string().chars().count(), 129);
        // Quoted, cut, and the quotes closed.
        let spaced = format!(" {long}");
        let shown = Field(&spaced).to_string();
        assert_eq!(shown.chars().count(), 131);
        assert!(shown.ends_with("…\""), "{shown}");
    }

    #[test]
    fn strings_that_would_read_as_several_fields_are_quoted() {
        assert_eq!(Field("ssh").to_string(), "ssh");
        assert_eq!(Escaped("a b").to_string(), "a b");
        assert_eq!(Field("a b").to_string(), "\"a b\"");
        assert_eq!(Field("x=1").to_string(), "\"x=1\"");
        assert_eq!(Field("say \"hi\"\\").to_string(), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(Field("").to_string(), "\"\"");
        assert_eq!(Field("a\tb").to_string(), "\"a\\u{9}b\"");
    }
}
