use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::ClientConfig;
use tokio_util::sync::CancellationToken;

/// frpc: the LAN side of the tunnel.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (frp-compatible TOML).
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "frpc.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration file and exit.
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match ClientConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("frpc: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Verify) = cli.command {
        println!("frpc: configuration {} is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    let log = config.log.clone();
    net::logging::run_main("frpc", &log, || serve(config))
}

fn serve(config: ClientConfig) -> Result<()> {
    let runtime = net::util::runtime("frpc").context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(net::util::cancel_on_signal(shutdown.clone()));
        frpc::run(config, shutdown, frpc::Events::default()).await
    })
}
