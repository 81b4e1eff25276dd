//! The shapes older protocol versions gave the messages that have changed
//! since, and the conversions to and from today's: since version 3, the
//! login and its answer, and a proxy's options; everything else is the
//! same in every version this code speaks.
//!
//! Reading an older shape fills what it lacks with defaults; writing one
//! drops what it cannot carry (the caller knows, by the agreed version,
//! what the peer will not get: [`crate::caps::implied`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::message::{
    Control, Hello, Login, LoginAccepted, LoginError, LoginResp, NewProxy, NewProxyResp,
    NewWorkConn, Ping, Pong, ProxyOpts, ProxySpec, NONCE_LEN,
};

/// `Hello` as versions 3 and 4 had it, generic over their `Login`.
#[derive(Serialize, Deserialize)]
enum HelloOld<L> {
    Client {
        version: u16,
    },
    Server {
        version: u16,
        nonce: [u8; NONCE_LEN],
    },
    Login(L),
    LoginResp(LoginRespV4),
    NewWorkConn(NewWorkConn),
}

/// Version 3's login: no clientID, metadatas or capabilities.
#[derive(Serialize, Deserialize)]
struct LoginV3 {
    version: u16,
    hostname: String,
    os: String,
    arch: String,
    user: String,
    run_id: String,
    proof: [u8; 32],
    tcp_mux: bool,
}

/// Version 4's login: no capabilities.
#[derive(Serialize, Deserialize)]
struct LoginV4 {
    version: u16,
    hostname: String,
    os: String,
    arch: String,
    user: String,
    run_id: String,
    proof: [u8; 32],
    tcp_mux: bool,
    client_id: String,
    metas: BTreeMap<String, String>,
}

/// Versions 3 and 4: the accepted login carried no capabilities.
#[derive(Serialize, Deserialize)]
struct LoginRespV4 {
    result: Result<AcceptedV4, LoginError>,
}

#[derive(Serialize, Deserialize)]
struct AcceptedV4 {
    run_id: String,
    heartbeat_timeout: u32,
    udp_packet_size: u32,
}

impl From<Login> for LoginV3 {
    fn from(l: Login) -> Self {
        LoginV3 {
            version: l.version,
            hostname: l.hostname,
            os: l.os,
            arch: l.arch,
            user: l.user,
            run_id: l.run_id,
            proof: l.proof,
            tcp_mux: l.tcp_mux,
        }
    }
}

impl From<LoginV3> for Login {
    fn from(l: LoginV3) -> Self {
        Login {
            version: l.version,
            hostname: l.hostname,
            os: l.os,
            arch: l.arch,
            user: l.user,
            run_id: l.run_id,
            proof: l.proof,
            tcp_mux: l.tcp_mux,
            client_id: String::new(),
            metas: BTreeMap::new(),
            caps: Vec::new(),
        }
    }
}

impl From<Login> for LoginV4 {
    fn from(l: Login) -> Self {
        LoginV4 {
            version: l.version,
            hostname: l.hostname,
            os: l.os,
            arch: l.arch,
            user: l.user,
            run_id: l.run_id,
            proof: l.proof,
            tcp_mux: l.tcp_mux,
            client_id: l.client_id,
            metas: l.metas,
        }
    }
}

impl From<LoginV4> for Login {
    fn from(l: LoginV4) -> Self {
        Login {
            version: l.version,
            hostname: l.hostname,
            os: l.os,
            arch: l.arch,
            user: l.user,
            run_id: l.run_id,
            proof: l.proof,
            tcp_mux: l.tcp_mux,
            client_id: l.client_id,
            metas: l.metas,
            caps: Vec::new(),
        }
    }
}

impl From<LoginResp> for LoginRespV4 {
    fn from(r: LoginResp) -> Self {
        LoginRespV4 {
            result: r.result.map(|a| AcceptedV4 {
                run_id: a.run_id,
                heartbeat_timeout: a.heartbeat_timeout,
                udp_packet_size: a.udp_packet_size,
            }),
        }
    }
}

impl From<LoginRespV4> for LoginResp {
    fn from(r: LoginRespV4) -> Self {
        LoginResp {
            result: r.result.map(|a| LoginAccepted {
                run_id: a.run_id,
                heartbeat_timeout: a.heartbeat_timeout,
                udp_packet_size: a.udp_packet_size,
                caps: Vec::new(),
            }),
        }
    }
}

fn to_old<L: From<Login>>(h: &Hello) -> HelloOld<L> {
    match h.clone() {
        Hello::Client { version } => HelloOld::Client { version },
        Hello::Server { version, nonce } => HelloOld::Server { version, nonce },
        Hello::Login(l) => HelloOld::Login(l.into()),
        Hello::LoginResp(r) => HelloOld::LoginResp(r.into()),
        Hello::NewWorkConn(w) => HelloOld::NewWorkConn(w),
    }
}

