//! TLS for the frpc↔frps connection (rustls with the ring provider).
//!
//! frps always has a certificate: the configured one, or a self-signed one
//! made on first start and kept on disk so its fingerprint stays the same.
//! frpc verifies the server by CA, by a pinned fingerprint, or on first use
//! (like SSH's known_hosts); checking the fingerprint happens right after the
//! handshake and before a single byte of the protocol is sent.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot keep the self-signed certificate in {}: {source}; set \
         transport.tls.selfSignedDir to a writable folder (or certFile and keyFile)",
        dir.display()
    )]
    SelfSignedDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS setup: {0}")]
    Verifier(String),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a certificate (DER), as lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

pub use config::normalize_fingerprint;

/// Groups a fingerprint as `ab:cd:…` for people to compare.
pub fn pretty_fingerprint(fp: &str) -> String {
    fp.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no certificate found (expected PEM)".into(),
        });
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, "private key", e))
}

fn pem_error(path: &Path, what: &'static str, e: rustls::pki_types::pem::Error) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            message: format!("no usable {what}: {other:?}"),
        },
    }
}

/// Loads the self-signed certificate kept at `cert`/`key`, making it first
/// if it does not exist yet. Returns the chain, the key and whether it was
/// just generated.
pub fn self_signed(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, bool), TlsError> {
    if cert.exists() && key.exists() {
        return Ok((load_certs(cert)?, load_key(key)?, false));
    }
    let made = rcgen::generate_simple_self_signed(vec!["frps".to_owned(), "localhost".to_owned()])?;
    write_private(key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, made.cert.pem()).map_err(|source| TlsError::Write {
        path: cert.to_owned(),
        source,
    })?;
    Ok((load_certs(cert)?, load_key(key)?, true))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })?;
    f.write_all(data).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// The server side. With `client_ca`, clients must present a certificate
/// signed by it (mutual TLS).
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider,
            )
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(builder.with_single_cert(certs, key)?))
}

/// How frpc decides to trust the server.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Chain to this CA, for this name.
    Ca(PathBuf),
    /// The certificate must have this SHA-256 fingerprint.
    Pinned(String),
    /// Remember the fingerprint on first connect; refuse if it changes.
    FirstUse { known_hosts: PathBuf },
    /// No verification at all (explicit opt-in, logged loudly).
    Insecure,
}

