//! Reading the web servers (frpc's admin API, frps's API) as their users
//! do: curl, and the Prometheus project's own parser for `/metrics`.

use std::io::Write;
use std::process::{Command, Stdio};

/// curl against a web server on 127.0.0.1; (status code, body).
pub fn curl(port: u16, args: &[&str], path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = all.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_owned())
}

/// The Prometheus text parsed by prometheus_client's parser: one
/// `name{labels} value` line per sample, sorted labels.
pub fn prometheus_samples(text: &str) -> String {
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\n\
                  for f in parse(sys.stdin.read()):\n    for s in f.samples:\n        \
                  labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n        \
                  print(f'{s.name}{{{labels}}} {s.value}')\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed parser");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
