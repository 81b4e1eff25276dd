//! The config template engine (`config::template::render`: every config
//! file goes through it, an uploaded one too) and frp's number ranges
//! (`number_range`, also what legacy INI `[range:]` sections use).
//!
//! Properties: rendering is deterministic, stays within its output bound,
//! and maps every output line to a line of the template; text without
//! `{{` comes back unchanged; the output, quoted as a raw string in an
//! action, renders back to itself; a parsed range is non-empty, within
//! 65536 numbers, parses again from its own numbers, and is what
//! `parseNumberRange` gives a template.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use config::template::{number_range, render};
use libfuzzer_sys::fuzz_target;

fn envs() -> &'static HashMap<String, String> {
    static ENVS: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENVS.get_or_init(|| {
        HashMap::from([
            ("FRP_SERVER".into(), "10.0.0.1".into()),
            ("PORTS".into(), "6000-6002,7000".into()),
            ("EMPTY".into(), String::new()),
            // Printed, never rendered again.
            ("BRACES".into(), "{{ .Envs.FRP_SERVER }}".into()),
        ])
    })
}

fn check_template(text: &str) {
    let Ok(r) = render(text, envs()) else { return };
    assert_eq!(render(text, envs()).as_ref(), Ok(&r), "deterministic");
    assert!(r.text.len() <= 16 << 20, "over the output bound");
    let template_lines = text.matches('\n').count() as u32 + 1;
    for &l in &r.lines {
        assert!(
            (1..=template_lines).contains(&l),
            "line {l} of {template_lines}"
        );
    }
    if text.contains("{{") {
        assert_eq!(
            r.lines.len(),
            r.text.lines().count(),
            "a line for each output line"
        );
    } else {
        assert_eq!(r.text, text, "text without actions is unchanged");
    }
    // Quoted back in a raw string, it prints as it is.
    if !r.text.contains('`') && !r.text.contains("}}") && r.text.len() < 4096 {
        let quoted = format!("{{{{ `{}` }}}}", r.text);
        let again = render(&quoted, envs()).expect("a raw string renders");
        assert_eq!(again.text, r.text, "{quoted:?}");
    }
}

fn check_range(spec: &str) {
    let Ok(numbers) = number_range(spec) else {
        return;
    };
    assert!(!numbers.is_empty() && numbers.len() <= 65536, "{spec:?}");
    // The same numbers, written out one by one, parse to themselves.
    let written: Vec<String> = numbers.iter().map(i64::to_string).collect();
    assert_eq!(
        number_range(&written.join(",")).as_ref(),
        Ok(&numbers),
        "{spec:?}"
    );
    // A template ranging over it prints every number.
    if !spec.contains(['"', '\\', '`']) && !spec.contains("}}") && !spec.contains('\n') {
        let t = format!("{{{{ range parseNumberRange \"{spec}\" }}}}{{{{ . }}}},{{{{ end }}}}");
        let r = render(&t, envs()).expect("parseNumberRange takes what number_range does");
        assert_eq!(r.text, format!("{},", written.join(",")), "{spec:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_template(&text);
    check_range(&text);
    if let Some((first, rest)) = text.split_once('\n') {
        check_range(first);
        check_template(rest);
    }
});
