//! TLS listeners (tls, wss): rustls with ring, TLS 1.2 and 1.3, ALPN `mqtt` (wss:
//! `http/1.1` first, see [`alpn_protocols`]), client certificates checked against a CA
//! bundle when one is configured.
//!
//! The certificate, key and CA files are watched (notify, as the plugin folder): when
//! one changes, the configuration is built again and swapped whole, and the next
//! handshake uses it. Open connections keep the session they have; a file that does
//! not load leaves the previous configuration serving, and the log says why.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use notify::Watcher;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ServerConnection, WebPkiClientVerifier};
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto, version};
use tracing::{error, info, warn};

use crate::hooks::CertificateIdentity;
use crate::listener::{ListenerConfig, ListenerKind};

/// Quiet time after a change to the files before they are read: a certificate and its
/// key are usually replaced one after the other.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);

/// The files a TLS listener is made of.
#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
    require_client_cert: bool,
    /// What the handshake answers in ALPN: [`alpn_protocols`] of the listener's kind.
    alpn: Vec<Vec<u8>>,
}

/// The ALPN protocols a listener of `kind` answers, the preferred first. A client that
/// offers ALPN and none of these is refused in the handshake (rustls follows RFC 7301),
/// so wss answers `http/1.1`: it is HTTP/1.1 upgraded to WebSocket, and that is what
/// browsers offer for it (with `mqtt` alone, Chromium's wss handshake fails with
/// no_application_protocol). `mqtt` stays for clients that offer it on any transport.
fn alpn_protocols(kind: ListenerKind) -> Vec<Vec<u8>> {
    if kind.is_ws() {
        vec![b"http/1.1".to_vec(), b"mqtt".to_vec()]
    } else {
        vec![b"mqtt".to_vec()]
    }
}

/// A TLS listener's current configuration, swapped whole when its files change.
pub(crate) struct TlsState {
    listener: &'static str,
    files: TlsFiles,
    config: ArcSwap<ServerConfig>,
    /// Hash of the files' content that `config` was made of.
    loaded: Mutex<u64>,
}

/// Stops watching a listener's files when dropped.
pub(crate) struct TlsWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsState {
    /// Loads the listener's certificate, key and CA bundle; the error names the file.
    pub(crate) fn load(
        listener: &'static str,
        config: &ListenerConfig,
    ) -> anyhow::Result<Arc<TlsState>> {
        let files = TlsFiles {
            cert: config.cert_file.clone().context("cert_file is required")?,
            key: config.key_file.clone().context("key_file is required")?,
            ca: config.ca_file.clone(),
            require_client_cert: config.require_client_cert,
            alpn: alpn_protocols(config.kind),
        };
        let (server_config, hash) = build(&files)?;
        Ok(Arc::new(TlsState {
            listener,
            files,
            config: ArcSwap::from_pointee(server_config),
            loaded: Mutex::new(hash),
        }))
    }

    /// An acceptor with the current configuration.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Builds the configuration again from the files, if their content changed; the
    /// previous one keeps serving when they do not load.
    fn reload(&self) {
        match build(&self.files) {
            Ok((config, hash)) => {
                let mut loaded = self.loaded.lock();
                if *loaded != hash {
                    *loaded = hash;
                    self.config.store(Arc::new(config));
                    info!(listener = %self.listener, cert = %self.files.cert.display(), "TLS certificate reloaded");
                }
            }
            Err(e) => error!(
                listener = %self.listener,
                "cannot reload the TLS certificate: {e:#}; the previous one keeps serving"
            ),
        }
    }

