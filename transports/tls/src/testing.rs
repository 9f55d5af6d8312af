//! A throwaway PKI for tests: a CA and the certificates it signs, as PEM
//! files. Behind the `testing` feature; used by this crate's tests and the
//! workspace's end-to-end tests, so certificates are always made at test
//! time and none is committed.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// The key types a certificate may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Ed25519,
    /// 2048-bit RSA, made with the `openssl` command (ring cannot make RSA
    /// keys).
    Rsa,
}

fn key_pair(kind: KeyKind) -> KeyPair {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyKind::Rsa => {
            let out = Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ])
                .output()
                .expect("the openssl command (apt-get install openssl) makes the RSA test key");
            assert!(out.status.success(), "openssl genpkey failed");
            KeyPair::from_pem(&String::from_utf8_lossy(&out.stdout))
        }
    }
    .expect("test key")
}

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM text.
pub struct Issued {
    /// The certificate, then the CA's (a chain).
    pub chain_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let issuer =
            CertifiedIssuer::self_signed(params, key_pair(KeyKind::EcdsaP256)).expect("CA");
        Ca { issuer }
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (host names or IP addresses).
    pub fn server(&self, names: &[&str], kind: KeyKind) -> Issued {
        self.issue(names, kind, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str, kind: KeyKind) -> Issued {
        self.issue(&[name], kind, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, names: &[&str], kind: KeyKind, usage: ExtendedKeyUsagePurpose) -> Issued {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].as_str());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        let key = key_pair(kind);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Issued {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem()),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("test dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}