pub fn client_config(
    trust: &ServerTrust,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match trust {
        ServerTrust::Ca(ca) => builder.with_root_certificates(roots(ca)?),
        // The fingerprint is checked after the handshake; during it the
        // server must still prove it holds the certificate's key.
        ServerTrust::Pinned(_) | ServerTrust::FirstUse { .. } | ServerTrust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignatureOnly { provider })),
    };
    let mut cfg = match client_cert {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key)?,
        None => builder.with_no_client_auth(),
    };
    // frps's server ignores it (it offers no ALPN); on a bindPort shared
    // with https virtual hosts it tells a login from a user whatever name
    // the hello carries, so no proxy can claim frpc's server name.
    cfg.alpn_protocols = vec![CLIENT_ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// The ALPN protocol of xtcp's peer-to-peer QUIC sessions.
pub const P2P_ALPN: &[u8] = b"frp-rs-p2p";

/// A QUIC server's TLS for one P2P session: a certificate made for it
/// (never stored), TLS 1.3 only; returns its fingerprint, which the peer
/// learns over the rendezvous and pins.
pub fn p2p_server_config() -> Result<(Arc<rustls::ServerConfig>, String), TlsError> {
    let made = rcgen::generate_simple_self_signed(vec!["frp-rs-p2p".to_owned()])?;
    let cert = made.cert.der().clone();
    let fp = fingerprint(&cert);
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![P2P_ALPN.to_vec()];
    Ok((Arc::new(cfg), fp))
}

/// The QUIC client's TLS for a P2P session: the server's certificate must
/// have `fingerprint` (and the server prove its key).
pub fn p2p_client_config(fingerprint: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Pinned {
        fingerprint: fingerprint.to_ascii_lowercase(),
        inner: SignatureOnly {
            provider: provider.clone(),
        },
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![P2P_ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts exactly the certificate of one fingerprint.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    inner: SignatureOnly,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match fingerprint(end_entity) == self.fingerprint {
            true => Ok(ServerCertVerified::assertion()),
            false => Err(rustls::Error::General(
                "the peer's certificate is not the one the rendezvous named".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The ALPN protocol frpc offers when it connects to frps.
pub const CLIENT_ALPN: &[u8] = b"frp-rs";

/// Accepts any certificate but checks the handshake signatures, so the peer
/// must own the key of the certificate whose fingerprint is checked later.
struct SignatureOnly {
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for SignatureOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignatureOnly")
    }
}

impl ServerCertVerifier for SignatureOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a server's certificate was refused after the handshake.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("server presented no certificate")]
    NoCertificate,
    #[error(
        "server certificate fingerprint {} does not match transport.tls.serverFingerprint {}",
        pretty_fingerprint(got),
        pretty_fingerprint(want)
    )]
    PinMismatch { got: String, want: String },
    #[error(
        "SERVER CERTIFICATE CHANGED for {host}: known fingerprint {}, now {}. \
         This could be an attack (someone in the middle) or the server got a new certificate. \
         If the change is expected, delete the line for {host} from {}, or pin the new one with \
         transport.tls.serverFingerprint = \"{}\"",
        pretty_fingerprint(known),
        pretty_fingerprint(got),
        file.display(),
        pretty_fingerprint(got)
    )]
    Changed {
        host: String,
        known: String,
        got: String,
        file: PathBuf,
    },
    #[error(
        "known servers file {}: {source}; set transport.tls.knownHostsFile to a writable path \
         (or serverFingerprint)",
        file.display()
    )]
    KnownHosts {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// What [`check_server`] concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Trusted {
    /// Verified by CA during the handshake.
    ByCa,
    Pinned,
    /// Matched the fingerprint remembered earlier.
    Known,
    /// Seen for the first time; now remembered.
    FirstUse(String),
    Unverified,
}

/// The post-handshake check for pinned and trust-on-first-use modes.
/// `host` is "addr:port" as configured.
pub fn check_server(
    trust: &ServerTrust,
    host: &str,
    chain: Option<&[CertificateDer<'_>]>,
) -> Result<Trusted, TrustError> {
    let fp = || {
        chain
            .and_then(|c| c.first())
            .map(fingerprint)
            .ok_or(TrustError::NoCertificate)
    };
    match trust {
        ServerTrust::Ca(_) => Ok(Trusted::ByCa),
        ServerTrust::Insecure => Ok(Trusted::Unverified),
        ServerTrust::Pinned(want) => {
            let got = fp()?;
            let want = normalize_fingerprint(want);
            if got == want {
                Ok(Trusted::Pinned)
            } else {
                Err(TrustError::PinMismatch { got, want })
            }
        }
        ServerTrust::FirstUse { known_hosts } => first_use(known_hosts, host, fp()?),
    }
}

/// The fingerprint `host` has in a known-servers file's text, if any.
/// Lines are "host fingerprint"; anything else is ignored.
pub fn known_fingerprint(text: &str, host: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(host)).then(|| parts.next().map(normalize_fingerprint))?
    })
}