    /// Watches the files (their folders, so a file replaced by a rename is seen).
    pub(crate) fn watch(self: &Arc<Self>) -> anyhow::Result<TlsWatch> {
        let mut paths: Vec<&Path> = vec![&self.files.cert, &self.files.key];
        paths.extend(self.files.ca.as_deref());
        let names: HashSet<PathBuf> = paths.iter().map(|p| absolute(p)).collect();
        let folders: HashSet<PathBuf> = names
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        let wake = Arc::new(Notify::new());
        let mut watcher = {
            let wake = wake.clone();
            let listener = self.listener;
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                // Reads are not changes (the reload's own read would wake it again).
                Ok(event) if event.kind.is_access() => {}
                // One of the files, or a Kubernetes secret volume's `..data` link, which
                // is swapped to replace every file of the volume at once.
                Ok(event) => {
                    if event.paths.iter().any(|p| {
                        names.contains(&absolute(p))
                            || p.file_name().is_some_and(|name| name == "..data")
                    }) {
                        wake.notify_one();
                    }
                }
                Err(e) => warn!(listener = %listener, error = %e, "TLS certificate watch error"),
            })?
        };
        for folder in &folders {
            watcher
                .watch(folder, notify::RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {}", folder.display()))?;
        }
        let state = self.clone();
        let task = tokio::spawn(async move {
            loop {
                wake.notified().await;
                tokio::time::sleep(RELOAD_DEBOUNCE).await;
                let state = state.clone();
                let _ = tokio::task::spawn_blocking(move || state.reload()).await;
            }
        });
        Ok(TlsWatch {
            _watcher: watcher,
            task,
        })
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The rustls configuration of `files`, and the hash of their content.
fn build(files: &TlsFiles) -> anyhow::Result<(ServerConfig, u64)> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let ca_pem = files.ca.as_deref().map(read).transpose()?;
    let mut hasher = DefaultHasher::new();
    (&cert_pem, &key_pem, &ca_pem, files.require_client_cert).hash(&mut hasher);

    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", files.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate in the file",
        files.cert.display()
    );
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("{}: no PEM private key", files.key.display()))?;

    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .context("TLS versions")?;
    let builder = match (&files.ca, &ca_pem) {
        (Some(ca_path), Some(ca_pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem) {
                let cert =
                    cert.with_context(|| format!("{}: not a PEM bundle", ca_path.display()))?;
                roots.add(cert).with_context(|| {
                    format!("{}: a CA certificate is invalid", ca_path.display())
                })?;
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "{}: no CA certificate in the file",
                ca_path.display()
            );
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .with_context(|| format!("{}: client verifier", ca_path.display()))?,
            )
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "{} and {} are not a certificate and its key",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = files.alpn.clone();
    Ok((config, hasher.finish()))
}

/// What the client's certificate names (verified in the handshake), if it sent one.
pub(crate) fn peer_identity(connection: &ServerConnection) -> Option<CertificateIdentity> {
    let cert = connection.peer_certificates()?.first()?;
    certificate_identity(cert)
}

