//! Clients for the TLS and WebSocket listeners: certificates made in the test (rcgen), a
//! TLS client (tokio-rustls), a WebSocket client (tokio-tungstenite), and an MQTT client
//! on the project's codec over any of them, byte-exact like [`crate::RawClient`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use wasmq_codec::{ConnAck, Connect, Packet, Protocol};

use crate::WAIT;

/// A certificate authority made for one test, and the certificates it signs.
pub struct TestPki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct CertPem {
    pub cert: String,
    pub key: String,
}

impl TestPki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestPki {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        TestPki {
            ca_pem: cert.pem(),
            ca: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for localhost and 127.0.0.1.
    pub fn server(&self) -> CertPem {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose subject CN is `cn`.
    pub fn client(&self, cn: &str) -> CertPem {
        self.client_with_names(cn, Vec::new())
    }

    /// A client certificate whose subject CN is `cn` and whose subject alternative
    /// names are `names`.
    pub fn client_with_names(&self, cn: &str, names: Vec<rcgen::SanType>) -> CertPem {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = names;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: rcgen::CertificateParams) -> CertPem {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("signed certificate");
        CertPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes `server.pem`, `server.key` (a server certificate) and `ca.pem` into `dir`.
    pub fn write_server_files(&self, dir: &Path) -> ServerFiles {
        let files = ServerFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca: dir.join("ca.pem"),
        };
        let server = self.server();
        std::fs::write(&files.cert, server.cert).unwrap();
        std::fs::write(&files.key, server.key).unwrap();
        std::fs::write(&files.ca, &self.ca_pem).unwrap();
        files
    }
}

/// Where [`TestPki::write_server_files`] put them.
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A TLS client configuration trusting `ca_pem`, offering ALPN `mqtt`, with `client` as
/// its certificate if given.
pub fn tls_client_config(ca_pem: &str, client: Option<&CertPem>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(client) => {
            let certs = CertificateDer::pem_slice_iter(client.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(client.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` (checked as 127.0.0.1).
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.context("connect")?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio::time::timeout(WAIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
    Ok(tls)
}

/// Any byte stream a test client runs on.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ByteStream for T {}

/// A WebSocket handshake on `stream` for `path`, offering `subprotocol` (if any); the
/// socket and the subprotocol the server answered.
pub async fn ws_connect(
    stream: Box<dyn ByteStream>,
    path: &str,
    subprotocol: Option<&str>,
) -> Result<(WebSocketStream<Box<dyn ByteStream>>, Option<String>), tungstenite::Error> {
    let mut request = format!("ws://127.0.0.1{path}").into_client_request()?;
    if let Some(subprotocol) = subprotocol {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(subprotocol).unwrap(),
        );
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await?;
    let answered = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((ws, answered))
}

enum Io {
    Bytes(Box<dyn ByteStream>),
    Ws(Box<WebSocketStream<Box<dyn ByteStream>>>),
}

/// An MQTT client on the project's codec over a TLS or WebSocket stream (or any other):
/// whole packets, nothing automatic.
pub struct StreamClient {
    io: Io,
    protocol: Protocol,
    rbuf: BytesMut,
}

impl StreamClient {
    /// MQTT over a byte stream (TLS, plain TCP).
    pub fn over_bytes(stream: impl ByteStream + 'static, protocol: Protocol) -> StreamClient {
        StreamClient {
            io: Io::Bytes(Box::new(stream)),
            protocol,
            rbuf: BytesMut::new(),
        }
    }

    /// MQTT over a WebSocket: each send is one binary message.
    pub fn over_ws(ws: WebSocketStream<Box<dyn ByteStream>>, protocol: Protocol) -> StreamClient {
        StreamClient {
            io: Io::Ws(Box::new(ws)),
            protocol,
            rbuf: BytesMut::new(),
        }
    }

    /// The protocol this client speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The WebSocket under a client made by [`StreamClient::over_ws`] (to send other
    /// frames).
    pub fn websocket(&mut self) -> Option<&mut WebSocketStream<Box<dyn ByteStream>>> {
        match &mut self.io {
            Io::Ws(ws) => Some(&mut **ws),
            Io::Bytes(_) => None,
        }
    }

    /// Sends one packet.
    pub async fn send(&mut self, packet: Packet) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        packet.encode(self.protocol, &mut out);
        self.send_raw(&out).await
    }

    /// Sends raw bytes (on a WebSocket, as one binary message).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match &mut self.io {
            Io::Bytes(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await?;
            }
            Io::Ws(ws) => {
                ws.send(Message::Binary(Bytes::copy_from_slice(bytes)))
                    .await?
            }
        }
        Ok(())
    }

    /// Sends `connect` and returns the CONNACK.
    pub async fn connect(&mut self, connect: Connect) -> anyhow::Result<ConnAck> {
        self.send(Packet::Connect(Box::new(connect))).await?;
        match self.recv().await? {
            Packet::ConnAck(connack) => Ok(connack),
            other => bail!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next packet within [`WAIT`].
    pub async fn recv(&mut self) -> anyhow::Result<Packet> {
        self.recv_within(WAIT)
            .await?
            .context("connection closed while waiting for a packet")
    }

    /// The next packet within `wait`; `Ok(None)` when the broker closed the connection.
    pub async fn recv_within(&mut self, wait: Duration) -> anyhow::Result<Option<Packet>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(packet) = Packet::decode(&mut self.rbuf, self.protocol, u32::MAX)? {
                return Ok(Some(packet));
            }
            let more = tokio::time::timeout_at(deadline, async {
                match &mut self.io {
                    Io::Bytes(stream) => Ok(stream.read_buf(&mut self.rbuf).await? > 0),
                    Io::Ws(ws) => loop {
                        match ws.next().await {
                            Some(Ok(Message::Binary(data))) => {
                                self.rbuf.extend_from_slice(&data);
                                return Ok(true);
                            }
                            Some(Ok(Message::Close(_))) | None => return Ok(false),
                            Some(Ok(_)) => {}
                            Some(Err(
                                tungstenite::Error::ConnectionClosed
                                | tungstenite::Error::AlreadyClosed,
                            )) => return Ok(false),
                            Some(Err(e)) => return Err(anyhow::Error::from(e)),
                        }
                    },
                }
            })
            .await;
            match more {
                Err(_) => bail!("no packet within {wait:?}"),
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return Ok(None),
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}
