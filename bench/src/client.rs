//! A minimal MQTT client on the project's codec (3.1.1 for the scenarios, 5.0 where a
//! benchmark needs reason codes): connect, subscribe, and the raw read/write halves the
//! scenarios drive themselves. No event loop, no retries, no
//! allocation per message beyond the codec's: the generator must stay cheaper than the
//! broker it measures.
//!
//! A [`Target`] says how to reach a broker: plain TCP, TLS (tokio-rustls with ring, as
//! the broker) or WebSocket (the broker's own [`wasmq::WsStream`] over a tungstenite
//! client handshake). Every scenario runs on any of them through [`Stream`]; plain TCP
//! stays a variant of its own, a match away from the socket.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use wasmq::WsStream;
use wasmq_codec::{
    Connect, ConnectProperties, Packet, Protocol, QoS, Subscribe, SubscriptionOptions,
};

/// Every client speaks MQTT 3.1.1: both brokers support it fully and it has the smallest
/// packets, so the comparison measures routing, not property handling.
pub const PROTOCOL: Protocol = Protocol::V311;

/// Largest packet the generator accepts (64 KiB payloads plus headers fit easily).
pub const MAX_PACKET: u32 = 1024 * 1024;

/// How long a CONNACK or SUBACK (or a TLS or WebSocket handshake) may take before the
/// scenario fails.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// The WebSocket path both brokers serve MQTT on (Wasmq's default, Mosquitto's only).
pub const WS_PATH: &str = "/mqtt";

/// What a scenario's clients speak below MQTT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP.
    #[default]
    Tcp,
    /// TLS over TCP (whatever version both sides prefer: 1.3 with these two brokers).
    Tls,
    /// WebSocket over TCP, subprotocol `mqtt`, one binary message per write.
    Ws,
}

impl Transport {
    pub fn is_tcp(&self) -> bool {
        *self == Transport::Tcp
    }

    /// The transport as scenario names and configurations write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
        }
    }
}

/// How the clients of a run reach one broker: an address and what to speak there.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    connector: Connector,
}

#[derive(Clone)]
enum Connector {
    Tcp,
    Tls(TlsConnector),
    Ws,
}

impl From<SocketAddr> for Target {
    /// A plain TCP listener.
    fn from(addr: SocketAddr) -> Target {
        Target {
            addr,
            connector: Connector::Tcp,
        }
    }
}

impl Target {
    /// A TLS listener whose certificate `config` trusts.
    pub fn tls(addr: SocketAddr, config: std::sync::Arc<ClientConfig>) -> Target {
        Target {
            addr,
            connector: Connector::Tls(TlsConnector::from(config)),
        }
    }

    /// A WebSocket listener serving MQTT on [`WS_PATH`].
    pub fn ws(addr: SocketAddr) -> Target {
        Target {
            addr,
            connector: Connector::Ws,
        }
    }

    pub fn transport(&self) -> Transport {
        match self.connector {
            Connector::Tcp => Transport::Tcp,
            Connector::Tls(_) => Transport::Tls,
            Connector::Ws => Transport::Ws,
        }
    }

