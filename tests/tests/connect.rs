//! The CONNECT handshake and what guards it: client-id rules, protocol levels, the time
//! limit to the first CONNECT, protocol errors and malformed packets, the maximum packet
//! size, keep-alive, and session takeover. Each behaviour in v3.1.1 and v5 where it
//! exists in both.

use std::time::{Duration, Instant};

use bytestring::ByteString;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use wasmq_codec::{Packet, Protocol, QoS, ReasonCode};
use wasmq_tests::{RawClient, TestBroker, WAIT, connect_packet, publish_packet};

const BOTH: [Protocol; 2] = [Protocol::V311, Protocol::V5];

/// Sends a QoS 1 message from a fresh client and checks `subscriber` receives it.
async fn check_delivery(broker: &TestBroker, subscriber: &mut RawClient, topic: &str) {
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "check-publisher").await;
    publisher
        .send(Packet::Publish(publish_packet(
            topic,
            b"still here",
            QoS::AtLeastOnce,
            false,
            1,
        )))
        .await
        .unwrap();
    assert!(matches!(publisher.recv().await.unwrap(), Packet::PubAck(_)));
    let publish = subscriber.recv_publish().await;
    assert_eq!(&publish.topic[..], topic);
    assert_eq!(&publish.payload[..], b"still here");
    publisher.disconnect().await;
}

#[tokio::test]
async fn v5_empty_client_id_gets_an_assigned_identifier() {
    let broker = TestBroker::start().await;
    let (mut first, connack) =
        RawClient::connect(broker.addr, connect_packet(Protocol::V5, "", true))
            .await
            .unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    let assigned = connack
        .properties
        .assigned_client_identifier
        .expect("CONNACK carries an Assigned Client Identifier [MQTT-3.2.2-16]");
    assert!(!assigned.is_empty());

    let (_second, connack) =
        RawClient::connect(broker.addr, connect_packet(Protocol::V5, "", true))
            .await
            .unwrap();
    let other = connack.properties.assigned_client_identifier.unwrap();
    assert_ne!(assigned, other, "each client gets its own identifier");

    // The assigned identifier is the session's: the client works under it.
    first.subscribe_qos("assigned/t", QoS::AtLeastOnce).await;
    check_delivery(&broker, &mut first, "assigned/t").await;

    // A client that names itself gets no Assigned Client Identifier.
    let (_named, connack) =
        RawClient::connect(broker.addr, connect_packet(Protocol::V5, "named", true))
            .await
            .unwrap();
    assert_eq!(connack.properties.assigned_client_identifier, None);
}

#[tokio::test]
async fn v311_empty_client_id_needs_clean_session() {
    let broker = TestBroker::start().await;
    let (mut refused, connack) =
        RawClient::connect(broker.addr, connect_packet(Protocol::V311, "", false))
            .await
            .unwrap();
    // Return code 0x02, Identifier rejected [MQTT-3.1.3-8].
    assert_eq!(connack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(!connack.session_present);
    assert!(refused.until_closed().await.is_empty());

    let (mut accepted, connack) =
        RawClient::connect(broker.addr, connect_packet(Protocol::V311, "", true))
            .await
            .unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    accepted.subscribe_qos("empty-id/t", QoS::AtLeastOnce).await;
    check_delivery(&broker, &mut accepted, "empty-id/t").await;
}

#[tokio::test]
async fn v311_empty_client_id_works_with_rumqttc() {
    let broker = TestBroker::start().await;
    let options = broker.v4_options("");
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    match tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap() {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(connack))) => {
            assert_eq!(connack.code, rumqttc::ConnectReturnCode::Success);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn too_long_client_id_is_refused() {
    let broker = TestBroker::start_with(|c| c.limits.client_id_max_len = 23).await;
    for protocol in BOTH {
        let id = "x".repeat(24);
        let (mut client, connack) =
            RawClient::connect(broker.addr, connect_packet(protocol, &id, true))
                .await
                .unwrap();
        // v5 0x85; v3.1.1 0x02, which the codec decodes to the same v5 code.
        assert_eq!(
            connack.reason_code,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            "{protocol:?}"
        );
        assert!(client.until_closed().await.is_empty(), "{protocol:?}");

        let id = "x".repeat(23);
        let (_client, connack) =
            RawClient::connect(broker.addr, connect_packet(protocol, &id, true))
                .await
                .unwrap();
        assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{protocol:?}");
    }
}

/// A CONNECT body for `name`/`level`, clean session, keep-alive 60, client id "old".
fn connect_bytes(name: &[u8], level: u8) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, 0x02, 0x00, 60]);
    if level >= 5 {
        body.push(0); // empty property block, as a v5+ client would send
    }
    body.extend_from_slice(&[0x00, 0x03]);
    body.extend_from_slice(b"old");
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

