//! The messages of each channel, one enum per channel, so that a message
//! sent on the wrong channel is unrepresentable rather than a runtime check:
//!
//! - [`Hello`]: the handshake every connection starts with (version, nonce,
//!   login for a control connection, [`NewWorkConn`] for a work connection);
//! - [`Control`]: the control stream after login;
//! - [`WorkHeader`]: the one frame at the head of every work stream;
//! - [`Visit`]: the head of a stream a visitor opens towards a private
//!   proxy, and the server's answer.
//!
//! Messages are serialized with postcard (compact, varint integers) and
//! framed by [`crate::codec`]. postcard encodes an enum variant by its index
//! and a struct as its fields in order, so the order is the wire format:
//! new variants go at the end and nothing is reordered. A new *field* makes
//! a new [`PROTOCOL_VERSION`]: the peers agree on a version at hello (the
//! lower of the two), and each message is written and read in that
//! version's shape ([`Frame::encode_for`]; the older shapes live in
//! [`crate::compat`]). A control message whose variant this side does not
//! know is skipped, not fatal. `Hello::Client` and `Hello::Server` stay
//! variants 0 and 1 with their fields forever, and `LoginResp`'s error keeps
//! its shape, so any two releases can tell each other their versions.

use std::fmt;
use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The newest protocol this code speaks. 2: messages per channel, per-kind
/// proxy specs, work headers with both addresses. 3: the Ping carries the
/// last round trip. 4: `Login` carries frp's `clientID` and client
/// `metadatas`. 5: versions are agreed at hello, `Login` and
/// `LoginAccepted` carry capability sets ([`crate::caps`]), and a proxy
/// its `annotations`. 6: private proxies (`stcp`, `sudp`) and the
/// streams their visitors open ([`Visit`]).
pub const PROTOCOL_VERSION: u16 = 6;

/// The oldest protocol this code still speaks: peers of any version from
/// here to [`PROTOCOL_VERSION`] work together (tests/fixtures/wire holds the
/// bytes of each).
pub const OLDEST_PROTOCOL_VERSION: u16 = 3;

/// Most `metadatas` entries a login may carry, and the longest key or
/// value; the longest `clientID`. frps refuses logins beyond them, so what a
/// client makes it keep per record is bounded.
pub const MAX_METAS: usize = 32;
pub const MAX_META_LEN: usize = 256;
pub const MAX_CLIENT_ID: usize = 128;

/// Length of the server's login nonce.
pub const NONCE_LEN: usize = 32;

/// The byte a work connection starts with (after TLS, if any), where a
/// multiplexed connection starts with a yamux header (version 0).
pub const WORK_CONN_MARKER: u8 = 0xf5;

/// A message type that travels in frames: one per channel.
pub trait Frame: Serialize + DeserializeOwned + fmt::Debug + Send + 'static {
    /// The variants this code knows: a frame whose variant index is beyond
    /// comes from a newer peer.
    const VARIANTS: u32;
    /// Whether such a frame is skipped (control messages: a newer peer's
    /// new message must not end the session) rather than an error.
    const SKIP_UNKNOWN: bool = false;

    /// Short name for log lines ("unexpected NewProxy before login").
    fn kind(&self) -> &'static str;

    /// The payload of this message in protocol `version`'s shape.
    fn encode_for(&self, _version: u16) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    /// A message read in protocol `version`'s shape, and the bytes after it.
    fn decode_for(bytes: &[u8], _version: u16) -> Result<(Self, &[u8]), postcard::Error> {
        postcard::take_from_bytes(bytes)
    }
}

/// The handshake channel: the first frames of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hello {
    /// Client → server, first frame of every connection.
    Client { version: u16 },
    /// Server → client: the nonce the login proof must cover.
    Server {
        version: u16,
        nonce: [u8; NONCE_LEN],
    },
    /// Client → server on the control connection.
    Login(Login),
    /// Server → client.
    LoginResp(LoginResp),
    /// Client → server, on a separate work connection (`transport.tcpMux =
    /// false`), after the server's hello: which session it joins.
    NewWorkConn(NewWorkConn),
}

impl Frame for Hello {
    const VARIANTS: u32 = 5;

