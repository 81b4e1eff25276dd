//! A hand-driven peer for attack tests: it writes yamux frames and control
//! messages itself, so it can do what frpc never would (not read, not
//! grant window, flood, lie about its run id).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use config::ClientConfig;
use mux::frame::{Header, Kind, HEADER_LEN, SYN};
use net::activity::{Activity, Metered};
use net::transport::{BoxIo, ClientSide};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::auth::{Purpose, Token};
use wire::message::{
    Control, Frame, Hello, Login, NewProxy, NewWorkConn, ProxyOpts, ProxySpec, TcpSpec,
    PROTOCOL_VERSION,
};

/// The stream frpc logs in on.
pub const CONTROL: u32 = 1;

pub fn header(kind: Kind, flags: u16, id: u32, len: u32) -> [u8; HEADER_LEN] {
    Header::new(kind, flags, id, len).to_bytes()
}

/// `n` SYN pings in one buffer.
pub fn pings(n: u32) -> Vec<u8> {
    (0..n).flat_map(|i| header(Kind::Ping, SYN, 0, i)).collect()
}

/// A control message as the payload of a data frame on `id`.
pub fn message_frame<M: Frame>(id: u32, flags: u16, msg: &M) -> Vec<u8> {
    let mut body = BytesMut::new();
    wire::codec::encode(msg, &mut body).expect("encode");
    let mut out = header(Kind::Data, flags, id, body.len() as u32).to_vec();
    out.extend_from_slice(&body);
    out
}

pub async fn connect_plain(addr: SocketAddr) -> BoxIo {
    Box::new(TcpStream::connect(addr).await.expect("connect"))
}

/// A TLS connection that does not check the server (the attacker has no
/// reason to).
pub async fn connect_tls(addr: SocketAddr) -> BoxIo {
    let cfg = ClientConfig::from_toml(&format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\ntransport.tls.insecureSkipVerify = true\n",
        addr.port()
    ))
    .expect("config");
    let side = ClientSide::new(&cfg).expect("tls");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    side.connect(Metered::new(tcp, Activity::new()))
        .await
        .expect("tls handshake")
        .io
}

/// A raw peer over `io`.
pub struct Raw {
    pub io: BoxIo,
    buf: BytesMut,
    /// Bytes received on the control stream not yet decoded.
    control: BytesMut,
}

/// What a raw login gets.
#[derive(Debug)]
pub enum LoginOutcome {
    Accepted { run_id: String },
    Rejected(String),
    Closed,
}

