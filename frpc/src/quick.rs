//! One proxy from the command line, as frp offers: `frpc tcp -s host:7000
//! -t TOKEN -l 22 -r 6000 -n ssh`, so a quick tunnel needs no file. The
//! flags are frp's (`pkg/config/flags.go`); they are turned into the same
//! TOML a file would hold and read by the same loader, so every check and
//! message is the one a file gets.

use anyhow::{Context, Result};
use clap::Args;
use config::ClientConfig;

/// The flags every kind has: where frps is and how to log.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// frps's address, or `address:port`.
    #[arg(
        short = 's',
        long = "server_addr",
        alias = "server-addr",
        default_value = "127.0.0.1"
    )]
    pub server_addr: String,
    /// frps's port (when -s has none).
    #[arg(
        short = 'P',
        long = "server_port",
        alias = "server-port",
        default_value_t = 7000
    )]
    pub server_port: u16,
    /// auth.token.
    #[arg(short = 't', long = "token", default_value = "")]
    pub token: String,
    #[arg(short = 'u', long = "user", default_value = "")]
    pub user: String,
    #[arg(long = "client-id", alias = "client_id", default_value = "")]
    pub client_id: String,
    /// Only "tcp" is built.
    #[arg(short = 'p', long = "protocol", default_value = "tcp")]
    pub protocol: String,
    #[arg(long = "log_level", alias = "log-level", default_value = "info")]
    pub log_level: String,
    #[arg(long = "log_file", alias = "log-file", default_value = "console")]
    pub log_file: String,
    #[arg(long = "log_max_days", alias = "log-max-days", default_value_t = 3)]
    pub log_max_days: u32,
    #[arg(long = "disable_log_color", alias = "disable-log-color")]
    pub disable_log_color: bool,
    #[arg(long = "tls_enable", alias = "tls-enable", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_enable: bool,
    #[arg(
        long = "tls_server_name",
        alias = "tls-server-name",
        default_value = ""
    )]
    pub tls_server_name: String,
}

/// The proxy's own flags (each kind uses its part).
#[derive(Args, Debug, Clone)]
pub struct Proxy {
    #[command(flatten)]
    pub common: Common,
    #[arg(
        short = 'n',
        long = "proxy_name",
        alias = "proxy-name",
        default_value = ""
    )]
    pub name: String,
    #[arg(
        short = 'i',
        long = "local_ip",
        alias = "local-ip",
        default_value = "127.0.0.1"
    )]
    pub local_ip: String,
    #[arg(short = 'l', long = "local_port", alias = "local-port")]
    pub local_port: Option<u16>,
    /// tcp and udp: the public port (0: frps chooses).
    #[arg(
        short = 'r',
        long = "remote_port",
        alias = "remote-port",
        default_value_t = 0
    )]
    pub remote_port: u16,
    /// http, https, tcpmux: names (repeat, or comma-separated).
    #[arg(
        short = 'd',
        long = "custom_domain",
        alias = "custom-domain",
        value_delimiter = ','
    )]
    pub custom_domains: Vec<String>,
    #[arg(long = "sd", default_value = "")]
    pub subdomain: String,
    #[arg(long = "locations", value_delimiter = ',')]
    pub locations: Vec<String>,
    #[arg(long = "http_user", alias = "http-user", default_value = "")]
    pub http_user: String,
    #[arg(long = "http_pwd", alias = "http-pwd", default_value = "")]
    pub http_password: String,
    #[arg(
        long = "host_header_rewrite",
        alias = "host-header-rewrite",
        default_value = ""
    )]
    pub host_header_rewrite: String,
    #[arg(long = "mux", default_value = "httpconnect")]
    pub multiplexer: String,
    #[arg(long = "ue")]
    pub use_encryption: bool,
    #[arg(long = "uc")]
    pub use_compression: bool,
}

/// `frpc stcp` / `frpc sudp` / `frpc xtcp`: a private proxy from flags, or with the
/// `visitor` subcommand a visitor of one (frp's `frpc stcp visitor`).
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Private {
    #[command(flatten)]
    pub proxy: Proxy,
    /// The proxy's secretKey.
    #[arg(long = "sk", default_value = "")]
    pub secret_key: String,
    /// allowUsers (repeat, or comma-separated).
    #[arg(long = "allow_users", alias = "allow-users", value_delimiter = ',')]
    pub allow_users: Vec<String>,
    #[command(subcommand)]
    pub role: Option<Role>,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Role {
    /// Run one visitor of the proxy instead: --server_name NAME --sk KEY --bind_port PORT
    Visitor(Visitor),
}

/// A visitor's flags (frp's `registerVisitorBaseConfigFlags`).
#[derive(Args, Debug, Clone)]
pub struct Visitor {
    #[command(flatten)]
    pub common: Common,
    #[arg(
        short = 'n',
        long = "visitor_name",
        alias = "visitor-name",
        default_value = ""
    )]
    pub name: String,
    #[arg(long = "sk", default_value = "")]
    pub secret_key: String,
    #[arg(long = "server_name", alias = "server-name", default_value = "")]
    pub server_name: String,
    #[arg(long = "server-user", alias = "server_user", default_value = "")]
    pub server_user: String,
    #[arg(long = "bind_addr", alias = "bind-addr", default_value = "127.0.0.1")]
    pub bind_addr: String,
    #[arg(
        long = "bind_port",
        alias = "bind-port",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub bind_port: i32,
    #[arg(long = "ue")]
    pub use_encryption: bool,
    #[arg(long = "uc")]
    pub use_compression: bool,
}