#[tokio::test]
async fn unsupported_protocol_level_gets_connack_0x01_and_is_closed() {
    let broker = TestBroker::start().await;
    for (name, level) in [(&b"MQIsdp"[..], 3), (&b"MQTT"[..], 3), (&b"MQTT"[..], 6)] {
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, &connect_bytes(name, level))
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
            .await
            .expect("the broker closes the connection")
            .unwrap();
        // CONNACK in the v3.1.1 form every version reads: return code 0x01,
        // unacceptable protocol version [MQTT-3.1.2-2].
        assert_eq!(
            answer,
            [0x20, 0x02, 0x00, 0x01],
            "{} level {level}",
            String::from_utf8_lossy(name)
        );
    }
}

#[tokio::test]
async fn first_packet_not_connect_closes_the_connection() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let mut client = RawClient::open(broker.addr, protocol).await.unwrap();
        client
            .send(Packet::Publish(publish_packet(
                "t",
                b"early",
                QoS::AtMostOnce,
                false,
                0,
            )))
            .await
            .unwrap();
        // No CONNACK, no DISCONNECT: nothing was negotiated [MQTT-3.1.0-1].
        assert!(client.until_closed().await.is_empty(), "{protocol:?}");
    }
    let mut client = RawClient::open(broker.addr, Protocol::V311).await.unwrap();
    client.send(Packet::PingReq).await.unwrap();
    assert!(client.until_closed().await.is_empty());
}

#[tokio::test]
async fn no_connect_within_the_time_limit_closes_the_socket() {
    let broker = TestBroker::start_with(|c| c.limits.connect_timeout_ms = 300).await;
    // A socket that sends nothing.
    let started = Instant::now();
    let mut silent = RawClient::open(broker.addr, Protocol::V5).await.unwrap();
    assert!(silent.until_closed().await.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed after {:?}, before the limit",
        started.elapsed()
    );
    // A socket that starts a CONNECT and never finishes it.
    let mut slow = RawClient::open(broker.addr, Protocol::V311).await.unwrap();
    slow.send_raw(&connect_bytes(b"MQTT", 4)[..6])
        .await
        .unwrap();
    assert!(slow.until_closed().await.is_empty());
    // A client that connects in time is served past the limit.
    let mut client = RawClient::connected(broker.addr, Protocol::V311, "in-time").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.send(Packet::PingReq).await.unwrap();
    assert_eq!(client.recv().await.unwrap(), Packet::PingResp);
}

#[tokio::test]
async fn a_second_connect_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let mut client = RawClient::connected(broker.addr, protocol, "twice").await;
        client
            .send(Packet::Connect(Box::new(connect_packet(
                protocol, "twice", true,
            ))))
            .await
            .unwrap();
        // [MQTT-3.1.0-2]: v5 DISCONNECT 0x82, v3.1.1 a bare close.
        client.expect_closed(ReasonCode::PROTOCOL_ERROR).await;
    }
}

