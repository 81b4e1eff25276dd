//! frp's legacy INI reader (`legacy::parse`, for frpc's and frps's files;
//! an INI file sent to frpc's admin API is read by it too) and `convert`'s
//! TOML writer on its tree; and, for frpc's files, the whole loader on the
//! INI text and on the TOML `convert` makes of it.
//!
//! Properties: every problem found is placed within the file; the TOML
//! `convert` writes parses again as TOML; an INI file frpc accepts, once
//! converted, is accepted too and gives the same settings.
#![no_main]

mod loader;

use config::format::{parse, Format};
use config::fuzzing::{legacy, to_toml};
use config::legacy::{is_legacy, Side};
use config::{ClientConfig, Trust};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    loader::fixed_env();
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1);
    for side in [Side::Client, Side::Server] {
        let (tree, found) = legacy(&text, side);
        for (at, message, _) in &found {
            if let Some(at) = at {
                assert_eq!(at.file, 0, "{message}");
                assert!(
                    at.line >= 1 && at.line as usize <= lines,
                    "{at:?} {message}"
                );
                assert!(at.col >= 1, "{at:?} {message}");
            }
        }
        let toml = to_toml(&tree, side);
        if let Err(e) = parse(&toml, Some(Format::Toml), 0) {
            panic!("convert wrote TOML that does not parse: {e:?}\n{toml}");
        }
        // The loader on the INI file and on its conversion: the same
        // verdict and settings. (A template would be rendered first;
        // that is the template target's.)
        if side != Side::Client || !is_legacy(&text) || text.contains("{{") {
            continue;
        }
        if loader::reaches_files(&tree, side) {
            continue;
        }
        let ini = ClientConfig::from_text_as(&text, loader::path("ini"), Trust::Upload);
        let Ok(ini) = ini else { continue };
        let converted = ClientConfig::from_text_as(&toml, loader::path("toml"), Trust::Upload);
        match converted {
            Ok(c) => assert_eq!(
                loader::settings(&ini),
                loader::settings(&c),
                "the converted file reads differently:\n{toml}"
            ),
            Err(e) => panic!("frpc takes the INI file, not its conversion: {e}\n{toml}"),
        }
    }
});
