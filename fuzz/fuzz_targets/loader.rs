//! What the config targets share: running the whole loader on text
//! without letting it reach a file or a command.
//!
//! The loader reads the process's environment for templates: it is set
//! to a few fixed variables, so runs repeat and no value is a path. A
//! config for frpc is read as one sent to its admin API (`Trust::Upload`:
//! no token source is read or run) as if it were a file in a folder that
//! does not exist; frps's is read as the operator's. What is left that
//! touches the disk is skipped: an input whose tree has `includes`
//! (globbed on the disk) or, for frps, a token source or `custom404Page`
//! (read, or looked at) never reaches the loader. The tree is made as the
//! loader makes it (template, then legacy INI or the format), so nothing
//! the loader sees escapes the check.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Once;

use config::doc::{Node, Value};
use config::format::Format;
use config::legacy::{is_legacy, Side};

/// The environment templates see.
pub const ENV: &[(&str, &str)] = &[
    ("FRP_SERVER", "10.0.0.1"),
    ("FRP_PORT", "7000"),
    ("PORTS", "6000-6002,7000"),
    ("EMPTY", ""),
];

pub fn fixed_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, _) in std::env::vars_os() {
            std::env::remove_var(k);
        }
        for (k, v) in ENV {
            std::env::set_var(k, v);
        }
    });
}

pub fn envs() -> HashMap<String, String> {
    ENV.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Where an input is said to live: a folder that does not exist.
pub fn path(ext: &str) -> &'static Path {
    match ext {
        "toml" => Path::new("/nonexistent-frp-fuzz/frpc.toml"),
        "yaml" => Path::new("/nonexistent-frp-fuzz/frpc.yaml"),
        "json" => Path::new("/nonexistent-frp-fuzz/frpc.json"),
        _ => Path::new("/nonexistent-frp-fuzz/frpc.ini"),
    }
}

/// Keys whose values the loader takes to the disk.
fn reaching(side: Side) -> &'static [&'static str] {
    match side {
        Side::Client => &["includes"],
        Side::Server => &["includes", "tokenSource", "tokenFile", "custom404Page"],
    }
}

/// Whether `tree` has any key that would send the loader to the disk.
pub fn reaches_files(tree: &Node, side: Side) -> bool {
    let keys = reaching(side);
    let mut stack = vec![tree];
    while let Some(n) = stack.pop() {
        match &n.value {
            Value::Map(m) => {
                for (k, v) in m {
                    if keys.contains(&k.name.as_str()) {
                        return true;
                    }
                    stack.push(v);
                }
            }
            Value::Seq(items) => stack.extend(items),
            _ => {}
        }
    }
    false
}

/// Whether the loader, given `text` as the file at `at` (format from its
/// name) or in `format`, might touch the disk.
pub fn unsafe_to_load(text: &str, side: Side, at: Option<&Path>, format: Option<Format>) -> bool {
    let Ok(rendered) = config::template::render(text, &envs()) else {
        // The loader stops at the template.
        return false;
    };
    let text = rendered.text.as_str();
    let tree = if format.is_none() && is_legacy(text) {
        Some(config::fuzzing::legacy(text, side).0)
    } else {
        let format = format.or_else(|| at.and_then(Format::of_path));
        config::format::parse(text, format, 0).ok()
    };
    tree.is_some_and(|t| reaches_files(&t, side))
}

/// A loaded config's settings, to compare two loads.
pub fn settings<T: serde::Serialize>(cfg: &T) -> serde_json::Value {
    serde_json::to_value(cfg).expect("settings serialize")
}
