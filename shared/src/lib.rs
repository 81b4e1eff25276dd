//! Everything frps and frpc share: the wire protocol and its codec (no I/O),
//! the login proof, the yamux session driver, the configuration schema and the
//! relay that copies bytes both ways.

pub mod activity;
pub mod auth;
pub mod codec;
pub mod config;
pub mod framed;
pub mod heartbeat;
pub mod logging;
pub mod mux;
pub mod netopt;
pub mod protocol;
pub mod relay;
pub mod tls;
pub mod transport;
pub mod util;
