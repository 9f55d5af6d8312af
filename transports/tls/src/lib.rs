//! TLS for etherws's transports (`wss://`, `quic://`): rustls 0.23 (ring),
//! with futures-rustls for streams. Its own crate so that no transport
//! depends on another for it.
//!
//! Server: a certificate chain and key from PEM files, optionally requiring
//! client certificates signed by a CA (mutual TLS). Client: verifies the
//! server's chain and name against the system roots or a CA file, or skips
//! verification when told to (`--insecure`, for testing). Both re-read their
//! files on [`TlsServer::reload`] / [`TlsClient::reload`] (SIGHUP): new
//! connections use the new files, established ones keep theirs.

#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_rustls::rustls::{self, pki_types, RootCertStore};
use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{what} {path}: {detail}")]
    File {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |detail: String| TlsError::File {
        what,
        path: path.to_path_buf(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file_err = |detail: String| TlsError::File {
        what: "private key",
        path: path.to_path_buf(),
        detail,
    };
    // Unreadable is not malformed: say which.
    let bytes = std::fs::read(path).map_err(|e| {
        file_err(match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "cannot be read by this user (run as one that can, or give it group read)".into()
            }
            std::io::ErrorKind::NotFound => "no such file".into(),
            _ => e.to_string(),
        })
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        file_err("holds no private key (expected a PEM RSA, ECDSA or Ed25519 key)".into())
    })
}

fn roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(what, path)? {
        store.add(c).map_err(|e| TlsError::File {
            what,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    Ok(store)
}

/// What the server's TLS is made of.
#[derive(Clone, Debug)]
pub struct ServerTlsFiles {
    /// PEM: the server certificate first, then its chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// Require client certificates signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
}

/// The server side, reloadable.
pub struct TlsServer {
    files: ServerTlsFiles,
    acceptor: ArcSwap<futures_rustls::TlsAcceptor>,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("files", &self.files)
            .finish()
    }
}

/// The rustls server configuration `files` make (ALPN `http/1.1`; other
/// transports, e.g. QUIC, set their own). Exposed so every transport
/// takes the same certificate options.
pub fn server_config(files: &ServerTlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let chain = certs("certificate file", &files.cert)?;
    let key = key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots("client CA file", ca)?),
                provider,
            )
            .build()
            .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Config(format!(
            "the private key {} does not belong to the certificate {} (give the key the \
             certificate was made for)",
            files.key.display(),
            files.cert.display()
        )),
        e => TlsError::Config(format!("certificate and key: {e}")),
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl TlsServer {
    pub fn new(files: ServerTlsFiles) -> Result<Self, TlsError> {
        let acceptor = futures_rustls::TlsAcceptor::from(Arc::new(server_config(&files)?));
        Ok(TlsServer {
            files,
            acceptor: ArcSwap::from_pointee(acceptor),
        })
    }

    /// Re-reads the files; on error the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = futures_rustls::TlsAcceptor::from(Arc::new(server_config(&self.files)?));
        self.acceptor.store(Arc::new(acceptor));
        Ok(())
    }

    pub fn acceptor(&self) -> Arc<futures_rustls::TlsAcceptor> {
        self.acceptor.load_full()
    }

    pub fn requires_client_cert(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

/// What the client's TLS is made of.
#[derive(Clone, Debug, Default)]
pub struct ClientTlsFiles {
    /// Trust these CAs (PEM) instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Present this certificate chain and key (mutual TLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Do not verify the server at all (testing only).
    pub insecure: bool,
    /// The name to send (SNI) and verify, instead of the URL's host.
    pub sni: Option<String>,
}

/// The client side, reloadable.
pub struct TlsClient {
    files: ClientTlsFiles,
    connector: ArcSwap<futures_rustls::TlsConnector>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("files", &self.files)
            .finish()
    }
}

/// The rustls client configuration `files` make (see [`server_config`]).
pub fn client_config(files: &ClientTlsFiles) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if files.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let store = match &files.ca {
            Some(ca) => roots("CA file", ca)?,
            None => {
                let found = rustls_native_certs::load_native_certs();
                let mut store = RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::Config(
                        "no system root certificates found; give --ca FILE".into(),
                    ));
                }
                store
            }
        };
        builder.with_root_certificates(store)
    };
    let mut cfg = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs("client certificate file", c)?, key(k)?)
            .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Config(
                "a client certificate needs both --cert and --key".into(),
            ))
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl TlsClient {
    pub fn new(files: ClientTlsFiles) -> Result<Self, TlsError> {
        let connector = futures_rustls::TlsConnector::from(Arc::new(client_config(&files)?));
        Ok(TlsClient {
            files,
            connector: ArcSwap::from_pointee(connector),
        })
    }

    /// Re-reads the files; on error the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let c = futures_rustls::TlsConnector::from(Arc::new(client_config(&self.files)?));
        self.connector.store(Arc::new(c));
        Ok(())
    }

    pub fn connector(&self) -> Arc<futures_rustls::TlsConnector> {
        self.connector.load_full()
    }

    /// The name to verify the server against: `--sni`, else the URL's host.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = self.files.sni.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_string())
            .map_err(|e| TlsError::Config(format!("bad server name {name:?}: {e}")))
    }

    pub fn is_insecure(&self) -> bool {
        self.files.insecure
    }
}

/// Says why a TLS handshake failed, in words an operator can act on.
pub fn explain(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForNameContext {
                expected,
                presented,
            },
        )) => {
            let expected = match expected {
                ServerName::DnsName(d) => d.as_ref().to_string(),
                ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
                other => format!("{other:?}"),
            };
            // rustls words them `DnsName("a.b")`, `IpAddress(1.2.3.4)`.
            let plain = |n: &String| {
                n.strip_prefix("DnsName(\"")
                    .and_then(|r| r.strip_suffix("\")"))
                    .or_else(|| {
                        n.strip_prefix("IpAddress(")
                            .and_then(|r| r.strip_suffix(')'))
                    })
                    .unwrap_or(n)
                    .to_string()
            };
            let names = if presented.is_empty() {
                "no names".to_string()
            } else {
                presented.iter().map(plain).collect::<Vec<_>>().join(", ")
            };
            format!(
                "certificate verification failed: the server's certificate is for {names}, not \
                 {expected} (connect by one of those names, or give --sni NAME)"
            )
        }
        Some(rustls::Error::InvalidCertificate(c)) => {
            let hint = match c {
                rustls::CertificateError::UnknownIssuer => {
                    "the certificate is not signed by a trusted CA (give --ca FILE; --insecure skips the check, for testing only)"
                }
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "the certificate does not name this host (connect by the name it has, or give --sni NAME)"
                }
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                    "the certificate has expired"
                }
                _ => "the certificate was refused",
            };
            format!("certificate verification failed: {c:?}: {hint}")
        }
        Some(rustls::Error::AlertReceived(a)) => {
            format!("the peer refused the TLS handshake (alert {a:?})")
        }
        Some(rustls::Error::NoCertificatesPresented) => {
            "the client presented no certificate (--client-ca requires one: --cert, --key)"
                .to_string()
        }
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            "the server did not answer in TLS (is it a plain ws:// listener? then use ws://)"
                .to_string()
        }
        Some(other) => format!("TLS error: {other}"),
        None => e.to_string(),
    }
}

/// The verifier of `--insecure`: accepts any server certificate, but still
/// checks that the server holds its key (the handshake signatures).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls stream types, at the version this crate uses.
pub use futures_rustls;
