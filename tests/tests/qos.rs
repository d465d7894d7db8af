//! QoS 0/1/2 both ways: the downgrade to the subscription's QoS, packet identifiers, the
//! PUBACK / PUBREC / PUBREL / PUBCOMP flows, exactly once for a re-sent QoS 2 PUBLISH, and
//! the inflight windows (the client's Receive Maximum or `limits.max_inflight` outbound,
//! `limits.receive_maximum` inbound). Each in MQTT 3.1.1 and 5.0.

use std::collections::HashSet;

use tokio::sync::mpsc;
use wasmq_tests::codec::{Packet, Protocol, PubAckBody, Publish, QoS, ReasonCode};
use wasmq_tests::{RawClient, TestBroker, WAIT, connect_packet, publish_packet};

wasmq_tests::both_versions!(
    delivered_at_the_lower_of_publish_and_subscription_qos,
    publisher_side_acknowledgements,
    subscriber_side_qos1_and_qos2_flows,
    resent_qos2_publish_before_pubrel_is_delivered_once,
    client_exceeding_the_broker_receive_maximum_is_disconnected,
    pubrel_for_an_unknown_packet_id_gets_pubcomp,
    large_and_small_messages_arrive_whole_and_in_order,
);

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

async fn expect_packet(client: &mut RawClient) -> Packet {
    client.recv().await.expect("a packet")
}

/// Acknowledges a received PUBLISH as its QoS requires (PUBREC -> PUBREL -> PUBCOMP).
async fn acknowledge(client: &mut RawClient, publish: &Publish) {
    match publish.qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => client
            .send(Packet::PubAck(PubAckBody::new(publish.packet_id)))
            .await
            .unwrap(),
        QoS::ExactlyOnce => {
            client
                .send(Packet::PubRec(PubAckBody::new(publish.packet_id)))
                .await
                .unwrap();
            match expect_packet(client).await {
                Packet::PubRel(rel) => assert_eq!(rel.packet_id, publish.packet_id),
                other => panic!("expected PUBREL, got {other:?}"),
            }
            client
                .send(Packet::PubComp(PubAckBody::new(publish.packet_id)))
                .await
                .unwrap();
        }
    }
}

/// Publishes at `qos` and completes the publisher's side of the flow.
async fn publish_and_complete(client: &mut RawClient, publish: Publish) {
    let (qos, packet_id) = (publish.qos, publish.packet_id);
    client.send(Packet::Publish(publish)).await.unwrap();
    match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => match expect_packet(client).await {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id, packet_id),
            other => panic!("expected PUBACK, got {other:?}"),
        },
        QoS::ExactlyOnce => {
            match expect_packet(client).await {
                Packet::PubRec(rec) => assert_eq!(rec.packet_id, packet_id),
                other => panic!("expected PUBREC, got {other:?}"),
            }
            client
                .send(Packet::PubRel(PubAckBody::new(packet_id)))
                .await
                .unwrap();
            match expect_packet(client).await {
                Packet::PubComp(comp) => assert_eq!(comp.packet_id, packet_id),
                other => panic!("expected PUBCOMP, got {other:?}"),
            }
        }
    }
}

async fn delivered_at_the_lower_of_publish_and_subscription_qos(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut subscribers = Vec::new();
    for granted in QOS {
        let mut sub = RawClient::connected(broker.addr, protocol, &format!("sub{granted:?}")).await;
        let suback = sub.subscribe_qos("qos/+", granted).await;
        assert_eq!(suback.reason_codes, [ReasonCode(granted as u8)]);
        subscribers.push((granted, sub));
    }
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    for (i, sent) in QOS.into_iter().enumerate() {
        let topic = format!("qos/{}", sent as u8);
        let packet_id = if sent == QoS::AtMostOnce {
            0
        } else {
            10 + i as u16
        };
        publish_and_complete(
            &mut publisher,
            publish_packet(&topic, b"m", sent, false, packet_id),
        )
        .await;
        for (granted, sub) in &mut subscribers {
            let got = sub.recv_publish().await;
            assert_eq!(got.topic, topic);
            assert_eq!(
                got.qos,
                sent.min(*granted),
                "sent {sent:?}, granted {granted:?}"
            );
            assert_eq!(
                got.packet_id == 0,
                got.qos == QoS::AtMostOnce,
                "a packet id exactly when QoS > 0: {got:?}"
            );
            assert!(!got.dup);
            acknowledge(sub, &got).await;
        }
    }
    for (_, sub) in &mut subscribers {
        sub.expect_nothing().await;
    }
}

