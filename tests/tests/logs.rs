//! Logging keys with the real binary: `log.disablePrintColor` on a real
//! terminal (util-linux `script` gives frps one), and `log.to` a file.

use std::process::Command;

use e2e::*;

/// What frps prints in its first second on a terminal, with `extra` keys.
fn on_a_terminal(dir: &std::path::Path, extra: &str) -> String {
    let cfg = write_file(
        dir,
        "frps.toml",
        &format!(
            "bindAddr = \"127.0.0.1\"\nbindPort = {}\n{extra}",
            free_port()
        ),
    );
    let cmd = format!("{} -c {}", bin("frps").display(), cfg.display());
    let out = Command::new("timeout")
        .args(["2", "script", "-qec", &cmd, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .expect("script (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colours_on_a_terminal_unless_disabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coloured = on_a_terminal(dir.path(), "");
    assert!(
        coloured.contains("frps listening") && coloured.contains("\x1b["),
        "{coloured:?}"
    );
    let plain = on_a_terminal(dir.path(), "log.disablePrintColor = true\n");
    assert!(
        plain.contains("frps listening") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}

#[test]
fn log_to_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("frps.log");
    let (mut frps, _) = spawn_frps(
        dir.path(),
        &format!("log.to = \"{}\"\nlog.maxDays = 2\n", log.display()),
    );
    frps.signal("TERM");
    assert_eq!(frps.wait_exit(WAIT), Some(0));
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(
        text.contains("frps listening for clients") && !text.contains('\x1b'),
        "{text}"
    );
}