/// Trust on first use. The file is read and, for a new server, appended
/// to under an exclusive lock, with the line written in one call and
/// synced: frpc instances sharing the file cannot both add a line for the
/// same server, nor interleave their lines.
fn first_use(known_hosts: &Path, host: &str, got: String) -> Result<Trusted, TrustError> {
    use std::io::{Read, Write};
    let io = |source| TrustError::KnownHosts {
        file: known_hosts.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(known_hosts)
        .map_err(io)?;
    let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io(e.into()))?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    match known_fingerprint(&text, host) {
        Some(k) if k == got => Ok(Trusted::Known),
        Some(k) => Err(TrustError::Changed {
            host: host.to_owned(),
            known: k,
            got,
            file: known_hosts.to_owned(),
        }),
        None => {
            // A file whose last line lacks its newline still gets whole lines.
            let sep = if text.is_empty() || text.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            file.write_all(format!("{sep}{host} {got}\n").as_bytes())
                .map_err(io)?;
            file.sync_data().map_err(io)?;
            Ok(Trusted::FirstUse(got))
        }
    }
}

/// Label for the keying material that binds the login proof to this TLS
/// session, so a proof relayed through another session is worthless.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-frp-rs-login";

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> CertificateDer<'static> {
        let made = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).expect("generate");
        made.cert.der().clone()
    }

    #[test]
    fn fingerprints_normalize() {
        let c = cert();
        let fp = fingerprint(&c);
        assert_eq!(fp.len(), 64);
        assert_eq!(normalize_fingerprint(&pretty_fingerprint(&fp)), fp);
    }

    #[test]
    fn pinning() {
        let c = cert();
        let fp = fingerprint(&c);
        let chain = [c];
        let ok = check_server(
            &ServerTrust::Pinned(pretty_fingerprint(&fp)),
            "h:1",
            Some(&chain),
        );
        assert_eq!(ok.expect("pinned"), Trusted::Pinned);
        let bad = check_server(&ServerTrust::Pinned("00".repeat(32)), "h:1", Some(&chain));
        assert!(matches!(bad, Err(TrustError::PinMismatch { .. })));
    }

    /// frpc instances sharing the file and meeting different certificates
    /// for one new server: exactly one line is written for it, whole, and
    /// every other instance sees that one (known, or changed).
    #[test]
    fn first_use_is_one_whole_line_under_concurrency() {
        let dir = tempfile_dir("race");
        let file = dir.join("known");
        std::fs::write(&file, "other:1 ab").expect("unterminated line");
        let trust = ServerTrust::FirstUse {
            known_hosts: file.clone(),
        };
        let results: Vec<_> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..16)
                .map(|_| {
                    let trust = &trust;
                    sc.spawn(move || check_server(trust, "srv:7000", Some(&[cert()])))
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let first = results
            .iter()
            .filter(|r| matches!(r, Ok(Trusted::FirstUse(_))))
            .count();
        assert_eq!(first, 1, "{results:?}");
        assert!(results.iter().all(|r| matches!(
            r,
            Ok(Trusted::FirstUse(_)) | Err(TrustError::Changed { .. })
        )));
        let text = std::fs::read_to_string(&file).expect("read");
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(
            lines[1].starts_with("srv:7000 ") && lines[1].len() == 9 + 64,
            "{text:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("frp-rs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn first_use_remembers_then_enforces() {
        let dir = std::env::temp_dir().join(format!("frp-rs-tofu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("known");
        let _ = std::fs::remove_file(&file);
        let trust = ServerTrust::FirstUse {
            known_hosts: file.clone(),
        };
        let a = [cert()];
        let b = [cert()];
        assert!(matches!(
            check_server(&trust, "srv:7000", Some(&a)),
            Ok(Trusted::FirstUse(_))
        ));
        assert_eq!(
            check_server(&trust, "srv:7000", Some(&a)).expect("known"),
            Trusted::Known
        );
        // Another server is independent.
        assert!(matches!(
            check_server(&trust, "other:7000", Some(&b)),
            Ok(Trusted::FirstUse(_))
        ));
        let err = check_server(&trust, "srv:7000", Some(&b)).expect_err("changed");
        let msg = err.to_string();
        assert!(
            msg.contains("CHANGED") && msg.contains(&pretty_fingerprint(&fingerprint(&a[0]))),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