/// One DER element: its tag, its content, and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject CN and the text subject alternative names of an X.509 certificate.
/// The certificate was verified by the handshake; this only walks it:
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo,
/// [1] issuerUniqueID OPTIONAL, [2] subjectUniqueID OPTIONAL, [3] extensions
/// OPTIONAL }, ... }. `None` when even the subject cannot be found; a malformed
/// extension only leaves its names out.
fn certificate_identity(cert: &[u8]) -> Option<CertificateIdentity> {
    let (SEQUENCE, cert, _) = der(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = der(tbs)?;
    if tag == 0xa0 {
        (_, _, rest) = der(rest)?; // the serial number after the version
    }
    for _ in 0..3 {
        (_, _, rest) = der(rest)?; // signature, issuer, validity
    }
    let (SEQUENCE, subject, rest) = der(rest)? else {
        return None;
    };
    let mut identity = CertificateIdentity {
        common_name: subject_common_name(subject),
        ..CertificateIdentity::default()
    };
    // subjectPublicKeyInfo, then the optional unique ids, then [3] extensions.
    let mut rest = der(rest).map_or(&[][..], |(_, _, rest)| rest);
    while let Some((tag, content, next)) = der(rest) {
        rest = next;
        if tag == 0xa3 {
            alternative_names(content, &mut identity);
        }
    }
    Some(identity)
}

/// The first common name (2.5.4.3) of a subject's RDN sequence.
fn subject_common_name(mut subject: &[u8]) -> Option<String> {
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    while !subject.is_empty() {
        let (SET, mut set, next) = der(subject)? else {
            return None;
        };
        subject = next;
        while !set.is_empty() {
            let (SEQUENCE, attribute, next) = der(set)? else {
                return None;
            };
            set = next;
            let (OID, oid, value) = der(attribute)? else {
                return None;
            };
            if oid == COMMON_NAME {
                let (tag, text, _) = der(value)?;
                return match tag {
                    // UTF8String, PrintableString, IA5String, TeletexString
                    0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(text.to_vec()).ok(),
                    // BMPString
                    0x1e => {
                        let units: Vec<u16> = text
                            .chunks_exact(2)
                            .map(|c| u16::from_be_bytes([c[0], c[1]]))
                            .collect();
                        String::from_utf16(&units).ok()
                    }
                    _ => None,
                };
            }
        }
    }
    None
}

/// Adds the names of the subjectAltName extension (2.5.29.17) found in `extensions`
/// (the content of [3]: SEQUENCE OF Extension ::= SEQUENCE { extnID, critical BOOLEAN
/// DEFAULT FALSE, extnValue OCTET STRING }) to `identity`: dNSName [2], rfc822Name [1]
/// and uniformResourceIdentifier [6], all IA5String. Other kinds (IP addresses,
/// directory names, other names) are not text and are left out.
fn alternative_names(extensions: &[u8], identity: &mut CertificateIdentity) -> Option<()> {
    const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    let (SEQUENCE, mut extensions, _) = der(extensions)? else {
        return None;
    };
    while !extensions.is_empty() {
        let (SEQUENCE, extension, next) = der(extensions)? else {
            return None;
        };
        extensions = next;
        let (OID, oid, mut value) = der(extension)? else {
            return None;
        };
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        let (mut tag, mut octets, rest) = der(value)?;
        if tag == BOOLEAN {
            value = rest;
            (tag, octets, _) = der(value)?;
        }
        if tag != OCTET_STRING {
            return None;
        }
        let (SEQUENCE, mut names, _) = der(octets)? else {
            return None;
        };
        while !names.is_empty() {
            let (tag, name, next) = der(names)?;
            names = next;
            let list = match tag {
                0x81 => &mut identity.emails,
                0x82 => &mut identity.dns_names,
                0x86 => &mut identity.uris,
                _ => continue,
            };
            if let Ok(text) = std::str::from_utf8(name) {
                list.push(text.to_string());
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject_common_name(cert: &[u8]) -> Option<String> {
        certificate_identity(cert)?.common_name
    }

    fn cert_with(subject: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_common_name_is_found() {
        let cert = cert_with(&[
            (rcgen::DnType::OrganizationName, "Acme"),
            (rcgen::DnType::CommonName, "device-42"),
        ]);
        assert_eq!(subject_common_name(&cert).as_deref(), Some("device-42"));
        let cert = cert_with(&[(rcgen::DnType::OrganizationName, "Acme")]);
        assert_eq!(subject_common_name(&cert), None);
        let cert = cert_with(&[(rcgen::DnType::CommonName, "capteur-é")]);
        assert_eq!(subject_common_name(&cert).as_deref(), Some("capteur-é"));
    }

    #[test]
    fn truncated_input_is_no_name() {
        let cert = cert_with(&[(rcgen::DnType::CommonName, "x")]);
        for len in [0, 1, 2, 10, cert.len() / 2] {
            assert_eq!(subject_common_name(&cert[..len]), None);
        }
    }

    #[test]
    fn the_text_alternative_names_are_found_in_order_and_the_others_left_out() {
        use rcgen::SanType;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "device-7");
        params.subject_alt_names = vec![
            SanType::DnsName("b.devices.example".try_into().unwrap()),
            SanType::IpAddress("10.0.0.7".parse().unwrap()),
            SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
            SanType::DnsName("a.devices.example".try_into().unwrap()),
            SanType::URI("spiffe://example.com/device/7".try_into().unwrap()),
        ];
        let cert = params.self_signed(&key).unwrap().der().to_vec();
        let identity = certificate_identity(&cert).unwrap();
        assert_eq!(
            identity,
            CertificateIdentity {
                common_name: Some("device-7".into()),
                dns_names: vec!["b.devices.example".into(), "a.devices.example".into()],
                emails: vec!["ops@example.com".into()],
                uris: vec!["spiffe://example.com/device/7".into()],
            }
        );
        // No extension at all: the CN alone.
        let cert = cert_with(&[(rcgen::DnType::CommonName, "bare")]);
        let identity = certificate_identity(&cert).unwrap();
        assert_eq!(identity.common_name.as_deref(), Some("bare"));
        assert_eq!(
            identity.dns_names,
            ["localhost"],
            "cert_with names localhost"
        );
        assert!(identity.emails.is_empty() && identity.uris.is_empty());
    }
}