    fn kind(&self) -> &'static str {
        match self {
            Hello::Client { .. } => "ClientHello",
            Hello::Server { .. } => "ServerHello",
            Hello::Login(_) => "Login",
            Hello::LoginResp(_) => "LoginResp",
            Hello::NewWorkConn(_) => "NewWorkConn",
        }
    }

    fn encode_for(&self, version: u16) -> Result<Vec<u8>, postcard::Error> {
        crate::compat::encode_hello(self, version)
    }

    fn decode_for(bytes: &[u8], version: u16) -> Result<(Self, &[u8]), postcard::Error> {
        crate::compat::decode_hello(bytes, version)
    }
}

/// The control stream after login.
// NewProxy is much larger than the other variants; control messages are
// few and short-lived (a queue of at most 64), so boxing it would buy
// nothing but an allocation per registration.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Client → server: register a proxy.
    NewProxy(NewProxy),
    /// Server → client.
    NewProxyResp(NewProxyResp),
    /// Client → server: unregister a proxy and free what it holds.
    CloseProxy { name: String },
    /// Client → server heartbeat.
    Ping(Ping),
    /// Server → client heartbeat answer.
    Pong(Pong),
    /// Server → client: open this many more work connections.
    ReqWorkConn { count: u32 },
}

impl Frame for Control {
    const VARIANTS: u32 = 6;
    const SKIP_UNKNOWN: bool = true;

    fn encode_for(&self, version: u16) -> Result<Vec<u8>, postcard::Error> {
        crate::compat::encode_control(self, version)
    }

    fn decode_for(bytes: &[u8], version: u16) -> Result<(Self, &[u8]), postcard::Error> {
        crate::compat::decode_control(bytes, version)
    }

    fn kind(&self) -> &'static str {
        match self {
            Control::NewProxy(_) => "NewProxy",
            Control::NewProxyResp(_) => "NewProxyResp",
            Control::CloseProxy { .. } => "CloseProxy",
            Control::Ping(_) => "Ping",
            Control::Pong(_) => "Pong",
            Control::ReqWorkConn { .. } => "ReqWorkConn",
        }
    }
}

/// The first frame of every work stream (server → client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkHeader {
    Start(StartWork),
}

impl Frame for WorkHeader {
    const VARIANTS: u32 = 1;

    fn kind(&self) -> &'static str {
        match self {
            WorkHeader::Start(_) => "StartWork",
        }
    }
}

/// The head of a stream a client opens on its own connection (version
/// 6): a visitor asking to reach a private proxy (`stcp`, `sudp`) of some
/// client, then the server's answer. After an `Ok` answer the stream
/// carries the user connection's bytes (or, for `sudp`, datagram frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Visit {
    /// Client → server.
    Open(OpenVisit),
    /// Server → client.
    Answer(VisitAnswer),
}

impl Frame for Visit {
    const VARIANTS: u32 = 2;

    fn kind(&self) -> &'static str {
        match self {
            Visit::Open(_) => "OpenVisit",
            Visit::Answer(_) => "VisitAnswer",
        }
    }
}

/// A visitor's request: which proxy, of which kind, and the proof that it
/// holds the proxy's secret ([`crate::auth::visit_proof`]: over the
/// session's nonce and this stream's id, so it is good for one stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenVisit {
    /// The user the proxy belongs to (frp's `serverUser`; the visitor's
    /// own user when its config leaves it out).
    pub server_user: String,
    pub server_name: String,
    pub kind: ProxyKind,
    pub proof: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitAnswer {
    pub result: Result<(), VisitError>,
}

/// Why a visit is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum VisitError {
    #[error("no such proxy is running on the server")]
    NoSuchProxy,
    #[error("the proxy is of type {0}, not of this visitor's type")]
    WrongKind(ProxyKind),
    #[error("this user is not in the proxy's allowUsers")]
    UserNotAllowed,
    #[error("wrong secretKey")]
    WrongSecret,
    #[error("{0}")]
    Refused(String),
}

/// An xtcp visit's rendezvous (version 6): after frps admitted the visit,
/// the two frpc speak these over the stream frps relays, end to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rendezvous {
    /// Visitor → proxy.
    Offer(Offer),
    /// Proxy → visitor.
    Answer(RendezvousAnswer),
}

