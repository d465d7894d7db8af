//! Sessions: Clean Session / Clean Start, Session Present, the Session Expiry Interval
//! and its configured maximum, the offline queue (QoS 1/2 kept, QoS 0 not, bounded and
//! counted when full), and redelivery of unacknowledged QoS 1/2 messages after a
//! reconnect. Each in v3.1.1 and v5 where it exists in both.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmq_codec::{
    ConnAck, Connect, Disconnect, DisconnectProperties, Packet, Protocol, PubAckBody, QoS,
    ReasonCode,
};
use wasmq_tests::{RawClient, TestBroker, WAIT, connect_packet, publish_packet};

const BOTH: [Protocol; 2] = [Protocol::V311, Protocol::V5];

/// A CONNECT that keeps its session: clean start 0, and on v5 `expiry` seconds.
fn persistent(protocol: Protocol, client_id: &str, expiry: u32) -> Connect {
    let mut connect = connect_packet(protocol, client_id, false);
    if protocol == Protocol::V5 {
        connect.properties.session_expiry_interval = Some(expiry);
    }
    connect
}

async fn connect_ok(broker: &TestBroker, connect: Connect) -> (RawClient, ConnAck) {
    let (client, connack) = RawClient::connect(broker.addr, connect).await.unwrap();
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{connack:?}");
    (client, connack)
}

/// Publishes each payload on `topic` at `qos` from a v5 client, waiting for each ack
/// (so the message has been routed when this returns).
async fn publish_all(broker: &TestBroker, topic: &str, qos: QoS, payloads: &[&[u8]]) {
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "publisher").await;
    for (i, payload) in payloads.iter().enumerate() {
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            i as u16 + 1
        };
        publisher
            .send(Packet::Publish(publish_packet(
                topic, payload, qos, false, packet_id,
            )))
            .await
            .unwrap();
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                assert!(matches!(publisher.recv().await.unwrap(), Packet::PubAck(_)))
            }
            QoS::ExactlyOnce => {
                assert!(matches!(publisher.recv().await.unwrap(), Packet::PubRec(_)));
                publisher
                    .send(Packet::PubRel(PubAckBody::new(packet_id)))
                    .await
                    .unwrap();
                assert!(matches!(
                    publisher.recv().await.unwrap(),
                    Packet::PubComp(_)
                ));
            }
        }
    }
    // A round trip so QoS 0 messages are routed too before returning.
    publisher.send(Packet::PingReq).await.unwrap();
    assert_eq!(publisher.recv().await.unwrap(), Packet::PingResp);
    publisher.disconnect().await;
}

/// Waits (bounded) until the broker holds no session; returns how long that took.
async fn sessions_gone(broker: &TestBroker) -> Duration {
    let started = Instant::now();
    while broker.broker.session_count() > 0 {
        assert!(
            started.elapsed() < WAIT,
            "sessions still there after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Disconnects `client` and waits (bounded) until the broker holds no session; returns
/// how long that took from just before the DISCONNECT was sent, so it is never shorter
/// than the broker's own timer.
async fn disconnect_until_no_session(broker: &TestBroker, client: RawClient) -> Duration {
    let started = Instant::now();
    client.disconnect().await;
    sessions_gone(broker).await;
    started.elapsed()
}

#[tokio::test]
async fn session_present_says_whether_a_session_was_resumed() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let id = format!("present-{protocol:?}");
        let (client, connack) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        assert!(!connack.session_present, "{protocol:?}: a new session");
        client.disconnect().await;

        let (client, connack) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        assert!(
            connack.session_present,
            "{protocol:?}: resumed [MQTT-3.2.2-2]"
        );
        client.disconnect().await;

        // Clean start 1 discards it, and Session Present is 0 [MQTT-3.2.2-1].
        let (client, connack) = connect_ok(&broker, connect_packet(protocol, &id, true)).await;
        assert!(!connack.session_present, "{protocol:?}: clean start");
        client.disconnect().await;
    }
}

#[tokio::test]
async fn clean_start_discards_the_subscriptions() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let (id, topic) = (format!("clean-{protocol:?}"), format!("clean/{protocol:?}"));
        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        client.subscribe_qos(&topic, QoS::AtLeastOnce).await;
        client.disconnect().await;
        publish_all(&broker, &topic, QoS::AtLeastOnce, &[b"while away"]).await;

        let (mut client, connack) = connect_ok(&broker, connect_packet(protocol, &id, true)).await;
        assert!(!connack.session_present);
        // Neither the queued message nor the subscription survived.
        client.expect_nothing().await;
        publish_all(&broker, &topic, QoS::AtLeastOnce, &[b"after"]).await;
        client.expect_nothing().await;
        client.disconnect().await;
    }
}

