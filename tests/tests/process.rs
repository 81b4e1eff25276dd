//! The binaries as a user runs them: exit codes, messages, signals, and what
//! happens to ports when frpc dies.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;

const TOKEN: &str = "auth.token = \"process-test\"\n";

fn echo_listener() -> (std::net::TcpListener, std::net::SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

/// frps and frpc as processes with one proxy to a listening local port.
struct Tunnel {
    frps: Proc,
    frpc: Proc,
    /// frps's port for clients.
    port: u16,
    /// The proxy's port on frps.
    remote: u16,
    _local: std::net::TcpListener,
    _dir: tempfile::TempDir,
}

impl Tunnel {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (frps, port) = spawn_frps(dir.path(), TOKEN);
        let (local_listener, local) = echo_listener();
        let mut frpc = spawn_frpc(
            dir.path(),
            port,
            &format!("{TOKEN}{}", tcp_proxy("svc", local, 0)),
        );
        let remote = port_from_line(&frpc.wait_line("reachable on server port", WAIT));
        Tunnel {
            frps,
            frpc,
            port,
            remote,
            _local: local_listener,
            _dir: dir,
        }
    }
}

/// Runs `program [args…] -c file`; returns success and stderr.
fn run_with_config(program: &str, args: &[&str], config: &std::path::Path) -> (bool, String) {
    let out = Command::new(bin(program))
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn verify_accepts_good_and_names_the_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write_file(
        dir.path(),
        "good.toml",
        "serverPort = 7000\n[[proxies]]\nname = \"ssh\"\ntype = \"tcp\"\nlocalPort = 22\nremotePort = 6000\n",
    );
    let (ok, err) = run_with_config("frpc", &["verify"], &good);
    assert!(ok, "{err}");

    let bad = write_file(
        dir.path(),
        "bad.toml",
        "serverPort = 7000\nsevrerAddr = \"x\"\n",
    );
    let (ok, err) = run_with_config("frpc", &["verify"], &bad);
    assert!(!ok);
    assert!(
        err.contains("sevrerAddr") && err.contains("bad.toml"),
        "{err}"
    );

    // Every problem of the file in one run, in file order, with its line.
    let bad = write_file(
        dir.path(),
        "many.toml",
        "sevrerAddr = \"x\"\n[[proxies]]\nname = \"a\"\ntype = \"udp\"\nlocalPort = 0\n\
         remotePorts = 1\n[[proxies]]\nname = \"w\"\ntype = \"stcpp\"\n",
    );
    let (ok, err) = run_with_config("frpc", &["verify"], &bad);
    assert!(!ok);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("many.toml:")).collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].contains("many.toml:1:") && lines[0].contains("sevrerAddr"),
        "{err}"
    );
    assert!(
        lines[1].contains("many.toml:6:") && lines[1].contains("remotePorts"),
        "{err}"
    );
    assert!(
        lines[2].contains("many.toml:9:") && lines[2].contains("\"stcpp\""),
        "{err}"
    );

    let bad = write_file(
        dir.path(),
        "frps-bad.toml",
        "bindPort = 7000\nallowPorts = [{ single = 0 }]\n",
    );
    let (ok, err) = run_with_config("frps", &["verify"], &bad);
    assert!(!ok);
    assert!(
        err.contains("allowPorts[0]") && err.contains("frps-bad.toml"),
        "{err}"
    );

    let (ok, err) = run_with_config("frps", &[], &dir.path().join("nope.toml"));
    assert!(!ok);
    assert!(err.contains("nope.toml"), "{err}");
}

#[test]
fn wrong_token_exits_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), TOKEN);
    let (_l, local) = echo_listener();
    let mut frpc = spawn_frpc(
        dir.path(),
        port,
        &format!("auth.token = \"not-it\"\n{}", tcp_proxy("x", local, 0)),
    );
    let code = frpc.wait_exit(WAIT);
    assert_ne!(code, Some(0), "{}", frpc.output());
    assert!(
        frpc.output().contains("login rejected: invalid token"),
        "{}",
        frpc.output()
    );
}