impl Frame for Rendezvous {
    const VARIANTS: u32 = 2;

    fn kind(&self) -> &'static str {
        match self {
            Rendezvous::Offer(_) => "Offer",
            Rendezvous::Answer(_) => "RendezvousAnswer",
        }
    }
}

/// Most candidate addresses either side sends.
pub const MAX_CANDIDATES: usize = 8;

/// The visitor's side of a rendezvous: where its UDP socket may be
/// reached, the token its punches and QUIC streams carry, and how long it
/// punches (its `fallbackTimeoutMs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub candidates: Vec<SocketAddr>,
    pub token: [u8; 16],
    pub timeout_ms: u32,
}

impl Offer {
    /// At most [`MAX_CANDIDATES`], and a punch of at most a minute.
    pub fn within_bounds(&self) -> bool {
        self.candidates.len() <= MAX_CANDIDATES && self.timeout_ms <= 60_000
    }
}

/// The proxy's side: its candidates and its QUIC certificate's SHA-256
/// fingerprint (hex), or why it cannot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RendezvousAnswer {
    pub result: Result<(Vec<SocketAddr>, String), String>,
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
    /// frp's `clientID` (empty: none); it is also the run id frpc presents.
    pub client_id: String,
    /// frp's client `metadatas`, shown by frps's API.
    pub metas: std::collections::BTreeMap<String, String>,
    /// What this client can do beyond its version's basics ([`crate::caps`];
    /// version 5).
    pub caps: Vec<String>,
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
    /// The server's `udpPacketSize`: frpc drops larger datagrams before
    /// they cross the tunnel, as frps would drop them after.
    pub udp_packet_size: u32,
    /// What this server can do ([`crate::caps`]; version 5).
    pub caps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LoginError {
    #[error("invalid token")]
    InvalidToken,
    #[error(
        "protocol version mismatch: client speaks {client}, server speaks {server}; \
         upgrade the older of the two"
    )]
    VersionMismatch { client: u16, server: u16 },
    #[error("{0}")]
    Other(String),
}

/// The proxy kinds, for names in logs and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProxyKind {
    Tcp,
    Udp,
    Https,
    Http,
    Tcpmux,
    Stcp,
    Sudp,
    Xtcp,
}

impl ProxyKind {
    /// Every kind, in variant order.
    pub const ALL: [ProxyKind; 8] = [
        ProxyKind::Tcp,
        ProxyKind::Udp,
        ProxyKind::Https,
        ProxyKind::Http,
        ProxyKind::Tcpmux,
        ProxyKind::Stcp,
        ProxyKind::Sudp,
        ProxyKind::Xtcp,
    ];

    /// Private kinds: reached only through a visitor, never on a port.
    pub fn is_private(self) -> bool {
        matches!(self, ProxyKind::Stcp | ProxyKind::Sudp | ProxyKind::Xtcp)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Tcp => "tcp",
            ProxyKind::Udp => "udp",
            ProxyKind::Https => "https",
            ProxyKind::Http => "http",
            ProxyKind::Tcpmux => "tcpmux",
            ProxyKind::Stcp => "stcp",
            ProxyKind::Sudp => "sudp",
            ProxyKind::Xtcp => "xtcp",
        }
    }
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProxy {
    pub name: String,
    pub spec: ProxySpec,
    pub opts: ProxyOpts,
}

/// What the server needs to know of a proxy, per kind. Append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxySpec {
    Tcp(TcpSpec),
    Udp(UdpSpec),
    Https(HttpsSpec),
    Http(HttpSpec),
    Tcpmux(TcpmuxSpec),
    /// Version 6.
    Stcp(PrivateSpec),
    /// Version 6.
    Sudp(PrivateSpec),
    /// Version 6: frps carries only the rendezvous ([`Rendezvous`]).
    Xtcp(PrivateSpec),
}

