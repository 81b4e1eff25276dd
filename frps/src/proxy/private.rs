//! `type = "stcp"`, `"sudp"` and `"xtcp"`: private proxies (an xtcp
//! visit carries only the rendezvous of the two frpc). Nothing is bound:
//! the proxy's entry in the proxy table (its verifier, `allowUsers` and
//! live handle) is all there is, and visitors reach it through `visit.rs`,
//! whose streams become work streams of this proxy like any user's.

use wire::message::{PrivateSpec, ProxyError, MAX_ALLOW_USERS, MAX_META_LEN};

use super::ProxyCtx;

/// Where a private proxy is reached: nowhere public (frp shows it empty).
pub(super) fn start(spec: &PrivateSpec, _ctx: ProxyCtx) -> Result<String, ProxyError> {
    let users = &spec.allow_users;
    if users.len() > MAX_ALLOW_USERS || users.iter().any(|u| u.len() > MAX_META_LEN) {
        return Err(ProxyError::Refused(format!(
            "allowUsers: at most {MAX_ALLOW_USERS} users of at most {MAX_META_LEN} bytes each"
        )));
    }
    Ok(String::new())
}
