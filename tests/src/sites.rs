//! Real sites for the virtual host tests: nginx (plain HTTP) and
//! `openssl s_server` (TLS with a certificate of its own), each on a free
//! 127.0.0.1 port.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{free_port, write_file, Proc, WAIT};

/// nginx on 127.0.0.1 as site `name`: `/echo` answers with what it was
/// sent, `/files/` serves (and takes PUTs into) its directory, anything
/// else answers `site NAME path`. One process (`master_process off`), so
/// killing it when the test ends leaves no orphaned workers behind.
pub fn nginx_site(dir: &Path, name: &str) -> (Proc, u16, PathBuf) {
    let root = dir.join(name);
    let files = root.join("files");
    std::fs::create_dir_all(files.join("tmp")).expect("dirs");
    for _ in 0..5 {
        let port = free_port();
        let conf = format!(
            "user root;\nmaster_process off;\ndaemon off;\nerror_log stderr notice;\npid {root}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {root}/files/tmp;\n\
              proxy_temp_path {root}/p; fastcgi_temp_path {root}/f; uwsgi_temp_path {root}/u; scgi_temp_path {root}/s;\n\
              server {{\n  listen 127.0.0.1:{port};\n\
               location /echo {{ default_type text/plain; return 200 \"site={name} host=$host uri=$request_uri \
xff=$http_x_forwarded_for xfh=$http_x_forwarded_host xfp=$http_x_forwarded_proto xri=$http_x_real_ip \
custom=$http_x_custom req=\\\"$request\\\"\\n\"; }}\n\
               location /files/ {{ root {root}; dav_methods PUT; create_full_put_path on; client_max_body_size 0; }}\n\
               location / {{ default_type text/plain; return 200 \"site {name} $request_uri\\n\"; }}\n\
              }}\n}}\n",
            root = root.display()
        );
        let file = write_file(&root, "nginx.conf", &conf);
        let mut c = Command::new("/usr/sbin/nginx");
        c.arg("-c").arg(&file).arg("-p").arg(&root);
        let mut p = Proc::spawn(c);
        // nginx says nothing when it starts well: poll its port.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (p, port, files);
            }
            if p.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = p.child.kill();
    }
    panic!("nginx did not start");
}

/// A TLS site: `openssl s_server -WWW` with a self-signed certificate for
/// `name`, serving `index.html` = `body`. Returns it, its port and its
/// certificate (PEM).
/// A self-signed certificate for `cn` with `san` (`DNS:x` or `IP:x`) as
/// `dir/c.pem` and its key as `dir/k.pem`; returns their paths.
pub fn self_signed(dir: &Path, cn: &str, san: &str) -> (PathBuf, PathBuf) {
    let ok = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-subj",
            &format!("/CN={cn}"),
        ])
        .args(["-addext", &format!("subjectAltName={san}")])
        .output()
        .expect("openssl req");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    (dir.join("c.pem"), dir.join("k.pem"))
}

pub fn tls_site(dir: &Path, name: &str, body: &str) -> (Proc, u16, String) {
    let site = dir.join(name);
    std::fs::create_dir_all(&site).expect("dir");
    std::fs::write(site.join("index.html"), body).expect("index");
    self_signed(&site, name, &format!("DNS:{name}"));
    let cert = std::fs::read_to_string(site.join("c.pem")).expect("cert");
    for _ in 0..5 {
        let port = free_port();
        let mut c = Command::new("openssl");
        c.current_dir(&site)
            .args(["s_server", "-cert", "c.pem", "-key", "k.pem", "-WWW"]);
        c.args(["-accept", &format!("127.0.0.1:{port}")]);
        let mut p = Proc::spawn(c);
        if let Some(line) = p.first_of(&["ACCEPT", "rror"], WAIT) {
            if line.contains("ACCEPT") {
                return (p, port, cert);
            }
        }
    }
    panic!("openssl s_server did not start");
}
