//! frps's settings as command-line flags, without a file (frp's
//! `frps -p 7000 -t TOKEN`): each flag given becomes the key it stands for,
//! so the result is read and checked exactly as a file would be.

use clap::Args;

/// frp's frps flags, with underscores (as frp prints them) or dashes.
#[derive(Args, Debug, Default)]
pub struct ServerFlags {
    /// bindPort.
    #[arg(short = 'p', long = "bind_port", alias = "bind-port")]
    pub bind_port: Option<u16>,
    /// bindAddr.
    #[arg(long = "bind_addr", alias = "bind-addr")]
    pub bind_addr: Option<String>,
    /// proxyBindAddr.
    #[arg(long = "proxy_bind_addr", alias = "proxy-bind-addr")]
    pub proxy_bind_addr: Option<String>,
    /// vhostHTTPPort.
    #[arg(long = "vhost_http_port", alias = "vhost-http-port")]
    pub vhost_http_port: Option<u16>,
    /// vhostHTTPSPort.
    #[arg(long = "vhost_https_port", alias = "vhost-https-port")]
    pub vhost_https_port: Option<u16>,
    /// vhostHTTPTimeout, in seconds.
    #[arg(long = "vhost_http_timeout", alias = "vhost-http-timeout")]
    pub vhost_http_timeout: Option<u64>,
    /// webServer.addr.
    #[arg(long = "dashboard_addr", alias = "dashboard-addr")]
    pub dashboard_addr: Option<String>,
    /// webServer.port.
    #[arg(long = "dashboard_port", alias = "dashboard-port")]
    pub dashboard_port: Option<u16>,
    /// webServer.user.
    #[arg(long = "dashboard_user", alias = "dashboard-user")]
    pub dashboard_user: Option<String>,
    /// webServer.password.
    #[arg(long = "dashboard_pwd", alias = "dashboard-pwd")]
    pub dashboard_pwd: Option<String>,
    /// enablePrometheus.
    #[arg(long = "enable_prometheus", alias = "enable-prometheus")]
    pub enable_prometheus: bool,
    /// log.level.
    #[arg(long = "log_level", alias = "log-level")]
    pub log_level: Option<String>,
    /// log.to.
    #[arg(long = "log_file", alias = "log-file")]
    pub log_file: Option<String>,
    /// auth.token.
    #[arg(short = 't', long = "token")]
    pub token: Option<String>,
    /// subDomainHost.
    #[arg(long = "subdomain_host", alias = "subdomain-host")]
    pub subdomain_host: Option<String>,
    /// maxPortsPerClient.
    #[arg(long = "max_ports_per_client", alias = "max-ports-per-client")]
    pub max_ports_per_client: Option<u32>,
    /// transport.tls.force.
    #[arg(long = "tls_only", alias = "tls-only")]
    pub tls_only: bool,
}

impl ServerFlags {
    /// The flags as a TOML file, or None when none was given.
    pub fn to_toml(&self) -> Option<String> {
        let quoted = |v: &str| toml::Value::String(v.to_owned()).to_string();
        let mut lines = Vec::new();
        let mut num = |key: &str, v: Option<u64>| {
            if let Some(v) = v {
                lines.push(format!("{key} = {v}"));
            }
        };
        num("bindPort", self.bind_port.map(u64::from));
        num("vhostHTTPPort", self.vhost_http_port.map(u64::from));
        num("vhostHTTPSPort", self.vhost_https_port.map(u64::from));
        num("vhostHTTPTimeout", self.vhost_http_timeout);
        num("webServer.port", self.dashboard_port.map(u64::from));
        num(
            "maxPortsPerClient",
            self.max_ports_per_client.map(u64::from),
        );
        for (key, v) in [
            ("bindAddr", &self.bind_addr),
            ("proxyBindAddr", &self.proxy_bind_addr),
            ("webServer.addr", &self.dashboard_addr),
            ("webServer.user", &self.dashboard_user),
            ("webServer.password", &self.dashboard_pwd),
            ("log.level", &self.log_level),
            ("log.to", &self.log_file),
            ("auth.token", &self.token),
            ("subDomainHost", &self.subdomain_host),
        ] {
            if let Some(v) = v {
                lines.push(format!("{key} = {}", quoted(v)));
            }
        }
        if self.enable_prometheus {
            lines.push("enablePrometheus = true".into());
        }
        if self.tls_only {
            lines.push("transport.tls.force = true".into());
        }
        (!lines.is_empty()).then(|| lines.join("\n") + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_the_keys_they_stand_for() {
        let flags = ServerFlags {
            bind_port: Some(7001),
            token: Some("a \"quoted\" token".into()),
            enable_prometheus: true,
            ..Default::default()
        };
        let text = flags.to_toml().expect("some flags");
        let cfg = config::ServerConfig::from_toml(&text).expect("valid");
        assert_eq!(cfg.bind_port, 7001);
        assert!(cfg.enable_prometheus);
        assert_eq!(ServerFlags::default().to_toml(), None);
    }
}