/// Valid keys, but a registration no message can carry: the proxy could
/// never start, so verify says so rather than the running frpc.
#[test]
fn verify_refuses_a_registration_no_message_carries() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Each table within its own bound (32 entries of 256 bytes), together
    // more than the 16 KiB of one message.
    let labels: String = (0..32)
        .map(|i| format!("k{i} = \"{}\"\n", "v".repeat(248)))
        .collect();
    let domains: Vec<String> = (0..8)
        .map(|i| format!("\"site{i}.{}.example.com\"", "d".repeat(40)))
        .collect();
    let domains = domains.join(", ");
    let big = write_file(
        dir.path(),
        "big.toml",
        &format!(
            "serverPort = 7000\n[[proxies]]\nname = \"ok\"\ntype = \"tcp\"\nlocalPort = 22\n\
             [[proxies]]\nname = \"labelled\"\ntype = \"http\"\nlocalPort = 80\n\
             customDomains = [{domains}]\n\
             [proxies.annotations]\n{labels}[proxies.metadatas]\n{labels}"
        ),
    );
    let (ok, err) = run_with_config("frpc", &["verify"], &big);
    assert!(!ok, "{err}");
    assert!(
        err.contains("proxy labelled cannot start")
            && err.contains("annotations")
            && !err.contains("proxy ok"),
        "{err}"
    );
}

#[test]
fn login_fail_exit_false_keeps_retrying() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens here: the first login fails.
    let port = free_port();
    let mut frpc = spawn_frpc(dir.path(), port, "loginFailExit = false\n");
    frpc.wait_line("reconnecting in", WAIT);
    frpc.wait_line("reconnecting in", WAIT);
    assert!(
        frpc.child.try_wait().expect("try_wait").is_none(),
        "frpc exited"
    );
}

#[test]
fn killed_frpc_frees_its_port_within_a_second() {
    let t = Tunnel::start();
    // The moved-out processes live in locals; the tempdir and the local
    // listener stay in `t` until the end.
    let (mut frps, mut frpc, remote) = (t.frps, t.frpc, t.remote);
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", remote)).is_err(),
        "port should be taken"
    );

    frpc.signal("KILL");
    let killed = Instant::now();
    frpc.wait_exit(WAIT);
    loop {
        if std::net::TcpListener::bind(("127.0.0.1", remote)).is_ok() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "port {remote} still taken 1 s after frpc was killed; frps log:\n{}",
            frps.output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A client gone without a goodbye is a warning, however its socket
    // ended (a TLS EOF, a bare close, a reset).
    let line = frps.wait_line("its proxies are closed", WAIT);
    assert!(
        line.contains("WARN") && line.contains("connection lost: closed without a goodbye"),
        "{line}"
    );
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    let t = Tunnel::start();
    let (mut frps, mut frpc, port, remote) = (t.frps, t.frpc, t.port, t.remote);

    frpc.signal("INT");
    assert_eq!(frpc.wait_exit(WAIT), Some(0), "{}", frpc.output());
    // A client that stopped said goodbye: no warning.
    let line = frps.wait_line("its proxies are closed", WAIT);
    assert!(
        line.contains("INFO") && line.contains("client disconnected"),
        "{line}"
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", remote)).is_ok(),
        "proxy port still bound"
    );

    frps.signal("TERM");
    assert_eq!(frps.wait_exit(WAIT), Some(0), "{}", frps.output());
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "frps port still bound"
    );
}

/// frp's command lines: `frps -p PORT -t TOKEN` runs without a file (flags
/// with underscores or dashes), `-v` prints the version, frpc's quick mode
/// takes the dash spellings frp's help prints; flags with `-c` are refused.
#[test]
fn frp_command_lines_work_as_frp_prints_them() {
    for bin_name in ["frps", "frpc"] {
        let out = Command::new(bin(bin_name)).arg("-v").output().expect("run");
        assert!(out.status.success(), "{bin_name} -v");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("{bin_name} ")));
    }
    let port = free_port();
    // Without a file, frps keeps its certificate and frpc its known
    // servers in the state directory (systemd's, here a scratch one).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut frps = Command::new(bin("frps"));
    frps.current_dir(dir.path())
        .env("STATE_DIRECTORY", dir.path())
        .args([
            "-p",
            &port.to_string(),
            "-t",
            "flags",
            "--bind-addr",
            "127.0.0.1",
            "--log_level",
            "info",
        ]);
    let mut frps = Proc::spawn(frps);
    frps.wait_line("frps listening", WAIT);
    // The line to pin frps, as frps prints it, works as written.
    let pin = frps
        .output()
        .lines()
        .find_map(|l| {
            l.split_once("put this line in frpc's config: ")
                .map(|(_, p)| p.to_owned())
        })
        .expect("the pinning line");
    assert!(
        pin.starts_with("transport.tls.serverFingerprint = \""),
        "{pin}"
    );
    let mut pinned = spawn_frpc(
        dir.path(),
        port,
        &format!("auth.token = \"flags\"\n{pin}\n"),
    );
    pinned.wait_line("logged in", WAIT);
    let (_l, echo) = echo_listener();
    assert!(dir.path().join("frps_selfsigned.crt").exists());
    let mut frpc = Command::new(bin("frpc"));
    frpc.current_dir(dir.path())
        .env("STATE_DIRECTORY", dir.path())
        .args([
            "tcp",
            "--server-addr",
            "127.0.0.1",
            "--server-port",
            &port.to_string(),
        ])
        .args([
            "-t",
            "flags",
            "--local-port",
            &echo.port().to_string(),
            "--proxy-name",
            "quick",
        ]);
    let mut frpc = Proc::spawn(frpc);
    frpc.wait_line("proxy started", WAIT);
    let cfg = write_file(dir.path(), "frps.toml", "bindPort = 7000\n");
    let out = Command::new(bin("frps"))
        .args(["-p", "7001", "-c"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));
}