impl Raw {
    pub fn new(io: BoxIo) -> Raw {
        Raw {
            io,
            buf: BytesMut::new(),
            control: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    pub async fn send_message<M: Frame>(&mut self, flags: u16, msg: &M) -> io::Result<()> {
        self.send(&message_frame(CONTROL, flags, msg)).await
    }

    /// The next frame and its payload; None at EOF.
    pub async fn next_frame(&mut self) -> io::Result<Option<(Header, Vec<u8>)>> {
        loop {
            if self.buf.len() >= HEADER_LEN {
                let raw: [u8; HEADER_LEN] = self.buf[..HEADER_LEN].try_into().expect("12");
                let h = Header::decode(&raw)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let len = if h.kind == Kind::Data {
                    h.len as usize
                } else {
                    0
                };
                if self.buf.len() >= HEADER_LEN + len {
                    let frame = self.buf.split_to(HEADER_LEN + len);
                    return Ok(Some((h, frame[HEADER_LEN..].to_vec())));
                }
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next control message from the server (other frames are
    /// skipped; window credit is never granted back).
    pub async fn next_message<M: Frame>(&mut self) -> io::Result<Option<M>> {
        loop {
            if let Some(m) = wire::codec::decode(&mut self.control)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
            {
                return Ok(Some(m));
            }
            match self.next_frame().await? {
                None => return Ok(None),
                Some((h, payload)) if h.kind == Kind::Data && h.id == CONTROL => {
                    self.control.extend_from_slice(&payload)
                }
                Some(_) => {}
            }
        }
    }

    /// Logs in on the control stream as frpc would (plain TCP binding).
    pub async fn login(
        &mut self,
        token: &str,
        user: &str,
        run_id: &str,
        tcp_mux: bool,
    ) -> LoginOutcome {
        self.login_as(token, user, run_id, "raw-test", tcp_mux)
            .await
    }

    pub async fn login_as(
        &mut self,
        token: &str,
        user: &str,
        run_id: &str,
        hostname: &str,
        tcp_mux: bool,
    ) -> LoginOutcome {
        self.login_with(token, |l| {
            l.user = user.to_owned();
            l.run_id = run_id.to_owned();
            l.hostname = hostname.to_owned();
            l.tcp_mux = tcp_mux;
        })
        .await
    }

    /// Logs in with the Login `edit` makes of a plain one (the proof is
    /// made after, over the edited user and run id).
    pub async fn login_with(&mut self, token: &str, edit: impl FnOnce(&mut Login)) -> LoginOutcome {
        let hello = Hello::Client {
            version: PROTOCOL_VERSION,
        };
        if self.send_message(SYN, &hello).await.is_err() {
            return LoginOutcome::Closed;
        }
        let nonce = match self.next_message().await {
            Ok(Some(Hello::Server { nonce, .. })) => nonce,
            other => panic!("expected ServerHello, got {other:?}"),
        };
        let mut login = Login {
            version: PROTOCOL_VERSION,
            hostname: "raw-test".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            user: String::new(),
            run_id: String::new(),
            proof: [0; 32],
            tcp_mux: true,
            client_id: String::new(),
            metas: Default::default(),
            caps: Vec::new(),
        };
        edit(&mut login);
        login.proof = Token::new(token).prove(
            Purpose::Login,
            &nonce,
            &[0u8; 32],
            &login.run_id,
            &login.user,
        );
        if self.send_message(0, &Hello::Login(login)).await.is_err() {
            return LoginOutcome::Closed;
        }
        match self.next_message().await {
            Ok(Some(Hello::LoginResp(r))) => match r.result {
                Ok(a) => LoginOutcome::Accepted { run_id: a.run_id },
                Err(e) => LoginOutcome::Rejected(e.to_string()),
            },
            _ => LoginOutcome::Closed,
        }
    }

    pub async fn new_proxy(&mut self, name: &str, remote_port: u16) -> io::Result<()> {
        let msg = Control::NewProxy(NewProxy {
            name: name.to_owned(),
            spec: ProxySpec::Tcp(TcpSpec { remote_port }),
            opts: ProxyOpts::default(),
        });
        self.send_message(0, &msg).await
    }

    /// Reads (and so answers nothing, grants nothing) until the server
    /// closes the connection; false if it is still open after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut sink = vec![0u8; 64 * 1024];
        let read_all = async {
            loop {
                match self.io.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, read_all).await.is_ok()
    }
}

/// A tcpMux = false work connection, proven for `user`'s session `run_id`
/// (plain TCP).
pub async fn work_conn(addr: SocketAddr, token: &str, user: &str, run_id: &str) -> TcpStream {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    io.write_all(&[wire::message::WORK_CONN_MARKER])
        .await
        .expect("marker");
    let nonce = match net::framed::read_message(&mut io).await {
        Ok(Some(Hello::Server { nonce, .. })) => nonce,
        other => panic!("expected ServerHello, got {other:?}"),
    };
    let proof = Token::new(token).prove(Purpose::WorkConn, &nonce, &[0u8; 32], run_id, user);
    let msg = Hello::NewWorkConn(NewWorkConn {
        run_id: run_id.to_owned(),
        user: user.to_owned(),
        proof,
    });
    net::framed::write_message(&mut io, &msg)
        .await
        .expect("NewWorkConn");
    io
}

/// Open descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
