//! Login proof: the token never crosses the wire. frps sends a fresh random
//! nonce; frpc answers with
//! HMAC-SHA256(token, context ‖ nonce ‖ session binding ‖ run id ‖ user).
//! A proof is bound to one nonce, so a recorded login is useless later, and
//! to the TLS session (keying material exported from it), so a proof relayed
//! by someone in the middle into another session is useless too.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;

use crate::message::NONCE_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation: a proof for this protocol can never be mistaken for an
/// HMAC the same token produces elsewhere.
const CONTEXT: &[u8] = b"frp-rs login v1";
/// Work connections (`tcpMux = false`) prove themselves the same way, under
/// their own label so neither proof can stand in for the other.
const CONTEXT_WORK: &[u8] = b"frp-rs work conn v1";

/// What a proof is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Login,
    WorkConn,
}

/// The shared secret. Debug and Display never show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(s: impl Into<String>) -> Self {
        Token(s.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn mac(
        &self,
        purpose: Purpose,
        nonce: &[u8; NONCE_LEN],
        binding: &[u8; 32],
        run_id: &str,
        user: &str,
    ) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(match purpose {
            Purpose::Login => CONTEXT,
            Purpose::WorkConn => CONTEXT_WORK,
        });
        mac.update(nonce);
        mac.update(binding);
        // Length-prefix variable fields so ("ab","c") and ("a","bc") differ.
        for field in [run_id, user] {
            mac.update(&(field.len() as u32).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    pub fn prove(
        &self,
        purpose: Purpose,
        nonce: &[u8; NONCE_LEN],
        binding: &[u8; 32],
        run_id: &str,
        user: &str,
    ) -> [u8; 32] {
        self.mac(purpose, nonce, binding, run_id, user)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Constant-time check of a proof.
    pub fn verify(
        &self,
        purpose: Purpose,
        nonce: &[u8; NONCE_LEN],
        binding: &[u8; 32],
        run_id: &str,
        user: &str,
        proof: &[u8; 32],
    ) -> bool {
        self.mac(purpose, nonce, binding, run_id, user)
            .verify_slice(proof)
            .is_ok()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Token(<empty>)"
        } else {
            "Token(***)"
        })
    }
}

/// Serialized as itself: only used to write a configuration back out (the
/// key-coverage test of `conf/`); Debug and Display stay masked.
impl serde::Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Token {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Token)
    }
}

/// Domain separation of a private proxy's verifier and of a visit's proof.
const CONTEXT_VERIFIER: &[u8] = b"frp-rs visit verifier v1";
const CONTEXT_VISIT: &[u8] = b"frp-rs visit v1";

fn keyed(key: &[u8], context: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(context);
    mac
}

fn field(mac: &mut HmacSha256, s: &str) {
    mac.update(&(s.len() as u32).to_be_bytes());
    mac.update(s.as_bytes());
}

/// What frps keeps of a private proxy's `secretKey`:
/// HMAC-SHA256(secret, context ‖ user ‖ name). frps cannot recover the
/// secret from it, and it is worth nothing for another proxy or a login.
pub fn visit_verifier(secret: &str, user: &str, name: &str) -> [u8; 32] {
    let mut mac = keyed(secret.as_bytes(), CONTEXT_VERIFIER);
    field(&mut mac, user);
    field(&mut mac, name);
    mac.finalize().into_bytes().into()
}

fn visit_mac(
    verifier: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    stream: u32,
    visitor_user: &str,
) -> HmacSha256 {
    let mut mac = keyed(verifier, CONTEXT_VISIT);
    mac.update(nonce);
    mac.update(&stream.to_be_bytes());
    field(&mut mac, visitor_user);
    mac
}

/// A visitor's proof that it holds the secret behind `verifier`, good for
/// one stream of one session: over the session's login nonce, the id of
/// the stream it opened and its own user.
pub fn visit_proof(
    verifier: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    stream: u32,
    visitor_user: &str,
) -> [u8; 32] {
    visit_mac(verifier, nonce, stream, visitor_user)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a visit's proof.
pub fn visit_proof_ok(
    verifier: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    stream: u32,
    visitor_user: &str,
    proof: &[u8; 32],
) -> bool {
    visit_mac(verifier, nonce, stream, visitor_user)
        .verify_slice(proof)
        .is_ok()
}

pub fn new_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visit_proof_holds_for_its_secret_proxy_session_and_stream_only() {
        let v = visit_verifier("s3cret", "alice", "ssh");
        assert_ne!(v, visit_verifier("s3cret", "alice", "ssh2"));
        assert_ne!(v, visit_verifier("s3cret", "alic", "essh"));
        let n = new_nonce();
        let p = visit_proof(&v, &n, 3, "bob");
        assert!(visit_proof_ok(&v, &n, 3, "bob", &p));
        assert!(!visit_proof_ok(&v, &n, 5, "bob", &p));
        assert!(!visit_proof_ok(&v, &new_nonce(), 3, "bob", &p));
        assert!(!visit_proof_ok(&v, &n, 3, "carol", &p));
        let wrong = visit_verifier("guess", "alice", "ssh");
        assert!(!visit_proof_ok(&wrong, &n, 3, "bob", &p));
    }

    #[test]
    fn proof_verifies_only_with_same_inputs() {
        let t = Token::new("secret");
        let n = new_nonce();
        let b = [3u8; 32];
        let p = t.prove(Purpose::Login, &n, &b, "run", "alice");
        assert!(t.verify(Purpose::Login, &n, &b, "run", "alice", &p));
        assert!(!Token::new("other").verify(Purpose::Login, &n, &b, "run", "alice", &p));
        assert!(
            !t.verify(Purpose::Login, &new_nonce(), &b, "run", "alice", &p),
            "replay with a new nonce"
        );
        assert!(!t.verify(Purpose::Login, &n, &b, "ru", "nalice", &p));
        assert!(!t.verify(Purpose::Login, &n, &b, "run", "bob", &p));
        assert!(
            !t.verify(Purpose::Login, &n, &[4u8; 32], "run", "alice", &p),
            "relayed into another TLS session"
        );
    }

    #[test]
    fn work_and_login_proofs_differ() {
        let t = Token::new("secret");
        let (n, b) = (new_nonce(), [0u8; 32]);
        let login = t.prove(Purpose::Login, &n, &b, "run", "u");
        assert!(!t.verify(Purpose::WorkConn, &n, &b, "run", "u", &login));
        let work = t.prove(Purpose::WorkConn, &n, &b, "run", "u");
        assert!(t.verify(Purpose::WorkConn, &n, &b, "run", "u", &work));
    }

    #[test]
    fn debug_masks_token() {
        let s = format!("{:?}", Token::new("hunter2"));
        assert!(!s.contains("hunter2"), "{s}");
    }
}
