//! Every end-to-end test, as one test binary: each of the files beside this
//! one is a module. One binary links frps, frpc and their dependencies once
//! instead of once per file, which keeps a CI build to a fraction of the disk
//! and link time; nextest still runs every test in a process of its own.

mod admin;
mod admin_browser;
mod conf_files;
mod dashboard_api;
mod dashboard_browser;
mod frp_configs;
mod frp_keys;
mod frps_reload;
mod hardening;
mod http_vhost;
mod https_vhost;
mod liveness;
mod logs;
mod natlab;
mod natlab_p2p;
mod no_mux;
mod old_clients;
mod old_servers;
mod prelogin_props;
mod private;
mod process;
mod proxy_url;
mod quick;
mod readme;
mod scale;
mod security;
mod ssh;
mod stats;
mod tunnel;
mod udp;
mod visitor_attacks;
mod wire_fixtures;
mod xtcp;