    /// Opens a stream from `127.0.0.<source>` (see [`tcp_connect`]): TCP, then the TLS
    /// handshake or the WebSocket upgrade, within [`HANDSHAKE_TIMEOUT`].
    pub async fn open(&self, source: u8) -> anyhow::Result<Stream> {
        let tcp = tcp_connect(self.addr, source).await?;
        let handshake = async {
            match &self.connector {
                Connector::Tcp => Ok(Stream::Tcp(tcp)),
                Connector::Tls(connector) => {
                    let name = ServerName::IpAddress(self.addr.ip().into());
                    let tls = connector
                        .connect(name, tcp)
                        .await
                        .context("TLS handshake")?;
                    Ok(Stream::Tls(Box::new(tls)))
                }
                Connector::Ws => {
                    let mut request =
                        format!("ws://{}{WS_PATH}", self.addr).into_client_request()?;
                    request
                        .headers_mut()
                        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
                    let (ws, _) = tokio_tungstenite::client_async(request, tcp)
                        .await
                        .context("WebSocket upgrade")?;
                    Ok(Stream::Ws(Box::new(WsStream::new(ws))))
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .with_context(|| {
                format!(
                    "{} handshake with {} timed out",
                    self.transport().as_str(),
                    self.addr
                )
            })?
    }
}

/// A client's byte stream. TLS and WebSocket may hold written bytes until flushed:
/// [`Client::write_all`] flushes them.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WsStream<TcpStream>>),
}

impl Stream {
    /// Reads what is readable now without waiting: `Ok(0)` at the end of the stream,
    /// `WouldBlock` when nothing is (as [`TcpStream::try_read_buf`]).
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => tcp.try_read_buf(buf),
            // One poll with a waker that does nothing: the task's next wait on the
            // stream registers its own waker again, and readiness seen meanwhile is kept
            // by the reactor, so no wake-up is lost.
            other => {
                let mut cx = TaskContext::from_waker(Waker::noop());
                match std::pin::pin!(other.read_buf(buf)).as_mut().poll(&mut cx) {
                    Poll::Ready(result) => result,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// The TCP socket of a plain TCP stream (the open-loop overload runs are TCP only).
    pub fn into_tcp(self) -> anyhow::Result<TcpStream> {
        match self {
            Stream::Tcp(tcp) => Ok(tcp),
            _ => bail!("this benchmark runs over plain TCP only"),
        }
    }

    /// The TLS version, cipher suite and key exchange negotiated, for the report.
    pub fn tls_parameters(&self) -> Option<String> {
        let Stream::Tls(tls) = self else {
            return None;
        };
        let session = tls.get_ref().1;
        let version = session.protocol_version()?;
        let suite = session.negotiated_cipher_suite()?.suite();
        let group = session
            .negotiated_key_exchange_group()
            .map(|g| format!(", {:?}", g.name()))
            .unwrap_or_default();
        Some(format!("{version:?}, {suite:?}{group}"))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Ws(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Ws(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Ws(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Ws(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// One connected client: the stream and its read buffer.
pub struct Client {
    /// The stream (TCP_NODELAY set on the socket).
    pub stream: Stream,
    /// Bytes read but not decoded yet.
    pub inbuf: BytesMut,
    /// The protocol it connected with: [`PROTOCOL`] for the scenarios; MQTT 5 where a
    /// benchmark needs reason codes (the plugin reload time reads PUBACK 0x87).
    pub protocol: Protocol,
}

/// Opens a TCP connection from source address `127.0.0.<source>` (1..=254), so that many
/// connections are not limited by the ephemeral ports of a single source address.
pub async fn tcp_connect(target: SocketAddr, source: u8) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if target.ip().is_loopback() {
        socket.bind(SocketAddr::from((
            Ipv4Addr::new(127, 0, 0, source.max(1)),
            0,
        )))?;
    }
    let stream = socket
        .connect(target)
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Client {
    /// Connects with [`PROTOCOL`] and a clean session and waits for a successful CONNACK.
    pub async fn connect(target: &Target, source: u8, client_id: &str) -> anyhow::Result<Client> {
        Client::connect_with(target, source, client_id, PROTOCOL).await
    }

    /// Connects with `protocol` and a clean session and waits for a successful CONNACK.
    pub async fn connect_with(
        target: &Target,
        source: u8,
        client_id: &str,
        protocol: Protocol,
    ) -> anyhow::Result<Client> {
        Client::connect_expiring(target, source, client_id, protocol, 0).await
    }

    /// Connects with [`PROTOCOL`] and a new session that outlives the connection by
    /// `expiry` seconds (0: a clean session).
    pub async fn connect_session(
        target: &Target,
        source: u8,
        client_id: &str,
        expiry: u32,
    ) -> anyhow::Result<Client> {
        Client::connect_expiring(target, source, client_id, PROTOCOL, expiry).await
    }

    async fn connect_expiring(
        target: &Target,
        source: u8,
        client_id: &str,
        protocol: Protocol,
        expiry: u32,
    ) -> anyhow::Result<Client> {
        let stream = target.open(source).await?;
        let mut client = Client {
            stream,
            inbuf: BytesMut::with_capacity(64 * 1024),
            protocol,
        };
        let connect = Packet::Connect(Box::new(Connect {
            protocol,
            // v3.1.1 has no expiry: a persistent session is clean_session = 0 (the run's
            // unique client ids keep runs apart).
            clean_start: expiry == 0 || protocol == Protocol::V5,
            keep_alive: 600,
            client_id: ByteString::from(client_id),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval: (expiry > 0).then_some(expiry),
                ..ConnectProperties::default()
            },
        }));
        client.send(&connect).await?;
        match client.recv_timeout().await? {
            Packet::ConnAck(ack) if !ack.reason_code.is_error() => Ok(client),
            Packet::ConnAck(ack) => {
                bail!("{client_id}: CONNACK refused with {:#x}", ack.reason_code.0)
            }
            other => bail!("{client_id}: expected CONNACK, got {}", other.kind()),
        }
    }

    /// Subscribes to `filter` and waits for a SUBACK granting it.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(ByteString::from(filter), SubscriptionOptions::qos(qos))],
            properties: Default::default(),
        });
        self.send(&subscribe).await?;
        match self.recv_timeout().await? {
            Packet::SubAck(ack) if ack.reason_codes.iter().all(|c| !c.is_error()) => Ok(()),
            Packet::SubAck(ack) => {
                bail!("subscription to {filter} refused: {:?}", ack.reason_codes)
            }
            other => bail!("expected SUBACK, got {}", other.kind()),
        }
    }

    /// Encodes and writes one packet.
    pub async fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        let mut buf = BytesMut::new();
        packet.encode(self.protocol, &mut buf);
        self.write_all(&buf).await
    }

    /// Writes `bytes` and, on TLS or WebSocket, flushes them (one TLS record or
    /// WebSocket message per call, at most a few).
    pub async fn write_all(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        if !matches!(self.stream, Stream::Tcp(_)) {
            self.stream.flush().await?;
        }
        Ok(())
    }

    /// Reads until one whole packet is decoded.
    pub async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = Packet::decode(&mut self.inbuf, self.protocol, MAX_PACKET)? {
                return Ok(packet);
            }
            if self.stream.read_buf(&mut self.inbuf).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    }

    /// [`Client::recv`] that gives up after [`HANDSHAKE_TIMEOUT`].
    pub async fn recv_timeout(&mut self) -> anyhow::Result<Packet> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.recv())
            .await
            .context("timed out waiting for the broker")?
    }

    /// Sends DISCONNECT and closes; errors are ignored (the run is over).
    pub async fn disconnect(mut self) {
        let disconnect = Packet::Disconnect(Default::default());
        let _ = self.send(&disconnect).await;
        let _ = self.stream.shutdown().await;
    }
}
