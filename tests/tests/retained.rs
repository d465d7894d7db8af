//! Retained messages: stored and delivered on subscribe with RETAIN 1, replaced, cleared by
//! an empty payload, never sent to shared subscriptions, delivered at the lower of the
//! retained and granted QoS, every match for a wildcard, and (v5) expired by the Message
//! Expiry Interval. Each in MQTT 3.1.1 and 5.0 where the behaviour exists in both.

use std::collections::BTreeMap;
use std::time::Duration;

use wasmq_tests::codec::{Packet, Protocol, PubAckBody, Publish, QoS};
use wasmq_tests::{RawClient, TestBroker, publish_packet};

wasmq_tests::both_versions!(
    retained_message_is_delivered_on_subscribe,
    retained_message_is_replaced,
    empty_payload_clears_the_retained_message,
    retained_messages_are_not_sent_to_shared_subscriptions,
    retained_message_is_delivered_at_the_lower_qos,
    wildcard_subscription_gets_every_matching_retained_message,
);

/// Publishes a retained message at QoS 1 and waits for the PUBACK: once it arrives, the
/// message is stored.
async fn retain(client: &mut RawClient, topic: &str, payload: &[u8]) {
    retain_publish(
        client,
        publish_packet(topic, payload, QoS::AtLeastOnce, true, 1),
    )
    .await;
}

async fn retain_publish(client: &mut RawClient, publish: Publish) {
    let (qos, packet_id) = (publish.qos, publish.packet_id);
    client.send(Packet::Publish(publish)).await.unwrap();
    match qos {
        QoS::AtMostOnce => {
            // A PINGREQ round trip: the PUBLISH before it has been handled.
            client.send(Packet::PingReq).await.unwrap();
            assert_eq!(client.recv().await.unwrap(), Packet::PingResp);
        }
        QoS::AtLeastOnce => assert!(matches!(client.recv().await.unwrap(), Packet::PubAck(_))),
        QoS::ExactlyOnce => {
            assert!(matches!(client.recv().await.unwrap(), Packet::PubRec(_)));
            client
                .send(Packet::PubRel(PubAckBody::new(packet_id)))
                .await
                .unwrap();
            assert!(matches!(client.recv().await.unwrap(), Packet::PubComp(_)));
        }
    }
}

async fn retained_message_is_delivered_on_subscribe(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    retain(&mut publisher, "r/1", b"v1").await;
    publisher.disconnect().await;

    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("r/1", QoS::AtMostOnce).await;
    let got = sub.recv_publish().await;
    assert_eq!((&*got.topic, &*got.payload), ("r/1", &b"v1"[..]));
    assert!(
        got.retain,
        "a retained message sent on subscribe has RETAIN 1"
    );
    sub.expect_nothing().await;
}

async fn retained_message_is_replaced(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    retain(&mut publisher, "r/1", b"v1").await;
    retain(&mut publisher, "r/1", b"v2").await;

    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("r/1", QoS::AtMostOnce).await;
    assert_eq!(sub.recv_publish().await.payload, &b"v2"[..]);
    sub.expect_nothing().await;
}

async fn empty_payload_clears_the_retained_message(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    retain(&mut publisher, "r/1", b"v1").await;
    retain(&mut publisher, "r/2", b"other").await;
    retain(&mut publisher, "r/1", b"").await;

    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("r/+", QoS::AtMostOnce).await;
    assert_eq!(sub.recv_publish().await.topic, "r/2");
    sub.expect_nothing().await;
}

async fn retained_messages_are_not_sent_to_shared_subscriptions(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    retain(&mut publisher, "r/1", b"v1").await;

    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    sub.subscribe_qos("$share/g/r/1", QoS::AtMostOnce).await;
    sub.expect_nothing().await;
    // The same filter without the share prefix does get it.
    sub.subscribe_qos("r/1", QoS::AtMostOnce).await;
    assert_eq!(sub.recv_publish().await.payload, &b"v1"[..]);
}

async fn retained_message_is_delivered_at_the_lower_qos(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    for (topic, qos) in [
        ("q/0", QoS::AtMostOnce),
        ("q/1", QoS::AtLeastOnce),
        ("q/2", QoS::ExactlyOnce),
    ] {
        retain_publish(&mut publisher, publish_packet(topic, b"q", qos, true, 5)).await;
    }
    for granted in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut sub =
            RawClient::connected(broker.addr, protocol, &format!("sub{}", granted as u8)).await;
        sub.subscribe_qos("q/+", granted).await;
        let mut got = BTreeMap::new();
        for _ in 0..3 {
            let publish = sub.recv_publish().await;
            assert!(publish.retain);
            got.insert(publish.topic.to_string(), publish.qos);
        }
        let expected: BTreeMap<String, QoS> = [
            ("q/0", QoS::AtMostOnce),
            ("q/1", QoS::AtLeastOnce.min(granted)),
            ("q/2", QoS::ExactlyOnce.min(granted)),
        ]
        .into_iter()
        .map(|(t, q)| (t.to_string(), q))
        .collect();
        assert_eq!(got, expected, "granted {granted:?}");
    }
}

async fn wildcard_subscription_gets_every_matching_retained_message(protocol: Protocol) {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    for topic in ["w", "w/a", "w/b/c", "x/a", "$w/a"] {
        retain(&mut publisher, topic, topic.as_bytes()).await;
    }
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    for (filter, expected) in [
        ("w/#", &["w", "w/a", "w/b/c"][..]),
        ("+/a", &["w/a", "x/a"][..]), // never `$w/a` [MQTT-4.7.2-1]
    ] {
        sub.subscribe_qos(filter, QoS::AtMostOnce).await;
        let mut topics = Vec::new();
        for _ in expected {
            let got = sub.recv_publish().await;
            assert!(got.retain);
            topics.push(got.topic.to_string());
        }
        sub.expect_nothing().await;
        topics.sort();
        assert_eq!(topics, expected, "retained messages for {filter}");
    }
}

#[tokio::test]
async fn v5_retained_message_expires() {
    let broker = TestBroker::start().await;
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    let mut short = publish_packet("exp/short", b"s", QoS::AtLeastOnce, true, 1);
    short.properties.message_expiry_interval = Some(1);
    retain_publish(&mut publisher, short).await;
    let mut long = publish_packet("exp/long", b"l", QoS::AtLeastOnce, true, 2);
    long.properties.message_expiry_interval = Some(60);
    retain_publish(&mut publisher, long).await;

    let mut early = RawClient::connected(broker.addr, Protocol::V5, "early").await;
    early.subscribe_qos("exp/short", QoS::AtMostOnce).await;
    let got = early.recv_publish().await;
    assert_eq!(got.properties.message_expiry_interval, Some(1));

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut late = RawClient::connected(broker.addr, Protocol::V5, "late").await;
    late.subscribe_qos("exp/+", QoS::AtMostOnce).await;
    let got = late.recv_publish().await;
    assert_eq!(got.topic, "exp/long");
    let left = got.properties.message_expiry_interval.unwrap();
    assert!((58..=59).contains(&left), "expiry forwarded as {left}");
    late.expect_nothing().await;
}
