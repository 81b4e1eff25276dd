//! frp users' files, unchanged: frp's own example configs (TOML and legacy
//! INI, in tests/fixtures/frp, see NOTICE there), the same settings in
//! YAML and JSON, templating, includes, and INI conversion — through the
//! real binaries where a person would use them.

use std::path::{Path, PathBuf};
use std::process::Command;

use config::{ClientConfig, Format, ServerConfig};
use e2e::services::{banner, eventually, greeting};
use e2e::web::curl;
use e2e::{bin, free_port, spawn_frps, write_file, Proc};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/frp")
        .join(name)
}

/// `<binary> -c <file> verify`: exit code and everything it printed.
fn verify(binary: &str, file: &Path) -> (i32, String) {
    let out = Command::new(bin(binary))
        .arg("-c")
        .arg(file)
        .arg("verify")
        .output()
        .expect("run verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Every key of frp's example files is honoured or named in one "not
/// supported yet" line; nothing is "unknown"; one run shows them all.
#[test]
fn frp_example_files_load_and_name_what_is_not_there() {
    for (binary, file) in [("frps", "frps.toml"), ("frpc", "frpc.toml")] {
        let (code, out) = verify(binary, &fixture(file));
        assert_eq!((code, out.lines().count()), (0, 1), "{file}: {out}");
    }
    for file in ["frpc_full_example.toml", "frpc_legacy_full.ini"] {
        let (code, out) = verify("frpc", &fixture(file));
        assert_eq!(code, 0, "{file}: {out}");
        assert_eq!(count(&out, "unknown"), 0, "{file}: {out}");
        assert!(
            out.contains(&format!(
                "configuration {} is valid",
                fixture(file).display()
            )),
            "{out}"
        );
        let plugins = if file.ends_with(".ini") { 7 } else { 10 };
        for (what, n) in [
            ("transport.bandwidthLimit is not supported yet", 1),
            ("transport.bandwidthLimitMode is not supported yet", 1),
            ("loadBalancer is not supported yet", 1),
            ("healthCheck is not supported yet", 2),
            ("transport.proxyProtocolVersion asks for the PROXY protocol, which is not supported yet; the proxy is not started", 1),
            ("\" is not supported yet; the proxy is not started", plugins),
            // stcp and sudp proxies and visitors run.
            ("\"stcp\" is not supported yet", 0),
            ("\"sudp\" is not supported yet", 0),
            // xtcp too.
            ("\"xtcp\" is not supported yet", 0),
            (
                "visitor plugin \"virtual_net\" is not supported yet",
                if file.ends_with(".ini") { 0 } else { 1 },
            ),
        ] {
            assert_eq!(count(&out, what), n, "{file}: {what:?} in\n{out}");
        }
        let lines: Vec<usize> = out
            .lines()
            .filter_map(|l| l.split(':').nth(1)?.parse().ok())
            .collect();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "file order: {out}");
    }
    for file in ["frps_full_example.toml", "frps_legacy_full.ini"] {
        let (code, out) = verify("frps", &fixture(file));
        // Server plugins can refuse logins; running without them would
        // quietly let in what the file keeps out, so that one is an error.
        assert_eq!(code, 1, "{file}: {out}");
        assert_eq!(count(&out, "unknown"), 0, "{file}: {out}");
        assert!(
            out.contains("httpPlugins: server plugins are not supported yet"),
            "{out}"
        );
        assert!(out.contains("1 error"), "{out}");
        assert!(out.contains("kcpBindPort is not supported yet"), "{out}");
        assert!(!out.contains("natholeAnalysisDataReserveHours"), "{out}");
    }
}

/// Loaded settings without where they came from, for comparing.
fn client_settings(mut c: ClientConfig) -> String {
    c.notes.clear();
    c.config_dir = PathBuf::new();
    format!("{c:?}")
}

fn server_settings(mut s: ServerConfig) -> String {
    s.notes.clear();
    s.config_dir = PathBuf::new();
    format!("{s:?}")
}

/// `frpc convert` / `frps convert` write TOML that loads to exactly the
/// settings the INI file loads to.
#[test]
fn legacy_ini_converts_to_toml_that_loads_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let convert = |binary: &str, file: &Path| {
        let out = Command::new(bin(binary))
            .arg("-c")
            .arg(file)
            .arg("convert")
            .output()
            .expect("convert");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let toml = String::from_utf8(out.stdout).expect("utf-8");
        assert!(toml.starts_with("# Converted from"), "{toml}");
        toml
    };
    let ini = fixture("frpc_legacy_full.ini");
    let toml = write_file(dir.path(), "frpc.toml", &convert("frpc", &ini));
    let from_ini = ClientConfig::load(&ini).expect("ini loads");
    let from_toml = ClientConfig::load(&toml).expect("converted loads");
    // ssh, ssh_random, [range:tcp_port] (17), dns, [range:udp_port] (11),
    // web01, web02, tcpmuxhttpconnect, secret_tcp (stcp), p2p_tcp (xtcp);
    // plugins and the proxy asking for the PROXY protocol are not started.
    assert_eq!(from_ini.proxies.len(), 35);
    assert_eq!(from_ini.visitors.len(), 2);
    assert_eq!(client_settings(from_toml), client_settings(from_ini));
    let text = std::fs::read_to_string(&toml).expect("read");
    for kept in [
        "healthCheck",
        "loadBalancer",
        "[[visitors]]",
        "[proxies.plugin]",
    ] {
        assert!(text.contains(kept), "convert keeps {kept} for frp: {text}");
    }
    // Keys not built keep frp's types: strings stay strings.
    for typed in [
        "groupKey = \"123456\"",
        "timeoutSeconds = 3",
        "maxFailed = 3",
    ] {
        assert!(text.contains(typed), "convert writes {typed}: {text}");
    }

    // frps: frp's full INI converts whole (server plugins included, for
    // frp), and the converted file is refused for the same one reason.
    let reasons = |e: config::ConfigError| -> Vec<String> {
        let config::ConfigError::Invalid { errors, .. } = e else {
            panic!("{e}");
        };
        errors
            .into_iter()
            .filter(|d| !d.message.contains("INI format is deprecated"))
            .map(|d| (d.message, d.level))
            .map(|(m, l)| format!("{l:?} {m}"))
            .collect()
    };
    let full_ini = fixture("frps_legacy_full.ini");
    let converted = write_file(dir.path(), "frps_full.toml", &convert("frps", &full_ini));
    assert!(std::fs::read_to_string(&converted)
        .expect("read")
        .contains("[[httpPlugins]]"));
    let from_ini = reasons(ServerConfig::load(&full_ini).expect_err("plugins refused"));
    assert_eq!(
        reasons(ServerConfig::load(&converted).expect_err("plugins refused")),
        from_ini
    );
    assert_eq!(
        from_ini.iter().filter(|r| r.starts_with("Error")).count(),
        1,
        "{from_ini:?}"
    );

    // And without its server plugins, the settings are the same.
    let full = std::fs::read_to_string(fixture("frps_legacy_full.ini")).expect("read");
    let cut = full.find("[plugin.").unwrap_or(full.len());
    let ini = write_file(dir.path(), "frps.ini", &full[..cut]);
    let toml = write_file(dir.path(), "frps.toml", &convert("frps", &ini));
    let from_ini = ServerConfig::load(&ini).expect("ini loads");
    assert_eq!(from_ini.vhost_https_port, 443);
    assert!(from_ini.port_allowed(3001) && !from_ini.port_allowed(3002));
    assert_eq!(
        server_settings(ServerConfig::load(&toml).expect("converted loads")),
        server_settings(from_ini)
    );
}

