//! The listeners below MQTT: TLS (with client certificates and certificate reload),
//! WebSocket and WebSocket over TLS, each through the same connection task as plain
//! TCP, checked with real TLS and WebSocket clients speaking the project's codec; what
//! does not belong on a port (plain MQTT on TLS, HTTP without upgrade, a stalled
//! handshake) is closed; and a connection the broker closes lingers so the client reads
//! the DISCONNECT.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmq::hooks::{Action, AuthDecision, BoxFuture, ClientInfo, Hooks, Transformed};
use wasmq::listener::{ListenerConfig, ListenerKind};
use wasmq_codec::{Packet, Protocol, Publish, QoS, ReasonCode};
use wasmq_tests::transport::{
    ServerFiles, StreamClient, TestPki, tls_client_config, tls_connect, ws_connect,
};
use wasmq_tests::{RawClient, TestBroker, WAIT, connect_packet, publish_packet};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A tls or wss listener on the files.
fn tls_listener(name: &str, kind: ListenerKind, files: &ServerFiles) -> ListenerConfig {
    ListenerConfig {
        cert_file: Some(files.cert.clone()),
        key_file: Some(files.key.clone()),
        ..ListenerConfig::new(name, kind, loopback())
    }
}

/// A broker with a plain tcp listener named "tcp" and `others`.
async fn broker_with(others: Vec<ListenerConfig>) -> TestBroker {
    broker_with_hooks(others, None, |_| {}).await
}

async fn broker_with_hooks(
    others: Vec<ListenerConfig>,
    hooks: Option<Arc<dyn Hooks>>,
    adjust: impl FnOnce(&mut wasmq::Config),
) -> TestBroker {
    wasmq_tests::init_logs();
    TestBroker::start_with_hooks(
        |c| {
            c.listeners = vec![ListenerConfig::new("tcp", ListenerKind::Tcp, loopback())];
            c.listeners.extend(others);
            adjust(c);
        },
        hooks,
    )
    .await
}

