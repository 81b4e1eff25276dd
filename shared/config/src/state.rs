//! Where frps and frpc keep the files they write themselves — frps's
//! self-signed certificate and traffic history, frpc's known servers —
//! when the config names no path for them. In order:
//! 1. systemd's `$STATE_DIRECTORY` (a unit's `StateDirectory=`);
//! 2. next to the config file, when the file is already there or that
//!    folder is writable (so an existing install keeps its files);
//! 3. the default state directory: `/var/lib/frp-rs` for root, else
//!    `$XDG_STATE_HOME/frp-rs` or `~/.local/state/frp-rs` (made, mode 0700);
//! 4. next to the config (or the working directory, without one), where
//!    writing then fails with an error that names the key to set.
//!
//! A read-only config folder (Docker `:ro`, a Kubernetes ConfigMap) thus
//! works without any setting.

use std::path::{Path, PathBuf};

/// The directory to keep `file` in; `config_dir` is the config file's
/// folder, empty when there is no file (flags only).
pub fn state_dir(config_dir: &Path, file: &str) -> PathBuf {
    state_dir_with(
        config_dir,
        file,
        &|k| std::env::var_os(k),
        Path::new(ROOT_DEFAULT),
    )
}

/// The default state directory of a process run as root.
const ROOT_DEFAULT: &str = "/var/lib/frp-rs";

/// [`state_dir`] with its environment and root's default given (tests give
/// their own, so as not to make `/var/lib/frp-rs` when run as root).
fn state_dir_with(
    config_dir: &Path,
    file: &str,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    root_default: &Path,
) -> PathBuf {
    if let Some(dirs) = env("STATE_DIRECTORY") {
        // systemd lists one per StateDirectory= entry, ":"-separated.
        if let Some(first) = std::env::split_paths(&dirs).find(|d| !d.as_os_str().is_empty()) {
            return first;
        }
    }
    let has_config = !config_dir.as_os_str().is_empty();
    if has_config && (config_dir.join(file).exists() || writable(config_dir)) {
        return config_dir.to_owned();
    }
    if let Some(d) = default_dir(env, root_default) {
        if make_private_dir(&d) {
            return d;
        }
    }
    if has_config {
        config_dir.to_owned()
    } else {
        PathBuf::from(".")
    }
}

/// The documented default, by who runs the process.
fn default_dir(
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    root_default: &Path,
) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if root {
        return Some(root_default.to_owned());
    }
    if let Some(x) = env("XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Some(PathBuf::from(x).join("frp-rs"));
    }
    env("HOME")
        .filter(|h| Path::new(h).is_absolute())
        .map(|h| PathBuf::from(h).join(".local/state/frp-rs"))
}

fn make_private_dir(d: &Path) -> bool {
    use std::os::unix::fs::DirBuilderExt;
    if d.is_dir() {
        return writable(d);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
        .is_ok()
}

/// Whether a file can be made in `dir`: tried, since permissions alone do
/// not tell a read-only mount.
fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".frp-rs-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::fs::PermissionsExt;

    fn env_of(pairs: Vec<(&'static str, PathBuf)>) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone().into_os_string())
        }
    }

    #[test]
    fn systemd_then_beside_the_config_then_the_default() {
        let t = tempfile::tempdir().expect("tempdir");
        let (conf, state, home) = (
            t.path().join("conf"),
            t.path().join("st"),
            t.path().join("h"),
        );
        std::fs::create_dir_all(&conf).expect("mkdir");
        let root_default = t.path().join("var-lib-frp-rs");
        let env = env_of(vec![
            ("STATE_DIRECTORY", state.clone()),
            ("HOME", home.clone()),
        ]);
        assert_eq!(state_dir_with(&conf, "f", &env, &root_default), state);
        let env = env_of(vec![("HOME", home.clone())]);
        assert_eq!(
            state_dir_with(&conf, "f", &env, &root_default),
            conf,
            "writable: beside"
        );
        std::fs::write(conf.join("kept"), "x").expect("write");
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        assert_eq!(
            state_dir_with(&conf, "kept", &env, &root_default),
            conf,
            "an existing file stays"
        );
        if !root {
            // Root writes anywhere: the read-only case is the tests' own.
            let d = state_dir_with(&conf, "f", &env, &root_default);
            assert_eq!(d, home.join(".local/state/frp-rs"));
            assert!(d.is_dir());
        }
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let flags_only = state_dir_with(Path::new(""), "f", &env, &root_default);
        assert_ne!(
            flags_only,
            PathBuf::from(""),
            "never the bare working directory"
        );
    }
}