impl ProxySpec {
    pub fn kind(&self) -> ProxyKind {
        match self {
            ProxySpec::Tcp(_) => ProxyKind::Tcp,
            ProxySpec::Udp(_) => ProxyKind::Udp,
            ProxySpec::Https(_) => ProxyKind::Https,
            ProxySpec::Http(_) => ProxyKind::Http,
            ProxySpec::Tcpmux(_) => ProxyKind::Tcpmux,
            ProxySpec::Stcp(_) => ProxyKind::Stcp,
            ProxySpec::Sudp(_) => ProxyKind::Sudp,
            ProxySpec::Xtcp(_) => ProxyKind::Xtcp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSpec {
    /// 0 asks the server to pick a free port.
    pub remote_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpSpec {
    /// 0 asks the server to pick a free port.
    pub remote_port: u16,
}

/// TLS connections routed by the name in their ClientHello (SNI) and passed
/// through untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpsSpec {
    /// Full names, `*.example.com` wildcards allowed.
    pub custom_domains: Vec<String>,
    /// A name under the server's `subDomainHost` (empty = none).
    pub subdomain: String,
}

/// HTTP requests routed by Host and path; frps does the HTTP (auth, header
/// changes) and talks HTTP/1.1 to the local service over the tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSpec {
    pub custom_domains: Vec<String>,
    pub subdomain: String,
    /// Path prefixes this proxy serves (empty = all, like "/").
    pub locations: Vec<String>,
    /// Basic auth asked of users when `http_user` is set.
    pub http_user: String,
    pub http_password: String,
    /// Host header sent to the local service instead of the user's.
    pub host_header_rewrite: String,
    /// Headers set on requests and on responses.
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    /// Only requests whose basic-auth user is this one (empty = anyone).
    pub route_by_http_user: String,
}

/// TCP connections multiplexed on one port by an HTTP CONNECT naming the
/// host (`multiplexer = "httpconnect"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpmuxSpec {
    pub custom_domains: Vec<String>,
    pub subdomain: String,
    /// `Proxy-Authorization` asked of users when `http_user` is set.
    pub http_user: String,
    pub http_password: String,
    /// Only connections whose Proxy-Authorization user is this one.
    pub route_by_http_user: String,
}

/// A private proxy (`stcp`, `sudp`): no public port; visitors that prove
/// its secret reach it through frps. The secret itself never crosses the
/// wire: frps keeps a verifier derived from it, the proxy's user and name
/// ([`crate::auth::visit_verifier`]), which it cannot turn back into the
/// secret and which is good for this proxy only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateSpec {
    pub verifier: [u8; 32],
    /// Users whose visitors may reach it besides the proxy's own user;
    /// `"*"` is every user. At most [`MAX_ALLOW_USERS`] of at most
    /// [`MAX_META_LEN`] bytes.
    pub allow_users: Vec<String>,
}

/// Most `allowUsers` entries a private proxy may carry.
pub const MAX_ALLOW_USERS: usize = 64;

/// Options every kind has, sent now so that load-balancing groups,
/// bandwidth limits and metadata need no further version bump.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProxyOpts {
    /// Load-balancing group and its key (empty = none).
    pub group: String,
    pub group_key: String,
    /// Bytes per second, 0 = unlimited, enforced by the server when
    /// `limit_on_server`.
    pub bandwidth_limit: u64,
    pub limit_on_server: bool,
    /// Free-form `metadatas.*` of the proxy, for plugins and the dashboard.
    pub metas: Vec<(String, String)>,
    /// frp's `annotations.*`, shown on the dashboard (version 5). Both this
    /// and `metas` are bounded as a login's metadatas are ([`MAX_METAS`]).
    pub annotations: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProxyResp {
    pub name: String,
    /// Where the server serves this proxy ("0.0.0.0:6000").
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
    #[error("{0}")]
    Refused(String),
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
    /// Round trip of the previous beat in microseconds (0: none yet), so
    /// frps learns the client's RTT without measuring on its own (version 3).
    pub rtt_us: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The Ping's sequence number, so the client can measure round-trip time.
    pub seq: u32,
}

/// Which proxy a work stream is for, and the connection it carries: `src`
/// is the user's address as frps saw it, `dst` the address the user
/// connected to (both for PROXY protocol headers; `src` also for logs). For
/// a UDP proxy, one work stream carries all datagrams and the addresses are
/// those of the proxy's socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartWork {
    pub proxy_name: String,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}