/// Subscribes `subscriber` to `topic`, publishes `payload` there from a plain TCP client,
/// and checks it arrives.
async fn delivered_to(
    broker: &TestBroker,
    subscriber: &mut StreamClient,
    topic: &str,
    payload: &[u8],
) {
    subscriber
        .send(Packet::Subscribe(wasmq_codec::Subscribe {
            packet_id: 1,
            filters: vec![(
                ByteString::from(topic),
                wasmq_codec::SubscriptionOptions::qos(QoS::AtLeastOnce),
            )],
            properties: Default::default(),
        }))
        .await
        .unwrap();
    assert!(matches!(
        subscriber.recv().await.unwrap(),
        Packet::SubAck(_)
    ));
    let mut publisher = RawClient::connected(broker.listener("tcp"), Protocol::V5, "tcp-pub").await;
    publisher
        .send(Packet::Publish(publish_packet(
            topic,
            payload,
            QoS::AtLeastOnce,
            false,
            7,
        )))
        .await
        .unwrap();
    match subscriber.recv().await.unwrap() {
        Packet::Publish(publish) => {
            assert_eq!(&publish.topic[..], topic);
            assert_eq!(publish.payload.len(), payload.len());
            assert!(publish.payload[..] == payload[..], "payload intact");
            subscriber
                .send(Packet::PubAck(wasmq_codec::PubAckBody::new(
                    publish.packet_id,
                )))
                .await
                .unwrap();
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

async fn connected(mut client: StreamClient, client_id: &str) -> StreamClient {
    let connack = client
        .connect(connect_packet(client.protocol(), client_id, true))
        .await
        .unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{connack:?}");
    client
}

/// Waits for the broker to close `stream` (EOF or reset) and returns what it sent first.
async fn closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the broker closes the connection");
    got
}

#[tokio::test]
async fn a_tls_client_connects_publishes_and_receives_small_and_large_messages() {
    let pki = TestPki::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_server_files(dir.path());
    let broker = broker_with(vec![tls_listener("secure", ListenerKind::Tls, &files)]).await;

    let tls = tls_connect(
        broker.listener("secure"),
        tls_client_config(&pki.ca_pem, None),
    )
    .await
    .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"mqtt"[..]),
        "ALPN mqtt"
    );
    let mut subscriber = connected(StreamClient::over_bytes(tls, Protocol::V5), "tls-sub").await;
    delivered_to(&broker, &mut subscriber, "tls/small", b"hello over TLS").await;
    // 64 KiB: the outbox's shared-payload segments, several TLS records, flushed.
    let large: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    delivered_to(&broker, &mut subscriber, "tls/large", &large).await;

    // A TLS publisher, too (QoS 1, acknowledged).
    let tls = tls_connect(
        broker.listener("secure"),
        tls_client_config(&pki.ca_pem, None),
    )
    .await
    .unwrap();
    let mut publisher = connected(StreamClient::over_bytes(tls, Protocol::V5), "tls-pub").await;
    publisher
        .send(Packet::Publish(publish_packet(
            "tls/small",
            b"from TLS",
            QoS::AtLeastOnce,
            false,
            3,
        )))
        .await
        .unwrap();
    assert!(matches!(publisher.recv().await.unwrap(), Packet::PubAck(_)));
    match subscriber.recv().await.unwrap() {
        Packet::Publish(publish) => assert_eq!(&publish.payload[..], b"from TLS"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_and_a_stalled_handshake_are_closed() {
    let pki = TestPki::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_server_files(dir.path());
    let broker = broker_with_hooks(
        vec![tls_listener("secure", ListenerKind::Tls, &files)],
        None,
        |c| c.limits.connect_timeout_ms = 500,
    )
    .await;
    let secure = broker.listener("secure");

    // A plain MQTT CONNECT on the TLS port: closed, nothing sent back.
    let mut plain = RawClient::open(secure, Protocol::V5).await.unwrap();
    plain
        .send(Packet::Connect(Box::new(connect_packet(
            Protocol::V5,
            "plain",
            true,
        ))))
        .await
        .unwrap();
    assert!(plain.until_closed().await.is_empty());

    // Half a ClientHello, then silence: closed at connect_timeout_ms.
    let mut stalled = TcpStream::connect(secure).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x80])
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    assert!(closed(&mut stalled).await.is_empty());
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "closed at the timeout, not at once"
    );
    // Silence from the start: the same.
    let mut silent = TcpStream::connect(secure).await.unwrap();
    assert!(closed(&mut silent).await.is_empty());

    // Nothing else was disturbed.
    let tls = tls_connect(secure, tls_client_config(&pki.ca_pem, None))
        .await
        .unwrap();
    connected(StreamClient::over_bytes(tls, Protocol::V5), "after").await;
    RawClient::connected(broker.listener("tcp"), Protocol::V5, "plain-ok").await;
}

/// Records the username and listener each client was authorized with, and allows a
/// client with a username to publish only to `allowed/<username>/...`.
#[derive(Default)]
struct IdentityHooks {
    seen: Mutex<Vec<(Option<String>, String)>>,
}

impl Hooks for IdentityHooks {
    fn authenticate<'a>(
        &'a self,
        client: &'a ClientInfo,
        _password: Option<&'a Bytes>,
    ) -> BoxFuture<'a, AuthDecision> {
        // A certificate identity skips authentication: seeing it here is a failure.
        let identity = client
            .username
            .as_deref()
            .is_some_and(|u| u.starts_with("sensor-"));
        Box::pin(async move {
            if identity {
                AuthDecision::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD)
            } else {
                AuthDecision::Allow { superuser: false }
            }
        })
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        action: Action,
        topic: &'a str,
        _qos: QoS,
        _retain: bool,
    ) -> BoxFuture<'a, bool> {
        let username = client.username.as_ref().map(|u| u.to_string());
        self.seen
            .lock()
            .unwrap()
            .push((username.clone(), client.listener.to_string()));
        let allowed = match (action, username) {
            (Action::Subscribe, _) => true,
            (Action::Publish, Some(user)) => topic.starts_with(&format!("allowed/{user}/")),
            // Clients without a username (the plain TCP publishers) may publish elsewhere.
            (Action::Publish, None) => !topic.starts_with("allowed/"),
        };
        Box::pin(async move { allowed })
    }

    fn transform<'a>(&'a self, _: &'a ClientInfo, _: &'a Publish) -> BoxFuture<'a, Transformed> {
        Box::pin(async { Transformed::Keep })
    }

    fn transforms(&self) -> bool {
        false
    }
}

