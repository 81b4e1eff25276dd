//! Every file in conf/ parses and validates with the real config loader.

use std::path::{Path, PathBuf};

use config::{ClientConfig, ServerConfig};

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
    empty.visitors = full.visitors.clone();
    assert_eq!(format!("{full:?}"), format!("{empty:?}"));
    let kinds: Vec<_> = full.proxies.iter().map(|p| p.kind().as_str()).collect();
    assert_eq!(
        kinds,
        ["tcp", "udp", "https", "http", "tcpmux", "stcp", "sudp", "xtcp"],
        "one proxy of each kind"
    );
    assert_eq!(full.visitors.len(), 2, "an stcp and an xtcp visitor");
}

/// Dotted key paths of a TOML value; an array of tables contributes the keys
/// of each table as `name[type].key` (its `type`, so each proxy kind is
/// checked on its own keys), or `name[].key` without one.
fn keys(v: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                keys(v, &format!("{prefix}{k}."), out);
            }
        }
        toml::Value::Array(a) if a.first().is_some_and(toml::Value::is_table) => {
            for t in a {
                let kind = t.get("type").and_then(|k| k.as_str()).unwrap_or("");
                keys(
                    t,
                    &format!("{}[{kind}].", prefix.trim_end_matches('.')),
                    out,
                );
            }
        }
        _ => {
            out.insert(prefix.trim_end_matches('.').to_owned());
        }
    }
}

fn key_set(v: &toml::Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    keys(v, "", &mut out);
    out
}

/// Every key the config types accept appears in the full example: a loaded
/// config written back out (all fields, defaults filled in) has exactly the
/// keys of the file it came from.
#[test]
fn full_examples_document_every_key() {
    let dir = conf_dir();
    let check = |file: &str, written: toml::Value| {
        let text = std::fs::read_to_string(dir.join(file)).expect("read");
        let documented = key_set(&text.parse::<toml::Table>().expect("toml").into());
        let accepted = key_set(&written);
        let missing: Vec<_> = accepted.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&accepted).collect();
        assert!(missing.is_empty(), "{file} does not document: {missing:?}");
        assert!(
            unknown.is_empty(),
            "{file} documents unknown keys: {unknown:?}"
        );
    };
    let server = ServerConfig::load(&dir.join("frps_full_example.toml")).expect("frps");
    check(
        "frps_full_example.toml",
        toml::Value::try_from(&server).expect("serialize"),
    );
    let client = ClientConfig::load(&dir.join("frpc_full_example.toml")).expect("frpc");
    check(
        "frpc_full_example.toml",
        toml::Value::try_from(&client).expect("serialize"),
    );
}

/// The systemd units in conf/systemd pass `systemd-analyze verify` without
/// a word (unknown keys are only warned about, so any output fails),
/// pointed at the built binaries and this repository's configs.
#[test]
fn systemd_units_verify() {
    let units = conf_dir().join("systemd");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&units).expect("conf/systemd") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        let text = std::fs::read_to_string(&path)
            .expect("unit")
            .replace(
                "/usr/local/bin/frps",
                &e2e::bin("frps").display().to_string(),
            )
            .replace(
                "/usr/local/bin/frpc",
                &e2e::bin("frpc").display().to_string(),
            )
            .replace(
                "/etc/frp/frps.toml",
                &conf_dir().join("frps.toml").display().to_string(),
            )
            .replace(
                "/etc/frp/frpc.toml",
                &conf_dir().join("frpc.toml").display().to_string(),
            );
        std::fs::write(dir.path().join(&name), text).expect("copy");
        // A template is verified through an instance of it.
        let target = name.replace("@.", "@office.");
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.path().join(&target))
            .output()
            .expect("systemd-analyze (package systemd; .ci/install-deps installs it)");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{name}: {said}"
        );
        checked.push(name);
    }
    checked.sort();
    assert_eq!(checked, ["frpc.service", "frpc@.service", "frps.service"]);
}