/// One config in the three formats loads to the same settings.
#[test]
fn yaml_json_and_toml_load_to_the_same_settings() {
    let toml = r#"
serverAddr = "frps.example.com"
serverPort = 7001
auth.token = "s3cret"
transport.tcpMux = false
transport.poolCount = 2
metadatas.rack = "12"

[[proxies]]
name = "ssh"
type = "tcp"
localPort = 22
remotePort = 6000

[[proxies]]
name = "web"
type = "http"
localPort = 80
customDomains = ["a.example.com", "b.example.com"]
requestHeaders.set.x-from = "frp"
"#;
    let yaml = r#"
serverAddr: frps.example.com
serverPort: 7001
auth:
  token: s3cret
transport:
  tcpMux: false
  poolCount: 2
metadatas:
  rack: "12"
proxies:
  - name: ssh
    type: tcp
    localPort: 22
    remotePort: 6000
  - name: web
    type: http
    localPort: 80
    customDomains: [a.example.com, b.example.com]
    requestHeaders:
      set:
        x-from: frp
"#;
    let json = r#"{
  "serverAddr": "frps.example.com", "serverPort": 7001,
  "auth": {"token": "s3cret"},
  "transport": {"tcpMux": false, "poolCount": 2},
  "metadatas": {"rack": "12"},
  "proxies": [
    {"name": "ssh", "type": "tcp", "localPort": 22, "remotePort": 6000},
    {"name": "web", "type": "http", "localPort": 80,
     "customDomains": ["a.example.com", "b.example.com"],
     "requestHeaders": {"set": {"x-from": "frp"}}}
  ]
}"#;
    let t = client_settings(ClientConfig::from_text(toml, Format::Toml).expect("toml"));
    let y = client_settings(ClientConfig::from_text(yaml, Format::Yaml).expect("yaml"));
    let j = client_settings(ClientConfig::from_text(json, Format::Json).expect("json"));
    assert_eq!(y, t);
    assert_eq!(j, t);
    assert!(t.contains("s3cret") || t.contains("Token"), "{t}");
}

