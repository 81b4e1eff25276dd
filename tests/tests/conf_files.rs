//! Every file in conf/ parses and validates with the real config loader.

use std::path::{Path, PathBuf};

use shared::config::{ClientConfig, ServerConfig};

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("conf")
}

#[test]
fn every_file_in_conf_is_valid() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(conf_dir()).expect("read conf/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        if name.starts_with("frps") {
            ServerConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        } else if name.starts_with("frpc") {
            ClientConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        } else {
            panic!("{name}: conf/ files must start with frps or frpc so this test knows how to parse them");
        }
        checked.push(name);
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "frpc.toml",
            "frpc_full_example.toml",
            "frps.toml",
            "frps_full_example.toml"
        ],
        "conf/ holds exactly the documented files"
    );
}

/// The full examples document the defaults: parsing one must give the same
/// values as parsing nothing.
#[test]
fn full_examples_state_the_defaults() {
    let mut full =
        ServerConfig::load(&conf_dir().join("frps_full_example.toml")).expect("frps full");
    let empty = ServerConfig::from_toml("").expect("defaults");
    // Where the file lives is not a setting.
    full.config_dir = empty.config_dir.clone();
    assert_eq!(format!("{full:?}"), format!("{empty:?}"));

    let mut full =
        ClientConfig::load(&conf_dir().join("frpc_full_example.toml")).expect("frpc full");
    let mut empty = ClientConfig::from_toml("").expect("defaults");
    full.config_dir = empty.config_dir.clone();
    empty.proxies = full.proxies.clone();
    assert_eq!(format!("{full:?}"), format!("{empty:?}"));
    let p = &full.proxies[0];
    assert_eq!(
        (p.local_ip.as_str(), p.proxy_type.as_str()),
        ("127.0.0.1", "tcp")
    );
}
