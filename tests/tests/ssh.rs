//! Real OpenSSH through the tunnel: sshd on loopback, exposed by frpc through
//! frps, and the real `ssh` client talking to the port frps opened.
//!
//! Needs `/usr/sbin/sshd` (openssh-server) and `/usr/bin/ssh` (openssh-client);
//! the test fails, rather than skips, when they are missing. It runs sshd as
//! root, as CI does, and logs in as the current user.

use std::io::{Read, Write};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use e2e::sshd::{current_user, keygen, require_openssh, spawn_sshd, ssh_command};
use e2e::{Proc, WAIT};

/// Size streamed through the SSH session in each direction.
const BULK: usize = 16 << 20;

/// Upper bound for one ssh command, bulk transfers included.
const SSH_DEADLINE: Duration = Duration::from_secs(180);

/// The processes under test; on failure their logs go into the panic message.
struct Rig {
    sshd: Proc,
    frps: Option<Proc>,
    frpc: Option<Proc>,
}

impl Rig {
    /// Stops everything, collects all logs and panics with them.
    fn fail(&mut self, what: &str, ssh_stderr: &str) -> ! {
        // Client first, so its log does not end with the server going away.
        for p in [self.frpc.as_mut(), self.frps.as_mut(), Some(&mut self.sshd)]
            .into_iter()
            .flatten()
        {
            let _ = p.child.kill();
        }
        let mut logs = String::new();
        for (name, proc) in [
            ("sshd", Some(&mut self.sshd)),
            ("frps", self.frps.as_mut()),
            ("frpc", self.frpc.as_mut()),
        ] {
            let text = match proc {
                Some(p) => {
                    // Collects whatever the process logged that nobody waited for.
                    let _ = catch_unwind(AssertUnwindSafe(|| p.wait_exit(Duration::from_secs(5))));
                    p.output()
                }
                None => "(not started)".to_owned(),
            };
            logs.push_str(&format!("\n----- {name} log -----\n{text}\n"));
        }
        let mut hint = String::new();
        if logs.contains("account is locked") {
            hint = "\nhint: sshd refuses the login because the account's password field in \
                    /etc/shadow starts with '!'; with UsePAM no that counts as locked"
                .to_owned();
        }
        panic!("{what}{hint}\n----- ssh stderr -----\n{ssh_stderr}{logs}");
    }
}

/// Runs `f`, turning a panic into its message.
fn attempt<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "(non-string panic)".to_owned())
    })
}

/// The ssh client, configured for the throwaway key and host.
struct Client {
    key: PathBuf,
    user: String,
    port: u16,
}