#[tokio::test]
async fn v5_session_expiry_interval_keeps_the_session_then_ends_it() {
    let broker = TestBroker::start().await;
    let (mut client, connack) = connect_ok(&broker, persistent(Protocol::V5, "expiring", 1)).await;
    // The interval asked for is granted as is: no Session Expiry Interval in CONNACK.
    assert_eq!(connack.properties.session_expiry_interval, None);
    client.subscribe_qos("expiring/t", QoS::AtLeastOnce).await;
    client.disconnect().await;

    // Within the interval: resumed, with its subscription.
    let (mut client, connack) = connect_ok(&broker, persistent(Protocol::V5, "expiring", 1)).await;
    assert!(connack.session_present);
    publish_all(&broker, "expiring/t", QoS::AtLeastOnce, &[b"kept"]).await;
    let publish = client.recv_publish().await;
    client
        .send(Packet::PubAck(PubAckBody::new(publish.packet_id)))
        .await
        .unwrap();

    // After it: gone, not before.
    let gone_after = disconnect_until_no_session(&broker, client).await;
    assert!(
        gone_after >= Duration::from_secs(1),
        "ended after {gone_after:?}"
    );
    let (mut client, connack) = connect_ok(&broker, persistent(Protocol::V5, "expiring", 1)).await;
    assert!(!connack.session_present);
    publish_all(&broker, "expiring/t", QoS::AtLeastOnce, &[b"lost"]).await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn v5_session_without_expiry_ends_with_the_connection() {
    let broker = TestBroker::start().await;
    // Clean start 0 but no Session Expiry Interval: it is 0 [MQTT-3.1.2-23].
    let (mut client, _) =
        connect_ok(&broker, connect_packet(Protocol::V5, "no-expiry", false)).await;
    client.subscribe_qos("no-expiry/t", QoS::AtLeastOnce).await;
    disconnect_until_no_session(&broker, client).await;
    let (_client, connack) =
        connect_ok(&broker, connect_packet(Protocol::V5, "no-expiry", false)).await;
    assert!(!connack.session_present);
}

#[tokio::test]
async fn the_configured_maximum_caps_the_session_expiry() {
    let broker = TestBroker::start_with(|c| c.limits.session_expiry_max_secs = 1).await;
    for protocol in BOTH {
        let id = format!("capped-{protocol:?}");
        // v3.1.1 clean session 0 asks for "forever"; v5 asks for an hour.
        let (client, connack) = connect_ok(&broker, persistent(protocol, &id, 3600)).await;
        if protocol == Protocol::V5 {
            // The granted interval is announced (MQTT 5.0 §3.2.2.3.2).
            assert_eq!(connack.properties.session_expiry_interval, Some(1));
        }
        let gone_after = disconnect_until_no_session(&broker, client).await;
        assert!(
            gone_after >= Duration::from_secs(1),
            "{protocol:?}: ended after {gone_after:?}"
        );
        let (client, connack) = connect_ok(&broker, persistent(protocol, &id, 3600)).await;
        assert!(!connack.session_present, "{protocol:?}");
        disconnect_until_no_session(&broker, client).await;
    }
}

#[tokio::test]
async fn v5_disconnect_may_change_the_expiry_but_not_from_zero() {
    let broker = TestBroker::start().await;
    // Zero at CONNECT, non-zero at DISCONNECT: protocol error [MQTT-3.14.2-2].
    let (mut client, _) =
        connect_ok(&broker, connect_packet(Protocol::V5, "from-zero", false)).await;
    client
        .send(Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::NORMAL_DISCONNECTION,
            properties: DisconnectProperties {
                session_expiry_interval: Some(60),
                ..Default::default()
            },
        }))
        .await
        .unwrap();
    client.expect_closed(ReasonCode::PROTOCOL_ERROR).await;
    sessions_gone(&broker).await;

    // Non-zero at CONNECT, zero at DISCONNECT: the session ends now.
    let (mut client, _) = connect_ok(&broker, persistent(Protocol::V5, "to-zero", 60)).await;
    client.subscribe_qos("to-zero/t", QoS::AtLeastOnce).await;
    client
        .send(Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::NORMAL_DISCONNECTION,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                ..Default::default()
            },
        }))
        .await
        .unwrap();
    assert!(client.until_closed().await.is_empty());
    sessions_gone(&broker).await;
    let (_client, connack) = connect_ok(&broker, persistent(Protocol::V5, "to-zero", 60)).await;
    assert!(!connack.session_present);
}

