use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::ServerConfig;
use tokio_util::sync::CancellationToken;

mod flags;

/// frps: the public side of the tunnel.
#[derive(Parser)]
#[command(version, about, disable_version_flag = true)]
struct Cli {
    /// Print the version (`-v` as frp, `-V` too).
    #[arg(short = 'v', short_alias = 'V', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// Configuration file: TOML, YAML (.yaml/.yml), JSON (.json) or frp's
    /// legacy INI. Without it, defaults apply.
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// Allow what frp calls unsafe features: `TokenSourceExec` lets
    /// `auth.tokenSource.type = "exec"` run its command.
    #[arg(
        long = "allow-unsafe",
        alias = "allow_unsafe",
        global = true,
        value_name = "FEATURE"
    )]
    allow_unsafe: Vec<String>,
    /// frp's flags, for running without a file.
    #[command(flatten)]
    flags: flags::ServerFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration file: print every problem (and every frp
    /// feature it uses that is not supported yet) and exit, non-zero if any
    /// is an error.
    Verify,
    /// Print the configuration file (frp's legacy INI, or any format) as
    /// TOML with frp's current keys.
    Convert,
}

fn load(path: Option<&PathBuf>, flags: &flags::ServerFlags) -> Result<ServerConfig> {
    match (path, flags.to_toml()) {
        (Some(_), Some(_)) => anyhow::bail!(
            "settings come from the file (-c) or from flags, not both: put them in the file"
        ),
        (Some(p), None) => Ok(ServerConfig::load(p)?),
        (None, Some(text)) => ServerConfig::from_toml(&text).context("the flags"),
        (None, None) => ServerConfig::from_toml("").context("default configuration"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = config::allow_unsafe(&cli.allow_unsafe) {
        eprintln!("frps: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(Command::Convert) = cli.command {
        let Some(path) = cli.config.as_ref() else {
            eprintln!("frps: convert needs the file: frps convert -c frps.ini");
            return ExitCode::FAILURE;
        };
        return match config::convert::to_toml(path, config::legacy::Side::Server) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("frps: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match load(cli.config.as_ref(), &cli.flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("frps: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Verify) = cli.command {
        let path = cli
            .config
            .as_ref()
            .map_or("defaults".into(), |p| p.display().to_string());
        for note in &config.notes {
            println!("{note}");
        }
        println!("frps: configuration {path} is valid");
        return ExitCode::SUCCESS;
    }
    let log = config.log.clone();
    net::logging::run_main("frps", &log, || {
        for note in &config.notes {
            tracing::warn!("{note}");
        }
        serve(config, cli.config)
    })
}

fn serve(config: ServerConfig, path: Option<PathBuf>) -> Result<()> {
    // This thread accepts and hands over; clients run on worker threads
    // (net::workers), one per core.
    let runtime = net::util::runtime("frps", net::util::Threads::One)
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let addr = (config.bind_addr.as_str(), config.bind_port);
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {}:{}", config.bind_addr, config.bind_port)
        })?;
        let shutdown = CancellationToken::new();
        tokio::spawn(net::util::cancel_on_signal(shutdown.clone()));
        let stats = frps::Stats::default();
        if let Some(path) = path {
            tokio::spawn(reload_on_sighup(path, stats.clone()));
        }
        frps::run_with_stats(config, listener, shutdown, stats).await
    })
}

/// SIGHUP reads the config file again and applies what a running server
/// can change; a file with errors changes nothing.
async fn reload_on_sighup(path: PathBuf, server: frps::Stats) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return tracing::warn!("cannot listen for SIGHUP: reload needs a restart");
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading {}", path.display());
        // Off the runtime: a token command may take its time (it is killed
        // after config::TOKEN_EXEC_TIMEOUT) while logins go on.
        let file = path.clone();
        let loaded = tokio::task::spawn_blocking(move || ServerConfig::load(&file)).await;
        let Ok(loaded) = loaded else {
            tracing::warn!("reload: reading the config failed; the running config stays");
            continue;
        };
        match loaded {
            Ok(new) => {
                for note in &new.notes {
                    tracing::warn!("{note}");
                }
                if let Err(e) = server.reload(&new) {
                    tracing::warn!("reload: {e:#}");
                }
            }
            Err(e) => tracing::warn!("reload refused, the running config stays:\n{e}"),
        }
    }
}