async fn publish_code(client: &mut StreamClient, topic: &str, packet_id: u16) -> ReasonCode {
    client
        .send(Packet::Publish(publish_packet(
            topic,
            b"x",
            QoS::AtLeastOnce,
            false,
            packet_id,
        )))
        .await
        .unwrap();
    match client.recv().await.unwrap() {
        Packet::PubAck(ack) => ack.reason_code,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// A broker with one mTLS listener of `kind` named `name` (client certificates required,
/// their CN the username) and the identity hooks, and the PKI its clients get
/// certificates from.
struct MtlsBroker {
    pki: TestPki,
    broker: TestBroker,
    hooks: Arc<IdentityHooks>,
    /// The server's files: kept until the test ends (the listener reloads from them).
    _dir: tempfile::TempDir,
}

impl MtlsBroker {
    async fn start(name: &str, kind: ListenerKind) -> MtlsBroker {
        let pki = TestPki::new("test CA");
        let dir = tempfile::tempdir().unwrap();
        let files = pki.write_server_files(dir.path());
        let listener = ListenerConfig {
            ca_file: Some(files.ca.clone()),
            require_client_cert: true,
            use_identity_as_username: true,
            ..tls_listener(name, kind, &files)
        };
        let hooks = Arc::new(IdentityHooks::default());
        let broker = broker_with_hooks(vec![listener], Some(hooks.clone()), |_| {}).await;
        MtlsBroker {
            pki,
            broker,
            hooks,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_and_its_cn_becomes_the_username() {
    let MtlsBroker {
        pki,
        broker,
        hooks,
        _dir,
    } = MtlsBroker::start("devices", ListenerKind::Tls).await;
    let devices = broker.listener("devices");

    // No certificate: the handshake fails (TLS 1.3 reports it on the first read).
    let refused = match tls_connect(devices, tls_client_config(&pki.ca_pem, None)).await {
        Err(_) => true,
        Ok(tls) => {
            let mut client = StreamClient::over_bytes(tls, Protocol::V5);
            client
                .connect(connect_packet(Protocol::V5, "anonymous", true))
                .await
                .is_err()
        }
    };
    assert!(refused, "a client without a certificate is refused");
    // A certificate from another CA: refused too.
    let stranger = TestPki::new("other CA").client("sensor-1");
    let refused = match tls_connect(devices, tls_client_config(&pki.ca_pem, Some(&stranger))).await
    {
        Err(_) => true,
        Ok(tls) => StreamClient::over_bytes(tls, Protocol::V5)
            .connect(connect_packet(Protocol::V5, "stranger", true))
            .await
            .is_err(),
    };
    assert!(refused, "a certificate of another CA is refused");

    // sensor-1's certificate: username sensor-1 whatever the CONNECT says, and no
    // authentication asked (the hooks would deny it).
    let cert = pki.client("sensor-1");
    let tls = tls_connect(devices, tls_client_config(&pki.ca_pem, Some(&cert)))
        .await
        .unwrap();
    let mut client = StreamClient::over_bytes(tls, Protocol::V5);
    let mut connect = connect_packet(Protocol::V5, "device-a", true);
    connect.username = Some(ByteString::from("someone-else"));
    connect.password = Some(Bytes::from_static(b"ignored"));
    let connack = client.connect(connect).await.unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{connack:?}");
    assert_eq!(
        publish_code(&mut client, "allowed/sensor-1/t", 1).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        publish_code(&mut client, "allowed/someone-else/t", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    let seen = hooks.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|(user, listener)| user.as_deref() == Some("sensor-1") && listener == "devices"),
        "the plugins saw the CN and the listener's name: {seen:?}"
    );

    // The plain listener is named "tcp" for the plugins.
    let mut plain = RawClient::connected(broker.listener("tcp"), Protocol::V5, "plain").await;
    let publish = publish_packet("allowed/x/t", b"x", QoS::AtLeastOnce, false, 1);
    plain.send(Packet::Publish(publish)).await.unwrap();
    assert!(matches!(plain.recv().await.unwrap(), Packet::PubAck(_)));
    assert_eq!(hooks.seen.lock().unwrap().last().unwrap().1, "tcp");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_clients_while_connected_ones_stay() {
    let old_ca = TestPki::new("old CA");
    let dir = tempfile::tempdir().unwrap();
    let files = old_ca.write_server_files(dir.path());
    let broker = broker_with(vec![tls_listener("secure", ListenerKind::Tls, &files)]).await;
    let secure = broker.listener("secure");
    let tls = tls_connect(secure, tls_client_config(&old_ca.ca_pem, None))
        .await
        .unwrap();
    let mut early = connected(StreamClient::over_bytes(tls, Protocol::V5), "early").await;

    // The certificate is replaced as tools do it: a new file renamed over the old one,
    // the certificate first, then its key.
    let new_ca = TestPki::new("new CA");
    let renewed = new_ca.server();
    std::fs::write(dir.path().join(".server.pem.tmp"), &renewed.cert).unwrap();
    std::fs::write(dir.path().join(".server.key.tmp"), &renewed.key).unwrap();
    std::fs::rename(dir.path().join(".server.pem.tmp"), &files.cert).unwrap();
    std::fs::rename(dir.path().join(".server.key.tmp"), &files.key).unwrap();

    let new_config = tls_client_config(&new_ca.ca_pem, None);
    let reloaded = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(tls) = tls_connect(secure, new_config.clone()).await {
                return tls;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the renewed certificate is served within 10 s");
    connected(StreamClient::over_bytes(reloaded, Protocol::V5), "late").await;
    assert!(
        tls_connect(secure, tls_client_config(&old_ca.ca_pem, None))
            .await
            .is_err(),
        "the old certificate is no longer served"
    );

    // The client connected before the reload was not dropped.
    delivered_to(&broker, &mut early, "reload/t", b"still here").await;
    early.send(Packet::PingReq).await.unwrap();
    assert!(matches!(early.recv().await.unwrap(), Packet::PingResp));

    // A broken file is refused and the renewed certificate keeps serving.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tls_connect(secure, new_config).await.expect("still served");
}

async fn ws_stream(addr: SocketAddr) -> Box<dyn wasmq_tests::transport::ByteStream> {
    Box::new(TcpStream::connect(addr).await.unwrap())
}

#[tokio::test]
async fn a_websocket_client_speaks_mqtt_with_packets_split_and_joined_across_frames() {
    let broker = broker_with(vec![ListenerConfig::new(
        "web",
        ListenerKind::Ws,
        loopback(),
    )])
    .await;
    let web = broker.listener("web");
    let (ws, answered) = ws_connect(ws_stream(web).await, "/mqtt", Some("mqtt"))
        .await
        .unwrap();
    assert_eq!(
        answered.as_deref(),
        Some("mqtt"),
        "the server answers the subprotocol"
    );
    let mut client = StreamClient::over_ws(ws, Protocol::V5);
    // A CONNECT in two frames, then a PINGREQ and a SUBSCRIBE in one.
    let mut connect = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect_packet(Protocol::V5, "ws-client", true)))
        .encode(Protocol::V5, &mut connect);
    let (head, tail) = connect.split_at(5);
    client.send_raw(head).await.unwrap();
    client.send_raw(tail).await.unwrap();
    assert!(
        matches!(client.recv().await.unwrap(), Packet::ConnAck(c) if c.reason_code == ReasonCode::SUCCESS)
    );
    let mut joined = bytes::BytesMut::new();
    Packet::PingReq.encode(Protocol::V5, &mut joined);
    Packet::PingReq.encode(Protocol::V5, &mut joined);
    client.send_raw(&joined).await.unwrap();
    assert!(matches!(client.recv().await.unwrap(), Packet::PingResp));
    assert!(matches!(client.recv().await.unwrap(), Packet::PingResp));
    delivered_to(&broker, &mut client, "ws/t", b"over WebSocket").await;
    let large = vec![7u8; 100 * 1024];
    delivered_to(&broker, &mut client, "ws/large", &large).await;

    // Another path is configurable.
    let broker = broker_with(vec![ListenerConfig {
        path: "/broker".into(),
        ..ListenerConfig::new("web", ListenerKind::Ws, loopback())
    }])
    .await;
    let (ws, _) = ws_connect(
        ws_stream(broker.listener("web")).await,
        "/broker",
        Some("mqtt"),
    )
    .await
    .unwrap();
    connected(StreamClient::over_ws(ws, Protocol::V311), "ws-v3").await;
}

#[tokio::test]
async fn what_is_no_mqtt_websocket_upgrade_is_refused_and_closed() {
    let broker = broker_with(vec![ListenerConfig::new(
        "web",
        ListenerKind::Ws,
        loopback(),
    )])
    .await;
    let web = broker.listener("web");

    // A wrong subprotocol, none, a wrong path: an HTTP error answer.
    let error = ws_connect(ws_stream(web).await, "/mqtt", Some("chat"))
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("400"), "{error}");
    let error = ws_connect(ws_stream(web).await, "/mqtt", None)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("400"), "{error}");
    let error = ws_connect(ws_stream(web).await, "/elsewhere", Some("mqtt"))
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("404"), "{error}");

    // Plain HTTP without upgrade, plain MQTT: closed.
    let mut http = TcpStream::connect(web).await.unwrap();
    http.write_all(b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    closed(&mut http).await;
    let mut plain = RawClient::open(web, Protocol::V5).await.unwrap();
    plain
        .send(Packet::Connect(Box::new(connect_packet(
            Protocol::V5,
            "plain",
            true,
        ))))
        .await
        .unwrap();
    assert!(plain.until_closed().await.is_empty());

    // A text frame is not MQTT [MQTT-6.0.0-1]: the connection is closed.
    let (ws, _) = ws_connect(ws_stream(web).await, "/mqtt", Some("mqtt"))
        .await
        .unwrap();
    let mut client = connected(StreamClient::over_ws(ws, Protocol::V5), "texter").await;
    let ws = client.websocket().unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "hello".into(),
    ))
    .await
    .unwrap();
    match client.recv_within(WAIT).await {
        Ok(None) => {}
        Ok(Some(packet)) => panic!("expected the close, got {packet:?}"),
        Err(e) => assert!(
            !e.to_string().contains("no packet within"),
            "not closed: {e}"
        ),
    }

    // The listener still serves.
    let (ws, _) = ws_connect(ws_stream(web).await, "/mqtt", Some("mqtt"))
        .await
        .unwrap();
    connected(StreamClient::over_ws(ws, Protocol::V5), "after").await;
}

#[tokio::test]
async fn a_secure_websocket_client_with_a_certificate_identity() {
    let MtlsBroker {
        pki,
        broker,
        hooks,
        _dir,
    } = MtlsBroker::start("browsers", ListenerKind::Wss).await;
    let cert = pki.client("sensor-9");
    // ALPN as a browser offers it for wss: `http/1.1` alone (a wss listener answering
    // only `mqtt` failed Chromium's handshake, tests/browser).
    let mut browser_like = (*tls_client_config(&pki.ca_pem, Some(&cert))).clone();
    browser_like.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tls_connect(broker.listener("browsers"), Arc::new(browser_like))
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "ALPN http/1.1"
    );
    let (ws, answered) = ws_connect(Box::new(tls), "/mqtt", Some("mqtt"))
        .await
        .unwrap();
    assert_eq!(answered.as_deref(), Some("mqtt"));
    let mut client = connected(StreamClient::over_ws(ws, Protocol::V5), "wss-client").await;
    assert_eq!(
        publish_code(&mut client, "allowed/sensor-9/a", 1).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        publish_code(&mut client, "allowed/other/a", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    delivered_to(&broker, &mut client, "wss/t", b"over wss").await;
    let seen = hooks.seen.lock().unwrap().clone();
    let by_certificate: Vec<_> = seen
        .iter()
        .filter(|(user, _)| user.as_deref() == Some("sensor-9"))
        .collect();
    assert!(
        !by_certificate.is_empty() && by_certificate.iter().all(|(_, l)| l == "browsers"),
        "{seen:?}"
    );

    // A client offering `mqtt`, as on a tls listener, is answered that.
    let tls = tls_connect(
        broker.listener("browsers"),
        tls_client_config(&pki.ca_pem, Some(&cert)),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"mqtt"[..]));
    let (ws, _) = ws_connect(Box::new(tls), "/mqtt", Some("mqtt"))
        .await
        .unwrap();
    connected(StreamClient::over_ws(ws, Protocol::V5), "wss-mqtt-alpn").await;
}

#[tokio::test]
async fn a_listener_limit_of_its_own_leaves_the_others_open() {
    let broker = broker_with(vec![ListenerConfig {
        max_connections: 1,
        ..ListenerConfig::new("small", ListenerKind::Tcp, loopback())
    }])
    .await;
    let small = broker.listener("small");
    let _first = RawClient::connected(small, Protocol::V5, "first").await;
    // The second waits in the accept queue: no CONNACK.
    let mut second = RawClient::open(small, Protocol::V5).await.unwrap();
    second
        .send(Packet::Connect(Box::new(connect_packet(
            Protocol::V5,
            "second",
            true,
        ))))
        .await
        .unwrap();
    assert!(
        second
            .recv_within(Duration::from_millis(500))
            .await
            .is_err(),
        "not served"
    );
    // The other listener serves.
    RawClient::connected(broker.listener("tcp"), Protocol::V5, "elsewhere").await;
    // Once the first leaves, the second is served.
    _first.disconnect().await;
    assert!(matches!(second.recv().await.unwrap(), Packet::ConnAck(_)));
}

/// A client publishing QoS 2 past Receive Maximum, still sending when the broker
/// closes: it reads DISCONNECT 0x93 and a clean end of stream, not a reset, and none of
/// its writes fail (before the broker lingered, the close reset the connection and
/// the client got EPIPE on its next write).
async fn past_receive_maximum_the_client_reads_the_disconnect(over_tls: bool) {
    let pki = TestPki::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_server_files(dir.path());
    let broker = broker_with_hooks(
        vec![tls_listener("secure", ListenerKind::Tls, &files)],
        None,
        |c| c.limits.receive_maximum = 4,
    )
    .await;
    let stream: Box<dyn wasmq_tests::transport::ByteStream> = if over_tls {
        Box::new(
            tls_connect(
                broker.listener("secure"),
                tls_client_config(&pki.ca_pem, None),
            )
            .await
            .unwrap(),
        )
    } else {
        Box::new(TcpStream::connect(broker.listener("tcp")).await.unwrap())
    };
    let (mut read, mut write) = tokio::io::split(stream);
    let mut connect = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect_packet(Protocol::V5, "flooder", true)))
        .encode(Protocol::V5, &mut connect);
    write.write_all(&connect).await.unwrap();
    write.flush().await.unwrap();
    // Five QoS 2 PUBLISHes without PUBREL (one past the maximum), then 200 KB more in
    // small writes, as a client does that has not read anything yet.
    let mut flood = bytes::BytesMut::new();
    for id in 1..=5u16 {
        Packet::Publish(publish_packet("flood", b"x", QoS::ExactlyOnce, false, id))
            .encode(Protocol::V5, &mut flood);
    }
    let mut more = bytes::BytesMut::new();
    for id in 6..=2000u16 {
        Packet::Publish(publish_packet(
            "flood",
            &[0u8; 90],
            QoS::ExactlyOnce,
            false,
            id,
        ))
        .encode(Protocol::V5, &mut more);
    }
    let writer = tokio::spawn(async move {
        write.write_all(&flood).await?;
        write.flush().await?;
        for chunk in more.chunks(4096) {
            tokio::time::sleep(Duration::from_millis(1)).await;
            write.write_all(chunk).await?;
            write.flush().await?;
        }
        write.shutdown().await?;
        std::io::Result::Ok(())
    });
    let mut received = bytes::BytesMut::new();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match read.read_buf(&mut received).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the broker closes within 5 s");
    let writes = writer.await.unwrap();
    let mut packets = Vec::new();
    while let Some(packet) = Packet::decode(&mut received, Protocol::V5, u32::MAX).unwrap() {
        packets.push(packet);
    }
    let disconnect = packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    });
    assert_eq!(
        disconnect,
        Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        "{packets:?}"
    );
    assert!(end.is_ok(), "a clean end of stream, not {end:?}");
    assert!(
        writes.is_ok(),
        "every write of the client succeeded: {writes:?}"
    );
}

#[tokio::test]
async fn past_receive_maximum_a_tcp_client_reads_the_disconnect() {
    past_receive_maximum_the_client_reads_the_disconnect(false).await;
}

#[tokio::test]
async fn past_receive_maximum_a_tls_client_reads_the_disconnect() {
    past_receive_maximum_the_client_reads_the_disconnect(true).await;
}