#[tokio::test]
async fn an_offline_session_queues_qos_1_and_2_but_not_qos_0() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        // Per protocol: the v3.1.1 session stays subscribed while the v5 one runs.
        let (id, topic) = (
            format!("offline-{protocol:?}"),
            format!("offline/{protocol:?}"),
        );
        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        client.subscribe_qos(&topic, QoS::ExactlyOnce).await;
        client.disconnect().await;

        let dropped_before = broker
            .broker
            .metrics
            .messages_dropped_offline_qos0
            .load(Ordering::Relaxed);
        publish_all(&broker, &topic, QoS::AtMostOnce, &[b"qos0"]).await;
        publish_all(&broker, &topic, QoS::AtLeastOnce, &[b"qos1"]).await;
        publish_all(&broker, &topic, QoS::ExactlyOnce, &[b"qos2"]).await;
        assert_eq!(
            broker
                .broker
                .metrics
                .messages_dropped_offline_qos0
                .load(Ordering::Relaxed),
            dropped_before + 1
        );

        let (mut client, connack) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        assert!(connack.session_present);
        let first = client.recv_publish().await;
        assert_eq!(
            (&first.payload[..], first.qos),
            (&b"qos1"[..], QoS::AtLeastOnce)
        );
        client
            .send(Packet::PubAck(PubAckBody::new(first.packet_id)))
            .await
            .unwrap();
        let second = client.recv_publish().await;
        assert_eq!(
            (&second.payload[..], second.qos),
            (&b"qos2"[..], QoS::ExactlyOnce)
        );
        client
            .send(Packet::PubRec(PubAckBody::new(second.packet_id)))
            .await
            .unwrap();
        assert_eq!(
            client.recv().await.unwrap(),
            Packet::PubRel(PubAckBody::new(second.packet_id))
        );
        client
            .send(Packet::PubComp(PubAckBody::new(second.packet_id)))
            .await
            .unwrap();
        client.expect_nothing().await;
        client.disconnect().await;
    }
}

#[tokio::test]
async fn a_full_offline_queue_drops_the_newest_and_counts_it() {
    let broker = TestBroker::start_with(|c| c.limits.max_queued_messages = 3).await;
    for protocol in BOTH {
        let (id, topic) = (
            format!("bounded-{protocol:?}"),
            format!("bounded/{protocol:?}"),
        );
        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        client.subscribe_qos(&topic, QoS::AtLeastOnce).await;
        client.disconnect().await;

        let dropped_before = broker
            .broker
            .metrics
            .messages_dropped_queue_full
            .load(Ordering::Relaxed);
        publish_all(
            &broker,
            &topic,
            QoS::AtLeastOnce,
            &[b"1", b"2", b"3", b"4", b"5"],
        )
        .await;
        assert_eq!(
            broker
                .broker
                .metrics
                .messages_dropped_queue_full
                .load(Ordering::Relaxed),
            dropped_before + 2,
            "{protocol:?}"
        );

        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        for expected in [b"1", b"2", b"3"] {
            let publish = client.recv_publish().await;
            assert_eq!(
                &publish.payload[..],
                expected,
                "{protocol:?}: the oldest are kept"
            );
            client
                .send(Packet::PubAck(PubAckBody::new(publish.packet_id)))
                .await
                .unwrap();
        }
        client.expect_nothing().await;
        client.disconnect().await;
    }
}