#[tokio::test]
async fn v5_authentication_method_is_refused() {
    let broker = TestBroker::start().await;
    let mut connect = connect_packet(Protocol::V5, "enhanced-auth", true);
    connect.properties.authentication_method = Some(ByteString::from_static("SCRAM-SHA-1"));
    let (mut client, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
    assert_eq!(connack.reason_code, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(client.until_closed().await.is_empty());
}

#[tokio::test]
async fn a_malformed_packet_closes_only_that_connection() {
    let broker = TestBroker::start().await;
    let mut bystander = RawClient::connected(broker.addr, Protocol::V311, "bystander").await;
    bystander.subscribe_qos("news", QoS::AtLeastOnce).await;
    for protocol in BOTH {
        let mut bad = RawClient::connected(broker.addr, protocol, "malformed").await;
        // PUBLISH with QoS bits 3 [MQTT-3.3.1-4].
        bad.send_raw(&[0x36, 0x07, 0x00, 0x01, b'a', 0x00, 0x01, 0x00, b'x'])
            .await
            .unwrap();
        bad.expect_closed(ReasonCode::MALFORMED_PACKET).await;
        check_delivery(&broker, &mut bystander, "news").await;
    }
    assert_eq!(
        broker
            .broker
            .metrics
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test]
async fn a_publish_to_an_invalid_topic_name_closes_only_that_connection() {
    let broker = TestBroker::start().await;
    let mut bystander = RawClient::connected(broker.addr, Protocol::V311, "bystander").await;
    bystander.subscribe_qos("#", QoS::AtLeastOnce).await;
    for protocol in BOTH {
        // Wildcards are for filters only [MQTT-3.3.2-2]; a topic name is never empty
        // [MQTT-4.7.3-1] (a v5 empty topic without an alias is another error).
        let mut invalid = vec!["a/+/b", "a/#", "+", "#"];
        if protocol == Protocol::V311 {
            invalid.push("");
        }
        for (i, topic) in invalid.into_iter().enumerate() {
            let id = format!("bad-topic-{i}");
            let mut bad = RawClient::connected(broker.addr, protocol, &id).await;
            bad.send(Packet::Publish(publish_packet(
                topic,
                b"never routed",
                QoS::AtLeastOnce,
                false,
                1,
            )))
            .await
            .unwrap();
            bad.expect_closed(ReasonCode::TOPIC_NAME_INVALID).await;
        }
        // Nothing of those reached the subscriber, which is still served.
        check_delivery(&broker, &mut bystander, "news").await;
        bystander.expect_nothing().await;
    }
}

#[tokio::test]
async fn an_invalid_will_topic_refuses_the_connect() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let mut connect = connect_packet(protocol, "bad-will", true);
        connect.will = Some(wasmq_codec::LastWill {
            topic: ByteString::from_static("alarms/+"),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        // v5: CONNACK 0x90 Topic Name invalid; v3.1.1: closed without CONNACK.
        RawClient::expect_refused(broker.addr, connect, ReasonCode::TOPIC_NAME_INVALID).await;
    }
}

#[tokio::test]
async fn a_packet_larger_than_the_maximum_is_refused_at_its_header() {
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = 1024).await;
    for protocol in BOTH {
        let mut client = RawClient::connected(broker.addr, protocol, "too-large").await;
        // Only the fixed header of a 10 MB PUBLISH: the broker must refuse it from the
        // Remaining Length alone, not wait for a body that never comes.
        let mut header = vec![0x30];
        let mut remaining = 10_000_000u32;
        loop {
            let mut byte = (remaining % 128) as u8;
            remaining /= 128;
            if remaining > 0 {
                byte |= 0x80;
            }
            header.push(byte);
            if remaining == 0 {
                break;
            }
        }
        client.send_raw(&header).await.unwrap();
        client.expect_closed(ReasonCode::PACKET_TOO_LARGE).await;
    }
    // A v5 client is told the maximum in CONNACK.
    let (_client, connack) =
        RawClient::connect(broker.addr, connect_packet(Protocol::V5, "told", true))
            .await
            .unwrap();
    assert_eq!(connack.properties.maximum_packet_size, Some(1024));
}

/// Connects with Keep Alive `keep_alive` and measures how long until the broker closes a
/// connection that sends nothing.
async fn silent_lifetime(broker: &TestBroker, protocol: Protocol, keep_alive: u16) -> Duration {
    let mut connect = connect_packet(protocol, &format!("silent-{protocol:?}"), true);
    connect.keep_alive = keep_alive;
    let started = Instant::now();
    let (mut client, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    client.expect_closed(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
    started.elapsed()
}

#[tokio::test]
async fn keep_alive_is_enforced_at_one_and_a_half_times() {
    let broker = TestBroker::start().await;
    let (v311, v5) = tokio::join!(
        silent_lifetime(&broker, Protocol::V311, 1),
        silent_lifetime(&broker, Protocol::V5, 1)
    );
    for (protocol, lifetime) in [(Protocol::V311, v311), (Protocol::V5, v5)] {
        // [MQTT-3.1.2-24]: not before 1.5 x Keep Alive; the upper bound only says the
        // timer exists (bounded wait, generous for a loaded machine).
        assert!(
            lifetime >= Duration::from_millis(1500) && lifetime < Duration::from_millis(3000),
            "{protocol:?}: closed after {lifetime:?}"
        );
    }
}

/// Pings every 600 ms for 2.4 s (past the 1.5 s a silent client gets), then goes silent.
async fn ping_then_stop(broker: &TestBroker, protocol: Protocol) {
    let mut connect = connect_packet(protocol, &format!("pinger-{protocol:?}"), true);
    connect.keep_alive = 1;
    let (mut client, _) = RawClient::connect(broker.addr, connect).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        client.send(Packet::PingReq).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap(),
            Packet::PingResp,
            "{protocol:?}"
        );
    }
    // Once the pings stop, the timeout applies again.
    client.expect_closed(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
}

#[tokio::test]
async fn pingreq_keeps_the_connection_alive() {
    let broker = TestBroker::start().await;
    tokio::join!(
        ping_then_stop(&broker, Protocol::V311),
        ping_then_stop(&broker, Protocol::V5)
    );
}

#[tokio::test]
async fn keep_alive_above_the_maximum() {
    let broker = TestBroker::start_with(|c| c.limits.keep_alive_max_secs = 1).await;

    // v5: accepted, and told the Server Keep Alive, which then applies [MQTT-3.2.2-21].
    for asked in [60, 0] {
        let mut connect = connect_packet(Protocol::V5, "v5-keep-alive", true);
        connect.keep_alive = asked;
        let started = Instant::now();
        let (mut client, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
        assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
        assert_eq!(
            connack.properties.server_keep_alive,
            Some(1),
            "asked {asked}"
        );
        client.expect_closed(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
        assert!(
            started.elapsed() < Duration::from_millis(3000),
            "asked {asked}"
        );
    }

    // v5 within the maximum: no Server Keep Alive.
    let mut connect = connect_packet(Protocol::V5, "v5-within", true);
    connect.keep_alive = 1;
    let (_client, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
    assert_eq!(connack.properties.server_keep_alive, None);

    // v3.1.1 cannot be told: refused with 0x02.
    let mut connect = connect_packet(Protocol::V311, "v3-keep-alive", true);
    connect.keep_alive = 60;
    let (mut client, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
    assert_eq!(connack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(client.until_closed().await.is_empty());

    let mut connect = connect_packet(Protocol::V311, "v3-within", true);
    connect.keep_alive = 1;
    let (_client, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn a_second_connection_with_the_same_id_takes_over() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let mut first = RawClient::connected(broker.addr, protocol, "twin").await;
        let mut second = RawClient::connected(broker.addr, protocol, "twin").await;
        // [MQTT-3.1.4-3]: v5 DISCONNECT 0x8E, v3.1.1 a bare close.
        first.expect_closed(ReasonCode::SESSION_TAKEN_OVER).await;
        second.subscribe_qos("twin/t", QoS::AtLeastOnce).await;
        check_delivery(&broker, &mut second, "twin/t").await;
        second.disconnect().await;
    }
}

#[tokio::test]
async fn takeover_with_clean_start_0_continues_the_session() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let mut connect = connect_packet(protocol, "heir", false);
        connect.properties.session_expiry_interval = (protocol == Protocol::V5).then_some(60);
        let (mut first, connack) = RawClient::connect(broker.addr, connect.clone())
            .await
            .unwrap();
        assert!(!connack.session_present);
        first.subscribe_qos("heir/t", QoS::AtLeastOnce).await;

        let (mut second, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
        assert!(connack.session_present, "{protocol:?}");
        first.expect_closed(ReasonCode::SESSION_TAKEN_OVER).await;
        // The subscription made on the first connection delivers on the second.
        check_delivery(&broker, &mut second, "heir/t").await;

        // Taking over with clean start 1 discards it.
        let (mut third, connack) =
            RawClient::connect(broker.addr, connect_packet(protocol, "heir", true))
                .await
                .unwrap();
        assert!(!connack.session_present, "{protocol:?}");
        second.expect_closed(ReasonCode::SESSION_TAKEN_OVER).await;
        let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "p").await;
        publisher
            .send(Packet::Publish(publish_packet(
                "heir/t",
                b"x",
                QoS::AtMostOnce,
                false,
                0,
            )))
            .await
            .unwrap();
        third.expect_nothing().await;
        third.disconnect().await;
    }
}

#[tokio::test]
async fn packets_sent_right_behind_connect_are_served() {
    // Regression: packets that arrived in the same read as the CONNECT waited for the
    // client's next write (a client need not wait for CONNACK, MQTT 5.0 §3.1.4).
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let mut client = RawClient::open(broker.addr, protocol).await.unwrap();
        let mut bytes = bytes::BytesMut::new();
        Packet::Connect(Box::new(connect_packet(protocol, "eager", true)))
            .encode(protocol, &mut bytes);
        Packet::PingReq.encode(protocol, &mut bytes);
        client.send_raw(&bytes).await.unwrap();
        assert!(
            matches!(client.recv().await.unwrap(), Packet::ConnAck(_)),
            "{protocol:?}"
        );
        assert_eq!(
            client.recv().await.unwrap(),
            Packet::PingResp,
            "{protocol:?}"
        );
    }
}
