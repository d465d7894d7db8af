//! Shared helpers for the end-to-end tests: a real broker on `127.0.0.1:0`, and a raw
//! MQTT client built on the project's codec for the cases where a test must control every
//! byte (protocol errors, packet ids, DUP, properties). Behaviour a normal application
//! sees is also tested with real third-party clients (rumqttc here; paho-mqtt and
//! mosquitto_pub/sub from `tests/python` and `tests/smoke`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasmq::{Broker, Config, Server};
use wasmq_codec::{
    Auth, AuthProperties, ConnAck, Connect, ConnectProperties, Packet, Protocol, Publish,
    PublishProperties, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions,
};

pub use wasmq_codec as codec;

pub mod ports;
pub mod transport;

pub use ports::free_loopback_addr;

/// The real `wasmq` binary, started in a scratch folder of its own (its database, plugin
/// cache and admin socket go there) on a free loopback port, killed when dropped. The
/// binary's path comes from the test (only the broker crate's tests know it).
pub struct BrokerProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its working folder.
    pub dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl BrokerProcess {
    /// Starts `exe --listen ADDR`, with `config` (TOML) as its `--config` when not empty,
    /// and waits until it listens (which comes after its database and plugins are ready).
    /// `WASMQ_UNDER_TEST=PATH` runs another build instead (a release build, or an older
    /// commit's to see a test fail without its fix).
    pub async fn start(exe: &str, config: &str) -> anyhow::Result<BrokerProcess> {
        let dir = tempfile::tempdir()?;
        let addr = free_loopback_addr();
        let exe = std::env::var("WASMQ_UNDER_TEST").unwrap_or_else(|_| exe.to_string());
        let mut command = tokio::process::Command::new(&exe);
        command
            .current_dir(dir.path())
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if !config.is_empty() {
            std::fs::write(dir.path().join("wasmq.toml"), config)?;
            command.args(["--config", "wasmq.toml"]);
        }
        let child = command.spawn().context("start wasmq")?;
        tokio::time::timeout(Duration::from_secs(60), async {
            while TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .context("wasmq did not listen within 60 s")?;
        Ok(BrokerProcess {
            addr,
            dir,
            _child: child,
        })
    }
}

/// How long a test waits for a packet that should come.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure a packet does not come.
pub const QUIET: Duration = Duration::from_millis(300);

/// A broker running in this process on 127.0.0.1 with a free port.
pub struct TestBroker {
    /// Where it listens (its first listener).
    pub addr: SocketAddr,
    /// Every listener's name and address.
    pub listeners: Vec<(String, SocketAddr)>,
    /// Its shared state.
    pub broker: Arc<Broker>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestBroker {
    /// Starts a broker with the default configuration ($SYS off, so it adds no traffic).
    pub async fn start() -> TestBroker {
        TestBroker::start_with(|_| {}).await
    }

    /// Starts a broker after `adjust` changes the default configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestBroker {
        TestBroker::start_with_hooks(adjust, None).await
    }

    /// Starts a broker with policy hooks (e.g. a plugin folder's policy).
    pub async fn start_with_hooks(
        adjust: impl FnOnce(&mut Config),
        hooks: Option<Arc<dyn wasmq::hooks::Hooks>>,
    ) -> TestBroker {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            sys: wasmq::config::SysConfig { interval_secs: 0 },
            ..Config::default()
        };
        adjust(&mut config);
        let server = Server::bind(config, hooks).await.expect("bind 127.0.0.1:0");
        TestBroker::run(server)
    }

    /// Runs an already bound server.
    pub fn run(server: Server) -> TestBroker {
        let addr = server.local_addr();
        let listeners = server.listener_addrs();
        let broker = server.broker().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestBroker {
            addr,
            listeners,
            broker,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The address of the listener named `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no listener {name:?} in {:?}", self.listeners))
    }

    /// Asks the broker to shut down (as SIGTERM does) and waits until it has.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("broker stops within 10 s")
                .expect("broker task does not panic");
        }
    }

    /// rumqttc v3.1.1 options for this broker.
    pub fn v4_options(&self, client_id: &str) -> rumqttc::MqttOptions {
        let mut options =
            rumqttc::MqttOptions::new(client_id, self.addr.ip().to_string(), self.addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options
    }

    /// rumqttc v5 options for this broker.
    pub fn v5_options(&self, client_id: &str) -> rumqttc::v5::MqttOptions {
        let mut options =
            rumqttc::v5::MqttOptions::new(client_id, self.addr.ip().to_string(), self.addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A CONNECT with the given protocol, client id and clean start, everything else default.
pub fn connect_packet(protocol: Protocol, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol,
        clean_start,
        keep_alive: 60,
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

/// An AUTH packet (MQTT 5 enhanced authentication) with `method` and `data`.
pub fn auth_packet(code: ReasonCode, method: &str, data: Bytes) -> Packet {
    Packet::Auth(Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: Some(ByteString::from(method)),
            authentication_data: Some(data),
            ..Default::default()
        },
    })
}

/// A PUBLISH with default properties.
pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    packet_id: u16,
) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: ByteString::from(topic),
        packet_id,
        payload: bytes::Bytes::copy_from_slice(payload),
        properties: PublishProperties::default(),
    }
}

/// A raw MQTT client: sends and receives whole packets, nothing automatic.
pub struct RawClient {
    stream: TcpStream,
    protocol: Protocol,
    rbuf: BytesMut,
}

impl RawClient {
    /// Opens a TCP connection without sending anything.
    pub async fn open(addr: SocketAddr, protocol: Protocol) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect(addr)
            .await
            .context("connect to broker")?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            protocol,
            rbuf: BytesMut::new(),
        })
    }

    /// Opens a connection, sends `connect`, and returns the client with the CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        connect: Connect,
    ) -> anyhow::Result<(RawClient, ConnAck)> {
        let mut client = RawClient::open(addr, connect.protocol).await?;
        client.send(Packet::Connect(Box::new(connect))).await?;
        match client.recv().await? {
            Packet::ConnAck(connack) => Ok((client, connack)),
            other => bail!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with a default CONNECT and expects success.
    pub async fn connected(addr: SocketAddr, protocol: Protocol, client_id: &str) -> RawClient {
        let (client, connack) = RawClient::connect(addr, connect_packet(protocol, client_id, true))
            .await
            .expect("connect");
        assert_eq!(
            connack.reason_code,
            codec::ReasonCode::SUCCESS,
            "{connack:?}"
        );
        client
    }

    /// The protocol this client speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sends one packet.
    pub async fn send(&mut self, packet: Packet) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        packet.encode(self.protocol, &mut out);
        self.send_raw(&out).await
    }

    /// Sends raw bytes (for malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream
            .write_all(bytes)
            .await
            .context("write to broker")
    }

    /// Receives the next packet within [`WAIT`].
    pub async fn recv(&mut self) -> anyhow::Result<Packet> {
        self.recv_within(WAIT)
            .await?
            .context("connection closed while waiting for a packet")
    }

    /// Receives the next packet within `wait`; `Ok(None)` when the broker closed the
    /// connection; an error on timeout.
    pub async fn recv_within(&mut self, wait: Duration) -> anyhow::Result<Option<Packet>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(packet) = Packet::decode(&mut self.rbuf, self.protocol, u32::MAX)? {
                return Ok(Some(packet));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => bail!("no packet within {wait:?}"),
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Asserts nothing arrives for [`QUIET`].
    pub async fn expect_nothing(&mut self) {
        if let Ok(packet) = self.recv_within(QUIET).await {
            panic!("expected nothing, got {packet:?}");
        }
    }

    /// Receives the next PUBLISH, failing on anything else.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await.expect("a packet") {
            Packet::Publish(publish) => publish,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Reads until the broker closes the connection, returning the packets sent before it
    /// (e.g. a v5 DISCONNECT). Fails if the connection stays open for [`WAIT`].
    pub async fn until_closed(&mut self) -> Vec<Packet> {
        let mut packets = Vec::new();
        loop {
            match self.recv_within(WAIT).await {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => return packets,
                Err(e) => panic!("connection not closed: {e:#}; got {packets:?}"),
            }
        }
    }

    /// Sends `connect` on a new connection and expects it refused: a v5 client receives
    /// exactly one CONNACK with `v5_reason`, then the close; a v3.1.1 client, for what
    /// v3.1.1 has no return code, a close without CONNACK [MQTT-3.1.4-1].
    pub async fn expect_refused(addr: SocketAddr, connect: Connect, v5_reason: codec::ReasonCode) {
        let protocol = connect.protocol;
        let mut client = RawClient::open(addr, protocol).await.expect("connect");
        client
            .send(Packet::Connect(Box::new(connect)))
            .await
            .expect("send CONNECT");
        match (protocol, client.until_closed().await.as_slice()) {
            (Protocol::V5, [Packet::ConnAck(connack)]) => {
                assert_eq!(
                    connack.reason_code, v5_reason,
                    "CONNACK reason: {connack:?}"
                )
            }
            (Protocol::V311, []) => {}
            (_, other) => panic!("expected the CONNECT refused, got {other:?}"),
        }
    }

    /// Expects the broker to close the connection: a v5 client first receives exactly one
    /// DISCONNECT with `v5_reason`, a v3.1.1 client receives nothing (it has no
    /// DISCONNECT from the server).
    pub async fn expect_closed(&mut self, v5_reason: codec::ReasonCode) {
        let packets = self.until_closed().await;
        match self.protocol {
            Protocol::V5 => match packets.as_slice() {
                [Packet::Disconnect(disconnect)] => assert_eq!(
                    disconnect.reason_code, v5_reason,
                    "DISCONNECT reason: {disconnect:?}"
                ),
                other => {
                    panic!("expected one DISCONNECT {v5_reason:?} before close, got {other:?}")
                }
            },
            Protocol::V311 => assert!(packets.is_empty(), "expected a bare close, got {packets:?}"),
        }
    }

    /// Subscribes to each filter with `options` and returns the SUBACK.
    pub async fn subscribe(
        &mut self,
        packet_id: u16,
        filters: &[(&str, SubscriptionOptions)],
    ) -> SubAck {
        let subscribe = Subscribe {
            packet_id,
            filters: filters
                .iter()
                .map(|(f, o)| (ByteString::from(*f), *o))
                .collect(),
            properties: Default::default(),
        };
        self.send(Packet::Subscribe(subscribe))
            .await
            .expect("send SUBSCRIBE");
        match self.recv().await.expect("SUBACK") {
            Packet::SubAck(suback) => suback,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter at `qos` with default options.
    pub async fn subscribe_qos(&mut self, filter: &str, qos: QoS) -> SubAck {
        self.subscribe(1, &[(filter, SubscriptionOptions::qos(qos))])
            .await
    }

    /// Sends DISCONNECT (normal) and closes.
    pub async fn disconnect(mut self) {
        let _ = self.send(Packet::Disconnect(Default::default())).await;
        let _ = self.stream.shutdown().await;
    }

    /// The socket and what was read but not yet decoded, for a test that drives the
    /// connection itself (a load generator).
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.rbuf)
    }

    /// Drops the TCP connection without DISCONNECT (an abnormal close).
    pub fn drop_connection(self) {
        drop(self.stream);
    }
}

/// Starts tracing output for a test when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Runs each `async fn NAME(protocol: Protocol)` of the calling file as two tests,
/// `v3::NAME` (MQTT 3.1.1) and `v5::NAME`, so a failure names its version. The file
/// must have `Protocol` in scope.
#[macro_export]
macro_rules! both_versions {
    ($($name:ident),* $(,)?) => {
        mod v3 {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Protocol::V311).await
            })*
        }
        mod v5 {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Protocol::V5).await
            })*
        }
    };
}