/// Errors in YAML and JSON say line and column too, and suggest.
#[test]
fn yaml_and_json_errors_say_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write_file(
        dir.path(),
        "frpc.yaml",
        "serverAdr: x\nproxies:\n  - name: a\n    type: tcp\n    localPort: ssh\n",
    );
    let (code, out) = verify("frpc", &bad);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("frpc.yaml:1:1: unknown key `serverAdr`; did you mean `serverAddr`?"),
        "{out}"
    );
    assert!(
        out.contains("frpc.yaml:5:16: proxy \"a\": localPort: invalid type: string \"ssh\""),
        "{out}"
    );
    let bad = write_file(
        dir.path(),
        "frpc.json",
        "{\n  \"serverPort\": 7000,\n  \"transport\": {\"tcpMux\": \"yes\"}\n}",
    );
    let (code, out) = verify("frpc", &bad);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("frpc.json:3:27: transport.tcpMux: invalid type"),
        "{out}"
    );
}

/// A templated file (environment variables, 50 proxies from one range
/// block) plus an included YAML file run for real: frpc logs in with the
/// token from the environment and every proxy serves.
#[test]
fn templates_and_includes_run_for_real() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_frps, port) = spawn_frps(dir.path(), "auth.token = \"from-env\"\n");
    let service = banner("templated\n");
    let admin = free_port();
    std::fs::create_dir(dir.path().join("confd")).expect("mkdir");
    write_file(
        &dir.path().join("confd"),
        "extra.yaml",
        &format!(
            "proxies:\n  - name: extra\n    type: tcp\n    localPort: {}\n",
            service.port()
        ),
    );
    let text = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {port}\nauth.token = \"{{{{ .Envs.FRP_RS_TEST_TOKEN }}}}\"\n\
         webServer.port = {admin}\nincludes = [\"confd/*.yaml\"]\n\
         {{{{- range $_, $n := parseNumberRange \"1-10,11-50\" }}}}\n\
         [[proxies]]\nname = \"svc-{{{{ $n }}}}\"\ntype = \"tcp\"\nlocalPort = {}\n\
         {{{{- end }}}}\n",
        service.port()
    );
    let cfg = write_file(dir.path(), "frpc.toml", &text);
    let mut cmd = Command::new(bin("frpc"));
    cmd.arg("-c").arg(&cfg).env("FRP_RS_TEST_TOKEN", "from-env");
    let _frpc = Proc::spawn(cmd);
    let mut status = serde_json::Value::Null;
    eventually("51 proxies running", || {
        let (code, body) = curl(admin, &[], "/api/status");
        status = serde_json::from_str(&body).unwrap_or_default();
        let running = status["tcp"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|p| p["status"] == "running").count());
        code == 200 && running == 51
    });
    let proxies = status["tcp"].as_array().expect("tcp proxies");
    for name in ["svc-1", "svc-37", "svc-50", "extra"] {
        let p = proxies.iter().find(|p| p["name"] == name).expect(name);
        let remote = p["remote_addr"].as_str().expect("remote_addr");
        let port: u16 = remote
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        assert_eq!(
            greeting(port).as_deref(),
            Some("templated\n"),
            "{name} at {remote}"
        );
    }

    // Without the variable, frpc refuses at once and names the line.
    let out = Command::new(bin("frpc"))
        .arg("-c")
        .arg(&cfg)
        .arg("verify")
        .env_remove("FRP_RS_TEST_TOKEN")
        .output()
        .expect("verify");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("frpc.toml:3: template: environment variable FRP_RS_TEST_TOKEN is not set"),
        "{said}"
    );
}