fn from_old<L: Into<Login>>(h: HelloOld<L>) -> Hello {
    match h {
        HelloOld::Client { version } => Hello::Client { version },
        HelloOld::Server { version, nonce } => Hello::Server { version, nonce },
        HelloOld::Login(l) => Hello::Login(l.into()),
        HelloOld::LoginResp(r) => Hello::LoginResp(r.into()),
        HelloOld::NewWorkConn(w) => Hello::NewWorkConn(w),
    }
}

pub(crate) fn encode_hello(h: &Hello, version: u16) -> Result<Vec<u8>, postcard::Error> {
    match version {
        ..=3 => postcard::to_stdvec(&to_old::<LoginV3>(h)),
        4 => postcard::to_stdvec(&to_old::<LoginV4>(h)),
        _ => postcard::to_stdvec(h),
    }
}

pub(crate) fn decode_hello(bytes: &[u8], version: u16) -> Result<(Hello, &[u8]), postcard::Error> {
    match version {
        ..=3 => {
            postcard::take_from_bytes::<HelloOld<LoginV3>>(bytes).map(|(h, r)| (from_old(h), r))
        }
        4 => postcard::take_from_bytes::<HelloOld<LoginV4>>(bytes).map(|(h, r)| (from_old(h), r)),
        _ => postcard::take_from_bytes(bytes),
    }
}

/// `Control` as versions 3 and 4 had it: a proxy's options without
/// annotations.
// As `Control`: short-lived, so the size of NewProxy costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
enum ControlV4 {
    NewProxy(NewProxyV4),
    NewProxyResp(NewProxyResp),
    CloseProxy { name: String },
    Ping(Ping),
    Pong(Pong),
    ReqWorkConn { count: u32 },
}

#[derive(Serialize, Deserialize)]
struct NewProxyV4 {
    name: String,
    spec: ProxySpec,
    opts: ProxyOptsV4,
}

#[derive(Serialize, Deserialize)]
struct ProxyOptsV4 {
    group: String,
    group_key: String,
    bandwidth_limit: u64,
    limit_on_server: bool,
    metas: Vec<(String, String)>,
}

impl From<&Control> for ControlV4 {
    fn from(c: &Control) -> Self {
        match c.clone() {
            Control::NewProxy(p) => ControlV4::NewProxy(NewProxyV4 {
                name: p.name,
                spec: p.spec,
                opts: ProxyOptsV4 {
                    group: p.opts.group,
                    group_key: p.opts.group_key,
                    bandwidth_limit: p.opts.bandwidth_limit,
                    limit_on_server: p.opts.limit_on_server,
                    metas: p.opts.metas,
                },
            }),
            Control::NewProxyResp(r) => ControlV4::NewProxyResp(r),
            Control::CloseProxy { name } => ControlV4::CloseProxy { name },
            Control::Ping(p) => ControlV4::Ping(p),
            Control::Pong(p) => ControlV4::Pong(p),
            Control::ReqWorkConn { count } => ControlV4::ReqWorkConn { count },
        }
    }
}

impl From<ControlV4> for Control {
    fn from(c: ControlV4) -> Self {
        match c {
            ControlV4::NewProxy(p) => Control::NewProxy(NewProxy {
                name: p.name,
                spec: p.spec,
                opts: ProxyOpts {
                    group: p.opts.group,
                    group_key: p.opts.group_key,
                    bandwidth_limit: p.opts.bandwidth_limit,
                    limit_on_server: p.opts.limit_on_server,
                    metas: p.opts.metas,
                    annotations: Vec::new(),
                },
            }),
            ControlV4::NewProxyResp(r) => Control::NewProxyResp(r),
            ControlV4::CloseProxy { name } => Control::CloseProxy { name },
            ControlV4::Ping(p) => Control::Ping(p),
            ControlV4::Pong(p) => Control::Pong(p),
            ControlV4::ReqWorkConn { count } => Control::ReqWorkConn { count },
        }
    }
}

pub(crate) fn encode_control(c: &Control, version: u16) -> Result<Vec<u8>, postcard::Error> {
    match version {
        ..=4 => postcard::to_stdvec(&ControlV4::from(c)),
        _ => postcard::to_stdvec(c),
    }
}

pub(crate) fn decode_control(
    bytes: &[u8],
    version: u16,
) -> Result<(Control, &[u8]), postcard::Error> {
    match version {
        ..=4 => postcard::take_from_bytes::<ControlV4>(bytes).map(|(c, r)| (c.into(), r)),
        _ => postcard::take_from_bytes(bytes),
    }
}
