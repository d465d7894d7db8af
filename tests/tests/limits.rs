//! Limits that protect the broker from one client: subscriptions per session, the
//! number of retained messages, and the levels of a topic.

use std::collections::BTreeSet;

use bytestring::ByteString;
use wasmq::config::MAX_TOPIC_LEVELS;
use wasmq::metrics::Metrics;
use wasmq_codec::{LastWill, Packet, Protocol, QoS, ReasonCode, SubscriptionOptions, Unsubscribe};
use wasmq_tests::{RawClient, TestBroker, connect_packet, publish_packet};

async fn subscriptions_beyond_the_quota_are_refused_per_filter(protocol: Protocol) {
    let broker = TestBroker::start_with(|c| c.limits.max_subscriptions_per_client = 2).await;
    let mut client = RawClient::connected(broker.addr, protocol, "greedy").await;
    let qos0 = SubscriptionOptions::qos(QoS::AtMostOnce);
    let suback = client
        .subscribe(1, &[("a", qos0), ("b", qos0), ("c", qos0)])
        .await;
    let refused = if protocol == Protocol::V5 {
        ReasonCode::QUOTA_EXCEEDED
    } else {
        ReasonCode(0x80)
    };
    assert_eq!(
        suback.reason_codes,
        vec![ReasonCode::SUCCESS, ReasonCode::SUCCESS, refused]
    );
    // Replacing an existing subscription is not a new one.
    let suback = client
        .subscribe(2, &[("a", SubscriptionOptions::qos(QoS::AtLeastOnce))])
        .await;
    assert_eq!(suback.reason_codes, vec![ReasonCode::GRANTED_QOS_1]);
    // The refused filter really was not subscribed.
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    publisher
        .send(Packet::Publish(publish_packet(
            "c",
            b"no",
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await
        .unwrap();
    publisher
        .send(Packet::Publish(publish_packet(
            "b",
            b"yes",
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await
        .unwrap();
    assert_eq!(&client.recv_publish().await.payload[..], b"yes");
    client.expect_nothing().await;
}

async fn the_retained_store_is_bounded(protocol: Protocol) {
    let broker = TestBroker::start_with(|c| c.limits.max_retained_messages = 2).await;
    let mut live = RawClient::connected(broker.addr, protocol, "live").await;
    live.subscribe_qos("r/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    for (topic, payload) in [
        ("r/1", "one"),
        ("r/2", "two"),
        ("r/3", "three"),
        ("r/1", "uno"),
    ] {
        let publish = publish_packet(topic, payload.as_bytes(), QoS::AtMostOnce, true, 0);
        publisher.send(Packet::Publish(publish)).await.unwrap();
        // Not stored is not lost: live subscribers still get it.
        assert_eq!(&live.recv_publish().await.payload[..], payload.as_bytes());
    }
    let mut late = RawClient::connected(broker.addr, protocol, "late").await;
    late.subscribe_qos("r/#", QoS::AtMostOnce).await;
    let mut retained = BTreeSet::new();
    for _ in 0..2 {
        let publish = late.recv_publish().await;
        retained.insert((
            publish.topic.to_string(),
            String::from_utf8(publish.payload.to_vec()).unwrap(),
        ));
    }
    late.expect_nothing().await;
    let expected: BTreeSet<_> = [("r/1", "uno"), ("r/2", "two")]
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .into();
    assert_eq!(retained, expected, "r/3 did not fit; replacing r/1 did");
    let metrics = &broker.broker.metrics;
    assert_eq!(
        Metrics::get(&metrics.retained_refused_full),
        1,
        "r/3, counted as refused"
    );
    assert_eq!(
        Metrics::get(&metrics.messages_dropped_queue_full),
        0,
        "no session queue was full"
    );
}

/// A QoS 1 PUBLISH that must arrive at `subscriber`.
async fn delivered(publisher: &mut RawClient, subscriber: &mut RawClient, topic: &str) {
    let publish = publish_packet(topic, b"deep", QoS::AtLeastOnce, false, 1);
    publisher.send(Packet::Publish(publish)).await.unwrap();
    assert!(matches!(publisher.recv().await.unwrap(), Packet::PubAck(_)));
    assert_eq!(subscriber.recv_publish().await.topic, topic);
}

async fn topics_with_more_levels_than_the_limit_are_refused(protocol: Protocol) {
    let broker = TestBroker::start_with(|c| c.limits.max_topic_levels = 4).await;
    let refused_filter = match protocol {
        Protocol::V5 => ReasonCode::TOPIC_FILTER_INVALID,
        Protocol::V311 => ReasonCode(0x80),
    };
    let qos0 = SubscriptionOptions::qos(QoS::AtMostOnce);
    let mut sub = RawClient::connected(broker.addr, protocol, "sub").await;
    let suback = sub
        .subscribe(
            1,
            &[
                ("a/b/c/d", qos0),
                ("a/b/c/d/e", qos0),
                ("a/+/+/#", qos0),
                ("+/+/+/+/#", qos0),
                // The `$share/GROUP/` prefix is not counted.
                ("$share/g/x/b/c/d", qos0),
            ],
        )
        .await;
    assert_eq!(
        suback.reason_codes,
        [
            ReasonCode::SUCCESS,
            refused_filter,
            ReasonCode::SUCCESS,
            refused_filter,
            ReasonCode::SUCCESS
        ]
    );
    sub.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        filters: vec![ByteString::from("a/b/c/d/e")],
        user_properties: Default::default(),
    }))
    .await
    .unwrap();
    match sub.recv().await.unwrap() {
        Packet::UnsubAck(unsuback) if protocol == Protocol::V5 => {
            assert_eq!(unsuback.reason_codes, [ReasonCode::TOPIC_FILTER_INVALID])
        }
        // v3.1.1 UNSUBACK carries no reason codes.
        Packet::UnsubAck(unsuback) => assert!(unsuback.reason_codes.is_empty()),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }

    let mut publisher = RawClient::connected(broker.addr, protocol, "pub").await;
    delivered(&mut publisher, &mut sub, "a/b/c/d").await;
    // A name with one level too many closes the publisher's connection: 0x90, "not
    // accepted by this Server".
    let mut deep = RawClient::connected(broker.addr, protocol, "deep").await;
    let publish = publish_packet("a/b/c/d/e", b"x", QoS::AtLeastOnce, false, 1);
    deep.send(Packet::Publish(publish)).await.unwrap();
    deep.expect_closed(ReasonCode::TOPIC_NAME_INVALID).await;
    // So does a will topic: v5 CONNACK 0x90; v3.1.1 closed without CONNACK.
    let mut connect = connect_packet(protocol, "deep-will", true);
    connect.will = Some(LastWill {
        topic: ByteString::from("w/x/y/z/deep"),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    RawClient::expect_refused(broker.addr, connect, ReasonCode::TOPIC_NAME_INVALID).await;
    // Nobody else noticed.
    delivered(&mut publisher, &mut sub, "a/b/c/d").await;
    sub.expect_nothing().await;
}

wasmq_tests::both_versions!(
    subscriptions_beyond_the_quota_are_refused_per_filter,
    the_retained_store_is_bounded,
    topics_with_more_levels_than_the_limit_are_refused
);

/// A topic of 60,000 empty levels used to abort the whole broker (the trie walk
/// overflowed the stack). At the highest limit allowed, the deepest filters and names
/// are matched, unsubscribed and dropped with the session, in a debug build.
#[tokio::test]
async fn the_deepest_topics_allowed_are_served_and_deeper_ones_refused() {
    let broker = TestBroker::start_with(|c| c.limits.max_topic_levels = MAX_TOPIC_LEVELS).await;
    let deepest = "/".repeat(MAX_TOPIC_LEVELS - 1);
    let all_plus = format!("{}#", "+/".repeat(MAX_TOPIC_LEVELS - 1));
    let qos0 = SubscriptionOptions::qos(QoS::AtMostOnce);
    let mut sub = RawClient::connected(broker.addr, Protocol::V5, "sub").await;
    let suback = sub
        .subscribe(1, &[(deepest.as_str(), qos0), (all_plus.as_str(), qos0)])
        .await;
    assert_eq!(suback.reason_codes, [ReasonCode::SUCCESS; 2]);
    let mut publisher = RawClient::connected(broker.addr, Protocol::V5, "pub").await;
    // One copy for the two matching subscriptions.
    delivered(&mut publisher, &mut sub, &deepest).await;
    sub.expect_nothing().await;

    // What used to abort the broker: subscribe to a topic of 60,000 levels, publish to it.
    let flood = "/".repeat(60_000);
    let suback = sub.subscribe(3, &[(flood.as_str(), qos0)]).await;
    assert_eq!(suback.reason_codes, [ReasonCode::TOPIC_FILTER_INVALID]);
    let publish = publish_packet(&flood, b"x", QoS::AtMostOnce, false, 0);
    let mut deep = RawClient::connected(broker.addr, Protocol::V5, "deep").await;
    deep.send(Packet::Publish(publish)).await.unwrap();
    deep.expect_closed(ReasonCode::TOPIC_NAME_INVALID).await;

    sub.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        filters: vec![ByteString::from(deepest.as_str())],
        user_properties: Default::default(),
    }))
    .await
    .unwrap();
    match sub.recv().await.unwrap() {
        Packet::UnsubAck(unsuback) => assert_eq!(unsuback.reason_codes, [ReasonCode::SUCCESS]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    delivered(&mut publisher, &mut sub, &deepest).await;
    // The session ends with its deep subscription; the broker still serves.
    sub.disconnect().await;
    let mut next = RawClient::connected(broker.addr, Protocol::V5, "next").await;
    next.subscribe_qos("after", QoS::AtMostOnce).await;
    delivered(&mut publisher, &mut next, "after").await;
}
