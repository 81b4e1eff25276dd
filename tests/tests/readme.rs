//! The README's recipes run as written: the TOML blocks are taken from
//! README.md itself, only the public ports, the server's address and the
//! local sites' ports are swapped for ones chosen at run time (each swap
//! must find its text, so a recipe that drifts fails here), and real frps,
//! frpc, nginx, `openssl s_server` and curl do the rest.

use std::process::Command;

use e2e::*;

/// The ```toml blocks of the README section headed `heading`.
fn toml_blocks(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    section
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

/// `text` with each (from, to) swapped; every `from` must be there.
fn swap(text: &str, pairs: &[(&str, String)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        assert!(
            out.contains(from),
            "the recipe no longer says {from:?}:\n{text}"
        );
        out = out.replace(from, to);
    }
    out
}

/// curl `url` with the URL's name resolved to 127.0.0.1; (status, body).
fn curl(name: &str, port: u16, url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    (status.to_owned(), body.to_owned())
}

#[test]
fn publish_a_website_works_as_written() {
    let blocks = toml_blocks("Publish a website");
    assert_eq!(blocks.len(), 2, "the recipe has a server and a client file");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_www, www_port, _) = nginx_site(dir.path(), "www");
    let (_secure, secure_port, _) = tls_site(dir.path(), "secure.example.com", "secure site\n");
    let (bind, http, https) = (free_port(), free_port(), free_port());

    // The recipe's frps binds every address; the test keeps to loopback.
    let server = swap(
        &blocks[0],
        &[
            (
                "bindPort = 7000",
                format!("bindAddr = \"127.0.0.1\"\nbindPort = {bind}"),
            ),
            ("vhostHTTPPort = 80\n", format!("vhostHTTPPort = {http}\n")),
            (
                "vhostHTTPSPort = 443\n",
                format!("vhostHTTPSPort = {https}\n"),
            ),
        ],
    );
    let client = swap(
        &blocks[1],
        &[
            ("\"public-host.example.com\"", "\"127.0.0.1\"".into()),
            ("serverPort = 7000", format!("serverPort = {bind}")),
            ("localPort = 8080", format!("localPort = {www_port}")),
            ("localPort = 8443", format!("localPort = {secure_port}")),
        ],
    );
    let mut cmd = Command::new(bin("frps"));
    cmd.arg("-c")
        .arg(write_file(dir.path(), "frps.toml", &server));
    let mut frps = Proc::spawn(cmd);
    frps.wait_line("frps listening for clients", WAIT);
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c")
        .arg(write_file(dir.path(), "frpc.toml", &client));
    let mut frpc = Proc::spawn(cmd);
    frpc.wait_line("proxy started", WAIT);
    frpc.wait_line("proxy started", WAIT);

    // http://www.example.com/ reaches the LAN web server, with the
    // forwarding headers the README names.
    let url = format!("http://www.example.com:{http}/echo");
    let (status, body) = curl("www.example.com", http, &url);
    assert_eq!(status, "200", "{body}");
    assert!(body.starts_with("site=www host=www.example.com "), "{body}");
    for header in [
        "xff=127.0.0.1",
        "xfh=www.example.com",
        "xfp=http",
        "xri=127.0.0.1",
    ] {
        assert!(body.contains(header), "{header} missing: {body}");
    }
    // An unknown name gets 404.
    let (status, _) = curl(
        "nobody.example.com",
        http,
        &format!("http://nobody.example.com:{http}/"),
    );
    assert_eq!(status, "404");
    // https://secure.example.com/ reaches the LAN TLS server untouched.
    let url = format!("https://secure.example.com:{https}/index.html");
    let (status, body) = curl("secure.example.com", https, &url);
    assert_eq!((status.as_str(), body.as_str()), ("200", "secure site\n"));
}
