//! Capabilities: what a peer can do, exchanged at login from protocol 5 on
//! (`Login::caps`, `LoginAccepted::caps`), so that a new message, field or
//! proxy kind is used only when both sides have it. A peer of an older
//! version has exactly what its version had ([`implied`]).
//!
//! Names are short ASCII words; unknown ones are kept and ignored.

use std::collections::BTreeSet;

use crate::message::ProxyKind;

/// Most capabilities a login may carry, and the longest name; frps refuses
/// logins beyond them.
pub const MAX_CAPS: usize = 64;
pub const MAX_CAP_LEN: usize = 32;

/// The kinds of proxy every version this code speaks has.
const BASIC_KINDS: [ProxyKind; 5] = [
    ProxyKind::Tcp,
    ProxyKind::Udp,
    ProxyKind::Https,
    ProxyKind::Http,
    ProxyKind::Tcpmux,
];

/// Kinds that came later, each with its capability.
const LATER_KINDS: [ProxyKind; 3] = [ProxyKind::Stcp, ProxyKind::Sudp, ProxyKind::Xtcp];

/// frps takes visitor streams ([`crate::message::Visit`]); frpc opens them.
pub const VISITORS: &str = "visitors";

/// The capability of serving (frps) or running (frpc) proxies of `kind`.
pub fn proxy(kind: ProxyKind) -> String {
    format!("proxy.{kind}")
}

/// What this side can do, as sent at login.
pub fn ours() -> Vec<String> {
    let kinds = BASIC_KINDS.iter().chain(&LATER_KINDS).map(|k| proxy(*k));
    kinds.chain([VISITORS.to_owned()]).collect()
}

/// A peer's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caps(BTreeSet<String>);

impl Caps {
    /// What a peer speaking `version` that sent `sent` can do.
    pub fn of_peer(version: u16, sent: &[String]) -> Caps {
        if version >= 5 {
            Caps(sent.iter().cloned().collect())
        } else {
            implied(version)
        }
    }

    pub fn has(&self, cap: &str) -> bool {
        self.0.contains(cap)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// What a peer of a version before capabilities could do.
pub fn implied(_version: u16) -> Caps {
    // Versions 3 and 4 had the same kinds.
    Caps(BASIC_KINDS.iter().map(|k| proxy(*k)).collect())
}

/// Whether a list sent at login is within the bounds above.
pub fn within_bounds(caps: &[String]) -> bool {
    caps.len() <= MAX_CAPS && caps.iter().all(|c| c.len() <= MAX_CAP_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_peers_have_their_versions_kinds_new_ones_what_they_say() {
        let old = Caps::of_peer(4, &[]);
        assert!(old.has("proxy.tcpmux"));
        let new = Caps::of_peer(5, &["proxy.tcp".into(), "something.later".into()]);
        assert!(new.has("proxy.tcp") && new.has("something.later"));
        assert!(!new.has("proxy.udp"));
        assert!(!old.has("proxy.stcp") && !old.has(VISITORS));
        assert!(within_bounds(&ours()));
        assert!(!within_bounds(&vec!["x".into(); MAX_CAPS + 1]));
        assert!(!within_bounds(&["x".repeat(MAX_CAP_LEN + 1)]));
    }
}
