//! TLS material for the tls scenarios: a CA and a server certificate made for the run
//! (rcgen, ECDSA P-256 as `scripts/make-certs` makes them), written where both brokers
//! read them, and the clients' rustls configuration trusting that CA.
//!
//! Both brokers serve the same certificate, so a handshake costs them the same
//! signature; the clients verify it as a device would. Session resumption is off in the
//! clients: every connection of the storm is a full handshake, on either broker.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

/// The files a TLS listener is given, and the clients' configuration that trusts them.
#[derive(Clone)]
pub struct TlsFiles {
    /// The server certificate (PEM), for localhost and 127.0.0.1.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8). Readable by others: Mosquitto started as root
    /// reads it after dropping to its own user.
    pub key: PathBuf,
    /// The CA that signed it (PEM).
    pub ca: PathBuf,
    /// Trusts `ca`, offers ALPN `mqtt`, never resumes a session.
    pub client: Arc<ClientConfig>,
}

/// Makes a CA and a server certificate in `dir` (replacing what was there).
pub fn make(dir: &Path) -> anyhow::Result<TlsFiles> {
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wasmq-bench CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;

    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: dir.join("ca.pem"),
        client: client_config(&ca_cert.pem())?,
    };
    std::fs::write(&files.cert, cert.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    std::fs::write(&files.ca, ca_cert.pem())?;
    Ok(files)
}

/// A client configuration trusting the CAs of `ca_pem` (ring, TLS 1.3 and 1.2, ALPN
/// `mqtt`, no session resumption).
pub fn client_config(ca_pem: &str) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("not a PEM certificate")?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "no CA certificate");
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// [`client_config`] for the CA bundle in `path` (`wasmq-bench run --ca-file`).
pub fn client_config_from(path: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    client_config(&pem).with_context(|| path.display().to_string())
}
