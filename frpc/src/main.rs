use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::{ClientConfig, WebServerConfig};
use hyper::Method;
use net::logging::Field;
use net::util::Threads;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// frpc: the LAN side of the tunnel.
#[derive(Parser)]
#[command(version, about, disable_version_flag = true)]
struct Cli {
    /// Print the version (`-v` as frp, `-V` too).
    #[arg(short = 'v', short_alias = 'V', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// Configuration file: TOML, YAML (.yaml/.yml), JSON (.json) or frp's legacy INI.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "frpc.toml"
    )]
    config: PathBuf,
    /// Allow what frp calls unsafe features: `TokenSourceExec` lets
    /// `auth.tokenSource.type = "exec"` run its command.
    #[arg(
        long = "allow-unsafe",
        alias = "allow_unsafe",
        global = true,
        value_name = "FEATURE"
    )]
    allow_unsafe: Vec<String>,
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
    /// Show the running frpc's connection and proxies (admin API, webServer.*).
    Status,
    /// Make the running frpc read its config file again: proxies added,
    /// removed and changed, the others left running.
    Reload,
    /// Stop the running frpc.
    Stop,
    /// Run one tcp proxy from flags, no file: frpc tcp -s host:7000 -t TOKEN -l 22 -r 6000 -n ssh
    Tcp(frpc::quick::Proxy),
    /// Run one udp proxy from flags (as tcp).
    Udp(frpc::quick::Proxy),
    /// Run one http proxy from flags: -d name -l port -n name.
    Http(frpc::quick::Proxy),
    /// Run one https proxy from flags: -d name -l port -n name.
    Https(frpc::quick::Proxy),
    /// Run one tcpmux (HTTP CONNECT) proxy from flags: -d name -l port -n name.
    Tcpmux(frpc::quick::Proxy),
    /// Run one stcp proxy from flags (--sk KEY -l port -n name), or with
    /// `visitor` one visitor of it (--server_name NAME --sk KEY --bind_port PORT).
    Stcp(frpc::quick::Private),
    /// Run one sudp proxy, or with `visitor` one visitor of it (as stcp).
    Sudp(frpc::quick::Private),
    /// Run one xtcp (peer-to-peer) proxy, or with `visitor` one visitor of
    /// it (as stcp; the STUN server is frp's default).
    Xtcp(frpc::quick::Private),
}

impl Command {
    /// The config of a proxy or visitor given on the command line.
    fn quick(&self) -> Option<anyhow::Result<ClientConfig>> {
        let (kind, flags) = match self {
            Command::Tcp(p) => ("tcp", p),
            Command::Udp(p) => ("udp", p),
            Command::Http(p) => ("http", p),
            Command::Https(p) => ("https", p),
            Command::Tcpmux(p) => ("tcpmux", p),
            Command::Stcp(p) => return Some(frpc::quick::private("stcp", p)),
            Command::Sudp(p) => return Some(frpc::quick::private("sudp", p)),
            Command::Xtcp(p) => return Some(frpc::quick::private("xtcp", p)),
            _ => return None,
        };
        Some(frpc::quick::config(kind, flags))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = config::allow_unsafe(&cli.allow_unsafe) {
        eprintln!("frpc: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(Command::Convert) = cli.command {
        return match config::convert::to_toml(&cli.config, config::legacy::Side::Client) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("frpc: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let admin_call = match cli.command {
        Some(Command::Status) => Some((Method::GET, "/api/status")),
        Some(Command::Reload) => Some((Method::GET, "/api/reload")),
        Some(Command::Stop) => Some((Method::POST, "/api/stop")),
        _ => None,
    };
    if let Some((method, path)) = admin_call {
        return finish(admin(&cli.config, method, path));
    }
    let quick = cli.command.as_ref().and_then(Command::quick);
    let is_quick = quick.is_some();
    let loaded = match quick {
        Some(config) => config,
        None => ClientConfig::load(&cli.config).map_err(Into::into),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("frpc: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A quick proxy has no file to reload.
    let path = (!is_quick).then(|| cli.config.clone());
    if let Some(Command::Verify) = cli.command {
        for note in &config.notes {
            println!("{note}");
        }
        let oversized = frpc::oversized_registrations(&config);
        for (name, why) in &oversized {
            eprintln!("frpc: proxy {} cannot start: {why}", Field(name));
        }
        if !oversized.is_empty() {
            return ExitCode::FAILURE;
        }
        println!("frpc: configuration {} is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    let log = config.log.clone();
    net::logging::run_main("frpc", &log, || {
        for note in &config.notes {
            warn!("{note}");
        }
        serve(config, path)
    })
}

/// `frpc status`, `reload` or `stop`: only `webServer.*` of the file is
/// needed to reach the running client.
fn admin(path: &std::path::Path, method: Method, api: &str) -> Result<String> {
    let web = WebServerConfig::read_from(path)?;
    let rt = net::util::runtime("frpc", Threads::One).context("cannot start the async runtime")?;
    rt.block_on(async {
        match api {
            "/api/status" => frpc::cli::status(&web).await,
            "/api/reload" => frpc::cli::call(&web, method, api)
                .await
                .map(|_| "reload: done (frpc status shows the proxies)\n".to_owned())
                .context("reload refused; the running config stays"),
            _ => frpc::cli::call(&web, method, api)
                .await
                .map(|_| "stop: done\n".to_owned()),
        }
    })
}

fn finish(answer: Result<String>) -> ExitCode {
    match answer {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("frpc: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: ClientConfig, path: Option<PathBuf>) -> Result<()> {
    // With one multiplexed connection, everything frpc does passes through
    // that connection's TLS state, one thread at a time: one thread does it
    // without cross-thread wakeups (docs/performance.md). Without
    // multiplexing, each forwarded connection has a TLS connection of its
    // own, and those can use every core.
    let threads = match config.transport.tcp_mux {
        true => Threads::One,
        false => Threads::PerCore,
    };
    let runtime = net::util::runtime("frpc", threads).context("cannot start the async runtime")?;
    runtime.block_on(async {
        let web = config.web_server.clone();
        let admin = match web.enabled() {
            true => Some(
                tokio::net::TcpListener::bind((web.addr.as_str(), web.port))
                    .await
                    .with_context(|| {
                        format!("cannot listen on webServer {}:{}", web.addr, web.port)
                    })?,
            ),
            false => None,
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(net::util::cancel_on_signal(shutdown.clone()));
        let client = frpc::Client::new(config, path, shutdown);
        tokio::spawn(reload_on_sighup(client.controller()));
        client.run(frpc::Events::default(), admin).await
    })
}

/// SIGHUP reloads the config file, as `frpc reload` does.
async fn reload_on_sighup(ctl: std::sync::Arc<frpc::Controller>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return warn!("cannot listen for SIGHUP: reload through the admin API only");
    };
    while hup.recv().await.is_some() {
        info!("SIGHUP: reloading the config file");
        if let Err(e) = ctl.reload_off_runtime().await {
            warn!("reload refused, the running config stays:\n{e}");
        }
    }
}