#[tokio::test]
async fn unacknowledged_qos1_is_redelivered_with_dup_after_reconnect() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let (id, topic) = (
            format!("redeliver1-{protocol:?}"),
            format!("qos1/{protocol:?}"),
        );
        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        client.subscribe_qos(&topic, QoS::AtLeastOnce).await;
        publish_all(&broker, &topic, QoS::AtLeastOnce, &[b"once more"]).await;
        let first = client.recv_publish().await;
        assert!(!first.dup);
        // No PUBACK; the connection drops.
        client.drop_connection();

        let (mut client, connack) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        assert!(connack.session_present);
        let again = client.recv_publish().await;
        // [MQTT-4.4.0-1]: the same packet id, DUP set.
        assert!(again.dup, "{protocol:?}: DUP on redelivery");
        assert_eq!(again.packet_id, first.packet_id);
        assert_eq!(&again.payload[..], b"once more");
        assert_eq!(again.qos, QoS::AtLeastOnce);
        client
            .send(Packet::PubAck(PubAckBody::new(again.packet_id)))
            .await
            .unwrap();
        client.disconnect().await;

        // Acknowledged: not sent a third time.
        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        client.expect_nothing().await;
        client.disconnect().await;
    }
}

#[tokio::test]
async fn unacknowledged_qos2_is_redelivered_then_released_after_reconnect() {
    let broker = TestBroker::start().await;
    for protocol in BOTH {
        let (id, topic) = (
            format!("redeliver2-{protocol:?}"),
            format!("qos2/{protocol:?}"),
        );
        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        client.subscribe_qos(&topic, QoS::ExactlyOnce).await;
        publish_all(&broker, &topic, QoS::ExactlyOnce, &[b"exactly"]).await;
        let first = client.recv_publish().await;
        assert!(!first.dup);
        client.drop_connection();

        // No PUBREC was sent: the PUBLISH again, with DUP.
        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        let again = client.recv_publish().await;
        assert!(again.dup, "{protocol:?}");
        assert_eq!(again.packet_id, first.packet_id);
        assert_eq!(again.qos, QoS::ExactlyOnce);
        client
            .send(Packet::PubRec(PubAckBody::new(again.packet_id)))
            .await
            .unwrap();
        assert_eq!(
            client.recv().await.unwrap(),
            Packet::PubRel(PubAckBody::new(first.packet_id))
        );
        // PUBREC was sent, PUBCOMP was not: a PUBREL after reconnect, not the message.
        client.drop_connection();

        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        assert_eq!(
            client.recv().await.unwrap(),
            Packet::PubRel(PubAckBody::new(first.packet_id)),
            "{protocol:?}"
        );
        client
            .send(Packet::PubComp(PubAckBody::new(first.packet_id)))
            .await
            .unwrap();
        client.disconnect().await;

        let (mut client, _) = connect_ok(&broker, persistent(protocol, &id, 60)).await;
        client.expect_nothing().await;
        client.disconnect().await;
    }
}

/// The next incoming packet of a rumqttc v3.1.1 event loop, skipping outgoing events.
async fn v4_incoming(eventloop: &mut rumqttc::EventLoop) -> rumqttc::Packet {
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(packet))) => return packet,
            Ok(Ok(rumqttc::Event::Outgoing(_))) => {}
            Ok(Err(e)) => panic!("rumqttc v4: {e}"),
            Err(_) => panic!("rumqttc v4: nothing within {WAIT:?}"),
        }
    }
}

