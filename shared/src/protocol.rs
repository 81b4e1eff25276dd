//! Message types carried on the control stream and at the head of work streams.
//!
//! Messages are serialized with postcard (compact, varint integers) and framed
//! by [`crate::codec`]. The variant order of [`Message`] is the wire format:
//! append new variants at the end and never reorder, so that `ClientHello`
//! and `ServerHello` always decode and a version mismatch can be reported.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Bumped whenever the wire format changes incompatibly.
pub const PROTOCOL_VERSION: u16 = 1;

/// Length of the server's login nonce.
pub const NONCE_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Client → server, first frame on the control stream.
    ClientHello { version: u16 },
    /// Server → client: the nonce the login proof must cover.
    ServerHello {
        version: u16,
        nonce: [u8; NONCE_LEN],
    },
    /// Client → server.
    Login(Login),
    /// Server → client.
    LoginResp(LoginResp),
    /// Client → server: register a proxy.
    NewProxy(NewProxy),
    /// Server → client.
    NewProxyResp(NewProxyResp),
    /// Client → server: unregister a proxy and free its port.
    CloseProxy { name: String },
    /// Client → server heartbeat.
    Ping(Ping),
    /// Server → client heartbeat answer.
    Pong(Pong),
    /// Server → client, first frame of every work stream: which proxy the
    /// user connection arrived on and where it came from.
    StartWork(StartWork),
    /// Client → server, on a separate work connection (`transport.tcpMux =
    /// false`), after the server's `ServerHello`: which session it joins.
    NewWorkConn(NewWorkConn),
    /// Server → client: open this many more work connections.
    ReqWorkConn { count: u32 },
}

/// The byte a work connection starts with (after TLS, if any), where a
/// multiplexed connection starts with a yamux header (version 0).
pub const WORK_CONN_MARKER: u8 = 0xf5;

impl Message {
    /// Short name for log lines ("unexpected NewProxy before login").
    pub fn kind(&self) -> &'static str {
        match self {
            Message::ClientHello { .. } => "ClientHello",
            Message::ServerHello { .. } => "ServerHello",
            Message::Login(_) => "Login",
            Message::LoginResp(_) => "LoginResp",
            Message::NewProxy(_) => "NewProxy",
            Message::NewProxyResp(_) => "NewProxyResp",
            Message::CloseProxy { .. } => "CloseProxy",
            Message::Ping(_) => "Ping",
            Message::Pong(_) => "Pong",
            Message::StartWork(_) => "StartWork",
            Message::NewWorkConn(_) => "NewWorkConn",
            Message::ReqWorkConn { .. } => "ReqWorkConn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub version: u16,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub user: String,
    /// Empty on the first login; frpc presents the id it was given when it
    /// reconnects so frps can replace the old session.
    pub run_id: String,
    /// HMAC of the token over the server's nonce, see [`crate::auth`].
    pub proof: [u8; 32],
    /// false: work streams come as separate connections (`transport.tcpMux
    /// = false`) instead of yamux streams.
    pub tcp_mux: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWorkConn {
    pub run_id: String,
    pub user: String,
    /// Same construction as the login proof, over this connection's nonce
    /// and TLS session.
    pub proof: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResp {
    pub result: Result<LoginAccepted, LoginError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAccepted {
    pub run_id: String,
    /// Seconds of silence after which the server drops the client; 0 = never.
    pub heartbeat_timeout: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LoginError {
    #[error("invalid token")]
    InvalidToken,
    #[error(
        "protocol version mismatch: client speaks {client}, server speaks {server}; \
         run the same release of frps and frpc"
    )]
    VersionMismatch { client: u16, server: u16 },
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyType {
    Tcp,
}

impl fmt::Display for ProxyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyType::Tcp => f.write_str("tcp"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProxy {
    pub name: String,
    pub proxy_type: ProxyType,
    /// 0 asks the server to pick a free port.
    pub remote_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProxyResp {
    pub name: String,
    /// The address the server listens on for this proxy.
    pub result: Result<String, ProxyError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProxyError {
    #[error("port {0} is already in use")]
    PortInUse(u16),
    #[error("port {0} is not allowed by the server's allowPorts")]
    PortNotAllowed(u16),
    #[error("a proxy with this name is already registered")]
    DuplicateName,
    #[error("cannot listen: {0}")]
    Bind(String),
    #[error("this client already holds the server's maximum of {0} ports (maxPortsPerClient)")]
    TooManyPorts(u32),
}

/// Client heartbeat. Besides proving the path, it carries a few client facts
/// for free; varint encoding keeps a typical Ping under a dozen bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    pub seq: u32,
    /// Proxies the client has registered.
    pub proxies: u32,
    /// Bytes the client read from / wrote to the connection since the last Ping.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The Ping's sequence number, so the client can measure round-trip time.
    pub seq: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartWork {
    pub proxy_name: String,
    /// The user's address as frps saw it.
    pub src_addr: String,
}
