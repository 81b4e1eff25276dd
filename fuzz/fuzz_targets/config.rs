//! The whole config loader on text: template, format (TOML, YAML, JSON,
//! or guessed as frp guesses; legacy INI by its `[common]`), compat
//! notes, typed settings and validation. frpc's config is read as one
//! sent to its admin API (`ClientConfig::from_text_as`, `Trust::Upload`),
//! frps's as `ServerConfig::from_text` reads it. No file is read and no
//! command run (fuzz_targets/loader.rs says how).
//!
//! The first byte picks the side and the format; the rest is the file.
//!
//! Properties: no panic; every problem of a refused file is placed within
//! it; the settings of an accepted file, written out as TOML, are accepted
//! again and read the same.
#![no_main]

mod loader;

use config::legacy::Side;
use config::{ClientConfig, ConfigError, Format, ServerConfig, Trust};
use libfuzzer_sys::fuzz_target;

fn check_places(text: &str, e: &ConfigError) {
    let ConfigError::Invalid { errors, .. } = e else {
        panic!("not a problem of the text: {e}");
    };
    let lines = text.matches('\n').count() + 1;
    for d in errors {
        if let Some(line) = d.line {
            assert!(
                line >= 1 && line <= lines,
                "{d} (the file has {lines} lines)"
            );
        }
        if let Some(col) = d.column {
            assert!(col >= 1, "{d}");
        }
    }
}

fn client(text: &str, ext: &str) {
    let at = loader::path(ext);
    if loader::unsafe_to_load(text, Side::Client, Some(at), None) {
        return;
    }
    match ClientConfig::from_text_as(text, at, Trust::Upload) {
        Err(e) => check_places(text, &e),
        Ok(cfg) => {
            let written = toml::to_string(&cfg).expect("settings write as TOML");
            if loader::unsafe_to_load(&written, Side::Client, Some(loader::path("toml")), None) {
                return;
            }
            match ClientConfig::from_text_as(&written, loader::path("toml"), Trust::Upload) {
                Ok(again) => assert_eq!(
                    loader::settings(&cfg),
                    loader::settings(&again),
                    "written out:\n{written}"
                ),
                Err(e) => panic!("accepted settings, written out, are refused: {e}\n{written}"),
            }
        }
    }
}

fn server(text: &str, format: Format) {
    if loader::unsafe_to_load(text, Side::Server, None, Some(format)) {
        return;
    }
    match ServerConfig::from_text(text, format) {
        Err(e) => check_places(text, &e),
        Ok(cfg) => {
            let written = toml::to_string(&cfg).expect("settings write as TOML");
            if loader::unsafe_to_load(&written, Side::Server, None, Some(Format::Toml)) {
                return;
            }
            match ServerConfig::from_text(&written, Format::Toml) {
                Ok(again) => assert_eq!(
                    loader::settings(&cfg),
                    loader::settings(&again),
                    "written out:\n{written}"
                ),
                Err(e) => panic!("accepted settings, written out, are refused: {e}\n{written}"),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    loader::fixed_env();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match pick % 8 {
        0 => client(&text, "toml"),
        1 => client(&text, "yaml"),
        2 => client(&text, "json"),
        // Guessed as frp guesses; legacy INI by its [common].
        3 => client(&text, "ini"),
        4 => server(&text, Format::Toml),
        5 => server(&text, Format::Yaml),
        6 => server(&text, Format::Json),
        _ => {
            client(&text, "ini");
            server(&text, Format::Toml);
        }
    }
});
