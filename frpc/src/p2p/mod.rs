//! xtcp's direct path between two frpc: each side learns its public UDP
//! address from a STUN server ([`candidates`]), the two exchange their
//! candidates over a visit stream frps relays (the rendezvous), both send
//! punch datagrams until one gets through ([`punch`]), and the visitor then
//! runs QUIC (quinn, rustls) to the proxy's frpc over that path
//! ([`quic`]): one QUIC stream per user connection. frps carries only the
//! rendezvous.
//!
//! Trust: the rendezvous stream is a visit frps admitted (the visitor
//! proved the proxy's secret); the proxy's side sends its QUIC
//! certificate's fingerprint over it and the visitor pins it, and the
//! visitor sends a fresh token over it that each QUIC stream must start
//! with. Neither depends on the UDP path being private.

pub(crate) mod candidates;
pub(crate) mod punch;
pub(crate) mod quic;

/// The token each QUIC stream starts with (and punches carry).
pub(crate) const TOKEN_LEN: usize = 16;
