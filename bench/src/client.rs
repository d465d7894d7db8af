//! A minimal MQTT client on the project's codec (3.1.1 for the scenarios, 5.0 where a
//! benchmark needs reason codes): connect, subscribe, and the raw read/write halves the
//! scenarios drive themselves. No event loop, no retries, no
//! allocation per message beyond the codec's: the generator must stay cheaper than the
//! broker it measures.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use bytestring::ByteString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wasmq_codec::{
    Connect, ConnectProperties, Packet, Protocol, QoS, Subscribe, SubscriptionOptions,
};

/// Every client speaks MQTT 3.1.1: both brokers support it fully and it has the smallest
/// packets, so the comparison measures routing, not property handling.
pub const PROTOCOL: Protocol = Protocol::V311;

/// Largest packet the generator accepts (64 KiB payloads plus headers fit easily).
pub const MAX_PACKET: u32 = 1024 * 1024;

/// How long a CONNACK or SUBACK may take before the scenario fails.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// One connected client: the stream and its read buffer.
pub struct Client {
    /// The TCP stream (TCP_NODELAY set).
    pub stream: TcpStream,
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
    pub async fn connect(
        target: SocketAddr,
        source: u8,
        client_id: &str,
    ) -> anyhow::Result<Client> {
        Client::connect_with(target, source, client_id, PROTOCOL).await
    }

    /// Connects with `protocol` and a clean session and waits for a successful CONNACK.
    pub async fn connect_with(
        target: SocketAddr,
        source: u8,
        client_id: &str,
        protocol: Protocol,
    ) -> anyhow::Result<Client> {
        let stream = tcp_connect(target, source).await?;
        let mut client = Client {
            stream,
            inbuf: BytesMut::with_capacity(64 * 1024),
            protocol,
        };
        let connect = Packet::Connect(Box::new(Connect {
            protocol,
            clean_start: true,
            keep_alive: 600,
            client_id: ByteString::from(client_id),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
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
        self.stream.write_all(&buf).await?;
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
