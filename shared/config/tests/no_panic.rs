//! Whatever text a config holds — it also arrives over frpc's admin API
//! (`PUT /api/config`) — reading it gives settings or errors, never a
//! panic: random mixes of the syntax of every format and of the template
//! language, read as TOML, YAML, JSON, guessed, and legacy INI.

use std::path::Path;

use config::{ClientConfig, Format, ServerConfig};
use proptest::prelude::*;

const PIECES: &[&str] = &[
    "\n",
    " ",
    "=",
    ":",
    ",",
    "-",
    "\"",
    "'",
    "`",
    "[",
    "]",
    "{",
    "}",
    "[[proxies]]",
    "[common]",
    "[range:r]",
    "{{",
    "}}",
    "{{-",
    "-}}",
    "{{/*",
    "*/}}",
    "range",
    "end",
    "else",
    "if",
    "$v",
    ":=",
    ".Envs.HOME",
    ".Envs.NOPE",
    "parseNumberRange \"1-3\"",
    "parseNumberRangePair",
    "\"1-2\"",
    "$v.First",
    "index",
    "name",
    "type",
    "tcp",
    "udp",
    "http",
    "xtcp",
    "localPort",
    "remotePort",
    "22",
    "0",
    "-1",
    "99999999999999999999",
    "1.5",
    "true",
    "null",
    "~",
    "serverAddr",
    "transport",
    "tls",
    ".",
    "auth.tokenSource.type",
    "exec",
    "file",
    "includes",
    "<<",
    "&a",
    "*a",
    "- ",
    "  ",
    "local_port",
    "6000-6001",
    "plugin",
    "healthCheck",
    "é",
    "\u{0}",
    "#",
    ";",
    "proxies",
    "[proxies.plugin]",
    "server_addr",
];

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(PIECES), 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_settings_or_errors(t in text()) {
        for f in [Format::Toml, Format::Yaml, Format::Json] {
            let _ = ClientConfig::from_text(&t, f);
            let _ = ServerConfig::from_text(&t, f);
        }
        for name in ["frpc.ini", "frpc.conf", "frpc.yaml"] {
            let _ = ClientConfig::from_toml_at(&t, Path::new(name));
        }
        let _ = config::template::render(&t, &Default::default());
    }
}
