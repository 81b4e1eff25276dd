use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::ServerConfig;
use tokio_util::sync::CancellationToken;

/// frps: the public side of the tunnel.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (frp-compatible TOML). Without it, defaults apply.
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration file and exit.
    Verify,
}

fn load(path: Option<&PathBuf>) -> Result<ServerConfig> {
    match path {
        Some(p) => Ok(ServerConfig::load(p)?),
        None => ServerConfig::from_toml("").context("default configuration"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load(cli.config.as_ref()) {
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
        println!("frps: configuration {path} is valid");
        return ExitCode::SUCCESS;
    }
    let log = config.log.clone();
    net::logging::run_main("frps", &log, || serve(config))
}

fn serve(config: ServerConfig) -> Result<()> {
    let runtime = net::util::runtime("frps").context("cannot start the async runtime")?;
    runtime.block_on(async {
        let addr = (config.bind_addr.as_str(), config.bind_port);
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {}:{}", config.bind_addr, config.bind_port)
        })?;
        let shutdown = CancellationToken::new();
        tokio::spawn(net::util::cancel_on_signal(shutdown.clone()));
        frps::run(config, listener, shutdown).await
    })
}
