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

/// A file beside this one that is not declared above would never be
/// compiled, let alone run.
#[test]
fn every_test_file_is_a_module() {
    let declared: Vec<&str> = include_str!("e2e.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/") {
        let path = entry.expect("entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "e2e" {
            files += 1;
            assert!(
                declared.contains(&stem),
                "tests/{stem}.rs is not a module of tests/e2e.rs: add `mod {stem};`"
            );
        }
    }
    assert_eq!(files, declared.len(), "declared: {declared:?}");
}