/// A legacy INI's `includes` are INI proxy sections, as in frp; `start`
/// leaves the others configured but not started.
#[test]
fn legacy_includes_and_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("confd")).expect("mkdir");
    write_file(
        &dir.path().join("confd"),
        "web.ini",
        "[web]\ntype = http\nlocal_port = 80\ncustom_domains = a.example.com,b.example.com\n",
    );
    let main = write_file(
        dir.path(),
        "frpc.ini",
        "[common]\nserver_addr = 127.0.0.1\nincludes = ./confd/*.ini\nstart = web\n\n[ssh]\ntype = tcp\nlocal_port = 22\n",
    );
    let c = ClientConfig::load(&main).expect("loads");
    let names: Vec<_> = c.proxies.iter().map(|p| (p.name(), p.enabled())).collect();
    assert_eq!(names, [("ssh", false), ("web", true)]);
    let config::ProxyConfig::Http(web) = &c.proxies[1] else {
        panic!("web is http: {:?}", c.proxies[1]);
    };
    assert_eq!(web.custom_domains, ["a.example.com", "b.example.com"]);
}

/// frp's multiplexer keepalive interval is our heartbeat's when smaller.
#[test]
fn tcp_mux_keepalive_interval_lowers_the_heartbeat() {
    let c = ClientConfig::from_toml("transport.tcpMuxKeepaliveInterval = 10\n").expect("ok");
    assert_eq!(
        c.heartbeat_interval(),
        Some(std::time::Duration::from_secs(10))
    );
    let c = ClientConfig::from_toml("").expect("ok");
    assert_eq!(
        c.heartbeat_interval(),
        Some(std::time::Duration::from_secs(30))
    );
    let c = ClientConfig::from_toml(
        "transport.tcpMux = false\ntransport.tcpMuxKeepaliveInterval = 10\n",
    )
    .expect("ok");
    assert_eq!(
        c.heartbeat_interval(),
        Some(std::time::Duration::from_secs(30))
    );
}

/// `includes` stops at 256 files, with an error that says so.
#[test]
fn includes_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let confd = dir.path().join("confd");
    std::fs::create_dir(&confd).expect("mkdir");
    for i in 0..257 {
        write_file(&confd, &format!("p{i:03}.toml"), "");
    }
    let main = write_file(dir.path(), "frpc.toml", "includes = [\"confd/*.toml\"]\n");
    let e = ClientConfig::load(&main).expect_err("too many").to_string();
    assert!(e.contains("includes: more than 256 files match"), "{e}");
    std::fs::remove_file(confd.join("p256.toml")).expect("rm");
    ClientConfig::load(&main).expect("256 are fine");
}
