//! Sockets and what is done with them: TLS and trust, classifying what a
//! new connection speaks, framed message I/O, socket options, relays and
//! the tunnel between a tunnel stream and a local end, logging and the
//! process boot helpers.

pub mod activity;
pub mod framed;
pub mod gate;
pub mod logfile;
pub mod logging;
pub mod relay;
pub mod sockopt;
pub mod stats;
pub mod tls;
pub mod transport;
pub mod tunnel;
pub mod udp_relay;
pub mod util;
pub mod web;
pub mod workers;