impl Client {
    /// Runs `remote` over ssh, feeding `stdin` from its own thread.
    fn run(&self, remote: &str, stdin: Option<Vec<u8>>) -> Output {
        let mut cmd = ssh_command(&self.key);
        cmd.arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(remote)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ssh");
        let writer = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => Some(thread::spawn(move || {
                // Dropping the pipe afterwards sends EOF.
                pipe.write_all(&data)
            })),
            _ => None,
        };
        let reader = |pipe: Option<Box<dyn Read + Send>>| {
            thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = reader(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let err = reader(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + SSH_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait ssh") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let stdout = out.join().expect("stdout reader");
        let mut stderr = err.join().expect("stderr reader");
        if let Some(w) = writer {
            if let Err(e) = w.join().expect("stdin writer") {
                stderr.extend_from_slice(format!("\n(writing ssh's stdin failed: {e})").as_bytes());
            }
        }
        let status = status.unwrap_or_else(|| {
            stderr.extend_from_slice(format!("\n(ssh killed after {SSH_DEADLINE:?})").as_bytes());
            // Reaped above; a killed process reports failure.
            child.wait().expect("wait ssh")
        });
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn openssh_through_tunnel() {
    require_openssh();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();

    let host_key = dir.join("ssh_host_ed25519_key");
    let user_key = dir.join("id_ed25519");
    keygen(&host_key);
    keygen(&user_key);
    let authorized_keys = dir.join("authorized_keys");
    std::fs::copy(user_key.with_extension("pub"), &authorized_keys).expect("write authorized_keys");

    let (sshd, sshd_port) = spawn_sshd(dir, &host_key, &authorized_keys);
    let mut rig = Rig {
        sshd,
        frps: None,
        frpc: None,
    };

    let nonce = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
    let auth = format!("auth.token = \"ssh-e2e-{nonce}\"\n");
    let frps_port = match attempt(|| e2e::spawn_frps(dir, &auth)) {
        Ok((frps, port)) => {
            rig.frps = Some(frps);
            port
        }
        Err(e) => rig.fail(&format!("frps did not start: {e}"), ""),
    };
    let sshd_addr = std::net::SocketAddr::from(([127, 0, 0, 1], sshd_port));
    let client_extra = format!("{auth}{}", e2e::tcp_proxy("ssh", sshd_addr, 0));
    let mut frpc = e2e::spawn_frpc(dir, frps_port, &client_extra);
    let line = attempt(|| frpc.wait_line("proxy started: reachable on server port", WAIT));
    rig.frpc = Some(frpc);
    let remote_port = match line {
        Ok(line) => e2e::port_from_line(&line),
        Err(e) => rig.fail(&format!("frpc did not start the ssh proxy: {e}"), ""),
    };
    if remote_port == sshd_port || remote_port == frps_port {
        rig.fail(
            &format!("frps opened port {remote_port}, which is sshd's or its own"),
            "",
        );
    }

    let ssh = Client {
        key: user_key,
        user: current_user(),
        port: remote_port,
    };

    // 1. A command whose output only the remote shell can produce.
    let t = Instant::now();
    let out = ssh.run(&format!("echo tunnel-ok-$((6*7))-{nonce}-marker"), None);
    let expected = format!("tunnel-ok-42-{nonce}-marker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains(&expected) {
        rig.fail(
            &format!(
                "ssh echo through the tunnel: status {}, expected {expected:?} in stdout {stdout:?}",
                out.status
            ),
            &String::from_utf8_lossy(&out.stderr),
        );
    }
    eprintln!("ssh echo: {:?}", t.elapsed());

    // 2. Upload: the remote side hashes what it read from stdin.
    let up = e2e::pattern(BULK, 0x5553_4875_7570);
    let up_hash = e2e::sha256(&up);
    let t = Instant::now();
    let out = ssh.run("sha256sum", Some(up));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let remote_hash = stdout.split_whitespace().next().unwrap_or("");
    if !out.status.success() || remote_hash != up_hash {
        rig.fail(
            &format!(
                "upload of {BULK} bytes: status {}, remote sha256sum printed {stdout:?}, expected {up_hash}",
                out.status
            ),
            &String::from_utf8_lossy(&out.stderr),
        );
    }
    eprintln!("ssh upload of {BULK} bytes: {:?}", t.elapsed());

    // 3. Download: the remote side cats a file, we hash what arrives.
    let down = e2e::pattern(BULK, 0x446f_776e);
    let down_hash = e2e::sha256(&down);
    let file = dir.join("download.bin");
    std::fs::write(&file, &down).expect("write download file");
    drop(down);
    let t = Instant::now();
    let out = ssh.run(
        &format!("cat {}", shell_quote(&file.display().to_string())),
        None,
    );
    let got_hash = e2e::sha256(&out.stdout);
    if !out.status.success() || got_hash != down_hash {
        rig.fail(
            &format!(
                "download of {BULK} bytes: status {}, got {} bytes hashing to {got_hash}, expected {down_hash}",
                out.status,
                out.stdout.len()
            ),
            &String::from_utf8_lossy(&out.stderr),
        );
    }
    eprintln!("ssh download of {BULK} bytes: {:?}", t.elapsed());
    eprintln!("total: {:?}", started.elapsed());
}