/// `sh -c` that runs `cmd` in a mount namespace of its own where `ro` is a
/// read-only bind mount (as Docker's `:ro` or a ConfigMap) and `/var/lib`
/// is `varlib`, so the default state directory lands in a scratch folder.
fn in_read_only_namespace(ro: &std::path::Path, varlib: &std::path::Path, cmd: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} && \
         mount --bind {lib} /var/lib && exec {cmd}",
            ro = ro.display(),
            lib = varlib.display()
        ));
    c
}

/// Config folders mounted read-only (a real read-only bind mount): frps
/// and frpc start and work, keeping the self-signed certificate and the
/// known servers in the default state directory (`/var/lib/frp-rs` as
/// root), and say so.
#[test]
fn read_only_config_folders_keep_state_in_the_state_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s_conf, c_conf) = (dir.path().join("s"), dir.path().join("c"));
    let (s_lib, c_lib) = (dir.path().join("s-lib"), dir.path().join("c-lib"));
    for d in [&s_conf, &c_conf, &s_lib, &c_lib] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let port = free_port();
    let s_cfg = write_file(
        &s_conf,
        "frps.toml",
        &format!("bindAddr = \"127.0.0.1\"\nbindPort = {port}\n{TOKEN}"),
    );
    let frps_cmd = format!("{} -c {}", bin("frps").display(), s_cfg.display());
    let mut frps = Proc::spawn(in_read_only_namespace(&s_conf, &s_lib, &frps_cmd));
    let line = frps.wait_line("self-signed", WAIT);
    assert!(
        line.contains("/var/lib/frp-rs/frps_selfsigned.crt"),
        "{line}"
    );
    frps.wait_line("frps listening", WAIT);
    assert!(s_lib.join("frp-rs/frps_selfsigned.crt").exists());
    assert!(!s_conf.join("frps_selfsigned.crt").exists());

    let (_l, echo) = echo_listener();
    let c_cfg = write_file(
        &c_conf,
        "frpc.toml",
        &format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {port}\n{TOKEN}{}",
            tcp_proxy("ro", echo, 0)
        ),
    );
    let frpc_cmd = format!("{} -c {}", bin("frpc").display(), c_cfg.display());
    let mut frpc = Proc::spawn(in_read_only_namespace(&c_conf, &c_lib, &frpc_cmd));
    let line = frpc.wait_line("trusting server", WAIT);
    assert!(
        line.contains("/var/lib/frp-rs/frpc_known_servers"),
        "{line}"
    );
    frpc.wait_line("proxy started", WAIT);
    let known = std::fs::read_to_string(c_lib.join("frp-rs/frpc_known_servers")).expect("known");
    assert!(known.contains(&format!("127.0.0.1:{port}")), "{known}");
}

/// A server whose certificate changed since frpc met it: frpc exits with
/// one message that says so once, with the fix (the line to remove, or
/// the key to pin the new one).
#[test]
fn a_changed_certificate_is_said_once_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), TOKEN);
    let known = write_file(
        dir.path(),
        "frpc_known_servers",
        &format!("127.0.0.1:{port} {}\n", "ab".repeat(32)),
    );
    let mut frpc = spawn_frpc(dir.path(), port, TOKEN);
    assert_eq!(frpc.wait_exit(WAIT), Some(1), "{}", frpc.output());
    let out = frpc.output();
    assert_eq!(out.matches("CERTIFICATE CHANGED").count(), 1, "{out}");
    assert!(out.contains(&known.display().to_string()), "{out}");
    assert!(
        out.contains("transport.tls.serverFingerprint = \""),
        "{out}"
    );
}
