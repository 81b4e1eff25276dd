//! The connection under the multiplexer: plain TCP or TLS, chosen in exactly
//! one place per side. frps tells the two apart by the first byte (a TLS
//! record starts with 0x16, a yamux frame with version 0), so one port
//! serves both unless `transport.tls.force` is set.

use std::path::Path;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::activity::Metered;
use crate::tls::{self, ServerTrust, TlsAcceptor, TlsConnector, TlsError, TrustError, Trusted};
use config::{ClientConfig, ServerConfig};

/// Anything the multiplexer can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type BoxIo = Box<dyn Io>;

/// Keying material that binds the login proof to the TLS session (zeros on
/// plain TCP, where there is no session to bind to).
pub type Binding = [u8; 32];

/// What the first bytes of a new connection say about the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    Tls,
    Plain,
    Http,
    Unknown(u8),
}

pub fn classify(first: &[u8]) -> FirstBytes {
    const HTTP: [&[u8]; 9] = [
        b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"CONN", b"PATC", b"PRI ",
    ];
    match first.first() {
        Some(0x16) => FirstBytes::Tls,
        Some(0x00) | Some(&wire::message::WORK_CONN_MARKER) => FirstBytes::Plain,
        Some(b)
            if HTTP
                .iter()
                .any(|m| first.starts_with(m) || m.starts_with(first)) =>
        {
            if first.len() >= 3 {
                FirstBytes::Http
            } else {
                FirstBytes::Unknown(*b)
            }
        }
        Some(b) => FirstBytes::Unknown(*b),
        None => FirstBytes::Unknown(0),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("closed before sending anything")]
    Silent,
    #[error("an HTTP request, not a frp-rs client")]
    Http,
    #[error("not a frp-rs client (first byte 0x{0:02x})")]
    Unknown(u8),
    #[error("plain TCP refused: the server requires TLS (transport.tls.force)")]
    PlainRefused,
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// frps's side: always able to speak TLS.
pub struct ServerSide {
    acceptor: TlsAcceptor,
    force: bool,
    /// SHA-256 of the certificate, for the log and for pinning.
    pub fingerprint: String,
    /// Path of a self-signed certificate made by this start, if any.
    pub generated: Option<std::path::PathBuf>,
}

impl ServerSide {
    pub fn new(cfg: &ServerConfig) -> Result<Self, TlsError> {
        let t = &cfg.transport.tls;
        let (certs, key, generated) = if t.cert_file.is_empty() {
            let (cert, key) = cfg.self_signed_paths();
            let (certs, k, made) = tls::self_signed(&cert, &key).map_err(|e| match e {
                TlsError::Write { path, source } => TlsError::SelfSignedDir {
                    dir: path.parent().map(Path::to_path_buf).unwrap_or(path),
                    source,
                },
                other => other,
            })?;
            (certs, k, made.then_some(cert))
        } else {
            (
                tls::load_certs(Path::new(&t.cert_file))?,
                tls::load_key(Path::new(&t.key_file))?,
                None,
            )
        };
        let fingerprint = tls::fingerprint(&certs[0]);
        let client_ca = (!t.trusted_ca_file.is_empty()).then(|| Path::new(&t.trusted_ca_file));
        let config = tls::server_config(certs, key, client_ca)?;
        Ok(ServerSide {
            acceptor: TlsAcceptor::from(config),
            // Client certificates are checked only in TLS: with a CA set,
            // plain TCP would walk around them (as in frp, it implies force).
            force: t.force || client_ca.is_some(),
            fingerprint,
            generated,
        })
    }

    /// Sorts out what the peer speaks and completes TLS if it is TLS.
    pub async fn accept(
        &self,
        tcp: Metered<TcpStream>,
    ) -> Result<(BoxIo, Binding), HandshakeError> {
        let mut first = [0u8; 4];
        let n = tcp.get_ref().peek(&mut first).await?;
        match classify(&first[..n]) {
            FirstBytes::Tls => {
                let stream = match self.acceptor.accept(tcp).into_fallible().await {
                    Ok(s) => s,
                    Err((e, tcp)) => {
                        close_gently(tcp).await;
                        return Err(HandshakeError::Tls(e));
                    }
                };
                let binding = stream
                    .get_ref()
                    .1
                    .export_keying_material([0u8; 32], tls::EXPORTER_LABEL, None)
                    .map_err(|e| HandshakeError::Tls(std::io::Error::other(e)))?;
                Ok((Box::new(stream), binding))
            }
            FirstBytes::Plain if self.force => Err(HandshakeError::PlainRefused),
            FirstBytes::Plain => Ok((Box::new(tcp), [0u8; 32])),
            _ if n == 0 => Err(HandshakeError::Silent),
            FirstBytes::Http => Err(HandshakeError::Http),
            FirstBytes::Unknown(b) => Err(HandshakeError::Unknown(b)),
        }
    }
}

/// How long a refused handshake's connection is kept to take what the
/// peer still sends, and how much of it ([`close_gently`]).
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Closes a connection whose TLS handshake failed so that the alert just
/// sent (a missing or unknown client certificate, say) reaches the peer.
/// Closing with the peer's bytes still unread would send a reset, and in
/// TLS 1.3 the client sends its first data right behind its certificate:
/// the reset would overtake the alert and frpc would only see a broken
/// pipe. So: our side is shut, and what the peer sends is read and dropped
/// until it closes too, for at most [`LINGER`] and [`LINGER_BYTES`].
async fn close_gently(mut tcp: Metered<TcpStream>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut taken = 0;
        while taken < LINGER_BYTES {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => taken += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// frpc's side.
pub struct ClientSide {
    tls: Option<(TlsConnector, ServerTrust, ServerName<'static>)>,
    /// "serverAddr:serverPort", the key for trust on first use.
    host: String,
}

impl ClientSide {
    pub fn new(cfg: &ClientConfig) -> Result<Self, TlsError> {
        let host = format!("{}:{}", cfg.server_addr, cfg.server_port);
        let t = &cfg.transport.tls;
        if !t.enable {
            return Ok(ClientSide { tls: None, host });
        }
        let trust = if !t.trusted_ca_file.is_empty() {
            ServerTrust::Ca(t.trusted_ca_file.clone().into())
        } else if !t.server_fingerprint.is_empty() {
            ServerTrust::Pinned(t.server_fingerprint.clone())
        } else if t.insecure_skip_verify {
            ServerTrust::Insecure
        } else {
            ServerTrust::FirstUse {
                known_hosts: cfg.known_hosts_path(),
            }
        };
        let client_cert = if t.cert_file.is_empty() {
            None
        } else {
            Some((
                tls::load_certs(Path::new(&t.cert_file))?,
                tls::load_key(Path::new(&t.key_file))?,
            ))
        };
        let config = tls::client_config(&trust, client_cert)?;
        let name = if t.server_name.is_empty() {
            &cfg.server_addr
        } else {
            &t.server_name
        };
        let name = match (ServerName::try_from(name.clone()), &trust) {
            (Ok(n), _) => n,
            // The CA check verifies this name: never a stand-in.
            (Err(_), ServerTrust::Ca(_)) => {
                return Err(TlsError::Verifier(format!(
                    "{name:?} is not a valid TLS server name: set transport.tls.serverName to \
                     the name in the server's certificate"
                )))
            }
            // Pinned and first-use trust check the certificate itself; the
            // name is only sent as SNI.
            (Err(_), _) => ServerName::try_from("frps".to_owned())
                .map_err(|e| TlsError::Verifier(e.to_string()))?,
        };
        Ok(ClientSide {
            tls: Some((TlsConnector::from(config), trust, name)),
            host,
        })
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Runs the TLS handshake (if enabled) and checks the server's
    /// certificate before anything else is sent.
    pub async fn connect(&self, tcp: Metered<TcpStream>) -> Result<Connected, HandshakeError> {
        let Some((connector, trust, name)) = &self.tls else {
            return Ok(Connected {
                io: Box::new(tcp),
                binding: [0u8; 32],
                trusted: Trusted::Unverified,
                fingerprint: None,
            });
        };
        let stream = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(HandshakeError::Tls)?;
        let conn = stream.get_ref().1;
        let chain = conn.peer_certificates();
        let trusted = tls::check_server(trust, &self.host, chain)?;
        let fingerprint = chain.and_then(|c| c.first()).map(tls::fingerprint);
        let binding = conn
            .export_keying_material([0u8; 32], tls::EXPORTER_LABEL, None)
            .map_err(|e| HandshakeError::Tls(std::io::Error::other(e)))?;
        Ok(Connected {
            io: Box::new(stream),
            binding,
            trusted,
            fingerprint,
        })
    }
}

/// A connection to frps with TLS done and the server checked.
pub struct Connected {
    pub io: BoxIo,
    pub binding: Binding,
    pub trusted: Trusted,
    /// SHA-256 of the server's certificate (hex), with TLS on.
    pub fingerprint: Option<String>,
}

/// Gives back one byte that was read to tell connection kinds apart.
pub struct Prefixed<T> {
    first: Option<u8>,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(first: u8, inner: T) -> Self {
        Prefixed {
            first: Some(first),
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(b) = self.first {
            if buf.remaining() > 0 {
                buf.put_slice(&[b]);
                self.first = None;
                return std::task::Poll::Ready(Ok(()));
            }
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CA mode verifies the configured name: one that is not a valid TLS
    /// name is a configuration error, never a silent stand-in.
    #[test]
    fn ca_mode_needs_a_valid_server_name() {
        let dir = std::env::temp_dir().join(format!("frp-rs-ca-name-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.pem");
        let made = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).expect("ca");
        std::fs::write(&ca, made.cert.pem()).expect("write");
        let cfg = |addr: &str| {
            ClientConfig::from_toml(&format!(
                "serverAddr = \"{addr}\"\ntransport.tls.trustedCaFile = \"{}\"\n",
                ca.display()
            ))
            .expect("config")
        };
        let err = ClientSide::new(&cfg("bad_name!")).err().expect("refused");
        assert!(err.to_string().contains("serverName"), "{err}");
        assert!(ClientSide::new(&cfg("frps.example.com")).is_ok());
        assert!(ClientSide::new(&cfg("127.0.0.1")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn first_bytes() {
        assert_eq!(classify(&[0x16, 3, 1]), FirstBytes::Tls);
        assert_eq!(classify(&[0, 0, 0, 1]), FirstBytes::Plain);
        assert_eq!(
            classify(&[wire::message::WORK_CONN_MARKER]),
            FirstBytes::Plain
        );
        assert_eq!(classify(b"GET / HTTP/1.1"), FirstBytes::Http);
        assert_eq!(classify(b"POST"), FirstBytes::Http);
        assert_eq!(classify(b"\xff\xfe"), FirstBytes::Unknown(0xff));
        assert_eq!(classify(b"G"), FirstBytes::Unknown(b'G'));
    }
}