async fn publisher_side_acknowledgements(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("flow", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;

    publisher
        .send(Packet::Publish(publish_packet(
            "flow",
            b"1",
            QoS::AtLeastOnce,
            false,
            300,
        )))
        .await
        .unwrap();
    match expect_packet(&mut publisher).await {
        Packet::PubAck(ack) => {
            assert_eq!(ack.packet_id, 300);
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }

    publisher
        .send(Packet::Publish(publish_packet(
            "flow",
            b"2",
            QoS::ExactlyOnce,
            false,
            301,
        )))
        .await
        .unwrap();
    match expect_packet(&mut publisher).await {
        Packet::PubRec(rec) => {
            assert_eq!(rec.packet_id, 301);
            assert_eq!(rec.reason_code, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher
        .send(Packet::PubRel(PubAckBody::new(301)))
        .await
        .unwrap();
    match expect_packet(&mut publisher).await {
        Packet::PubComp(comp) => {
            assert_eq!(comp.packet_id, 301);
            assert_eq!(comp.reason_code, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    publisher.expect_nothing().await;

    assert_eq!(sub.recv_publish().await.payload, &b"1"[..]);
    assert_eq!(sub.recv_publish().await.payload, &b"2"[..]);
}

async fn subscriber_side_qos1_and_qos2_flows(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("flow", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publish_and_complete(
        &mut publisher,
        publish_packet("flow", b"one", QoS::AtLeastOnce, false, 1),
    )
    .await;
    publish_and_complete(
        &mut publisher,
        publish_packet("flow", b"two", QoS::ExactlyOnce, false, 2),
    )
    .await;

    // Both arrive before either is acknowledged, with distinct packet ids.
    let one = sub.recv_publish().await;
    let two = sub.recv_publish().await;
    assert_eq!((one.qos, two.qos), (QoS::AtLeastOnce, QoS::ExactlyOnce));
    assert_ne!(one.packet_id, 0);
    assert_ne!(two.packet_id, 0);
    assert_ne!(one.packet_id, two.packet_id);

    sub.send(Packet::PubAck(PubAckBody::new(one.packet_id)))
        .await
        .unwrap();
    sub.send(Packet::PubRec(PubAckBody::new(two.packet_id)))
        .await
        .unwrap();
    match expect_packet(&mut sub).await {
        Packet::PubRel(rel) => {
            assert_eq!(rel.packet_id, two.packet_id);
            assert_eq!(rel.reason_code, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.send(Packet::PubComp(PubAckBody::new(two.packet_id)))
        .await
        .unwrap();
    // Nothing is redelivered once the flows are complete.
    sub.expect_nothing().await;
}

async fn resent_qos2_publish_before_pubrel_is_delivered_once(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("once", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;

    let mut publish = publish_packet("once", b"exactly", QoS::ExactlyOnce, false, 7);
    for dup in [false, true, true] {
        publish.dup = dup;
        publisher
            .send(Packet::Publish(publish.clone()))
            .await
            .unwrap();
        match expect_packet(&mut publisher).await {
            Packet::PubRec(rec) => assert_eq!(rec.packet_id, 7),
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    let got = sub.recv_publish().await;
    assert_eq!(got.payload, &b"exactly"[..]);
    acknowledge(&mut sub, &got).await;
    sub.expect_nothing().await;

    publisher
        .send(Packet::PubRel(PubAckBody::new(7)))
        .await
        .unwrap();
    assert!(matches!(expect_packet(&mut publisher).await, Packet::PubComp(c) if c.packet_id == 7));

    // Released: the same packet id now starts a new message.
    publish_and_complete(
        &mut publisher,
        publish_packet("once", b"again", QoS::ExactlyOnce, false, 7),
    )
    .await;
    assert_eq!(sub.recv_publish().await.payload, &b"again"[..]);
    sub.expect_nothing().await;
}

/// Connects a subscriber to `window/#` at QoS 1, publishes five QoS 1 messages, and checks
/// that exactly `window` arrive until one is acknowledged.
async fn check_outbound_window(broker: &TestBroker, mut sub: RawClient, window: usize) {
    sub.subscribe_qos("window/#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, sub.protocol(), "pub").await;
    for i in 0..5u16 {
        publish_and_complete(
            &mut publisher,
            publish_packet(&format!("window/{i}"), b"w", QoS::AtLeastOnce, false, i + 1),
        )
        .await;
    }
    let mut unacked = Vec::new();
    for _ in 0..window {
        unacked.push(sub.recv_publish().await);
    }
    sub.expect_nothing().await;

    let mut topics = Vec::new();
    while let Some(first) = (!unacked.is_empty()).then(|| unacked.remove(0)) {
        topics.push(first.topic.to_string());
        sub.send(Packet::PubAck(PubAckBody::new(first.packet_id)))
            .await
            .unwrap();
        if topics.len() + unacked.len() < 5 {
            // Each acknowledgement frees exactly one slot.
            unacked.push(sub.recv_publish().await);
            sub.expect_nothing().await;
        }
    }
    assert_eq!(
        topics,
        (0..5).map(|i| format!("window/{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn v5_client_receive_maximum_bounds_messages_in_flight() {
    let broker = TestBroker::start().await;
    let mut connect = connect_packet(Protocol::V5, "sub", true);
    connect.properties.receive_maximum = Some(2);
    let (sub, _) = RawClient::connect(broker.addr, connect).await.unwrap();
    check_outbound_window(&broker, sub, 2).await;
}

#[tokio::test]
async fn v3_max_inflight_bounds_messages_in_flight() {
    let broker = TestBroker::start_with(|c| c.limits.max_inflight = 2).await;
    let sub = RawClient::connected(broker.addr, Protocol::V311, "sub").await;
    check_outbound_window(&broker, sub, 2).await;
}

async fn client_exceeding_the_broker_receive_maximum_is_disconnected(protocol: Protocol) {
    let broker = TestBroker::start_with(|c| c.limits.receive_maximum = 2).await;
    let (mut publisher, connack) =
        RawClient::connect(broker.addr, connect_packet(protocol, "pub", true))
            .await
            .unwrap();
    if protocol == Protocol::V5 {
        assert_eq!(connack.properties.receive_maximum, Some(2));
    }
    for packet_id in 1..=2 {
        publisher
            .send(Packet::Publish(publish_packet(
                "rm",
                b"x",
                QoS::ExactlyOnce,
                false,
                packet_id,
            )))
            .await
            .unwrap();
        assert!(matches!(
            expect_packet(&mut publisher).await,
            Packet::PubRec(_)
        ));
    }
    // A third QoS 2 PUBLISH without any PUBREL: one more than the broker allows.
    publisher
        .send(Packet::Publish(publish_packet(
            "rm",
            b"x",
            QoS::ExactlyOnce,
            false,
            3,
        )))
        .await
        .unwrap();
    // v3.1.1 has no DISCONNECT from the server: the connection is just closed.
    publisher
        .expect_closed(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
        .await;
}

async fn pubrel_for_an_unknown_packet_id_gets_pubcomp(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connected(broker.addr, protocol, "c").await;
    client
        .send(Packet::PubRel(PubAckBody::new(4242)))
        .await
        .unwrap();
    match expect_packet(&mut client).await {
        Packet::PubComp(comp) => {
            assert_eq!(comp.packet_id, 4242);
            let expected = match protocol {
                Protocol::V5 => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                // v3.1.1 PUBCOMP has no reason code.
                Protocol::V311 => ReasonCode::SUCCESS,
            };
            assert_eq!(comp.reason_code, expected);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}

// rumqttc: QoS 0/1/2 round trips through a real client, each QoS published and
// subscribed, in v3.1.1 and v5.

#[tokio::test]
async fn rumqttc_v4_qos_round_trip() {
    use rumqttc::{AsyncClient, Event, Incoming, QoS as Q};
    let broker = TestBroker::start().await;
    let qos = [Q::AtMostOnce, Q::AtLeastOnce, Q::ExactlyOnce];

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut subscribers = Vec::new();
    for (i, granted) in qos.into_iter().enumerate() {
        let (client, mut eventloop) = AsyncClient::new(broker.v4_options(&format!("sub{i}")), 16);
        client.subscribe("rt/#", granted).await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event {
                    let _ = tx.send((i, packet));
                }
            }
        });
        subscribers.push(client);
    }
    let mut subacked = 0;
    while subacked < 3 {
        if let (_, Incoming::SubAck(_)) = recv(&mut rx).await {
            subacked += 1;
        }
    }

    let (publisher, mut eventloop) = AsyncClient::new(broker.v4_options("pub"), 16);
    for (i, sent) in qos.into_iter().enumerate() {
        publisher
            .publish(format!("rt/{i}"), sent, false, vec![i as u8])
            .await
            .unwrap();
    }
    // The publisher's side ends with a PUBACK for QoS 1 and a PUBCOMP for QoS 2.
    let (mut puback, mut pubcomp) = (false, false);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(puback && pubcomp) {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("publisher acknowledgements")
            .unwrap();
        match event {
            Event::Incoming(Incoming::PubAck(_)) => puback = true,
            Event::Incoming(Incoming::PubComp(_)) => pubcomp = true,
            _ => {}
        }
    }
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

    let mut received = HashSet::new();
    while received.len() < 9 {
        if let (sub, Incoming::Publish(p)) = recv(&mut rx).await {
            let sent: usize = p.topic["rt/".len()..].parse().unwrap();
            assert_eq!(p.payload[..], [sent as u8]);
            assert_eq!(p.qos as u8, (sent as u8).min(sub as u8), "{p:?}");
            assert!(received.insert((sub, sent)), "duplicate {p:?}");
        }
    }
    drop(subscribers);
}

#[tokio::test]
async fn rumqttc_v5_qos_round_trip() {
    use rumqttc::v5::mqttbytes::QoS as Q;
    use rumqttc::v5::mqttbytes::v5::Packet as P;
    use rumqttc::v5::{AsyncClient, Event};
    let broker = TestBroker::start().await;
    let qos = [Q::AtMostOnce, Q::AtLeastOnce, Q::ExactlyOnce];

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut subscribers = Vec::new();
    for (i, granted) in qos.into_iter().enumerate() {
        let (client, mut eventloop) = AsyncClient::new(broker.v5_options(&format!("sub{i}")), 16);
        client.subscribe("rt/#", granted).await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event {
                    let _ = tx.send((i, packet));
                }
            }
        });
        subscribers.push(client);
    }
    let mut subacked = 0;
    while subacked < 3 {
        if let (_, P::SubAck(_)) = recv(&mut rx).await {
            subacked += 1;
        }
    }

    let (publisher, mut eventloop) = AsyncClient::new(broker.v5_options("pub"), 16);
    for (i, sent) in qos.into_iter().enumerate() {
        publisher
            .publish(format!("rt/{i}"), sent, false, vec![i as u8])
            .await
            .unwrap();
    }
    let (mut puback, mut pubcomp) = (false, false);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(puback && pubcomp) {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("publisher acknowledgements")
            .unwrap();
        match event {
            Event::Incoming(P::PubAck(ack)) => {
                assert_eq!(
                    ack.reason,
                    rumqttc::v5::mqttbytes::v5::PubAckReason::Success
                );
                puback = true;
            }
            Event::Incoming(P::PubComp(_)) => pubcomp = true,
            _ => {}
        }
    }
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

    let mut received = HashSet::new();
    while received.len() < 9 {
        if let (sub, P::Publish(p)) = recv(&mut rx).await {
            let topic = std::str::from_utf8(&p.topic).unwrap();
            let sent: usize = topic["rt/".len()..].parse().unwrap();
            assert_eq!(p.payload[..], [sent as u8]);
            assert_eq!(p.qos as u8, (sent as u8).min(sub as u8), "{p:?}");
            assert!(received.insert((sub, sent)), "duplicate {p:?}");
        }
    }
    drop(subscribers);
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event within WAIT")
        .expect("event loops running")
}

/// Large payloads leave from the shared message without a copy (a vectored write beside
/// the small packets around them): every byte arrives, in publish order, to every
/// subscriber, whatever the mix of sizes.
async fn large_and_small_messages_arrive_whole_and_in_order(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut subscribers = Vec::new();
    for i in 0..3 {
        let mut sub = RawClient::connected(broker.addr, protocol, &format!("sub{i}")).await;
        sub.subscribe_qos("sizes/#", QoS::AtLeastOnce).await;
        subscribers.push(sub);
    }
    // Below, at and above the size from which payloads are not copied, with small ones
    // between them; each payload's bytes depend on its index and position.
    let sizes = [
        10, 16_383, 16_384, 3, 65_536, 1, 200_000, 17, 20_000, 20_000, 0,
    ];
    let payload =
        |i: usize, len: usize| -> Vec<u8> { (0..len).map(|at| (at * 31 + i * 7) as u8).collect() };
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    for (i, &len) in sizes.iter().enumerate() {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let id = if qos == QoS::AtMostOnce {
            0
        } else {
            i as u16 + 1
        };
        let topic = format!("sizes/{i}");
        let publish = publish_packet(&topic, &payload(i, len), qos, false, id);
        publish_and_complete(&mut publisher, publish).await;
    }
    for sub in &mut subscribers {
        for (i, &len) in sizes.iter().enumerate() {
            let got = sub.recv_publish().await;
            assert_eq!(got.topic, format!("sizes/{i}"));
            assert!(
                got.payload == payload(i, len),
                "payload {i} ({len} B) differs"
            );
            acknowledge(sub, &got).await;
        }
        sub.expect_nothing().await;
    }
}