/// The next incoming packet of a rumqttc v5 event loop, skipping outgoing events.
async fn v5_incoming(eventloop: &mut rumqttc::v5::EventLoop) -> rumqttc::v5::Incoming {
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await {
            Ok(Ok(rumqttc::v5::Event::Incoming(packet))) => return packet,
            Ok(Ok(rumqttc::v5::Event::Outgoing(_))) => {}
            Ok(Err(e)) => panic!("rumqttc v5: {e}"),
            Err(_) => panic!("rumqttc v5: nothing within {WAIT:?}"),
        }
    }
}

#[tokio::test]
async fn rumqttc_v4_persistent_session() {
    use rumqttc::{AsyncClient, ConnectReturnCode, Packet as P, QoS as Q};
    let broker = TestBroker::start().await;
    let mut options = broker.v4_options("rumqttc-v4-persistent");
    options.set_clean_session(false);

    let (client, mut eventloop) = AsyncClient::new(options.clone(), 10);
    match v4_incoming(&mut eventloop).await {
        P::ConnAck(connack) => {
            assert_eq!(connack.code, ConnectReturnCode::Success);
            assert!(!connack.session_present);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client
        .subscribe("rumqttc/v4", Q::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(v4_incoming(&mut eventloop).await, P::SubAck(_)));
    client.disconnect().await.unwrap();
    // Runs until the DISCONNECT is written and the loop reports the end.
    while let Ok(Ok(event)) = tokio::time::timeout(WAIT, eventloop.poll()).await {
        if event == rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect) {
            break;
        }
    }
    drop(eventloop);

    publish_all(&broker, "rumqttc/v4", QoS::AtMostOnce, &[b"qos0 missed"]).await;
    publish_all(&broker, "rumqttc/v4", QoS::AtLeastOnce, &[b"qos1 kept"]).await;

    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    match v4_incoming(&mut eventloop).await {
        P::ConnAck(connack) => assert!(connack.session_present),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    match v4_incoming(&mut eventloop).await {
        P::Publish(publish) => {
            assert_eq!(&publish.payload[..], b"qos1 kept");
            assert_eq!(publish.qos, Q::AtLeastOnce);
        }
        other => panic!("expected the queued PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn rumqttc_v5_persistent_session() {
    use rumqttc::v5::mqttbytes::QoS as Q;
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet as P};
    use rumqttc::v5::{AsyncClient, Event};
    let broker = TestBroker::start().await;
    let mut options = broker.v5_options("rumqttc-v5-persistent");
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(60));

    let (client, mut eventloop) = AsyncClient::new(options.clone(), 10);
    match v5_incoming(&mut eventloop).await {
        P::ConnAck(connack) => {
            assert_eq!(connack.code, ConnectReturnCode::Success);
            assert!(!connack.session_present);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client
        .subscribe("rumqttc/v5", Q::ExactlyOnce)
        .await
        .unwrap();
    assert!(matches!(v5_incoming(&mut eventloop).await, P::SubAck(_)));
    client.disconnect().await.unwrap();
    while let Ok(Ok(event)) = tokio::time::timeout(WAIT, eventloop.poll()).await {
        if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            break;
        }
    }
    drop(eventloop);

    publish_all(&broker, "rumqttc/v5", QoS::AtMostOnce, &[b"qos0 missed"]).await;
    publish_all(&broker, "rumqttc/v5", QoS::ExactlyOnce, &[b"qos2 kept"]).await;

    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    match v5_incoming(&mut eventloop).await {
        P::ConnAck(connack) => assert!(connack.session_present),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    match v5_incoming(&mut eventloop).await {
        P::Publish(publish) => {
            assert_eq!(&publish.payload[..], b"qos2 kept");
            assert_eq!(publish.qos, Q::ExactlyOnce);
        }
        other => panic!("expected the queued PUBLISH, got {other:?}"),
    }
    // Nothing else was queued: the QoS 0 message was not kept. (PUBREL/PUBCOMP of the
    // QoS 2 exchange may still pass by.)
    let quiet = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(packet) = tokio::time::timeout_at(quiet, v5_incoming(&mut eventloop)).await {
        assert!(!matches!(packet, P::Publish(_)), "unexpected {packet:?}");
    }
}