/// The config the flags describe, for a proxy of `kind`.
pub fn config(kind: &str, p: &Proxy) -> Result<ClientConfig> {
    let mut t = table(&p.common);
    t.insert(
        "proxies".into(),
        toml::Value::Array(vec![proxy(kind, p).into()]),
    );
    load(&t)
}

/// The config of `frpc stcp|sudp|xtcp [visitor]`.
pub fn private(kind: &str, p: &Private) -> Result<ClientConfig> {
    let (mut t, key, entry) = match &p.role {
        Some(Role::Visitor(v)) => (table(&v.common), "visitors", visitor(kind, v)),
        None => {
            let mut e = proxy(kind, &p.proxy);
            e.insert("secretKey".into(), p.secret_key.clone().into());
            let users = p.allow_users.iter().cloned().map(Into::into).collect();
            e.insert("allowUsers".into(), toml::Value::Array(users));
            (table(&p.proxy.common), "proxies", e)
        }
    };
    t.insert(key.into(), toml::Value::Array(vec![entry.into()]));
    load(&t)
}

fn visitor(kind: &str, v: &Visitor) -> toml::Table {
    toml::toml! {
        name = (v.name.clone())
        type = (kind.to_owned())
        secretKey = (v.secret_key.clone())
        serverName = (v.server_name.clone())
        serverUser = (v.server_user.clone())
        bindAddr = (v.bind_addr.clone())
        bindPort = (i64::from(v.bind_port))
        transport = { useEncryption = (v.use_encryption), useCompression = (v.use_compression) }
    }
}

fn load(t: &toml::Table) -> Result<ClientConfig> {
    let text = toml::to_string(t).context("building the config")?;
    ClientConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The common part of the config: where frps is, how to log.
fn table(c: &Common) -> toml::Table {
    let (addr, port) = match c.server_addr.rsplit_once(':') {
        Some((a, port)) if !a.contains(':') && port.parse::<u16>().is_ok() => {
            (a.to_owned(), port.parse().unwrap_or(c.server_port))
        }
        _ => (c.server_addr.clone(), c.server_port),
    };
    let mut t: toml::Table = toml::toml! {
        serverAddr = addr
        serverPort = (i64::from(port))
        user = (c.user.clone())
        clientID = (c.client_id.clone())
        auth = { token = (c.token.clone()) }
        log = { level = (c.log_level.clone()), to = (c.log_file.clone()), maxDays = (i64::from(c.log_max_days)), disablePrintColor = (c.disable_log_color) }
    };
    let mut transport = toml::toml! { protocol = (c.protocol.clone()) tls = { enable = (c.tls_enable), serverName = (c.tls_server_name.clone()) } };
    if c.protocol == "tcp" {
        transport.remove("protocol");
    }
    t.insert("transport".into(), transport.into());
    t
}

fn proxy(kind: &str, p: &Proxy) -> toml::Table {
    let mut e = toml::toml! {
        name = (p.name.clone())
        type = (kind.to_owned())
        localIP = (p.local_ip.clone())
        transport = { useEncryption = (p.use_encryption), useCompression = (p.use_compression) }
    };
    if let Some(port) = p.local_port {
        e.insert("localPort".into(), i64::from(port).into());
    }
    let strings = |v: &[String]| toml::Value::Array(v.iter().cloned().map(Into::into).collect());
    match kind {
        "tcp" | "udp" => {
            e.insert("remotePort".into(), i64::from(p.remote_port).into());
        }
        "stcp" | "sudp" | "xtcp" => {}
        _ => {
            e.insert("customDomains".into(), strings(&p.custom_domains));
            e.insert("subdomain".into(), p.subdomain.clone().into());
        }
    }
    if kind == "http" {
        e.insert("locations".into(), strings(&p.locations));
        e.insert(
            "hostHeaderRewrite".into(),
            p.host_header_rewrite.clone().into(),
        );
    }
    if kind == "http" || kind == "tcpmux" {
        e.insert("httpUser".into(), p.http_user.clone().into());
        e.insert("httpPassword".into(), p.http_password.clone().into());
    }
    if kind == "tcpmux" {
        e.insert("multiplexer".into(), p.multiplexer.clone().into());
    }
    e
}
