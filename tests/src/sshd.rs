//! Real OpenSSH for the tests: a throwaway sshd on a free 127.0.0.1 port
//! and the ssh client with options that trust nothing of the machine's own.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Proc, WAIT};

pub const SSHD: &str = "/usr/sbin/sshd";
pub const SSH: &str = "/usr/bin/ssh";
pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

/// `ssh` with key `key`, no config, no known hosts, no prompts; add `-p
/// PORT`, `user@127.0.0.1` and the command.
pub fn ssh_command(key: &Path) -> Command {
    ssh_command_in(None, key)
}

/// [`ssh_command`] run inside network namespace `netns` when given.
pub fn ssh_command_in(netns: Option<&str>, key: &Path) -> Command {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, SSH]);
            c
        }
        None => Command::new(SSH),
    };
    cmd.arg("-F")
        .arg("/dev/null")
        .arg("-T")
        .arg("-i")
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
        ]);
    cmd
}

/// Runs `remote` over ssh to `127.0.0.1:port` (from `netns` when given)
/// with `stdin` fed to it; its whole output.
pub fn ssh_run(
    netns: Option<&str>,
    key: &Path,
    port: u16,
    remote: &str,
    stdin: Option<&[u8]>,
) -> std::process::Output {
    use std::io::Write;
    let mut cmd = ssh_command_in(netns, key);
    cmd.arg("-p")
        .arg(port.to_string())
        .arg(format!("{}@127.0.0.1", current_user()))
        .arg(remote)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("ssh");
    let mut pipe = child.stdin.take().expect("stdin");
    let data = stdin.map(<[u8]>::to_vec);
    // Written from a thread: ssh reads stdin while its output is read here.
    let writer = thread::spawn(move || {
        if let Some(d) = data {
            let _ = pipe.write_all(&d);
        }
    });
    let out = child.wait_with_output().expect("ssh output");
    let _ = writer.join();
    out
}

pub fn require_openssh() {
    let missing: Vec<&str> = [SSHD, SSH, SSH_KEYGEN]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "{} not found: this test needs real OpenSSH; install it with \
         `apt-get install -y openssh-server openssh-client` (CI installs them)",
        missing.join(", ")
    );
}

pub fn keygen(path: &Path) {
    let out = Command::new(SSH_KEYGEN)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "frp-e2e", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen -f {} failed ({}): {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(out.status.success(), "id -un failed: {out:?}");
    let user = String::from_utf8(out.stdout)
        .expect("user name is UTF-8")
        .trim()
        .to_owned();
    assert!(!user.is_empty(), "id -un printed nothing");
    user
}

/// True once `port` answers with an SSH banner. (sshd logs each probe as
/// "kex_exchange_identification: Connection closed by remote host".)
pub fn ssh_banner(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("SSH-2.0-")
}

/// An sshd config listening on `listen` (`ip:port`) that takes the keys in
/// `authorized_keys` and nothing else; its path.
pub fn sshd_config(
    dir: &Path,
    listen: &str,
    host_key: &Path,
    authorized_keys: &Path,
) -> std::path::PathBuf {
    ensure_privsep_dir();
    crate::write_file(
        dir,
        "sshd_config",
        &format!(
            "ListenAddress {listen}\n\
             HostKey {}\n\
             AuthorizedKeysFile {}\n\
             PidFile none\n\
             UsePAM no\n\
             StrictModes no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             UseDNS no\n\
             LogLevel VERBOSE\n",
            host_key.display(),
            authorized_keys.display()
        ),
    )
}

/// The privilege separation directory, which packages create at boot.
fn ensure_privsep_dir() {
    if !Path::new("/run/sshd").exists() {
        use std::os::unix::fs::DirBuilderExt;
        // An error here shows up as sshd's own complaint.
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create("/run/sshd");
    }
}

/// Starts sshd on a free loopback port, retrying if another process takes the
/// port first. Returns it and its port once it serves SSH.
pub fn spawn_sshd(dir: &Path, host_key: &Path, authorized_keys: &Path) -> (Proc, u16) {
    for _ in 0..5 {
        let port = crate::free_port();
        let cfg = sshd_config(dir, &format!("127.0.0.1:{port}"), host_key, authorized_keys);
        let mut cmd = Command::new(SSHD);
        cmd.arg("-D").arg("-e").arg("-f").arg(&cfg);
        let mut sshd = Proc::spawn(cmd);
        let deadline = Instant::now() + WAIT;
        loop {
            if sshd.child.try_wait().expect("try_wait sshd").is_some() {
                break;
            }
            // A banner alone could come from whoever stole the port; sshd
            // still running after it means the port is ours.
            if ssh_banner(port) && sshd.child.try_wait().expect("try_wait sshd").is_none() {
                return (sshd, port);
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not accept connections on port {port} within {WAIT:?}; log:\n{}",
                sshd.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
        let code = sshd.wait_exit(WAIT);
        let log = sshd.output();
        if !(log.contains("Address already in use") || log.contains("Cannot bind any address")) {
            panic!("sshd exited with {code:?} at startup; log:\n{log}");
        }
    }
    panic!("sshd could not bind a free port in 5 attempts");
}
